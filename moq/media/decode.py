"""Decoding and recording received LOC frames with PyAV.

`TrackDecoder` turns one track's LOC frames (in group, then object order) back into pictures or audio samples,
configured from the track's catalog entry and the VIDEO_CONFIG/AUDIO_CONFIG properties (draft-ietf-moq-loc-04
§"Video Config", §"Audio Config"). `Recorder` muxes H.264, Opus and AAC frames into MP4, Matroska or MPEG-TS
without re-encoding; `TsWriter` is the MPEG-TS recorder for a pipe (`moq subscribe --output -`).

Timestamps come from LOC's TIMESTAMP: the recording's time zero is the earliest frame written, so tracks that
share a wall-clock anchor (ours do, see `moq.media.frames`) stay in sync.

LOC carries presentation time only, like WebCodecs; a muxer also needs decode time. Frames arrive in decode
order, so the decode time of a frame is the smallest presentation time among it and the next
`MAX_REORDER_FRAMES` frames, moved back by that many ticks of 1/90000 s and kept strictly increasing: that never
passes the presentation time as long as the stream reorders no deeper than the window. Our encoder makes no
B-frames, and common encoders reorder at most two or three frames deep.

All of this blocks; call it from a worker thread.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, cast

import av
import av.error
from av.audio.codeccontext import AudioCodecContext
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream
from av.codec.context import CodecContext
from av.container import OutputContainer
from av.packet import Packet
from av.stream import Stream
from av.video.codeccontext import VideoCodecContext
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from moq.media import codecs
from moq.media.catalog import Track
from moq.media.errors import BitstreamError, MediaError
from moq.media.frames import TrackKind
from moq.media.loc import LocFrame

log = logging.getLogger(__name__)

#: Frames of look-ahead the recorder uses to derive decode times (see the module notes): covers the reordering of
#: x264's default B-frame pyramid and of hardware encoders, at the price of this many frames of delay.
MAX_REORDER_FRAMES = 4
#: Frames held before the file header is written, while waiting for every track's first decodable frame (a
#: video keyframe carries the avcC the header needs). 500 is 10 s of 20 ms audio; past it, tracks that have not
#: started are left out of the recording.
MAX_PENDING_FRAMES = 500
#: Time base of recorded video (the MPEG-TS clock; MP4 and Matroska rescale as they need).
VIDEO_TIME_BASE = Fraction(1, 90000)

_US = 1_000_000
_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".ts": "mpegts", ".m2ts": "mpegts"}


def track_kind(track: Track) -> TrackKind:
    """ "video" or "audio", from the track's role, else its codec."""
    if track.role in ("video", "audio"):
        return "video" if track.role == "video" else "audio"
    codec = track.codec or ""
    if codec.startswith(("avc1", "avc3", "hev1", "hvc1", "vp08", "vp8", "vp09", "av01")):
        return "video"
    if codec.startswith(("opus", "mp4a", "flac", "vorbis")):
        return "audio"
    raise MediaError(f"track {track.name!r}: cannot tell audio from video (role {track.role!r}, codec {codec!r})")


def decoder_name(codec: str) -> str:
    """The FFmpeg decoder for a WebCodecs codec string (H.264, VP8, Opus and AAC; browsers that cannot encode
    H.264 publish VP8)."""
    family = codec.split(".", 1)[0]
    names = {"avc1": "h264", "avc3": "h264", "vp8": "vp8", "vp08": "vp8", "opus": "opus", "mp4a": "aac"}
    if family not in names:
        raise MediaError(f"codec {codec!r} is not supported: H.264, VP8, Opus and AAC are")
    return names[family]


def _aac_fallback_config(track: Track) -> bytes:
    """An AudioSpecificConfig from the catalog alone, for AAC tracks that send no AUDIO_CONFIG."""
    aot = int((track.codec or "mp4a.40.2").rsplit(".", 1)[-1] or 2)
    rate = track.samplerate or 48000
    if rate not in codecs.AAC_SAMPLE_RATES:
        raise MediaError(f"track {track.name!r}: no AAC sampling index for {rate} Hz")
    return codecs.audio_specific_config(aot, codecs.AAC_SAMPLE_RATES.index(rate), int(track.channel_config or 2))


def _channels(track: Track) -> int:
    try:
        return max(1, int(track.channel_config or 2))
    except ValueError:
        return 2  # a configuration string we cannot read as a count (e.g. an NGA layout)


def _audio_config(track: Track, config: bytes | None) -> bytes | None:
    """The extradata an audio decoder or muxer needs: the track's own, or one derived from the catalog."""
    if config is not None:
        return config
    name = decoder_name(track.codec or "")
    if name == "aac":
        return _aac_fallback_config(track)
    if name == "opus":
        return codecs.opus_head(min(2, _channels(track)), track.samplerate or 48000)
    return None


class TrackDecoder:
    """Decodes one track's LOC frames with PyAV; counts what it decoded and what it had to skip."""

    def __init__(self, track: Track) -> None:
        self.track = track
        self.kind = track_kind(track)
        self.codec = decoder_name(track.codec or "")
        self._ctx: CodecContext | None = None
        self._config: bytes | None = None
        self.frames_decoded = 0
        #: Frames dropped because the decoder could not start yet (no decoder configuration, no keyframe).
        self.frames_skipped = 0
        # A keyframe has been fed: what follows can be decoded. Not "a picture came out": a decoder that reorders
        # (B-frames) holds the first pictures back, and the frames fed meanwhile are needed.
        self._started = False
        self.width: int | None = None
        self.height: int | None = None

    def _context(self, config: bytes | None) -> CodecContext | None:
        if self._ctx is not None and (config is None or config == self._config):
            return self._ctx
        if self.kind == "video":
            if config is None and (self.track.codec or "").startswith("avc1"):
                return None  # avc1 cannot start without its avcC
            vctx = cast(VideoCodecContext, av.CodecContext.create(self.codec, "r"))
            vctx.extradata = config
            ctx: CodecContext = vctx
        else:
            actx = cast(AudioCodecContext, av.CodecContext.create(self.codec, "r"))
            actx.sample_rate = self.track.samplerate or 48000
            actx.layout = "mono" if _channels(self.track) == 1 else "stereo"
            actx.extradata = _audio_config(self.track, config)
            ctx = actx
        ctx.open()
        self._ctx, self._config = ctx, config
        return ctx

    def decode(self, frame: LocFrame) -> list[VideoFrame] | list[AudioFrame]:
        """The pictures or sample blocks this frame completes (none while the decoder waits for a start)."""
        config = frame.video_config if self.kind == "video" else frame.audio_config
        ctx = self._context(config)
        if ctx is None or (self.kind == "video" and not self._started and frame.keyframe is False):
            self.frames_skipped += 1
            return []
        self._started = True
        packet = Packet(frame.payload)
        if frame.time_us is not None:
            packet.pts = frame.time_us
            packet.time_base = Fraction(1, _US)
        try:
            out = self._decode(ctx, packet)
        except av.error.FFmpegError as exc:
            log.warning("track %s: a frame did not decode: %s", self.track.name, exc)
            self.frames_skipped += 1
            return []
        return out

    def _decode(self, ctx: CodecContext, packet: Packet[Stream] | None) -> list[VideoFrame] | list[AudioFrame]:
        if isinstance(ctx, VideoCodecContext):
            pictures = ctx.decode(packet)
            self.frames_decoded += len(pictures)
            if pictures:
                self.width, self.height = pictures[-1].width, pictures[-1].height
            return pictures
        assert isinstance(ctx, AudioCodecContext)
        blocks = ctx.decode(packet)
        self.frames_decoded += len(blocks)
        return blocks

    def flush(self) -> list[VideoFrame] | list[AudioFrame]:
        """Whatever the decoder still holds."""
        if self._ctx is None:
            return []
        return self._decode(self._ctx, None)


# -- Recording -------------------------------------------------------------------------------------------------


class _DtsAssigner:
    """Decode times for frames in decode order that carry presentation times only (see the module notes)."""

    def __init__(self, window: int) -> None:
        self._window = window
        self._queue: deque[tuple[int, Packet[Stream]]] = deque()
        self._last: int | None = None

    def push(self, pts: int, packet: Packet[Stream]) -> list[Packet[Stream]]:
        self._queue.append((pts, packet))
        out = []
        while len(self._queue) > self._window:
            out.append(self._pop())
        return out

    def drain(self) -> list[Packet[Stream]]:
        return [self._pop() for _ in range(len(self._queue))]

    def _pop(self) -> Packet[Stream]:
        pts, packet = self._queue.popleft()
        dts = min([pts, *(p for p, _ in self._queue)]) - self._window
        if self._last is not None and dts <= self._last:
            dts = self._last + 1
        self._last = dts
        packet.pts, packet.dts = pts, dts
        return packet


class _Output:
    """One track of the recording."""

    def __init__(self, track: Track, window: int) -> None:
        self.track = track
        self.kind = track_kind(track)
        self.codec = decoder_name(track.codec or "")
        self.config: bytes | None = None
        self.started = False  # a decodable first frame has been seen
        self.stream: Stream | None = None
        self.time_base = VIDEO_TIME_BASE if self.kind == "video" else Fraction(1, track.samplerate or 48000)
        self.dts = _DtsAssigner(window if self.kind == "video" else 0)
        self.written = 0


class Recorder:
    """Muxes received frames into an .mp4, .mkv or .ts file (or a file object) that players and ffprobe open.

    `write()` takes each track's LOC frames in decode order. Nothing is written until every track has a decodable
    start (or `MAX_PENDING_FRAMES` are waiting); video frames before the first keyframe are dropped.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | BinaryIO,
        tracks: Sequence[Track],
        *,
        format: str | None = None,
        max_reorder: int = MAX_REORDER_FRAMES,
    ) -> None:
        if not tracks:
            raise ValueError("a recording needs at least one track")
        if format is None:
            if isinstance(target, str | os.PathLike):
                format = _FORMATS.get(Path(target).suffix.lower())
            if format is None:
                raise ValueError(f"cannot tell the container format of {target!r}: name it (mp4, matroska, mpegts)")
        self.format = format
        self._outputs = {t.name: _Output(t, max_reorder) for t in tracks}
        self._pending: list[tuple[_Output, int, bytes, bool]] = []
        self._origin_us: int | None = None
        container_options: dict[str, str] = {}
        if format in ("mp4", "mov") and not isinstance(target, str | os.PathLike):
            # A pipe cannot be rewound to write the index at the end: write a fragmented file instead.
            container_options["movflags"] = "frag_keyframe+empty_moov+default_base_moof"
        if format == "mpegts" and not isinstance(target, str | os.PathLike):
            container_options["flush_packets"] = "1"  # a live pipe: hand each packet on at once
        try:
            self._container: OutputContainer = av.open(
                target if not isinstance(target, os.PathLike) else os.fspath(target),
                "w",
                format=format,
                container_options=container_options,
            )
        except (OSError, av.error.FFmpegError) as exc:
            raise MediaError(f"cannot write {target!r}: {exc}") from None
        self._closed = False

    @property
    def frames_written(self) -> dict[str, int]:
        """Frames muxed so far, per track name."""
        return {name: out.written for name, out in self._outputs.items()}

    def write(self, track_name: str, frame: LocFrame, *, keyframe: bool | None = None) -> None:
        """Add one frame of `track_name`; `keyframe` overrides the frame's marking (object 0 of a group is one)."""
        out = self._outputs.get(track_name)
        if out is None:
            raise KeyError(f"track {track_name!r} is not being recorded")
        time_us = frame.time_us
        if time_us is None:
            raise MediaError(f"track {track_name!r}: a frame without TIMESTAMP cannot be placed in time")
        key = keyframe if keyframe is not None else bool(frame.keyframe)
        if out.kind == "video":
            if frame.video_config is not None:
                out.config = frame.video_config
            if not out.started:
                if not key or (out.config is None and self._needs_config(out)):
                    return
                out.started = True
        else:
            if frame.audio_config is not None:
                out.config = frame.audio_config
            out.started = True
        if self._origin_us is None:
            self._pending.append((out, time_us, frame.payload, key))
            if all(o.started for o in self._outputs.values()) or len(self._pending) > MAX_PENDING_FRAMES:
                self._start()
            return
        if out.stream is not None:
            self._mux(out, time_us, frame.payload, key)

    @staticmethod
    def _needs_config(out: _Output) -> bool:
        return (out.track.codec or "").startswith("avc1")

    def _start(self) -> None:
        """Add the streams that have started, write the header, then the frames that waited."""
        self._origin_us = min(t for _, t, _, _ in self._pending) if self._pending else 0
        for out in self._outputs.values():
            if not out.started:
                log.warning("track %s never started: left out of the recording", out.track.name)
                continue
            out.stream = self._add_stream(out)
        pending, self._pending = self._pending, []
        for out, time_us, payload, key in pending:
            if out.stream is not None:
                self._mux(out, time_us, payload, key)

    def _add_stream(self, out: _Output) -> Stream:
        track = out.track
        if out.kind == "video":
            # A stream with an encoder context is what PyAV can describe (size, extradata); the encoder is opened
            # for that only and never fed: the frames are muxed as they came.
            encoder = "libvpx" if out.codec == "vp8" else "libx264"
            rate = Fraction(track.framerate or 30).limit_denominator(1001)
            vstream = cast(VideoStream, self._container.add_stream(encoder, rate=rate))
            vctx = vstream.codec_context
            width, height = track.width, track.height
            if (not width or not height) and out.config and out.codec == "h264":
                sps = codecs.parse_sps(codecs.parse_avcc(out.config).sps[0])
                width, height = sps.width, sps.height
            vctx.width, vctx.height = width or 1280, height or 720
            vctx.pix_fmt = "yuv420p"
            vctx.time_base = out.time_base
            vstream.time_base = out.time_base
            if out.codec == "h264":
                vctx.options = {"preset": "ultrafast"}
            vctx.open()
            if out.config:
                vctx.extradata = out.config
            return vstream
        encoder = {"opus": "libopus", "aac": "aac"}[out.codec]
        astream = cast(AudioStream, self._container.add_stream(encoder, rate=track.samplerate or 48000))
        actx = astream.codec_context
        actx.layout = "mono" if _channels(track) == 1 else "stereo"
        actx.format = "s16" if encoder == "libopus" else "fltp"
        actx.time_base = out.time_base
        astream.time_base = out.time_base
        actx.open()
        actx.extradata = _audio_config(track, out.config)
        return astream

    def _mux(self, out: _Output, time_us: int, payload: bytes, keyframe: bool) -> None:
        assert self._origin_us is not None and out.stream is not None
        if time_us < self._origin_us:
            return  # older than the recording's start
        pts = round((time_us - self._origin_us) * out.time_base.denominator / (_US * out.time_base.numerator))
        packet = Packet(payload)
        packet.stream = out.stream
        packet.time_base = out.time_base
        packet.is_keyframe = keyframe
        for ready in out.dts.push(pts, packet):
            self._mux_one(out, ready)

    def _mux_one(self, out: _Output, packet: Packet[Stream]) -> None:
        try:
            self._container.mux(packet)
            out.written += 1
        except (av.error.FFmpegError, ValueError, BitstreamError) as exc:
            log.warning("track %s: a frame could not be muxed: %s", out.track.name, exc)

    def close(self) -> None:
        """Write what is left and the file's trailer."""
        if self._closed:
            return
        self._closed = True
        if self._origin_us is None and self._pending:
            self._start()
        for out in self._outputs.values():
            for packet in out.dts.drain():
                self._mux_one(out, packet)
        self._container.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class TsWriter(Recorder):
    """MPEG-TS to a file object, flushed packet by packet: `moq subscribe --output -` piped into ffplay."""

    def __init__(self, fileobj: BinaryIO, tracks: Sequence[Track], *, max_reorder: int = MAX_REORDER_FRAMES) -> None:
        super().__init__(fileobj, tracks, format="mpegts", max_reorder=max_reorder)
