"""A UDP endpoint for aioquic that reads a few datagrams per event-loop iteration and sends with GSO.

asyncio's own datagram transport reads one datagram per event-loop iteration and sends each datagram with its
own `sendto` system call (through a Python wrapper). A relay fanning out to hundreds of subscribers receives
thousands of ACKs a second and sends tens of thousands of packets, so that costs an epoll call and a loop
iteration per ACK, and a system call per packet. This endpoint instead

- reads up to `MAX_RECEIVE_BATCH` datagrams each time the socket is readable, handing each to its connection
  (which, as with asyncio's transport, processes it and transmits at once); and
- sends what one transmit of one connection produces with as few system calls as it can: between `cork()` and
  `uncork()` (MoqtQuicProtocol.transmit) datagrams are held, then each run of equal-sized datagrams to one peer
  goes out in one `sendmsg` with UDP generic segmentation offload (Linux `UDP_SEGMENT`; the kernel, or the NIC,
  cuts it into datagrams; the receiver sees ordinary datagrams). Elsewhere, or if the kernel refuses, one
  `sendto` per datagram. UDP has no back-pressure worth waiting for: a datagram the kernel will not take right
  now (EAGAIN) is dropped and counted, and QUIC's loss recovery resends it, as after a loss on the path (asyncio
  would buffer it instead, without bound).

It is an `asyncio.DatagramTransport` as far as aioquic and our code are concerned (`sendto`, `close`,
`get_extra_info`, `is_closing`, `abort`, and `pause_reading` / `resume_reading`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import struct
from typing import Any

logger = logging.getLogger(__name__)

#: Datagrams read per readiness event at most: a few, to save loop iterations in a burst of ACKs, but few enough
#: that the writers those ACKs wake get to run before many more transmits hand the freed room out. (Measured with
#: the interop case `priorities`: at 32, before the scheduler held less urgent bytes back while aioquic still had
#: unsent urgent ones, 22-69% of a bulk track arrived ahead of an urgent one instead of 3%; with that rule, 0-6%.)
MAX_RECEIVE_BATCH = 8
#: Send runs of datagrams to one peer with UDP generic segmentation offload (Linux): one system call for up to
#: MAX_GSO_SEGMENTS datagrams. Where the kernel refuses it, the endpoint falls back to one call per datagram.
USE_GSO = True
#: Datagrams one generic-segmentation-offload send carries at most (Linux's UDP_MAX_SEGMENTS is 64), and the
#: bytes (a UDP payload cannot exceed 65507).
MAX_GSO_SEGMENTS = 64
MAX_GSO_BYTES = 65000
#: Linux's UDP_SEGMENT socket option (linux/udp.h): the segment size of a GSO send.
UDP_SEGMENT = 103
#: Linux's socket options that set Don't Fragment on every datagram (linux/in.h, linux/in6.h): IP_MTU_DISCOVER and
#: IPV6_MTU_DISCOVER with IP(V6)_PMTUDISC_PROBE. A datagram bigger than the local link's MTU then fails with
#: EMSGSIZE instead of leaving in IP fragments, which is what makes a path MTU probe mean something
#: (moq.transport.pmtu; RFC 9000 §14 forbids fragmenting QUIC datagrams anyway).
IP_MTU_DISCOVER = 10
IPV6_MTU_DISCOVER = 23
PMTUDISC_PROBE = 3
#: The largest UDP payload we read (a peer may send up to our max_udp_payload_size, 65527 when unsaid).
MAX_DATAGRAM_READ = 65536


class UdpEndpoint(asyncio.DatagramTransport, asyncio.ReadTransport):
    """One bound, non-blocking UDP socket driven by the running loop (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: asyncio.DatagramProtocol):
        super().__init__(extra={"socket": sock, "sockname": sock.getsockname(), "peername": None})
        self._loop = loop
        self._sock = sock
        self._protocol = protocol
        self._closing = False
        self._reading = False
        self._corked: list[tuple[bytes, Any]] | None = None
        self._gso = USE_GSO and hasattr(socket, "SOL_UDP")
        #: sendmsg calls that carried several datagrams, and the datagrams they carried.
        self.gso_sends = 0
        self.gso_datagrams = 0
        #: Datagrams dropped because the kernel's send buffer was full (counted, for diagnostics).
        self.send_dropped = 0
        #: Datagrams received and batches they came in (their ratio is the batching this endpoint achieves).
        self.datagrams_received = 0
        self.batches = 0

    # -- asyncio.DatagramTransport

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if self._closing:
            return
        if self._corked is not None:
            self._corked.append((bytes(data), addr))
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.send_dropped += 1
        except OSError as exc:
            self._protocol.error_received(exc)

    def is_closing(self) -> bool:
        return self._closing

    def is_reading(self) -> bool:
        return self._reading

    def pause_reading(self) -> None:
        """Stop reading: datagrams wait in the kernel's receive buffer (and past it are dropped)."""
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._sock.fileno())

    def resume_reading(self) -> None:
        if not self._reading and not self._closing:
            self._reading = True
            self._loop.add_reader(self._sock.fileno(), self._read_ready)

    def close(self) -> None:
        if self._closing:
            return
        self.pause_reading()
        self._closing = True
        self._loop.call_soon(self._connection_lost)

    def abort(self) -> None:
        self.close()

    def get_write_buffer_size(self) -> int:
        return 0

    # -- sending runs of datagrams (GSO)

    def cork(self) -> None:
        """Hold datagrams until `uncork()`, which sends runs of them to one address with one system call each."""
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        pending, self._corked = self._corked, None
        if not pending:
            return
        if not self._gso or len(pending) == 1:
            for data, addr in pending:
                self.sendto(data, addr)
            return
        i = 0
        while i < len(pending):
            data, addr = pending[i]
            size = len(data)
            j = i + 1
            total = size
            # A run: datagrams of exactly `size` bytes to one address, the last one possibly shorter.
            while j < len(pending) and j - i < MAX_GSO_SEGMENTS:
                nxt, nxt_addr = pending[j]
                if nxt_addr != addr or len(nxt) > size or total + len(nxt) > MAX_GSO_BYTES:
                    break
                total += len(nxt)
                j += 1
                if len(nxt) < size:
                    break
            if j - i == 1:
                self.sendto(data, addr)
            else:
                self._send_segments([d for d, _ in pending[i:j]], size, addr)
            i = j

    def _send_segments(self, datagrams: list[bytes], size: int, addr: Any) -> None:
        try:
            self._sock.sendmsg([b"".join(datagrams)], [(socket.SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))], 0, addr)
            self.gso_sends += 1
            self.gso_datagrams += len(datagrams)
        except (BlockingIOError, InterruptedError):
            self.send_dropped += len(datagrams)
        except OSError as exc:
            if exc.errno == errno.EMSGSIZE:
                # Bigger than the link takes: dropped (QUIC resends), and GSO stays on for the next run.
                self.send_dropped += len(datagrams)
                self._protocol.error_received(exc)
                return
            # No UDP GSO here (an older kernel, another OS, a device without it): send them one by one from now on.
            logger.info("UDP GSO unavailable (%s): sending datagrams one by one", exc)
            self._gso = False
            for data in datagrams:
                self.sendto(data, addr)

    def _start(self) -> None:
        self.resume_reading()
        self._protocol.connection_made(self)

    def _read_ready(self) -> None:
        received = 0
        try:
            while received < MAX_RECEIVE_BATCH and self._reading:
                try:
                    data, addr = self._sock.recvfrom(MAX_DATAGRAM_READ)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    self._protocol.error_received(exc)
                    break
                received += 1
                self._protocol.datagram_received(data, addr)
        finally:
            self.datagrams_received += received
            self.batches += 1

    def _connection_lost(self) -> None:
        try:
            self._protocol.connection_lost(None)
        finally:
            with contextlib.suppress(OSError):
                self._sock.close()


async def open_udp_endpoint(protocol_factory: Any, sock: socket.socket) -> tuple[UdpEndpoint, asyncio.DatagramProtocol]:
    """Like `loop.create_datagram_endpoint(protocol_factory, sock=sock)`, with this module's endpoint."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    set_dont_fragment(sock)
    protocol: asyncio.DatagramProtocol = protocol_factory()
    endpoint = UdpEndpoint(loop, sock, protocol)
    endpoint._start()
    return endpoint, protocol


def set_dont_fragment(sock: socket.socket) -> bool:
    """Set Don't Fragment on everything `sock` sends (Linux; see IP_MTU_DISCOVER above); False where it cannot."""
    done = False
    levels = [(socket.IPPROTO_IP, IP_MTU_DISCOVER)]
    if sock.family == socket.AF_INET6:
        levels.append((socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER))  # a dual-stack socket: IPv4-mapped peers too
    for level, option in levels:
        with contextlib.suppress(OSError):
            sock.setsockopt(level, option, PMTUDISC_PROBE)
            done = True
    return done
