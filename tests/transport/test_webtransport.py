"""WebTransport-specific behaviour: streams that arrive before their session, drain capsules, refusals."""

from __future__ import annotations

import asyncio
import logging

import pytest

from moq.transport import (
    CertificateBundle,
    SessionDraining,
    StreamDataReceived,
    StreamOpened,
    WebTransportConnection,
    WebTransportRejected,
    connect,
    serve,
    wtproto,
)
from tests.transport.helpers import EVENT_TIMEOUT, finish, next_event_of, run, server_and_client, url_for

pytestmark = pytest.mark.network


def test_stream_before_connect_is_held_then_delivered(
    certificate: CertificateBundle, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A client may open streams before the server has seen its CONNECT (draft §4.6): they wait, bounded."""
    original = WebTransportConnection._send_connect

    def send_stream_first(self: WebTransportConnection) -> None:
        session_id = self._quic.get_next_available_stream_id()  # the CONNECT stream to come
        early = self._h3.create_webtransport_stream(session_id, is_unidirectional=True)
        self._quic.send_stream_data(early, b"early bird", end_stream=True)
        stray = self._h3.create_webtransport_stream(session_id + 400, is_unidirectional=True)
        self._quic.send_stream_data(stray, b"no such session", end_stream=True)
        original(self)

    monkeypatch.setattr(WebTransportConnection, "_send_connect", send_stream_first)
    caplog.set_level(logging.DEBUG, logger="moq.transport.webtransport")

    async def scenario() -> None:
        async with server_and_client("webtransport", certificate) as (_, peer, _client):
            opened = await next_event_of(peer, StreamOpened)
            data = await next_event_of(peer, StreamDataReceived)
            assert data.stream_id == opened.stream_id
            assert (data.data, data.end_stream) == (b"early bird", True)
            assert isinstance(peer, WebTransportConnection) and peer._orphans == {}

    run(scenario())
    assert any("holding stream" in r.getMessage() for r in caplog.records)
    assert any("refusing stream" in r.getMessage() for r in caplog.records)


def test_drain_capsule_becomes_session_draining(certificate: CertificateBundle) -> None:
    async def scenario() -> None:
        async with server_and_client("webtransport", certificate) as (_, peer, client):
            assert isinstance(peer, WebTransportConnection) and peer.session_id is not None
            peer._h3.send_data(peer.session_id, wtproto.encode_capsule(wtproto.CAPSULE_DRAIN_SESSION, b""), False)
            peer._schedule_transmit()
            assert await next_event_of(client, SessionDraining) == SessionDraining()

    run(scenario())


def test_disallowed_origin_is_refused_with_403(certificate: CertificateBundle) -> None:
    async def scenario() -> None:
        server = await serve("127.0.0.1", 0, certificate=certificate, allowed_origins={"https://good.example"})
        try:
            url = url_for("webtransport", server.port)
            with pytest.raises(WebTransportRejected) as refused:
                await connect(url, fingerprint=certificate.fingerprint, origin="https://evil.example")
            assert refused.value.status == 403
            good = await connect(url, fingerprint=certificate.fingerprint, origin="https://good.example")
            peer = await asyncio.wait_for(server.accept(), EVENT_TIMEOUT)
            assert isinstance(peer, WebTransportConnection)
            assert ("origin", "https://good.example") in peer.request_headers
            await finish(good)
        finally:
            server.close()
            await server.wait_closed()

    run(scenario())
