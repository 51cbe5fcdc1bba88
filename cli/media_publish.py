"""`moq publish`, the running part: a media pipeline's frames become LOC objects on tracks the session serves.

The broadcast is one namespace with these tracks (names fixed, so a subscriber that skips the catalog still finds
them):

- "catalog": MSF catalog (packaging "catalog"). Each group holds one object, object 0, the full catalog (we send no
  delta updates). A new group starts whenever a track's description changes (new parameter sets in an MPEG-TS
  input) and every `--catalog-interval` seconds. Why both: a SUBSCRIBE without a filter starts at the latest group
  (draft §3.1, and what our relay does), so one group would do for such subscribers, since its object 0 is always
  the current catalog; the periodic group serves those that start at the next group or the next object (draft-18's
  "latest object" filter, players that (re)join mid-broadcast), at the cost of one ~400-byte object.
- "video": H.264 (avc1), one MOQT group per GOP and one object per frame, VIDEO_CONFIG (avcC) on object 0 of each
  group, the keyframe flag in VIDEO_FRAME_MARKING (`moq.media.groups`).
- "audio": Opus (or AAC passed through with --copy), one frame per group (LOC's one-audio-track example).

Every object carries LOC's TIMESTAMP: the capture wall clock in microseconds, which is how a subscriber measures
end-to-end latency.

Objects go into `moq.model.Track` caches (`session.add_track`); the session answers the relay's SUBSCRIBEs from
them, each subscription starting at the latest group. Publisher priorities put the catalog first, then audio, then
video (a late video frame hurts less than a gap in sound).

With `--stage`, viewers who publish under NAME/stage/<name> are brought on stage (`cli.media_stage`): the catalog
then also lists their video and audio, each entry with the participant's `namespace`, after our own tracks; a new
catalog group whenever someone joins, leaves or changes what they send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import Any

from cli.media_glue import (
    CliError,
    Meter,
    close_session,
    drain,
    every,
    install_stop_signals,
    open_session,
    split_namespace,
    status,
    write_json,
)
from cli.media_stage import StageHost, StageRoster, cancel_quietly
from cli.publish import PublishConfig
from moq.api import MoqSession
from moq.errors import RequestRejected
from moq.media.catalog import CATALOG_TRACK_NAME, Catalog, catalog_with_stage, encode_catalog, track_for_stream
from moq.media.catalog import Track as CatalogTrack
from moq.media.encode import AsyncMediaStream, AudioSettings, InputSpec, MediaPipeline, VideoSettings
from moq.media.errors import CatalogError, MediaError, MediaInputError
from moq.media.frames import EncodedFrame, StreamInfo, TrackKind
from moq.media.groups import GroupMapper, wallclock_group_start
from moq.model import CachedObject, Track
from moq.session.events import RequestReceived
from moq.wire.codes import ObjectStatus
from moq.wire.messages import Subscribe
from moq.wire.primitives import TrackNamespace

logger = logging.getLogger(__name__)

#: Track names, one per media kind (documented in `moq publish --help` and the module notes).
TRACK_NAMES: dict[TrackKind, str] = {"video": "video", "audio": "audio"}
#: Publisher priorities (lower is sent first, draft §5.1): the catalog, then audio, then video.
CATALOG_PRIORITY = 0
AUDIO_PRIORITY = 64
VIDEO_PRIORITY = 128
#: Groups each track keeps cached for subscribers that join or fall behind: the catalog needs only its latest;
#: video a few GOPs; audio, at one 20 ms frame per group, about two seconds.
CATALOG_CACHE_GROUPS = 2
VIDEO_CACHE_GROUPS = 4
AUDIO_CACHE_GROUPS = 100


class TrackCounters:
    """What one media track published."""

    def __init__(self) -> None:
        self.objects = 0
        self.groups = 0
        self.bytes = 0
        self.skipped = 0  # frames no group could take (video before its first keyframe)
        self.meter = Meter()

    def figures(self) -> dict[str, int]:
        return {"frames": self.objects, "objects": self.objects, "groups": self.groups, "bytes": self.bytes,
                "skipped": self.skipped}  # fmt: skip


class Broadcast:
    """One namespace's tracks and the packaging of frames into them."""

    def __init__(self, ns: TrackNamespace, infos: tuple[StreamInfo, ...], audio_frames_per_group: int = 1) -> None:
        self.namespace = ns
        self.infos: dict[TrackKind, StreamInfo] = {info.kind: info for info in infos}
        self.catalog_track = Track(ns, CATALOG_TRACK_NAME.encode(), max_groups=CATALOG_CACHE_GROUPS)
        self.tracks: dict[TrackKind, Track] = {}
        self.mappers: dict[TrackKind, GroupMapper] = {}
        self.counters: dict[TrackKind, TrackCounters] = {}
        for kind in self.infos:
            groups = VIDEO_CACHE_GROUPS if kind == "video" else AUDIO_CACHE_GROUPS
            self.tracks[kind] = Track(ns, TRACK_NAMES[kind].encode(), max_groups=groups)
            self.mappers[kind] = GroupMapper(kind, frames_per_group=audio_frames_per_group if kind == "audio" else None)
            self.counters[kind] = TrackCounters()
        self.catalog_groups = 0
        #: Stage participants' entries (`cli.media_stage`), listed after our own tracks.
        self.stage: tuple[CatalogTrack, ...] = ()
        self._next_catalog_group = wallclock_group_start()
        self._open: dict[TrackKind, int] = {}  # the group each media track is filling
        self._subscribed: set[bytes] = set()
        #: Set once every media track has been subscribed (`--wait-subscriber`).
        self.all_subscribed = asyncio.Event()

    @property
    def all_tracks(self) -> list[Track]:
        return [self.catalog_track, *self.tracks.values()]

    def catalog(self) -> Catalog:
        """The MSF catalog describing every media track (ours without a namespace: they are in the catalog's), then
        the stage's, each with its participant's namespace."""
        own = (track_for_stream(TRACK_NAMES[kind], info) for kind, info in self.infos.items())
        return catalog_with_stage(own, self.stage, namespace=self.namespace)

    def set_stage(self, entries: tuple[CatalogTrack, ...]) -> None:
        """List these stage entries from now on: a new catalog group when they changed (entries that would make
        the catalog invalid are refused, and the catalog stays as it was)."""
        if entries == self.stage:
            return
        previous, self.stage = self.stage, entries
        try:
            self.publish_catalog()
        except CatalogError as exc:
            self.stage = previous
            logger.warning("stage entries not listed: %s", exc)

    def publish_catalog(self) -> None:
        """Start a new catalog group whose object 0 is the full catalog."""
        payload = encode_catalog(self.catalog())  # first: a catalog that cannot be made takes no group id
        group = self._next_catalog_group
        self._next_catalog_group += 1
        self.catalog_track.append(CachedObject(group, 0, 0, payload, CATALOG_PRIORITY, ObjectStatus.NORMAL))
        self.catalog_track.end_subgroup(group, 0)
        self.catalog_groups += 1

    def push(self, frame: EncodedFrame) -> None:
        """Package one encoded frame as the next object of its track."""
        kind = frame.kind
        track = self.tracks.get(kind)
        if track is None:
            return
        if frame.info is not self.infos[kind] and frame.info != self.infos[kind]:
            # New parameter sets or a new size (an MPEG-TS input changed): describe it before its first frame.
            self.infos[kind] = frame.info
            self.publish_catalog()
        counters = self.counters[kind]
        obj = self.mappers[kind].push(frame)
        if obj is None:
            counters.skipped += 1
            return
        if obj.new_group:
            previous = self._open.get(kind)
            if previous is not None:
                track.end_subgroup(previous, 0)  # the group's stream ends with its last frame
            self._open[kind] = obj.group_id
            counters.groups += 1
        priority = VIDEO_PRIORITY if kind == "video" else AUDIO_PRIORITY
        track.append(
            CachedObject(
                obj.group_id, obj.subgroup_id, obj.object_id, obj.payload, priority, ObjectStatus.NORMAL, obj.properties
            )
        )
        counters.objects += 1
        counters.bytes += len(obj.payload)
        counters.meter.add(len(obj.payload))

    def finish(self) -> None:
        """End the open groups and every track: subscribers get PUBLISH_DONE (TRACK_ENDED) after the last object."""
        for kind, group in self._open.items():
            self.tracks[kind].end_subgroup(group, 0)
        self._open.clear()
        for track in self.all_tracks:
            track.end_track()

    async def on_request(self, session: MoqSession, event: RequestReceived) -> None:
        """The session's request handler: the default handling, plus noting who subscribed to what."""
        # The API has no public "a track of mine was subscribed" hook, nor a public default handler to wrap.
        await session.handle_request(event)
        msg = event.message
        if isinstance(msg, Subscribe) and msg.namespace == self.namespace:
            self._subscribed.add(msg.name)
            if all(track.name in self._subscribed for track in self.tracks.values()):
                self.all_subscribed.set()

    def live_line(self, elapsed: float) -> str:
        parts = []
        for kind, counters in self.counters.items():
            fps, kbps = counters.meter.rates()
            parts.append(f"{kind} {fps:5.1f} fps {kbps:7.1f} kbit/s")
        return f"[{elapsed:7.1f} s] published " + " | ".join(parts)


def make_pipeline(cfg: PublishConfig) -> MediaPipeline:
    """The media pipeline the options describe."""
    spec = InputSpec.parse(cfg.input, loop=cfg.loop)
    if spec.kind == "device":
        # Ask the camera itself for the size and rate (otherwise it picks its own and we scale).
        options: list[tuple[str, str]] = []
        if cfg.resolution is not None:
            options.append(("video_size", f"{cfg.resolution[0]}x{cfg.resolution[1]}"))
        if cfg.framerate is not None:
            options.append(("framerate", f"{cfg.framerate:g}"))
        spec = InputSpec(kind="device", url=spec.url, format=spec.format, options=tuple(options))
    video: VideoSettings | None = None
    if cfg.video:
        defaults = VideoSettings()
        video = VideoSettings(
            width=cfg.resolution[0] if cfg.resolution else None,
            height=cfg.resolution[1] if cfg.resolution else None,
            fps=cfg.framerate,
            bitrate=cfg.bitrate or defaults.bitrate,
            gop=cfg.gop,
        )
    audio: AudioSettings | None = None
    if cfg.audio:
        audio = AudioSettings(bitrate=cfg.audio_bitrate or AudioSettings().bitrate)
    try:
        return MediaPipeline(spec, video=video, audio=audio, copy=cfg.copy, duration=cfg.duration)
    except ValueError as exc:  # e.g. --copy of the test pattern
        raise CliError(str(exc)) from None


def describe(infos: dict[TrackKind, StreamInfo]) -> str:
    parts = [f"{TRACK_NAMES[kind]} ({info.codec}" for kind, info in infos.items()]
    out = []
    for part, info in zip(parts, infos.values(), strict=True):
        if info.kind == "video" and info.width and info.height:
            rate = f"@{info.framerate:g}" if info.framerate else ""
            part += f", {info.width}x{info.height}{rate}"
        elif info.kind == "audio" and info.sample_rate:
            part += f", {info.sample_rate} Hz"
        out.append(part + ")")
    return ", ".join([CATALOG_TRACK_NAME, *out])


async def first_of(*aws: Awaitable[Any]) -> int:
    """Run the awaitables until one finishes; cancel the rest and return the index of the first."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return next(i for i, t in enumerate(tasks) if t in done)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_publish(cfg: PublishConfig) -> dict[str, Any]:
    """Publish until the input ends, --duration passes, a signal arrives or the relay goes; returns the figures
    (also written to --stats-json). Raises `CliError` with one line for anything a person must fix."""
    ns = split_namespace(cfg.name)
    pipeline = make_pipeline(cfg)
    try:
        infos = await asyncio.to_thread(pipeline.open)  # reports a bad input before we bother the relay
    except MediaInputError as exc:
        raise CliError(str(exc)) from None
    except MediaError as exc:
        raise CliError(f"cannot read {cfg.input}: {exc}") from None
    stream = AsyncMediaStream(pipeline)
    try:
        session = await open_session(cfg.url, fingerprint=cfg.fingerprint, verify=cfg.verify, timeout=cfg.timeout)
    except BaseException:
        await stream.aclose()
        raise
    stop = asyncio.Event()
    undo_signals = install_stop_signals(stop)
    try:
        return await _publish(cfg, session, stream, ns, infos, stop)
    finally:
        undo_signals()
        await stream.aclose()
        await close_session(session)


async def _publish(
    cfg: PublishConfig,
    session: MoqSession,
    stream: AsyncMediaStream,
    ns: TrackNamespace,
    infos: tuple[StreamInfo, ...],
    stop: asyncio.Event,
) -> dict[str, Any]:
    broadcast = Broadcast(ns, infos, cfg.audio_frames_per_group)
    for track in broadcast.all_tracks:
        session.add_track(track)
    session.on_request = broadcast.on_request
    broadcast.publish_catalog()
    try:
        request_id = await session.publish_namespace(ns)
    except RequestRejected as exc:
        raise CliError(f"the relay refused to let us publish {cfg.name}: {exc.reason or exc}") from None
    except ConnectionError as exc:
        raise CliError(f"lost the relay at {cfg.url}: {exc}") from None
    stage: StageHost | None = None
    if cfg.stage:
        roster = StageRoster(cfg.stage_max, allow=cfg.stage_allow)
        stage = StageHost(session, ns, roster, broadcast.set_stage)
        try:
            await stage.start()
        except RequestRejected as exc:
            refused = f"the relay refused our SUBSCRIBE_NAMESPACE for {stage.prefix_text}: {exc.reason or exc}"
            raise CliError(refused) from None
        except ConnectionError as exc:
            raise CliError(f"lost the relay at {cfg.url}: {exc}") from None
    status(f"publishing {cfg.name} at {cfg.url}: {describe(broadcast.infos)}")
    if stage is not None:
        who = f"up to {cfg.stage_max}" + (f" of {', '.join(sorted(cfg.stage_allow))}" if cfg.stage_allow else "")
        status(f"stage: viewers publishing under {stage.prefix_text}/<name> come on stage ({who})")
    started = time.monotonic()
    ended_by = "input"
    background: list[asyncio.Task[None]] = []
    failure: BaseException | None = None
    staging = asyncio.create_task(stage.run()) if stage is not None else None
    try:
        if cfg.wait_subscriber:
            names = ", ".join(TRACK_NAMES[kind] for kind in broadcast.tracks)
            status(f"waiting for a subscriber to {names}")
            which = await first_of(broadcast.all_subscribed.wait(), session.closed.wait(), stop.wait())
            if which == 1:
                raise CliError(f"lost the relay at {cfg.url}: {_close_reason(session)}")
            if which == 2:
                ended_by = "signal"
        if ended_by != "signal":
            status("started the input")
            started = time.monotonic()
            for counters in broadcast.counters.values():
                counters.meter.rates()  # the first live line counts from now
            if cfg.catalog_interval > 0:
                background.append(asyncio.create_task(every(cfg.catalog_interval, broadcast.publish_catalog)))
            if not cfg.quiet:
                background.append(
                    asyncio.create_task(
                        every(cfg.stats_interval, lambda: status(broadcast.live_line(time.monotonic() - started)))
                    )
                )
            pump = asyncio.create_task(_pump(stream, broadcast))
            which = await first_of(asyncio.shield(pump), session.closed.wait(), stop.wait())
            if which == 0:
                failure = pump.exception()
            else:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
                ended_by = "relay" if which == 1 else "signal"
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await cancel_quietly(staging)
    seconds = time.monotonic() - started
    broadcast.finish()
    if ended_by != "relay":
        await drain(session)
        session.withdraw(request_id)
    figures: dict[str, Any] = {
        "namespace": cfg.name,
        "url": cfg.url,
        "ended_by": ended_by,
        "seconds": round(seconds, 3),
        "tracks": {
            **{TRACK_NAMES[kind]: c.figures() for kind, c in broadcast.counters.items()},
            CATALOG_TRACK_NAME: {"groups": broadcast.catalog_groups, "objects": broadcast.catalog_groups},
        },
    }
    if stage is not None:
        figures["stage"] = stage.figures()
    if cfg.stats_json:
        write_json(cfg.stats_json, figures)
    summary = ", ".join(
        f"{TRACK_NAMES[k]} {c.objects} frames in {c.groups} groups" for k, c in broadcast.counters.items()
    )
    status(f"published {summary} in {seconds:.1f} s (ended by {ended_by})")
    if ended_by == "relay":
        raise CliError(f"lost the relay at {cfg.url}: {_close_reason(session)}")
    if isinstance(failure, MediaError):
        raise CliError(str(failure))
    if failure is not None:
        raise failure
    return figures


async def _pump(stream: AsyncMediaStream, broadcast: Broadcast) -> None:
    async for frame in stream:
        broadcast.push(frame)


def _close_reason(session: MoqSession) -> str:
    if session.close_reason is None:
        return "the session closed"
    code, reason = session.close_reason
    return f"{reason or 'the session closed'} (code 0x{code:x})"
