"""Smoke test of the call part: `python -m bench --tiny --only call` runs two headless Chromium call pages through a
relay process and writes every figure. Numbers are not checked beyond being there: benchmarks never pass or fail
on time. (The tiny run of every part, tests/bench/test_smoke.py, leaves this part out: browsers take seconds.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.web.chromium import CHROMIUM, available

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(
        not available() and not os.environ.get("MOQ_REQUIRE_BROWSER"),
        reason=f"{CHROMIUM} not found: apt-get install -y chromium (or set MOQ_CHROMIUM)",
    ),
]

ROOT = Path(__file__).resolve().parent.parent.parent
#: A generous bound (the run takes about 10 s): only there so that a hang fails instead of blocking CI.
TIMEOUT = 120


def test_tiny_call_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--tiny",
            "--only",
            "call",
            "--json",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    part = json.loads(out.read_text())["parts"]["call"]
    assert "error" not in part and "skipped" not in part, part
    [run] = part["runs"]
    assert run["pages"] == 2 and run["directions"] == 2
    assert run["latency_source"] == "per-frame trace"  # web/js/player.js keeps the per-frame latencies
    assert run["video"]["samples"] > 0
    for figure in (run, *run["per_direction"]):
        # Audio frames decoded too late are not played and have no latency: on a busy machine that may be all of
        # them, so only their being counted one way or the other is checked.
        assert figure["audio"]["samples"] + figure["audio_frames_late"] > 0
        assert {"p50_ms", "p99_ms", "max_ms"} <= figure["video"].keys() <= figure["audio"].keys() | {"samples"}
        assert figure["video_fps_decoded"] > 0 and figure["audio_frames_s_decoded"] > 0
        assert {"video_groups_dropped", "audio_groups_dropped", "video_frames_skipped", "audio_frames_late"} <= (
            figure.keys()
        )
    assert {"relay_cpu", "browsers_cpu", "other_cpu", "sent", "audio_context"} <= run.keys()
    assert run["browsers_cpu"] > 0 and run["browser_processes"] > 2  # every process of both browsers counted
    assert "mouth-to-ear" in proc.stdout and "p1 -> p2" in proc.stdout
