"""Part 6, a call: K headless Chromium call pages in one room through our relay; how late each one sees and hears
the others ("mouth-to-ear"), and what it costs.

The relay is its own process (`moq relay --web-port 0`, with a development certificate in its state directory,
whose fingerprint `/config.json` hands to the pages), and serves `/call/ROOM`. Each participant is a Chromium
process of its own (`tests/web/chromium.py`, driven over DevTools on a pipe) with a fake camera (a test pattern,
small pictures as the tests use) and a fake microphone (a beep). Once every page decodes every other participant's
video and audio (polled inside a deadline) and `call_warmup` seconds more have passed, the part measures for
`call_seconds`:

- per frame, from the players' traces (`trace.videoLatencyMs`, `trace.audioLatencyMs` of web/js/player.js, which
  the part turns on through `window.moqStats` and drains every second): video = the LOC capture timestamp to the
  moment the receiving page draws the frame on its canvas; audio ("mouth-to-ear") = the capture timestamp to the
  moment the decoded buffer is due to start on the Web Audio clock. Pages whose player keeps no such trace are
  sampled instead: `latencyMs` / `audioLatencyMs` every 100 ms (the table title says which);
- the players' counters at both ends of the window: frames decoded and shown, audio frames decoded and played,
  frames passed over, audio frames too late to play, groups dropped;
- CPU from /proc: the relay, every process of the K browsers, and the rest of the machine.

Every direction (sender -> receiver, K x (K - 1) of them) is summarised, and the directions are pooled. All pages
share one machine and one wall clock, so capture timestamps need no clock correction. Nothing is asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.common import (
    HOST,
    CpuWindow,
    Json,
    Table,
    TreeCpuWindow,
    children_of,
    latency_summary,
    percentile,
    process_tree,
)
from bench.fanout import RunEnv, system_busy_seconds
from bench.relays import RelayProcess
from tests.web.chromium import CHROMIUM, FAKE_MEDIA_FLAGS, Chromium, available

ROOM = "bench-call"
#: The pictures the pages send: small, as the tests use, so that K encoders and K x (K - 1) decoders fit two cores
#: (the fake camera gives 20 fps).
WIDTH, HEIGHT, FPS = 320, 240, 20
MEDIA = f"width={WIDTH}&height={HEIGHT}&fps={FPS}"
#: Joined = every page has decoded this much of every other participant (one second of each). Whether the frames
#: are then shown and played in time is what the part measures.
JOIN_VIDEO_FRAMES = 20
JOIN_AUDIO_FRAMES = 50
#: How long K pages get to join and decode each other (Chromium start-up, capture settling, the first keyframe).
JOIN_TIMEOUT = 60.0
#: How often the pages are asked, while joining and, with the per-frame trace, while measuring (its drain).
JOIN_POLL = 0.1
TRACE_DRAIN = 1.0
#: Without the per-frame trace: how often `latencyMs` / `audioLatencyMs` are sampled.
SAMPLE_POLL = 0.1

#: The players' counters read at both ends of the window (web/js/player.js createStats).
COUNTERS = (
    "framesDecoded",
    "framesRendered",
    "framesSkipped",
    "audioFramesDecoded",
    "audioFramesPlayed",
    "audioFramesLate",
    "audioFramesCut",
    "videoGroupsDropped",
    "audioGroupsDropped",
    "skips",
    "outOfOrder",
    "objectsReceived",
)
#: The publisher's counters (web/js/publisher.js, plus what the page served).
PUBLISHER_COUNTERS = (
    "videoFramesEncoded",
    "videoFramesDropped",
    "keyframes",
    "audioFramesEncoded",
    "groupsDropped",
    "objectsSent",
    "bytesSent",
)

#: One page's view, in one evaluation: the counters, and the per-frame latencies since the last call (drained).
#: A participant without the trace gets one (the call page makes its players' stats without it); such a sample is
#: marked `traced: false`, its latencies are those of nothing yet.
SNAPSHOT_JS = """(() => {
  const s = window.moqStats;
  if (!s || !s.participants) return null;
  const counters = COUNTERS;
  const participants = {};
  for (const [id, p] of Object.entries(s.participants)) {
    let t = p.trace;
    const traced = !!(t && Array.isArray(t.videoLatencyMs) && Array.isArray(t.audioLatencyMs));
    if (!traced) t = p.trace = { video: [], skips: [], videoLatencyMs: [], audioLatencyMs: [] };
    const out = {
      traced,
      videoTrace: t.videoLatencyMs.splice(0),
      audioTrace: t.audioLatencyMs.splice(0),
      latencyMs: p.latencyMs,
      audioLatencyMs: p.audioLatencyMs,
      playoutDelayMs: p.playoutDelayMs,
      audioLateMs: p.audioLateMs,
      videoTrack: p.videoTrack,
      audioTrack: p.audioTrack,
      lastError: p.lastError,
    };
    if (Array.isArray(t.video)) t.video.length = 0;
    if (Array.isArray(t.skips)) t.skips.length = 0;
    for (const k of counters) out[k] = p[k];
    participants[id] = out;
  }
  const publisher = {};
  for (const k of PUBLISHER_COUNTERS) publisher[k] = s.publisher?.[k];
  return { at: performance.now(), self: s.self, state: s.state, lastError: s.lastError, publisher, participants };
})()""".replace("PUBLISHER_COUNTERS", json.dumps(PUBLISHER_COUNTERS)).replace("COUNTERS", json.dumps(COUNTERS))

#: Web Audio's own latencies, as Chromium reports them for a context like the call page's (not in the figures):
#: baseLatency, outputLatency, and how far the context's clock (currentTime, which the audio figure is taken on)
#: runs ahead of what its output timestamp says is being heard now. It waits (polling, inside a deadline) until the
#: context has output something.
AUDIO_CONTEXT_JS = """(async () => {
  const c = new AudioContext({ latencyHint: 'interactive', sampleRate: 48000 });
  await c.resume();
  const until = performance.now() + 3000;
  while (c.getOutputTimestamp().contextTime < 0.2 && performance.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const o = c.getOutputTimestamp();
  const heard = o.contextTime + (performance.now() - o.performanceTime) / 1000;
  const r = {
    baseLatencyMs: c.baseLatency * 1000,
    outputLatencyMs: (c.outputLatency ?? 0) * 1000,
    clockLeadMs: (c.currentTime - heard) * 1000,
  };
  await c.close();
  return r;
})()"""


def load_average() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def skip_reason() -> str | None:
    """Why the part cannot run here, or None."""
    if not available():
        return f"{CHROMIUM} not found: apt-get install -y chromium (or set MOQ_CHROMIUM)"
    return None


# -- the pages' stats (pure) ---------------------------------------------------------------------------------------


@dataclass
class Received:
    """What a page says about one participant it plays, in one snapshot."""

    traced: bool
    video_ms: list[float]
    audio_ms: list[float]
    latency_ms: float | None
    audio_latency_ms: float | None
    playout_delay_ms: float | None
    counters: dict[str, int]
    error: str | None = None
    #: How far past its due time the newest audio frame too late to play came (the player's audioLateMs).
    audio_late_ms: float | None = None


@dataclass
class Snapshot:
    """One page's `SNAPSHOT_JS`: its own name, when (the page's performance.now(), ms), what it plays and sends."""

    self_name: str
    at_ms: float
    state: str
    error: str | None
    publisher: dict[str, int]
    received: dict[str, Received]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _numbers(values: Any) -> list[float]:
    return [float(v) for v in values if _number(v) is not None] if isinstance(values, list) else []


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def parse_snapshot(raw: Any) -> Snapshot | None:
    """A page's `SNAPSHOT_JS` value as a Snapshot; None while the page has no stats yet (still loading)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("participants"), dict):
        return None
    received = {}
    for name, p in raw["participants"].items():
        if not isinstance(p, dict):
            continue
        received[str(name)] = Received(
            traced=bool(p.get("traced")),
            video_ms=_numbers(p.get("videoTrace")),
            audio_ms=_numbers(p.get("audioTrace")),
            latency_ms=_number(p.get("latencyMs")),
            audio_latency_ms=_number(p.get("audioLatencyMs")),
            playout_delay_ms=_number(p.get("playoutDelayMs")),
            counters={k: _count(p.get(k)) for k in COUNTERS},
            error=p.get("lastError"),
            audio_late_ms=_number(p.get("audioLateMs")),
        )
    publisher = raw.get("publisher")
    if not isinstance(publisher, dict):
        publisher = {}
    return Snapshot(
        self_name=str(raw.get("self")),
        at_ms=float(raw.get("at") or 0.0),
        state=str(raw.get("state")),
        error=raw.get("lastError"),
        publisher={k: _count(publisher.get(k)) for k in PUBLISHER_COUNTERS},
        received=received,
    )


def not_joined(snapshots: Sequence[Snapshot | None], names: list[str]) -> list[str]:
    """What is still missing before every page decodes every other participant's video and audio (empty: all in).

    `snapshots[i]` is the page of `names[i]`."""
    missing = []
    for name, snap in zip(names, snapshots, strict=True):
        if snap is None:
            missing.append(f"{name}'s page: no stats yet")
            continue
        for other in names:
            if other == name:
                continue
            got = snap.received.get(other)
            if got is None:
                missing.append(f"{name}'s page: no {other} yet")
                continue
            c = got.counters
            if c["framesDecoded"] < JOIN_VIDEO_FRAMES or c["audioFramesDecoded"] < JOIN_AUDIO_FRAMES:
                missing.append(
                    f"{name}'s page: {other} {c['framesDecoded']} video frames decoded ({c['framesRendered']} shown), "
                    f"{c['audioFramesDecoded']} audio ({c['audioFramesPlayed']} played, {c['audioFramesLate']} late)"
                    + (f", error {got.error}" if got.error else "")
                )
    return missing


@dataclass
class Direction:
    """One direction of the call (what `receiver`'s page plays of `sender`) over the measured window."""

    sender: str
    receiver: str
    video_ms: list[float] = field(default_factory=list)
    audio_ms: list[float] = field(default_factory=list)
    #: The player's playout delay (capture to due), once per snapshot.
    playout_ms: list[float] = field(default_factory=list)
    #: How late the newest late audio frame was, once per snapshot in which some were.
    audio_late_ms: list[float] = field(default_factory=list)
    first: dict[str, int] | None = None
    last: dict[str, int] | None = None
    first_at: float = 0.0
    last_at: float = 0.0
    #: Snapshots in which the page had no trace for this participant (it had left and come back, say).
    untraced: int = 0
    #: A counter went down: the participant's player was made anew inside the window.
    restarted: bool = False

    def add(self, got: Received, at_ms: float, sampled: bool) -> None:
        """The next snapshot. The first only opens the window (what it drained came before). `sampled`: take the
        page's latest latencyMs / audioLatencyMs when a frame was shown / played since the last snapshot, instead
        of the per-frame trace."""
        previous = self.last
        self.last, self.last_at = dict(got.counters), at_ms
        if previous is None:
            self.first, self.first_at = dict(got.counters), at_ms
            return
        if any(got.counters[k] < previous[k] for k in COUNTERS):
            self.restarted = True
        if got.playout_delay_ms is not None:
            self.playout_ms.append(got.playout_delay_ms)
        if got.counters["audioFramesLate"] > previous["audioFramesLate"] and got.audio_late_ms is not None:
            self.audio_late_ms.append(got.audio_late_ms)
        if sampled:
            if got.counters["framesRendered"] > previous["framesRendered"] and got.latency_ms is not None:
                self.video_ms.append(got.latency_ms)
            if got.counters["audioFramesPlayed"] > previous["audioFramesPlayed"] and got.audio_latency_ms is not None:
                self.audio_ms.append(got.audio_latency_ms)
            return
        if not got.traced:
            self.untraced += 1
        self.video_ms.extend(got.video_ms)
        self.audio_ms.extend(got.audio_ms)

    def delta(self, counter: str) -> int:
        if self.first is None or self.last is None:
            return 0
        return max(0, self.last[counter] - self.first[counter])

    @property
    def seconds(self) -> float:
        return max(0.0, (self.last_at - self.first_at) / 1000)


class Measurement:
    """Every direction of a call, fed one round of snapshots (one per page) at a time."""

    def __init__(self, sampled: bool) -> None:
        self.sampled = sampled
        self.directions: dict[tuple[str, str], Direction] = {}
        self.first_publisher: dict[str, dict[str, int]] = {}
        self.last_publisher: dict[str, dict[str, int]] = {}
        self.first_at: dict[str, float] = {}
        self.last_at: dict[str, float] = {}

    def add(self, snapshots: Sequence[Snapshot | None]) -> None:
        for snap in snapshots:
            if snap is None:
                continue
            me = snap.self_name
            self.first_publisher.setdefault(me, dict(snap.publisher))
            self.first_at.setdefault(me, snap.at_ms)
            self.last_publisher[me] = dict(snap.publisher)
            self.last_at[me] = snap.at_ms
            for sender, got in snap.received.items():
                key = (sender, me)
                if key not in self.directions:
                    self.directions[key] = Direction(sender, me)
                self.directions[key].add(got, snap.at_ms, self.sampled)

    def sent(self) -> dict[str, dict[str, float]]:
        """What each page encoded per second over the window: video frames, audio frames (20 ms each: 50 keep up
        with the microphone)."""
        out = {}
        for me, first in self.first_publisher.items():
            seconds = (self.last_at[me] - self.first_at[me]) / 1000
            last = self.last_publisher[me]
            out[me] = {
                "video_fps": _rate(last["videoFramesEncoded"] - first["videoFramesEncoded"], seconds),
                "audio_frames_s": _rate(last["audioFramesEncoded"] - first["audioFramesEncoded"], seconds),
            }
        return out

    def publisher_deltas(self) -> dict[str, dict[str, int]]:
        return {
            me: {k: self.last_publisher[me][k] - first[k] for k in PUBLISHER_COUNTERS}
            for me, first in self.first_publisher.items()
        }


def median(values: list[float]) -> float | None:
    return round(percentile(sorted(values), 50), 1) if values else None


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def direction_result(d: Direction) -> Json:
    """One direction's figures: latency summaries, rates and drops over its window."""
    seconds = d.seconds
    return {
        "from": d.sender,
        "to": d.receiver,
        "seconds": round(seconds, 2),
        "video": latency_summary(d.video_ms),
        "audio": latency_summary(d.audio_ms),
        "playout_delay_ms": median(d.playout_ms),
        # Where it began and ended: a playout delay that keeps growing is a backlog somewhere on the way.
        "playout_delay_ms_first_last": [d.playout_ms[0], d.playout_ms[-1]] if d.playout_ms else None,
        "video_fps_decoded": _rate(d.delta("framesDecoded"), seconds),
        "video_fps_shown": _rate(d.delta("framesRendered"), seconds),
        "audio_frames_s_decoded": _rate(d.delta("audioFramesDecoded"), seconds),
        "audio_frames_s_played": _rate(d.delta("audioFramesPlayed"), seconds),
        "video_frames_skipped": d.delta("framesSkipped"),
        "video_groups_dropped": d.delta("videoGroupsDropped"),
        "audio_groups_dropped": d.delta("audioGroupsDropped"),
        "audio_frames_late": d.delta("audioFramesLate"),
        "audio_late_ms": median(d.audio_late_ms),
        "audio_frames_cut": d.delta("audioFramesCut"),
        "audio_frames_decoded": d.delta("audioFramesDecoded"),
        "skips": d.delta("skips"),
        "out_of_order": d.delta("outOfOrder"),
        "untraced_snapshots": d.untraced,
        "restarted": d.restarted,
    }


def pooled(directions: list[Direction]) -> Json:
    """Every direction together: latency over all their samples, mean rates per direction, summed drops."""
    results = [direction_result(d) for d in directions]
    n = len(results)

    def mean(key: str) -> float:
        return round(sum(r[key] for r in results) / n, 1) if n else 0.0

    def total(key: str) -> int:
        return sum(int(r[key]) for r in results)

    return {
        "directions": n,
        "video": latency_summary([v for d in directions for v in d.video_ms]),
        "audio": latency_summary([v for d in directions for v in d.audio_ms]),
        "playout_delay_ms": median([v for d in directions for v in d.playout_ms]),
        # The median direction's playout delay at the window's start and at its end.
        "playout_delay_ms_first_last": [
            median([d.playout_ms[0] for d in directions if d.playout_ms]),
            median([d.playout_ms[-1] for d in directions if d.playout_ms]),
        ],
        "video_fps_decoded": mean("video_fps_decoded"),
        "video_fps_shown": mean("video_fps_shown"),
        "audio_frames_s_decoded": mean("audio_frames_s_decoded"),
        "audio_frames_s_played": mean("audio_frames_s_played"),
        "video_frames_skipped": total("video_frames_skipped"),
        "video_groups_dropped": total("video_groups_dropped"),
        "audio_groups_dropped": total("audio_groups_dropped"),
        "audio_frames_late": total("audio_frames_late"),
        "audio_late_ms": median([v for d in directions for v in d.audio_late_ms]),
        "audio_frames_cut": total("audio_frames_cut"),
        "audio_frames_decoded": total("audio_frames_decoded"),
        "skips": total("skips"),
        "worst_direction_video_p99_ms": max((r["video"]["p99_ms"] or 0.0 for r in results), default=None),
        "worst_direction_audio_p99_ms": max((r["audio"]["p99_ms"] or 0.0 for r in results), default=None),
    }


def measurement_result(m: Measurement) -> Json:
    """The window's figures: pooled, per direction (sender, then receiver), and per sender page."""
    directions = [m.directions[k] for k in sorted(m.directions)]
    return {
        "latency_source": "samples every 100 ms" if m.sampled else "per-frame trace",
        **pooled(directions),
        "per_direction": [direction_result(d) for d in directions],
        "sent": m.sent(),
        "publishers": m.publisher_deltas(),
    }


def _three(summary: Json) -> str:
    values = [summary.get("p50_ms"), summary.get("p99_ms"), summary.get("max_ms")]
    return " / ".join("-" if v is None else f"{v:.1f}" for v in values)


def _pair(a: Any, b: Any) -> str:
    return f"{a} / {b}"


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def _playout(first_last: list[float | None] | None) -> str:
    if not first_last or first_last[0] is None or first_last[1] is None:
        return "-"
    return f"{first_last[0]:.0f} -> {first_last[1]:.0f}"


def _late(r: Json) -> str:
    """Audio frames too late to play, with their share of those decoded and how late they were (median ms past
    their due time), and audio groups dropped."""
    late, decoded = r["audio_frames_late"], r["audio_frames_decoded"]
    share = f" ({late / decoded:.0%})" if decoded else ""
    by = f" by {r['audio_late_ms']:.0f} ms" if r.get("audio_late_ms") is not None else ""
    return f"{late}{share}{by} / {r['audio_groups_dropped']}"


def audio_output_note(contexts: list[Json]) -> str:
    """What Chromium says of Web Audio's output path (from `AUDIO_CONTEXT_JS`), for the table's notes."""
    if not contexts:
        return "Chromium did not say how long it is here"
    c = contexts[0]
    return (
        f"the context's clock runs {c['clockLeadMs']:.0f} ms ahead of what is heard (baseLatency "
        f"{c['baseLatencyMs']:.1f} ms, outputLatency {c['outputLatencyMs']:.1f} ms as Chromium reports them here); "
        "the figure maps the start time through the context's output timestamp, so it includes that"
    )


def call_tables(runs: list[Json]) -> list[Table]:
    """The pooled table (a row per K) and the per-direction one, from `run_call`'s results."""
    sampled = any(r["latency_source"] != "per-frame trace" for r in runs)
    how = (
        "latencyMs / audioLatencyMs sampled every 100 ms"
        if sampled
        else "per-frame latencies (every frame shown, every audio frame played)"
    )
    seconds = ", ".join(sorted({f"{r['seconds']:g}" for r in runs}))
    summary = Table(
        f"Call: K headless Chromium pages in one room through moq relay (fake camera {WIDTH}x{HEIGHT} at {FPS} fps, "
        f"H.264; fake microphone, Opus); every direction pooled; {how}, over {seconds} s",
        [
            "pages",
            "directions",
            "video p50 / p99 / max ms",
            "mouth-to-ear p50 / p99 / max ms",
            "playout ms start -> end",
            "video fps decoded / shown",
            "audio frames/s decoded / played",
            "video skipped / groups dropped",
            "audio late / groups dropped",
            "sent video fps / audio frames/s",
            "relay CPU",
            "browsers CPU",
            "other CPU",
        ],
    )
    detail = Table(
        "Call, per direction (sender -> receiver)",
        [
            "pages",
            "direction",
            "video p50 / p99 / max ms",
            "mouth-to-ear p50 / p99 / max ms",
            "playout ms start -> end",
            "video fps decoded / shown",
            "audio frames/s decoded / played",
            "video skipped / groups dropped",
            "audio late / groups dropped",
        ],
    )
    for r in runs:
        sent = list(r["sent"].values())
        summary.rows.append(
            [
                r["pages"],
                r["directions"],
                _three(r["video"]),
                _three(r["audio"]),
                _playout(r["playout_delay_ms_first_last"]),
                _pair(r["video_fps_decoded"], r["video_fps_shown"]),
                _pair(r["audio_frames_s_decoded"], r["audio_frames_s_played"]),
                _pair(r["video_frames_skipped"], r["video_groups_dropped"]),
                _late(r),
                _pair(_mean([x["video_fps"] for x in sent]), _mean([x["audio_frames_s"] for x in sent])),
                f"{r['relay_cpu'] * 100:.0f}%",
                f"{r['browsers_cpu'] * 100:.0f}%",
                f"{r['other_cpu'] * 100:.0f}%",
            ]
        )
        for d in r["per_direction"]:
            detail.rows.append(
                [
                    r["pages"],
                    f"{d['from']} -> {d['to']}",
                    _three(d["video"]),
                    _three(d["audio"]),
                    _playout(d["playout_delay_ms_first_last"]),
                    _pair(d["video_fps_decoded"], d["video_fps_shown"]),
                    _pair(d["audio_frames_s_decoded"], d["audio_frames_s_played"]),
                    _pair(d["video_frames_skipped"], d["video_groups_dropped"]),
                    _late(d),
                ]
            )
    contexts = [r["audio_context"] for r in runs if r.get("audio_context")]
    summary.notes += [
        "video = LOC capture timestamp (the sending page's wall clock when it read the frame from the camera) to the "
        "receiving page drawing it on its canvas (requestAnimationFrame); it includes encoding, the relay, decoding "
        "and the player's playout delay",
        "mouth-to-ear = the capture timestamp to the moment the decoded audio buffer is heard (the page's "
        "audioLatencyMs: its start time on the Web Audio clock, mapped to wall time through the context's output "
        "timestamp); frames too late to play (audio late) have no figure, so with many late the percentiles are "
        "those of the frames that made it",
        "playout = the player's playout delay (capture to due: the best transit of the last 5-10 s + the jitter "
        "buffer, which on call pages starts at 100 ms and adapts after 3 s to how late frames become playable, 20-400 "
        "ms; the median direction) when the window starts and when it ends: when it grows by more than the jitter "
        "can, something on the way falls behind real time, and audio past the jitter buffer comes too late to play",
        "sent = what each page encoded per second (mean over pages): the camera gives 20 fps; 50 audio frames/s (20 ms "
        "each) keep up with the microphone, fewer means the sending page's audio falls behind",
        "neither includes the devices (the camera's and microphone's own capture latency, the compositor and display, "
        "the speaker; the fake devices have none); Web Audio's output path: " + audio_output_note(contexts),
        "rates are per direction (mean over directions); dropped and skipped are summed over directions; video "
        "skipped = decoded frames never shown (catching up) or not decodable (waiting for a keyframe)",
        "CPU is a share of one core over the window: the relay process; every process of the K browsers (browser, "
        "renderers, GPU, audio and network services); other CPU = what the rest of the machine used meanwhile (not "
        "ours: the benchmark's own process is left out too)",
    ]
    if sampled:
        summary.notes.append(
            "the pages' player keeps no per-frame latency trace: each figure is the latest frame's latency, sampled "
            "every 100 ms when a frame was shown / played since the last sample"
        )
    return [summary, detail]


# -- running a call ------------------------------------------------------------------------------------------------


async def snapshots(browsers: list[Chromium]) -> list[Snapshot | None]:
    """Every page's snapshot, asked at once (each drains its traces)."""
    values = await asyncio.gather(*(b.evaluate(SNAPSHOT_JS) for b in browsers), return_exceptions=True)
    return [None if isinstance(v, BaseException) else parse_snapshot(v) for v in values]


async def wait_joined(browsers: list[Chromium], names: list[str], timeout: float) -> float:
    """Poll the pages until each decodes every other participant's video and audio; the seconds it took."""
    began = time.monotonic()
    missing: list[str] = []
    for _ in range(1_000_000):
        missing = not_joined(await snapshots(browsers), names)
        if not missing:
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            break
        await asyncio.sleep(JOIN_POLL)  # the polling interval
    consoles = "\n".join(f"{n}'s page console:\n{b.console_text(15)}" for n, b in zip(names, browsers, strict=True))
    raise TimeoutError(
        f"{len(names)} pages not all in the call within {timeout:.0f} s: {'; '.join(missing)}\n{consoles}"
    )


async def run_call(env: RunEnv, pages: int, seconds: float, warmup: float) -> Json:
    """One call of `pages` participants: join, warm up, measure for `seconds`; the figures."""
    load_before = load_average()
    relay = await RelayProcess.start("moq", env.workdir, None, None, env.settings, tag=f"-call-{pages}")
    assert relay.web_port is not None
    web_port = relay.web_port
    names = [f"p{i + 1}" for i in range(pages)]
    browsers: list[Chromium] = []
    try:
        before = children_of(os.getpid())
        browsers = [Chromium(FAKE_MEDIA_FLAGS) for _ in names]
        await asyncio.gather(*(b.start() for b in browsers))
        roots = sorted(children_of(os.getpid()) - before - {relay.pid})
        version = (await browsers[0].send("Browser.getVersion")).get("product")
        opened = time.monotonic()
        await asyncio.gather(
            *(
                b.open(f"http://{HOST}:{web_port}/call/{ROOM}?name={name}&{MEDIA}")
                for b, name in zip(browsers, names, strict=True)
            )
        )
        joined = await wait_joined(browsers, names, JOIN_TIMEOUT)
        # The warm-up is part of the measurement's design (the first frames after joining come in a burst), not a
        # wait for an event. Its snapshots also tell whether the pages' player keeps the per-frame trace.
        warm = Measurement(sampled=False)
        warm.add(await snapshots(browsers))
        await asyncio.sleep(warmup)
        warm.add(await snapshots(browsers))
        sampled = not any(d.video_ms or d.audio_ms for d in warm.directions.values())

        measurement = Measurement(sampled=sampled)
        relay_cpu, own_cpu, browsers_cpu = CpuWindow([relay.pid]), CpuWindow([os.getpid()]), TreeCpuWindow(roots)
        busy0 = system_busy_seconds()
        for window in (relay_cpu, own_cpu, browsers_cpu):
            window.start()
        measurement.add(await snapshots(browsers))
        interval = SAMPLE_POLL if sampled else TRACE_DRAIN
        end = time.monotonic() + seconds
        for _ in range(1_000_000):
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.sleep(min(interval, remaining))  # the sampling / drain interval
            measurement.add(await snapshots(browsers))
        for window in (relay_cpu, own_cpu, browsers_cpu):
            window.stop()
        busy = system_busy_seconds() - busy0
        measured = time.monotonic() - opened
        load_after = load_average()
        processes = sum(len(process_tree(root)) for root in roots)
        relay.check_alive()
        audio_context = None
        with contextlib.suppress(Exception):  # a figure for the notes only
            audio_context = await asyncio.wait_for(browsers[0].evaluate(AUDIO_CONTEXT_JS), 10.0)
    finally:
        await asyncio.gather(*(b.close() for b in browsers), return_exceptions=True)
        await relay.stop()
    ours = relay_cpu.share + browsers_cpu.share + own_cpu.share
    return {
        "pages": pages,
        "seconds": seconds,
        "warmup_seconds": warmup,
        "media": {"width": WIDTH, "height": HEIGHT, "fps": FPS},
        "browser": version,
        "load_average_before_after": [load_before, load_after],
        "join_seconds": round(joined, 1),
        "opened_to_measured_seconds": round(measured, 1),
        **measurement_result(measurement),
        "relay_cpu": round(relay_cpu.share, 3),
        "browsers_cpu": round(browsers_cpu.share, 3),
        "bench_cpu": round(own_cpu.share, 3),
        "other_cpu": round(max(0.0, busy / max(relay_cpu.seconds, 1e-9) - ours), 3),
        "browser_processes": processes,
        "audio_context": audio_context,
    }


async def run(env: RunEnv) -> tuple[Json, list[Table]]:
    """The part: a call of each size in `call_pages`; skipped (with the reason) where there is no Chromium."""
    reason = skip_reason()
    if reason is not None:
        return {"skipped": reason}, [Table("Call: skipped", ["reason"], [[reason]])]
    s = env.settings
    runs = [await run_call(env, pages, s.call_seconds, s.call_warmup) for pages in s.call_pages]
    return {"runs": runs}, call_tables(runs)
