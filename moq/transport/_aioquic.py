"""Every use of aioquic internals, in one place.

aioquic 1.x has no public API for some things a MOQT transport needs: the peer's current MAX_STREAMS, whether
a stream's sending side is fully acknowledged, how many bytes a stream's sender still holds and how much flow
control credit it has (for our send scheduler), the peer certificate, the datagram queue, or changing the reason
phrase of a pending CONNECTION_CLOSE. Each accessor below reads one private attribute and says why. If an aioquic
upgrade renames one, `check_compatibility()` (run by the tests) fails here, not somewhere deep in a session.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from aioquic import tls as aioquic_tls
from aioquic.buffer import Buffer, BufferReadError
from aioquic.quic import events
from aioquic.quic.connection import END_STATES, NetworkAddress, QuicConnection, QuicConnectionState
from aioquic.quic.packet import QuicFrameType, QuicPacketType, pull_quic_transport_parameters
from aioquic.quic.packet_builder import QuicPacketBuilder, QuicSentPacket
from aioquic.quic.stream import QuicStream, QuicStreamSender
from cryptography import x509

__all__ = [
    "blocked_stream_count",
    "check_compatibility",
    "closed_by_peer",
    "congestion_window_available",
    "current_network_path",
    "connection_send_credit",
    "drop_oldest_datagrams",
    "handshake_confirmed",
    "max_datagram_size",
    "peer_max_udp_payload_size",
    "peer_certificate",
    "peer_max_datagram_frame_size",
    "peer_stream_limit",
    "pending_close",
    "replace_pending_close_reason",
    "send_padded_ping",
    "set_max_datagram_size",
    "send_side_finished",
    "stream_send_buffered",
    "stream_send_credit",
]


def peer_stream_limit(quic: QuicConnection, unidirectional: bool) -> int:
    """The peer's current MAX_STREAMS for streams we open (a count: stream ids below 4 * limit are allowed).

    aioquic does not refuse streams beyond it: it queues them as blocked, and its scheduler slows to a crawl
    with thousands queued (PLATFORM.md). So we gate stream opening on this value ourselves.
    """
    return int(quic._remote_max_streams_uni if unidirectional else quic._remote_max_streams_bidi)


def blocked_stream_count(quic: QuicConnection) -> int:
    """Streams aioquic holds as blocked by the peer's MAX_STREAMS (0 when our own gating works)."""
    return len(quic._streams_blocked_uni) + len(quic._streams_blocked_bidi)


def send_side_finished(quic: QuicConnection, stream_id: int) -> bool:
    """True once our sending side of the stream is done: FIN and all data acknowledged, or a reset acknowledged.

    A stream whose state aioquic has already discarded is finished too.
    """
    stream = quic._streams.get(stream_id)
    return stream is None or bool(stream.sender.is_finished)


def stream_send_buffered(quic: QuicConnection, stream_id: int) -> tuple[int, int]:
    """Bytes of a stream aioquic still holds: (written and not yet acknowledged, of which never sent yet).

    aioquic keeps a stream's bytes from the first unacknowledged one to the last written (`_buffer_start` to
    `_buffer_stop`); `highest_offset` is how far it has sent. A reset or finished stream holds nothing that will
    still go out: (0, 0), as for a stream aioquic already discarded.
    """
    stream = quic._streams.get(stream_id)
    if stream is None:
        return 0, 0
    sender = stream.sender
    if sender._reset_error_code is not None or sender.is_finished:
        return 0, 0
    stop = int(sender._buffer_stop)
    return stop - int(sender._buffer_start), stop - int(sender.highest_offset)


def stream_send_credit(quic: QuicConnection, stream_id: int) -> int | None:
    """How many more bytes the peer's MAX_STREAM_DATA lets us write to a stream (beyond all bytes written so far).

    None when the stream can take no more data: discarded, reset (by us or by the peer's STOP_SENDING), or
    past its FIN. The scheduler hands aioquic no more than this, so that a stream blocked by flow control never
    fills the connection's budget while others could send (draft §5.1: a flow-control-blocked object is not
    schedulable).
    """
    stream = quic._streams.get(stream_id)
    if stream is None:
        return None
    sender = stream.sender
    if sender._reset_error_code is not None or sender._buffer_fin is not None or sender.is_finished:
        return None
    return int(stream.max_stream_data_remote) - int(sender._buffer_stop)


def connection_send_credit(quic: QuicConnection) -> int:
    """Bytes the peer's MAX_DATA still allows beyond the highest offsets aioquic has sent on all streams.

    Bytes written to aioquic but never sent are not counted here: subtract them (`stream_send_buffered`).
    """
    return int(quic._remote_max_data) - int(quic._remote_max_data_used)


def congestion_window_available(quic: QuicConnection) -> int:
    """Bytes the congestion controller lets aioquic send now: its congestion window minus the bytes in flight.

    The scheduler hands aioquic about this much (plus a little slack), so that what aioquic holds unsent — the
    data a later high-priority object would wait behind — stays small whatever the path's bandwidth.
    """
    recovery = quic._loss
    return int(recovery.congestion_window) - int(recovery.bytes_in_flight)


def peer_max_datagram_frame_size(quic: QuicConnection) -> int | None:
    """The peer's max_datagram_frame_size transport parameter (None: the peer accepts no datagrams)."""
    value = quic._remote_max_datagram_frame_size
    return int(value) if value is not None else None


def drop_oldest_datagrams(quic: QuicConnection, keep: int) -> int:
    """Bound aioquic's queue of unsent datagrams to `keep` entries by dropping the oldest; return how many.

    aioquic queues datagrams without limit while the congestion window is closed. Datagrams are unreliable
    and a stale one is worthless (newest media wins), so we drop from the head.
    """
    pending: deque[bytes] = quic._datagrams_pending
    dropped = 0
    while len(pending) > keep:
        pending.popleft()
        dropped += 1
    return dropped


def peer_certificate(quic: QuicConnection) -> x509.Certificate | None:
    """The certificate the peer presented in the TLS handshake (None before it arrived)."""
    tls = getattr(quic, "tls", None)
    if tls is None:
        return None
    certificate: x509.Certificate | None = tls._peer_certificate
    return certificate


def pending_close(quic: QuicConnection) -> events.ConnectionTerminated | None:
    """The CONNECTION_CLOSE aioquic decided to send (or has sent), if any."""
    close_event: events.ConnectionTerminated | None = quic._close_event
    return close_event


def closed_by_peer(quic: QuicConnection) -> bool:
    """True when the connection is draining because the peer sent CONNECTION_CLOSE (not us, not aioquic).

    aioquic reports a close (`ConnectionTerminated`) only once the closing/draining period of 3 PTO is over;
    a session wants to know at once, so we look at the state after each received datagram.
    """
    return bool(quic._state == QuicConnectionState.DRAINING)


def replace_pending_close_reason(quic: QuicConnection, error_code: int, reason: str) -> bool:
    """Rewrite the reason phrase of a not-yet-sent CONNECTION_CLOSE carrying `error_code`; True if done.

    Used by the server when TLS fails for want of a common ALPN: aioquic's reason is the fixed
    "No common ALPN protocols", and the only way a raw QUIC client can learn which versions the server speaks
    is this reason phrase. Must be called after `receive_datagram()` and before `datagrams_to_send()`.
    """
    close_event = pending_close(quic)
    if close_event is None or not quic._close_pending or close_event.error_code != error_code:
        return False
    quic._close_event = events.ConnectionTerminated(
        error_code=close_event.error_code, frame_type=close_event.frame_type, reason_phrase=reason
    )
    return True


#: The largest UDP payload a peer takes when its transport parameters do not say (RFC 9000 §18.2).
DEFAULT_MAX_UDP_PAYLOAD_SIZE = 65527


def handshake_confirmed(quic: QuicConnection) -> bool:
    """True once the handshake is confirmed (RFC 9001 §4.1.2): 1-RTT packets only from now on."""
    return bool(quic._handshake_confirmed)


def max_datagram_size(quic: QuicConnection) -> int:
    """The size aioquic builds datagrams at now (its configuration's `max_datagram_size` until changed)."""
    return int(quic._max_datagram_size)


def set_max_datagram_size(quic: QuicConnection, size: int) -> None:
    """Build datagrams of up to `size` bytes from now on: the path took a probe of that size (moq.transport.pmtu).

    aioquic reads the size afresh for each batch of packets it builds; its congestion controller keeps counting
    in units of the initial size, which only makes its window's granularity a little coarser.
    """
    quic._max_datagram_size = size


def pto_count(quic: QuicConnection) -> int:
    """Probe timeouts in a row with nothing acknowledged (RFC 9002 §6.2; 0 again once something is)."""
    return int(quic._loss._pto_count)


def watch_lost_packets(quic: QuicConnection, callback: Callable[[list[QuicSentPacket]], None]) -> None:
    """Call `callback(packets)` with the in-flight packets each time aioquic's loss detection declares some lost
    (the congestion controller's `on_packets_lost`; packets a probe timeout only retransmits are not among them).
    Called inside aioquic: the callback must only take note."""
    controller = quic._loss._cc
    report = controller.on_packets_lost

    def on_packets_lost(*, now: float, packets: Iterable[QuicSentPacket]) -> None:
        packets = list(packets)
        callback(packets)
        report(now=now, packets=packets)

    controller.on_packets_lost = on_packets_lost  # type: ignore[method-assign]


def current_network_path(quic: QuicConnection) -> object | None:
    """The network path packets go on now (an opaque token: a new object once the peer's address changes)."""
    paths = quic._network_paths
    return paths[0] if paths else None


def peer_max_udp_payload_size(quic: QuicConnection) -> int:
    """The peer's max_udp_payload_size transport parameter (RFC 9000 §18.2), 65527 when it sent none.

    aioquic validates the parameter and then forgets it, so it is read again from the TLS extension.
    """
    tls = getattr(quic, "tls", None)
    for ext_type, ext_data in getattr(tls, "received_extensions", None) or ():
        if ext_type == aioquic_tls.ExtensionType.QUIC_TRANSPORT_PARAMETERS:
            try:
                parameters = pull_quic_transport_parameters(Buffer(data=ext_data))
            except (BufferReadError, ValueError):
                break
            if parameters.max_udp_payload_size is not None:
                return int(parameters.max_udp_payload_size)
            break
    return DEFAULT_MAX_UDP_PAYLOAD_SIZE


class _ProbeBuilder(QuicPacketBuilder):
    """A packet builder whose packets are not in flight: neither counted against the congestion window nor, once
    lost, a congestion signal (RFC 9000 §14.4: the loss of a PMTU probe says nothing about congestion)."""

    def flush(self) -> tuple[list[bytes], list[QuicSentPacket]]:
        datagrams, packets = super().flush()
        for packet in packets:
            packet.in_flight = False
        return datagrams, packets


def send_padded_ping(
    quic: QuicConnection, size: int, now: float, handler: Callable[..., None], *args: Any
) -> list[tuple[bytes, NetworkAddress]]:
    """Build one 1-RTT packet of exactly `size` bytes, a PING padded with PADDING frames (a PMTU probe, RFC 9000
    §14.4), and register it with aioquic's loss recovery; return the datagram to send and its address.

    `handler(QuicDeliveryState, *args)` is called once the packet is acknowledged or declared lost. Nothing is
    built before the handshake is confirmed or once the connection is closing. Must not be called from inside
    aioquic (between `receive_datagram()` and `datagrams_to_send()` is fine).
    """
    if quic._state in END_STATES or not handshake_confirmed(quic) or not quic._network_paths:
        return []
    crypto = quic._cryptos[aioquic_tls.Epoch.ONE_RTT]
    if not crypto.send.is_valid() or quic._version is None:
        return []
    builder = _ProbeBuilder(
        host_cid=quic.host_cid,
        is_client=quic._is_client,
        max_datagram_size=size,
        packet_number=quic._packet_number,
        peer_cid=quic._peer_cid.cid,
        quic_logger=quic._quic_logger,
        spin_bit=quic._spin_bit,
        version=quic._version,
    )
    builder.start_packet(QuicPacketType.ONE_RTT, crypto)
    builder.start_frame(QuicFrameType.PING, handler=handler, handler_args=args)
    # The packet is padded inside, to the builder's whole size (what aioquic does for PATH_CHALLENGE at 1200).
    builder._datagram_needs_padding = True
    datagrams: list[tuple[bytes, NetworkAddress]] = quic._flush_builder(
        builder=builder, network_path=quic._network_paths[0], peer_cid=quic._peer_cid.cid, now=now
    )
    return datagrams


def check_compatibility(quic: QuicConnection) -> None:
    """Raise AttributeError if an aioquic internal used by this module is missing (call with a live connection)."""
    for name in (
        "_remote_max_streams_uni",
        "_remote_max_streams_bidi",
        "_streams",
        "_streams_blocked_uni",
        "_streams_blocked_bidi",
        "_remote_max_datagram_frame_size",
        "_remote_max_data",
        "_remote_max_data_used",
        "_loss",
        "_datagrams_pending",
        "_close_event",
        "_close_pending",
        "_state",
        "_handshake_confirmed",
        "_max_datagram_size",
        "_cryptos",
        "_packet_number",
        "_peer_cid",
        "_network_paths",
        "_spin_bit",
        "_flush_builder",
    ):
        if not hasattr(quic, name):
            raise AttributeError(f"aioquic QuicConnection has no {name}: moq.transport._aioquic needs updating")
    for name in ("congestion_window", "bytes_in_flight", "_pto_count", "_cc"):
        if not hasattr(quic._loss, name):
            raise AttributeError(f"aioquic QuicPacketRecovery has no {name}: moq.transport._aioquic needs updating")
    if not hasattr(
        QuicPacketBuilder(host_cid=b"", peer_cid=b"", version=1, is_client=True, max_datagram_size=1200),
        "_datagram_needs_padding",
    ):
        raise AttributeError(
            "aioquic QuicPacketBuilder has no _datagram_needs_padding: moq.transport._aioquic needs updating"
        )
    sender = QuicStreamSender(stream_id=0, writable=True)
    for name in ("_buffer_start", "_buffer_stop", "_buffer_fin", "_reset_error_code", "highest_offset", "is_finished"):
        if not hasattr(sender, name):
            raise AttributeError(f"aioquic QuicStreamSender has no {name}: moq.transport._aioquic needs updating")
    if not hasattr(QuicStream(stream_id=0), "max_stream_data_remote"):
        raise AttributeError("aioquic QuicStream has no max_stream_data_remote: moq.transport._aioquic needs updating")
    tls = getattr(quic, "tls", None)
    if tls is not None and not hasattr(tls, "_peer_certificate"):
        raise AttributeError("aioquic tls.Context has no _peer_certificate: moq.transport._aioquic needs updating")
