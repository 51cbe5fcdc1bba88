"""Transports for MOQT sessions: raw QUIC and WebTransport over HTTP/3, on aioquic.

This package is the only part of `moq` that touches aioquic's asyncio layer (DESIGN.md, the import rule).
A session sees one `TransportConnection` interface whichever transport it rides on:

    connection = await connect("moqt://relay.example:4443/live", fingerprint=pin)   # or https://...
    connection.version, connection.transport_kind, connection.authority, connection.path
    stream_id = await connection.open_uni_stream(priority=(subscriber_priority, publisher_priority, group))
    connection.send(stream_id, data, end_stream=True)   # queued, sent in priority order; never blocks
    await connection.wait_writable(max_buffered)       # back-pressure (see connection.buffered_bytes)
    connection.reset_stream(stream_id, code); connection.stop_sending(stream_id, code)
    connection.send_datagram(payload); connection.close(code, reason)
    async for event in connection: ...          # or connection.set_event_handler(session_feed)

and a server gets the same objects from `serve(...)` (handler or `await server.accept()`), on one UDP port
for both transports. Events and errors: `moq.transport.events`, `moq.transport.errors`.
"""

from moq.transport.base import (
    CONTROL_PRIORITY,
    MAX_INFLIGHT_UNI_STREAMS,
    MAX_QUIC_BUFFERED_BYTES,
    MAX_QUIC_UNSENT_BYTES,
    MAX_SCHEDULED_BYTES,
    ROUND_ROBIN_QUANTUM,
    Priority,
    TransportConnection,
    TransportKind,
)
from moq.transport.client import MoqtUrl, connect, parse_url
from moq.transport.errors import (
    CertificateMismatch,
    ConnectError,
    SessionClosedError,
    StreamStateError,
    TransportError,
    VersionNegotiationFailed,
    WebTransportRejected,
)
from moq.transport.events import (
    DatagramReceived,
    SessionClosed,
    SessionDraining,
    StopSendingReceived,
    StreamDataReceived,
    StreamOpened,
    StreamReset,
    TransportEvent,
)
from moq.transport.quic import QuicTransportConnection
from moq.transport.server import MoqtServer, serve
from moq.transport.tls import (
    CertificateBundle,
    generate_dev_certificate,
    load_certificate,
    load_or_create_dev_certificate,
)
from moq.transport.webtransport import WebTransportConnection

__all__ = [
    "CONTROL_PRIORITY",
    "MAX_INFLIGHT_UNI_STREAMS",
    "MAX_QUIC_BUFFERED_BYTES",
    "MAX_QUIC_UNSENT_BYTES",
    "MAX_SCHEDULED_BYTES",
    "ROUND_ROBIN_QUANTUM",
    "CertificateBundle",
    "CertificateMismatch",
    "ConnectError",
    "DatagramReceived",
    "MoqtServer",
    "MoqtUrl",
    "Priority",
    "QuicTransportConnection",
    "SessionClosed",
    "SessionClosedError",
    "SessionDraining",
    "StopSendingReceived",
    "StreamDataReceived",
    "StreamOpened",
    "StreamReset",
    "StreamStateError",
    "TransportConnection",
    "TransportError",
    "TransportEvent",
    "TransportKind",
    "VersionNegotiationFailed",
    "WebTransportConnection",
    "WebTransportRejected",
    "connect",
    "generate_dev_certificate",
    "load_certificate",
    "load_or_create_dev_certificate",
    "parse_url",
    "serve",
]
