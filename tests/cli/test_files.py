"""A real file through publish -> relay -> subscribe --output: the recording has the source's video frames and
duration (within one frame), passed through with --copy and re-encoded."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest

from tests.cli.helpers import load_json, moq, relay_args, relay_running, run
from tests.media.mediafiles import FPS, VIDEO_FRAMES, count_frames, duration_of


@pytest.mark.parametrize(
    ("source", "copy", "suffix"),
    [("mp4_file", True, ".mp4"), ("mkv_file", True, ".mkv"), ("mp4_file", False, ".mp4")],
    ids=["copy-mp4-bframes-aac", "copy-mkv-opus", "reencode-mp4"],
)
def test_file_recorded_whole(
    tmp_path: Path, request: pytest.FixtureRequest, source: str, copy: bool, suffix: str
) -> None:
    media: Path = request.getfixturevalue(source)
    out, sub_json = tmp_path / f"out{suffix}", tmp_path / "sub.json"

    async def scenario() -> None:
        async with relay_running(tmp_path) as relay:
            url = relay_args(relay)
            publish = ["publish", *url, "--name", "vod/clip", "--input", str(media), "--wait-subscriber", "-q"]
            async with moq(*publish, *(["--copy"] if copy else [])) as pub:
                await pub.line("waiting for a subscriber")
                subscribe = ["subscribe", *url, "--name", "vod/clip", "--output", str(out), "--decode", "-q"]
                async with moq(*subscribe, "--stats-json", str(sub_json)) as sub:
                    await sub.succeeds()
                await pub.succeeds()

    run(scenario())
    assert count_frames(media, "video") == VIDEO_FRAMES
    assert count_frames(out, "video") == VIDEO_FRAMES
    assert abs(duration_of(out, "video") - duration_of(media, "video")) <= Fraction(1, FPS)
    with av.open(str(out)) as container:
        assert container.streams.audio, "the recording has the audio track too"
        assert container.streams.video[0].codec_context.name == "h264"
    received = load_json(sub_json)
    video = received["tracks"]["video"]
    assert video["frames_recorded"] == video["frames_decoded"] == VIDEO_FRAMES  # B-frames too: the decoder reorders
