"""`python -m bench`: run the benchmarks, print a table per part, optionally write every figure as JSON.

    python -m bench                  # everything, full size (several minutes)
    python -m bench --quick          # a reduced set, under two minutes on 2 cores
    python -m bench --json out.json  # also write every figure
    python -m bench --only fanout,slow --quick

Numbers only: nothing here passes or fails on time. The targets are reported next to what was measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench import cache, call, ceiling, media, profile
from bench.common import Json, Table, machine, per_core_mbit_s
from bench.fanout import SUMMARY_COLUMNS, RunEnv, retried, run_fanout, run_loadgen, summary_row
from bench.relays import aiomoqt_bin
from bench.settings import FULL, QUICK, TINY, Settings

PARTS = ("ceiling", "fanout", "aiomoqt", "loadgen", "slow", "media", "call", "cache", "profile")
#: A run counts as saturated when it delivers less than this share of what was offered.
SATURATED = 0.95
#: "Half the saturation load" for the p99 target: runs delivering between these shares of the saturation egress
#: (the run sizes are fixed, so none is exactly at half); the best p99 among them is reported.
HALF_LOAD_WINDOW = (0.4, 0.6)


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(v) for v in f.read().split()[:3]]


class Bench:
    """One run of the chosen parts; collects the JSON and prints each table as its part finishes."""

    def __init__(self, settings: Settings, env: RunEnv, parts: list[str]) -> None:
        self.settings = settings
        self.env = env
        self.parts = parts
        self.out: Json = {"settings": settings.__dict__, "machine": machine(), "parts": {}}
        self.tables: list[Table] = []

    def show(self, table: Table) -> None:
        self.tables.append(table)
        print(table.render(), end="\n\n", flush=True)

    async def part(self, name: str, run: Callable[[], Awaitable[tuple[Json, Table | list[Table]]]]) -> None:
        if name not in self.parts:
            return
        began = time.monotonic()
        load = loadavg()
        print(f"... {name} (load average {load[0]:.1f})", file=sys.stderr, flush=True)
        try:
            result, tables = await run()
        except Exception as exc:  # a broken part must not hide the others' numbers
            traceback.print_exc()
            self.out["parts"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            self.show(Table(f"{name}: failed", ["error"], [[f"{type(exc).__name__}: {exc}"]]))
            return
        result["seconds_taken"] = round(time.monotonic() - began, 1)
        result["load_average_before"] = load
        self.out["parts"][name] = result
        for table in tables if isinstance(tables, list) else [tables]:
            self.show(table)

    # -- parts ------------------------------------------------------------------------------------------------------

    async def ceiling(self) -> tuple[Json, Table]:
        return await ceiling.run(self.settings, self.env.workdir, self.env.cert, self.env.key)

    async def fanout(self) -> tuple[Json, Table]:
        s = self.settings
        shape = self.env.shape()
        table = Table(
            f"Relay fan-out: moq relay, one {s.bitrate / 1e6:g} Mbit/s video-like track ({s.fps} objects/s, a group "
            f"every {s.group_seconds:g} s, keyframe {shape.key_size} B, others {shape.delta_size} B) to N subscribers",
            SUMMARY_COLUMNS,
        )
        runs = []
        for count in s.subscriber_counts:
            try:
                runs.append(await retried(partial(run_fanout, self.env, "moq", count)))
            except Exception as exc:
                table.notes.append(f"{count} subscribers: {type(exc).__name__}: {exc} (larger N skipped)")
                break
            table.rows.append(summary_row(runs[-1]))
        table.notes += [
            "procs x subs: subscriber processes x subscribers per process (each subscriber has its own QUIC "
            "connection; at most "
            f"{s.max_subscriber_processes} processes, because on {self.out['machine']['nproc']} cores more processes "
            "only add interpreter start-up and memory)",
            f"measured over {s.duration:g} s after {s.warmup:g} s of warm-up; latency = receive wall clock - send wall "
            "clock (in the payload), over every subscriber; missing = objects of the window never received",
            "CPU is a share of one core; other CPU = what the rest of the machine used meanwhile (not ours)",
            "KB/idle sub = relay RSS growth per subscribed subscriber before any object flowed",
        ]
        return {"runs": runs}, table

    async def aiomoqt(self) -> tuple[Json, Table]:
        if aiomoqt_bin() is None:
            raise RuntimeError("aiomoqt is not installed (python -m interop.peers install)")
        s = self.settings
        ours = {r["subscribers"]: r for r in self.out["parts"].get("fanout", {}).get("runs", [])}
        table = Table(
            "Same workload through aiomoqt's relay (moq-interop-relay --dual, picoquic), our publisher and subscribers",
            SUMMARY_COLUMNS,
        )
        runs = []
        for count in s.aiomoqt_counts:
            if count not in ours:
                ours[count] = await retried(partial(run_fanout, self.env, "moq", count))
            runs.append(await retried(partial(run_fanout, self.env, "aiomoqt", count)))
            table.rows.append(summary_row(ours[count]))
            table.rows.append(summary_row(runs[-1]))
        ratios = []
        for r in runs:
            o = ours[r["subscribers"]]
            ratio = {
                "subscribers": r["subscribers"],
                "delivered_ours_over_theirs": _ratio(o["delivered_mbit_s"], r["delivered_mbit_s"]),
                "p99_ours_over_theirs": _ratio(o["latency"]["p99_ms"], r["latency"]["p99_ms"]),
                "relay_cpu_ours_over_theirs": _ratio(o["relay_cpu"], r["relay_cpu"]),
                "relay_rss_ours_over_theirs": _ratio(
                    o["relay_rss_mb"]["peak_in_window"], r["relay_rss_mb"]["peak_in_window"]
                ),
            }
            ratios.append(ratio)
            table.notes.append(
                f"N={r['subscribers']}: ours/aiomoqt delivered {ratio['delivered_ours_over_theirs']}, "
                f"p99 {ratio['p99_ours_over_theirs']}, relay CPU {ratio['relay_cpu_ours_over_theirs']}, "
                f"relay RSS {ratio['relay_rss_ours_over_theirs']}"
            )
        return {"runs": runs, "ratios": ratios}, table

    async def loadgen(self) -> tuple[Json, Table]:
        if aiomoqt_bin() is None:
            raise RuntimeError("aiomoqt is not installed (python -m interop.peers install)")
        table = Table(
            "Saturation with a cheaper load generator: aiomoqt's moq-load-sim subscribers (picoquic) + 1 of ours "
            "as the latency probe",
            ["relay", "subs", "offered Mbit/s", "delivered Mbit/s", "probe p50 ms", "probe p99 ms", "probe max ms",
             "load_sim p90 max ms", "relay CPU", "loadgen CPU", "other CPU", "relay CPU ms/MB", "relay RSS MB",
             "KB/idle sub"],
        )  # fmt: skip
        runs = []
        relays = [("moq", n) for n in self.settings.relay_workers] + [("aiomoqt", 1)]
        for count in self.settings.loadgen_counts:
            for kind, workers in relays:
                try:
                    r = await retried(partial(run_loadgen, self.env, kind, count, relay_workers=workers))
                except Exception as exc:
                    table.notes.append(f"{kind} x{workers}, {count} subscribers: {type(exc).__name__}: {exc}")
                    continue
                runs.append(r)
                table.rows.append(
                    [
                        r["relay"],
                        r["subscribers_joined"],
                        r["offered_mbit_s"],
                        r["delivered_mbit_s"],
                        r["probe"]["latency"]["p50_ms"],
                        r["probe"]["latency"]["p99_ms"],
                        r["probe"]["latency"]["max_ms"],
                        r["loadgen_p90_ms_max"],
                        f"{r['relay_cpu'] * 100:.0f}%",
                        f"{r['loadgen_cpu'] * 100:.0f}%",
                        f"{r['other_cpu'] * 100:.0f}%",
                        r["relay_cpu_ms_per_mb"],
                        r["relay_rss_mb"]["peak_in_window"],
                        r["relay_kb_per_idle_subscriber"],
                    ]
                )
        table.notes.append(
            "delivered = load_sim's received Mbit/s (1 s intervals inside the window) + the probe's; load_sim hosts "
            "up to 100 subscribers per process"
        )
        if any(n > 1 for n in self.settings.relay_workers):
            table.notes.append(
                "moq xN = `moq relay --workers N`: N relay processes share the UDP port (SO_REUSEPORT), behind a hub "
                "process; relay CPU and RSS are those of every process (supervisor, hub, workers)"
            )
        return {"runs": runs}, table

    async def slow(self) -> tuple[Json, Table]:
        s = self.settings
        rate = int(s.bitrate * s.slow_fraction)
        earlier = [
            r
            for r in self.out["parts"].get("fanout", {}).get("runs", [])
            if r["subscribers"] == s.slow_others and r["seconds"] == s.slow_duration
        ]
        # The fan-out part's run of the same size is the baseline when there is one (the same workload, minutes
        # apart); otherwise measure it here.
        baseline = (
            earlier[0]
            if earlier
            else await run_fanout(self.env, "moq", s.slow_others, duration=s.slow_duration, tag="slow-baseline")
        )
        with_slow = await run_fanout(self.env, "moq", s.slow_others, duration=s.slow_duration, slow_bps=rate)
        slow = with_slow["slow"]
        table = Table(
            f"Slow subscriber: 1 subscriber behind a {rate / 1e6:g} Mbit/s link ({s.slow_fraction:g} of the track) "
            f"beside {s.slow_others} normal ones, moq relay",
            ["", "delivered Mbit/s", "p50 ms", "p99 ms", "max ms", "missing", "lag groups p50", "lag groups max",
             "lag groups at end", "groups got/sent"],
        )  # fmt: skip
        for label, r in (("others, no slow subscriber", baseline), ("others, with the slow one", with_slow)):
            lat = r["latency"]
            table.rows.append(
                [label, r["per_subscriber_mbit_s"], lat["p50_ms"], lat["p99_ms"], lat["max_ms"], r["objects_missing"]]
            )
        lat = slow["latency"]
        table.rows.append(
            [
                "the slow subscriber",
                slow["delivered_mbit_s"],
                lat["p50_ms"],
                lat["p99_ms"],
                lat["max_ms"],
                slow["objects_missing"],
                slow["lag_groups_p50"],
                slow["lag_groups_max"],
                slow["lag_groups_last"],
                f"{slow['groups_received']}/{slow['groups_in_window']}",
            ]
        )
        table.notes += [
            "the slow subscriber's link is a rate-limited UDP forwarder with a 100 ms drop-tail queue "
            "(bench/shaper.py); its latency is how far behind live it is (lag in groups = latency / group duration)",
            "target: the slow one stays within a group or two of live (losing old groups), the others' p99 unchanged",
        ]
        return {"baseline": baseline, "with_slow": with_slow}, table

    async def media(self) -> tuple[Json, Table]:
        return await media.run(self.env)

    async def call(self) -> tuple[Json, list[Table]]:
        return await call.run(self.env)

    async def cache(self) -> tuple[Json, Table]:
        return await cache.run(self.env, 2.0 if self.settings.mode == "tiny" else 4.0)

    async def profile(self) -> tuple[Json, list[Table]]:
        s = self.settings
        count = s.profile_subscribers or max(s.subscriber_counts)
        result, table = await profile.run(self.env, count, s.profile_seconds)
        tables = [table]
        if result.get("components"):
            parts = Table("Relay profile: self time by component", ["component", "self %"])
            parts.rows = [[r["component"], r["self_pct"]] for r in result["components"]]
            tables.append(parts)
        if result.get("top_self"):
            own = Table("Relay profile: top functions by self time", ["function (file)", "self %"])
            own.rows = [[r["function"], r["self_pct"]] for r in result["top_self"][:15]]
            tables.append(own)
        return result, tables

    # -- summary ----------------------------------------------------------------------------------------------------

    def targets(self) -> Table:
        parts = self.out["parts"]
        table = Table("Targets (reported, not asserted)", ["target", "measured", "met"])
        ceiling_mbit = parts.get("ceiling", {}).get("ceiling_mbit_s")
        ours = [r for r in parts.get("fanout", {}).get("runs", [])]
        ours += [r for r in parts.get("loadgen", {}).get("runs", []) if r["relay"].startswith("moq")]
        best = max(ours, key=lambda r: r["delivered_mbit_s"] or 0, default=None)
        summary: Json = {}
        if best is not None and ceiling_mbit:
            saturated = any((r["delivered_mbit_s"] or 0) < SATURATED * r["offered_mbit_s"] for r in ours)
            share = best["delivered_mbit_s"] / ceiling_mbit
            summary["egress_mbit_s"] = best["delivered_mbit_s"]
            summary["egress_share_of_ceiling"] = round(share, 3)
            summary["saturation_reached"] = saturated
            table.rows.append(
                [
                    "relay egress at saturation >= 80% of the raw ceiling",
                    f"{best['delivered_mbit_s']} of {ceiling_mbit} Mbit/s = {share:.0%}"
                    + ("" if saturated else " (no run saturated: a lower bound)"),
                    "yes" if share >= 0.8 else "no",
                ]
            )
            many = parts.get("ceiling", {}).get("ceiling_many_connections_mbit_s")
            if many:
                summary["egress_share_of_many_connection_ceiling"] = round(best["delivered_mbit_s"] / many, 3)
                table.rows.append(
                    [
                        "the same, against the ceiling of one sender to many connections (the relay's shape)",
                        f"{best['delivered_mbit_s']} of {many} Mbit/s = {best['delivered_mbit_s'] / many:.0%}",
                        "yes" if best["delivered_mbit_s"] >= 0.8 * many else "no",
                    ]
                )
            costs = [r["relay_cpu_ms_per_mb"] for r in ours if r.get("relay_cpu_ms_per_mb")]
            relay_core = per_core_mbit_s(min(costs)) if costs else None
            sender_core = parts.get("ceiling", {}).get("sender_per_core_mbit_s")
            if relay_core and sender_core:
                summary["relay_per_core_mbit_s"] = relay_core
                summary["ceiling_sender_per_core_mbit_s"] = sender_core
                table.rows.append(
                    [
                        "the same, per core (from CPU ms per MB: hardly affected by a busy machine)",
                        f"relay {relay_core} vs raw sender {sender_core} Mbit/s per core "
                        f"= {relay_core / sender_core:.0%}",
                        "yes" if relay_core >= 0.8 * sender_core else "no",
                    ]
                )
            half = best["delivered_mbit_s"] / 2
            # Among the runs of our relay that kept up (a saturated run's latency is its backlog): the fan-out runs
            # (our Python subscribers) and the load-generator runs (their probe subscriber). Near half the saturation
            # load (HALF_LOAD_WINDOW), the best of them: one process or `--workers N`, as one would run it there.
            kept_up = [
                (r, r["latency"]["p99_ms"], f"{r['subscribers']} of our subscribers")
                for r in parts.get("fanout", {}).get("runs", [])
                if r["latency"]["p99_ms"] is not None and r["delivered_mbit_s"] >= SATURATED * r["offered_mbit_s"]
            ] + [
                (r, r["probe"]["latency"]["p99_ms"], f"{r['subscribers_joined']} load-generator subs, {r['relay']}")
                for r in parts.get("loadgen", {}).get("runs", [])
                if r["relay"].startswith("moq")
                and r["probe"]["latency"]["p99_ms"] is not None
                and r["delivered_mbit_s"] >= SATURATED * r["offered_mbit_s"]
            ]
            if kept_up:
                low, high = HALF_LOAD_WINDOW
                nearest = [k for k in kept_up if low * 2 * half <= k[0]["delivered_mbit_s"] <= high * 2 * half]
                if not nearest:
                    distance = min(abs(r["delivered_mbit_s"] - half) for r, _, _ in kept_up)
                    nearest = [k for k in kept_up if abs(k[0]["delivered_mbit_s"] - half) == distance]
                near, p99, how = min(nearest, key=lambda k: k[1])
                summary["p99_ms_at_half_load"] = p99
                table.rows.append(
                    [
                        "p99 object latency <= 20 ms at half the saturation load",
                        f"{p99} ms at {near['delivered_mbit_s']} Mbit/s ({how}; half = {half:.1f})",
                        "yes" if p99 <= 20 else "no",
                    ]
                )
        bound = parts.get("cache")
        if bound and "peak_cached_bytes" in bound:
            table.rows.append(
                [
                    "bounded cache: the configured limit never exceeded",
                    f"peak {bound['peak_cached_bytes']} of {bound['limit_bytes']} bytes",
                    "yes" if bound["within_limit"] else "no",
                ]
            )
        if ours:
            largest = max(parts.get("fanout", {}).get("runs", []) or ours, key=lambda r: r["subscribers"])
            per = largest["relay_kb_per_idle_subscriber"]
            summary["relay_kb_per_idle_subscriber"] = per
            table.rows.append(
                [
                    "<= 1 MB relay RSS per idle subscriber",
                    f"{per} KB ({largest['subscribers']} subscribers)",
                    "yes" if per <= 1024 else "no",
                ]
            )
        self.out["targets"] = summary
        return table


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


async def main_async(args: argparse.Namespace) -> int:
    settings = TINY if args.tiny else QUICK if args.quick else FULL
    parts = list(PARTS)
    if args.only:
        parts = [p for p in args.only.split(",") if p]
    if args.skip:
        parts = [p for p in parts if p not in args.skip.split(",")]
    if settings.profile_subscribers == 0 and not args.profile and not args.only:
        parts = [p for p in parts if p != "profile"]
    if not settings.loadgen_counts and "loadgen" in parts and not args.only:
        parts.remove("loadgen")
    if not settings.aiomoqt_counts and "aiomoqt" in parts and not args.only:
        parts.remove("aiomoqt")
    if settings.mode == "tiny" and "call" in parts and not args.only:
        parts.remove("call")  # browsers take seconds to start; the part has its own smoke test (--only call)
    unknown = set(parts) - set(PARTS)
    if unknown:
        print(f"unknown parts: {', '.join(sorted(unknown))}; parts: {', '.join(PARTS)}", file=sys.stderr)
        return 2
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="moq-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    from moq.transport.tls import generate_dev_certificate

    cert, key = workdir / "cert.pem", workdir / "key.pem"
    generate_dev_certificate().save(cert, key)
    env = RunEnv(settings, workdir, cert, key)
    bench = Bench(settings, env, parts)
    m = bench.out["machine"]
    print(
        f"# moq benchmarks ({settings.mode}), {m['date']}: {m['nproc']} x {m['cpu_model']}, {m['memory_gb']} GB, "
        f"Linux {m['kernel']}, Python {m['python']}, aioquic {m['versions'].get('aioquic', '?')}; "
        f"load average at start {loadavg()[0]:.1f}\n",
        flush=True,
    )
    if loadavg()[0] > 1.0:
        print(
            f"warning: the machine is busy (load average {loadavg()[0]:.1f} before we start anything): the figures "
            "will be low; the 'other CPU' columns say how much of the machine other processes took\n",
            flush=True,
        )
    began = time.monotonic()
    steps: dict[str, Callable[[], Awaitable[tuple[Json, Any]]]] = {
        "ceiling": bench.ceiling,
        "fanout": bench.fanout,
        "aiomoqt": bench.aiomoqt,
        "loadgen": bench.loadgen,
        "slow": bench.slow,
        "media": bench.media,
        "call": bench.call,
        "cache": bench.cache,
        "profile": bench.profile,
    }
    for name in PARTS:
        await bench.part(name, steps[name])
    bench.show(bench.targets())
    bench.out["seconds_taken"] = round(time.monotonic() - began, 1)
    bench.out["load_average_after"] = loadavg()
    bench.out["workdir"] = str(workdir)
    print(f"took {bench.out['seconds_taken']} s; logs in {workdir}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(bench.out, indent=1) + "\n")
        print(f"wrote {args.json}")
    if not args.workdir and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0] if __doc__ else "")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a reduced set, under two minutes on 2 cores")
    size.add_argument("--tiny", action="store_true", help="the smallest sizes (the smoke test): seconds")
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    parser.add_argument("--only", metavar="PARTS", help=f"comma-separated parts to run: {','.join(PARTS)}")
    parser.add_argument("--skip", metavar="PARTS", help="comma-separated parts to leave out")
    parser.add_argument("--profile", action="store_true", help="also profile the relay (default in the full run)")
    parser.add_argument("--workdir", metavar="DIR", help="keep certificates and every process's log here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory (logs)")
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
