"""The synthetic video-like track, its publisher, and the subscribers that measure it (worker processes).

The track: `fps` objects per second, one group every `group_seconds` (all in subgroup 0, one stream per group as a
video track is sent), object 0 of each group a "keyframe" `keyframe_ratio` times larger than the others, sizes
chosen so that the track carries `bitrate` bits per second of payload.

Every object says when it was sent, twice: the first 16 bytes of the payload are (wall clock in ns, sequence
number), big-endian, which our subscribers read whatever a relay does with properties; and the LOC TIMESTAMP
property (0x10, wall-clock microseconds, draft-ietf-moq-loc-04), which aiomoqt's load tools read. Publisher and
subscribers run on one machine, so their clocks agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import struct
import time
from dataclasses import dataclass
from typing import Any

from bench.common import HOST, Json, emit, memory_kb, stdin_lines, wait_for_line
from bench.shaper import Shaper

HEADER = struct.Struct(">QQ")
#: LOC TIMESTAMP (draft-ietf-moq-loc-04 §"Timestamp"): wall-clock microseconds when no TIMESCALE is sent.
LOC_TIMESTAMP = 0x10
#: Receive-time buckets for throughput, in seconds.
BUCKET = 0.1
#: Latency samples a subscriber keeps at most (every object of a 60 s run at 30 fps fits several times over).
MAX_SAMPLES = 20_000


@dataclass(frozen=True)
class TrackShape:
    """Object sizes of the synthetic track."""

    bitrate: int
    fps: int
    group_seconds: float
    keyframe_ratio: int

    @property
    def per_group(self) -> int:
        return max(1, round(self.fps * self.group_seconds))

    @property
    def delta_size(self) -> int:
        group_bytes = self.bitrate / 8 * self.per_group / self.fps
        return max(HEADER.size, int(group_bytes / (self.keyframe_ratio + self.per_group - 1)))

    @property
    def key_size(self) -> int:
        return max(HEADER.size, self.delta_size * self.keyframe_ratio)

    def size(self, seq: int) -> int:
        return self.key_size if seq % self.per_group == 0 else self.delta_size

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrackShape:
        return cls(int(params["bitrate"]), int(params["fps"]), float(params["group_seconds"]), int(params["ratio"]))


def split_name(ns: str) -> tuple[bytes, ...]:
    return tuple(part.encode() for part in ns.split("/") if part)


# -- the publisher -------------------------------------------------------------------------------------------------


async def publisher_main(params: dict[str, Any]) -> None:
    """Connect, announce the namespace, serve the track; on "go", publish for `seconds`, end the track, report."""
    from moq.api import connect
    from moq.model import CachedObject, Track
    from moq.wire.version import Version

    shape = TrackShape.from_params(params)
    ns = split_name(params["namespace"])
    name = params["track"].encode()
    commands = await stdin_lines()
    session = await connect(params["url"], verify=False, versions=(Version(int(params["draft"])),))
    track = Track(ns, name, max_groups=2)
    session.add_track(track)
    await session.publish_namespace(ns)
    emit("ready")
    if not await wait_for_line(commands, "go", float(params["deadline"])):
        session.close()
        return
    fillers = {size: bytes(size - HEADER.size) for size in (shape.key_size, shape.delta_size)}
    total = int(float(params["seconds"]) * shape.fps)
    start = time.time()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    emit("started", at=start)
    late: list[float] = []
    sent_bytes = 0
    group = 0
    for seq in range(total):
        due = t0 + seq / shape.fps
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        late.append(max(0.0, loop.time() - due))
        group, oid = divmod(seq, shape.per_group)
        now_ns = time.time_ns()
        size = shape.size(seq)
        payload = HEADER.pack(now_ns, seq) + fillers[size]
        track.append(CachedObject(group, 0, oid, payload, properties=((LOC_TIMESTAMP, now_ns // 1000),)))
        sent_bytes += size
        if oid == shape.per_group - 1:
            track.end_subgroup(group, 0)
    end = time.time()
    if total and total % shape.per_group:
        track.end_subgroup(group, 0)
    track.end_track()
    with contextlib.suppress(Exception):  # let the end reach the relay before we leave
        await asyncio.wait_for(session.conn.wait_writable(0), 5.0)
    late.sort()
    emit(
        "result",
        started=start,
        ended=end,
        objects=total,
        bytes=sent_bytes,
        key_size=shape.key_size,
        delta_size=shape.delta_size,
        per_group=shape.per_group,
        timer_late_p99_ms=round(late[int(0.99 * (len(late) - 1))] * 1000, 2) if late else 0.0,
        objects_sent=session.objects_sent,
    )
    await asyncio.sleep(0.5)
    session.close()


# -- the subscribers -----------------------------------------------------------------------------------------------


@dataclass
class Received:
    """What one subscriber saw."""

    objects: int = 0
    bytes: int = 0
    first_seq: int = -1
    last_seq: int = -1
    out_of_order: int = 0
    dropped_by_session: int = 0
    ended: bool = False
    error: str = ""

    def __post_init__(self) -> None:
        self.buckets: dict[int, list[int]] = {}  # receive-time bucket -> [bytes, objects]
        self.samples: list[tuple[int, float]] = []  # (seq, latency ms)
        self.groups: set[int] = set()

    def add(self, seq: int, group: int, size: int, latency_ms: float, now: float) -> None:
        self.objects += 1
        self.bytes += size
        if self.first_seq < 0:
            self.first_seq = seq
        if seq < self.last_seq:
            self.out_of_order += 1
        self.last_seq = max(self.last_seq, seq)
        bucket = self.buckets.setdefault(int(now / BUCKET), [0, 0])
        bucket[0] += size
        bucket[1] += 1
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append((seq, round(latency_ms, 3)))
        self.groups.add(group)

    def report(self) -> Json:
        return {
            "objects": self.objects,
            "bytes": self.bytes,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "out_of_order": self.out_of_order,
            "dropped_by_session": self.dropped_by_session,
            "ended": self.ended,
            "error": self.error,
            "groups": sorted(self.groups),
            "buckets": {str(k): v for k, v in self.buckets.items()},
            "samples": self.samples,
        }


async def subscribers_main(params: dict[str, Any]) -> None:
    """`count` subscribers of the track, each on its own QUIC connection; report once the track ends (or after
    `listen` seconds). With `shape_bps`, every subscriber here receives through a rate-limited UDP link."""
    from moq.api import Subscription, connect
    from moq.wire.version import Version

    count = int(params["count"])
    ns = split_name(params["namespace"])
    name = params["track"].encode()
    version = Version(int(params["draft"]))
    url = params["url"]
    shapers: list[Shaper] = []
    if params.get("shape_bps"):
        host, port = HOST, int(params["port"])
        shaper = Shaper((host, port), int(params["shape_bps"]), float(params.get("shape_queue_s", 0.1)))
        await shaper.start()
        shapers.append(shaper)
        url = f"moqt://{HOST}:{shaper.port}/"

    commands = await stdin_lines()

    async def join(i: int) -> Subscription:
        # Spread the handshakes a little: 20 at once on one core is a burst the relay need not see.
        await asyncio.sleep(0.01 * i)
        session = await connect(url, verify=False, versions=(version,), timeout=30.0)
        return await session.subscribe(ns, name)

    subs = await asyncio.gather(*(join(i) for i in range(count)))
    emit("ready", rss_kb=memory_kb(os.getpid())[0])
    per_group = int(params.get("per_group", 1))
    listen = float(params["listen"])
    loc = params.get("timestamps") == "loc"

    async def receive(sub: Subscription, got: Received) -> None:
        for _ in range(10_000_000):
            obj = await sub.next()
            if obj is None:
                got.ended = True
                return
            now_ns = time.time_ns()
            if loc:  # real media: the capture time is the LOC TIMESTAMP; number objects as they come
                stamp = next((v for k, v in obj.properties if k == LOC_TIMESTAMP), None)
                if isinstance(stamp, int):
                    got.add(got.objects, obj.group_id, len(obj.payload), (now_ns / 1000 - stamp) / 1000, now_ns / 1e9)
                continue
            if len(obj.payload) < HEADER.size:
                continue
            sent_ns, seq = HEADER.unpack_from(obj.payload)
            got.add(seq, seq // per_group, len(obj.payload), (now_ns - sent_ns) / 1e6, now_ns / 1e9)

    results = [Received() for _ in subs]
    tasks = [asyncio.ensure_future(receive(s, r)) for s, r in zip(subs, results, strict=True)]
    # Until every subscription has ended, or the orchestrator says "stop" (the publisher is done and the tail has
    # passed: a lagging subscriber would otherwise keep draining its backlog), or `listen` seconds.
    stop = asyncio.ensure_future(wait_for_line(commands, "stop", listen))
    everyone = asyncio.ensure_future(asyncio.wait(tasks))
    await asyncio.wait({stop, everyone}, timeout=listen, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    everyone.cancel()
    for task in tasks:
        task.cancel()
    for sub, got, task in zip(subs, results, tasks, strict=True):
        got.dropped_by_session = sub.dropped
        if task.done() and not task.cancelled() and task.exception() is not None:
            got.error = repr(task.exception())
    rss = memory_kb(os.getpid())[0]
    emit(
        "result",
        rss_kb=rss,
        subscribers=[r.report() for r in results],
        shaper=[s.figures() for s in shapers],
    )
    for sub in subs:
        sub.session.close()
    for shaper in shapers:
        shaper.close()
    await asyncio.sleep(0.2)


def expected_objects(shape: TrackShape, seconds: float) -> int:
    return math.floor(seconds * shape.fps)
