"""Part 5, the media path: encode the test pattern as 720p30 H.264 (moq.media, PyAV/libx264) and publish it through
our relay to one subscriber per stream; report the publisher's CPU per stream.

The publisher process runs `k` pipelines (`MediaPipeline` with the test pattern, paced at real time, each in its
worker thread as `AsyncMediaStream` runs it), packages frames as LOC objects (`GroupMapper`: one group per GOP) and
serves them; the relay subscribes upstream as soon as a subscriber asks. CPU is read from /proc over the steady part
of the run (after the first second); latency is capture (LOC TIMESTAMP) to receive, so it includes encoding.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from bench.common import READY_TIMEOUT, CpuWindow, Json, Table, Worker, emit, latency_summary, stdin_lines, tell_all
from bench.common import wait_for_line as wait_line
from bench.fanout import RunEnv
from bench.relays import RelayProcess

WIDTH, HEIGHT, FPS = 1280, 720, 30
BITRATE = 2_000_000
#: Seconds at the start of a stream not measured (encoder start-up, the first GOP).
SETTLE = 1.0


def _cpu_self() -> float:
    times = os.times()
    return times.user + times.system


def namespace(i: int) -> str:
    return f"bench/media/{i}"


async def publisher_main(params: dict[str, Any]) -> None:
    """Publish `streams` encoded test patterns for `seconds`, then report frames and bytes per stream."""
    from moq.api import connect
    from moq.media.encode import AsyncMediaStream, InputSpec, MediaPipeline, VideoSettings
    from moq.media.groups import GroupMapper
    from moq.model import CachedObject, Track
    from moq.wire.version import Version

    count = int(params["streams"])
    seconds = float(params["seconds"])
    commands = await stdin_lines()
    session = await connect(params["url"], verify=False, versions=(Version(int(params["draft"])),))
    tracks: list[Track] = []
    for i in range(count):
        ns = tuple(part.encode() for part in namespace(i).split("/"))
        track = session.add_track(Track(ns, b"video", max_groups=2))
        await session.publish_namespace(ns)
        tracks.append(track)
    settings = VideoSettings(width=WIDTH, height=HEIGHT, fps=FPS, bitrate=int(params["bitrate"]))
    streams = [
        AsyncMediaStream(MediaPipeline(InputSpec(kind="pattern"), video=settings, audio=None, duration=seconds))
        for _ in range(count)
    ]

    async def pump(stream: AsyncMediaStream, track: Track) -> Json:
        mapper = GroupMapper("video")
        frames = keyframes = size = 0
        group: int | None = None
        async for frame in stream:
            obj = mapper.push(frame)
            if obj is None:
                continue
            if group is not None and obj.group_id != group:
                track.end_subgroup(group, 0)
            group = obj.group_id
            track.append(
                CachedObject(obj.group_id, obj.subgroup_id, obj.object_id, obj.payload, properties=obj.properties)
            )
            frames += 1
            keyframes += frame.keyframe
            size += len(obj.payload)
        if group is not None:
            track.end_subgroup(group, 0)
        track.end_track()
        return {"frames": frames, "keyframes": keyframes, "bytes": size}

    emit("ready")
    if not await wait_line(commands, "go", float(params["deadline"])):
        return
    for stream in streams:
        await stream.start()  # opens the encoder and starts the paced pattern
    emit("started", at=time.time())
    pumps = asyncio.gather(*(pump(s, t) for s, t in zip(streams, tracks, strict=True)))
    # Our own CPU (every thread: the encoders run in the pipelines' threads) over the steady part.
    await asyncio.sleep(min(SETTLE, seconds / 2))
    cpu0, wall0 = _cpu_self(), time.monotonic()

    results = await pumps
    cpu = (_cpu_self() - cpu0) / max(1e-9, time.monotonic() - wall0)
    emit("result", streams=results, cpu=cpu)
    for stream in streams:
        await stream.aclose()
    await asyncio.sleep(0.5)
    session.close()


async def run(env: RunEnv) -> tuple[Json, Table]:
    s = env.settings
    table = Table(
        f"Media: {WIDTH}x{HEIGHT}@{FPS} H.264 (libx264 ultrafast/zerolatency, {BITRATE // 1000} kbit/s), "
        "encoded and published through our relay",
        [
            "streams",
            "frames/s per stream",
            "Mbit/s per stream",
            "publisher CPU per stream",
            "relay CPU",
            "p50 ms",
            "p99 ms",
        ],
    )
    runs = []
    for count in s.media_streams:
        runs.append(await run_streams(env, count, s.media_seconds))
        r = runs[-1]
        table.rows.append(
            [
                count,
                r["frames_per_s_per_stream"],
                r["mbit_s_per_stream"],
                f"{r['publisher_cpu_per_stream'] * 100:.0f}%",
                f"{r['relay_cpu'] * 100:.0f}%",
                r["latency"]["p50_ms"],
                r["latency"]["p99_ms"],
            ]
        )
    table.notes.append(
        "CPU as a share of one core over the steady part of the run; latency is capture to receive (includes "
        "encoding), one subscriber per stream"
    )
    return {"runs": runs}, table


async def run_streams(env: RunEnv, count: int, seconds: float) -> Json:
    relay = await RelayProcess.start("moq", env.workdir, env.cert, env.key, env.settings, tag=f"-media-{count}")
    workers: list[Worker] = []
    try:
        publisher = await Worker.start(
            "media-publisher",
            {
                "url": relay.url,
                "streams": count,
                "seconds": seconds,
                "bitrate": BITRATE,
                "draft": env.draft,
                "deadline": READY_TIMEOUT + seconds + 60,
            },
            env.workdir,
            f"media-publisher-{count}",
        )
        workers.append(publisher)
        await publisher.message("ready", READY_TIMEOUT)
        listen = READY_TIMEOUT + seconds + 5
        subscribers = []
        for i in range(count):
            params = {
                "url": relay.url,
                "port": relay.port,
                "namespace": namespace(i),
                "track": "video",
                "draft": env.draft,
                "count": 1,
                "timestamps": "loc",
                "listen": listen,
                "deadline": listen + 60,
            }
            subscribers.append(await Worker.start("subscribers", params, env.workdir, f"media-subscriber-{count}-{i}"))
        workers.extend(subscribers)
        for w in subscribers:
            await w.message("ready", READY_TIMEOUT)
        relay_cpu = CpuWindow([relay.pid])
        publisher.tell("go")
        started = (await publisher.message("started", 10.0))["at"]
        await asyncio.sleep(max(0.0, started + min(SETTLE, seconds / 2) - time.time()))
        relay_cpu.start()
        await asyncio.sleep(max(0.0, started + seconds - 0.2 - time.time()))
        relay_cpu.stop()
        published = await publisher.message("result", 30.0)
        asyncio.get_running_loop().call_later(2.0, tell_all, subscribers, "stop")
        received = [await w.message("result", listen + 10) for w in subscribers]
    finally:
        for w in workers:
            await w.stop()
        await relay.stop()
    frames = sum(r["frames"] for r in published["streams"]) / count
    size = sum(r["bytes"] for r in published["streams"]) / count
    latencies = [lat for r in received for sub in r["subscribers"] for _, lat in sub["samples"]]
    return {
        "streams": count,
        "seconds": seconds,
        "frames_per_stream": frames,
        "frames_per_s_per_stream": round(frames / seconds, 1),
        "mbit_s_per_stream": round(size * 8 / seconds / 1e6, 2),
        "publisher_cpu": round(published["cpu"], 3),
        "publisher_cpu_per_stream": round(published["cpu"] / count, 3),
        "relay_cpu": round(relay_cpu.share, 3),
        "objects_received": sum(sub["objects"] for r in received for sub in r["subscribers"]),
        "latency": latency_summary(latencies),
    }
