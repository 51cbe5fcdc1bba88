"""Sources and encoders with PyAV: a synchronous pipeline of `EncodedFrame`s, and an async wrapper around it.

Inputs (`InputSpec`): the built-in test pattern (lavfi `testsrc2` with its running clock and frame counter, plus a
machine-readable stamp, see `moq.media.pattern`; a 440 Hz tone that beeps every second), a file or URL FFmpeg reads
(MP4, MKV, MPEG-TS, ...; optionally looped), standard input (an MPEG-TS pipe), or a V4L2 camera.

Encoders: H.264 with libx264 and Opus with libopus; or, with `copy=True`, H.264/AAC/Opus packets pass through.

Output format. H.264 leaves in the canonical "avc1" form (LOC-04 §2.1: 4-byte NAL lengths, parameter sets out of
band): the avcC goes into VIDEO_CONFIG and the codec string is `avc1.PPCCLL`. That is what WebCodecs decodes with a
`description`, what MP4 and Matroska store, and what libx264 gives once asked for global headers (its extradata
and packets are Annex-B and are rewritten here, `codecs.AvcNormalizer`). Opus packets and raw AAC frames are the
payload as they are (AAC's AudioSpecificConfig goes to AUDIO_CONFIG; ADTS headers from MPEG-TS are removed).

Keyframes. libx264 is told the GOP length, no scene-cut keyframes, and each GOP's first frame is forced to be a
keyframe (pict_type I); every other frame gets pict_type NONE, because lavfi marks every frame I and libx264 obeys
(PLATFORM.md, "pict_type pitfall"). So keyframes fall exactly every `gop` frames: one MOQT group per GOP.

Timing. Media time (`pts_us`) starts at 0 at the input's start and runs on across loops. Inputs that are not live
(pattern, file, stdin) are paced at real time: a frame is released when the wall clock reaches start + its media
time (with `realtime=False` as fast as possible). The capture timestamp is start + media time (see
`moq.media.frames`); start is when iteration begins, not when the input was opened. Video is constant frame rate:
each input frame lands in the output slot nearest its time; extra frames are dropped and short gaps filled by
repeating the previous frame.

Threads. Everything here blocks (PyAV decodes, encodes and sleeps); run `MediaPipeline` in a worker thread, or use
`AsyncMediaStream`, which does so and hands frames to the event loop through a bounded queue.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from fractions import Fraction
from types import TracebackType
from typing import BinaryIO, Literal, cast

import av
import av.error
import msgspec
from av.audio.codeccontext import AudioCodecContext
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.codec.context import Flags
from av.container import InputContainer
from av.packet import Packet
from av.stream import Stream
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType, VideoFrame
from av.video.stream import VideoStream

from moq.media import codecs
from moq.media.errors import BitstreamError, MediaInputError
from moq.media.frames import EncodedFrame, StreamInfo, TrackKind
from moq.media.pattern import stamp_frame

log = logging.getLogger(__name__)

#: Frames the async wrapper holds for a slow consumer before the pipeline thread waits (about 1 s of 30 fps video
#: and 20 ms audio): enough to ride out a scheduling hiccup, small enough that latency stays bounded.
MAX_QUEUED_FRAMES = 64
#: Packets read ahead in `--copy` mode to find parameter sets that an MPEG-TS input only carries in band.
MAX_PROBE_PACKETS = 2000
#: A gap in the video input up to this many frames is filled by repeating the last frame; a longer one (a stall,
#: a loop with a short audio track) is a jump in time instead.
MAX_FILL_FRAMES = 15
#: Audio input that jumps by more than this (seconds) from where the running sample count says it should be is
#: treated as a discontinuity: the output timeline jumps forward with it.
AUDIO_RESYNC_SECONDS = 0.1
#: How long closing the async wrapper waits for the pipeline thread (a blocked read cannot be interrupted).
STOP_TIMEOUT_SECONDS = 5.0
#: Opus frame length: 20 ms, the libopus default and what WebRTC and browsers use.
OPUS_FRAME_MS = 20

_US = 1_000_000


def _wall_us() -> int:
    return time.time_ns() // 1000


# -- Settings ------------------------------------------------------------------------------------------------------


class VideoSettings(msgspec.Struct, frozen=True, kw_only=True):
    """H.264 encoding options; None takes the input's value (the test pattern's default is 1280x720 at 30 fps)."""

    width: int | None = None
    height: int | None = None
    fps: float | None = None
    bitrate: int = 2_000_000
    #: Frames per GOP; None is one second's worth.
    gop: int | None = None
    preset: str = "ultrafast"
    tune: str = "zerolatency"
    #: libx264 profile cap ("baseline", "main", "high"); None lets the preset decide.
    profile: str | None = None
    #: Draw the frame-number/clock stamp; None stamps the test pattern only.
    stamp: bool | None = None


class AudioSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Opus encoding options: 48 kHz, 20 ms frames."""

    sample_rate: int = 48000
    channels: int = 2
    bitrate: int = 64000


InputKind = Literal["pattern", "file", "stdin", "device"]

#: Names that select the test pattern.
PATTERN_NAMES = frozenset({"pattern", "testsrc", "test"})


class InputSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Where media comes from."""

    kind: InputKind
    #: File path or URL, device path; empty for the pattern and stdin.
    url: str = ""
    #: FFmpeg input format ("mpegts", "v4l2"); None lets FFmpeg probe.
    format: str | None = None
    #: FFmpeg input options (e.g. ("video_size", "1280x720") for a camera).
    options: tuple[tuple[str, str], ...] = ()
    #: Start again at the end of a file.
    loop: bool = False
    #: Pace at real time; None decides by kind (a camera paces itself, the rest are paced).
    realtime: bool | None = None

    @classmethod
    def parse(cls, arg: str, *, loop: bool = False) -> InputSpec:
        """Read a command-line input: "pattern", "-" (MPEG-TS on stdin), "/dev/videoN", or a file or URL."""
        if arg in PATTERN_NAMES:
            return cls(kind="pattern")
        if arg == "-":
            return cls(kind="stdin", format="mpegts")
        if arg.startswith("/dev/video") or arg.startswith("v4l2:"):
            return cls(kind="device", url=arg.removeprefix("v4l2:"), format="v4l2")
        return cls(kind="file", url=arg, loop=loop)

    @property
    def paced(self) -> bool:
        """Whether the pipeline sleeps to release frames at real time."""
        return self.realtime if self.realtime is not None else self.kind != "device"


# -- Internal plumbing ---------------------------------------------------------------------------------------------


class _Item:
    """One input unit in time order: a decoded frame (encode mode) or a packet (copy mode)."""

    __slots__ = ("frame", "kind", "packet", "t")

    def __init__(
        self,
        kind: TrackKind,
        t: Fraction,
        *,
        frame: VideoFrame | AudioFrame | None = None,
        packet: Packet[Stream] | None = None,
    ) -> None:
        self.kind = kind
        #: Media time in seconds from the start of the input, loops included.
        self.t = t
        self.frame = frame
        self.packet = packet


class _Pacer:
    """Releases items at start + media time; one anchor for every track (they stay in sync)."""

    def __init__(self, realtime: bool, stopped: threading.Event) -> None:
        self.realtime = realtime
        self._stopped = stopped
        self._mono: float | None = None
        self.wall_us = 0

    def start(self) -> None:
        if self._mono is None:
            self._mono = time.monotonic()
            self.wall_us = _wall_us()

    def wait(self, t: Fraction) -> None:
        self.start()
        assert self._mono is not None
        if self.realtime:
            delay = self._mono + float(t) - time.monotonic()
            if delay > 0:
                self._stopped.wait(delay)

    def restart(self) -> None:
        """Anchor media time 0 at now, however long ago the input was opened and probed."""
        self._mono = time.monotonic()
        self.wall_us = _wall_us()

    def capture_us(self, pts_us: int) -> int:
        self.start()
        return max(0, self.wall_us + pts_us)


def _input_error(what: str, exc: BaseException) -> MediaInputError:
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return MediaInputError(f"cannot open {what}: {reason}".replace("\n", " "))


def _ts(value: int | None, time_base: Fraction | None) -> Fraction | None:
    if value is None or time_base is None:
        return None
    return value * time_base


# -- The pipeline --------------------------------------------------------------------------------------------------


class MediaPipeline:
    """Reads an input and produces encoded frames, synchronously; run it in a worker thread.

    `open()` opens input and encoders and returns the streams' descriptions (for the catalog); iterating yields
    `EncodedFrame`s of both kinds in time order; `stop()` (from any thread) ends the iteration at the next frame;
    `close()` releases FFmpeg resources.
    """

    def __init__(
        self,
        spec: InputSpec,
        *,
        video: VideoSettings | None = VideoSettings(),  # noqa: B008 - frozen, so sharing the default is safe
        audio: AudioSettings | None = AudioSettings(),  # noqa: B008
        copy: bool = False,
        duration: float | None = None,
        stdin: BinaryIO | None = None,
    ) -> None:
        """`video`/`audio` None leaves that kind out; `duration` (seconds of media) ends the input early."""
        if video is None and audio is None:
            raise ValueError("a pipeline needs video, audio or both")
        if copy and spec.kind == "pattern":
            raise ValueError("the test pattern is generated raw: there is nothing to --copy")
        self.spec = spec
        self.video_settings = video
        self.audio_settings = audio
        self.copy = copy
        self.duration = Fraction(duration).limit_denominator(1_000_000) if duration is not None else None
        self._stdin = stdin
        self._stopped = threading.Event()
        self._pacer = _Pacer(spec.paced, self._stopped)
        self._containers: list[InputContainer] = []
        self._items: Iterator[_Item] | None = None
        self._pending: deque[EncodedFrame] = deque()
        self._infos: dict[TrackKind, StreamInfo] = {}
        self._count: dict[TrackKind, int] = {"video": 0, "audio": 0}
        self._opened = False
        # Video encoding state.
        self._venc: VideoCodecContext | None = None
        self._vnorm: codecs.AvcNormalizer | None = None
        self._fps = Fraction(30)
        self._gop = 30
        self._size = (1280, 720)
        self._stamp = False
        self._next_slot: int | None = None
        self._last_vframe: VideoFrame | None = None
        self._encoded_video = 0
        # Audio encoding state.
        self._aenc: AudioCodecContext | None = None
        self._resampler: AudioResampler | None = None
        self._audio_out = 0  # next output sample (encoder time base 1/sample_rate)
        self._audio_in_expect: int | None = None  # where the next input frame should start, in output samples
        # Copy state.
        self._copy_codec: dict[TrackKind, str] = {}
        self._copy_tb: dict[TrackKind, Fraction] = {}
        self._copy_frame_us: dict[TrackKind, int] = {}
        self._copy_bitrate: dict[TrackKind, int | None] = {}
        self._aac_adts = False  # AAC arrives with ADTS headers (MPEG-TS) rather than with an AudioSpecificConfig
        self._video_started = False  # a keyframe has gone out: the frames after it can be decoded

    # -- lifecycle

    def __enter__(self) -> MediaPipeline:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def streams(self) -> tuple[StreamInfo, ...]:
        """The streams' descriptions (video first); complete once `open()` returned."""
        return tuple(self._infos[k] for k in ("video", "audio") if k in self._infos)

    def stop(self) -> None:
        """End the iteration at the next frame; safe from any thread."""
        self._stopped.set()

    def close(self) -> None:
        """Release inputs and encoders."""
        self._stopped.set()
        for container in self._containers:
            container.close()
        self._containers.clear()

    def open(self) -> tuple[StreamInfo, ...]:
        """Open the input and the encoders; `MediaInputError` when the input cannot be read."""
        if self._opened:
            return self.streams
        self._opened = True
        try:
            if self.spec.kind == "pattern":
                self._items = self._open_pattern()
            else:
                self._items = self._open_container()
            if self.copy:
                self._prime()
        except BaseException:
            self.close()  # `with` never reaches __exit__ when __enter__ raises
            raise
        return self.streams

    # -- opening inputs

    def _open_pattern(self) -> Iterator[_Item]:
        v = self.video_settings
        a = self.audio_settings
        iters: list[Iterator[_Item]] = []
        limit = f":duration={float(self.duration)}" if self.duration is not None else ""
        if v is not None:
            self._fps = Fraction(v.fps or 30).limit_denominator(1001)
            self._size = (v.width or 1280, v.height or 720)
            self._stamp = v.stamp is not False
            spec = f"testsrc2=size={self._size[0]}x{self._size[1]}:rate={self._fps}{limit},format=yuv420p"
            container = av.open(spec, format="lavfi")
            self._containers.append(container)
            self._open_video_encoder()
            iters.append(self._frames_of(container, "video"))
        if a is not None:
            spec = f"sine=frequency=440:beep_factor=4:sample_rate={a.sample_rate}{limit}"
            container = av.open(spec, format="lavfi")
            self._containers.append(container)
            self._open_audio_encoder()
            iters.append(self._frames_of(container, "audio"))
        return heapq.merge(*iters, key=lambda item: item.t)

    def _frames_of(self, container: InputContainer, kind: TrackKind) -> Iterator[_Item]:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        for frame in container.decode(stream):
            item = self._decoded_item(frame, Fraction(0), Fraction(0))
            if item is not None:
                yield item

    def _open_container(self) -> Iterator[_Item]:
        spec = self.spec
        options = dict(spec.options)
        if spec.kind == "device":
            if not os.path.exists(spec.url):
                raise MediaInputError(f"no such input device: {spec.url}")
            what = f"input device {spec.url}"
        elif spec.kind == "stdin":
            what = "standard input"
        else:
            what = spec.url
        try:
            if spec.kind == "stdin":
                source = self._stdin if self._stdin is not None else sys.stdin.buffer
                container = av.open(source, "r", format=spec.format or "mpegts", options=options)
            else:
                container = av.open(spec.url, "r", format=spec.format, options=options)
        except (OSError, av.error.FFmpegError) as exc:
            raise _input_error(what, exc) from None
        self._containers.append(container)
        vstream = container.streams.video[0] if container.streams.video and self.video_settings else None
        astream = container.streams.audio[0] if container.streams.audio and self.audio_settings else None
        if vstream is None and astream is None:
            raise MediaInputError(f"{what} has no audio or video stream to use")
        if self.copy:
            if vstream is not None:
                self._setup_copy_video(vstream, container.bit_rate)
            if astream is not None:
                self._setup_copy_audio(astream)
        else:
            if vstream is not None:
                v = self.video_settings
                assert v is not None
                vstream.thread_type = "AUTO"
                rate = vstream.average_rate or vstream.guessed_rate or Fraction(30)
                self._fps = Fraction(v.fps).limit_denominator(1001) if v.fps else Fraction(rate)
                cc = vstream.codec_context
                self._size = (v.width or cc.width or 1280, v.height or cc.height or 720)
                self._stamp = bool(v.stamp)
                self._open_video_encoder()
            if astream is not None:
                self._open_audio_encoder()
        start = Fraction(container.start_time, _US) if container.start_time is not None else None
        return self._container_items(container, vstream, astream, start)

    def _container_items(
        self,
        container: InputContainer,
        vstream: VideoStream | None,
        astream: AudioStream | None,
        start: Fraction | None,
    ) -> Iterator[_Item]:
        streams = [s for s in (vstream, astream) if s is not None]
        offset = Fraction(0)
        while True:
            # Over this pass, in presentation time relative to `origin`: where the last item ends and where the
            # earliest begins (an AAC priming frame lies before the origin). Decode times of the next pass then
            # follow too, since they trail presentation by the same reorder delay in every pass.
            end = Fraction(0)
            first = Fraction(0)
            origin = start
            try:
                for packet in container.demux(streams):
                    if packet.dts is None and packet.pts is None:
                        continue  # the demuxer's end-of-stream marker
                    kind: TrackKind = "video" if packet.stream is vstream else "audio"
                    tb = packet.time_base
                    stamp = packet.pts if packet.pts is not None else packet.dts
                    t_abs = _ts(stamp, tb)
                    if t_abs is None:
                        continue
                    if origin is None:
                        origin = t_abs
                        start = origin
                    if self.copy:
                        t_dts = _ts(packet.dts, tb)
                        t = (t_dts if t_dts is not None else t_abs) - origin + offset
                        span = _ts(packet.duration, tb) or Fraction(self._copy_frame_us[kind], _US)
                        end = max(end, t_abs - origin + span)
                        first = min(first, t_abs - origin)
                        yield _Item(kind, t, packet=packet)
                        continue
                    for frame in packet.decode():
                        item = self._decoded_item(frame, origin, offset)
                        if item is not None:
                            end = max(end, item.t - offset + self._frame_span(item))
                            first = min(first, item.t - offset)
                            yield item
                if not self.copy:
                    for stream in streams:
                        for frame in stream.codec_context.decode(None):
                            item = self._decoded_item(frame, origin, offset, stream.time_base)
                            if item is not None:
                                end = max(end, item.t - offset + self._frame_span(item))
                                yield item
            except av.error.FFmpegError as exc:
                raise MediaInputError(f"cannot read {self.spec.url or self.spec.kind}: {exc}") from None
            if not self.spec.loop or self._stopped.is_set() or end <= 0:
                return
            # The next pass's earliest item starts where this pass's last one ended: no overlap, no gap.
            offset += end - first
            container.seek(0)
            for stream in streams:
                stream.codec_context.flush_buffers()

    def _decoded_item(
        self, frame: object, origin: Fraction | None, offset: Fraction, time_base: Fraction | None = None
    ) -> _Item | None:
        """The item for a decoded frame; `time_base` stands in for the one a flushed frame lacks (PyAV sets a
        frame's time base from the packet it came from, and a flush has none)."""
        if isinstance(frame, VideoFrame):
            kind: TrackKind = "video"
        elif isinstance(frame, AudioFrame):
            kind = "audio"
        else:
            return None
        t = _ts(frame.pts, frame.time_base or time_base)
        if t is None or origin is None:
            return None
        return _Item(kind, t - origin + offset, frame=frame)

    def _frame_span(self, item: _Item) -> Fraction:
        """How long a decoded frame lasts: one output frame of video, its samples of audio."""
        if isinstance(item.frame, AudioFrame):
            return Fraction(item.frame.samples, item.frame.sample_rate or 48000)
        return 1 / self._fps

    # -- encoders

    def _open_video_encoder(self) -> None:
        v = self.video_settings
        assert v is not None
        width, height = self._size
        # 4:2:0 needs even dimensions.
        width, height = width - width % 2, height - height % 2
        self._size = (width, height)
        self._gop = v.gop or max(1, round(self._fps))
        enc: VideoCodecContext = av.CodecContext.create("libx264", "w")
        enc.width, enc.height = width, height
        enc.pix_fmt = "yuv420p"
        enc.time_base = 1 / self._fps
        enc.framerate = self._fps
        enc.bit_rate = v.bitrate
        enc.gop_size = self._gop
        options = {"preset": v.preset, "tune": v.tune, "sc_threshold": "0", "forced-idr": "1"}
        if v.profile:
            options["profile"] = v.profile
        enc.options = options
        # global_header: parameter sets in extradata (turned into the avcC), not repeated in band.
        enc.flags |= Flags.global_header
        try:
            enc.open()
        except av.error.FFmpegError as exc:
            raise MediaInputError(f"cannot open the H.264 encoder: {exc}") from None
        self._venc = enc
        self._vnorm = codecs.AvcNormalizer(enc.extradata)
        config = self._vnorm.config
        if config is None:
            raise MediaInputError("libx264 gave no parameter sets")
        self._infos["video"] = StreamInfo(
            kind="video",
            codec=codecs.h264_codec_string(config),
            config=config,
            bitrate=v.bitrate,
            width=width,
            height=height,
            framerate=float(self._fps),
            gop=self._gop,
        )

    def _open_audio_encoder(self) -> None:
        a = self.audio_settings
        assert a is not None
        enc: AudioCodecContext = av.CodecContext.create("libopus", "w")
        enc.sample_rate = a.sample_rate
        enc.layout = "stereo" if a.channels == 2 else "mono"
        enc.format = "s16"
        enc.bit_rate = a.bitrate
        enc.time_base = Fraction(1, a.sample_rate)
        enc.options = {"frame_duration": str(OPUS_FRAME_MS), "application": "audio"}
        try:
            enc.open()
        except av.error.FFmpegError as exc:
            raise MediaInputError(f"cannot open the Opus encoder: {exc}") from None
        self._aenc = enc
        self._resampler = AudioResampler(
            format="s16", layout=enc.layout, rate=a.sample_rate, frame_size=a.sample_rate * OPUS_FRAME_MS // 1000
        )
        self._infos["audio"] = StreamInfo(
            kind="audio",
            codec="opus",
            config=enc.extradata or codecs.opus_head(a.channels, a.sample_rate),
            bitrate=a.bitrate,
            sample_rate=a.sample_rate,
            channels=a.channels,
        )

    # -- copy mode

    def _setup_copy_video(self, stream: VideoStream, container_bitrate: int | None) -> None:
        name = stream.codec_context.name
        if name != "h264":
            raise MediaInputError(f"cannot --copy {name} video: only H.264 passes through")
        cc = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or Fraction(30)
        self._fps = Fraction(rate)
        self._vnorm = codecs.AvcNormalizer(cc.extradata)
        self._copy_tb["video"] = stream.time_base or Fraction(1, 90000)
        self._copy_frame_us["video"] = round(_US / self._fps)
        # MSF §"Maximum Bitrate" is required for video; MPEG-TS declares none per stream, so the container's
        # overall rate (an overestimate by the audio's share) stands in.
        bitrate = cc.bit_rate or container_bitrate or (self.video_settings.bitrate if self.video_settings else None)
        self._copy_codec["video"] = "h264"
        self._copy_bitrate["video"] = bitrate
        if self._vnorm.config is not None:
            self._video_info_from(self._vnorm.config, cc.width, cc.height, bitrate)

    def _video_info_from(self, config: bytes, width: int, height: int, bitrate: int | None) -> None:
        rec = codecs.parse_avcc(config)
        if rec.sps and (not width or not height):
            sps = codecs.parse_sps(rec.sps[0])
            width, height = sps.width, sps.height
        self._infos["video"] = StreamInfo(
            kind="video",
            codec=codecs.h264_codec_string(config),
            config=config,
            bitrate=bitrate,
            width=width,
            height=height,
            framerate=float(self._fps),
        )

    def _setup_copy_audio(self, stream: AudioStream) -> None:
        cc = stream.codec_context
        name = cc.name
        if name not in ("aac", "opus"):
            raise MediaInputError(f"cannot --copy {name} audio: only AAC and Opus pass through")
        self._copy_codec["audio"] = name
        self._copy_tb["audio"] = stream.time_base or Fraction(1, cc.sample_rate or 48000)
        rate = cc.sample_rate or 48000
        bitrate = cc.bit_rate or (self.audio_settings.bitrate if self.audio_settings else None)
        self._copy_bitrate["audio"] = bitrate
        if name == "opus":
            config = cc.extradata or codecs.opus_head(min(2, cc.channels or 2), rate)
            self._copy_frame_us["audio"] = OPUS_FRAME_MS * 1000
            self._infos["audio"] = StreamInfo(
                kind="audio", codec="opus", config=config, bitrate=bitrate, sample_rate=rate, channels=cc.channels
            )
        else:
            self._copy_frame_us["audio"] = round(1024 * _US / rate)
            if cc.extradata:
                self._infos["audio"] = StreamInfo(
                    kind="audio",
                    codec=codecs.aac_codec_string(cc.extradata),
                    config=cc.extradata,
                    bitrate=bitrate,
                    sample_rate=rate,
                    channels=cc.channels,
                )
            else:
                self._aac_adts = True  # the configuration comes from the first ADTS header

    def _prime(self) -> None:
        """Read ahead until every stream's configuration is known (in-band parameter sets of MPEG-TS)."""
        assert self._items is not None
        probed = 0
        while any(kind not in self._infos for kind in self._copy_codec):
            item = next(self._items, None)
            if item is None or probed >= MAX_PROBE_PACKETS:
                missing = [k for k in self._copy_codec if k not in self._infos]
                raise MediaInputError(f"no decoder configuration found for {', '.join(missing)} in the input")
            probed += 1
            self._pending.extend(self._process(item))

    # -- processing

    def __iter__(self) -> Iterator[EncodedFrame]:
        return self.frames()

    def frames(self) -> Iterator[EncodedFrame]:
        """The encoded frames, video and audio interleaved in time order."""
        self.open()
        assert self._items is not None
        # The clock starts when frames are first asked for: a caller may open the input early (to describe its
        # streams) and start reading later; frames read ahead while probing (`--copy`) are stamped again.
        self._pacer.restart()
        while self._pending:
            frame = self._pending.popleft()
            yield msgspec.structs.replace(frame, timestamp_us=self._pacer.capture_us(frame.pts_us))
        for item in self._items:
            if self._stopped.is_set():
                return
            if self.duration is not None and item.t >= self.duration:
                break
            self._pacer.wait(item.t)
            if self._stopped.is_set():
                return
            yield from self._process(item)
        yield from self._flush()

    def _process(self, item: _Item) -> list[EncodedFrame]:
        if item.packet is not None:
            return self._copy_video(item) if item.kind == "video" else self._copy_audio(item)
        if item.kind == "video":
            return self._encode_video(cast(VideoFrame, item.frame), item.t)
        return self._encode_audio(cast(AudioFrame, item.frame), item.t)

    def _emit(self, kind: TrackKind, payload: bytes, pts_us: int, duration_us: int, keyframe: bool) -> EncodedFrame:
        index = self._count[kind]
        self._count[kind] = index + 1
        return EncodedFrame(
            info=self._infos[kind],
            payload=payload,
            pts_us=pts_us,
            duration_us=duration_us,
            keyframe=keyframe,
            timestamp_us=self._pacer.capture_us(pts_us),
            index=index,
        )

    def _encode_video(self, frame: VideoFrame, t: Fraction) -> list[EncodedFrame]:
        # The nearest output slot, a tie going to the earlier one: 30 -> 15 fps keeps frames 0, 2, 4, ... and
        # 2 s of input give exactly 30 slots. "Tie" is within 5% of a slot: Matroska's millisecond timestamps
        # put 30 fps frames a little off their exact instants.
        slot = math.ceil(t * self._fps - Fraction(11, 20))
        if self._next_slot is None:
            self._next_slot = slot
        out: list[EncodedFrame] = []
        if slot < self._next_slot:
            return out  # more input frames than output slots: drop this one
        if slot - self._next_slot <= MAX_FILL_FRAMES and self._last_vframe is not None:
            while self._next_slot < slot:  # a short gap: repeat the previous picture
                out += self._encode_slot(self._last_vframe, self._next_slot)
        width, height = self._size
        picture = frame.reformat(width=width, height=height, format="yuv420p")
        self._last_vframe = picture
        out += self._encode_slot(picture, slot)
        return out

    def _encode_slot(self, picture: VideoFrame, slot: int) -> list[EncodedFrame]:
        assert self._venc is not None
        n = self._encoded_video
        self._encoded_video += 1
        self._next_slot = slot + 1
        if self._stamp:
            pts_us = round(slot * _US / self._fps)
            stamp_frame(picture, n, self._pacer.capture_us(pts_us) // 1000)
        picture.pts = slot
        picture.time_base = 1 / self._fps
        # Force each GOP's first frame to a keyframe and leave the rest to the encoder (NONE, never the input's I).
        picture.pict_type = PictureType.I if n % self._gop == 0 else PictureType.NONE
        return self._video_packets(self._venc.encode(picture))

    def _video_packets(self, packets: list[Packet[Stream]]) -> list[EncodedFrame]:
        assert self._vnorm is not None
        out = []
        for packet in packets:
            if packet.pts is None:
                continue
            payload = self._vnorm.convert(bytes(packet))
            pts_us = round(packet.pts * _US / self._fps)
            duration_us = round((packet.pts + 1) * _US / self._fps) - pts_us
            out.append(self._emit("video", payload, pts_us, duration_us, packet.is_keyframe))
        return out

    def _encode_audio(self, frame: AudioFrame, t: Fraction) -> list[EncodedFrame]:
        assert self._resampler is not None and self._aenc is not None and self.audio_settings is not None
        rate = self.audio_settings.sample_rate
        expect = round(t * rate)
        if self._audio_in_expect is None:
            self._audio_out = expect
        elif expect - self._audio_in_expect > AUDIO_RESYNC_SECONDS * rate:
            # The input jumped ahead (a gap, a loop of a file whose audio is shorter than its video): follow it.
            self._audio_out += expect - self._audio_in_expect
        self._audio_in_expect = expect + round(Fraction(frame.samples, frame.sample_rate) * rate)
        frame.pts = None  # timing is ours (sample count), not the input's
        return self._encode_resampled(self._resampler.resample(frame))

    def _encode_resampled(self, frames: list[AudioFrame]) -> list[EncodedFrame]:
        assert self._aenc is not None
        out: list[EncodedFrame] = []
        for chunk in frames:
            chunk.pts = self._audio_out
            chunk.time_base = self._aenc.time_base
            self._audio_out += chunk.samples
            out += self._audio_packets(self._aenc.encode(chunk))
        return out

    def _audio_packets(self, packets: list[Packet[Stream]]) -> list[EncodedFrame]:
        assert self._aenc is not None
        rate = self._aenc.sample_rate
        out = []
        for packet in packets:
            if packet.pts is None:
                continue
            pts_us = round(packet.pts * _US / rate)
            duration_us = round((packet.duration or rate * OPUS_FRAME_MS // 1000) * _US / rate)
            out.append(self._emit("audio", bytes(packet), pts_us, duration_us, True))
        return out

    def _flush(self) -> Iterator[EncodedFrame]:
        if self._venc is not None:
            yield from self._video_packets(self._venc.encode(None))
        if self._aenc is not None and self._resampler is not None:
            yield from self._encode_resampled(self._resampler.resample(None))
            yield from self._audio_packets(self._aenc.encode(None))

    # -- copy processing

    def _copy_video(self, item: _Item) -> list[EncodedFrame]:
        packet = item.packet
        assert packet is not None and self._vnorm is not None
        try:
            payload = self._vnorm.convert(bytes(packet))
        except BitstreamError as exc:
            log.warning("dropping an H.264 packet that does not parse: %s", exc)
            return []
        config = self._vnorm.config
        if config is None:
            return []  # no parameter sets yet: nothing before them can be decoded
        info = self._infos.get("video")
        if info is None or info.config != config:
            # First parameter sets (MPEG-TS), or new ones mid-stream: a new description, re-derived from the SPS.
            self._video_info_from(config, 0, 0, self._copy_bitrate.get("video"))
        if not self._video_started and not packet.is_keyframe:
            return []
        self._video_started = True
        pts_us, duration_us = self._copy_times(item, "video")
        return [self._emit("video", payload, pts_us, duration_us, packet.is_keyframe)]

    def _copy_times(self, item: _Item, kind: TrackKind) -> tuple[int, int]:
        packet = item.packet
        assert packet is not None
        tb = self._copy_tb[kind]
        duration_us = round(packet.duration * tb * _US) if packet.duration else self._copy_frame_us[kind]
        if packet.pts is not None and packet.dts is not None:
            # item.t is decode time (with loop offset); presentation is that plus the reorder delay.
            return round((item.t + (packet.pts - packet.dts) * tb) * _US), duration_us
        return round(item.t * _US), duration_us

    def _copy_audio(self, item: _Item) -> list[EncodedFrame]:
        packet = item.packet
        assert packet is not None
        data = bytes(packet)
        pts_us, duration_us = self._copy_times(item, "audio")
        if not self._aac_adts:  # Opus, or AAC with its AudioSpecificConfig out of band: the packet is the frame
            return [self._emit("audio", data, pts_us, duration_us, True)]
        try:
            raws, header = codecs.split_adts(data)
        except BitstreamError as exc:
            log.warning("dropping an AAC packet that does not parse: %s", exc)
            return []
        if "audio" not in self._infos:
            asc = codecs.audio_specific_config(header.object_type, header.sample_rate_index, header.channel_config)
            rate = codecs.AAC_SAMPLE_RATES[header.sample_rate_index]
            self._infos["audio"] = StreamInfo(
                kind="audio",
                codec=codecs.aac_codec_string(asc),
                config=asc,
                bitrate=self._copy_bitrate.get("audio"),
                sample_rate=rate,
                channels=header.channel_config,
            )
        rate = self._infos["audio"].sample_rate or 48000
        step = round(1024 * _US / rate)
        return [self._emit("audio", raw, pts_us + i * step, step, True) for i, raw in enumerate(raws)]


# -- Async wrapper -------------------------------------------------------------------------------------------------


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


class AsyncMediaStream:
    """Runs a `MediaPipeline` in a worker thread and yields its frames on the event loop.

    At most `max_queued` frames wait for the consumer; past that the worker thread waits (backpressure: a paced
    input then falls behind real time, which its timestamps show, rather than memory growing). Errors of the
    pipeline (e.g. `MediaInputError` while reading) are raised from the iteration.
    """

    def __init__(self, pipeline: MediaPipeline, *, max_queued: int = MAX_QUEUED_FRAMES) -> None:
        if max_queued < 1:
            raise ValueError("max_queued must be at least 1")
        self.pipeline = pipeline
        self._slots = threading.Semaphore(max_queued)
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._done = False

    async def start(self) -> tuple[StreamInfo, ...]:
        """Open the pipeline (off the loop) and start producing; returns the streams' descriptions."""
        if self._thread is not None:
            return self.pipeline.streams
        infos = await asyncio.to_thread(self.pipeline.open)
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, args=(loop,), name="moq-media-pipeline", daemon=True)
        self._thread.start()
        return infos

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        def post(item: object) -> None:
            try:
                loop.call_soon_threadsafe(self._queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                self._closing.set()

        try:
            for frame in self.pipeline:
                while not self._slots.acquire(timeout=0.1):
                    if self._closing.is_set():
                        return
                if self._closing.is_set():
                    return
                post(frame)
        except BaseException as exc:  # handed to the consumer, raised there
            post(_Failed(exc))
        finally:
            post(_END)

    def __aiter__(self) -> AsyncIterator[EncodedFrame]:
        return self

    async def __anext__(self) -> EncodedFrame:
        if self._done:
            raise StopAsyncIteration
        if self._thread is None:
            await self.start()
        item = await self._queue.get()
        if item is _END:
            self._done = True
            raise StopAsyncIteration
        if isinstance(item, _Failed):
            self._done = True
            raise item.exc
        self._slots.release()
        return cast(EncodedFrame, item)

    async def aclose(self) -> None:
        """Stop the pipeline, wait for its thread, release FFmpeg resources.

        A thread stuck in a blocking read (a silent stdin pipe, a stalled network input) cannot be interrupted:
        after `STOP_TIMEOUT_SECONDS` it is left behind (a daemon thread, gone with the process), and the input is
        not closed under its feet."""
        self._closing.set()
        self.pipeline.stop()
        self._done = True
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, STOP_TIMEOUT_SECONDS)
            if self._thread.is_alive():
                log.warning("the media pipeline did not stop within %s s; leaving it behind", STOP_TIMEOUT_SECONDS)
                return
        await asyncio.to_thread(self.pipeline.close)

    async def __aenter__(self) -> AsyncMediaStream:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
