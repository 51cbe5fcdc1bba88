"""A slow link for the slow-subscriber part: a UDP forwarder on loopback that delivers the relay's packets to the
subscriber at a fixed rate, behind a drop-tail queue, as a bottleneck router would.

The subscriber connects to the shaper's port; packets towards the relay pass at once, packets from the relay
leave at most `rate_bps` and wait in a queue of at most `queue_seconds` of that rate (beyond it they are dropped,
and QUIC's congestion control on the relay side sees the loss). A slow reader has to be slow at the QUIC level:
aioquic grants flow-control credit as data arrives, not as the application reads it, so an application that
merely reads slowly never looks slow to the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from bench.common import HOST, Json

#: The smallest queue, whatever the rate: a few full packets.
MIN_QUEUE_BYTES = 8 * 1500


class _Side(asyncio.DatagramProtocol):
    def __init__(self, on_packet: Any) -> None:
        self.on_packet = on_packet

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.on_packet(data, addr)


class Shaper:
    """See the module docstring. `start()`, then point the subscriber at `port`; `close()` when done."""

    def __init__(self, upstream: tuple[str, int], rate_bps: int, queue_seconds: float = 0.1) -> None:
        self.upstream = upstream
        self.rate = rate_bps / 8  # bytes per second
        self.queue_limit = max(MIN_QUEUE_BYTES, int(self.rate * queue_seconds))
        self.port = 0
        self.forwarded = 0
        self.dropped = 0
        self.dropped_bytes = 0
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._client: tuple[str, int] | None = None
        self._front: asyncio.DatagramTransport | None = None
        self._back: asyncio.DatagramTransport | None = None
        self._wake = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        front, _ = await loop.create_datagram_endpoint(lambda: _Side(self._from_client), local_addr=(HOST, 0))
        back, _ = await loop.create_datagram_endpoint(lambda: _Side(self._from_relay), remote_addr=self.upstream)
        self._front, self._back = front, back
        self.port = int(front.get_extra_info("sockname")[1])
        self._pump = asyncio.ensure_future(self._deliver())

    def _from_client(self, data: bytes, addr: tuple[str, int]) -> None:
        self._client = addr
        if self._back is not None:
            self._back.sendto(data)

    def _from_relay(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._queued + len(data) > self.queue_limit:
            self.dropped += 1
            self.dropped_bytes += len(data)
            return
        self._queue.append(data)
        self._queued += len(data)
        self._wake.set()

    async def _deliver(self) -> None:
        loop = asyncio.get_running_loop()
        next_free = loop.time()
        for _ in range(100_000_000):  # bounded; cancelled by close()
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                next_free = max(next_free, loop.time())
                continue
            delay = next_free - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            data = self._queue.popleft()
            self._queued -= len(data)
            if self._front is not None and self._client is not None:
                self._front.sendto(data, self._client)
                self.forwarded += len(data)
            next_free = max(next_free, loop.time() - 0.002) + len(data) / self.rate

    def figures(self) -> Json:
        return {
            "rate_bps": int(self.rate * 8),
            "queue_bytes": self.queue_limit,
            "forwarded_bytes": self.forwarded,
            "dropped_packets": self.dropped,
            "dropped_bytes": self.dropped_bytes,
        }

    def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        for transport in (self._front, self._back):
            if transport is not None:
                with contextlib.suppress(Exception):
                    transport.close()
