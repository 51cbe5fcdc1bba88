"""Media files for the command tests, made once per session with PyAV (known frame counts and durations)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.media.mediafiles import make_media_file


@pytest.fixture(scope="session")
def cli_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-media")


@pytest.fixture(scope="session")
def ts_file(cli_media: Path) -> Path:
    """MPEG-TS, 320x180 at 30 fps, 2 s (60 frames): H.264 with in-band parameter sets, AAC."""
    path = cli_media / "input.ts"
    make_media_file(path, "mpegts", audio_codec="aac")
    return path


@pytest.fixture(scope="session")
def mp4_file(cli_media: Path) -> Path:
    """MP4, 320x180 at 30 fps, 2 s (60 frames): H.264 High with B-frames (reordered), AAC."""
    path = cli_media / "input.mp4"
    make_media_file(path, "mp4", audio_codec="aac", bframes=2)
    return path


@pytest.fixture(scope="session")
def mkv_file(cli_media: Path) -> Path:
    """Matroska, 320x180 at 30 fps, 2 s (60 frames): H.264 Constrained Baseline, Opus."""
    path = cli_media / "input.mkv"
    make_media_file(path, "matroska", audio_codec="libopus")
    return path


@pytest.fixture(scope="session")
def mpeg4_file(cli_media: Path) -> Path:
    """MP4 with MPEG-4 Part 2 video: a codec --copy cannot pass through."""
    path = cli_media / "mpeg4.mp4"
    make_media_file(path, "mp4", audio_codec="aac", video_codec="mpeg4")
    return path
