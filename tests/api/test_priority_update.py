"""REQUEST_UPDATE of SUBSCRIBER_PRIORITY on a subscription we serve (draft-22 §5.1, §9.5, §9.20.8), on loopback.

A priority update applies to what the subscription has not yet had scheduled: its open subgroup streams, those it
has FIN'd whose bytes still wait in our send scheduler, those still waiting to open, and those it opens later. Each
test fails if the writer leaves the streams it has at their old priority. The subscriber holds data back
by not reading its UDP socket (nothing is acknowledged, so the publisher's congestion window stays shut and the
rest waits in the publisher's send scheduler, where priorities apply); every wait is on an event, inside a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest

from moq.api import MoqSession, Subscription, connect, serve
from moq.model import CachedObject, Track
from moq.session.events import RequestUpdated
from moq.transport.tls import CertificateBundle, generate_dev_certificate
from moq.wire.messages import RequestOk
from moq.wire.params import Parameters
from moq.wire.version import Version

NS = (b"live", b"prio")
KINDS = ("quic", "webtransport")
DEADLINE = 40.0
EVENT_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def certificate() -> CertificateBundle:
    return generate_dev_certificate()


def run(coro: Awaitable[Any]) -> Any:
    async def guarded() -> Any:
        return await asyncio.wait_for(coro, DEADLINE)

    return asyncio.run(guarded())


def url(kind: str, port: int) -> str:
    return f"{'moqt' if kind == 'quic' else 'https'}://127.0.0.1:{port}/moq"


def pause_socket(session: MoqSession, paused: bool) -> None:
    """Stop (or resume) reading a session's UDP socket: packets wait in the kernel, nothing is acknowledged."""
    transport = session.conn._protocol._transport
    assert isinstance(transport, asyncio.ReadTransport)
    if paused:
        transport.pause_reading()
    else:
        transport.resume_reading()


def when_updated(served: MoqSession) -> asyncio.Event:
    """Set once `served` has applied and answered a REQUEST_UPDATE from its peer."""
    updated = asyncio.Event()

    def on_update(_: MoqSession, __: RequestUpdated) -> None:
        updated.set()

    served.on_update = on_update
    return updated


async def read(sub: Subscription, count: int) -> list[tuple[int, int | None, int]]:
    got = []
    for _ in range(count):
        obj = await asyncio.wait_for(sub.next(), EVENT_TIMEOUT)
        assert obj is not None
        got.append((obj.group_id, obj.subgroup_id, obj.object_id))
    return got


async def serving(
    certificate: CertificateBundle, kind: str, version: Version, *tracks: Track
) -> tuple[Any, MoqSession, asyncio.Future[MoqSession]]:
    """A server publishing `tracks` and a client of it; the future gives the server's side of the session."""
    loop = asyncio.get_running_loop()
    served: asyncio.Future[MoqSession] = loop.create_future()

    async def handler(session: MoqSession) -> None:
        for track in tracks:
            session.add_track(track)
        served.set_result(session)
        await session.wait_closed()

    server = await serve(handler, host="127.0.0.1", port=0, certificate=certificate, versions=(version,))
    client = await connect(url(kind, server.port), fingerprint=certificate.fingerprint, versions=(version,))
    return server, client, served


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("version", [Version.DRAFT_22, Version.DRAFT_18], ids=lambda v: f"draft-{v.value}")
def test_an_update_moves_the_subscriptions_streams_to_the_new_priority(
    certificate: CertificateBundle, kind: str, version: Version
) -> None:
    """After REQUEST_UPDATE SUBSCRIBER_PRIORITY=7, every data stream of that subscription is scheduled at 7 in the
    publisher's transport: the two open subgroup streams, the one it FIN'd whose bytes still wait in the scheduler,
    and one opened after the update. Another subscription on the session keeps its priority."""
    video, audio = Track(NS, b"video"), Track(NS, b"audio")

    async def scenario() -> None:
        server, client, served_future = await serving(certificate, kind, version, video, audio)
        update: asyncio.Future[RequestOk] | None = None
        try:
            async with client:
                sub = await client.subscribe(NS, "video", Parameters(subscriber_priority=100))
                other = await client.subscribe(NS, "audio", Parameters(subscriber_priority=100))
                served = await served_future
                updated = when_updated(served)
                video.append(CachedObject(0, 0, 0, b"a"))
                video.append(CachedObject(0, 1, 0, b"b"))
                audio.append(CachedObject(0, 0, 0, b"c"))
                assert sorted(await read(sub, 2)) == [(0, 0, 0), (0, 1, 0)]
                assert await read(other, 1) == [(0, 0, 0)]

                pause_socket(client, True)
                # A subgroup written whole and FIN'd while the subscriber takes nothing: most of it stays queued.
                for oid in range(4):
                    video.append(CachedObject(1, 0, oid, bytes(40_000)))
                video.end_subgroup(1, 0)
                update = asyncio.ensure_future(client.update(sub.request_id, Parameters(subscriber_priority=7)))
                await asyncio.wait_for(updated.wait(), EVENT_TIMEOUT)

                conn = served.conn
                streams = served.served_stream_ids(sub.request_id)
                assert len(streams) == 3  # subgroups (0, 0) and (0, 1) open, (1, 0) FIN'd with bytes unsent
                # A FIN'd stream is known to the transport only while bytes of it are queued in the scheduler.
                priorities = [conn.stream_priority(s) for s in streams]
                assert all(p is not None and p[0] == 7 for p in priorities), priorities
                assert sum(conn.stream_buffered(s) for s in streams) > 0
                untouched = [conn.stream_priority(s) for s in served.served_stream_ids(other.request_id)]
                assert untouched and all(p is not None and p[0] == 100 for p in untouched), untouched

                pause_socket(client, False)
                ok = await asyncio.wait_for(update, EVENT_TIMEOUT)
                assert isinstance(ok, RequestOk)
                assert sorted(await read(sub, 4)) == [(1, 0, oid) for oid in range(4)]
                video.append(CachedObject(2, 0, 0, b"after"))
                assert await read(sub, 1) == [(2, 0, 0)]
                opened_after = set(served.served_stream_ids(sub.request_id)) - set(streams)
                assert opened_after
                assert all((conn.stream_priority(s) or (None,))[0] == 7 for s in opened_after)
        finally:
            if update is not None:
                update.cancel()  # a failed check may leave it waiting for the answer
            server.close()
            await server.wait_closed()

    run(scenario())


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_still_waiting_to_open_opens_at_the_new_priority(certificate: CertificateBundle, kind: str) -> None:
    """A subgroup stream that waits for a free stream slot when the update comes (the publisher's cap on streams in
    flight is reached: its objects wait with it) opens at the new priority once a slot frees."""
    video = Track(NS, b"video")

    async def scenario() -> None:
        server, client, served_future = await serving(certificate, kind, Version.DRAFT_22, video)
        try:
            async with client:
                sub = await client.subscribe(NS, "video", Parameters(subscriber_priority=100))
                served = await served_future
                served.conn.max_inflight_uni_streams = served.conn.inflight_uni_streams + 1  # room for one more
                video.append(CachedObject(0, 0, 0, b"a"))
                assert await read(sub, 1) == [(0, 0, 0)]
                video.append(CachedObject(0, 1, 0, b"b"))  # its stream waits for the slot (0, 0) holds
                ok = await asyncio.wait_for(client.update(sub.request_id, Parameters(subscriber_priority=7)), 10)
                assert isinstance(ok, RequestOk)
                before = served.served_stream_ids(sub.request_id)
                assert len(before) == 1  # (0, 1) is not open yet
                video.end_subgroup(0, 0)  # once its FIN is acknowledged, the slot is free
                assert await read(sub, 1) == [(0, 1, 0)]
                opened = set(served.served_stream_ids(sub.request_id)) - set(before)
                assert len(opened) == 1
                assert (served.conn.stream_priority(opened.pop()) or (None,))[0] == 7
        finally:
            server.close()
            await server.wait_closed()

    run(scenario())


class Arrivals(Track):
    """A subscriber's track (`subscribe(into=...)`) that notes each object in a log shared with other tracks, as the
    session parses it: the order objects arrived in, which a reader task could only approximate."""

    def __init__(self, name: bytes, log: list[tuple[str, int | None, int]]) -> None:
        super().__init__(NS, name)
        self.log = log

    def append(self, obj: CachedObject) -> None:
        super().append(obj)
        self.log.append((self.name.decode(), obj.subgroup_id, obj.object_id))


async def received(track: Track, count: int) -> None:
    """Until `track` holds `count` objects."""
    consumer = track.consumer(0)
    seen = 0
    while seen < count:
        if isinstance(await asyncio.wait_for(consumer.next(), EVENT_TIMEOUT), CachedObject):
            seen += 1


@pytest.mark.parametrize("kind", KINDS)
def test_raising_a_subscriptions_priority_sends_its_queued_objects_first(
    certificate: CertificateBundle, kind: str
) -> None:
    """Two subscriptions on one session, each with a long-lived open subgroup stream (and the second with a FIN'd
    one too), their objects held back at the publisher while the subscriber takes nothing. The first is the more
    important (100 vs 150) until REQUEST_UPDATE raises the second to 50: once data flows, every queued object of
    the second arrives before the first's, but for what the first had already handed to QUIC."""
    bulk, urgent = Track(NS, b"bulk"), Track(NS, b"urgent")
    size, bulk_count, urgent_open, urgent_finished = 16_000, 10, 10, 3
    log: list[tuple[str, int | None, int]] = []
    bulk_rx, urgent_rx = Arrivals(b"bulk", log), Arrivals(b"urgent", log)

    async def scenario() -> None:
        server, client, served_future = await serving(certificate, kind, Version.DRAFT_22, bulk, urgent)
        update: asyncio.Future[RequestOk] | None = None
        try:
            async with client:
                await client.subscribe(NS, "bulk", Parameters(subscriber_priority=100), into=bulk_rx)
                second = await client.subscribe(NS, "urgent", Parameters(subscriber_priority=150), into=urgent_rx)
                served = await served_future
                updated = when_updated(served)
                # Open both long-lived streams (group 0, subgroup 0) before holding anything back.
                bulk.append(CachedObject(0, 0, 0, b"open"))
                urgent.append(CachedObject(0, 0, 0, b"open"))
                await received(bulk_rx, 1)
                await received(urgent_rx, 1)
                # What QUIC may hold unacknowledged: past it, data waits in our scheduler, where priorities apply.
                budget = 2 * size
                served.conn.max_quic_buffered_bytes = budget

                pause_socket(client, True)
                for oid in range(1, bulk_count + 1):
                    bulk.append(CachedObject(0, 0, oid, bytes([oid]) * size))
                for oid in range(1, urgent_open + 1):
                    urgent.append(CachedObject(0, 0, oid, bytes([oid]) * size))
                for oid in range(urgent_finished):
                    urgent.append(CachedObject(0, 1, oid, bytes([oid]) * size))
                urgent.end_subgroup(0, 1)
                update = asyncio.ensure_future(client.update(second.request_id, Parameters(subscriber_priority=50)))
                await asyncio.wait_for(updated.wait(), EVENT_TIMEOUT)

                del log[:]  # from here on: what was held back
                pause_socket(client, False)
                await received(urgent_rx, 1 + urgent_open + urgent_finished)
                await received(bulk_rx, 1 + bulk_count)
                assert isinstance(await asyncio.wait_for(update, EVENT_TIMEOUT), RequestOk)

                assert len(log) == bulk_count + urgent_open + urgent_finished
                last_urgent = max(i for i, entry in enumerate(log) if entry[0] == "urgent")
                bulk_first = [entry for entry in log[:last_urgent] if entry[0] == "bulk"]
                # Only bulk objects QUIC already held when the update came (its budget: two objects) go first.
                assert len(bulk_first) <= budget // size, log
        finally:
            if update is not None:
                update.cancel()  # a failed check may leave it waiting for the answer
            server.close()
            await server.wait_closed()

    run(scenario())
