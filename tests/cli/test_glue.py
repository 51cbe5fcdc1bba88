"""The commands' small parts on their own: option values, statistics, catalog and track choice."""

from __future__ import annotations

import pytest

from cli.media_glue import CliError, LatencySamples, percentile, split_namespace
from cli.media_options import parse_bitrate, parse_resolution
from cli.media_subscribe import Reorder, TrackStats, choose_tracks
from cli.subscribe import SubscribeConfig
from moq.media.catalog import Track, audio_track, make_catalog, video_track
from moq.media.loc import LocFrame
from moq.session.events import ObjectReceived
from moq.wire.codes import ObjectStatus


def test_bitrates_and_resolutions() -> None:
    assert parse_bitrate("2M") == 2_000_000
    assert parse_bitrate("800k") == 800_000
    assert parse_bitrate("1.5M") == 1_500_000
    assert parse_bitrate("64000") == 64_000
    assert parse_bitrate("128kbps") == 128_000
    for bad in ("", "fast", "-1k", "0"):
        with pytest.raises(ValueError):
            parse_bitrate(bad)
    assert parse_resolution("320x180") == (320, 180)
    assert parse_resolution("720p") == (1280, 720)
    for bad in ("big", "10x10", "1280", "99999x2"):
        with pytest.raises(ValueError):
            parse_resolution(bad)


def test_namespace_fields() -> None:
    assert split_namespace("live/demo") == (b"live", b"demo")
    assert split_namespace("/a//b/") == (b"a", b"b")
    with pytest.raises(CliError):
        split_namespace("/")


def test_latency_percentiles() -> None:
    samples = LatencySamples()
    assert samples.summary() is None
    for ms in range(1, 101):
        samples.add(float(ms))
    summary = samples.summary()
    assert summary is not None
    assert summary["count"] == 100 and summary["max"] == 100
    assert summary["p50"] == pytest.approx(50.5)
    assert summary["p90"] == pytest.approx(90.1)
    assert summary["p99"] == pytest.approx(99.01)
    assert percentile([3.0], 99) == 3.0


def test_latency_samples_stay_bounded() -> None:
    samples = LatencySamples(limit=100)
    for ms in range(10_000):
        samples.add(float(ms % 1000))
    summary = samples.summary()
    assert summary is not None
    assert summary["count"] == 10_000 and summary["max"] == 999
    assert len(samples._samples) == 100
    assert 300 < summary["p50"] < 700  # a uniform sample of a uniform spread


def received(group: int, obj: int) -> ObjectReceived:
    return ObjectReceived(0, group, 0, obj, None, ObjectStatus.NORMAL, (), b"x", "subgroup")


def test_track_stats_count_dropped_groups_and_missing_objects() -> None:
    stats = TrackStats("video", video_track(codec="avc1.42c015", width=320, height=180, framerate=15, bitrate=1))
    for group, obj in [(10, 0), (10, 1), (10, 2), (11, 0), (11, 2), (14, 0), (14, 1)]:
        stats.on_object(received(group, obj))
    assert stats.groups == 3
    assert stats.groups_dropped == 2  # 12 and 13 never came
    assert stats.objects_missing == 1  # 11/1
    assert stats.objects_reordered == 0
    stats.on_object(received(13, 0))  # overtaken by group 14
    stats.on_object(received(11, 1))
    assert stats.objects_reordered == 2
    assert stats.groups_dropped == 1  # only 12 now
    assert stats.objects_missing == 0


ITEM = ("video", LocFrame(payload=b""), True)


def test_reorder_releases_in_track_order() -> None:
    reorder = Reorder(first=(10, 0), wait=0.5)
    out: list[int] = []

    def push(group: int, obj: int, now: float) -> None:
        reorder.push(group, obj, ("v", LocFrame(payload=bytes([group, obj])), obj == 0), now)
        out.extend(item[1].payload[0] * 100 + item[1].payload[1] for item in reorder.ready(now))

    push(10, 0, 0.0)
    push(10, 1, 0.0)
    push(11, 0, 0.0)  # the next group after the last object of 10: at once
    assert out == [1000, 1001, 1100]
    push(13, 0, 0.1)  # 12 is missing: held
    push(12, 1, 0.1)
    assert out == [1000, 1001, 1100]
    assert reorder.deadline() == pytest.approx(0.6)
    push(12, 0, 0.2)  # the gap fills: everything goes, in order
    assert out == [1000, 1001, 1100, 1200, 1201, 1300]
    push(12, 2, 0.3)  # too late: 13 went already
    assert reorder.late == 1
    push(15, 0, 1.0)  # 14 never comes: 15 waits for the deadline, then goes
    assert out[-1] == 1300
    out.extend(item[1].payload[0] * 100 for item in reorder.ready(1.5))
    assert out[-1] == 1500 and reorder.deadline() is None


def test_reorder_waits_at_the_start_when_it_does_not_know_where() -> None:
    reorder = Reorder(first=None, wait=0.5)
    reorder.push(21, 0, ITEM, 0.0)
    assert reorder.ready(0.1) == []
    reorder.push(20, 0, ITEM, 0.2)  # overtaken at the very start
    assert len(reorder.ready(0.2)) == 0
    assert len(reorder.ready(0.5)) == 2
    reorder.push(22, 0, ITEM, 0.6)
    assert len(reorder.ready(0.6)) == 1
    reorder.push(30, 0, ITEM, 0.7)
    assert len(reorder.drain()) == 1


def config(*tracks: str) -> SubscribeConfig:
    return SubscribeConfig(url="moqt://x/", name="live/demo", tracks=tracks)


def test_choose_tracks() -> None:
    video = video_track(codec="avc1.42c015", width=320, height=180, framerate=15, bitrate=1)
    audio = audio_track(bitrate=64_000)
    other = Track(name="events", packaging="eventtimeline", event_type="x")
    catalog = make_catalog([video, audio, other])
    assert list(choose_tracks(catalog, config())) == ["video", "audio"]
    assert list(choose_tracks(catalog, config("audio"))) == ["audio"]
    with pytest.raises(CliError, match="has no track subtitles"):
        choose_tracks(catalog, config("subtitles"))
    with pytest.raises(CliError, match="lists no audio or video"):
        choose_tracks(make_catalog([other]), config())
