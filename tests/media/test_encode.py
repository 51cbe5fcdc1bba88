"""The encoding pipeline: test pattern, files (copy and re-encode), looping, stdin, camera errors, async wrapper."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from moq.media import codecs
from moq.media.encode import (
    MAX_QUEUED_FRAMES,
    AsyncMediaStream,
    AudioSettings,
    InputSpec,
    MediaPipeline,
    VideoSettings,
)
from moq.media.errors import MediaInputError
from moq.media.frames import EncodedFrame
from moq.media.pattern import read_stamp
from tests.media.mediafiles import FPS, GOP, HEIGHT, WIDTH, MediaFile, keyframe_positions

SMALL = VideoSettings(width=320, height=180, fps=30, gop=10, bitrate=400_000)
PATTERN = InputSpec(kind="pattern", realtime=False)


def split(frames: list[EncodedFrame]) -> tuple[list[EncodedFrame], list[EncodedFrame]]:
    return [f for f in frames if f.kind == "video"], [f for f in frames if f.kind == "audio"]


def run(pipeline: MediaPipeline) -> list[EncodedFrame]:
    with pipeline:
        return list(pipeline)


def assert_avc1(frame: EncodedFrame) -> None:
    """The payload is length-prefixed NAL units, none of them a parameter set (those live in the avcC)."""
    nals = codecs.split_avcc(frame.payload)
    assert nals and all(codecs.nal_type(n) not in (codecs.NAL_SPS, codecs.NAL_PPS, codecs.NAL_AUD) for n in nals)


def test_pattern_keyframe_every_gop_and_audio_frames() -> None:
    frames = run(MediaPipeline(PATTERN, video=SMALL, duration=2.0))
    video, audio = split(frames)
    assert len(video) == 60
    # A keyframe exactly at each GOP boundary, and nowhere else (lavfi's I marks are not obeyed).
    assert [f.index for f in video if f.keyframe] == [0, 10, 20, 30, 40, 50]
    assert [f.pts_us for f in video] == [round(i * 1_000_000 / 30) for i in range(60)]
    # 2 s of 48 kHz audio in 20 ms Opus frames, plus the frame libopus's 312-sample delay spills into.
    assert len(audio) == 101
    assert all(f.duration_us == 20_000 for f in audio[:-1])  # the last one is cut where the input ends
    assert [f.pts_us for f in audio] == [-6_500 + 20_000 * i for i in range(101)]
    # Frames come interleaved in time order, with capture timestamps on one wall-clock anchor.
    times = [f.pts_us for f in frames]
    assert all(b >= a - 40_000 for a, b in itertools.pairwise(times))
    anchor = video[0].timestamp_us - video[0].pts_us
    assert all(f.timestamp_us - f.pts_us == anchor for f in frames)
    assert abs(anchor - time.time_ns() // 1000) < 60_000_000
    for f in video:
        assert_avc1(f)
    vinfo, ainfo = video[0].info, audio[0].info
    # Constrained Baseline (ultrafast); the level is x264's pick for the size, rate and bitrate.
    assert vinfo.codec.startswith("avc1.42c0") and vinfo.config is not None
    assert codecs.h264_codec_string(vinfo.config) == vinfo.codec
    assert (vinfo.width, vinfo.height, vinfo.framerate, vinfo.gop, vinfo.bitrate) == (320, 180, 30.0, 10, 400_000)
    assert (ainfo.codec, ainfo.sample_rate, ainfo.channels) == ("opus", 48000, 2)


def test_pattern_stamp_reads_back_after_decoding() -> None:
    frames = run(MediaPipeline(PATTERN, video=SMALL, audio=None, duration=0.5))
    decoder = av.CodecContext.create("h264", "r")
    decoder.extradata = frames[0].info.config
    stamps = []
    for f in frames:
        for picture in decoder.decode(av.Packet(f.payload)):
            stamps.append(read_stamp(picture))
    assert [s.frame_number for s in stamps] == list(range(15))
    assert all(s.wallclock_ms == (f.timestamp_us // 1000) & 0xFFFFFFFF for s, f in zip(stamps, frames, strict=True))


@pytest.mark.parametrize("name", ["mp4_file", "mkv_file", "ts_file"])
def test_copy_passes_every_frame_through(name: str, request: pytest.FixtureRequest) -> None:
    media: MediaFile = request.getfixturevalue(name)
    pipeline = MediaPipeline(InputSpec(kind="file", url=str(media.path), realtime=False), copy=True)
    infos = pipeline.open()
    frames = run(pipeline)
    video, audio = split(frames)
    assert len(video) == media.video_frames
    assert [f.index for f in video if f.keyframe] == keyframe_positions(media.path)
    for f in video:
        assert_avc1(f)
    vinfo = infos[0]
    assert (vinfo.width, vinfo.height, vinfo.framerate) == (WIDTH, HEIGHT, FPS)
    assert vinfo.codec == ("avc1.64000d" if media.bframes else "avc1.42c00d")
    ainfo = infos[1]
    if media.audio_codec == "aac":
        assert ainfo.codec == "mp4a.40.2" and ainfo.config is not None
        assert ainfo.config[:2] == codecs.audio_specific_config(2, 3, 2)  # AAC-LC, 48 kHz, stereo
        assert not any(f.payload.startswith(b"\xff\xf1") for f in audio)  # ADTS headers removed
    else:
        assert ainfo.codec == "opus"
    with av.open(str(media.path)) as container:
        source_audio = sum(1 for p in container.demux(container.streams.audio[0]) if p.size)
    assert len(audio) == source_audio
    # Presentation times: with B-frames, out of order in decode order, but the same set of instants.
    pts = sorted(f.pts_us for f in video)
    assert all(30_000 < b - a < 37_000 for a, b in itertools.pairwise(pts))
    assert (video[0].pts_us != min(pts)) is False or media.bframes


@pytest.mark.parametrize("name", ["mp4_file", "mkv_file", "ts_file"])
def test_reencode_keeps_every_frame(name: str, request: pytest.FixtureRequest) -> None:
    media: MediaFile = request.getfixturevalue(name)
    settings = VideoSettings(gop=15, bitrate=300_000)
    frames = run(MediaPipeline(InputSpec(kind="file", url=str(media.path), realtime=False), video=settings))
    video, audio = split(frames)
    assert len(video) == media.video_frames
    assert [f.index for f in video if f.keyframe] == list(range(0, media.video_frames, 15))
    assert video[0].info.codec == "avc1.42c00d" and video[0].info.width == WIDTH
    assert 99 <= len(audio) <= 103 and audio[0].info.codec == "opus"
    pts = [f.pts_us for f in video]
    assert pts == sorted(pts) and all(33_000 <= b - a <= 34_000 for a, b in itertools.pairwise(pts))


def test_reencode_scales_and_changes_rate(mkv_file: MediaFile) -> None:
    settings = VideoSettings(width=160, height=90, fps=15, gop=15)
    spec = InputSpec(kind="file", url=str(mkv_file.path), realtime=False)
    video, _ = split(run(MediaPipeline(spec, video=settings, audio=None)))
    assert len(video) == 30  # 2 s at 15 fps: every other input frame dropped
    assert (
        video[0].info.width == 160
        and codecs.parse_sps(codecs.parse_avcc(video[0].info.config or b"").sps[0]).height == 90
    )


@pytest.mark.parametrize("copy", [True, False])
def test_loop_keeps_time_moving_forward(mp4_file: MediaFile, copy: bool) -> None:
    spec = InputSpec(kind="file", url=str(mp4_file.path), loop=True, realtime=False)
    video, audio = split(run(MediaPipeline(spec, copy=copy, duration=5.0, video=VideoSettings(gop=30))))
    assert 145 <= len(video) <= 151  # 5 s at 30 fps, give or take the loop seams
    assert [f.index for f in video if f.keyframe] == list(range(0, len(video), 30))
    for frames in (video, audio):
        ordered = sorted(f.pts_us for f in frames)
        assert len(set(ordered)) == len(ordered)
        assert max(b - a for a, b in itertools.pairwise(ordered)) < 70_000  # no holes at the seams
    assert max(f.pts_us for f in video) > 4_800_000


def test_stdin_mpegts_pipe(ts_file: MediaFile) -> None:
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with open(write_fd, "wb") as pipe:
            pipe.write(ts_file.path.read_bytes())

    feeder = threading.Thread(target=feed)
    feeder.start()
    with open(read_fd, "rb") as stdin:
        spec = InputSpec.parse("-")
        assert spec.kind == "stdin" and spec.format == "mpegts"
        frames = run(MediaPipeline(InputSpec(kind="stdin", format="mpegts", realtime=False), copy=True, stdin=stdin))
    feeder.join()
    video, audio = split(frames)
    assert len(video) == ts_file.video_frames and audio


def test_realtime_pacing() -> None:
    """A paced input releases frames no faster than real time."""
    start = time.monotonic()
    frames = run(MediaPipeline(InputSpec(kind="pattern"), video=SMALL, audio=None, duration=0.5))
    elapsed = time.monotonic() - start
    assert len(frames) == 15
    assert elapsed >= 14 / 30 - 0.02


def test_input_spec_parse() -> None:
    assert InputSpec.parse("pattern").kind == "pattern"
    assert InputSpec.parse("/dev/video0") == InputSpec(kind="device", url="/dev/video0", format="v4l2")
    assert InputSpec.parse("v4l2:/dev/video2").url == "/dev/video2"
    assert InputSpec.parse("rtmp://example/x", loop=True) == InputSpec(kind="file", url="rtmp://example/x", loop=True)
    assert InputSpec.parse("/dev/video0").paced is False and InputSpec.parse("a.mp4").paced is True


def test_missing_camera_is_a_clear_error() -> None:
    with pytest.raises(MediaInputError, match=r"^no such input device: /dev/video97$"):
        MediaPipeline(InputSpec.parse("/dev/video97")).open()


def test_unreadable_inputs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(MediaInputError, match="No such file or directory") as missing:
        MediaPipeline(InputSpec.parse(str(tmp_path / "nothing.mp4"))).open()
    assert "\n" not in str(missing.value)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(MediaInputError, match="cannot open") as garbage:
        MediaPipeline(InputSpec.parse(str(junk))).open()
    assert "\n" not in str(garbage.value)


def test_copy_refuses_codecs_it_cannot_pass(tmp_path: Path) -> None:
    path = tmp_path / "vp8.webm"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libvpx", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        with av.open("testsrc2=size=64x64:rate=30:duration=0.1", format="lavfi") as src:
            for frame in src.decode(video=0):
                out.mux(stream.encode(frame.reformat(format="yuv420p")))
        out.mux(stream.encode(None))
    with pytest.raises(MediaInputError, match="cannot --copy vp8 video"):
        MediaPipeline(InputSpec.parse(str(path)), copy=True, audio=None).open()
    with pytest.raises(ValueError):
        MediaPipeline(PATTERN, copy=True)
    with pytest.raises(ValueError):
        MediaPipeline(PATTERN, video=None, audio=None)


async def collect(stream: AsyncMediaStream, limit: int | None = None) -> list[EncodedFrame]:
    out = []
    async for frame in stream:
        out.append(frame)
        if limit is not None and len(out) >= limit:
            break
    return out


def test_async_wrapper_yields_the_same_frames() -> None:
    async def main() -> list[EncodedFrame]:
        async with AsyncMediaStream(MediaPipeline(PATTERN, video=SMALL, duration=1.0)) as stream:
            assert [i.kind for i in stream.pipeline.streams] == ["video", "audio"]
            return await asyncio.wait_for(collect(stream), 10)

    frames = asyncio.run(main())
    video, audio = split(frames)
    assert len(video) == 30 and len(audio) == 51


def test_async_wrapper_is_bounded_and_stops() -> None:
    """A consumer that stops reading holds the worker at the bound; closing ends the worker promptly."""
    assert MAX_QUEUED_FRAMES == 64

    async def main() -> tuple[int, bool]:
        pipeline = MediaPipeline(PATTERN, video=SMALL, audio=None, duration=60.0)
        stream = AsyncMediaStream(pipeline, max_queued=3)
        await stream.start()
        first = await asyncio.wait_for(collect(stream, 1), 10)
        assert len(first) == 1

        # The worker fills the queue up to the bound, then waits for a free slot.
        async def filled() -> None:
            while stream._queue.qsize() < 3:
                await asyncio.sleep(0.005)

        await asyncio.wait_for(filled(), 10)
        assert stream._slots._value == 0  # no slot left: the worker is held
        queued = stream._queue.qsize()
        await asyncio.wait_for(stream.aclose(), 10)
        assert stream._thread is not None
        return queued, stream._thread.is_alive()

    queued, alive = asyncio.run(main())
    assert queued <= 3
    assert not alive


def test_async_wrapper_raises_pipeline_errors(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncMediaStream(MediaPipeline(InputSpec.parse(str(tmp_path / "gone.ts")))) as stream:
            await collect(stream)

    with pytest.raises(MediaInputError):
        asyncio.run(main())


def frames_of(pipeline: MediaPipeline) -> Iterator[EncodedFrame]:
    with pipeline:
        yield from pipeline


def test_settings_reach_the_encoder() -> None:
    settings = VideoSettings(width=320, height=180, fps=25, gop=5, bitrate=250_000, profile="high", preset="faster")
    video, audio = split(
        list(frames_of(MediaPipeline(PATTERN, video=settings, audio=AudioSettings(channels=1), duration=0.4)))
    )
    assert len(video) == 10 and [f.index for f in video if f.keyframe] == [0, 5]
    assert video[0].info.codec.startswith("avc1.64")  # High profile once CABAC and 8x8 transforms are on
    assert audio[0].info.channels == 1
    assert GOP == 30
