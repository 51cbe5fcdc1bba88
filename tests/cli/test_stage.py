"""`moq publish --stage`: who comes on stage (the roster's bounds, duplicates, the line, leaving) and the host
following its participants' catalogs over a real relay (Python participants; the browser's side is
tests/web/test_stage.py).

Nothing sleeps in place of an event: the tests await the host's catalog changes and the subscriptions' objects,
inside deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from cli.media_stage import (
    MAX_STAGE_NAME_BYTES,
    MAX_STAGE_PARTICIPANTS,
    MAX_STAGE_WAITING,
    Admission,
    StageHost,
    StageRoster,
    check_stage_name,
    parse_stage_allow,
    stage_participant,
)
from moq.api import MoqSession, connect
from moq.media.catalog import (
    Catalog,
    Track,
    audio_track,
    decode_catalog,
    encode_catalog,
    make_catalog,
    stage_tracks,
    video_track,
)
from moq.media.frames import StreamInfo
from moq.model import CachedObject
from moq.model import Track as ModelTrack
from moq.wire.primitives import Location, TrackNamespace
from relay.server import RunningRelay
from tests.cli.helpers import relay_running, run

HOST: TrackNamespace = (b"live", b"show")
PREFIX: TrackNamespace = (*HOST, b"stage")

# -- the roster (no IO) ------------------------------------------------------------------------------------------


def test_the_roster_admits_up_to_its_limit_then_keeps_a_line() -> None:
    roster = StageRoster(2, max_waiting=2)
    assert [roster.ask(n) for n in ("a", "b", "c", "d", "e")] == [
        Admission.ADMITTED,
        Admission.ADMITTED,
        Admission.WAITING,
        Admission.WAITING,
        Admission.LINE_FULL,
    ]
    assert roster.on_stage == ("a", "b") and roster.waiting == ("c", "d")


def test_asking_twice_changes_nothing() -> None:
    roster = StageRoster(1)
    assert roster.ask("a") is Admission.ADMITTED
    assert roster.ask("b") is Admission.WAITING
    assert roster.ask("a") is Admission.ALREADY and roster.ask("b") is Admission.ALREADY
    assert roster.on_stage == ("a",) and roster.waiting == ("b",)


def test_leaving_frees_a_place_for_the_first_in_line() -> None:
    roster = StageRoster(2)
    for name in "abcde":
        roster.ask(name)
    assert roster.leave("d") == ()  # left the line
    assert roster.leave("a") == ("c",)
    assert roster.on_stage == ("b", "c") and roster.waiting == ("e",)
    assert roster.leave("nobody") == () and roster.leave("a") == ()  # leaving twice: nothing
    assert roster.leave("b") == ("e",) and roster.leave("c") == () and roster.leave("e") == ()
    assert not roster.on_stage and not roster.waiting
    assert roster.ask("a") is Admission.ADMITTED  # back after leaving


def test_the_allow_list_keeps_others_off_and_out_of_the_line() -> None:
    roster = StageRoster(1, allow={"alice", "bob"})
    assert roster.ask("mallory") is Admission.NOT_ALLOWED
    assert roster.ask("alice") is Admission.ADMITTED and roster.ask("bob") is Admission.WAITING
    assert roster.waiting == ("bob",)


def test_the_roster_bounds() -> None:
    roster = StageRoster()
    names = [f"p{i}" for i in range(MAX_STAGE_PARTICIPANTS + MAX_STAGE_WAITING + 1)]
    answers = [roster.ask(n) for n in names]
    assert answers.count(Admission.ADMITTED) == MAX_STAGE_PARTICIPANTS
    assert answers.count(Admission.WAITING) == MAX_STAGE_WAITING and answers[-1] is Admission.LINE_FULL
    for bad in (0, MAX_STAGE_PARTICIPANTS + 1):
        with pytest.raises(ValueError, match="participants"):
            StageRoster(bad)
    with pytest.raises(ValueError, match="line"):
        StageRoster(1, max_waiting=MAX_STAGE_WAITING + 1)


def test_names() -> None:
    assert parse_stage_allow(" alice, bob ,,alice") == {"alice", "bob"}
    for bad, why in [(",", "at least one"), ("a/b", "no '/'"), ("x" * (MAX_STAGE_NAME_BYTES + 1), "bytes")]:
        with pytest.raises(ValueError, match=why):
            parse_stage_allow(bad)
    assert check_stage_name("é" * (MAX_STAGE_NAME_BYTES // 2)) == "é" * (MAX_STAGE_NAME_BYTES // 2)
    with pytest.raises(ValueError):
        check_stage_name("é" * (MAX_STAGE_NAME_BYTES // 2 + 1))
    assert stage_participant((*PREFIX, b"bob"), PREFIX) == "bob"
    for other in [PREFIX, (*PREFIX, b"bob", b"x"), (*HOST, b"bob"), (*PREFIX, b"\xff"), (*PREFIX, b"a" * 65)]:
        assert stage_participant(other, PREFIX) is None


def test_the_stage_options_are_checked() -> None:
    runner = CliRunner()
    url = "moqt://127.0.0.1:9/"
    result = runner.invoke(main, ["publish", url, "--name", "live/show", "--stage-allow", "a/b"])
    assert result.exit_code == 2 and "stage name 'a/b': no '/'" in result.stderr
    result = runner.invoke(main, ["publish", url, "--name", "live/show", "--stage-max", "9"])
    assert result.exit_code == 2 and "--stage-max" in result.stderr


# -- the host over a real relay ------------------------------------------------------------------------------------


def catalog_of(*tracks: Track) -> bytes:
    return encode_catalog(make_catalog(tracks, generated_at=1))


#: How often `Host.until` re-checks a condition no listing change announces (the roster's admissions).
POLL_SECONDS = 0.05
CAMERA = video_track(codec="avc1.42e01f", width=320, height=240, framerate=20, bitrate=600_000)
MIC = audio_track(codec="opus", channels=1, bitrate=32_000)


class Participant:
    """A viewer on stage, in Python: NAME/stage/<name> with a catalog track (and a video track)."""

    def __init__(self, session: MoqSession, name: str) -> None:
        self.session = session
        self.namespace: TrackNamespace = (*PREFIX, name.encode())
        self.catalog = session.add_track(ModelTrack(self.namespace, b"catalog"))
        self.video = session.add_track(ModelTrack(self.namespace, b"video"))
        self.group = time.time_ns() // 1_000_000
        self.request_id: int | None = None

    def publish_catalog(self, payload: bytes) -> None:
        self.group += 1
        self.catalog.append(CachedObject(self.group, 0, 0, payload, 0))
        self.catalog.end_subgroup(self.group, 0)

    async def join(self, payload: bytes | None = None) -> None:
        if payload is not None:
            self.publish_catalog(payload)
        self.request_id = await self.session.publish_namespace(self.namespace)

    def leave(self) -> None:
        """As the page does: end the tracks, withdraw the namespace."""
        self.catalog.end_track()
        self.video.end_track()
        assert self.request_id is not None
        self.session.withdraw(self.request_id)


class Host:
    """A `StageHost` on a session of its own, with what it asked the catalog to list."""

    def __init__(self, session: MoqSession, roster: StageRoster, catalog_wait: float) -> None:
        self.session = session
        self.listed: tuple[Track, ...] = ()
        self.changes = 0
        self._changed = asyncio.Event()
        self.stage = StageHost(session, HOST, roster, self._on_change, catalog_wait=catalog_wait)

    def _on_change(self, entries: tuple[Track, ...]) -> None:
        self.listed = entries
        self.changes += 1
        self._changed.set()

    def names(self) -> list[tuple[str | None, str]]:
        return [(t.label, t.name) for t in self.listed]

    async def until(self, condition: Callable[[Host], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not condition(self):
                self._changed.clear()
                # The listing changing wakes us; the roster (who is admitted) changes without it: re-check it too,
                # every POLL_SECONDS, inside the deadline.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), POLL_SECONDS)


Make = Callable[[str], Awaitable[Participant]]


@asynccontextmanager
async def stage_host(
    running: RunningRelay, roster: StageRoster, catalog_wait: float = 5.0
) -> AsyncIterator[tuple[Host, Make]]:
    """A host publishing HOST with a stage, and a maker of participants (each on a session of its own)."""
    url, fingerprint = f"moqt://127.0.0.1:{running.port}/", running.certificate.fingerprint_hex
    sessions = [await connect(url, fingerprint=fingerprint)]
    host = Host(sessions[0], roster, catalog_wait)
    await host.session.publish_namespace(HOST)
    await host.stage.start()
    task = asyncio.create_task(host.stage.run())

    async def make(name: str) -> Participant:
        session = await connect(url, fingerprint=fingerprint)
        sessions.append(session)
        return Participant(session, name)

    try:
        yield host, make
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for session in sessions:
            session.close()


def test_the_host_lists_whoever_joins_in_line_and_drops_them_when_they_leave(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with relay_running(tmp_path) as running, stage_host(running, StageRoster(1)) as (host, make):
            alice = await make("alice")
            bob = await make("bob")
            await alice.join(catalog_of(CAMERA, MIC))
            await host.until(lambda h: h.names() == [("alice", "video"), ("alice", "audio")])
            assert {t.namespace for t in host.listed} == {"live/show/stage/alice"}

            await bob.join(catalog_of(CAMERA, MIC))  # the stage is full: bob waits
            await host.until(lambda h: h.stage.roster.waiting == ("bob",))
            assert host.names() == [("alice", "video"), ("alice", "audio")]

            alice.publish_catalog(catalog_of(MIC))  # alice's camera off: a new catalog group
            await host.until(lambda h: h.names() == [("alice", "audio")])

            alice.leave()  # bob comes on in her place
            await host.until(lambda h: h.names() == [("bob", "video"), ("bob", "audio")])
            assert host.stage.roster.on_stage == ("bob",) and host.stage.roster.waiting == ()
            assert {t.namespace for t in host.listed} == {"live/show/stage/bob"}

            bob.leave()
            await host.until(lambda h: h.listed == () and h.stage.roster.on_stage == ())
            assert host.stage.figures()["joined"] == 2

    run(scenario())


def test_a_participant_whose_catalog_never_comes_leaves_the_stage(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with relay_running(tmp_path) as running, stage_host(running, StageRoster(1), 2.0) as (host, make):
            silent = await make("silent")
            carol = await make("carol")
            await silent.join()  # announced, but its catalog track has nothing
            await host.until(lambda h: h.stage.roster.on_stage == ("silent",))
            await carol.join(catalog_of(CAMERA))
            # After the catalog wait, silent's place goes to carol.
            await host.until(lambda h: h.names() == [("carol", "video")], 10)
            assert host.stage.roster.on_stage == ("carol",)

    run(scenario())


def test_a_viewers_subscription_to_a_participant_lives_although_the_host_refuses_its_own(tmp_path: Path) -> None:
    """The relay SUBSCRIBEs the host too for a participant's tracks (its namespace prefixes theirs, draft-22 §7);
    the host has no such track and refuses, and the viewer's subscription, fed by the participant, goes on."""

    async def scenario() -> None:
        async with relay_running(tmp_path) as running, stage_host(running, StageRoster()) as (host, make):
            bob = await make("bob")
            bob.video.append(CachedObject(1, 0, 0, b"frame 1", 128))
            await bob.join(catalog_of(CAMERA))
            await host.until(lambda h: h.names() == [("bob", "video")])
            url = f"moqt://127.0.0.1:{running.port}/"
            viewer = await connect(url, fingerprint=running.certificate.fingerprint_hex)
            try:
                sub = await viewer.subscribe(bob.namespace, "video")
                first = await asyncio.wait_for(sub.next(), 5)
                assert first is not None and first.payload == b"frame 1"
                bob.video.append(CachedObject(1, 0, 1, b"frame 2", 128))
                second = await asyncio.wait_for(sub.next(), 5)
                assert second is not None and second.payload == b"frame 2"
            finally:
                viewer.close()

    run(scenario())


def test_the_broadcast_publishes_a_catalog_group_when_the_stage_changes() -> None:
    from cli.media_publish import Broadcast  # PyAV and the media pipeline: only for this test

    infos = (StreamInfo(kind="video", codec="avc1.42c01e", bitrate=1, width=320, height=180, framerate=20, gop=20),)
    broadcast = Broadcast(HOST, infos)

    def latest() -> tuple[int, list[tuple[str, str | None]]]:
        """(catalog groups published, the newest catalog's tracks)."""
        track = broadcast.catalog_track
        assert track.latest_group is not None
        catalog = decode_catalog(track.objects(Location(track.latest_group, 0))[0].payload)
        assert isinstance(catalog, Catalog)
        return broadcast.catalog_groups, [(t.name, t.namespace) for t in catalog.tracks]

    broadcast.publish_catalog()
    assert latest() == (1, [("video", None)])
    bob = stage_tracks(make_catalog([CAMERA, MIC], generated_at=1), (*PREFIX, b"bob"), label="bob")
    broadcast.set_stage(bob)
    staged = "live/show/stage/bob"
    assert latest() == (2, [("video", None), ("video", staged), ("audio", staged)])
    broadcast.set_stage(bob)  # the same: no new group
    broadcast.set_stage((*bob, *bob))  # invalid (twice in bob's namespace): refused, nothing published
    assert latest() == (2, [("video", None), ("video", staged), ("audio", staged)]) and broadcast.stage == bob
    broadcast.set_stage(())
    assert latest() == (3, [("video", None)])
