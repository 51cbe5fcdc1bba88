"""The events a transport connection delivers to the session riding on it.

One vocabulary for raw QUIC and WebTransport. Every code in these events is an MOQT application code: on
WebTransport the transport has already mapped it back from the HTTP/3 error space (draft-ietf-webtrans-http3
§4.4). Where the wire carried a code that is not an application code (a WebTransport stream reset with
WT_SESSION_GONE, a QUIC transport error...), `code` is None and `wire_code` says what was on the wire.

Events are delivered in the order the network produced them (see `TransportConnection.next_event`). For a
peer-initiated stream, `StreamOpened` always comes before any other event of that stream. `SessionClosed` is
the last event of a connection.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "DatagramReceived",
    "SessionClosed",
    "SessionDraining",
    "StopSendingReceived",
    "StreamDataReceived",
    "StreamOpened",
    "StreamReset",
    "TransportEvent",
]


class StreamOpened(msgspec.Struct, frozen=True):
    """The peer opened a stream (its first data or reset follows)."""

    stream_id: int
    bidirectional: bool


class StreamDataReceived(msgspec.Struct, frozen=True):
    """Bytes arrived on a stream, in order; `end_stream` is the peer's FIN (`data` may then be empty)."""

    stream_id: int
    data: bytes
    end_stream: bool


class StreamReset(msgspec.Struct, frozen=True):
    """The peer abruptly ended its sending side of a stream (RESET_STREAM).

    `code` is the MOQT code the peer reset with, or None when the wire code is not an application code.
    """

    stream_id: int
    code: int | None
    wire_code: int


class StopSendingReceived(msgspec.Struct, frozen=True):
    """The peer asked us to stop sending on a stream (STOP_SENDING).

    The transport has already reset our sending side (echoing the peer's code, RFC 9000 §3.5); further
    `send()` calls on the stream are dropped silently.
    """

    stream_id: int
    code: int | None
    wire_code: int


class DatagramReceived(msgspec.Struct, frozen=True):
    """A datagram arrived (QUIC DATAGRAM, or an HTTP datagram of our WebTransport session)."""

    data: bytes


class SessionDraining(msgspec.Struct, frozen=True):
    """The peer asked us to wind the session down soon (WebTransport WT_DRAIN_SESSION capsule)."""


class SessionClosed(msgspec.Struct, frozen=True):
    """The session is over; nothing else will be delivered and nothing more can be sent.

    - `code`/`reason`: the MOQT session termination code and reason phrase (draft §13.1), from the QUIC
      CONNECTION_CLOSE (application variant) or the WebTransport CLOSE_WEBTRANSPORT_SESSION capsule. A
      WebTransport CONNECT stream closed with a FIN and no capsule counts as code 0, reason "".
      None when the session ended without an application code (transport error, idle timeout, ...).
    - `by_peer`: False when our own `close()` (or a local error) ended it.
    - `transport_code`: when `code` is None, the QUIC transport or HTTP/3 error code that ended it, if any.
    """

    code: int | None
    reason: str
    by_peer: bool
    transport_code: int | None = None


TransportEvent = (
    StreamOpened
    | StreamDataReceived
    | StreamReset
    | StopSendingReceived
    | DatagramReceived
    | SessionDraining
    | SessionClosed
)
