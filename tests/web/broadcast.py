"""The publisher side of the browser tests: the test pattern published to a relay through the library's API.

What a publisher emits (DIGEST §18, moq.media): a `catalog` track whose group holds the MSF catalog as object 0,
and LOC tracks `video` (H.264, avc1, one group per GOP, VIDEO_CONFIG on object 0) and `audio` (Opus, one frame
per group), made by `MediaPipeline` from lavfi's test pattern at real time and grouped by `GroupMapper`. The
objects go into `moq.model.Track`s that the publisher's session serves to the relay; `publish_namespace` makes
the broadcast known. Each video object's capture time is recorded, so a test can tell which frames a page
decoded, and whether it decoded them in order.

The tests build this directly rather than through `moq publish` (built elsewhere, in parallel).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from moq.api import MoqSession, connect
from moq.media.catalog import CATALOG_TRACK_NAME, encode_catalog, make_catalog, track_for_stream
from moq.media.encode import AsyncMediaStream, AudioSettings, InputSpec, MediaPipeline, VideoSettings
from moq.media.groups import GroupMapper
from moq.model import CachedObject, Track
from moq.wire.primitives import TrackNamespace
from moq.wire.version import SUPPORTED_VERSIONS, Version

VIDEO_PRIORITY = 128
AUDIO_PRIORITY = 64
CATALOG_PRIORITY = 0


class PatternBroadcast:
    """The test pattern, video and audio, published under `namespace` (see the module docstring)."""

    def __init__(
        self, namespace: TrackNamespace, *, width: int = 640, height: int = 360, fps: int = 30, audio: bool = True
    ) -> None:
        self.namespace = namespace
        self.video_settings = VideoSettings(width=width, height=height, fps=fps, bitrate=700_000, gop=fps)
        self.audio_settings = AudioSettings() if audio else None
        #: (group id, object id, capture time in µs) of every video object published, in order.
        self.video: list[tuple[int, int, int]] = []
        self.audio_frames = 0
        self.session: MoqSession | None = None
        self._stream: AsyncMediaStream | None = None
        self._pump: asyncio.Task[None] | None = None
        self._tracks: dict[str, Track] = {}
        self._published = asyncio.Event()

    async def start(self, url: str, fingerprint: str, versions: tuple[Version, ...] = SUPPORTED_VERSIONS) -> None:
        """Connect, open the encoders, publish the catalog and the namespace, and start sending media."""
        self.session = await connect(url, fingerprint=fingerprint, versions=versions)
        pipeline = MediaPipeline(InputSpec(kind="pattern"), video=self.video_settings, audio=self.audio_settings)
        self._stream = AsyncMediaStream(pipeline)
        infos = await self._stream.start()
        ns = self.namespace
        entries = []
        for info in infos:
            name = info.kind
            self._tracks[name] = self.session.add_track(Track(ns, name.encode()))
            entries.append(track_for_stream(name, info))
        catalog = self.session.add_track(Track(ns, CATALOG_TRACK_NAME.encode()))
        group = time.time_ns() // 1_000_000
        catalog.append(CachedObject(group, 0, 0, encode_catalog(make_catalog(entries)), CATALOG_PRIORITY))
        catalog.end_subgroup(group, 0)
        self._tracks[CATALOG_TRACK_NAME] = catalog
        await self.session.publish_namespace(ns)
        self._pump = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        assert self._stream is not None
        mappers = {"video": GroupMapper("video"), "audio": GroupMapper("audio")}
        open_group: dict[str, int] = {}
        async for frame in self._stream:
            obj = mappers[frame.kind].push(frame)
            if obj is None:
                continue
            track = self._tracks[frame.kind]
            previous = open_group.get(frame.kind)
            if obj.new_group and previous is not None:
                track.end_subgroup(previous, 0)  # the group is complete: its stream gets a FIN
            open_group[frame.kind] = obj.group_id
            priority = VIDEO_PRIORITY if frame.kind == "video" else AUDIO_PRIORITY
            track.append(CachedObject(obj.group_id, 0, obj.object_id, obj.payload, priority, properties=obj.properties))
            if frame.kind == "video":
                self.video.append((obj.group_id, obj.object_id, frame.timestamp_us))
            else:
                self.audio_frames += 1
            self._published.set()

    def video_since(self, start_us: int) -> list[int]:
        """Capture times of the video frames published at or after `start_us` (wall clock, µs)."""
        return [t for _, _, t in self.video if t >= start_us]

    async def stop(self) -> None:
        """Stop the encoders and leave (the relay withdraws the namespace: its broadcast ends)."""
        if self._stream is not None:
            await self._stream.aclose()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
        if self.session is not None:
            self.session.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.session.wait_closed(), 5)
