"""`moq subscribe`, the running part: catalog first, then the media tracks, into decoders, a recording or a pipe.

Finding the catalog. A SUBSCRIBE without a filter starts at the track's latest group (draft §3.1, what our relay
and publisher do), and object 0 of every catalog group is the full catalog; so the first object 0 that arrives is
the current catalog. (A publisher that sent the catalog once and never again still works: its one group stays the
latest.) Delta updates (objects after 0) are skipped: we only need the independent catalog to start. The catalog
subscription is then cancelled: decoders take parameter changes from the LOC VIDEO_CONFIG in band.

Statistics, per track: objects and bytes received; groups seen and dropped (gaps in the group ids after the first
group we got, which a relay produces when it drops groups of a subscriber that fell behind); objects missing inside
a group; end-to-end latency of each object = our wall clock at reception - its LOC TIMESTAMP (the publisher's
capture wall clock, µs; meaningful when both clocks agree, e.g. on one host or with NTP), also without the first
group (`latency_after_join_ms`: a subscription starts at the start of the latest group, so its first objects are
a catch-up burst of frames captured before we subscribed); frames decoded and recorded. Live lines on stderr
every --stats-interval; final figures to --stats-json.

Order. QUIC orders bytes within a stream only, and each group (each audio frame) travels on its own stream, so a
lost packet lets a later group overtake an earlier one. A decoder and a muxer need (group, object) order, so each
track's objects pass through a small reorder buffer (`Reorder`) on their way to them: an object that follows the
last one released (next object of its group, or object 0 of the next group) goes at once; one after a gap waits
up to `MAX_REORDER_WAIT` for the gap to fill. Latency is measured at arrival, before this buffer.

Decoding and recording block (PyAV), so they run in one worker thread fed through a bounded queue: when it falls
behind, reading from the network waits (the session's own bounded buffer then drops its oldest objects, counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import queue
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
from av.video.frame import VideoFrame

from cli.media_glue import (
    CliError,
    LatencySamples,
    Meter,
    close_session,
    every,
    install_stop_signals,
    now_us,
    open_session,
    split_namespace,
    status,
    write_json,
)
from cli.subscribe import SubscribeConfig
from moq.api import MoqSession, Subscription
from moq.errors import RequestRejected
from moq.media.catalog import CATALOG_TRACK_NAME, Catalog, decode_catalog
from moq.media.catalog import Track as CatalogTrack
from moq.media.decode import Recorder, TrackDecoder, TsWriter, decoder_name, track_kind
from moq.media.errors import CatalogError, LocError, MediaError
from moq.media.loc import LocFrame
from moq.media.pattern import read_stamp
from moq.session.events import ObjectReceived
from moq.wire.codes import ObjectStatus, PublishDoneCode, RequestErrorCode
from moq.wire.params import Parameters
from moq.wire.primitives import TrackNamespace

logger = logging.getLogger(__name__)

#: Groups per track whose highest object id we remember, to count objects missing inside a group; older groups
#: are forgotten (a late object of a forgotten group only counts as late).
MAX_TRACKED_GROUPS = 64
#: Frames waiting for the decode/record thread; past this, reading from the network waits for it.
MAX_SINK_QUEUE = 256
#: Latency samples kept for one live line (the median of the last interval).
MAX_INTERVAL_SAMPLES = 10_000
#: How long an object that follows a gap waits for the gap to fill before it goes to the decoder anyway (seconds):
#: long enough for QUIC to retransmit a lost packet on a loaded machine; paid only when something is missing.
MAX_REORDER_WAIT = 0.5
#: Objects a reorder buffer holds at most; past this the oldest gap is given up.
MAX_REORDER_OBJECTS = 512


class TrackStats:
    """What arrived on one track (see the module notes)."""

    def __init__(self, name: str, entry: CatalogTrack) -> None:
        self.name = name
        self.entry = entry
        self.objects = 0
        self.bytes = 0
        self.groups = 0
        self.first_group: int | None = None
        self.last_group: int | None = None
        self.objects_missing = 0
        self.objects_reordered = 0  # arrived after an object that comes later in the track
        self.status_objects = 0  # objects that carry a status instead of a payload (end of group, ...)
        self.malformed = 0
        self.latency = LatencySamples()
        #: The same, from the second group on: the first group we get began before we subscribed, so its first
        #: objects arrive as a catch-up burst whose age is not the broadcast's latency.
        self.latency_after_join = LatencySamples()
        self.meter = Meter()
        self.interval_latency: list[float] = []
        self.done: str | None = None
        self._recent: OrderedDict[int, int] = OrderedDict()  # group id -> highest object id seen

    @property
    def groups_dropped(self) -> int:
        if self.first_group is None or self.last_group is None:
            return 0
        return max(0, self.last_group - self.first_group + 1 - self.groups)

    def on_object(self, obj: ObjectReceived) -> None:
        """Count one object as it arrives."""
        self.objects += 1
        self.bytes += len(obj.payload)
        self.meter.add(len(obj.payload))
        gid = obj.group_id
        if self.last_group is not None and (gid, obj.object_id) < (
            self.last_group,
            self._recent.get(self.last_group, 0),
        ):
            self.objects_reordered += 1
        highest = self._recent.get(gid)
        if highest is None:
            self.groups += 1
            if self.first_group is None or gid < self.first_group:
                self.first_group = gid
            highest = -1
            self._recent[gid] = highest
            if len(self._recent) > MAX_TRACKED_GROUPS:
                self._recent.popitem(last=False)
        if obj.object_id > highest + 1:
            # Missing for now: a gap inside a group, filled if the object turns up later (below).
            self.objects_missing += obj.object_id - highest - 1
        elif obj.object_id < highest:
            self.objects_missing -= 1
        if obj.object_id > highest:
            self._recent[gid] = obj.object_id
        if self.last_group is None or gid > self.last_group:
            self.last_group = gid

    def on_latency(self, ms: float, group: int) -> None:
        self.latency.add(ms)
        if self.first_group is not None and group > self.first_group:
            self.latency_after_join.add(ms)
        if len(self.interval_latency) < MAX_INTERVAL_SAMPLES:
            self.interval_latency.append(ms)

    def live_part(self) -> str:
        fps, kbps = self.meter.rates()
        samples, self.interval_latency = sorted(self.interval_latency), []
        lat = f"{samples[len(samples) // 2]:6.1f} ms" if samples else "     - ms"
        return f"{self.name} {fps:5.1f} fps {kbps:7.1f} kbit/s {lat}"


_SinkItem = tuple[str, LocFrame, bool]


class Reorder:
    """One track's objects back in (group, object) order on their way to a decoder (see the module notes)."""

    def __init__(self, first: tuple[int, int] | None = None, wait: float = MAX_REORDER_WAIT) -> None:
        """`first`: where the subscription starts, when known (object 0 of the largest group SUBSCRIBE_OK named);
        until then, or without it, the first objects wait for anything earlier still in flight."""
        self.wait = wait
        self.late = 0  # arrived after the buffer had moved past them: a decoder cannot use them any more
        self._first = first
        self._last: tuple[int, int] | None = None
        self._heap: list[tuple[int, int, int, float, _SinkItem]] = []
        self._seq = 0  # breaks ties, so that items are never compared

    def push(self, group: int, obj: int, item: _SinkItem, now: float) -> None:
        if self._last is not None and (group, obj) <= self._last:
            self.late += 1
            return
        self._seq += 1
        heapq.heappush(self._heap, (group, obj, self._seq, now, item))

    def _follows(self, group: int, obj: int) -> bool:
        if self._last is None:
            return self._first is not None and (group, obj) <= self._first
        last_group, last_obj = self._last
        return (group == last_group and obj == last_obj + 1) or (group == last_group + 1 and obj == 0)

    def deadline(self) -> float | None:
        """When the oldest held object stops waiting (loop time), or None when nothing is held."""
        if not self._heap:
            return None
        return min(entry[3] for entry in self._heap) + self.wait

    def ready(self, now: float) -> list[_SinkItem]:
        """The objects that may go now, in order."""
        out: list[_SinkItem] = []
        while self._heap:
            group, obj, _, _, item = self._heap[0]
            deadline = self.deadline()
            overdue = deadline is not None and now >= deadline
            if not (self._follows(group, obj) or overdue or len(self._heap) > MAX_REORDER_OBJECTS):
                break
            heapq.heappop(self._heap)
            self._last = (group, obj)
            out.append(item)
        return out

    def drain(self) -> list[_SinkItem]:
        """Everything held, in order (the track has ended)."""
        out = []
        while self._heap:
            group, obj, _, _, item = heapq.heappop(self._heap)
            self._last = (group, obj)
            out.append(item)
        return out


class PatternCheck:
    """The test pattern's stamp read back from decoded pictures: frame numbers in order, none missing, and the
    glass-to-glass latency (decoded now - drawn at)."""

    def __init__(self) -> None:
        self.checked = 0
        self.out_of_order = 0
        self.missing = 0
        self.first: int | None = None
        self.last: int | None = None
        self.latency = LatencySamples()
        self.unreadable = False

    def on_picture(self, picture: VideoFrame) -> None:
        if self.unreadable:
            return
        try:
            stamp = read_stamp(picture)
        except ValueError:  # a picture too small to carry the stamp
            self.unreadable = True
            return
        self.checked += 1
        number = stamp.frame_number
        if self.last is not None:
            if number <= self.last:
                self.out_of_order += 1
            elif number > self.last + 1:
                self.missing += number - self.last - 1
        if self.first is None:
            self.first = number
        self.last = number if self.last is None else max(self.last, number)
        now_ms = time.time_ns() // 1_000_000
        self.latency.add(float((now_ms - stamp.wallclock_ms) & 0xFFFFFFFF))

    def figures(self) -> dict[str, Any]:
        return {
            "frames_checked": self.checked,
            "first_frame_number": self.first,
            "last_frame_number": self.last,
            "out_of_order": self.out_of_order,
            "missing": self.missing,
            "glass_to_glass_ms": self.latency.summary(),
        }


class MediaSink:
    """Decoders and a recording, driven by one worker thread (PyAV blocks); see the module notes."""

    def __init__(
        self,
        tracks: dict[str, CatalogTrack],
        *,
        decode: bool,
        output: str | None,
        verify_pattern: bool,
        stdout: BinaryIO | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        """`on_error` is called (on the event loop) when decoding or recording fails, e.g. the pipe was closed."""
        self.tracks = tracks
        self.decode = decode
        self.output = output
        self.decoders: dict[str, TrackDecoder] = {}
        self.recorder: Recorder | None = None
        self.pattern = PatternCheck() if verify_pattern else None
        self.error: BaseException | None = None
        self._stdout = stdout
        self._queue: queue.Queue[_SinkItem | None] = queue.Queue(MAX_SINK_QUEUE)  # None: stop
        self._thread: threading.Thread | None = None
        self._on_error = on_error
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Open decoders and the output (off the loop): a file that cannot be written is reported now."""
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._open)
        self._thread = threading.Thread(target=self._run, name="moq-subscribe-sink", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        entries = list(self.tracks.values())
        try:
            if self.decode:
                self.decoders = {name: TrackDecoder(entry) for name, entry in self.tracks.items()}
            if self.output == "-":
                self.recorder = TsWriter(self._stdout or sys.stdout.buffer, entries)
            elif self.output is not None:
                self.recorder = Recorder(self.output, entries)
        except (MediaError, ValueError) as exc:
            raise CliError(str(exc)) from None

    async def put(self, name: str, frame: LocFrame, keyframe: bool) -> None:
        item: _SinkItem = (name, frame, keyframe)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            await asyncio.to_thread(self._queue.put, item)

    async def close(self) -> None:
        """Let the worker finish what is queued, flush the decoders and finish the recording."""
        if self._thread is None:
            return
        await asyncio.to_thread(self._queue.put, None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            if self.error is not None:
                continue  # keep draining so that the reader never blocks on a dead sink
            name, frame, keyframe = item
            try:
                self._process(name, frame, keyframe)
            except Exception as exc:  # reported at the end, as one line
                self.error = exc
                if self._on_error is not None and self._loop is not None:
                    with contextlib.suppress(RuntimeError):  # the loop is gone already
                        self._loop.call_soon_threadsafe(self._on_error)
        try:
            for name, decoder in self.decoders.items():
                for picture in decoder.flush():
                    self._picture(name, picture)
        except Exception as exc:
            self.error = self.error or exc
        finally:
            if self.recorder is not None:
                try:
                    self.recorder.close()
                except Exception as exc:
                    self.error = self.error or exc
                if self.output == "-":
                    with contextlib.suppress(OSError, ValueError):
                        (self._stdout or sys.stdout.buffer).flush()

    def _process(self, name: str, frame: LocFrame, keyframe: bool) -> None:
        decoder = self.decoders.get(name)
        if decoder is not None:
            for picture in decoder.decode(frame):
                self._picture(name, picture)
        if self.recorder is not None:
            self.recorder.write(name, frame, keyframe=keyframe)

    def _picture(self, name: str, picture: object) -> None:
        if self.pattern is not None and isinstance(picture, VideoFrame):
            self.pattern.on_picture(picture)

    def decoded(self, name: str) -> int | None:
        decoder = self.decoders.get(name)
        return decoder.frames_decoded if decoder is not None else None

    def recorded(self, name: str) -> int | None:
        return self.recorder.frames_written.get(name) if self.recorder is not None else None


async def read_catalog(sub: Subscription, name: str) -> Catalog:
    """The first independent catalog on the catalog track (object 0 of a group; see the module notes)."""
    async for obj in sub:
        if obj.object_id != 0 or obj.status != ObjectStatus.NORMAL:
            continue
        try:
            catalog = decode_catalog(obj.payload)
        except CatalogError as exc:
            raise CliError(f"the catalog of {name} cannot be read: {exc}") from None
        if isinstance(catalog, Catalog):
            return catalog
    raise CliError(f"the broadcast at {name} ended before its catalog arrived")


def choose_tracks(catalog: Catalog, cfg: SubscribeConfig) -> dict[str, CatalogTrack]:
    """The catalog's audio and video tracks, or those --track names (in catalog order)."""
    media: dict[str, CatalogTrack] = {}
    for entry in catalog.tracks:
        if entry.packaging != "loc":
            continue
        try:
            track_kind(entry)
        except MediaError:
            continue  # neither audio nor video: nothing we know how to show
        media[entry.name] = entry
    if cfg.tracks:
        unknown = [t for t in cfg.tracks if t not in media]
        if unknown:
            have = ", ".join(media) or "no audio or video track"
            raise CliError(f"the catalog of {cfg.name} has no track {', '.join(unknown)} (it has: {have})")
        return {t: media[t] for t in media if t in cfg.tracks}
    if not media:
        raise CliError(f"the catalog of {cfg.name} lists no audio or video track")
    return media


def _rejected(exc: RequestRejected, cfg: SubscribeConfig, what: str) -> CliError:
    if exc.code == RequestErrorCode.DOES_NOT_EXIST:
        if what == CATALOG_TRACK_NAME:
            return CliError(f"nothing is published at {cfg.name}")
        return CliError(f"{cfg.name} has no track {what}")
    if exc.code == RequestErrorCode.TIMEOUT and what == CATALOG_TRACK_NAME:
        return CliError(f"nothing was published at {cfg.name} within {cfg.wait:g} s")
    return CliError(f"the relay refused our subscription to {cfg.name} {what}: {exc.reason or exc}")


async def run_subscribe(cfg: SubscribeConfig, *, stdout: BinaryIO | None = None) -> dict[str, Any]:
    """Subscribe until every track ends, --duration passes, a signal arrives or the relay goes; returns the
    figures (also written to --stats-json). Raises `CliError` with one line for anything a person must fix."""
    ns = split_namespace(cfg.name)
    session = await open_session(cfg.url, fingerprint=cfg.fingerprint, verify=cfg.verify, timeout=cfg.timeout)
    stop = asyncio.Event()
    undo_signals = install_stop_signals(stop)
    try:
        return await _subscribe(cfg, session, ns, stop, stdout)
    finally:
        undo_signals()
        await close_session(session)


async def _subscribe(
    cfg: SubscribeConfig, session: MoqSession, ns: TrackNamespace, stop: asyncio.Event, stdout: BinaryIO | None
) -> dict[str, Any]:
    figures, error = await record_broadcast(cfg, session, ns, stop, stdout)
    if cfg.stats_json:
        write_json(cfg.stats_json, figures)
    _summary(figures, figures["ended_by"])
    if error is not None:
        raise error
    return figures


async def record_broadcast(
    cfg: SubscribeConfig,
    session: MoqSession,
    ns: TrackNamespace,
    stop: asyncio.Event,
    stdout: BinaryIO | None = None,
    *,
    skip_unsupported: bool = False,
) -> tuple[dict[str, Any], CliError | None]:
    """Subscribe to one broadcast on an open session (its catalog, then its tracks) and decode or record it per
    `cfg` until every track ends, `cfg.duration` passes, `stop` is set or the session closes.

    Returns the figures and, for a run that went wrong once under way (the recording failed, the relay went),
    the error to report; raises `CliError` for what stops it from starting (no catalog, a track refused, ...).
    `skip_unsupported`: leave out the tracks whose codec cannot be decoded or recorded instead of failing."""
    params = Parameters(rendezvous_timeout=round(cfg.wait * 1000)) if cfg.wait > 0 else Parameters()
    try:
        catalog_sub = await session.subscribe(ns, CATALOG_TRACK_NAME, params)
    except RequestRejected as exc:
        raise _rejected(exc, cfg, CATALOG_TRACK_NAME) from None
    except ConnectionError as exc:
        raise CliError(f"lost the relay at {cfg.url}: {exc}") from None
    reading = asyncio.ensure_future(asyncio.wait_for(read_catalog(catalog_sub, cfg.name), cfg.timeout))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not reading.done():
            raise CliError(f"stopped before the catalog of {cfg.name} arrived")
        catalog = reading.result()
    except TimeoutError:
        raise CliError(f"no catalog arrived from {cfg.name} within {cfg.timeout:g} s") from None
    finally:
        reading.cancel()
        stopping.cancel()
        await asyncio.gather(reading, stopping, return_exceptions=True)
        catalog_sub.cancel()
    entries = choose_tracks(catalog, cfg)
    if cfg.decode or cfg.output is not None:
        for name, entry in list(entries.items()):
            try:
                decoder_name(entry.codec or "")
            except MediaError as exc:
                if not skip_unsupported:
                    raise CliError(f"track {name}: {exc}") from None
                status(f"{cfg.name}: leaving out track {name}: {exc}")
                del entries[name]
        if not entries:
            raise CliError(f"{cfg.name} has no track we can decode or record")
    sink: MediaSink | None = None
    if cfg.decode or cfg.output is not None:
        target = stdout or sys.stdout.buffer
        if cfg.output == "-" and target.isatty():
            raise CliError("standard output is a terminal: pipe the MPEG-TS somewhere (| ffplay -), or --output FILE")
        sink = MediaSink(
            entries,
            decode=cfg.decode,
            output=cfg.output,
            verify_pattern=cfg.verify_pattern,
            stdout=target,
            on_error=stop.set,
        )
        await sink.start()
    stats = {name: TrackStats(name, entry) for name, entry in entries.items()}
    subs: dict[str, Subscription] = {}
    started = time.monotonic()
    ended_by = "publish_done"
    readers: list[asyncio.Task[None]] = []
    reorders: dict[str, Reorder] = {}
    live: asyncio.Task[None] | None = None
    try:
        results = await asyncio.gather(
            *(session.subscribe(split_namespace(e.namespace) if e.namespace else ns, n) for n, e in entries.items()),
            return_exceptions=True,
        )
        for name, result in zip(entries, results, strict=True):
            if isinstance(result, Subscription):
                subs[name] = result
        for name, result in zip(entries, results, strict=True):
            if isinstance(result, RequestRejected):
                raise _rejected(result, cfg, name)
            if isinstance(result, BaseException):
                raise CliError(f"lost the relay at {cfg.url}: {result}")
        status(f"subscribed to {cfg.name}: " + ", ".join(f"{n} ({e.codec})" for n, e in entries.items()))
        started = time.monotonic()
        reorders = {name: Reorder(_first_location(sub)) for name, sub in subs.items()}
        readers = [
            asyncio.create_task(_read(sub, stats[name], sink, reorders[name] if sink else None))
            for name, sub in subs.items()
        ]
        if not cfg.quiet:
            live = asyncio.create_task(every(cfg.stats_interval, lambda: _live_line(stats, started)))
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(asyncio.gather(*readers))]
        waits.append(asyncio.ensure_future(stop.wait()))
        if cfg.duration is not None:
            waits.append(asyncio.ensure_future(asyncio.sleep(cfg.duration)))
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            if waiter is not waits[0]:
                waiter.cancel()
        if waits[0] not in done:
            ended_by = "signal" if waits[1] in done else "duration"
            if sink is not None and sink.error is not None:
                ended_by = "output"
            for sub in subs.values():
                sub.cancel()
        await waits[0]
        if session.closed.is_set() and any(sub.done is None for sub in subs.values()) and ended_by == "publish_done":
            ended_by = "relay"
    finally:
        for sub in subs.values():
            sub.cancel()
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        if live is not None:
            live.cancel()
            await asyncio.gather(live, return_exceptions=True)
        if sink is not None:
            await sink.close()
    seconds = time.monotonic() - started
    for name, sub in subs.items():
        stats[name].done = _done_name(sub)
    figures = _figures(cfg, stats, subs, sink, reorders, ended_by, seconds)
    error: CliError | None = None
    if sink is not None and sink.error is not None:
        if isinstance(sink.error, BrokenPipeError) and cfg.output == "-":
            error = CliError("standard output was closed: whoever read the MPEG-TS went away")
        else:
            error = CliError(f"decoding or recording failed: {sink.error}")
    elif ended_by == "relay":
        reason = session.close_reason[1] if session.close_reason else "the session closed"
        error = CliError(f"lost the relay at {cfg.url}: {reason}")
    return figures, error


async def _read(sub: Subscription, stats: TrackStats, sink: MediaSink | None, reorder: Reorder | None) -> None:
    """Count each object as it arrives; hand its frame, in track order, to the sink."""
    loop = asyncio.get_running_loop()
    pending: asyncio.Task[ObjectReceived | None] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(sub.next())
            deadline = reorder.deadline() if reorder is not None else None
            if deadline is not None and not pending.done():
                # Something waits behind a gap: wake up when it stops waiting, without giving up the read.
                await asyncio.wait({pending}, timeout=max(0.0, deadline - loop.time()))
                if not pending.done():
                    assert reorder is not None and sink is not None
                    for item in reorder.ready(loop.time()):
                        await sink.put(*item)
                    continue
            obj = await pending
            pending = None
            if obj is None:
                break
            received = now_us()
            stats.on_object(obj)
            if obj.status != ObjectStatus.NORMAL:
                stats.status_objects += 1
                continue
            try:
                frame = LocFrame.from_object(obj.properties, obj.payload)
            except LocError as exc:
                stats.malformed += 1
                logger.warning("track %s: object %d/%d is not LOC: %s", stats.name, obj.group_id, obj.object_id, exc)
                continue
            if frame.timestamp is not None and frame.is_wallclock:
                stats.on_latency((received - frame.timestamp) / 1000, obj.group_id)
            if sink is not None and reorder is not None:
                keyframe = frame.keyframe if frame.keyframe is not None else obj.object_id == 0
                reorder.push(obj.group_id, obj.object_id, (stats.name, frame, keyframe), loop.time())
                for item in reorder.ready(loop.time()):
                    await sink.put(*item)
        if sink is not None and reorder is not None:
            for item in reorder.drain():
                await sink.put(*item)
    finally:
        if pending is not None:
            pending.cancel()


def _first_location(sub: Subscription) -> tuple[int, int] | None:
    """Where a subscription starts: object 0 of the largest group SUBSCRIBE_OK names (draft §3.1), if it names one."""
    largest = sub.ok.parameters.largest_object if sub.ok is not None else None
    return (largest.group, 0) if largest is not None else None


def _done_name(sub: Subscription) -> str | None:
    if sub.done is None:
        return None
    try:
        return PublishDoneCode(sub.done.status_code).name
    except ValueError:
        return f"0x{sub.done.status_code:x}"


def _live_line(stats: dict[str, TrackStats], started: float) -> None:
    dropped = sum(s.groups_dropped for s in stats.values())
    parts = " | ".join(s.live_part() for s in stats.values())
    status(f"[{time.monotonic() - started:7.1f} s] {parts} | {dropped} groups dropped")


def _figures(
    cfg: SubscribeConfig,
    stats: dict[str, TrackStats],
    subs: dict[str, Subscription],
    sink: MediaSink | None,
    reorders: dict[str, Reorder],
    ended_by: str,
    seconds: float,
) -> dict[str, Any]:
    tracks: dict[str, Any] = {}
    overall, after_join = LatencySamples(), LatencySamples()
    for name, s in stats.items():
        sub = subs.get(name)
        entry: dict[str, Any] = {
            "kind": track_kind(s.entry),
            "codec": s.entry.codec,
            "objects": s.objects,
            "status_objects": s.status_objects,
            "bytes": s.bytes,
            "groups": s.groups,
            "groups_dropped": s.groups_dropped,
            "objects_missing": s.objects_missing,
            "objects_reordered": s.objects_reordered,
            "objects_dropped_by_buffer": sub.dropped if sub is not None else 0,
            "malformed": s.malformed,
            "latency_ms": s.latency.summary(),
            "latency_after_join_ms": s.latency_after_join.summary(),
            "done": s.done,
        }
        frames = s.objects - s.status_objects - s.malformed
        if name in reorders:
            entry["objects_late"] = reorders[name].late
        if sink is not None:
            decoded, recorded = sink.decoded(name), sink.recorded(name)
            if decoded is not None:
                entry["frames_decoded"] = decoded
                frames = decoded
            if recorded is not None:
                entry["frames_recorded"] = recorded
        entry["frames"] = frames
        tracks[name] = entry
        overall.merge(s.latency)
        after_join.merge(s.latency_after_join)
    figures: dict[str, Any] = {
        "namespace": cfg.name,
        "url": cfg.url,
        "ended_by": ended_by,
        "seconds": round(seconds, 3),
        "tracks": tracks,
        "latency_ms": overall.summary(),
        "latency_after_join_ms": after_join.summary(),
        "groups_dropped": sum(s.groups_dropped for s in stats.values()),
    }
    if sink is not None and sink.pattern is not None:
        figures["pattern"] = sink.pattern.figures()
    return figures


def _summary(figures: dict[str, Any], ended_by: str, who: str = "") -> None:
    parts = []
    for name, entry in figures["tracks"].items():
        text = f"{name} {entry['objects']} objects"
        if "frames_decoded" in entry:
            text += f" ({entry['frames_decoded']} decoded)"
        if "frames_recorded" in entry:
            text += f" ({entry['frames_recorded']} recorded)"
        parts.append(text)
    latency = figures["latency_ms"]
    lat = f"latency p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms" if latency else "no latency figures"
    status(f"{who}received {', '.join(parts)}; {lat}; {figures['groups_dropped']} groups dropped (ended by {ended_by})")


# -- a room: every participant's broadcast ------------------------------------------------------------------------


class _Participant:
    """One broadcast under the room being recorded: its task, and why it was asked to stop."""

    def __init__(self, key: str, namespace: TrackNamespace, output: str | None) -> None:
        self.key = key  # the participant's name, made unique if the same name came back after leaving
        self.namespace = namespace
        self.output = output
        self.stop = asyncio.Event()
        self.reason: str | None = None  # left, duration, signal, relay
        self.task: asyncio.Task[dict[str, Any]] | None = None
        self.failed = False  # the recording itself failed (not just a participant gone before its catalog)

    def finish(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.stop.set()


def participant_name(room: TrackNamespace, namespace: TrackNamespace) -> str:
    """ROOM/alice -> 'alice' (deeper namespaces join their fields with '-'): a name fit for a file name."""
    fields = [part.decode(errors="replace") for part in namespace[len(room) :]]
    name = "-".join(fields).replace("/", "_").replace("\\", "_").strip(".")
    return name or "_"


async def run_room(cfg: SubscribeConfig) -> dict[str, Any]:
    """SUBSCRIBE_NAMESPACE on `cfg.room` and record every participant's broadcast (`record_broadcast`) into
    `cfg.output`/<participant>.mkv, each from its announcement to its NAMESPACE_DONE; until --duration passes, a
    signal arrives or the relay goes. Returns the figures per participant (also written to --stats-json)."""
    assert cfg.room is not None
    room = split_namespace(cfg.room)
    directory: Path | None = None
    if cfg.output is not None:
        if cfg.output == "-":
            raise CliError("--room records one file per participant: give --output a directory, not '-'")
        directory = Path(cfg.output)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CliError(f"cannot make the directory {cfg.output}: {exc}") from None
    session = await open_session(cfg.url, fingerprint=cfg.fingerprint, verify=cfg.verify, timeout=cfg.timeout)
    stop = asyncio.Event()
    undo_signals = install_stop_signals(stop)
    try:
        return await _record_room(cfg, session, room, directory, stop)
    finally:
        undo_signals()
        await close_session(session)


async def _record_room(
    cfg: SubscribeConfig, session: MoqSession, room: TrackNamespace, directory: Path | None, stop: asyncio.Event
) -> dict[str, Any]:
    assert cfg.room is not None
    try:
        watch = await session.subscribe_namespace(room)
    except RequestRejected as exc:
        raise CliError(f"the relay refused our SUBSCRIBE_NAMESPACE for {cfg.room}: {exc.reason or exc}") from None
    except ConnectionError as exc:
        raise CliError(f"lost the relay at {cfg.url}: {exc}") from None
    status(f"watching the room {cfg.room}")
    started = time.monotonic()
    current: dict[TrackNamespace, _Participant] = {}
    everyone: dict[str, _Participant] = {}

    def join(namespace: TrackNamespace) -> None:
        name = participant_name(room, namespace)
        key, n = name, 1
        while key in everyone:  # the same name again after leaving: a recording of its own
            n += 1
            key = f"{name}-{n}"
        output = str(directory / f"{key}.mkv") if directory is not None else None
        p = _Participant(key, namespace, output)
        # Each participant is one broadcast: the room's options, its namespace, its file; the room keeps time.
        pcfg = msgspec.structs.replace(
            cfg,
            name="/".join(f.decode(errors="replace") for f in namespace),
            room=None,
            output=output,
            duration=None,
            wait=0.0,
            stats_json=None,
            quiet=True,
        )
        p.task = asyncio.create_task(_record_participant(pcfg, session, p))
        current[namespace] = everyone[key] = p
        status(f"{key} joined the room" + (f": recording to {output}" if output else ""))

    async def follow() -> None:
        async for added, namespace in watch:
            if namespace[: len(room)] != room:
                continue
            if added and namespace not in current:
                join(namespace)
            elif not added and namespace in current:
                p = current.pop(namespace)
                status(f"{p.key} left the room")
                p.finish("left")

    following = asyncio.create_task(follow())
    waits: list[asyncio.Future[Any]] = [following, asyncio.ensure_future(stop.wait())]
    if cfg.duration is not None:
        waits.append(asyncio.ensure_future(asyncio.sleep(cfg.duration)))
    ended_by = "relay"
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if waits[1] in done:
            ended_by = "signal"
        elif len(waits) > 2 and waits[2] in done:
            ended_by = "duration"
    finally:
        for waiter in waits:
            waiter.cancel()
        watch.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
        for p in everyone.values():
            p.finish(ended_by)
        results = await asyncio.gather(*(p.task for p in everyone.values() if p.task), return_exceptions=True)
    participants: dict[str, Any] = {}
    for p, result in zip(everyone.values(), results, strict=True):
        if isinstance(result, BaseException):
            result = {"error": f"{type(result).__name__}: {result}"}
            p.failed = True
        participants[p.key] = result
    figures: dict[str, Any] = {
        "room": cfg.room,
        "url": cfg.url,
        "ended_by": ended_by,
        "seconds": round(time.monotonic() - started, 3),
        "participants": participants,
    }
    if cfg.stats_json:
        write_json(cfg.stats_json, figures)
    status(f"recorded {len(participants)} participants of {cfg.room} (ended by {ended_by})")
    failed = [p.key for p in everyone.values() if p.failed]
    if failed:
        errors = "; ".join(f"{key}: {participants[key].get('error')}" for key in failed)
        raise CliError(f"recording failed for {errors}")
    if ended_by == "relay":
        reason = session.close_reason[1] if session.close_reason else "the session closed"
        raise CliError(f"lost the relay at {cfg.url}: {reason}")
    return figures


async def _record_participant(cfg: SubscribeConfig, session: MoqSession, p: _Participant) -> dict[str, Any]:
    """One participant's `record_broadcast`; a participant that cannot be recorded is reported, not fatal to the
    room (unless its recording failed once under way: see `_Participant.failed`)."""
    try:
        figures, error = await record_broadcast(cfg, session, p.namespace, p.stop, skip_unsupported=True)
    except CliError as exc:
        status(f"{p.key}: not recorded: {exc}")
        return {"namespace": cfg.name, "output": None, "ended_by": p.reason, "error": str(exc)}
    if figures["ended_by"] == "signal" and p.reason is not None:
        figures["ended_by"] = p.reason  # our own stop: the participant left, or the room's run ended
    figures["output"] = p.output
    if error is not None and figures["ended_by"] != "relay":
        figures["error"] = str(error)
        p.failed = True
    _summary(figures, figures["ended_by"], who=f"{p.key}: ")
    return figures
