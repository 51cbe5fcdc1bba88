"""Every use of aioquic internals, in one place.

aioquic 1.x has no public API for some things a MOQT transport needs: the peer's current MAX_STREAMS, whether
a stream's sending side is fully acknowledged, the peer certificate, the datagram queue, or changing the reason
phrase of a pending CONNECTION_CLOSE. Each accessor below reads one private attribute and says why. If an aioquic
upgrade renames one, `check_compatibility()` (run by the tests) fails here, not somewhere deep in a session.
"""

from __future__ import annotations

from collections import deque

from aioquic.quic import events
from aioquic.quic.connection import QuicConnection, QuicConnectionState
from cryptography import x509

__all__ = [
    "blocked_stream_count",
    "check_compatibility",
    "closed_by_peer",
    "drop_oldest_datagrams",
    "peer_certificate",
    "peer_max_datagram_frame_size",
    "peer_stream_limit",
    "pending_close",
    "replace_pending_close_reason",
    "send_side_finished",
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


def check_compatibility(quic: QuicConnection) -> None:
    """Raise AttributeError if an aioquic internal used by this module is missing (call with a live connection)."""
    for name in (
        "_remote_max_streams_uni",
        "_remote_max_streams_bidi",
        "_streams",
        "_streams_blocked_uni",
        "_streams_blocked_bidi",
        "_remote_max_datagram_frame_size",
        "_datagrams_pending",
        "_close_event",
        "_close_pending",
        "_state",
    ):
        if not hasattr(quic, name):
            raise AttributeError(f"aioquic QuicConnection has no {name}: moq.transport._aioquic needs updating")
    tls = getattr(quic, "tls", None)
    if tls is not None and not hasattr(tls, "_peer_certificate"):
        raise AttributeError("aioquic tls.Context has no _peer_certificate: moq.transport._aioquic needs updating")
