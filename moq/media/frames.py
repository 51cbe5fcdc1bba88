"""What the encoding pipeline produces: encoded frames and the description of the stream they belong to.

Pure data (frozen msgspec Structs, DESIGN.md decision 7), free of PyAV, so the catalog, LOC and grouping code can
use them without importing FFmpeg.

Time: `pts_us` is media time in microseconds from the start of the input (it drives pacing and muxing);
`timestamp_us` is the wall-clock capture time in microseconds since the Unix epoch, which is what LOC's TIMESTAMP
carries when no TIMESCALE is sent (draft-ietf-moq-loc-04 §"Timestamp"). The pipeline makes
`timestamp_us = start wall clock + pts_us`, one anchor for every track of a broadcast, so the two tracks stay in
sync for a player and a receiver can read end-to-end latency as `now - timestamp_us`.
"""

from __future__ import annotations

from typing import Literal

import msgspec

TrackKind = Literal["video", "audio"]


class StreamInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One encoded stream as a catalog describes it (MSF §"Track Object Fields") plus its decoder configuration."""

    kind: TrackKind
    #: WebCodecs codec string: "avc1.64001f", "opus", "mp4a.40.2".
    codec: str
    #: Decoder configuration (WebCodecs `description`): avcC, AudioSpecificConfig or OpusHead; None if in band.
    config: bytes | None = None
    #: Target (or, for a pass-through, declared) bitrate in bits per second.
    bitrate: int | None = None
    width: int | None = None
    height: int | None = None
    framerate: float | None = None
    #: Frames per GOP when the encoder fixes it (one MOQT group per GOP); None for a pass-through.
    gop: int | None = None
    sample_rate: int | None = None
    channels: int | None = None


class EncodedFrame(msgspec.Struct, frozen=True, kw_only=True):
    """One encoded video frame or audio frame: the payload of one LOC object (draft-ietf-moq-loc-04 §2)."""

    info: StreamInfo
    #: The codec bitstream: avc1 access unit (4-byte NAL lengths), raw AAC frame, or Opus packet.
    payload: bytes
    #: Presentation time from the start of the input, in microseconds.
    pts_us: int
    duration_us: int
    keyframe: bool
    #: Wall-clock capture time, microseconds since the Unix epoch.
    timestamp_us: int
    #: 0-based count of frames of this kind the pipeline has produced.
    index: int = 0

    @property
    def kind(self) -> TrackKind:
        """ "video" or "audio"."""
        return self.info.kind

    @property
    def config(self) -> bytes | None:
        """The decoder configuration in force for this frame."""
        return self.info.config
