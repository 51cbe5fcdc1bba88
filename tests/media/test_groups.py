"""Frames to MOQT groups and objects: one group per GOP, object 0 the keyframe, wall-clock group ids."""

from __future__ import annotations

import time

import pytest

from moq.media.frames import EncodedFrame, StreamInfo
from moq.media.groups import AUDIO_FRAMES_PER_GROUP, GroupMapper, wallclock_group_start
from moq.media.loc import LocFrame

VIDEO = StreamInfo(kind="video", codec="avc1.42c01f", config=b"\x01avcC", width=1280, height=720, framerate=30)
OPUS = StreamInfo(kind="audio", codec="opus", config=b"OpusHead", sample_rate=48000, channels=2)
AAC = StreamInfo(kind="audio", codec="mp4a.40.2", config=b"\x11\x90", sample_rate=48000, channels=2)


def frame(info: StreamInfo, index: int, keyframe: bool) -> EncodedFrame:
    return EncodedFrame(
        info=info,
        payload=bytes((index,)),
        pts_us=index * 33_333,
        duration_us=33_333,
        keyframe=keyframe,
        timestamp_us=1_700_000_000_000_000 + index * 33_333,
        index=index,
    )


def test_video_one_group_per_gop() -> None:
    mapper = GroupMapper("video", start_group=100)
    frames = [frame(VIDEO, i, i % 5 == 2) for i in range(17)]
    objects = [mapper.push(f) for f in frames]
    assert objects[:2] == [None, None]  # before the first keyframe: undecodable, dropped
    assert mapper.dropped == 2
    placed = [o for o in objects if o is not None]
    assert [(o.group_id, o.object_id) for o in placed] == [(100 + (i - 2) // 5, (i - 2) % 5) for i in range(2, 17)]
    for obj in placed:
        loc = LocFrame.from_object(obj.properties, obj.payload)
        assert obj.subgroup_id == 0
        assert loc.keyframe is (obj.object_id == 0)
        assert obj.new_group is (obj.object_id == 0)
        # The avcC rides on object 0 of every group, so a subscriber can join at any group.
        assert loc.video_config == (VIDEO.config if obj.object_id == 0 else None)
        assert loc.timestamp == obj.frame.timestamp_us and loc.timescale is None
        assert loc.payload == obj.frame.payload


def test_audio_groups() -> None:
    assert AUDIO_FRAMES_PER_GROUP == 1  # LOC-04 §"Application with one audio track"
    mapper = GroupMapper("audio", start_group=7)
    objects = [mapper.push(frame(OPUS, i, True)) for i in range(4)]
    assert [(o.group_id, o.object_id) for o in objects if o] == [(7, 0), (8, 0), (9, 0), (10, 0)]
    # Opus stereo needs no OpusHead: it is not repeated on every 20 ms object.
    assert all(LocFrame.from_object(o.properties, o.payload).audio_config is None for o in objects if o)

    grouped = GroupMapper("audio", start_group=0, frames_per_group=3)
    objects = [grouped.push(frame(AAC, i, True)) for i in range(7)]
    assert [(o.group_id, o.object_id) for o in objects if o] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0)]
    configs = [LocFrame.from_object(o.properties, o.payload).audio_config for o in objects if o]
    assert configs == [AAC.config, None, None, AAC.config, None, None, AAC.config]  # AAC needs its config
    for obj in objects:
        assert obj is not None
        loc = LocFrame.from_object(obj.properties, obj.payload)
        assert loc.keyframe is None  # VIDEO_FRAME_MARKING is a video property


def test_group_ids_start_from_the_wall_clock() -> None:
    """MSF §"Group numbering": start at the wall clock in ms, +1 per group, so a restarted publisher (which has
    produced far fewer than one group per millisecond) starts above every id it used before."""
    before = time.time_ns() // 1_000_000
    mapper = GroupMapper("video")
    ids = [o.group_id for o in (mapper.push(frame(VIDEO, i, True)) for i in range(5)) if o]
    after = time.time_ns() // 1_000_000
    assert before <= ids[0] <= after
    assert ids == list(range(ids[0], ids[0] + 5))
    assert wallclock_group_start() >= ids[0]


def test_mapper_misuse() -> None:
    with pytest.raises(ValueError):
        GroupMapper("video", frames_per_group=2)
    with pytest.raises(ValueError):
        GroupMapper("audio", frames_per_group=0)
    with pytest.raises(ValueError):
        GroupMapper("audio").push(frame(VIDEO, 0, True))
