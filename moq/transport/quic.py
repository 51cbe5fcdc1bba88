"""MOQT directly over QUIC (draft-ietf-moq-transport §6.2.2).

The MOQT version is the TLS ALPN (`moqt-22`, `moqt-21`, ...; §6.2): the client offers its list, the server picks
the first of its own list that the client offered. With no common ALPN, TLS fails (alert
no_application_protocol, QUIC error 0x178) and our server puts its ALPN list in the CONNECTION_CLOSE reason
phrase, which the client turns into `VersionNegotiationFailed` naming both lists.

Streams, codes and datagrams go to QUIC untouched; the session is closed with an application CONNECTION_CLOSE
carrying the MOQT termination code (§6.6).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from aioquic.quic import events as quic_events
from aioquic.quic.packet import QuicErrorCode

from moq.transport.base import MAX_INFLIGHT_UNI_STREAMS, MoqtQuicProtocol, TransportConnection, truncate_reason
from moq.transport.errors import ConnectError, VersionNegotiationFailed
from moq.transport.events import SessionClosed
from moq.wire.version import Version

__all__ = [
    "ALPN_FAILURE",
    "QuicTransportConnection",
    "format_alpn_refusal",
    "handshake_error",
    "parse_alpn_refusal",
]

#: QUIC error of a TLS no_application_protocol alert (CRYPTO_ERROR 0x100 + alert 120, RFC 9001 §4.8).
ALPN_FAILURE = QuicErrorCode.CRYPTO_ERROR + 120

_REFUSAL_PREFIX = "no common MOQT version; server offers: "
_REFUSAL_RE = re.compile(re.escape(_REFUSAL_PREFIX) + r"(.*)$")


def format_alpn_refusal(server_alpns: Sequence[str]) -> str:
    """The CONNECTION_CLOSE reason our server sends when ALPN negotiation fails."""
    return _REFUSAL_PREFIX + ", ".join(server_alpns)


def parse_alpn_refusal(reason: str) -> list[str] | None:
    """The server's ALPN list from a `format_alpn_refusal` reason (None if the reason is not one)."""
    match = _REFUSAL_RE.search(reason)
    if match is None:
        return None
    return [alpn for alpn in (part.strip() for part in match.group(1).split(",")) if alpn]


def handshake_error(close: quic_events.ConnectionTerminated, offered_alpns: Sequence[str]) -> ConnectError:
    """The exception for a QUIC connection closed before it was established."""
    code = close.error_code
    if code == ALPN_FAILURE:
        server = parse_alpn_refusal(close.reason_phrase)
        return VersionNegotiationFailed(offered_alpns, server, detail="" if server is not None else close.reason_phrase)
    if QuicErrorCode.CRYPTO_ERROR <= code <= QuicErrorCode.CRYPTO_ERROR + 0xFF:
        alert = code - QuicErrorCode.CRYPTO_ERROR
        return ConnectError(f"TLS handshake failed (alert {alert}): {close.reason_phrase}")
    return ConnectError(
        f"connection closed during the handshake: {close.reason_phrase or 'no reason'} (code {code:#x})"
    )


class QuicTransportConnection(TransportConnection):
    """A MOQT session on its own QUIC connection (ALPN `moqt-NN`)."""

    transport_kind = "quic"

    def __init__(
        self,
        protocol: MoqtQuicProtocol,
        *,
        is_client: bool,
        offered: Sequence[Version],
        max_inflight_uni_streams: int = MAX_INFLIGHT_UNI_STREAMS,
        authority: str | None = None,
        path: str | None = None,
        pinned_fingerprint: bytes | None = None,
    ) -> None:
        """`offered`: the versions we offered (client) or accept (server), best first."""
        super().__init__(
            protocol,
            is_client=is_client,
            max_inflight_uni_streams=max_inflight_uni_streams,
            authority=authority,
            path=path,
            pinned_fingerprint=pinned_fingerprint,
        )
        self._offered = tuple(offered)

    def close(self, code: int = 0, reason: str = "") -> None:
        """Close with an application CONNECTION_CLOSE carrying the MOQT code (draft §6.6)."""
        self._encode_code(code)
        if self._closed_event is not None:
            return
        reason = truncate_reason(reason)
        self._quic.close(error_code=code, reason_phrase=reason)
        self._session_closed(SessionClosed(code=code, reason=reason, by_peer=False))
        self._protocol.transmit()

    def _handle_quic_event(self, event: quic_events.QuicEvent) -> None:
        if isinstance(event, quic_events.StreamDataReceived):
            self._on_stream_data(event.stream_id, event.data, event.end_stream)
        elif isinstance(event, quic_events.DatagramFrameReceived):
            self._on_datagram(event.data)
        elif isinstance(event, quic_events.StreamReset):
            self._on_stream_reset(event.stream_id, event.error_code)
        elif isinstance(event, quic_events.StopSendingReceived):
            self._on_stop_sending(event.stream_id, event.error_code)
        elif isinstance(event, quic_events.ProtocolNegotiated):
            self._version = Version.from_alpn(event.alpn_protocol or "")
        elif isinstance(event, quic_events.HandshakeCompleted):
            self._on_handshake_completed(event)
        elif isinstance(event, quic_events.ConnectionTerminated):
            self._on_quic_close(event, by_peer=False)
            self._connection_terminated()

    def _on_handshake_completed(self, event: quic_events.HandshakeCompleted) -> None:
        if self.is_client and self._certificate_rejected():
            return
        version = Version.from_alpn(event.alpn_protocol or "")
        if version is None or version not in self._offered:
            # Only a broken server picks an ALPN we did not offer; TLS should already have refused it.
            self._fail_ready(VersionNegotiationFailed([v.alpn for v in self._offered], [str(event.alpn_protocol)]))
            self._quic.close(error_code=ALPN_FAILURE, reason_phrase="unexpected ALPN")
            self._protocol.transmit()
            return
        self.log.info("%s session established, version %s", "client" if self.is_client else "server", version.alpn)
        self._mark_ready(version)

    def _on_quic_close(self, close: quic_events.ConnectionTerminated, by_peer: bool) -> None:
        if self._closed_event is not None:
            return
        if not self._ready.done():
            self._fail_ready(handshake_error(close, [v.alpn for v in self._offered]))
        if close.frame_type is None:
            # An application CONNECTION_CLOSE: its code is the MOQT session termination code.
            event = SessionClosed(code=close.error_code, reason=close.reason_phrase, by_peer=by_peer)
        else:
            event = SessionClosed(
                code=None, reason=close.reason_phrase, by_peer=by_peer, transport_code=close.error_code
            )
        self._session_closed(event)
