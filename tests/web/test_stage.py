"""A broadcast viewer brought on stage, end to end: `moq publish --stage`, a real relay, two headless Chromiums.

The relay runs in this process (port 0) and serves the pages. The host is the `moq publish live/show --stage`
command (a subprocess: the test pattern, H.264 + Opus). Viewer alice watches /watch/live/show; viewer bob watches
too and joins the stage (`stage=1&name=bob`: his fake camera and microphone, published under
live/show/stage/bob). The host reads bob's catalog and lists his video and audio in the broadcast's catalog with
his namespace; alice's page then plays bob in a tile of its own, and a Python subscriber reading the broadcast's
catalog sees bob's entries. Bob leaves: the catalog stops listing him and alice's tile for him goes.

Everything is awaited on an event or polled inside a deadline (the command's stderr lines, the catalog objects,
`window.moqStats` and the DOM); nothing sleeps in place of an event. Latencies and join times are printed, never
asserted beyond sanity: the pages, the relay and the encoder share one two-core machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from moq.api import MoqSession, connect
from moq.media.catalog import CATALOG_TRACK_NAME, Catalog, decode_catalog, namespace_text
from moq.wire.codes import ObjectStatus
from moq.wire.primitives import TrackNamespace
from relay.server import RunningRelay
from relay.web import WebServer, watch_path
from tests.cli.helpers import Command, moq, relay_args
from tests.web.chromium import FAKE_MEDIA_FLAGS, Chromium
from tests.web.test_call import pytestmark, relay_with_pages, run

__all__ = ["pytestmark"]  # the call tests' marks: a network test, skipped without Chromium

BROADCAST: TrackNamespace = (b"live", b"show")
BOB: TrackNamespace = (*BROADCAST, b"stage", b"bob")
#: Small pictures: two pages (one encoding, both decoding) and the host's encoder share two cores.
PAGE_MEDIA = "width=320&height=240&fps=20"
HOST_MEDIA = ["--resolution", "320x180", "--framerate", "20", "--bitrate", "300k"]
STATS = "(({trace, ...rest}) => rest)(window.moqStats ?? {})"
TILES = "[...document.querySelectorAll('#stage-tiles [data-participant]')].map((t) => t.dataset.participant)"


class CatalogReader:
    """A subscriber of the broadcast's catalog track (through the relay, as any viewer): the newest catalog."""

    def __init__(self, session: MoqSession) -> None:
        self.session = session
        self.latest: Catalog | None = None
        self.versions = 0
        self._group = -1
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sub = await self.session.subscribe(BROADCAST, CATALOG_TRACK_NAME)

        async def read() -> None:
            async for obj in sub:
                if obj.object_id != 0 or obj.status != ObjectStatus.NORMAL or obj.group_id <= self._group:
                    continue
                catalog = decode_catalog(obj.payload)
                assert isinstance(catalog, Catalog)
                self._group = obj.group_id
                self.latest = catalog
                self.versions += 1
                self._changed.set()

        self._task = asyncio.ensure_future(read())

    async def wait(self, condition: Callable[[Catalog], bool], timeout: float, what: str) -> Catalog:
        """The first catalog (the newest, then each new one) for which `condition` holds, within `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                while self.latest is None or not condition(self.latest):
                    self._changed.clear()
                    await self._changed.wait()
                return self.latest
        except TimeoutError:
            raise AssertionError(f"no catalog {what} within {timeout} s; the last: {self.latest}") from None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


@asynccontextmanager
async def catalog_reader(running: RunningRelay) -> AsyncIterator[CatalogReader]:
    session = await connect(f"moqt://127.0.0.1:{running.port}/", fingerprint=running.certificate.fingerprint_hex)
    reader = CatalogReader(session)
    try:
        await reader.start()
        yield reader
    finally:
        await reader.close()
        session.close()


@asynccontextmanager
async def browsers(count: int) -> AsyncIterator[list[Chromium]]:
    async with contextlib.AsyncExitStack() as stack:
        started = [Chromium(FAKE_MEDIA_FLAGS) for _ in range(count)]
        for browser in started:
            stack.push_async_callback(browser.close)
        await asyncio.gather(*(browser.start() for browser in started))
        yield started


async def line(command: Command, pattern: str, timeout: float = 15) -> str:
    """The command's first stderr line matching `pattern`, within `timeout`."""
    try:
        return await asyncio.wait_for(command.line(pattern), timeout)
    except TimeoutError:
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s") from None


def lists_bob(catalog: Catalog) -> bool:
    return any(t.namespace == namespace_text(BOB) for t in catalog.tracks)


def page_url(web: WebServer, query: str = "") -> str:
    return web.url("127.0.0.1", watch_path(BROADCAST) + (f"?{query}" if query else ""))


def test_a_viewer_joins_the_stage_and_every_viewer_plays_them_until_they_leave(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            relay_with_pages(tmp_path) as (running, web),
            moq("publish", *relay_args(running), "--name", "live/show", "--stage", *HOST_MEDIA, "--quiet") as host,
        ):
            await line(host, r"^publishing live/show")
            async with browsers(2) as (alice, bob), catalog_reader(running) as catalog:
                try:
                    await stage_scenario(web, host, alice, bob, catalog)
                except BaseException:
                    print(f"\nhost:\n{host.stderr}\nalice's console:\n{alice.console_text()}")
                    print(f"bob's console:\n{bob.console_text()}")
                    raise

    run(scenario())


async def stage_scenario(web: WebServer, host: Command, alice: Chromium, bob: Chromium, catalog: CatalogReader) -> None:
    await catalog.wait(lambda c: len(c.tracks) == 2, 10, "with the host's video and audio")
    await alice.open(page_url(web))
    await alice.wait_for(STATS, lambda s: s.get("framesDecoded", 0) >= 20, 20, "alice playing the show")

    opened = time.monotonic()
    await bob.open(page_url(web, f"stage=1&name=bob&{PAGE_MEDIA}"))
    await line(host, r"^stage: bob joined \(1 of 8 on stage\)")
    asked_after = time.monotonic() - opened
    await line(host, r"^stage: the catalog lists bob: video, audio")
    listed = await catalog.wait(lists_bob, 10, "listing bob")
    listed_after = time.monotonic() - opened
    first = "window.moqStats?.stage?.bob?.framesDecoded ?? 0"
    await alice.wait_for(first, lambda n: n >= 1, 15, "alice's first frame of bob")
    first_after = time.monotonic() - opened
    bob_stats = await bob.wait_for(STATS, lambda s: s.get("stageListed") is True, 10, "bob's page: listed by the host")
    a = await alice.wait_for(
        STATS,
        lambda s: (
            "bob" in s["stage"]
            and s["stage"]["bob"]["framesDecoded"] >= 40
            and s["stage"]["bob"]["audioFramesDecoded"] >= 50
        ),
        25,
        "alice decoding bob's video and audio",
    )
    on_stage_after = time.monotonic() - opened
    tiles = await alice.evaluate(TILES)
    shown = await alice.evaluate("document.querySelector('#stage-tiles [data-participant=bob] .latency').textContent")

    # The catalog: the host's own tracks (no namespace: the catalog's), then bob's, in bob's namespace.
    own = [t for t in listed.tracks if t.namespace is None]
    staged = [t for t in listed.tracks if t.namespace is not None]
    assert sorted(t.name for t in own) == ["audio", "video"]
    assert [(t.name, t.role, t.namespace, t.label) for t in staged] == [
        ("video", "video", "live/show/stage/bob", "bob"),
        ("audio", "audio", "live/show/stage/bob", "bob"),
    ]
    assert staged[0].codec is not None and staged[0].codec.startswith("avc1.")
    assert (staged[0].width, staged[0].height) == (320, 240)

    s = a["stage"]["bob"]
    print(
        f"\nafter bob's page opened: the host admitted him at {asked_after:.1f} s, its catalog listed him at "
        f"{listed_after:.1f} s, alice's page decoded his first frame at {first_after:.1f} s and had "
        f"{s['framesDecoded']} video / {s['audioFramesDecoded']} audio frames at {on_stage_after:.1f} s; latency video "
        f"{s['latencyMs']} ms, audio {s['audioLatencyMs']} ms (tile shows {shown!r}); the show itself "
        f"{a['latencyMs']} ms; catalog versions read {catalog.versions}"
    )
    assert tiles == ["bob"]
    assert s["namespace"] == "live/show/stage/bob" and s["videoTrack"] == "video"
    assert s["videoCodec"].startswith("avc1.") and (s["width"], s["height"]) == (320, 240)
    assert s["outOfOrder"] == 0 and s["lastError"] is None
    assert isinstance(s["latencyMs"], int) and 0 < s["latencyMs"] < 2000
    assert a["framesDecoded"] > 0 and a["videoTrack"] == "video"  # the show plays on, beside the tile
    assert a["stageListed"] is False and a["onStage"] is False
    pub = bob_stats["publisher"]
    assert bob_stats["onStage"] and bob_stats["stageState"] == "on stage" and pub["cameraOn"]
    b = await bob.evaluate(STATS)
    assert b["stage"] == {}  # bob's page has no tile for bob: its preview is local
    assert b["publisher"]["served"] >= 3  # catalog (the host), video and audio (the relay for alice)

    # Bob leaves: the catalog stops listing him, and alice's tile for him goes.
    left = time.monotonic()
    await bob.evaluate("document.getElementById('stage-join').click()")
    await bob.wait_for(STATS, lambda s: s["onStage"] is False, 5, "bob off stage")
    await line(host, r"^stage: bob left")
    await catalog.wait(lambda c: not lists_bob(c) and len(c.tracks) == 2, 10, "without bob")
    gone = "!('bob' in window.moqStats.stage) && !document.querySelector('#stage-tiles [data-participant]')"
    await alice.wait_for(gone, bool, 10, "bob's tile gone from alice's page")
    print(f"bob's leaving reached alice's page within {time.monotonic() - left:.1f} s")
    before = (await alice.evaluate(STATS))["framesDecoded"]
    await alice.wait_for(STATS, lambda s: s["framesDecoded"] >= before + 20, 10, "alice still playing the show")
