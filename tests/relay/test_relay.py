"""The relay end to end on loopback: fan-out, late joiners, FETCH from cache, publishers leaving and returning,
relay chains, hostile sessions. Real QUIC and WebTransport, drafts 22 and 18."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import pytest

from moq.api import MoqSession, Subscription, connect
from moq.errors import RequestRejected
from moq.model import CachedObject, Track
from moq.transport.errors import CertificateMismatch
from moq.wire.codes import PublishDoneCode, RequestErrorCode, SessionErrorCode
from moq.wire.messages import Subscribe, encode_message
from moq.wire.params import Parameters
from moq.wire.primitives import Location
from moq.wire.version import Version
from relay.config import RelayConfig
from relay.server import start_relay
from tests.api.test_priority_update import pause_socket

from .conftest import client, relay_running, run, url_of

NS = (b"live", b"show")
KINDS = ["quic", "webtransport"]
VERSIONS = [Version.DRAFT_22, Version.DRAFT_18]


async def publisher_of(
    running: object, kind: str, version: Version, name: bytes = b"video"
) -> tuple[MoqSession, Track]:
    pub = await client(running, kind, version)  # type: ignore[arg-type]
    track = pub.add_track(Track(NS, name))
    await pub.publish_namespace(NS)
    return pub, track


def produce(track: Track, groups: range, objects: int = 5, size: int = 2000) -> list[tuple[int, int, bytes]]:
    sent = []
    for group in groups:
        for oid in range(objects):
            payload = bytes([group % 256, oid % 256]) * (size // 2)
            track.append(CachedObject(group, 0, oid, payload))
            sent.append((group, oid, payload))
        track.end_subgroup(group, 0)
    return sent


async def read_all(sub: Subscription) -> list[tuple[int, int, bytes]]:
    return [(o.group_id, o.object_id, o.payload) async for o in sub]


def by_group(objects: list[tuple[int, int, bytes]]) -> dict[int, list[tuple[int, int, bytes]]]:
    out: dict[int, list[tuple[int, int, bytes]]] = {}
    for item in objects:
        out.setdefault(item[0], []).append(item)
    return out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"draft-{v.value}")
def test_fan_out_to_20_subscribers_with_one_upstream_subscription(tmp_path: Path, kind: str, version: Version) -> None:
    async def scenario() -> None:
        async with relay_running(tmp_path) as running:
            pub, track = await publisher_of(running, kind, version)
            subscribers = [await client(running, kind, version) for _ in range(20)]
            subs = [await s.subscribe(NS, "video") for s in subscribers]
            assert running.relay.upstream_subscriptions == 1
            sent = produce(track, range(4))
            track.end_track()
            results = await asyncio.gather(*(read_all(sub) for sub in subs))
            for got, sub in zip(results, subs, strict=True):
                # Each subgroup arrives whole and in order; groups travel on their own streams.
                assert by_group(got) == by_group(sent)
                assert sub.done is not None and sub.done.status_code == PublishDoneCode.TRACK_ENDED
            assert pub.objects_sent == len(sent)  # the publisher sent each object once, for 20 readers
            for s in [pub, *subscribers]:
                s.close()

    run(scenario())


@pytest.mark.parametrize("kind", KINDS)
def test_late_joiner_starts_at_the_latest_group_and_fetch_is_served_from_cache(tmp_path: Path, kind: str) -> None:
    async def scenario() -> None:
        async with relay_running(tmp_path) as running:
            pub, track = await publisher_of(running, kind, Version.DRAFT_22)
            early_session = await client(running, kind)
            early = await early_session.subscribe(NS, "video")
            sent = produce(track, range(3))
            # Wait until the early subscriber has everything, so the relay's cache holds groups 0-2.
            got_early: list[tuple[int, int, bytes]] = []
            while len(got_early) < len(sent):
                obj = await early.next()
                assert obj is not None
                got_early.append((obj.group_id, obj.object_id, obj.payload))
            late_session = await client(running, kind)
            late = await late_session.subscribe(NS, "video")
            assert late.ok is not None and late.ok.parameters.largest_object == Location(2, 4)
            first = await late.next()
            assert first is not None and (first.group_id, first.object_id) == (2, 0)  # the latest group, whole
            # FETCH of cached groups, byte for byte, served by the relay (the publisher sends nothing more).
            before = pub.objects_sent
            fetched = await late_session.fetch(NS, "video", Location(0, 0), Location(1, 4))
            assert [(o.group_id, o.object_id, o.payload) for o in fetched] == [s for s in sent if s[0] <= 1]
            assert pub.objects_sent == before
            for s in (pub, early_session, late_session):
                s.close()

    run(scenario())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"draft-{v.value}")
def test_publisher_leaves_and_returns(tmp_path: Path, kind: str, version: Version) -> None:
    async def scenario() -> None:
        async with relay_running(tmp_path) as running:
            pub, track = await publisher_of(running, kind, version)
            watcher = await client(running, kind, version)
            sub = await watcher.subscribe(NS, "video")
            produce(track, range(1))
            first = await sub.next()
            assert first is not None and first.group_id == 0
            pub.close()  # the publisher goes away
            rest = [o async for o in sub]
            assert sub.done is not None and sub.done.status_code == PublishDoneCode.GOING_AWAY
            assert all(o.group_id == 0 for o in rest)
            # It comes back; the subscriber that is still there subscribes again and gets new objects.
            pub2, track2 = await publisher_of(running, kind, version)
            sub2 = await watcher.subscribe(NS, "video")
            produce(track2, range(10, 12))
            track2.end_track()
            again = [(o.group_id, o.object_id) async for o in sub2]
            assert sorted(again) == [(g, o) for g in (10, 11) for o in range(5)]
            for s in (pub2, watcher):
                s.close()

    run(scenario())


@pytest.mark.parametrize("kind", KINDS)
def test_two_relays_in_a_chain(tmp_path: Path, kind: str) -> None:
    async def scenario() -> None:
        async with relay_running(tmp_path / "origin") as origin:
            edge_config = RelayConfig(
                bind="127.0.0.1",
                port=0,
                state_dir=str(tmp_path / "edge"),
                upstream=[url_of(origin, kind)],
                upstream_fingerprint=origin.certificate.fingerprint_hex,
            )
            edge = await start_relay(edge_config)
            try:
                pub, track = await publisher_of(origin, kind, Version.DRAFT_22)
                viewer = await client(edge, kind)
                sub = await viewer.subscribe(NS, "video")
                sent = produce(track, range(3))
                track.end_track()
                got = [(o.group_id, o.object_id, o.payload) async for o in sub]
                assert by_group(got) == by_group(sent)
                assert edge.relay.upstream_subscriptions == 1 and origin.relay.upstream_subscriptions == 1
                pub.close()
                viewer.close()
            finally:
                await edge.stop()

    run(scenario())


def test_subscribe_errors_and_rendezvous(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with relay_running(tmp_path) as running:
            viewer = await client(running, "quic")
            with pytest.raises(RequestRejected) as info:
                await viewer.subscribe((b"nobody",), "here")
            assert info.value.code == RequestErrorCode.DOES_NOT_EXIST
            with pytest.raises(RequestRejected) as info:
                await viewer.subscribe((b"nobody",), "here", Parameters(rendezvous_timeout=200))
            assert info.value.code == RequestErrorCode.TIMEOUT
            # Subscribe first, publisher a moment later: the rendezvous holds the SUBSCRIBE until it arrives.
            waiting = asyncio.ensure_future(viewer.subscribe(NS, "video", Parameters(rendezvous_timeout=10_000)))
            pub, track = await publisher_of(running, "quic", Version.DRAFT_22)
            sub = await asyncio.wait_for(waiting, 10)
            produce(track, range(1))
            track.end_track()
            assert len([o async for o in sub]) == 5
            pub.close()
            viewer.close()

    run(scenario())


def test_namespace_discovery(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with relay_running(tmp_path) as running:
            viewer = await client(running, "quic")
            watch = await viewer.subscribe_namespace((b"live",))
            pub, _ = await publisher_of(running, "quic", Version.DRAFT_22)
            changes = aiter(watch)
            assert await anext(changes) == (True, NS)
            pub.close()
            assert await anext(changes) == (False, NS)
            viewer.close()

    run(scenario())


@pytest.mark.parametrize("garbage", ["bytes", "oversized", "request-id"])
def test_a_hostile_session_is_closed_and_the_broadcast_goes_on(tmp_path: Path, garbage: str) -> None:
    async def scenario() -> None:
        async with relay_running(tmp_path) as running:
            pub, track = await publisher_of(running, "quic", Version.DRAFT_22)
            viewer = await client(running, "quic")
            sub = await viewer.subscribe(NS, "video")
            sent = produce(track, range(2))
            hostile = await client(running, "quic")
            conn = hostile.conn
            sid = await conn.open_bidi_stream()
            if garbage == "bytes":
                conn.send(sid, b"\xff\x00\x13garbage-that-is-no-message")
                expected = SessionErrorCode.PROTOCOL_VIOLATION
            elif garbage == "oversized":
                conn.send(sid, b"\x03\xff\xff" + b"\x00" * 70_000)  # a SUBSCRIBE whose body is not what it says
                expected = SessionErrorCode.PROTOCOL_VIOLATION
            else:
                # A client's request ids are even: 1 is a server's (§6.4.2.1).
                conn.send(sid, encode_message(Subscribe(1, NS, b"video"), Version.DRAFT_22))
                expected = SessionErrorCode.INVALID_REQUEST_ID
            await asyncio.wait_for(hostile.wait_closed(), 10)
            assert hostile.close_reason is not None and hostile.close_reason[0] == expected
            sent += produce(track, range(2, 4))
            track.end_track()
            got = [(o.group_id, o.object_id, o.payload) async for o in sub]
            assert by_group(got) == by_group(sent)  # no object lost for anyone else
            pub.close()
            viewer.close()

    run(scenario())


def test_the_cli_config_file_and_flags(tmp_path: Path) -> None:
    from relay.config import load_config

    path = tmp_path / "relay.toml"
    path.write_text('port = 5000\ncache-groups = 3\nupstream = ["moqt://origin:4443/"]\n')
    config = load_config(path, port=6000, bind=None)
    assert (config.port, config.cache_groups, config.upstream) == (6000, 3, ["moqt://origin:4443/"])
    path.write_text("no_such_setting = 1\n")
    with pytest.raises(Exception, match="no_such_setting"):
        load_config(path)


@pytest.mark.parametrize("kind", KINDS)
def test_shutdown_sends_goaway_then_closes(tmp_path: Path, kind: str) -> None:
    async def scenario() -> None:
        running = await start_relay(RelayConfig(bind="127.0.0.1", port=0, state_dir=str(tmp_path), goaway_grace=5))
        viewer = await client(running, kind)
        stopping = asyncio.ensure_future(running.stop())
        await asyncio.wait_for(viewer.goaway_received.wait(), 10)
        assert viewer.goaway is not None and viewer.goaway.new_session_uri == ""
        viewer.close()  # a client that got GOAWAY leaves; the relay then closes without waiting out its grace
        await asyncio.wait_for(stopping, 4)

    run(scenario())


def test_development_certificate_is_renewed_while_running(tmp_path: Path) -> None:
    """Near expiry, a running relay swaps in a fresh certificate: new sessions pin the new fingerprint."""

    async def scenario() -> None:
        async with relay_running(tmp_path) as running:
            old = running.certificate
            assert not running.renew_certificate()  # fresh: nothing to do
            later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=9)
            assert running.renew_certificate(now=later)
            assert running.certificate.fingerprint != old.fingerprint
            viewer = await client(running, "quic")  # pins running.certificate: the new one
            assert viewer.peer_setup is not None
            viewer.close()
            with pytest.raises(CertificateMismatch):  # the old pin no longer matches what new sessions see
                await connect(url_of(running, "quic"), fingerprint=old.fingerprint, timeout=3)

    run(scenario())


@pytest.mark.parametrize("kind", KINDS)
def test_a_stalled_subscriber_loses_old_groups_and_nobody_else_is_slowed(tmp_path: Path, kind: str) -> None:
    """One subscriber stops reading while the publisher goes on: the other gets every group meanwhile (the stalled
    one is resumed only once it has, so a stall that held it up would never end), and the stalled one, resumed,
    has lost its oldest groups and gets the newest whole."""
    groups, per_group, size, period = 24, 5, 20_000, 0.1
    stall_from, stall_until = 3, 13

    async def scenario() -> None:
        async with relay_running(tmp_path) as running:
            pub, track = await publisher_of(running, kind, Version.DRAFT_22)
            fast_session, slow_session = await client(running, kind), await client(running, kind)
            fast = await fast_session.subscribe(NS, "video")
            slow = await slow_session.subscribe(NS, "video")
            fast_has_stalled_groups = asyncio.Event()

            async def produce_live() -> None:
                for group in range(groups):
                    if group == stall_from:
                        pause_socket(slow_session, True)
                    if group == stall_until:
                        try:
                            await asyncio.wait_for(fast_has_stalled_groups.wait(), 30)
                        except TimeoutError:
                            raise AssertionError("the fast subscriber was held up by the stalled one") from None
                        pause_socket(slow_session, False)
                    for oid in range(per_group):
                        track.append(CachedObject(group, 0, oid, bytes([group]) * size))
                    track.end_subgroup(group, 0)
                    await asyncio.sleep(period)  # a live source's pace, not a wait for an event
                track.end_track()

            async def read_fast() -> list[tuple[int, int]]:
                got = []
                async for o in fast:
                    got.append((o.group_id, o.object_id))
                    if (stall_until - 1, per_group - 1) in got:
                        fast_has_stalled_groups.set()
                return got

            async def read_slow() -> list[tuple[int, int]]:
                return [(o.group_id, o.object_id) async for o in slow]

            _, fast_got, slow_got = await asyncio.gather(produce_live(), read_fast(), read_slow())
            assert sorted(fast_got) == [(g, o) for g in range(groups) for o in range(per_group)]
            slow_groups = {g for g, _ in slow_got}
            assert set(range(stall_from, stall_until)) - slow_groups, "the stalled subscriber lost no group"
            tail = range(groups - 5, groups)
            assert sorted((g, o) for g, o in slow_got if g in tail) == [(g, o) for g in tail for o in range(per_group)]
            assert sum(s.groups_dropped for s in running.relay.sessions) > 0
            for s in (pub, fast_session, slow_session):
                s.close()

    run(scenario())


def test_subgroup_delivery_timeout_resets_what_could_not_be_delivered(tmp_path: Path) -> None:
    """SUBGROUP_DELIVERY_TIMEOUT (draft-22 §5.2): a subgroup not delivered within the timeout of its upstream end
    is reset with DELIVERY_TIMEOUT; later groups still flow."""

    async def scenario() -> None:
        async with relay_running(tmp_path) as running:
            pub, track = await publisher_of(running, "quic", Version.DRAFT_22)
            viewer = await client(running, "quic")
            sub = await viewer.subscribe(NS, "video", Parameters(subgroup_delivery_timeout=200))
            pause_socket(viewer, True)
            for oid in range(5):
                track.append(CachedObject(0, 0, oid, bytes([oid]) * 100_000))
            track.end_subgroup(0, 0)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not any(s.objects_expired for s in running.relay.sessions):  # the relay's writer acts on its own
                assert loop.time() < deadline, "the stalled subgroup was never reset"
                await asyncio.sleep(0.02)
            pause_socket(viewer, False)
            for oid in range(3):
                track.append(CachedObject(1, 0, oid, b"fresh %d" % oid))
            track.end_subgroup(1, 0)
            track.end_track()
            got = [(o.group_id, o.object_id) async for o in sub]
            assert [g for g in got if g[0] == 1] == [(1, 0), (1, 1), (1, 2)]
            assert len([g for g in got if g[0] == 0]) < 5  # group 0 was cut short
            pub.close()
            viewer.close()

    run(scenario())
