"""Parts 2-4: one publisher of the synthetic video track (bench.workload) through a relay process to N subscribers.

A run: start the relay, connect the publisher (PUBLISH_NAMESPACE; the relay subscribes upstream on demand), start
the subscriber processes and wait until every subscriber has SUBSCRIBE_OK (the relay's memory then is the idle
cost of N subscribers), then publish for `warmup + duration` seconds. Figures are taken over the last `duration`
seconds: delivered bytes by receive time, latency of the objects published in that window, CPU of every process
from /proc, the relay's resident memory. The CPU that other processes on the machine used in the window is
reported too, because on a shared 2-core machine it changes everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    CLK_TCK,
    READY_TIMEOUT,
    CpuWindow,
    Json,
    MemorySampler,
    Worker,
    cpu_ms_per_mb,
    latency_summary,
    mbit,
    start_process,
    stop_process,
    tell_all,
)
from bench.relays import RelayExited, RelayProcess
from bench.settings import Settings
from bench.workload import BUCKET, TrackShape

logger = logging.getLogger(__name__)

NAMESPACE = "bench/fanout"
TRACK = "video"
#: Seconds a subscriber may listen at most beyond the run (a safety net: the orchestrator stops them sooner).
TAIL = 10.0


@dataclass
class Hooks:
    """Optional extras for a run: a command prefix for the relay (a profiler), and a callback when the measured
    window starts (given the relay's pid and the window's length)."""

    relay_wrapper: list[str] | None = None
    on_window: Callable[[int, float], None] | None = None


@dataclass
class RunEnv:
    """What every run of a part shares."""

    settings: Settings
    workdir: Path
    cert: Path
    key: Path
    draft: int = 22

    def shape(self, bitrate: int | None = None) -> TrackShape:
        s = self.settings
        return TrackShape(bitrate or s.bitrate, s.fps, s.group_seconds, s.keyframe_ratio)


def system_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used (every core), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


async def retried(run: Callable[[], Awaitable[Json]]) -> Json:
    """Run once more if the relay process went away in the middle (on a shared machine something else may kill
    it): the figures of a run without its relay mean nothing."""
    try:
        return await run()
    except RelayExited as exc:
        logger.warning("%s; running it again", exc)
        return await run()


def publisher_params(shape: TrackShape, env: RunEnv, relay: RelayProcess) -> Json:
    """What a publisher worker needs to publish the synthetic track `shape` to `relay`."""
    return {
        "namespace": NAMESPACE,
        "track": TRACK,
        "bitrate": shape.bitrate,
        "fps": shape.fps,
        "group_seconds": shape.group_seconds,
        "ratio": shape.keyframe_ratio,
        "per_group": shape.per_group,
        "draft": env.draft,
        "url": relay.url,
        "port": relay.port,
    }


def spread(total: int, parts: int) -> list[int]:
    """`total` items over `parts` bins, as evenly as possible (no empty bin)."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def run_fanout(
    env: RunEnv,
    relay_kind: str,
    subscribers: int,
    *,
    duration: float | None = None,
    slow_bps: int | None = None,
    bitrate: int | None = None,
    relay: RelayProcess | None = None,
    tag: str = "",
    hooks: Hooks | None = None,
) -> Json:
    """One run (see the module docstring); with `slow_bps`, one more subscriber behind a link of that rate."""
    s = env.settings
    duration = duration or s.duration
    shape = env.shape(bitrate)
    seconds = s.warmup + duration
    tag = tag or f"{relay_kind}-{subscribers}{'-slow' if slow_bps else ''}"
    own_relay = relay is None
    hooks = hooks or Hooks()
    if relay is None:
        relay = await RelayProcess.start(
            relay_kind, env.workdir, env.cert, env.key, s, tag=f"-{tag}", wrapper=hooks.relay_wrapper
        )
    workers: list[Worker] = []
    publisher: Worker | None = None
    try:
        base_kb = relay.rss_kb()
        track_params = publisher_params(shape, env, relay)
        publisher = await Worker.start(
            "publisher",
            {**track_params, "seconds": seconds, "deadline": READY_TIMEOUT + seconds + 60},
            env.workdir,
            f"publisher-{tag}",
        )
        await publisher.message("ready", READY_TIMEOUT)
        with_publisher_kb = relay.rss_kb()
        listen = READY_TIMEOUT + seconds + TAIL
        normal: list[Worker] = []
        for i, count in enumerate(spread(subscribers, s.max_subscriber_processes)):
            params = {**track_params, "count": count, "listen": listen, "deadline": listen + 60}
            normal.append(await Worker.start("subscribers", params, env.workdir, f"subscribers-{tag}-{i}"))
        slow: Worker | None = None
        if slow_bps:
            params = {**track_params, "count": 1, "listen": listen, "deadline": listen + 60, "shape_bps": slow_bps}
            slow = await Worker.start("subscribers", params, env.workdir, f"subscribers-{tag}-slow")
        workers = normal + ([slow] if slow else [])
        ready = [await w.message("ready", READY_TIMEOUT + subscribers * 0.2) for w in workers]
        await asyncio.sleep(0.5)  # let SUBSCRIBE_OKs and upstream state settle before reading memory
        idle_kb = relay.rss_kb()
        sub_ready_kb = sum(r["rss_kb"] for r in ready[: len(normal)])

        memory = MemorySampler(relay.pid)
        memory.start()
        relay_cpu = CpuWindow([relay.pid])
        subs_cpu = CpuWindow([w.pid for w in normal])
        pub_cpu = CpuWindow([publisher.pid])
        publisher.tell("go")
        started = (await publisher.message("started", 10.0))["at"]
        await asyncio.sleep(max(0.0, started + s.warmup - time.time()))
        busy0 = system_busy_seconds()
        for window in (relay_cpu, subs_cpu, pub_cpu):
            window.start()
        if hooks.on_window is not None:
            hooks.on_window(relay.pid, duration)
        await asyncio.sleep(max(0.0, started + seconds - time.time()))
        for window in (relay_cpu, subs_cpu, pub_cpu):
            window.stop()
        relay.check_alive()
        busy = system_busy_seconds() - busy0
        pub_result = await publisher.message("result", 30.0)
        asyncio.get_running_loop().call_later(s.tail, tell_all, workers, "stop")
        results = [await w.message("result", listen + 10) for w in normal]
        slow_result = await slow.message("result", listen + 10) if slow else None
        peak_kb = await memory.stop()
        hwm_kb = relay.peak_kb()
    finally:
        await asyncio.gather(*(w.stop() for w in workers), *([publisher.stop()] if publisher else []))
        if own_relay:
            await relay.stop()

    w0, w1 = started + s.warmup, started + seconds
    seq0, seq1 = int(s.warmup * shape.fps), int(seconds * shape.fps)
    subs = [sub for r in results for sub in r["subscribers"]]
    delivered = _window(subs, w0, w1, seq0, seq1)
    ours = relay_cpu.share + subs_cpu.share + pub_cpu.share
    out: Json = {
        "relay": relay_kind,
        "subscribers": subscribers,
        "subscriber_processes": len(normal),
        "subscribers_per_process": max(len(r["subscribers"]) for r in results) if results else 0,
        "bitrate_bps": shape.bitrate,
        "object_sizes": {"key": shape.key_size, "delta": shape.delta_size, "per_group": shape.per_group},
        "seconds": duration,
        "offered_mbit_s": round(subscribers * shape.bitrate / 1e6, 2),
        **delivered,
        "relay_cpu": round(relay_cpu.share, 3),
        "subscribers_cpu": round(subs_cpu.share, 3),
        "publisher_cpu": round(pub_cpu.share, 3),
        "other_cpu": round(max(0.0, busy / max(relay_cpu.seconds, 1e-9) - ours), 3),
        "relay_cpu_ms_per_mb": cpu_ms_per_mb(relay_cpu.share, delivered["delivered_mbit_s"]),
        "relay_rss_mb": {
            "base": round(base_kb / 1024, 1),
            "with_publisher": round(with_publisher_kb / 1024, 1),
            "idle_subscribers": round(idle_kb / 1024, 1),
            "peak_in_window": round(peak_kb / 1024, 1),
            "peak_lifetime": round(hwm_kb / 1024, 1),
        },
        "relay_kb_per_idle_subscriber": round((idle_kb - with_publisher_kb) / subscribers, 1),
        "relay_kb_per_subscriber_loaded": round((peak_kb - with_publisher_kb) / subscribers, 1),
        "subscriber_process_kb_per_subscriber": round(sub_ready_kb / subscribers, 1),
        "publisher": {k: v for k, v in pub_result.items() if k != "event"},
    }
    if slow_result is not None and slow_bps:
        out["slow"] = _slow(slow_result, slow_bps, shape, w0, w1, seq0, seq1)
    return out


def _window(subs: list[Json], w0: float, w1: float, seq0: int, seq1: int) -> Json:
    """Throughput by receive time in [w0, w1); latency and losses of the objects published in [seq0, seq1)."""
    b0, b1 = int(w0 / BUCKET), int(w1 / BUCKET)
    total_bytes = total_objects = 0
    latencies: list[float] = []
    missing = 0
    ended = 0
    for sub in subs:
        for key, (size, count) in sub["buckets"].items():
            if b0 <= int(key) < b1:
                total_bytes += size
                total_objects += count
        seen = {seq for seq, _ in sub["samples"] if seq0 <= seq < seq1}
        missing += (seq1 - seq0) - len(seen)
        latencies.extend(lat for seq, lat in sub["samples"] if seq0 <= seq < seq1)
        ended += bool(sub["ended"])
    seconds = w1 - w0
    n = max(1, len(subs))
    return {
        "delivered_mbit_s": round(mbit(total_bytes, seconds), 2),
        "delivered_objects_s": round(total_objects / seconds, 1),
        "per_subscriber_mbit_s": round(mbit(total_bytes, seconds) / n, 3),
        "latency": latency_summary(latencies),
        "objects_missing": missing,
        "objects_expected": (seq1 - seq0) * len(subs),
        "subscribers_reached_end": ended,
    }


def _slow(result: Json, rate_bps: int, shape: TrackShape, w0: float, w1: float, seq0: int, seq1: int) -> Json:
    """How the slow subscriber fared: what it got, how stale it was (its latency is its lag behind live)."""
    sub = result["subscribers"][0]
    figures = _window([sub], w0, w1, seq0, seq1)
    lat = figures["latency"]
    g0, g1 = seq0 // shape.per_group, (seq1 - 1) // shape.per_group
    groups = [g for g in sub["groups"] if g0 <= g <= g1]
    samples = [lat_ms for seq, lat_ms in sub["samples"] if seq0 <= seq < seq1]
    return {
        "link_bps": rate_bps,
        "link_fraction": round(rate_bps / shape.bitrate, 2),
        **figures,
        "lag_groups_p50": _groups(lat["p50_ms"], shape),
        "lag_groups_max": _groups(lat["max_ms"], shape),
        "lag_groups_last": _groups(samples[-1] if samples else None, shape),
        "groups_in_window": g1 - g0 + 1,
        "groups_received": len(groups),
        "shaper": result["shaper"][0] if result["shaper"] else None,
    }


def _groups(ms: float | None, shape: TrackShape) -> float | None:
    return None if ms is None else round(ms / 1000 / shape.group_seconds, 2)


def summary_row(r: Json) -> list[Any]:
    lat = r["latency"]
    return [
        r["relay"],
        r["subscribers"],
        f"{r['subscriber_processes']}x{r['subscribers_per_process']}",
        r["offered_mbit_s"],
        r["delivered_mbit_s"],
        r["delivered_objects_s"],
        lat["p50_ms"],
        lat["p99_ms"],
        lat["max_ms"],
        r["objects_missing"],
        f"{r['relay_cpu'] * 100:.0f}%",
        f"{r['subscribers_cpu'] * 100:.0f}%",
        f"{r['other_cpu'] * 100:.0f}%",
        r["relay_cpu_ms_per_mb"],
        r["relay_rss_mb"]["peak_in_window"],
        r["relay_kb_per_idle_subscriber"],
    ]


SUMMARY_COLUMNS = [
    "relay",
    "subs",
    "procs x subs",
    "offered Mbit/s",
    "delivered Mbit/s",
    "objects/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "missing",
    "relay CPU",
    "subs CPU",
    "other CPU",
    "relay CPU ms/MB",
    "relay RSS MB",
    "KB/idle sub",
]


# -- aiomoqt's subscribers as the load generator -------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (load_sim forks subscriber hosts)."""
    found = [pid]
    for _ in range(1000):  # bounded walk
        before = len(found)
        for p in list(found):
            for child in _children(p):
                if child not in found:
                    found.append(child)
        if len(found) == before:
            break
    return found


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        with contextlib.suppress(OSError, ValueError):
            out.extend(int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split())
    return out


async def run_loadgen(
    env: RunEnv,
    relay_kind: str,
    subscribers: int,
    *,
    duration: float | None = None,
    hooks: Hooks | None = None,
    relay_workers: int = 1,
) -> Json:
    """One run with aiomoqt's `moq-load-sim --role sub` as the audience (picoquic: its packet work is C, so it is
    far cheaper per subscriber than ours) plus one of our subscribers as the latency probe (p50/p99/max; load_sim
    itself reports a p90 per interval). `relay_workers`: our relay as that many processes (`moq relay --workers`); its
    CPU and memory are then those of all its processes."""
    from bench.relays import aiomoqt_bin

    bin_dir = aiomoqt_bin()
    if bin_dir is None:
        raise RuntimeError("aiomoqt is not installed")
    s = env.settings
    duration = duration or s.duration
    shape = env.shape()
    seconds = s.warmup + duration
    tag = f"{relay_kind}{f'-x{relay_workers}' if relay_workers > 1 else ''}-loadgen-{subscribers}"
    hooks = hooks or Hooks()
    relay = await RelayProcess.start(
        relay_kind, env.workdir, env.cert, env.key, s, tag=f"-{tag}", wrapper=hooks.relay_wrapper, workers=relay_workers
    )
    workers: list[Worker] = []
    loadgen: asyncio.subprocess.Process | None = None
    report = env.workdir / f"loadgen-{tag}.csv"
    join_budget = 20.0 + subscribers / 20
    try:
        track_params = publisher_params(shape, env, relay)
        publisher = await Worker.start(
            "publisher", {**track_params, "seconds": seconds, "deadline": 200 + seconds}, env.workdir, f"pub-{tag}"
        )
        workers.append(publisher)
        await publisher.message("ready", READY_TIMEOUT)
        with_publisher_kb = relay.rss_kb()
        listen = READY_TIMEOUT + join_budget + seconds + TAIL
        probe = await Worker.start(
            "subscribers",
            {**track_params, "count": 1, "listen": listen, "deadline": listen + 60},
            env.workdir,
            f"probe-{tag}",
        )
        workers.append(probe)
        await probe.message("ready", READY_TIMEOUT)
        timeline = int(join_budget + seconds + TAIL + 5)
        args = [
            str(bin_dir / "moq-load-sim"),
            "--role", "sub",
            "--subs", str(subscribers),
            "-N", NAMESPACE,
            "-T", TRACK,
            "-t", str(timeline),
            "-k",
            "--draft", str(env.draft),
            "-i", "1",
            "--report", str(report),
            relay.url.rstrip("/"),
        ]  # fmt: skip
        launched = time.time()
        loadgen = await start_process(args, log=env.workdir / f"loadgen-{tag}.log", stdout=True)
        live = await _wait_joined(loadgen, subscribers, join_budget)
        idle_kb = relay.rss_kb()
        memory = MemorySampler(relay.pid, tree=relay_workers > 1)
        memory.start()
        relay_cpu = CpuWindow(descendants(relay.pid))
        load_cpu = CpuWindow(descendants(loadgen.pid))
        publisher.tell("go")
        started = (await publisher.message("started", 10.0))["at"]
        await asyncio.sleep(max(0.0, started + s.warmup - time.time()))
        busy0 = system_busy_seconds()
        relay_cpu.start()
        load_cpu.start()
        if hooks.on_window is not None:
            hooks.on_window(relay.pid, duration)
        await asyncio.sleep(max(0.0, started + seconds - time.time()))
        relay_cpu.stop()
        load_cpu.stop()
        relay.check_alive()
        busy = system_busy_seconds() - busy0
        await publisher.message("result", 30.0)
        asyncio.get_running_loop().call_later(s.tail, probe.tell, "stop")
        probe_result = await probe.message("result", listen + 10)
        peak_kb = await memory.stop()
    finally:
        if loadgen is not None:
            await stop_process(loadgen, signal.SIGINT)
        for w in workers:
            await w.stop()
        await relay.stop()
    w0, w1 = started + s.warmup - launched, started + seconds - launched
    rows = _csv_rows(report)
    in_window = [r for r in rows if w0 + 1 <= r["t"] <= w1]
    rx = [r["rx_mbps"] for r in in_window]
    p90 = [r["p90_ms"] for r in in_window if r["p90_ms"] > 0]
    seq0, seq1 = int(s.warmup * shape.fps), int(seconds * shape.fps)
    probe_figures = _window(probe_result["subscribers"], started + s.warmup, started + seconds, seq0, seq1)
    delivered_mbit = round(sum(rx) / len(rx) + probe_figures["delivered_mbit_s"], 2) if rx else None
    return {
        "relay": relay.label,
        "workers": relay_workers,
        "load": "aiomoqt moq-load-sim",
        "subscribers": subscribers,
        "subscribers_joined": live,
        "bitrate_bps": shape.bitrate,
        "offered_mbit_s": round((subscribers + 1) * shape.bitrate / 1e6, 2),
        "delivered_mbit_s": delivered_mbit,
        "loadgen_p90_ms_max": round(max(p90), 1) if p90 else None,
        "probe": probe_figures,
        "relay_cpu": round(relay_cpu.share, 3),
        "loadgen_cpu": round(load_cpu.share, 3),
        "other_cpu": round(max(0.0, busy / max(relay_cpu.seconds, 1e-9) - relay_cpu.share - load_cpu.share), 3),
        "relay_cpu_ms_per_mb": cpu_ms_per_mb(relay_cpu.share, delivered_mbit),
        "relay_rss_mb": {"idle_subscribers": round(idle_kb / 1024, 1), "peak_in_window": round(peak_kb / 1024, 1)},
        "relay_kb_per_idle_subscriber": round((idle_kb - with_publisher_kb) / max(1, live), 1),
    }


async def _wait_joined(proc: asyncio.subprocess.Process, want: int, timeout: float) -> int:
    """Read load_sim's live lines ("T+ 4s  subs=40 ...") until `want` subscribers are attached."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    live = 0
    for _ in range(100_000):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            raw = await asyncio.wait_for(proc.stdout.readline(), remaining)
        except TimeoutError:
            break
        if not raw:
            raise RuntimeError("moq-load-sim exited before its subscribers joined")
        match = re.search(r"subs=(\d+)", raw.decode(errors="replace"))
        if match:
            live = int(match.group(1))
            if live >= want:
                break
    _background.add(asyncio.ensure_future(_drain(proc)))
    return live


_background: set[asyncio.Future[None]] = set()


async def _drain(proc: asyncio.subprocess.Process) -> None:
    """Keep reading load_sim's output so that it never blocks on a full pipe."""
    assert proc.stdout is not None
    for _ in range(1_000_000):
        if not await proc.stdout.readline():
            return


def _csv_rows(path: Path) -> list[dict[str, float]]:
    rows: list[dict[str, float]] = []
    if not path.exists():
        return rows
    with path.open() as f:
        for row in csv.DictReader(f):
            with contextlib.suppress(ValueError, KeyError):
                rows.append(
                    {"t": float(row["t"]), "rx_mbps": float(row["rx_mbps"] or 0), "p90_ms": float(row["p90_ms"] or 0)}
                )
    return rows
