"""The cache bound: a relay configured with `cache_bytes` never holds more payload than that per track.

This one check runs the relay inside the benchmark process (`relay.server.start_relay`), because the figure it
needs, each track's `cached_bytes`, is not visible from outside a relay process. A publisher pushes the synthetic
track at a bitrate whose groups are well under the limit, so that the byte bound (not the group bound) is what
evicts; the relay's caches are sampled every few milliseconds, i.e. at every point where the event loop yields.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from bench.common import HOST, Json, Table
from bench.fanout import RunEnv
from bench.workload import HEADER, LOC_TIMESTAMP, TrackShape

LIMIT = 1024 * 1024
BITRATE = 8_000_000
SAMPLE_EVERY = 0.005


async def run(env: RunEnv, seconds: float) -> tuple[Json, Table]:
    from moq.api import connect
    from moq.model import CachedObject, Track
    from moq.wire.version import Version
    from relay.config import RelayConfig
    from relay.server import start_relay

    shape = TrackShape(BITRATE, env.settings.fps, 0.5, env.settings.keyframe_ratio)
    config = RelayConfig(
        bind=HOST, port=0, state_dir=str(env.workdir / "cache-state"), cache_groups=64, cache_bytes=LIMIT,
        goaway_grace=0.2, webtransport=False,
    )  # fmt: skip
    running = await start_relay(config)
    peak = 0
    samples = 0
    evicted = 0
    received = 0
    try:
        url = f"moqt://{HOST}:{running.port}/"
        version = (Version(env.draft),)
        publisher = await connect(url, fingerprint=running.certificate.fingerprint, versions=version)
        subscriber = await connect(url, fingerprint=running.certificate.fingerprint, versions=version)
        track = publisher.add_track(Track((b"bench", b"cache"), b"video", max_groups=2))
        await publisher.publish_namespace(track.namespace)
        sub = await subscriber.subscribe(track.namespace, "video")

        async def drain() -> None:
            nonlocal received
            while await sub.next() is not None:
                received += 1

        async def sample() -> None:
            nonlocal peak, samples, evicted
            for _ in range(1_000_000):
                for rt in running.relay.tracks.values():
                    peak = max(peak, rt.track.cached_bytes)
                    evicted = max(evicted, rt.track.evicted_groups)
                samples += 1
                await asyncio.sleep(SAMPLE_EVERY)

        reader = asyncio.ensure_future(drain())
        sampler = asyncio.ensure_future(sample())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        total = int(seconds * shape.fps)
        for seq in range(total):
            await asyncio.sleep(max(0.0, t0 + seq / shape.fps - loop.time()))
            group, oid = divmod(seq, shape.per_group)
            size = shape.size(seq)
            payload = HEADER.pack(time.time_ns(), seq) + bytes(size - HEADER.size)
            track.append(CachedObject(group, 0, oid, payload, properties=((LOC_TIMESTAMP, time.time_ns() // 1000),)))
            if oid == shape.per_group - 1:
                track.end_subgroup(group, 0)
        track.end_track()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, 10.0)
        sampler.cancel()
        await publisher.__aexit__(None, None, None)
        await subscriber.__aexit__(None, None, None)
    finally:
        await running.stop()
    group_bytes = shape.key_size + (shape.per_group - 1) * shape.delta_size
    result = {
        "limit_bytes": LIMIT,
        "bitrate_bps": BITRATE,
        "group_bytes": group_bytes,
        "seconds": seconds,
        "published_bytes": int(BITRATE / 8 * seconds),
        "peak_cached_bytes": peak,
        "within_limit": peak <= LIMIT,
        "groups_evicted": evicted,
        "samples": samples,
        "objects_received": received,
    }
    table = Table(
        "Cache bound (relay in-process, byte limit binding)",
        ["limit KiB", "group KiB", "published KiB", "peak cached KiB", "within limit", "groups evicted"],
    )
    table.rows.append(
        [LIMIT // 1024, group_bytes // 1024, result["published_bytes"] // 1024, peak // 1024, peak <= LIMIT, evicted]
    )
    return result, table
