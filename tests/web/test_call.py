"""Calls end to end: headless Chromium pages with a fake camera and microphone in one room, through a real relay.

Each participant is a Chromium process of its own (`--use-fake-device-for-media-stream`: a test pattern and a
beep) on `/call/team?name=...`; the relay runs in this process on port 0 and serves the pages. A page publishes
`team/<name>` (catalog, H.264 video, Opus audio, LOC) and plays the others it finds with SUBSCRIBE_NAMESPACE.
Everything is read from `window.moqStats` and the DOM, polled inside deadlines; nothing sleeps in place of an
event. Latency figures (capture to screen, capture to the moment audio is due) are printed, not asserted beyond
sanity: the pages and the relay share one two-core machine.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from moq.wire.primitives import TrackNamespace
from relay.config import RelayConfig
from relay.server import RunningRelay, start_relay
from relay.web import WebServer, call_path, start_web, watch_path
from tests.web.broadcast import PatternBroadcast
from tests.web.chromium import CHROMIUM, FAKE_MEDIA_FLAGS, Chromium, available

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(
        not available() and not os.environ.get("MOQ_REQUIRE_BROWSER"),
        reason=f"{CHROMIUM} not found: apt-get install -y chromium (or set MOQ_CHROMIUM)",
    ),
]

T = TypeVar("T")
#: Each test must finish within this (the brief: under 60 s).
TEST_DEADLINE = 58.0
#: The browser publisher's audio frames per group (web/js/publisher.js PUBLISHER_DEFAULTS).
AUDIO_FRAMES_PER_GROUP = 5
ROOM: TrackNamespace = (b"team",)
#: Small pictures keep three encoders and six decoders within two cores; the fake camera gives 20 fps.
MEDIA = "width=320&height=240&fps=20"
#: What a page sends back about the call: everything but the per-participant traces.
STATS = "window.moqStats ?? null"
TILES = "[...document.querySelectorAll('[data-participant]')].map((t) => t.dataset.participant).sort()"

#: SUBSCRIBER_PRIORITY values the call page uses (web/js/call.js PRIORITY).
AUDIO_PRIORITY = 32
ACTIVE_VIDEO_PRIORITY = 96
VIDEO_PRIORITY = 160


def run(coro: Coroutine[Any, Any, T]) -> T:
    async def guarded() -> T:
        return await asyncio.wait_for(coro, TEST_DEADLINE)

    return asyncio.run(guarded())


@asynccontextmanager
async def relay_with_pages(tmp: Path) -> AsyncIterator[tuple[RunningRelay, WebServer]]:
    config = RelayConfig(bind="127.0.0.1", port=0, web_port=0, state_dir=str(tmp / "state"))
    running = await start_relay(config)
    web = await start_web(running, config)
    try:
        yield running, web
    finally:
        await web.close()
        await running.stop()


class Participant:
    """One person in the call: a headless Chromium with a fake camera and microphone, on the call page."""

    def __init__(self, web: WebServer, name: str, browser: Chromium) -> None:
        self.web = web
        self.name = name
        self.browser = browser

    async def join(self, query: str = "") -> None:
        path = f"{call_path(ROOM)}?name={self.name}&{MEDIA}" + (f"&{query}" if query else "")
        await self.browser.open(self.web.url("127.0.0.1", path))

    async def leave(self) -> None:
        """Navigate away, as a person closing the tab would (the page's session ends with it)."""
        await self.browser.open("about:blank")

    async def close_tab(self) -> None:
        """Close the page's tab (the browser stays)."""
        targets = await self.browser.send("Target.getTargets")
        for target in targets["targetInfos"]:
            if target["type"] == "page":
                await self.browser.send("Target.closeTarget", {"targetId": target["targetId"]})

    async def stats(self) -> dict[str, Any]:
        value = await self.browser.evaluate(STATS)
        assert isinstance(value, dict)
        return value

    async def wait(self, condition: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        value = await self.browser.wait_for(STATS, lambda s: isinstance(s, dict) and condition(s), timeout, what)
        assert isinstance(value, dict)
        return value

    async def click(self, button: str) -> None:
        await self.browser.evaluate(f"document.getElementById({button!r}).click()")


@asynccontextmanager
async def participants(web: WebServer, *names: str) -> AsyncIterator[list[Participant]]:
    """Browsers for `names`, started together (each is a process of its own), not yet in the call."""
    async with AsyncExitStack() as stack:
        browsers = [Chromium(FAKE_MEDIA_FLAGS) for _ in names]
        for browser in browsers:
            stack.push_async_callback(browser.close)
        await asyncio.gather(*(browser.start() for browser in browsers))
        yield [Participant(web, name, browser) for name, browser in zip(names, browsers, strict=True)]


def hears_and_sees(other: str, frames: int = 30, audio: int = 50) -> Callable[[dict[str, Any]], bool]:
    """The page has decoded at least `frames` video and `audio` audio frames of participant `other`."""

    def check(stats: dict[str, Any]) -> bool:
        p = stats["participants"].get(other)
        return p is not None and p["framesDecoded"] >= frames and p["audioFramesDecoded"] >= audio

    return check


def summary(stats: dict[str, Any]) -> str:
    parts = []
    for name, p in sorted(stats["participants"].items()):
        parts.append(
            f"{name}: {p['framesDecoded']} video / {p['audioFramesDecoded']} audio frames decoded, "
            f"latency video {p['latencyMs']} ms, audio {p['audioLatencyMs']} ms "
            f"({p['audioFramesPlayed']} played, {p['audioFramesLate']} late, context {p['audioState']}), "
            f"priorities video {p['videoPriority']} audio {p['audioPriority']}"
        )
    pub = stats["publisher"]
    parts.append(
        f"sent {pub['videoFramesEncoded']} video frames ({pub['keyframes']} keyframes, {pub['fps']} fps, "
        f"{pub['videoCodec']} {pub['width']}x{pub['height']}), {pub['audioFramesEncoded']} audio frames; "
        f"{pub['objectsSent']} objects on {pub['streamsOpened']} streams to {pub['subscriptions']} subscriptions"
    )
    return "; ".join(parts)


@pytest.mark.parametrize(("draft", "bobs_codec"), [(22, "avc1"), (18, "vp8")], ids=["draft-22", "draft-18, bob on VP8"])
def test_two_pages_in_a_room_decode_each_others_video_and_audio(tmp_path: Path, draft: int, bobs_codec: str) -> None:
    """Two pages decode each other. In the second case bob's page publishes VP8, as a browser without an H.264
    encoder does (`?codec=vp8`), and alice's decodes it beside her own H.264."""

    async def scenario() -> None:
        async with relay_with_pages(tmp_path) as (_, web), participants(web, "alice", "bob") as (alice, bob):
            started = time.monotonic()
            await asyncio.gather(alice.join(f"drafts={draft}"), bob.join(f"drafts={draft}&codec={bobs_codec}"))
            a, b = await asyncio.gather(
                alice.wait(hears_and_sees("bob", 60, 100), 30, "alice decoding bob"),
                bob.wait(hears_and_sees("alice", 60, 100), 30, "bob decoding alice"),
            )
            elapsed = time.monotonic() - started
            tiles = await alice.browser.evaluate(TILES)
            shown = await alice.browser.evaluate("document.querySelector('[data-participant] .latency').textContent")
            print(f"\nafter {elapsed:.1f} s\nalice's page: {summary(a)}\nbob's page: {summary(b)}\nshown: {shown!r}")
            for stats, me, other, codec in ((a, "alice", "bob", bobs_codec), (b, "bob", "alice", "avc1")):
                assert stats["self"] == me and list(stats["participants"]) == [other]  # never itself
                assert stats["state"] == "in the call" and stats["draft"] == draft and stats["lastError"] is None
                p = stats["participants"][other]
                assert p["videoCodec"].startswith(codec) and (p["width"], p["height"]) == (320, 240)
                assert p["outOfOrder"] == 0 and p["lastError"] is None
                assert isinstance(p["latencyMs"], int) and 0 < p["latencyMs"] < 1000
                assert p["audioPriority"] == AUDIO_PRIORITY and p["videoPriority"] in (
                    ACTIVE_VIDEO_PRIORITY,
                    VIDEO_PRIORITY,
                )
                assert isinstance(p["audioLevel"], int) and 0 <= p["audioLevel"] <= 127  # LOC AUDIO_LEVEL arrives
                pub = stats["publisher"]
                assert pub["videoCodec"].startswith(bobs_codec if me == "bob" else "avc1")
                assert pub["cameraOn"] and pub["micOn"] and pub["state"] == "publishing"
                assert pub["keyframes"] >= 2 and pub["videoGroups"] == pub["keyframes"]
                # Five 20 ms audio frames to a group (a stream each): the group that is open counts too.
                assert pub["audioGroups"] == -(-pub["audioFramesEncoded"] // AUDIO_FRAMES_PER_GROUP)
                assert pub["videoFramesDropped"] == 0 and pub["lastError"] is None
                # The relay subscribed to the three tracks (catalog, video, audio) once each, whatever it fans out.
                assert pub["subscriptions"] == 3 and pub["served"] == 3 and pub["groupsDropped"] == 0
            assert tiles == ["bob"] and shown.startswith("video ") and "ms" in shown

    run(scenario())


def test_a_late_joiner_sees_both_and_the_others_drop_one_who_leaves(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            relay_with_pages(tmp_path) as (_, web),
            participants(web, "alice", "bob", "carol") as (alice, bob, carol),
        ):
            await asyncio.gather(alice.join(), bob.join())
            await asyncio.gather(
                alice.wait(hears_and_sees("bob", 20, 20), 30, "alice decoding bob"),
                bob.wait(hears_and_sees("alice", 20, 20), 30, "bob decoding alice"),
            )
            joined = time.monotonic()
            await carol.join()
            c = await carol.wait(
                lambda s: hears_and_sees("alice", 30, 50)(s) and hears_and_sees("bob", 30, 50)(s),
                25,
                "carol decoding alice and bob",
            )
            carol_in = time.monotonic() - joined
            a, b = await asyncio.gather(
                alice.wait(hears_and_sees("carol", 30, 50), 15, "alice decoding carol"),
                bob.wait(hears_and_sees("carol", 30, 50), 15, "bob decoding carol"),
            )
            print(f"\ncarol decoded 30 frames of each within {carol_in:.1f} s of opening the page")
            print(f"carol's page: {summary(c)}\nalice's page: {summary(a)}\nbob's page: {summary(b)}")
            assert sorted(c["participants"]) == ["alice", "bob"]
            assert sorted(a["participants"]) == ["bob", "carol"] and sorted(b["participants"]) == ["alice", "carol"]

            left = time.monotonic()
            await bob.leave()
            gone = "!('bob' in window.moqStats.participants) && !document.querySelector('[data-participant=bob]')"
            await asyncio.gather(
                alice.browser.wait_for(gone, bool, 15, "bob gone from alice's page"),
                carol.browser.wait_for(gone, bool, 15, "bob gone from carol's page"),
            )
            noticed = time.monotonic() - left
            # The call goes on between the two who stayed.
            a_before = a["participants"]["carol"]["framesDecoded"]
            c_before = c["participants"]["alice"]["framesDecoded"]
            a, c = await asyncio.gather(
                alice.wait(lambda s: hears_and_sees("carol", a_before + 20, 50)(s), 10, "alice still decoding carol"),
                carol.wait(lambda s: hears_and_sees("alice", c_before + 20, 50)(s), 10, "carol still decoding alice"),
            )
            print(f"bob's leaving noticed by both within {noticed:.1f} s")
            assert sorted(a["participants"]) == ["carol"] and sorted(c["participants"]) == ["alice"]
            assert await alice.browser.evaluate(TILES) == ["carol"]
            assert await carol.browser.evaluate(TILES) == ["alice"]

            closed = time.monotonic()
            await carol.close_tab()
            await alice.browser.wait_for(
                "Object.keys(moqStats.participants).length === 0 && !document.querySelector('[data-participant]')",
                bool,
                15,
                "carol gone from alice's page",
            )
            print(f"carol's tab closing noticed within {time.monotonic() - closed:.1f} s")

    run(scenario())


def test_mute_and_camera_off_stop_the_tracks_and_the_other_side_follows(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with relay_with_pages(tmp_path) as (_, web), participants(web, "alice", "bob") as (alice, bob):
            await asyncio.gather(alice.join(), bob.join())
            await bob.wait(hears_and_sees("alice", 20, 20), 30, "bob decoding alice")

            await alice.click("camera")
            off = await alice.wait(lambda s: not s["publisher"]["cameraOn"], 5, "alice's camera off")
            b = await bob.wait(
                lambda s: s["participants"]["alice"]["videoTrack"] is None, 10, "bob: alice's video gone"
            )
            audio_then = b["participants"]["alice"]["audioFramesDecoded"]
            await bob.wait(hears_and_sees("alice", 0, audio_then + 50), 10, "bob still hearing alice")
            classes = await bob.browser.evaluate("document.querySelector('[data-participant=alice]').className")
            assert "camera-off" in classes.split()
            captured = (await alice.stats())["publisher"]["videoFramesCaptured"]
            assert captured <= off["publisher"]["videoFramesCaptured"] + 1  # the camera's track is stopped

            await alice.click("mute")
            await alice.wait(lambda s: not s["publisher"]["micOn"], 5, "alice muted")
            await bob.wait(lambda s: s["participants"]["alice"]["audioTrack"] is None, 10, "bob: alice's audio gone")
            # Nobody wants alice's video or audio now: the relay unsubscribed, alice serves the catalog alone.
            await alice.wait(lambda s: s["publisher"]["served"] == 1, 10, "the relay leaving alice's media tracks")

            frames_then = (await bob.stats())["participants"]["alice"]["framesDecoded"]
            await alice.click("camera")
            await alice.click("mute")
            b = await bob.wait(
                lambda s: (
                    hears_and_sees("alice", frames_then + 30, audio_then + 100)(s)
                    and s["participants"]["alice"]["videoTrack"] == "video"
                    and s["participants"]["alice"]["audioTrack"] == "audio"
                ),
                20,
                "bob: alice's video and audio back",
            )
            a = await alice.stats()
            print(f"\nbob's page after alice's camera and microphone came back: {summary(b)}")
            assert a["publisher"]["cameraOn"] and a["publisher"]["micOn"]
            assert a["publisher"]["catalogVersions"] >= 4  # first, camera off, muted, both back (one or two)
            assert b["participants"]["alice"]["outOfOrder"] == 0

    run(scenario())


def test_audio_comes_first_and_the_active_speakers_video_next(tmp_path: Path) -> None:
    """Only alice's microphone is on: on bob's page alice becomes the active speaker and her video gets the
    higher priority (REQUEST_UPDATE); then alice mutes and carol speaks, and the priorities swap."""

    async def scenario() -> None:
        async with (
            relay_with_pages(tmp_path) as (_, web),
            participants(web, "alice", "bob", "carol") as (alice, bob, carol),
        ):
            await asyncio.gather(alice.join(), bob.join("mic=0"), carol.join("mic=0"))

            def speaker_is(name: str, other: str) -> Callable[[dict[str, Any]], bool]:
                def check(s: dict[str, Any]) -> bool:
                    ps = s["participants"]
                    return (
                        s["activeSpeaker"] == name
                        and name in ps
                        and other in ps
                        and ps[name]["videoPriority"] == ACTIVE_VIDEO_PRIORITY
                        and ps[other]["videoPriority"] == VIDEO_PRIORITY
                    )

                return check

            first = await bob.wait(speaker_is("alice", "carol"), 30, "alice the active speaker on bob's page")
            await alice.click("mute")
            await carol.click("mute")  # carol's microphone on
            second = await bob.wait(speaker_is("carol", "alice"), 20, "carol the active speaker on bob's page")
            print(
                f"\nbob's page: speaker alice, then carol; {second['speakerChanges']} speaker changes, "
                f"{second['priorityUpdates']} priority updates (REQUEST_UPDATE); {summary(second)}"
            )
            for p in (*first["participants"].values(), *second["participants"].values()):
                if p["audioPriority"] is not None:
                    assert p["audioPriority"] == AUDIO_PRIORITY < ACTIVE_VIDEO_PRIORITY
            assert second["priorityUpdates"] >= 2

    run(scenario())


STAGE: TrackNamespace = (b"live", b"pattern")


def test_a_participant_watches_a_broadcast_on_stage_while_in_the_call(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with relay_with_pages(tmp_path) as (running, web):
            broadcast = PatternBroadcast(STAGE, width=320, height=180, fps=20)
            await broadcast.start(f"https://127.0.0.1:{running.port}/", running.certificate.fingerprint_hex)
            try:
                async with participants(web, "alice", "bob") as (alice, bob):
                    stage = watch_path(STAGE).removeprefix("/watch/")
                    await asyncio.gather(alice.join(f"watch={stage}"), bob.join())
                    a = await alice.wait(
                        lambda s: (
                            hears_and_sees("bob", 40, 50)(s)
                            and s["stage"] is not None
                            and s["stage"]["framesDecoded"] >= 40
                            and s["stage"]["audioFramesDecoded"] >= 50
                        ),
                        30,
                        "alice decoding bob and the stage",
                    )
                    b = await bob.wait(hears_and_sees("alice", 40, 50), 15, "bob decoding alice")
                    shown = await alice.browser.evaluate("document.getElementById('stage').hidden")
            finally:
                await broadcast.stop()
            s = a["stage"]
            print(
                f"\nalice's stage ({s['name']}): {s['framesDecoded']} video / {s['audioFramesDecoded']} audio frames, "
                f"latency {s['latencyMs']} ms, priorities video {s['videoPriority']} audio {s['audioPriority']}\n"
                f"alice's page: {summary(a)}\nbob's page: {summary(b)}"
            )
            assert s["name"] == "live/pattern" and not shown
            assert list(a["participants"]) == ["bob"]  # the stage is no participant
            assert s["outOfOrder"] == 0 and s["lastError"] is None

    run(scenario())
