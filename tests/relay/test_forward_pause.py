"""FORWARD at the relay (draft-22 §7, §9.20.19): when every downstream subscriber of a track has FORWARD=0, the
relay pauses its upstream subscription (REQUEST_UPDATE FORWARD=0), so the publisher sends nothing; it resumes as
soon as one subscriber wants objects again. Real QUIC on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from moq.api import MoqSession, Subscription
from moq.model import CachedObject, Track
from moq.wire.params import Parameters

from .conftest import client, relay_running, run
from .test_announce_upstream import cluster

NS = (b"live", b"forward")
WAIT = 20.0


def produce(track: Track, group: int, objects: int = 4) -> list[tuple[int, int]]:
    for oid in range(objects):
        track.append(CachedObject(group, 0, oid, bytes([group % 256, oid]) * 300))
    track.end_subgroup(group, 0)
    return [(group, oid) for oid in range(objects)]


async def read(sub: Subscription, count: int) -> list[tuple[int, int]]:
    got = []
    for _ in range(count):
        obj = await asyncio.wait_for(sub.next(), WAIT)
        assert obj is not None
        got.append((obj.group_id, obj.object_id))
    return sorted(got)


async def read_until(sub: Subscription, last: tuple[int, int]) -> set[tuple[int, int]]:
    got: set[tuple[int, int]] = set()
    while last not in got:
        obj = await asyncio.wait_for(sub.next(), WAIT)
        assert obj is not None
        got.add((obj.group_id, obj.object_id))
    return got


async def until(condition: Callable[[], bool]) -> None:
    """Poll: the relay passes FORWARD on by itself, and the publisher's session applies it with no event for us."""
    loop = asyncio.get_running_loop()
    end = loop.time() + WAIT
    while not condition():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.01)


def upstream_forwarding(pub: MoqSession) -> Callable[[], bool]:
    """Whether the relay's one subscription at `pub` asks for objects now."""
    (rid,) = pub._serving
    return lambda: pub.session.forwarding(rid)


async def publisher(running: object) -> tuple[MoqSession, Track]:
    pub = await client(running, "quic")  # type: ignore[arg-type]
    track = pub.add_track(Track(NS, b"video"))
    await pub.publish_namespace(NS)
    return pub, track


def test_the_upstream_pauses_when_every_subscriber_has_forward_0_and_resumes_for_one(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with relay_running(tmp_path) as running:
            pub, track = await publisher(running)
            s1, s2 = await client(running, "quic"), await client(running, "quic")
            sub1, sub2 = await s1.subscribe(NS, "video"), await s2.subscribe(NS, "video")
            forwarding = upstream_forwarding(pub)
            assert forwarding()
            # One subscriber pauses: the other still wants objects, and gets them.
            await s1.update(sub1.request_id, Parameters(forward=0))
            sent_0 = produce(track, 0)
            assert await read(sub2, 4) == sent_0
            # Both paused: the relay pauses its upstream, and the publisher sends nothing.
            await s2.update(sub2.request_id, Parameters(forward=0))
            await until(lambda: not forwarding())
            sent = pub.objects_sent
            produce(track, 1)
            await pub.track_status(NS, "video")  # a round trip, in which the publisher's writer takes group 1
            assert pub.objects_sent == sent
            # One asks again: the upstream resumes, and the objects reach it.
            await s1.update(sub1.request_id, Parameters(forward=1))
            await until(forwarding)
            assert set(produce(track, 2)) <= await read_until(sub1, (2, 3))
            assert pub.objects_sent > sent
            # The only one that wanted objects leaves: paused again.
            sub1.cancel()
            await until(lambda: not forwarding())
            for s in (pub, s1, s2):
                s.close()

    run(scenario())


def test_a_first_subscriber_with_forward_0_subscribes_upstream_paused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with relay_running(tmp_path) as running:
            pub, track = await publisher(running)
            quiet = await client(running, "quic")
            await quiet.subscribe(NS, "video", Parameters(forward=0))
            forwarding = upstream_forwarding(pub)
            assert not forwarding()  # the relay's SUBSCRIBE carried FORWARD=0 (it is answered before ours)
            loud = await client(running, "quic")
            sub = await loud.subscribe(NS, "video")  # a new SUBSCRIBE that wants objects resumes the upstream
            await until(forwarding)
            assert set(produce(track, 0)) <= await read_until(sub, (0, 3))
            for s in (pub, quiet, loud):
                s.close()

    run(scenario())


def test_a_pause_travels_through_a_cluster_to_the_publisher(tmp_path: Path) -> None:
    """Subscriber at edge B, publisher at edge A: B pauses its hub subscription, the hub its subscription at A,
    A its subscription at the publisher; and back again."""

    async def scenario() -> None:
        async with cluster(tmp_path) as (_hub, a, b):
            pub, track = await publisher(a)
            viewer = await client(b, "quic")
            sub = await viewer.subscribe(NS, "video", Parameters(rendezvous_timeout=15_000))
            forwarding = upstream_forwarding(pub)
            assert forwarding()
            await viewer.update(sub.request_id, Parameters(forward=0))
            await until(lambda: not forwarding())
            await viewer.update(sub.request_id, Parameters(forward=1))
            await until(forwarding)
            assert set(produce(track, 0)) <= await read_until(sub, (0, 3))
            for s in (pub, viewer):
                s.close()

    run(scenario())
