"""MOQT over WebTransport over HTTP/3 (draft-ietf-moq-transport §6.2.1, draft-ietf-webtrans-http3).

aioquic's `H3Connection` does the HTTP/3 part (SETTINGS, QPACK, the CONNECT request and response, DATA frames
on the CONNECT stream). What it does not do, this module does:

- announce the WebTransport settings current browsers look for (WT_MAX_SESSIONS, WT_ENABLED, ...), by
  extending the SETTINGS aioquic builds (`_WebTransportH3`);
- negotiate the MOQT version through `WT-Available-Protocols` / `WT-Protocol` (structured fields);
- route WebTransport data streams itself: every QUIC event passes through `_route_*` first, and only HTTP/3
  streams (control, QPACK, CONNECT) reach `H3Connection`. This is needed because aioquic's H3 layer parses
  the *reply* half of a WebTransport bidi stream we opened as HTTP/3 frames, never surfaces resets or
  STOP_SENDING of WebTransport streams, and answers a reset of an unknown client bidi stream (on the server)
  with H3_REQUEST_INCOMPLETE;
- map stream error codes to and from the HTTP/3 space (draft §4.4), parse capsules on the CONNECT stream, and
  close the session with WT_CLOSE_SESSION (draft §6).

One WebTransport session per QUIC connection (we announce WT_MAX_SESSIONS = 1, so WebTransport flow-control
capsules are not in use, draft §5.1). Server side, streams that arrive before their CONNECT was processed are
buffered (a bounded number) and replayed once the session is accepted (draft §4.6).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Sequence

from aioquic.buffer import Buffer, BufferReadError, size_uint_var
from aioquic.h3 import events as h3_events
from aioquic.h3.connection import H3Connection
from aioquic.quic import events as quic_events
from aioquic.quic.connection import stream_is_unidirectional

from moq.transport import wtproto
from moq.transport.base import (
    MAX_INFLIGHT_UNI_STREAMS,
    MoqtQuicProtocol,
    PeerStreamIds,
    SendSide,
    TransportConnection,
    truncate_reason,
)
from moq.transport.errors import ConnectError, VersionNegotiationFailed, WebTransportRejected
from moq.transport.events import SessionClosed, SessionDraining
from moq.transport.quic import ALPN_FAILURE, handshake_error
from moq.wire.version import Version, choose_version

__all__ = [
    "CLOSE_GRACE_SECONDS",
    "MAX_ORPHAN_BYTES_PER_STREAM",
    "MAX_ORPHAN_STREAMS",
    "WEBTRANSPORT_EXTRA_SETTINGS",
    "WebTransportConnection",
    "supports_webtransport",
]

#: After sending WT_CLOSE_SESSION we wait this long for the peer to close the CONNECT stream before closing the
#: QUIC connection (draft §6: closing at once could make the peer see CONNECTION_CLOSE first, losing the code).
CLOSE_GRACE_SECONDS = 1.0

#: Server: WebTransport streams that may wait for their session's CONNECT to be processed (draft §4.6 requires
#: a limit), and how many bytes each may hold meanwhile. Beyond that they are refused with
#: WT_BUFFERED_STREAM_REJECTED.
MAX_ORPHAN_STREAMS = 32
MAX_ORPHAN_BYTES_PER_STREAM = 65536

#: The settings aioquic does not send by itself. aioquic sends ENABLE_CONNECT_PROTOCOL, H3_DATAGRAM and the
#: draft-02 ENABLE_WEBTRANSPORT; Chromium and Safari look for these newer ones (PLATFORM.md, DIGEST.md §1).
#: One session per connection: a value of 1 also keeps WebTransport flow control off.
WEBTRANSPORT_EXTRA_SETTINGS: dict[int, int] = {
    wtproto.SETTING_WEBTRANSPORT_MAX_SESSIONS_DRAFT07: 1,
    wtproto.SETTING_WT_MAX_SESSIONS: 1,
    wtproto.SETTING_WT_ENABLED: 1,
}

_WT_ENABLE_SETTINGS = (
    wtproto.SETTING_ENABLE_WEBTRANSPORT,
    wtproto.SETTING_WEBTRANSPORT_MAX_SESSIONS_DRAFT07,
    wtproto.SETTING_WT_MAX_SESSIONS,
    wtproto.SETTING_WT_ENABLED,
)


def supports_webtransport(settings: dict[int, int]) -> bool:
    """Whether a peer's HTTP/3 SETTINGS allow WebTransport: extended CONNECT, HTTP datagrams, any WT setting."""
    return (
        settings.get(wtproto.SETTING_ENABLE_CONNECT_PROTOCOL) == 1
        and settings.get(wtproto.SETTING_H3_DATAGRAM) == 1
        and any(settings.get(setting, 0) >= 1 for setting in _WT_ENABLE_SETTINGS)
    )


class _WebTransportH3(H3Connection):
    """aioquic's H3Connection, announcing the WebTransport settings it does not know about.

    aioquic builds its SETTINGS frame in `_get_local_settings()` and sends it from the constructor, so
    extending that method is the one place to add settings (there is no public hook).
    """

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        settings.update(WEBTRANSPORT_EXTRA_SETTINGS)
        return settings


def _decode_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(name.decode("ascii", "replace").lower(), value.decode("utf-8", "replace")) for name, value in headers]


def _first(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in headers if key == name), None)


class WebTransportConnection(TransportConnection):
    """A MOQT session over a WebTransport session (the only one on its HTTP/3 connection)."""

    transport_kind = "webtransport"

    def __init__(
        self,
        protocol: MoqtQuicProtocol,
        *,
        is_client: bool,
        versions: Sequence[Version],
        max_inflight_uni_streams: int = MAX_INFLIGHT_UNI_STREAMS,
        authority: str | None = None,
        path: str | None = None,
        pinned_fingerprint: bytes | None = None,
        origin: str | None = None,
        allowed_origins: Collection[str] | None = None,
    ) -> None:
        """`versions`: offered (client) or accepted (server), best first.

        Client: `authority`/`path` go into the CONNECT request, with `origin` if given.
        Server: `allowed_origins`, if given, refuses other Origins with 403 (draft §3.2); None accepts any.
        """
        super().__init__(
            protocol,
            is_client=is_client,
            max_inflight_uni_streams=max_inflight_uni_streams,
            authority=authority,
            path=path,
            pinned_fingerprint=pinned_fingerprint,
        )
        self._versions = tuple(versions)
        self._origin = origin
        self._allowed_origins = frozenset(allowed_origins) if allowed_origins is not None else None
        self._h3 = _WebTransportH3(self._quic, enable_webtransport=True)
        #: The CONNECT stream's id, which is the WebTransport session id.
        self.session_id: int | None = None
        #: Server: the CONNECT request's headers (lower-case names), e.g. to read `origin`.
        self.request_headers: list[tuple[str, str]] = []

        self._h3_streams: set[int] = set()  # streams that belong to the HTTP/3 layer
        self._classifying: dict[int, bytearray] = {}  # peer streams whose first bytes are not in yet
        self._classified = PeerStreamIds()
        self._orphans: dict[int, tuple[int, list[quic_events.QuicEvent], int]] = {}  # id -> (session, events, bytes)
        self._capsules = wtproto.CapsuleParser()
        self._pending_request: h3_events.HeadersReceived | None = None
        self._handshake_done = False
        self._connect_sent = False
        self._connect_fin_sent = False
        self._connect_fin_received = False
        self._grace_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ public

    @property
    def h3_settings_sent(self) -> dict[int, int] | None:
        """The HTTP/3 SETTINGS we announced."""
        return self._h3.sent_settings

    @property
    def h3_settings_received(self) -> dict[int, int] | None:
        """The peer's HTTP/3 SETTINGS, once received."""
        return self._h3.received_settings

    def close(self, code: int = 0, reason: str = "") -> None:
        """Close the session with WT_CLOSE_SESSION(code, reason) and a FIN on the CONNECT stream (draft §6).

        The QUIC connection is closed when the peer has closed its side of the CONNECT stream, or after
        CLOSE_GRACE_SECONDS. `code` must fit in 32 bits (the capsule's field).
        """
        if not 0 <= code <= 0xFFFFFFFF:
            raise ValueError(f"WebTransport session close codes are 32-bit, got {code:#x}")
        if self._closed_event is not None:
            return
        reason = truncate_reason(reason, wtproto.MAX_CLOSE_REASON_BYTES)
        established = self._ready.done() and not self._ready.cancelled() and self._ready.exception() is None
        if established and self.session_id is not None and not self._connect_fin_sent:
            self._h3.send_data(self.session_id, wtproto.encode_close_session(code, reason), end_stream=True)
            self._connect_fin_sent = True
        self._abandon_streams()
        self._session_closed(SessionClosed(code=code, reason=reason, by_peer=False))
        if established and not self._connect_fin_received:
            self._grace_timer = self._loop.call_later(CLOSE_GRACE_SECONDS, self._close_quic)
            self._protocol.transmit()
        else:
            self._close_quic()

    # ------------------------------------------------------------------ hooks

    def _encode_code(self, code: int) -> int:
        return wtproto.app_code_to_http3(code)

    def _decode_code(self, wire: int) -> int | None:
        return wtproto.http3_to_app_code(wire)

    def _create_stream(self, unidirectional: bool) -> int:
        assert self.session_id is not None
        return self._h3.create_webtransport_stream(self.session_id, is_unidirectional=unidirectional)

    def _datagram_prefix_size(self) -> int:
        return size_uint_var((self.session_id or 0) // 4)

    def _send_datagram_now(self, data: bytes) -> None:
        assert self.session_id is not None
        self._h3.send_datagram(self.session_id, data)

    # ------------------------------------------------------------------ QUIC events: routing

    def _handle_quic_event(self, event: quic_events.QuicEvent) -> None:
        if isinstance(event, quic_events.StreamDataReceived):
            self._route_stream_data(event)
        elif isinstance(event, quic_events.DatagramFrameReceived):
            self._route_datagram(event.data)
        elif isinstance(event, quic_events.StreamReset):
            self._route_reset(event)
        elif isinstance(event, quic_events.StopSendingReceived):
            self._route_stop_sending(event)
        elif isinstance(event, quic_events.HandshakeCompleted):
            if self.is_client and self._certificate_rejected():
                return
            self._handshake_done = True
        elif isinstance(event, quic_events.ConnectionTerminated):
            self._on_quic_close(event, by_peer=False)
            self._connection_terminated()

    def _feed_h3(self, event: quic_events.QuicEvent) -> None:
        for h3_event in self._h3.handle_event(event):
            self._handle_h3_event(h3_event)

    def _route_stream_data(self, event: quic_events.StreamDataReceived) -> None:
        stream_id = event.stream_id
        if stream_id in self._h3_streams:
            self._feed_h3(event)
        elif stream_id in self._orphans:
            self._hold_orphan(stream_id, event, len(event.data))
        elif stream_id in self._classifying:
            self._classifying[stream_id] += event.data
            self._classify(stream_id, event.end_stream)
        elif not self._is_local(stream_id) and self._classified.is_new(stream_id):
            self._classified.mark(stream_id)
            self._classifying[stream_id] = bytearray(event.data)
            self._classify(stream_id, event.end_stream)
        else:
            # Our own bidi streams, and peer streams already known to be WebTransport streams.
            self._on_stream_data(stream_id, event.data, event.end_stream)

    def _classify(self, stream_id: int, end_stream: bool) -> None:
        """Decide from its first bytes whether a peer stream is a WebTransport stream or an HTTP/3 one."""
        data = self._classifying[stream_id]
        buf = Buffer(data=bytes(data[:16]))  # two QUIC varints take at most 16 bytes
        unidirectional = stream_is_unidirectional(stream_id)
        try:
            kind = buf.pull_uint_var()
            if kind != (wtproto.WT_UNI_STREAM_TYPE if unidirectional else wtproto.WT_BIDI_SIGNAL):
                del self._classifying[stream_id]
                self._h3_streams.add(stream_id)
                self._peer_ids.mark(stream_id)
                self._feed_h3(
                    quic_events.StreamDataReceived(data=bytes(data), end_stream=end_stream, stream_id=stream_id)
                )
                return
            session_id = buf.pull_uint_var()
        except BufferReadError:
            if end_stream:  # ended before its header was complete: nothing to deliver
                del self._classifying[stream_id]
                self._peer_ids.mark(stream_id)
            return
        del self._classifying[stream_id]
        self._adopt(stream_id, session_id, bytes(data[buf.tell() :]), end_stream)

    def _adopt(self, stream_id: int, session_id: int, data: bytes, end_stream: bool) -> None:
        """A peer WebTransport stream with its header parsed: deliver, hold until the session exists, or refuse."""
        if self.session_id is not None and session_id == self.session_id and self._closed_event is None:
            if data or end_stream:
                self._on_stream_data(stream_id, data, end_stream)
            else:
                self._peer_stream(stream_id)  # announce it now; its data comes later
            return
        awaiting_session = self.session_id is None and not self.is_client and self._closed_event is None
        if awaiting_session and len(self._orphans) < MAX_ORPHAN_STREAMS:
            self.log.debug("holding stream %d until session %d is accepted", stream_id, session_id)
            self._orphans[stream_id] = (session_id, [], 0)
            if data or end_stream:
                self._hold_orphan(
                    stream_id,
                    quic_events.StreamDataReceived(data=data, end_stream=end_stream, stream_id=stream_id),
                    len(data),
                )
            return
        self._refuse_stream(stream_id, session_id)

    def _hold_orphan(self, stream_id: int, event: quic_events.QuicEvent, size: int) -> None:
        session_id, held, held_bytes = self._orphans[stream_id]
        if held_bytes + size > MAX_ORPHAN_BYTES_PER_STREAM:
            del self._orphans[stream_id]
            self._refuse_stream(stream_id, session_id)
            return
        held.append(event)
        self._orphans[stream_id] = (session_id, held, held_bytes + size)

    def _refuse_stream(self, stream_id: int, session_id: int) -> None:
        unknown = self.session_id is None or session_id != self.session_id
        code = wtproto.WT_BUFFERED_STREAM_REJECTED if unknown else wtproto.WT_SESSION_GONE
        self.log.debug("refusing stream %d of session %d (code %#x)", stream_id, session_id, code)
        self._peer_ids.mark(stream_id)
        with contextlib.suppress(ValueError):  # already fully received and discarded by aioquic
            self._quic.stop_stream(stream_id, code)
        if not stream_is_unidirectional(stream_id):
            self._quic.reset_stream(stream_id, code)
        self._schedule_transmit()

    def _replay_orphans(self) -> None:
        orphans, self._orphans = self._orphans, {}
        for stream_id, (session_id, held, _) in orphans.items():
            if session_id != self.session_id:
                self._refuse_stream(stream_id, session_id)
                continue
            if not held:
                self._peer_stream(stream_id)
            for event in held:
                if isinstance(event, quic_events.StreamDataReceived):
                    self._on_stream_data(stream_id, event.data, event.end_stream)
                elif isinstance(event, quic_events.StreamReset):
                    self._on_stream_reset(stream_id, event.error_code)
                elif isinstance(event, quic_events.StopSendingReceived):
                    self._on_stop_sending(stream_id, event.error_code)

    def _route_reset(self, event: quic_events.StreamReset) -> None:
        stream_id = event.stream_id
        if stream_id == self.session_id:
            self._feed_h3(event)
            self._connect_stream_gone(f"CONNECT stream reset (code {event.error_code:#x})", event.error_code)
        elif stream_id in self._h3_streams:
            self._feed_h3(event)
        elif stream_id in self._orphans:
            self._hold_orphan(stream_id, event, 0)
        elif stream_id in self._classifying:
            # Reset before its header was complete (aioquic has no RESET_STREAM_AT): it cannot be attributed.
            del self._classifying[stream_id]
            self._peer_ids.mark(stream_id)
        elif not self._is_local(stream_id) and self._classified.is_new(stream_id):
            self._classified.mark(stream_id)
            self._peer_ids.mark(stream_id)
        else:
            self._on_stream_reset(stream_id, event.error_code)

    def _route_stop_sending(self, event: quic_events.StopSendingReceived) -> None:
        stream_id = event.stream_id
        if stream_id == self.session_id:
            self._feed_h3(event)
            if self._closed_event is None:
                self._connect_stream_gone(f"CONNECT stream stopped (code {event.error_code:#x})", event.error_code)
        elif stream_id in self._h3_streams:
            self._feed_h3(event)
        elif stream_id in self._orphans:
            self._hold_orphan(stream_id, event, 0)
        elif stream_id not in self._classifying:
            self._on_stop_sending(stream_id, event.error_code)

    def _route_datagram(self, data: bytes) -> None:
        buf = Buffer(data=data)
        try:
            quarter_stream_id = buf.pull_uint_var()
        except BufferReadError:
            return
        if self.session_id is not None and quarter_stream_id * 4 == self.session_id and self._closed_event is None:
            self._on_datagram(data[buf.tell() :])
        else:
            self.log.debug("dropping datagram for unknown session %d", quarter_stream_id * 4)

    # ------------------------------------------------------------------ HTTP/3 events

    def _handle_h3_event(self, event: h3_events.H3Event) -> None:
        if isinstance(event, h3_events.HeadersReceived):
            if self.is_client:
                if event.stream_id == self.session_id:
                    self._on_connect_response(event)
            else:
                self._on_request(event)
        elif isinstance(event, h3_events.DataReceived) and event.stream_id == self.session_id:
            self._on_capsule_data(event.data, event.stream_ended)

    def _after_receive(self) -> None:
        super()._after_receive()
        if self._closed_event is not None or self._h3.received_settings is None:
            return
        if self.is_client and self._handshake_done and not self._connect_sent:
            self._send_connect()
        elif self._pending_request is not None:
            # The request came before the client's SETTINGS; the draft has us wait for them (§3.1).
            request, self._pending_request = self._pending_request, None
            self._on_request(request)

    # --- client side

    def _send_connect(self) -> None:
        self._connect_sent = True
        settings = self._h3.received_settings or {}
        if not supports_webtransport(settings):
            self._fail_ready(ConnectError(f"the server's HTTP/3 SETTINGS do not enable WebTransport: {settings}"))
            self._session_closed(SessionClosed(code=None, reason="no WebTransport support", by_peer=False))
            self._close_quic()
            return
        stream_id = self._quic.get_next_available_stream_id()
        self.session_id = stream_id
        self._h3_streams.add(stream_id)
        headers = [
            (b":method", b"CONNECT"),
            (b":protocol", b"webtransport"),
            (b":scheme", b"https"),
            (b":authority", (self.authority or "").encode()),
            (b":path", (self.path or "/").encode()),
            (b"wt-available-protocols", wtproto.serialize_sf_string_list(v.alpn for v in self._versions).encode()),
        ]
        if self._origin is not None:
            headers.append((b"origin", self._origin.encode()))
        self._h3.send_headers(stream_id, headers)
        self.log.debug("CONNECT %s offering %s", self.path, [v.alpn for v in self._versions])
        self._schedule_transmit()

    def _on_connect_response(self, event: h3_events.HeadersReceived) -> None:
        if self._ready.done():
            return  # trailers or a second HEADERS: nothing for us
        headers = _decode_headers(event.headers)
        offered = [v.alpn for v in self._versions]
        try:
            status = int(_first(headers, ":status") or "0")
        except ValueError:
            status = 0
        if 100 <= status < 200:
            return  # interim response
        if not 200 <= status < 300:
            server_list_field = [value for key, value in headers if key == "wt-available-protocols"]
            server_list = wtproto.parse_sf_string_list(server_list_field) if server_list_field else None
            if server_list is not None:
                error: ConnectError = VersionNegotiationFailed(offered, server_list, detail=f"HTTP status {status}")
            else:
                error = WebTransportRejected(status)
            self._fail_ready(error)
            self._session_closed(SessionClosed(code=None, reason=str(error), by_peer=True))
            self._close_quic()
            return
        answer = _first(headers, "wt-protocol")
        chosen = wtproto.parse_sf_string(answer) if answer is not None else None
        version = Version.from_alpn(chosen) if chosen in offered and chosen is not None else None
        if version is None:
            # draft-ietf-webtrans-http3 §3.3: a wt-protocol not among ours must be ignored, and then we do not
            # know which draft the server speaks: we cannot go on.
            self._fail_ready(VersionNegotiationFailed(offered, None, detail=f"server answered wt-protocol {answer!r}"))
            self.close(0x1, "no MOQT version negotiated")
            return
        self.log.info("client session %d established, version %s", self.session_id, version.alpn)
        self._mark_ready(version)

    # --- server side

    def _respond(
        self, stream_id: int, status: int, extra: Sequence[tuple[bytes, bytes]] = (), end: bool = True
    ) -> None:
        self._h3.send_headers(stream_id, [(b":status", str(status).encode()), *extra], end_stream=end)
        self._schedule_transmit()

    def _on_request(self, event: h3_events.HeadersReceived) -> None:
        headers = _decode_headers(event.headers)
        stream_id = event.stream_id
        method, protocol = _first(headers, ":method"), _first(headers, ":protocol")
        if method != "CONNECT" or protocol != "webtransport" or event.stream_ended:
            self.log.debug("answering %s %s with 404", method, _first(headers, ":path"))
            self._respond(stream_id, 404 if method != "CONNECT" else 400)
            self._h3_streams.discard(stream_id)
            return
        if self.session_id is not None or self._closed_event is not None:
            # One session per connection (we announce WT_MAX_SESSIONS = 1): draft §5.2 says reset the extra
            # CONNECT stream with H3_REQUEST_REJECTED.
            self._quic.reset_stream(stream_id, wtproto.H3_REQUEST_REJECTED)
            self._quic.stop_stream(stream_id, wtproto.H3_REQUEST_REJECTED)
            self._h3_streams.discard(stream_id)
            self._schedule_transmit()
            return
        if self._h3.received_settings is None:
            self._pending_request = event
            return
        origin = _first(headers, "origin")
        if self._allowed_origins is not None and origin is not None and origin not in self._allowed_origins:
            self.log.warning("refusing WebTransport session from origin %r", origin)
            self._respond(stream_id, 403)
            return
        ours = [v.alpn for v in self._versions]
        field = [value for key, value in headers if key == "wt-available-protocols"]
        offered = wtproto.parse_sf_string_list(field) if field else None
        version = choose_version(self._versions, offered) if offered else None
        if version is None:
            # Our convention: the refusal names the protocols we speak, so the client can report both lists.
            self.log.warning("refusing WebTransport session: client offered %s, we speak %s", offered, ours)
            self._respond(
                stream_id, 400, [(b"wt-available-protocols", wtproto.serialize_sf_string_list(ours).encode())]
            )
            self._grace_timer = self._loop.call_later(CLOSE_GRACE_SECONDS, self._close_quic)
            return
        self.session_id = stream_id
        self.authority = _first(headers, ":authority")
        self.path = _first(headers, ":path")
        self.request_headers = headers
        self._respond(
            stream_id,
            200,
            [
                (b"wt-protocol", wtproto.serialize_sf_string(version.alpn).encode()),
                # Chromium before WebTransport draft-07 insisted on this; harmless for the others.
                (b"sec-webtransport-http3-draft", b"draft02"),
            ],
            end=False,
        )
        self.log.info("server session %d established on %s, version %s", stream_id, self.path, version.alpn)
        self._mark_ready(version)
        self._replay_orphans()

    # --- session termination

    def _on_capsule_data(self, data: bytes, stream_ended: bool) -> None:
        try:
            capsules = self._capsules.feed(data)
        except wtproto.CapsuleTooLarge as exc:
            self.log.warning("closing: %s", exc)
            self._quic.reset_stream(self.session_id or 0, wtproto.H3_MESSAGE_ERROR)
            self._connect_stream_gone(str(exc), None)
            return
        for capsule_type, payload in capsules:
            if capsule_type == wtproto.CAPSULE_CLOSE_SESSION:
                try:
                    code, reason = wtproto.decode_close_session(payload)
                except ValueError:
                    code, reason = 0, ""
                self._peer_closed(code, reason)
            elif capsule_type == wtproto.CAPSULE_DRAIN_SESSION and self._closed_event is None:
                self._emit(SessionDraining())
            # Other capsules (flow control is off, GREASE, ...) are ignored (RFC 9297 §3.2).
        if stream_ended:
            self._connect_fin_received = True
            # A FIN without WT_CLOSE_SESSION means code 0 and an empty reason (draft §6).
            self._peer_closed(0, "")

    def _peer_closed(self, code: int, reason: str) -> None:
        if self._closed_event is None:
            self._session_closed(SessionClosed(code=code, reason=reason, by_peer=True))
            self._abandon_streams()
        # We did not start the close (or we did and this is the peer's answer): either way the exchange is over.
        self._close_quic()

    def _connect_stream_gone(self, why: str, wire_code: int | None) -> None:
        if self._closed_event is None:
            self._session_closed(SessionClosed(code=None, reason=why, by_peer=True, transport_code=wire_code))
            self._abandon_streams()
        self._close_quic()

    def _abandon_streams(self) -> None:
        """Reset and stop every stream of the ended session with WT_SESSION_GONE (draft §6)."""
        for stream_id, stream in list(self._streams.items()):
            if stream.send in (SendSide.OPEN, SendSide.FINISHED):
                self._quic.reset_stream(stream_id, wtproto.WT_SESSION_GONE)
            if stream.receiving:
                with contextlib.suppress(ValueError):
                    self._quic.stop_stream(stream_id, wtproto.WT_SESSION_GONE)
        # A stream whose FIN is still queued in the send scheduler is no longer in _streams, yet unfinished.
        for stream_id in self._queues.keys() - self._streams.keys():
            self._quic.reset_stream(stream_id, wtproto.WT_SESSION_GONE)
        self._streams.clear()
        self._inflight_uni.clear()

    def _close_quic(self) -> None:
        timer = self._grace_timer
        if timer is not None:
            self._grace_timer = None
            timer.cancel()
        self._quic.close(error_code=wtproto.H3_NO_ERROR)
        self._protocol.transmit()

    def _on_quic_close(self, close: quic_events.ConnectionTerminated, by_peer: bool) -> None:
        if self._closed_event is not None:
            return
        if not self._ready.done():
            if close.error_code == ALPN_FAILURE:
                self._fail_ready(
                    ConnectError(f"the server does not speak HTTP/3 (ALPN h3 refused): {close.reason_phrase}")
                )
            else:
                self._fail_ready(handshake_error(close, ["h3"]))
        if close.frame_type is None and close.error_code in (0, wtproto.H3_NO_ERROR):
            # A clean HTTP/3 shutdown ends the session like a FIN on the CONNECT stream: code 0 (draft §6).
            event = SessionClosed(code=0, reason=close.reason_phrase, by_peer=by_peer)
        else:
            event = SessionClosed(
                code=None, reason=close.reason_phrase, by_peer=by_peer, transport_code=close.error_code
            )
        self._session_closed(event)
