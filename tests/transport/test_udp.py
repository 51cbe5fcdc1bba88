"""The UDP endpoint (moq/transport/udp.py): bounded batches of reads, GSO sends, pausing, falling back.

The unit tests drive a real UDP socket pair on loopback with a recording protocol in place of aioquic; the last
test runs real QUIC sessions through the endpoint and checks what it did.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from moq.transport import CertificateBundle, TransportKind, udp
from moq.transport.udp import MAX_RECEIVE_BATCH, UdpEndpoint, open_udp_endpoint
from tests.transport.helpers import KINDS, run, server_and_client
from tests.transport.test_transport import read_stream

GSO = hasattr(socket, "SOL_UDP")  # UDP_SEGMENT is Linux's; elsewhere the endpoint falls back


class Recorder(asyncio.DatagramProtocol):
    """Records the datagrams it is given."""

    def __init__(self) -> None:
        self.datagrams: list[bytes] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams.append(data)


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return sock


async def readable(endpoint: UdpEndpoint, protocol: Recorder, count: int) -> None:
    """Wait (on the loop, not a clock) until `protocol` has `count` datagrams."""
    while len(protocol.datagrams) < count:
        await asyncio.sleep(0)


def test_a_burst_is_read_in_bounded_batches() -> None:
    burst = MAX_RECEIVE_BATCH + 3

    async def scenario() -> None:
        sock = udp_socket()
        sender = udp_socket()
        # Queue the whole burst in the kernel before the endpoint exists: its first readiness sees all of it.
        for i in range(burst):
            sender.sendto(i.to_bytes(2, "big") * 50, sock.getsockname())
        endpoint, protocol = await open_udp_endpoint(Recorder, sock)
        assert isinstance(protocol, Recorder)
        await asyncio.wait_for(readable(endpoint, protocol, burst), 5)
        assert [int.from_bytes(d[:2], "big") for d in protocol.datagrams] == list(range(burst))
        # Two readiness events: the bound, then the rest.
        assert (endpoint.batches, endpoint.datagrams_received) == (2, burst)
        endpoint.close()
        sender.close()

    run(scenario())


def test_pause_reading_leaves_datagrams_in_the_kernel() -> None:
    async def scenario() -> None:
        sock = udp_socket()
        sender = udp_socket()
        endpoint, protocol = await open_udp_endpoint(Recorder, sock)
        assert isinstance(protocol, Recorder)
        endpoint.pause_reading()
        assert not endpoint.is_reading()
        sender.sendto(b"held", sock.getsockname())
        # The loop runs; the endpoint does not read while paused.
        for _ in range(20):
            await asyncio.sleep(0)
        assert protocol.datagrams == []
        endpoint.resume_reading()
        await asyncio.wait_for(readable(endpoint, protocol, 1), 5)
        assert protocol.datagrams == [b"held"]
        endpoint.close()
        sender.close()

    run(scenario())


def receive_all(sock: socket.socket, count: int) -> list[bytes]:
    sock.settimeout(5)
    return [sock.recv(65536) for _ in range(count)]


@pytest.mark.skipif(not GSO, reason="UDP GSO is Linux only")
def test_corked_datagrams_go_out_in_runs_and_arrive_as_datagrams() -> None:
    async def scenario() -> None:
        receiver, other = udp_socket(), udp_socket()
        endpoint, _ = await open_udp_endpoint(asyncio.DatagramProtocol, udp_socket())
        a, b = receiver.getsockname(), other.getsockname()
        sent = [
            (bytes([1]) * 1200, a),
            (bytes([2]) * 1200, a),
            (bytes([3]) * 1200, a),
            (bytes([4]) * 300, a),  # a shorter last datagram ends a run
            (bytes([5]) * 1200, b),  # another peer: another run
            (bytes([6]) * 1200, b),
            (bytes([7]) * 900, a),  # alone: a plain sendto
        ]
        endpoint.cork()
        for data, addr in sent:
            endpoint.sendto(data, addr)
        endpoint.uncork()
        assert (endpoint.gso_sends, endpoint.gso_datagrams) == (2, 6)
        assert receive_all(receiver, 5) == [d for d, addr in sent if addr == a]
        assert receive_all(other, 2) == [d for d, addr in sent if addr == b]
        endpoint.close()

    run(scenario())


class NoGsoSocket(socket.socket):
    """A socket whose kernel refuses UDP_SEGMENT (as an old kernel or another OS would)."""

    def sendmsg(self, *args: Any, **kwargs: Any) -> int:
        raise OSError(22, "Invalid argument")


def test_without_gso_it_falls_back_to_one_send_per_datagram() -> None:
    async def scenario() -> None:
        receiver = udp_socket()
        sock = NoGsoSocket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        endpoint, _ = await open_udp_endpoint(asyncio.DatagramProtocol, sock)
        for _round in range(2):
            endpoint.cork()
            for i in range(3):
                endpoint.sendto(bytes([i]) * 1000, receiver.getsockname())
            endpoint.uncork()
        assert receive_all(receiver, 6) == [bytes([i]) * 1000 for i in range(3)] * 2
        assert endpoint.gso_sends == 0
        endpoint.close()

    run(scenario())


@pytest.mark.parametrize("kind", KINDS)
def test_quic_sessions_run_through_the_endpoint(kind: TransportKind, certificate: CertificateBundle) -> None:
    """A real transfer: both ends use the endpoint; the sender's bursts leave in GSO runs (where available)."""
    payload = bytes(range(256)) * 2048  # 512 KiB

    async def scenario() -> None:
        async with server_and_client(kind, certificate) as (server, peer, client):
            endpoint = client._protocol._transport  # the private attributes are aioquic's and ours
            assert isinstance(endpoint, UdpEndpoint)
            assert isinstance(server._transport, UdpEndpoint)
            stream_id = await client.open_uni_stream()
            client.send(stream_id, payload, end_stream=True)
            _, received = await read_stream(peer, stream_id)
            assert received == payload
            assert server._transport.datagrams_received > 0
            if udp.USE_GSO and GSO:
                # A bulk write leaves in runs of full datagrams: fewer sendmsg calls than datagrams.
                assert endpoint.gso_datagrams > endpoint.gso_sends > 0

    run(scenario())
