"""End to end on loopback: our client and our server, real QUIC and real WebTransport, every supported draft.

A publisher sends groups of objects of varied sizes (up to 1 MB), with properties, statuses and datagrams mixed
in; the subscriber gets every one, in order, with the right ids; FETCH returns the requested range.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from moq.api import MoqSession, connect, serve
from moq.errors import RequestRejected
from moq.model import CachedObject, Track
from moq.session.events import ObjectReceived
from moq.transport.errors import VersionNegotiationFailed
from moq.transport.tls import CertificateBundle, generate_dev_certificate
from moq.wire.codes import ObjectStatus, PublishDoneCode, RequestErrorCode
from moq.wire.params import LocationFilter, LocationFilterType, Parameters
from moq.wire.primitives import Location
from moq.wire.version import SUPPORTED_VERSIONS, Version

NS = (b"live", b"demo")
KINDS = ("quic", "webtransport")
DEADLINE = 40.0


@pytest.fixture(scope="module")
def certificate() -> CertificateBundle:
    return generate_dev_certificate()


def run(coro: Awaitable[Any], deadline: float = DEADLINE) -> Any:
    async def guarded() -> Any:
        return await asyncio.wait_for(coro, deadline)

    return asyncio.run(guarded())


def url(kind: str, port: int) -> str:
    return f"{'moqt' if kind == 'quic' else 'https'}://127.0.0.1:{port}/moq"


async def with_server(
    certificate: CertificateBundle,
    kind: str,
    track: Track,
    body: Callable[[MoqSession], Awaitable[Any]],
    server_versions: tuple[Version, ...] = SUPPORTED_VERSIONS,
    client_versions: tuple[Version, ...] = SUPPORTED_VERSIONS,
) -> Any:
    """A server publishing `track`, a client connected to it; runs `body(client)`."""

    async def handler(session: MoqSession) -> None:
        session.add_track(track)
        await session.wait_closed()

    server = await serve(handler, host="127.0.0.1", port=0, certificate=certificate, versions=server_versions)
    try:
        client = await connect(url(kind, server.port), fingerprint=certificate.fingerprint, versions=client_versions)
        async with client:
            return await body(client)
    finally:
        server.close()
        await server.wait_closed()


# Sizes chosen to cross every varint length boundary of the payload length, up to 1 MB.
SIZES = [0, 1, 127, 128, 16383, 16384, 100_000, 1_000_000]


def produce(track: Track) -> list[tuple[int, int | None, int, int, ObjectStatus]]:
    """Append three groups to `track`; returns what a subscriber should see: (group, subgroup, object, size, status)."""
    expected: list[tuple[int, int | None, int, int, ObjectStatus]] = []
    for group in range(3):
        for oid, size in enumerate(SIZES):
            status = ObjectStatus.NORMAL
            payload = bytes([(group * 31 + oid) % 256]) * size
            props = ((0x3C, oid),) if size else ()
            track.append(CachedObject(group, 0, oid, payload, publisher_priority=group, properties=props))
            expected.append((group, 0, oid, size, status))
        # An end-of-group status object closes each group's subgroup.
        track.append(CachedObject(group, 0, len(SIZES), b"", status=ObjectStatus.END_OF_GROUP))
        expected.append((group, 0, len(SIZES), 0, ObjectStatus.END_OF_GROUP))
        track.end_subgroup(group, 0)
        # And a datagram object in a second "subgroup" of its own.
        track.append(CachedObject(group, None, 100, b"datagram-%d" % group))
        expected.append((group, None, 100, len(b"datagram-%d" % group), ObjectStatus.NORMAL))
    track.end_track()
    return expected


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("version", SUPPORTED_VERSIONS, ids=lambda v: f"draft-{v.value}")
def test_subscriber_gets_every_object_in_order(certificate: CertificateBundle, kind: str, version: Version) -> None:
    track = Track(NS, b"video", properties=((0x0E, 5),))

    async def body(client: MoqSession) -> None:
        assert client.version is version
        sub = await client.subscribe(NS, "video")
        assert sub.ok is not None and sub.ok.properties == ((0x0E, 5),)
        expected = produce(track)
        got: list[ObjectReceived] = [obj async for obj in sub]
        # Each subgroup is one stream: its objects arrive exactly in order. Streams (and datagrams) interleave.
        streamed = [o for o in got if o.source == "subgroup"]
        datagrams = [o for o in got if o.source == "datagram"]
        for group in range(3):
            assert [
                (o.group_id, o.subgroup_id, o.object_id, len(o.payload), o.status)
                for o in streamed
                if o.group_id == group
            ] == [e for e in expected if e[1] is not None and e[0] == group]
        assert len(streamed) == len([e for e in expected if e[1] is not None])
        assert sorted((o.group_id, o.object_id, o.payload) for o in datagrams) == [
            (g, 100, b"datagram-%d" % g) for g in range(3)
        ]
        for o in streamed:
            if o.status is ObjectStatus.NORMAL and o.payload:
                assert o.payload == bytes([(o.group_id * 31 + o.object_id) % 256]) * len(o.payload)
                assert o.properties == ((0x3C, o.object_id),)
                assert o.publisher_priority == o.group_id
        assert sub.done is not None and sub.done.status_code == PublishDoneCode.TRACK_ENDED
        assert sub.done.stream_count == 3

    run(with_server(certificate, kind, track, body, client_versions=(version,)))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("version", [Version.DRAFT_22, Version.DRAFT_18], ids=lambda v: f"draft-{v.value}")
def test_fetch_returns_the_requested_range(certificate: CertificateBundle, kind: str, version: Version) -> None:
    track = Track(NS, b"video")
    for group in range(4):
        for oid in range(5):
            track.append(CachedObject(group, oid % 2, oid, b"%d/%d" % (group, oid)))

    async def body(client: MoqSession) -> None:
        objects = await client.fetch(NS, "video", Location(1, 3), Location(3, 1))
        got = [(o.group_id, o.object_id, o.payload, o.subgroup_id) for o in objects]
        want = [(g, o, b"%d/%d" % (g, o), o % 2) for g in range(1, 4) for o in range(5)]
        assert got == [w for w in want if Location(1, 3) <= Location(w[0], w[1]) <= Location(3, 1)]
        whole = await client.fetch(NS, "video", Location(0, 0))
        assert len(whole) == 20
        with pytest.raises(RequestRejected) as info:
            await client.fetch(NS, "video", Location(9, 0))
        assert info.value.code == RequestErrorCode.INVALID_RANGE
        with pytest.raises(RequestRejected) as info:
            await client.subscribe(NS, "no-such-track")
        assert info.value.code == RequestErrorCode.DOES_NOT_EXIST

    run(with_server(certificate, kind, track, body, client_versions=(version,)))


@pytest.mark.parametrize("kind", KINDS)
def test_best_common_draft_wins_and_none_in_common_is_a_clear_error(certificate: CertificateBundle, kind: str) -> None:
    track = Track(NS, b"video")

    async def version_of(client: MoqSession) -> Version:
        return client.version

    chosen = run(
        with_server(
            certificate,
            kind,
            track,
            version_of,
            server_versions=(Version.DRAFT_20, Version.DRAFT_18),
            client_versions=(Version.DRAFT_22, Version.DRAFT_20, Version.DRAFT_18),
        )
    )
    assert chosen is Version.DRAFT_20
    with pytest.raises(VersionNegotiationFailed) as info:
        run(
            with_server(
                certificate,
                kind,
                track,
                version_of,
                server_versions=(Version.DRAFT_18,),
                client_versions=(Version.DRAFT_22,),
            )
        )
    message = str(info.value)
    assert "moqt-22" in message and "moqt-18" in message


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "version", [Version.DRAFT_22, Version.DRAFT_20, Version.DRAFT_18], ids=lambda v: f"draft-{v.value}"
)
def test_joining_gets_past_groups_then_live_ones(certificate: CertificateBundle, kind: str, version: Version) -> None:
    """fill_groups=2: a fill (draft-20+) or a joining FETCH (draft-18) brings the previous and the current group,
    then the subscription goes on live, with nothing in between lost or repeated."""
    track = Track(NS, b"video")
    for group in range(4):
        for oid in range(3):
            track.append(CachedObject(group, 0, oid, b"%d/%d" % (group, oid)))
    # Group 3 is still open: its next object is live.

    async def body(client: MoqSession) -> None:
        sub = await client.subscribe(NS, "video", fill_groups=2)
        track.append(CachedObject(3, 0, 3, b"3/3"))
        track.end_subgroup(3, 0)
        for oid in range(2):
            track.append(CachedObject(4, 0, oid, b"4/%d" % oid))
        track.end_track()
        got = [obj async for obj in sub]
        fetched = sorted((o.group_id, o.object_id) for o in got if o.source == "fetch")
        live = [(o.group_id, o.object_id) for o in got if o.source == "subgroup"]
        assert fetched == [(g, o) for g in (2, 3) for o in range(3)]
        assert live == [(3, 3), (4, 0), (4, 1)]
        assert all(o.payload == b"%d/%d" % (o.group_id, o.object_id) for o in got)

    run(with_server(certificate, kind, track, body, client_versions=(version,)))


@pytest.mark.parametrize("kind", KINDS)
def test_objects_past_their_delivery_timeout_are_not_sent(certificate: CertificateBundle, kind: str) -> None:
    """OBJECT_DELIVERY_TIMEOUT (draft-22 §5.2): an object older than the timeout when it would be handed to the
    transport is dropped and its stream reset; fresh objects still flow."""
    track = Track(NS, b"video")
    for oid in range(5):
        track.append(CachedObject(0, 0, oid, b"stale %d" % oid))
    served: list[MoqSession] = []

    async def handler(session: MoqSession) -> None:
        session.add_track(track)
        served.append(session)
        await session.wait_closed()

    async def scenario() -> None:
        server = await serve(handler, host="127.0.0.1", port=0, certificate=certificate)
        try:
            await asyncio.sleep(0.3)  # the condition under test is the objects' age: let them age
            client = await connect(url(kind, server.port), fingerprint=certificate.fingerprint)
            async with client:
                flt = LocationFilter(LocationFilterType.ABSOLUTE_START, 0, 0)
                sub = await client.subscribe(NS, "video", Parameters(location_filter=flt, object_delivery_timeout=100))
                for oid in range(3):
                    track.append(CachedObject(1, 0, oid, b"fresh %d" % oid))
                track.end_subgroup(1, 0)
                track.end_track()
                got = [(o.group_id, o.object_id, o.payload) async for o in sub]
                assert got == [(1, oid, b"fresh %d" % oid) for oid in range(3)]
                assert served[0].objects_expired == 5
        finally:
            server.close()
            await server.wait_closed()

    run(scenario())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("version", [Version.DRAFT_22, Version.DRAFT_18], ids=lambda v: f"draft-{v.value}")
def test_request_update_pauses_and_resumes_a_subscription(
    certificate: CertificateBundle, kind: str, version: Version
) -> None:
    """REQUEST_UPDATE FORWARD=0 pauses delivery, FORWARD=1 resumes it (§9.5, §9.20.19); each is answered with
    REQUEST_OK carrying LARGEST_OBJECT. Nothing is sent while paused; on resuming, the newest group skipped meanwhile
    is sent from its start (a live subscriber gets a whole group, not a tail), then what follows."""
    track = Track(NS, b"video")
    served: list[MoqSession] = []

    async def handler(session: MoqSession) -> None:
        session.add_track(track)
        served.append(session)
        await session.wait_closed()

    async def scenario() -> None:
        server = await serve(handler, host="127.0.0.1", port=0, certificate=certificate, versions=(version,))
        try:
            client = await connect(url(kind, server.port), fingerprint=certificate.fingerprint, versions=(version,))
            async with client:
                sub = await client.subscribe(NS, "video")
                for oid in range(3):
                    track.append(CachedObject(0, 0, oid, b"a"))
                got = [await sub.next() for _ in range(3)]
                assert all(o is not None and o.group_id == 0 for o in got)
                ok = await client.update(sub.request_id, Parameters(forward=0, subscriber_priority=7))
                assert ok.parameters.largest_object == Location(0, 2)
                track.end_subgroup(0, 0)
                for oid in range(3):
                    track.append(CachedObject(1, 0, oid, b"paused"))  # published while paused: held back
                track.end_subgroup(1, 0)
                await client.track_status(NS, "video")  # a round trip: the server has run its writer since
                assert served[0].objects_sent == 3  # only group 0: nothing was written while paused
                await client.update(sub.request_id, Parameters(forward=1))
                for oid in range(3):
                    track.append(CachedObject(2, 0, oid, b"live"))
                track.end_subgroup(2, 0)
                track.end_track()
                rest = [(o.group_id, o.payload) async for o in sub]
                assert sorted(rest) == [(1, b"paused")] * 3 + [(2, b"live")] * 3
        finally:
            server.close()
            await server.wait_closed()

    run(scenario())
