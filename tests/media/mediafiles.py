"""Small media files made with PyAV for the media tests, with known frame counts and durations."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream
from av.video.frame import PictureType, VideoFrame
from av.video.stream import VideoStream

#: Every test file: 320x180 at 30 fps, 2 s, a keyframe every 30 frames.
WIDTH, HEIGHT, FPS, SECONDS, GOP = 320, 180, 30, 2, 30
VIDEO_FRAMES = FPS * SECONDS


@dataclass(frozen=True)
class MediaFile:
    """A file a fixture made, with what went into it."""

    path: Path
    video_frames: int
    audio_codec: str
    bframes: int


def make_media_file(path: Path, fmt: str, *, audio_codec: str, bframes: int = 0, video_codec: str = "libx264") -> None:
    """Encode the lavfi test sources into `path`: H.264 (optionally with B-frames) or another codec, plus audio."""
    out = av.open(str(path), "w", format=fmt)
    vstream = cast(VideoStream, out.add_stream(video_codec, rate=FPS))
    vstream.width, vstream.height, vstream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    vstream.codec_context.gop_size = GOP
    if video_codec == "libx264":
        # "fast" uses CABAC and 8x8 transforms: a High profile stream; bf > 0 makes it reorder frames.
        vstream.codec_context.options = {"preset": "fast" if bframes else "ultrafast", "bf": str(bframes)}
    astream = cast(AudioStream, out.add_stream(audio_codec, rate=48000))
    astream.layout = "stereo"
    video = av.open(f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}:duration={SECONDS},format=yuv420p", format="lavfi")
    for picture in video.decode(video=0):
        picture.pict_type = PictureType.NONE  # lavfi marks every frame I (PLATFORM.md)
        out.mux(vstream.encode(picture))
    out.mux(vstream.encode(None))
    audio = av.open(f"sine=frequency=300:sample_rate=48000:duration={SECONDS}", format="lavfi")
    actx = astream.codec_context
    resampler = av.AudioResampler(format=actx.format, layout="stereo", rate=48000, frame_size=actx.frame_size)
    for samples in audio.decode(audio=0):
        for chunk in resampler.resample(samples):
            out.mux(astream.encode(chunk))
    for chunk in resampler.resample(None):
        out.mux(astream.encode(chunk))
    out.mux(astream.encode(None))
    out.close()
    video.close()
    audio.close()


def count_frames(path: Path, kind: str) -> int:
    """Frames PyAV decodes from one stream of `path`."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        return sum(1 for _ in container.decode(stream))


def keyframe_positions(path: Path) -> list[int]:
    """Indices, in decode order, of the video packets the demuxer marks as keyframes."""
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(container.streams.video[0]) if p.size]
    return [i for i, p in enumerate(packets) if p.is_keyframe]


def duration_of(path: Path, kind: str) -> Fraction:
    """A stream's duration in seconds, as the container declares it (or from its frames, when it does not)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            return stream.duration * stream.time_base
        last = Fraction(0)
        for frame in container.decode(stream):
            if isinstance(frame, VideoFrame | AudioFrame) and frame.pts is not None and frame.time_base is not None:
                last = max(last, frame.pts * frame.time_base)
        return last + Fraction(1, FPS)
