"""Encoder throughput at 720p30: printed, never asserted (DESIGN.md: benchmarks print numbers).

Run with `pytest tests/media/test_throughput.py -s` to see the figures.
"""

from __future__ import annotations

import resource
import time

import pytest

from moq.media.encode import InputSpec, MediaPipeline, VideoSettings

SECONDS = 10


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.slow
@pytest.mark.parametrize("stamp", [False, True], ids=["plain", "stamped"])
def test_h264_720p30_throughput(stamp: bool, capsys: pytest.CaptureFixture[str]) -> None:
    settings = VideoSettings(width=1280, height=720, fps=30, bitrate=2_000_000, stamp=stamp)
    pipeline = MediaPipeline(InputSpec(kind="pattern", realtime=False), video=settings, audio=None, duration=SECONDS)
    with pipeline:
        pipeline.open()
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        frames = sum(1 for _ in pipeline)
        wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
    with capsys.disabled():
        print(
            f"\nlibx264 ultrafast/zerolatency 1280x720@30 ({'with' if stamp else 'no'} stamp), testsrc2 included: "
            f"{frames} frames in {wall:.2f} s = {frames / wall:.0f} frames/s ({frames / wall / 30:.1f}x real time), "
            f"CPU {cpu:.2f} s = {100 * cpu / wall:.0f}% of one core, {1000 * cpu / frames:.2f} ms CPU per frame"
        )
    assert frames == 30 * SECONDS
