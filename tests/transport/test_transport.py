"""Raw QUIC and WebTransport, end to end on loopback (port 0), with the same assertions for both.

Every test runs against one server that answers both transports on one UDP port.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from moq.transport import (
    CertificateBundle,
    CertificateMismatch,
    ConnectError,
    DatagramReceived,
    SessionClosed,
    SessionClosedError,
    StopSendingReceived,
    StreamDataReceived,
    StreamOpened,
    StreamReset,
    StreamStateError,
    TransportConnection,
    TransportEvent,
    TransportKind,
    VersionNegotiationFailed,
    WebTransportConnection,
    _aioquic,
    connect,
    generate_dev_certificate,
    serve,
    wtproto,
)
from moq.wire.version import SUPPORTED_VERSIONS, Version
from tests.transport.helpers import (
    EVENT_TIMEOUT,
    KINDS,
    collect_until,
    finish,
    next_event_of,
    run,
    server_and_client,
    url_for,
)

pytestmark = pytest.mark.network


async def read_stream(connection: TransportConnection, stream_id: int | None = None) -> tuple[int, bytes]:
    """Concatenate one stream's data up to its FIN (the first stream with data, if `stream_id` is None)."""
    chunks: list[bytes] = []
    while True:
        event = await next_event_of(connection, StreamDataReceived)
        if stream_id is None:
            stream_id = event.stream_id
        if event.stream_id != stream_id:
            continue
        chunks.append(event.data)
        if event.end_stream:
            return stream_id, b"".join(chunks)


# ---------------------------------------------------------------------------------------------- negotiation


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("version", SUPPORTED_VERSIONS, ids=lambda v: v.alpn)
def test_each_version_alone_is_negotiated(
    kind: TransportKind, version: Version, certificate: CertificateBundle
) -> None:
    async def scenario() -> None:
        async with server_and_client(kind, certificate, client_versions=(version,)) as (_, peer, client):
            assert client.version == peer.version == version
            assert client.transport_kind == peer.transport_kind == kind

    run(scenario())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("server_versions", "client_versions", "expected"),
    [
        (SUPPORTED_VERSIONS, SUPPORTED_VERSIONS, Version.DRAFT_22),
        (SUPPORTED_VERSIONS, (Version.DRAFT_18, Version.DRAFT_20), Version.DRAFT_20),
        ((Version.DRAFT_21, Version.DRAFT_18), (Version.DRAFT_22, Version.DRAFT_18), Version.DRAFT_18),
    ],
    ids=["all", "client-18-20", "server-21-18"],
)
def test_best_common_version_wins(
    kind: TransportKind,
    server_versions: tuple[Version, ...],
    client_versions: tuple[Version, ...],
    expected: Version,
    certificate: CertificateBundle,
) -> None:
    async def scenario() -> None:
        async with server_and_client(
            kind, certificate, server_versions=server_versions, client_versions=client_versions
        ) as (_, peer, client):
            assert client.version == peer.version == expected

    run(scenario())


@pytest.mark.parametrize("kind", KINDS)
def test_no_common_version_names_both_lists(kind: TransportKind, certificate: CertificateBundle) -> None:
    async def scenario() -> None:
        server = await serve("127.0.0.1", 0, certificate=certificate, versions=(Version.DRAFT_22, Version.DRAFT_21))
        try:
            with pytest.raises(VersionNegotiationFailed) as failure:
                await connect(
                    url_for(kind, server.port),
                    versions=(Version.DRAFT_20, Version.DRAFT_18),
                    fingerprint=certificate.fingerprint,
                )
        finally:
            server.close()
            await server.wait_closed()
        error = failure.value
        print(f"\n{kind}: {error}")
        assert error.client_offered == ("moqt-20", "moqt-18")
        assert error.server_offered is not None
        assert error.server_offered[:2] == ("moqt-22", "moqt-21")
        assert "moqt-20, moqt-18" in str(error) and "moqt-22, moqt-21" in str(error)

    run(scenario())


# ---------------------------------------------------------------------------------------------- streams


@pytest.mark.parametrize("kind", KINDS)
def test_bidi_echo(kind: TransportKind, certificate: CertificateBundle) -> None:
    async def scenario() -> None:
        async with server_and_client(kind, certificate) as (_, peer, client):
            stream_id = await client.open_bidi_stream()
            client.send(stream_id, b"hello ")
            client.send(stream_id, b"relay", end_stream=True)

            opened = await next_event_of(peer, StreamOpened)
            assert opened == StreamOpened(stream_id=stream_id, bidirectional=True)
            _, request = await read_stream(peer, stream_id)
            assert request == b"hello relay"
            peer.send(stream_id, request.upper(), end_stream=True)

            _, answer = await read_stream(client, stream_id)
            assert answer == b"HELLO RELAY"

    run(scenario())


@pytest.mark.parametrize("kind", KINDS)
def test_uni_streams_both_ways(kind: TransportKind, certificate: CertificateBundle) -> None:
    async def scenario() -> None:
        async with server_and_client(kind, certificate) as (_, peer, client):
            up = await client.open_uni_stream()
            client.send(up, b"from client", end_stream=True)
            down = await peer.open_uni_stream()
            peer.send(down, b"from server", end_stream=True)

            opened = await next_event_of(peer, StreamOpened)
            assert opened == StreamOpened(stream_id=up, bidirectional=False)
            assert await read_stream(peer, up) == (up, b"from client")
            opened = await next_event_of(client, StreamOpened)
            assert opened == StreamOpened(stream_id=down, bidirectional=False)
            assert await read_stream(client, down) == (down, b"from server")

            with pytest.raises(StreamStateError):
                client.send(down, b"not ours to write")
            with pytest.raises(StreamStateError):
                client.send(up, b"after our FIN")
            with pytest.raises(StreamStateError):
                client.send(up + 400, b"never opened")

    run(scenario())


@pytest.mark.parametrize("kind", KINDS)
def test_one_megabyte_stream(kind: TransportKind, certificate: CertificateBundle) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB

    async def scenario() -> None:
        async with server_and_client(kind, certificate) as (_, peer, client):
            started = time.perf_counter()
            stream_id = await client.open_uni_stream()
            # Written in 16 KiB pieces, as a publisher would write objects.
            for offset in range(0, len(payload), 16384):
                client.send(stream_id, payload[offset : offset + 16384])
            client.send(stream_id, b"", end_stream=True)
            _, received = await read_stream(peer, stream_id)
            elapsed = time.perf_counter() - started
            assert received == payload
            print(f"\n{kind}: 1 MiB in {elapsed * 1000:.0f} ms ({len(payload) * 8 / elapsed / 1e6:.0f} Mbit/s)")

    run(scenario())


# ---------------------------------------------------------------------------------------------- datagrams


@pytest.mark.parametrize("kind", KINDS)
def test_datagrams_both_ways(kind: TransportKind, certificate: CertificateBundle) -> None:
    async def scenario() -> None:
        async with server_and_client(kind, certificate) as (_, peer, client):
            client.send_datagram(b"ping")
            assert await next_event_of(peer, DatagramReceived) == DatagramReceived(data=b"ping")
            peer.send_datagram(b"pong")
            assert await next_event_of(client, DatagramReceived) == DatagramReceived(data=b"pong")

            # The largest datagram that fits a packet goes through; one byte more is refused locally.
            largest = client.max_datagram_payload
            assert largest > 1000
            client.send_datagram(b"x" * largest)
            assert await next_event_of(peer, DatagramReceived) == DatagramReceived(data=b"x" * largest)
            with pytest.raises(ValueError):
                client.send_datagram(b"x" * (largest + 1))
            print(f"\n{kind}: max datagram payload {largest} bytes")

    run(scenario())


# ---------------------------------------------------------------------------------------------- codes


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("code", [0, 0x2A, 0x1D, 0x1E, 0x3E, 0xFFFFFFFF])
def test_reset_code_arrives_unchanged(kind: TransportKind, code: int, certificate: CertificateBundle) -> None:
    async def scenario() -> None:
        async with server_and_client(kind, certificate) as (_, peer, client):
            stream_id = await client.open_uni_stream()
            client.send(stream_id, b"partial object")
            # Wait until the peer has the stream, so the reset cannot overtake its header.
            await next_event_of(peer, StreamDataReceived)
            client.reset_stream(stream_id, code)
            reset = await next_event_of(peer, StreamReset)
            assert reset.stream_id == stream_id
            assert reset.code == code
            if kind == "webtransport":
                assert reset.wire_code == wtproto.app_code_to_http3(code)
            else:
                assert reset.wire_code == code
            client.send(stream_id, b"dropped: the stream was reset")  # no error, silently dropped

    run(scenario())


@pytest.mark.parametrize("kind", KINDS)
def test_stop_sending_code_arrives_unchanged(kind: TransportKind, certificate: CertificateBundle) -> None:
    async def scenario() -> None:
        async with server_and_client(kind, certificate) as (_, peer, client):
            stream_id = await client.open_bidi_stream()
            client.send(stream_id, b"SUBSCRIBE ...")
            await next_event_of(peer, StreamDataReceived)
            peer.stop_sending(stream_id, 0x10)
            stop = await next_event_of(client, StopSendingReceived)
            assert (stop.stream_id, stop.code) == (stream_id, 0x10)
            # Racing writes after the peer's STOP_SENDING are not the session's fault: dropped, no error.
            client.send(stream_id, b"more", end_stream=True)
            # Nothing more reaches the peer on that stream (it asked us to stop, and ignores the rest).
            client.send_datagram(b"marker")
            events = await collect_until(peer, lambda e: isinstance(e, DatagramReceived))
            assert not any(isinstance(e, StreamDataReceived) for e in events)

    run(scenario())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("closer", ["client", "server"])
def test_session_close_code_and_reason(kind: TransportKind, closer: str, certificate: CertificateBundle) -> None:
    async def scenario() -> None:
        async with server_and_client(kind, certificate) as (_, peer, client):
            active, passive = (client, peer) if closer == "client" else (peer, client)
            stream_id = await active.open_uni_stream()
            active.send(stream_id, b"in flight")
            started = time.perf_counter()
            active.close(0x10, "GOAWAY timeout: bye")
            closed = await next_event_of(passive, SessionClosed)
            elapsed = time.perf_counter() - started
            assert closed == SessionClosed(code=0x10, reason="GOAWAY timeout: bye", by_peer=True)
            local = await next_event_of(active, SessionClosed)
            assert local == SessionClosed(code=0x10, reason="GOAWAY timeout: bye", by_peer=False)
            # After the final event, there is nothing more to read, and sessions refuse new streams.
            with pytest.raises(SessionClosedError):
                await passive.next_event()
            with pytest.raises(SessionClosedError):
                await passive.open_uni_stream()
            assert (await asyncio.wait_for(active.wait_closed(), EVENT_TIMEOUT)).code == 0x10
            print(f"\n{kind}: close seen by the peer after {elapsed * 1000:.1f} ms")

    run(scenario())


# ---------------------------------------------------------------------------------------------- stream credit


async def open_many_uni_streams(
    kind: TransportKind, certificate: CertificateBundle, count: int, size: int, inflight: int
) -> float:
    """Open `count` uni streams of `size` bytes each; check the peer's limit holds; return streams per second."""
    server = await serve("127.0.0.1", 0, certificate=certificate)
    try:
        client = await connect(
            url_for(kind, server.port), fingerprint=certificate.fingerprint, max_inflight_uni_streams=inflight
        )
        peer = await asyncio.wait_for(server.accept(), EVENT_TIMEOUT)
        received: dict[int, int] = {}
        finished = asyncio.get_running_loop().create_future()

        def on_event(event: TransportEvent) -> None:
            if isinstance(event, StreamDataReceived):
                received[event.stream_id] = received.get(event.stream_id, 0) + len(event.data)
                if event.end_stream and sum(1 for n in received.values() if n == size) == count:
                    finished.set_result(None)

        peer.set_event_handler(on_event)
        payload = b"o" * size
        started = time.perf_counter()
        for _ in range(count):
            stream_id = await client.open_uni_stream()
            # The whole point: never past the peer's MAX_STREAMS, never more than `inflight` in flight.
            assert stream_id // 4 < _aioquic.peer_stream_limit(client._quic, True)
            assert client.inflight_uni_streams <= inflight
            client.send(stream_id, payload, end_stream=True)
        await asyncio.wait_for(finished, 20)
        elapsed = time.perf_counter() - started
        assert _aioquic.blocked_stream_count(client._quic) == 0
        assert len(received) == count and set(received.values()) == {size}
        await finish(client)
        return count / elapsed
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("kind", KINDS)
def test_five_hundred_uni_streams_respect_peer_max_streams(kind: TransportKind, certificate: CertificateBundle) -> None:
    rate = run(open_many_uni_streams(kind, certificate, count=500, size=100, inflight=32))
    print(f"\n{kind}: 500 small uni streams, gated: {rate:.0f} streams/s")


@pytest.mark.parametrize("inflight", [4, 32, 128])
def test_inflight_cap_throughput(inflight: int, certificate: CertificateBundle) -> None:
    """Prints how the in-flight cap affects 30 KB objects (one per stream); asserts only correctness."""
    rate = run(open_many_uni_streams("quic", certificate, count=300, size=30_000, inflight=inflight))
    print(f"\nquic: 30 KB objects, {inflight} in flight: {rate:.0f} streams/s = {rate * 30_000 * 8 / 1e6:.0f} Mbit/s")


# ---------------------------------------------------------------------------------------------- TLS and URLs


@pytest.mark.parametrize("kind", KINDS)
def test_tls_verification_modes(kind: TransportKind, certificate: CertificateBundle, tmp_path: Path) -> None:
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.save(cert_file, key_file)
    other = generate_dev_certificate()

    async def scenario() -> None:
        server = await serve("127.0.0.1", 0, certificate=certificate)
        url = url_for(kind, server.port)
        try:
            # A CA file (our self-signed certificate as its own trust anchor), no verification, a colon-form pin.
            connections = [
                await connect(url, ca_file=cert_file),
                await connect(url, verify=False),
                await connect(url, fingerprint=certificate.fingerprint_colon),
            ]
            assert [c.version for c in connections] == [Version.DRAFT_22] * 3
            await finish(*connections)
            with pytest.raises(CertificateMismatch):
                await connect(url, fingerprint=other.fingerprint)
            with pytest.raises(ConnectError, match="TLS"):
                await connect(url)  # a self-signed certificate is not trusted by default
        finally:
            server.close()
            await server.wait_closed()

    run(scenario())


def test_both_transports_share_one_port(certificate: CertificateBundle) -> None:
    async def scenario() -> None:
        server = await serve("127.0.0.1", 0, certificate=certificate)
        try:
            clients = await asyncio.gather(
                *(connect(url_for(kind, server.port), fingerprint=certificate.fingerprint) for kind in KINDS)
            )
            peers = [await asyncio.wait_for(server.accept(), EVENT_TIMEOUT) for _ in KINDS]
            assert sorted(c.transport_kind for c in clients) == sorted(p.transport_kind for p in peers) == sorted(KINDS)
            assert len(server.sessions) == 2
            await finish(*clients)
        finally:
            server.close()
            await server.wait_closed()

    run(scenario())


def test_raw_quic_client_gets_authority_and_path_for_setup(certificate: CertificateBundle) -> None:
    async def scenario() -> None:
        server = await serve("127.0.0.1", 0, certificate=certificate)
        try:
            client = await connect(
                f"moqt://127.0.0.1:{server.port}/live/room%201?token=abc#track:x", fingerprint=certificate.fingerprint
            )
            assert client.authority == f"127.0.0.1:{server.port}"
            assert client.path == "/live/room%201?token=abc"
            peer = await asyncio.wait_for(server.accept(), EVENT_TIMEOUT)
            assert peer.path is None  # raw QUIC: the server learns it from SETUP
            await finish(client)
        finally:
            server.close()
            await server.wait_closed()

    run(scenario())


def test_webtransport_server_sees_path_and_settings(certificate: CertificateBundle) -> None:
    async def scenario() -> None:
        async with server_and_client("webtransport", certificate) as (_, peer, client):
            assert isinstance(peer, WebTransportConnection) and isinstance(client, WebTransportConnection)
            assert peer.path == "/moq"
            assert peer.authority == client.authority
            settings = client.h3_settings_received
            assert settings is not None
            for setting in (
                wtproto.SETTING_ENABLE_CONNECT_PROTOCOL,
                wtproto.SETTING_H3_DATAGRAM,
                wtproto.SETTING_ENABLE_WEBTRANSPORT,
                wtproto.SETTING_WT_MAX_SESSIONS,
                wtproto.SETTING_WT_ENABLED,
            ):
                assert settings.get(setting) == 1, hex(setting)
            assert peer.h3_settings_sent == settings

    run(scenario())


def test_aioquic_internals_we_rely_on_exist(certificate: CertificateBundle) -> None:
    async def scenario() -> None:
        async with server_and_client("quic", certificate) as (_, peer, client):
            _aioquic.check_compatibility(client._quic)
            _aioquic.check_compatibility(peer._quic)

    run(scenario())


@pytest.mark.parametrize("kind", KINDS)
def test_event_handler_mode_and_cancelled_opener(kind: TransportKind, certificate: CertificateBundle) -> None:
    async def scenario() -> None:
        async with server_and_client(kind, certificate, max_inflight_uni_streams=1) as (_, peer, client):
            seen: list[TransportEvent] = []
            done = asyncio.get_running_loop().create_future()

            def handler(event: TransportEvent) -> None:
                seen.append(event)
                if isinstance(event, StreamDataReceived) and event.end_stream and not done.done():
                    done.set_result(None)

            peer.set_event_handler(handler)
            first = await client.open_uni_stream()
            # The in-flight cap (1) is reached: a second opener waits; cancelling it must not leak a stream.
            waiting = asyncio.ensure_future(client.open_uni_stream())
            await asyncio.sleep(0)  # let it queue (not a wait for an event: it is the scheduling under test)
            assert not waiting.done()
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            client.send(first, b"only", end_stream=True)
            await asyncio.wait_for(done, EVENT_TIMEOUT)
            assert [type(e) for e in seen[:2]] == [StreamOpened, StreamDataReceived]
            # Once the first stream is acknowledged the slot is free again.
            second = await asyncio.wait_for(client.open_uni_stream(), EVENT_TIMEOUT)
            assert second > first

    run(scenario())


@pytest.mark.parametrize("kind", KINDS)
def test_server_opened_bidi_stream(kind: TransportKind, certificate: CertificateBundle) -> None:
    async def scenario() -> None:
        async with server_and_client(kind, certificate) as (_, peer, client):
            stream_id = await peer.open_bidi_stream()
            peer.send(stream_id, b"PUBLISH ...", end_stream=True)
            opened = await next_event_of(client, StreamOpened)
            assert opened == StreamOpened(stream_id=stream_id, bidirectional=True)
            assert await read_stream(client, stream_id) == (stream_id, b"PUBLISH ...")
            client.send(stream_id, b"REQUEST_OK", end_stream=True)
            assert await read_stream(peer, stream_id) == (stream_id, b"REQUEST_OK")

    run(scenario())


@pytest.mark.parametrize("kind", KINDS)
def test_waiting_openers_are_served_by_priority(kind: TransportKind, certificate: CertificateBundle) -> None:
    async def scenario() -> None:
        async with server_and_client(kind, certificate, max_inflight_uni_streams=1) as (_, peer, client):
            order: list[int] = []

            async def publish(priority: int) -> None:
                stream_id = await client.open_uni_stream(priority=(priority,))
                order.append(priority)
                client.send(stream_id, b"object %d" % priority, end_stream=True)

            first = await client.open_uni_stream()
            waiting = [asyncio.ensure_future(publish(p)) for p in (5, 1, 3, 1)]
            await asyncio.sleep(0)  # let them all queue behind the cap (scheduling under test, not an event)
            assert order == []
            client.send(first, b"first", end_stream=True)  # its acknowledgement frees the slot
            await asyncio.wait_for(asyncio.gather(*waiting), EVENT_TIMEOUT)
            assert order == [1, 1, 3, 5]
            received = await collect_until(
                peer, lambda e: isinstance(e, StreamDataReceived) and e.data == b"object 5" and e.end_stream
            )
            assert sum(isinstance(e, StreamOpened) for e in received) == 5

    run(scenario())
