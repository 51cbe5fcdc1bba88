"""Fixtures for the media tests: the `slow` marker and session-wide media files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.media.mediafiles import VIDEO_FRAMES, MediaFile, make_media_file


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than about 5 s, or prints a benchmark")


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def mp4_file(media_dir: Path) -> MediaFile:
    """MP4: H.264 High profile with B-frames (decode order differs from presentation order), AAC."""
    path = media_dir / "bframes.mp4"
    make_media_file(path, "mp4", audio_codec="aac", bframes=2)
    return MediaFile(path, VIDEO_FRAMES, "aac", 2)


@pytest.fixture(scope="session")
def mkv_file(media_dir: Path) -> MediaFile:
    """Matroska: H.264 Constrained Baseline, Opus."""
    path = media_dir / "opus.mkv"
    make_media_file(path, "matroska", audio_codec="libopus")
    return MediaFile(path, VIDEO_FRAMES, "opus", 0)


@pytest.fixture(scope="session")
def ts_file(media_dir: Path) -> MediaFile:
    """MPEG-TS: H.264 with in-band parameter sets, AAC with ADTS headers."""
    path = media_dir / "adts.ts"
    make_media_file(path, "mpegts", audio_codec="aac")
    return MediaFile(path, VIDEO_FRAMES, "aac", 0)
