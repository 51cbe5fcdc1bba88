"""Errors raised by the transport layer.

They follow DESIGN.md decision 6: API misuse (`StreamStateError`, an oversized datagram) raises at once; what the
network or the peer did surfaces as an event, or, while connecting, as one of the `ConnectError` family.
"""

from __future__ import annotations

from collections.abc import Sequence

from moq.errors import MoqError

__all__ = [
    "CertificateMismatch",
    "ConnectError",
    "SessionClosedError",
    "StreamStateError",
    "TransportError",
    "VersionNegotiationFailed",
    "WebTransportRejected",
]


class TransportError(MoqError):
    """Base of the transport layer's errors."""


class ConnectError(TransportError):
    """A session could not be established (network, TLS, HTTP/3 or negotiation failure)."""


class VersionNegotiationFailed(ConnectError):
    """Client and server have no MOQT version in common.

    `client_offered` is what we offered, best first. `server_offered` is the server's list, as it told us (the
    ALPN list in its CONNECTION_CLOSE reason on raw QUIC, its `wt-available-protocols` answer on WebTransport),
    or None when the server did not say.
    """

    def __init__(self, client_offered: Sequence[str], server_offered: Sequence[str] | None, detail: str = "") -> None:
        self.client_offered = tuple(client_offered)
        self.server_offered = tuple(server_offered) if server_offered is not None else None
        theirs = ", ".join(self.server_offered) if self.server_offered is not None else "(not disclosed)"
        message = f"no common MOQT version: client offered [{', '.join(self.client_offered)}], server offers [{theirs}]"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class CertificateMismatch(ConnectError):
    """The server's certificate is not the pinned one (SHA-256 fingerprint mismatch)."""


class WebTransportRejected(ConnectError):
    """The server answered the WebTransport CONNECT with a non-2xx status."""

    def __init__(self, status: int, detail: str = "") -> None:
        self.status = status
        super().__init__(f"WebTransport session refused with HTTP status {status}" + (f": {detail}" if detail else ""))


class SessionClosedError(TransportError):
    """An operation on a session that is already closed (or closing)."""


class StreamStateError(TransportError, ValueError):
    """API misuse: the stream is unknown, not ours to write, or already finished by us."""
