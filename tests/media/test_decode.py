"""Decoding and recording: LOC objects back to pictures, and to files PyAV (and so ffprobe/ffplay) can open."""

from __future__ import annotations

import io
import os
import threading
from fractions import Fraction
from pathlib import Path

import av
import pytest
from av.video.frame import VideoFrame

from moq.media.catalog import Track, audio_track, track_for_stream
from moq.media.decode import MAX_REORDER_FRAMES, Recorder, TrackDecoder, TsWriter, decoder_name
from moq.media.encode import InputSpec, MediaPipeline, VideoSettings
from moq.media.errors import MediaError
from moq.media.frames import EncodedFrame
from moq.media.groups import GroupMapper
from moq.media.loc import LocFrame
from moq.media.pattern import read_stamp
from tests.media.mediafiles import FPS, MediaFile, count_frames, duration_of

SMALL = VideoSettings(width=320, height=180, fps=30, gop=15, bitrate=400_000)


def publish(frames: list[EncodedFrame]) -> list[tuple[str, LocFrame]]:
    """What a subscriber receives: each frame packaged and mapped to groups, then read back from the object."""
    mappers = {"video": GroupMapper("video"), "audio": GroupMapper("audio")}
    received: list[tuple[str, LocFrame]] = []
    for frame in frames:
        obj = mappers[frame.kind].push(frame)
        if obj is not None:
            received.append((frame.kind, LocFrame.from_object(obj.properties, obj.payload)))
    return received


def pattern(seconds: float) -> tuple[list[Track], list[tuple[str, LocFrame]]]:
    pipeline = MediaPipeline(InputSpec(kind="pattern", realtime=False), video=SMALL, duration=seconds)
    with pipeline:
        frames = list(pipeline)
        tracks = [track_for_stream(info.kind, info) for info in pipeline.streams]
    return tracks, publish(frames)


def record(target: Path, tracks: list[Track], received: list[tuple[str, LocFrame]]) -> Recorder:
    with Recorder(target, tracks) as recorder:
        for name, frame in received:
            recorder.write(name, frame)
    return recorder


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".ts"])
def test_recording_reopens_with_every_frame(tmp_path: Path, suffix: str) -> None:
    tracks, received = pattern(2.0)
    sent_video = sum(1 for name, _ in received if name == "video")
    sent_audio = sum(1 for name, _ in received if name == "audio")
    target = tmp_path / f"out{suffix}"
    recorder = record(target, tracks, received)
    assert recorder.frames_written == {"video": sent_video, "audio": sent_audio}
    assert count_frames(target, "video") == sent_video == 60
    assert abs(duration_of(target, "video") - 2) <= Fraction(1, FPS)
    with av.open(str(target)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.name, video.codec_context.width, video.codec_context.height) == ("h264", 320, 180)
        assert audio.codec_context.name == "opus" and audio.codec_context.channels == 2
        assert container.duration is not None and abs(container.duration / 1e6 - 2.0) < 0.1
    assert count_frames(target, "audio") >= 100


def test_recording_of_a_b_frame_stream(tmp_path: Path, mp4_file: MediaFile) -> None:
    """Passed-through B-frames arrive in decode order with presentation times only: the recorder rebuilds DTS."""
    pipeline = MediaPipeline(InputSpec(kind="file", url=str(mp4_file.path), realtime=False), copy=True)
    with pipeline:
        frames = list(pipeline)
        tracks = [track_for_stream(info.kind, info) for info in pipeline.streams]
    assert mp4_file.bframes <= MAX_REORDER_FRAMES
    target = tmp_path / "copy.mp4"
    record(target, tracks, publish(frames))
    assert count_frames(target, "video") == mp4_file.video_frames
    assert abs(duration_of(target, "video") - duration_of(mp4_file.path, "video")) <= Fraction(1, FPS)
    with av.open(str(target)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"


def test_decoder_reports_frames_and_reads_stamps() -> None:
    tracks, received = pattern(1.0)
    decoders = {t.name: TrackDecoder(t) for t in tracks}
    numbers = []
    for name, frame in received:
        for picture in decoders[name].decode(frame):
            if isinstance(picture, VideoFrame):
                numbers.append(read_stamp(picture).frame_number)
    video, audio = decoders["video"], decoders["audio"]
    assert video.frames_decoded == 30 and video.frames_skipped == 0
    assert (video.width, video.height) == (320, 180)
    assert numbers == list(range(30))
    assert audio.frames_decoded == 51


def test_decoder_waits_for_a_keyframe_with_config() -> None:
    tracks, received = pattern(1.0)
    video = [frame for name, frame in received if name == "video"]
    decoder = TrackDecoder(tracks[0])
    # Joining mid-group: the frames before the next keyframe (which carries the avcC) are skipped.
    for frame in video[3:]:
        decoder.decode(frame)
    assert decoder.frames_skipped == 12 and decoder.frames_decoded == 15


def test_recorder_starts_at_the_first_keyframe(tmp_path: Path) -> None:
    tracks, received = pattern(1.0)
    first_key = next(i for i, (name, f) in enumerate(received) if name == "video" and f.keyframe and i > 5)
    joined = [(name, f) for name, f in received[5:]]  # joined late: audio first, video mid-GOP
    recorder = record(tmp_path / "late.mkv", tracks, joined)
    expected_video = sum(1 for name, _ in received[first_key:] if name == "video")
    assert recorder.frames_written["video"] == expected_video == 15
    assert recorder.frames_written["audio"] == sum(1 for name, _ in joined if name == "audio")
    assert count_frames(tmp_path / "late.mkv", "video") == expected_video


def test_ts_writer_to_a_pipe() -> None:
    tracks, received = pattern(1.0)
    read_fd, write_fd = os.pipe()
    chunks: list[bytes] = []

    def drain() -> None:
        with open(read_fd, "rb") as pipe:
            while data := pipe.read(65536):
                chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    with open(write_fd, "wb") as pipe, TsWriter(pipe, tracks) as writer:
        for name, frame in received:
            writer.write(name, frame)
    reader.join()
    data = b"".join(chunks)
    assert data[0] == 0x47 and len(data) % 188 == 0  # MPEG-TS packets
    assert writer.frames_written["video"] == 30
    with av.open(io.BytesIO(data), "r", format="mpegts") as container:
        assert sum(1 for _ in container.decode(video=0)) == 30


def test_unsupported_codecs() -> None:
    assert decoder_name("avc1.64001f") == "h264" and decoder_name("avc3.42e01e") == "h264"
    assert decoder_name("opus") == "opus" and decoder_name("mp4a.40.2") == "aac"
    with pytest.raises(MediaError):
        decoder_name("av01.0.08M.10")
    with pytest.raises(ValueError):
        Recorder(Path("x.unknown"), [audio_track(bitrate=1)])
    with pytest.raises(ValueError):
        Recorder(Path("x.mp4"), [])


def test_vp8_is_decoded_and_recorded(tmp_path: Path) -> None:
    """Browsers without an H.264 encoder publish VP8 (web/js/publisher.js): it decodes and records to MKV."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 160, 96, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.options = {"deadline": "realtime", "cpu-used": "8"}
    frames: list[tuple[str, LocFrame]] = []
    for index in range(30):
        picture = VideoFrame(160, 96, "yuv420p")
        for plane in picture.planes:
            plane.update(bytes([index * 8 % 256]) * plane.buffer_size)
        picture.pts = index
        for packet in encoder.encode(picture):
            frames.append(
                ("video", LocFrame(payload=bytes(packet), timestamp=index * 33_333, keyframe=packet.is_keyframe))
            )
    for packet in encoder.encode(None):
        frames.append(
            ("video", LocFrame(payload=bytes(packet), timestamp=len(frames) * 33_333, keyframe=packet.is_keyframe))
        )
    assert decoder_name("vp8") == decoder_name("vp08.00.10.08") == "vp8"
    track = Track(
        name="video", packaging="loc", is_live=True, role="video", codec="vp8", width=160, height=96, framerate=30
    )
    decoder = TrackDecoder(track)
    for _, frame in frames:
        decoder.decode(frame)
    decoder.flush()
    assert decoder.frames_decoded == len(frames) == 30
    recorder = record(tmp_path / "vp8.mkv", [track], frames)
    assert recorder.frames_written["video"] == 30
    assert count_frames(tmp_path / "vp8.mkv", "video") == 30
