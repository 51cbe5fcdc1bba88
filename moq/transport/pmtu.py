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

Black holes (RFC 8899 §4.3): a path that took the bigger packets may stop taking them (a route change, a tunnel
coming up). Two signs, both cheap to watch (nothing is done per packet): BLACK_HOLE_PTOS probe timeouts in a row
at the grown size (nothing acknowledged at all), or BLACK_HOLE_LOSSES packets bigger than the configured size
declared lost (smaller ones still pass: the tail of a burst, say). The first falls back to the configured size at
once; the second sends confirmation probes at the current size, and falls back only if MAX_PROBES of them are
lost in a row (losses of big packets are mostly congestion, which a probe outside the congestion window passes
through). After a fall-back the size is probed again after BLACK_HOLE_REPROBE_SECONDS, twice as long after each
further black hole, up to PMTU_RAISE_SECONDS.

Not done: sizes above 1452: bigger packets only pass on loopback and jumbo-frame links, and a benchmark on loopback
that used them would promise what no deployment on the internet gets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet_builder import QuicDeliveryState, QuicSentPacket

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
#: Probe timeouts in a row, at a grown size, that make it a black hole (RFC 8899 §4.3): nothing was acknowledged
#: in about 7 PTOs' time (1, 2 and 4 of them, backing off), a second or so on an internet path.
BLACK_HOLE_PTOS = 3
#: Packets bigger than the configured size declared lost, since the last confirmation, that call for confirmation
#: probes at the current size.
BLACK_HOLE_LOSSES = 4
#: After a black hole, how long before the size is probed again (seconds); doubled after each further one.
BLACK_HOLE_REPROBE_SECONDS = 60.0
#: The longest wait before probing again after a black hole (RFC 8899 §5.1.1 PMTU_RAISE_TIMER).
PMTU_RAISE_SECONDS = 600.0


class PathMtuProber:
    """Probes one connection's path for bigger packets and watches for black holes (see the module docstring).
    `poll(now)` is called before each transmit and returns the probe datagram to send, if one is due; it costs a
    few comparisons once done."""

    def __init__(self, quic: QuicConnection, sizes: tuple[int, ...] = PROBED_DATAGRAM_SIZES) -> None:
        self._quic = quic
        self.base_size = _aioquic.max_datagram_size(quic)
        self._sizes = tuple(s for s in sorted(sizes) if s > self.base_size)
        self._candidates: list[int] = []
        self._path: Any = None
        self._grown = False  # packets are bigger than base_size
        self._outstanding = False
        self._generation = 0  # bumped when the size falls back: older probes' answers are ignored
        self._losses = 0
        self._retry_at = 0.0
        self._lost_since_poll = False
        self._big_losses = 0  # packets over base_size declared lost since the last confirmation
        self._confirm_losses = 0  # confirmation probes lost in a row
        self._reprobe_delay = BLACK_HOLE_REPROBE_SECONDS
        #: Probes of bigger sizes sent, acknowledged and lost; confirmation probes sent and lost; black holes found.
        #: For stats and tests.
        self.probes_sent = 0
        self.probes_acked = 0
        self.probes_lost = 0
        self.confirmations_sent = 0
        self.confirmations_lost = 0
        self.black_holes = 0
        _aioquic.watch_lost_packets(quic, self._lost)

    @property
    def size(self) -> int:
        """The size the connection's packets are built at now."""
        return _aioquic.max_datagram_size(self._quic)

    def poll(self, clock: Callable[[], float]) -> Sequence[tuple[bytes, Any]]:
        """The probe to send now, if one is due (the datagram and its address); none otherwise. Called before every
        transmit: `clock` (the event loop's time) is only read when there is something to probe."""
        quic = self._quic
        if not self._grown and self._outstanding:
            return NOTHING
        if not _aioquic.handshake_confirmed(quic):
            return NOTHING
        path = _aioquic.current_network_path(quic)
        if path is not self._path:
            self._start(path)
        if self._grown:
            if _aioquic.pto_count(quic) >= BLACK_HOLE_PTOS:
                self._fall_back(clock(), f"{BLACK_HOLE_PTOS} probe timeouts in a row")
            elif self._confirm_losses >= MAX_PROBES:
                self._fall_back(clock(), f"{MAX_PROBES} confirmation probes lost in a row")
            elif self._big_losses >= BLACK_HOLE_LOSSES and not self._outstanding:
                return self._send(clock(), self.size, confirm=True)
        if self._outstanding or not self._candidates:
            return NOTHING
        now = clock()
        if self._lost_since_poll:
            self._lost_since_poll = False
            self._retry_at = now + PROBE_RETRY_SECONDS
        if now < self._retry_at:
            return NOTHING
        return self._send(now, self._candidates[0], confirm=False)

    def _send(self, now: float, size: int, *, confirm: bool) -> Sequence[tuple[bytes, Any]]:
        datagrams = _aioquic.send_padded_ping(self._quic, size, now, self._delivered, size, self._generation, confirm)
        if datagrams:
            self._outstanding = True
            if confirm:
                self.confirmations_sent += 1
            else:
                self.probes_sent += 1
        return datagrams

    def _start(self, path: Any) -> None:
        """A new path (the first, or the peer moved): back to the configured size, and probe from there."""
        first = self._path is None
        self._path = path
        if not first:
            self._shrink()
        self._candidates = self._all_candidates()
        self._losses = 0
        self._retry_at = 0.0
        self._reprobe_delay = BLACK_HOLE_REPROBE_SECONDS

    def _all_candidates(self) -> list[int]:
        # A peer that takes less than a probed size gets probed at its own limit instead (picoquic says 1440).
        peer_limit = _aioquic.peer_max_udp_payload_size(self._quic)
        return sorted({min(s, peer_limit) for s in self._sizes if min(s, peer_limit) > self.base_size})

    def _shrink(self) -> None:
        """Back to the configured size; answers to probes sent before are ignored."""
        _aioquic.set_max_datagram_size(self._quic, self.base_size)
        self._grown = False
        self._generation += 1
        self._outstanding = False
        self._lost_since_poll = False
        self._big_losses = 0
        self._confirm_losses = 0

    def _fall_back(self, now: float, why: str) -> None:
        """A black hole: the configured size from now on, and the bigger ones probed again later."""
        size = self.size
        self._shrink()
        self.black_holes += 1
        self._candidates = self._all_candidates()
        self._losses = 0
        self._retry_at = now + self._reprobe_delay
        logger.info(
            "path MTU: %d-byte packets stopped passing (%s); back to %d bytes, probing again in %.0f s",
            size,
            why,
            self.size,
            self._reprobe_delay,
        )
        self._reprobe_delay = min(self._reprobe_delay * 2, PMTU_RAISE_SECONDS)

    def _lost(self, packets: list[QuicSentPacket]) -> None:
        """aioquic declared in-flight packets lost (called inside aioquic: only take note)."""
        if self._grown:
            base = self.base_size
            self._big_losses += sum(1 for p in packets if p.sent_bytes > base)

    def _delivered(self, state: QuicDeliveryState, size: int, generation: int, confirm: bool) -> None:
        if generation != self._generation:
            return  # sent before the size fell back (or the path changed)
        self._outstanding = False
        if confirm:
            if state == QuicDeliveryState.ACKED:
                self._big_losses = 0
                self._confirm_losses = 0
            else:
                self.confirmations_lost += 1
                self._confirm_losses += 1
            return
        if not self._candidates or self._candidates[0] != size:
            return
        if state == QuicDeliveryState.ACKED:
            self.probes_acked += 1
            self._candidates.pop(0)
            self._losses = 0
            if size > _aioquic.max_datagram_size(self._quic):
                _aioquic.set_max_datagram_size(self._quic, size)
                self._grown = True
                self._big_losses = 0
            logger.debug("path MTU: a %d-byte probe was acknowledged; packets are %d bytes now", size, self.size)
            return
        self.probes_lost += 1
        self._losses += 1
        if self._losses >= MAX_PROBES:
            self._candidates.clear()  # this size does not pass; a bigger one will not either
            logger.debug("path MTU: %d-byte probes lost %d times; packets stay %d bytes", size, MAX_PROBES, self.size)
        else:
            self._lost_since_poll = True
