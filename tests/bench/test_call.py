"""The call part's pure pieces: reading the pages' stats, joining, per-direction and pooled figures, the tables; and
the page-side snapshot expression itself, run in node against a fake `window.moqStats`."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import call
from bench.call import (
    COUNTERS,
    JOIN_AUDIO_FRAMES,
    JOIN_VIDEO_FRAMES,
    SNAPSHOT_JS,
    Direction,
    Measurement,
    Received,
    Snapshot,
    audio_output_note,
    call_tables,
    direction_result,
    measurement_result,
    not_joined,
    parse_snapshot,
    pooled,
)
from bench.common import TreeCpuWindow, children_of, process_tree
from bench.fanout import RunEnv
from bench.settings import TINY

NODE = shutil.which("node")


def counters(**values: int) -> dict[str, int]:
    return {k: values.get(k, 0) for k in COUNTERS}


def page(
    me: str,
    at: float,
    others: dict[str, dict[str, Any]],
    publisher: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A `SNAPSHOT_JS` value as the page returns it."""
    return {
        "at": at,
        "self": me,
        "state": "in the call",
        "lastError": None,
        "publisher": publisher or {"videoFramesEncoded": int(at / 50)},
        "participants": others,
    }


def seen(
    video: list[float] | None = None,
    audio: list[float] | None = None,
    *,
    traced: bool = True,
    latency: float | None = None,
    audio_latency: float | None = None,
    playout: float | None = 110,
    late: float | None = None,
    **values: int,
) -> dict[str, Any]:
    return {
        "audioLateMs": late,
        "traced": traced,
        "videoTrace": video or [],
        "audioTrace": audio or [],
        "latencyMs": latency,
        "audioLatencyMs": audio_latency,
        "playoutDelayMs": playout,
        "videoTrack": "video",
        "audioTrack": "audio",
        "lastError": None,
        **counters(**values),
    }


def received(**kw: Any) -> Received:
    snap = parse_snapshot(page("me", 0.0, {"x": seen(**kw)}))
    assert snap is not None
    return snap.received["x"]


# -- reading a page's snapshot -------------------------------------------------------------------------------------


def test_a_snapshot_is_read_with_its_traces_counters_and_publisher() -> None:
    raw = page(
        "p1",
        1234.5,
        {"p2": seen([120.5, 130], [80, 81.5], latency=125, audio_latency=80, framesDecoded=40, audioFramesPlayed=90)},
        {"videoFramesEncoded": 100, "groupsDropped": 2},
    )
    snap = parse_snapshot(raw)
    assert snap is not None
    assert (snap.self_name, snap.at_ms, snap.state, snap.error) == ("p1", 1234.5, "in the call", None)
    assert snap.publisher["videoFramesEncoded"] == 100 and snap.publisher["groupsDropped"] == 2
    assert snap.publisher["audioFramesEncoded"] == 0  # missing counters read as 0
    got = snap.received["p2"]
    assert got.traced and got.video_ms == [120.5, 130.0] and got.audio_ms == [80.0, 81.5]
    assert (got.latency_ms, got.audio_latency_ms, got.playout_delay_ms) == (125.0, 80.0, 110.0)
    assert got.counters["framesDecoded"] == 40 and got.counters["audioFramesPlayed"] == 90
    assert set(got.counters) == set(COUNTERS)


def test_a_loading_page_and_odd_values_are_tolerated() -> None:
    assert parse_snapshot(None) is None
    assert parse_snapshot({"self": "p1"}) is None  # no participants yet: the page is loading
    odd = page("p1", 0, {"p2": {"videoTrace": [1, "x", None, True], "audioTrace": 5, "framesDecoded": "7"}})
    odd["publisher"] = None
    snap = parse_snapshot(odd)
    assert snap is not None
    got = snap.received["p2"]
    assert got.video_ms == [1.0] and got.audio_ms == [] and not got.traced
    assert got.latency_ms is None and got.counters["framesDecoded"] == 0
    assert snap.publisher["videoFramesEncoded"] == 0


def test_joined_once_every_page_decodes_every_other_participant() -> None:
    names = ["p1", "p2", "p3"]
    enough = {"framesDecoded": JOIN_VIDEO_FRAMES, "audioFramesDecoded": JOIN_AUDIO_FRAMES}

    def snap(me: str, others: dict[str, dict[str, Any]]) -> Snapshot:
        s = parse_snapshot(page(me, 0, others))
        assert s is not None
        return s

    full = [snap(n, {o: {**seen(), **enough} for o in names if o != n}) for n in names]
    assert not_joined(full, names) == []  # a page never waits for itself

    partial = [
        snap("p1", {"p2": {**seen(), **enough}}),  # p3 not there yet
        snap("p2", {"p1": {**seen(), **enough}, "p3": {**seen(), **enough, "audioFramesDecoded": 3}}),  # little audio
        None,  # p3's page still loading
    ]
    missing = not_joined(partial, names)
    assert len(missing) == 3
    assert "p1's page: no p3 yet" in missing and "p3's page: no stats yet" in missing
    assert any(m.startswith("p2's page: p3") and "3 audio" in m for m in missing)


# -- directions and pooling ----------------------------------------------------------------------------------------


def test_the_first_snapshot_only_opens_the_window() -> None:
    d = Direction("p2", "p1")
    d.add(received(video=[500.0], audio=[400.0], framesDecoded=10, framesRendered=10), 1000.0, sampled=False)
    assert d.video_ms == [] and d.audio_ms == [] and d.playout_ms == []  # drained before the window
    d.add(
        received(video=[120.0, 121.0], audio=[80.0], framesDecoded=30, framesRendered=29, framesSkipped=1),
        2000.0,
        sampled=False,
    )
    d.add(
        received(video=[122.0], audio=[79.0, 81.0], framesDecoded=50, framesRendered=49, framesSkipped=1),
        3000.0,
        sampled=False,
    )
    assert d.video_ms == [120.0, 121.0, 122.0] and d.audio_ms == [80.0, 79.0, 81.0]
    r = direction_result(d)
    assert r["seconds"] == 2.0 and r["video_fps_decoded"] == 20.0 and r["video_fps_shown"] == 19.5
    assert r["video"]["samples"] == 3 and r["video"]["p50_ms"] == 121.0 and r["video"]["max_ms"] == 122.0
    assert r["audio"]["p50_ms"] == 80.0 and r["playout_delay_ms"] == 110.0
    assert r["video_frames_skipped"] == 1
    assert not r["restarted"] and r["untraced_snapshots"] == 0


def test_counters_are_deltas_over_the_window_and_a_restart_is_flagged() -> None:
    d = Direction("p2", "p1")
    d.add(received(framesSkipped=3, videoGroupsDropped=1, audioFramesLate=5), 0.0, sampled=False)
    d.add(received(framesSkipped=4, videoGroupsDropped=3, audioFramesLate=9, audioGroupsDropped=2), 1000.0, False)
    r = direction_result(d)
    assert (r["video_frames_skipped"], r["video_groups_dropped"]) == (1, 2)
    assert (r["audio_frames_late"], r["audio_groups_dropped"]) == (4, 2)
    d.add(received(traced=False), 2000.0, sampled=False)  # the participant's player was made anew
    r = direction_result(d)
    assert r["restarted"] and r["untraced_snapshots"] == 1
    assert r["video_frames_skipped"] == 0  # never negative


def test_a_growing_playout_delay_and_late_audio_show_in_the_figures() -> None:
    d = Direction("p3", "p1")
    d.add(received(playout=105), 0.0, sampled=False)
    d.add(received(playout=111, audioFramesDecoded=50, audioFramesLate=10, late=300), 1000.0, sampled=False)
    d.add(
        received(playout=960, audioFramesDecoded=100, audioFramesLate=50, audioGroupsDropped=1, late=20), 2000.0, False
    )
    # No more late frames: the page's last audioLateMs is old news, not a sample.
    d.add(
        received(playout=960, audioFramesDecoded=150, audioFramesLate=50, audioGroupsDropped=1, late=20), 3000.0, False
    )
    r = direction_result(d)
    assert r["playout_delay_ms_first_last"] == [111.0, 960.0]  # the window's first snapshot only opens it
    assert (r["audio_frames_late"], r["audio_frames_decoded"]) == (50, 150)
    assert d.audio_late_ms == [300.0, 20.0]  # sampled when the count grew, not in the last snapshot
    _, detail = call_tables([{**run_result(2), "per_direction": [r]}])
    assert detail.rows[0][4] == "111 -> 960" and detail.rows[0][8] == f"50 (33%) by {r['audio_late_ms']:.0f} ms / 1"


def test_sampling_takes_the_latest_latency_only_when_a_frame_was_shown_or_played() -> None:
    d = Direction("p2", "p1")
    d.add(received(latency=999, audio_latency=999, framesRendered=1, audioFramesPlayed=1), 0.0, sampled=True)
    d.add(received(latency=120, audio_latency=80, framesRendered=3, audioFramesPlayed=1), 100.0, sampled=True)
    d.add(received(latency=121, audio_latency=81, framesRendered=3, audioFramesPlayed=6), 200.0, sampled=True)
    d.add(received(video=[1.0], latency=None, framesRendered=4, audioFramesPlayed=7), 300.0, sampled=True)
    assert d.video_ms == [120.0]  # the trace is ignored when sampling; no value, no sample
    assert d.audio_ms == [81.0]


def test_a_measurement_pools_every_direction() -> None:
    m = Measurement(sampled=False)
    for at, frames in ((0.0, 0), (1000.0, 20), (2000.0, 40)):
        m.add(
            [
                parse_snapshot(
                    page(
                        "p1",
                        at,
                        {"p2": seen([100.0 + frames], [70.0], framesDecoded=frames, audioFramesDecoded=frames * 2)},
                        {"videoFramesEncoded": frames},
                    )
                ),
                parse_snapshot(
                    page(
                        "p2",
                        at + 5,
                        {"p1": seen([200.0], [90.0, 91.0], framesDecoded=frames // 2, videoGroupsDropped=frames // 20)},
                        {"videoFramesEncoded": frames // 2},
                    )
                ),
                None,  # a page that did not answer this time
            ]
        )
    assert sorted(m.directions) == [("p1", "p2"), ("p2", "p1")]
    r = measurement_result(m)
    assert r["latency_source"] == "per-frame trace" and r["directions"] == 2
    assert r["video"]["samples"] == 4 and r["video"]["max_ms"] == 200.0
    assert r["audio"]["samples"] == 6
    assert r["video_fps_decoded"] == 15.0  # mean of 20 and 10 per direction
    assert r["video_groups_dropped"] == 2  # summed
    assert [d["from"] + d["to"] for d in r["per_direction"]] == ["p1p2", "p2p1"]
    assert r["sent"]["p1"] == {"video_fps": 20.0, "audio_frames_s": 0.0} and r["sent"]["p2"]["video_fps"] == 10.0
    assert r["publishers"]["p1"]["videoFramesEncoded"] == 40
    assert r["worst_direction_video_p99_ms"] == 200.0


def test_pooling_nothing_gives_empty_figures() -> None:
    r = pooled([])
    assert r["directions"] == 0 and r["video"]["p50_ms"] is None and r["video_fps_decoded"] == 0.0
    assert r["playout_delay_ms"] is None and r["worst_direction_video_p99_ms"] is None


# -- tables --------------------------------------------------------------------------------------------------------


def run_result(pages: int, source: str = "per-frame trace") -> dict[str, Any]:
    m = Measurement(sampled=source != "per-frame trace")
    names = [f"p{i + 1}" for i in range(pages)]
    for at in (0.0, 1000.0):
        m.add(
            [
                parse_snapshot(
                    page(
                        me,
                        at,
                        {o: seen([120.0], [80.0], framesDecoded=int(at / 50)) for o in names if o != me},
                    )
                )
                for me in names
            ]
        )
    return {
        "pages": pages,
        "seconds": 1.0,
        **measurement_result(m),
        "relay_cpu": 0.1,
        "browsers_cpu": 0.7,
        "other_cpu": 0.05,
        "audio_context": {"baseLatencyMs": 10.0, "outputLatencyMs": 30.0, "clockLeadMs": 40.2},
    }


def test_the_tables_have_a_row_per_call_and_per_direction() -> None:
    summary, detail = call_tables([run_result(2), run_result(3)])
    assert [row[0] for row in summary.rows] == [2, 3]
    assert [row[1] for row in summary.rows] == [2, 6]
    assert all(len(row) == len(summary.columns) for row in summary.rows)
    assert summary.rows[0][2] == "120.0 / 120.0 / 120.0" and summary.rows[0][3] == "80.0 / 80.0 / 80.0"
    assert summary.rows[0][4] == "110 -> 110" and summary.rows[0][8] == "0 / 0"
    assert summary.rows[0][-3:] == ["10%", "70%", "5%"]
    assert len(detail.rows) == 2 + 6 and detail.rows[0][1] == "p1 -> p2"
    assert all(len(row) == len(detail.columns) for row in detail.rows)
    assert "per-frame" in summary.title and "over 1 s" in summary.title
    text = summary.render()
    assert "mouth-to-ear" in text and "40 ms ahead" in text and "outputLatency 30.0 ms" in text
    assert "fake devices have none" in text


def test_sampled_figures_say_so_in_the_title() -> None:
    summary, _ = call_tables([run_result(2, "samples every 100 ms")])
    assert "sampled every 100 ms" in summary.title
    assert any("no per-frame latency trace" in note for note in summary.notes)


def test_without_the_audio_context_figures_the_note_says_so() -> None:
    assert "did not say" in audio_output_note([])


def test_without_chromium_the_part_is_skipped_with_the_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(call, "available", lambda: False)
    env = RunEnv(TINY, tmp_path, tmp_path / "cert.pem", tmp_path / "key.pem")
    result, tables = asyncio.run(call.run(env))
    assert "not found" in result["skipped"]
    assert len(tables) == 1 and tables[0].title == "Call: skipped" and "not found" in tables[0].rows[0][0]


# -- process trees -------------------------------------------------------------------------------------------------


def test_a_process_tree_holds_children_and_their_children() -> None:
    before = children_of(os.getpid())
    script = (
        "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'input()'], stdin=sys.stdin); "
        "print(p.pid, flush=True); p.wait()"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        grandchild = int(child.stdout.readline())  # the grandchild exists once the child says its pid
        assert process_tree(child.pid) == [child.pid, grandchild]
        assert children_of(os.getpid()) - before == {child.pid}
        window = TreeCpuWindow([child.pid])
        window.start()
        assert window.stop() >= 0.0 and window.seconds > 0
    finally:
        assert child.stdin is not None
        child.stdin.write(b"\n")
        child.stdin.close()
        child.wait(10)
    assert process_tree(child.pid) == []


# -- the page side -------------------------------------------------------------------------------------------------


@pytest.mark.skipif(NODE is None, reason="node (Node.js 20+) is not installed")
def test_the_snapshot_expression_installs_and_drains_the_players_traces() -> None:
    """SNAPSHOT_JS against a fake page: a participant without a trace gets one (traced false), one with a trace
    has it drained (and the capture-time list emptied), counters and the publisher come along."""
    script = f"""
globalThis.window = {{ moqStats: {{
  self: 'p1', state: 'in the call', lastError: null,
  publisher: {{ videoFramesEncoded: 7, bytesSent: 9 }},
  participants: {{
    p2: {{ framesDecoded: 3, latencyMs: 120, audioLatencyMs: 80, playoutDelayMs: 111, trace: null }},
    p3: {{
      framesDecoded: 4,
      trace: {{ video: [1, 2], skips: [], videoLatencyMs: [120.5], audioLatencyMs: [80, 81] }},
    }},
  }},
}} }};
const snap = (s) => eval(s);
const first = snap({json.dumps(SNAPSHOT_JS)});
window.moqStats.participants.p2.trace.videoLatencyMs.push(130);
const second = snap({json.dumps(SNAPSHOT_JS)});
console.log(JSON.stringify({{ first, second, p3: window.moqStats.participants.p3.trace }}));
"""
    assert NODE is not None
    out = subprocess.run([NODE, "-e", script], capture_output=True, text=True, timeout=30, check=True).stdout
    value = json.loads(out)
    first, second = value["first"], value["second"]
    assert first["self"] == "p1" and first["publisher"]["videoFramesEncoded"] == 7
    p2, p3 = first["participants"]["p2"], first["participants"]["p3"]
    assert p2["traced"] is False and p2["videoTrace"] == []
    assert p2["latencyMs"] == 120 and p2["playoutDelayMs"] == 111
    assert p3["traced"] is True and p3["videoTrace"] == [120.5] and p3["audioTrace"] == [80, 81]
    assert p3["framesDecoded"] == 4
    assert second["participants"]["p2"]["traced"] is True and second["participants"]["p2"]["videoTrace"] == [130]
    assert second["participants"]["p3"]["videoTrace"] == []
    assert value["p3"]["video"] == [] and value["p3"]["videoLatencyMs"] == []
    snap = parse_snapshot(first)
    assert snap is not None and snap.received["p3"].audio_ms == [80.0, 81.0]
