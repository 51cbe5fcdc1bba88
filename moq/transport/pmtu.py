"""Path MTU discovery: packets bigger than 1200 bytes where the path and the peer take them (RFC 9000 §14.3).

aioquic builds every packet at its configuration's `max_datagram_size` (1200 bytes by default, the size every
QUIC path must carry) for the whole connection. Its per-packet work (building, encrypting, the ACK that comes
back) is most of a relay's CPU, whatever the packet's size, so bigger packets cost less per byte: on this
machine's loopback, 1452-byte packets cost 18% less sender CPU per byte than 1200-byte ones (bench/, the ceiling).

`PathMtuProber` does what RFC 8899 (DPLPMTUD) calls probing, in its simplest form: once the handshake is confirmed,
it sends one probe packet of the next size in `PROBED_DATAGRAM_SIZES`, or of the peer's max_udp_payload_size where
that is smaller (picoquic says 1440): a PING padded to that size (RFC 9000 §14.4). When the peer acknowledges it,
the connection's packets grow to that size; a probe lost MAX_PROBES times in a row (the path, or the peer's
receiver, does not take that size) leaves them as they were, and probing stops. Probes are not in flight for
congestion control: their loss is no congestion signal (RFC 9000 §14.4). The UDP socket sends with Don't Fragment
set (moq.transport.udp), so a probe bigger than the local link's MTU fails at once instead of being cut into IP
fragments that would pass where a whole packet of that size would not. If the peer's address changes (a migration,
a NAT rebinding), the size falls back to the configured one and probing starts again.

Not done: black-hole detection after success (RFC 8899 §4.3; a path whose MTU shrinks mid-connection loses the
connection), and sizes above 1452: bigger packets only pass on loopback and jumbo-frame links, and a benchmark
on loopback that used them would promise what no deployment on the internet gets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet_builder import QuicDeliveryState

from moq.transport import _aioquic

logger = logging.getLogger(__name__)

#: What poll() returns when there is no probe to send (no list made per transmit).
NOTHING: tuple[tuple[bytes, Any], ...] = ()

#: The datagram sizes probed, smallest first. 1452 bytes is what a 1500-byte Ethernet MTU leaves for a UDP payload
#: under IPv6 (40 + 8 bytes of headers; IPv4 leaves 1472): the size most internet paths carry.
PROBED_DATAGRAM_SIZES: tuple[int, ...] = (1452,)
#: Probes of one size lost in a row before giving that size up (RFC 8899 §5.1.2 MAX_PROBES).
MAX_PROBES = 3
#: After a lost probe, how long before the next one (seconds): a loss may be congestion, not the size.
PROBE_RETRY_SECONDS = 1.0


class PathMtuProber:
    """Probes one connection's path for bigger packets (see the module docstring). `poll(now)` is called before
    each transmit and returns the probe datagram to send, if one is due; it costs a few comparisons once done."""

    def __init__(self, quic: QuicConnection, sizes: tuple[int, ...] = PROBED_DATAGRAM_SIZES) -> None:
        self._quic = quic
        self.base_size = _aioquic.max_datagram_size(quic)
        self._sizes = tuple(s for s in sorted(sizes) if s > self.base_size)
        self._candidates: list[int] = []
        self._path: Any = None
        self._outstanding = False
        self._losses = 0
        self._retry_at = 0.0
        self._lost_since_poll = False
        #: Probes sent, acknowledged and lost, for stats and tests.
        self.probes_sent = 0
        self.probes_acked = 0
        self.probes_lost = 0

    @property
    def size(self) -> int:
        """The size the connection's packets are built at now."""
        return _aioquic.max_datagram_size(self._quic)

    def poll(self, clock: Callable[[], float]) -> Sequence[tuple[bytes, Any]]:
        """The probe to send now, if one is due (the datagram and its address); none otherwise. Called before every
        transmit: `clock` (the event loop's time) is only read when there is something to probe."""
        if self._outstanding:
            return NOTHING
        quic = self._quic
        if not _aioquic.handshake_confirmed(quic):
            return NOTHING
        path = _aioquic.current_network_path(quic)
        if path is not self._path:
            self._start(path)
        if not self._candidates:
            return NOTHING
        now = clock()
        if self._lost_since_poll:
            self._lost_since_poll = False
            self._retry_at = now + PROBE_RETRY_SECONDS
        if now < self._retry_at:
            return NOTHING
        size = self._candidates[0]
        datagrams = _aioquic.send_padded_ping(quic, size, now, self._delivered, size)
        if datagrams:
            self._outstanding = True
            self.probes_sent += 1
        return datagrams

    def _start(self, path: Any) -> None:
        """A new path (the first, or the peer moved): back to the configured size, and probe from there."""
        first = self._path is None
        self._path = path
        if not first:
            _aioquic.set_max_datagram_size(self._quic, self.base_size)
        # A peer that takes less than a probed size gets probed at its own limit instead (picoquic says 1440).
        peer_limit = _aioquic.peer_max_udp_payload_size(self._quic)
        self._candidates = sorted({min(s, peer_limit) for s in self._sizes if min(s, peer_limit) > self.base_size})
        self._losses = 0
        self._retry_at = 0.0

    def _delivered(self, state: QuicDeliveryState, size: int) -> None:
        self._outstanding = False
        if not self._candidates or self._candidates[0] != size:
            return  # the path changed since this probe was sent
        if state == QuicDeliveryState.ACKED:
            self.probes_acked += 1
            self._candidates.pop(0)
            self._losses = 0
            if size > _aioquic.max_datagram_size(self._quic):
                _aioquic.set_max_datagram_size(self._quic, size)
            logger.debug("path MTU: a %d-byte probe was acknowledged; packets are %d bytes now", size, self.size)
            return
        self.probes_lost += 1
        self._losses += 1
        if self._losses >= MAX_PROBES:
            self._candidates.clear()  # this size does not pass; a bigger one will not either
            logger.debug("path MTU: %d-byte probes lost %d times; packets stay %d bytes", size, MAX_PROBES, self.size)
        else:
            self._lost_since_poll = True
