"""Smoke test of `python -m bench`: the quick mode at its tiny size runs every part that needs no foreign peer and
writes the JSON the README's table comes from. Numbers are not checked: benchmarks never pass or fail on time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.network

ROOT = Path(__file__).resolve().parent.parent.parent
#: A generous bound on the tiny run (it takes seconds): only there so that a hang fails instead of blocking CI.
TIMEOUT = 240


def test_tiny_run_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--json", str(out), "--workdir", str(tmp_path / "work")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())

    assert {"settings", "machine", "parts", "targets", "seconds_taken"} <= data.keys()
    assert {"nproc", "cpu_model", "date"} <= data["machine"].keys()
    parts = data["parts"]
    assert {"ceiling", "fanout", "slow", "media", "cache"} <= parts.keys()
    for name, part in parts.items():
        assert "error" not in part, f"{name}: {part['error']}"

    assert parts["ceiling"]["ceiling_mbit_s"] > 0
    assert {"mbit_s", "sender_cpu", "receivers_cpu"} <= parts["ceiling"]["runs"][0].keys()

    runs = parts["fanout"]["runs"]
    assert [r["subscribers"] for r in runs] == list(data["settings"]["subscriber_counts"])
    for run in runs:
        assert {"delivered_mbit_s", "delivered_objects_s", "latency", "relay_cpu", "relay_rss_mb"} <= run.keys()
        assert {"p50_ms", "p99_ms", "max_ms"} <= run["latency"].keys()
        assert {"relay_kb_per_idle_subscriber", "subscriber_process_kb_per_subscriber"} <= run.keys()
        assert run["latency"]["samples"] > 0

    slow = parts["slow"]["with_slow"]["slow"]
    assert {"lag_groups_p50", "lag_groups_max", "groups_received", "groups_in_window", "latency"} <= slow.keys()
    assert {"latency", "objects_missing"} <= parts["slow"]["baseline"].keys()

    media = parts["media"]["runs"][0]
    assert {"publisher_cpu_per_stream", "frames_per_s_per_stream", "latency"} <= media.keys()

    assert {"peak_cached_bytes", "limit_bytes", "within_limit"} <= parts["cache"].keys()
    assert {"egress_share_of_ceiling", "relay_kb_per_idle_subscriber"} <= data["targets"].keys()
