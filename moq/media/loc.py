"""Low Overhead Media Container (draft-ietf-moq-loc-04): one encoded frame per MOQT object.

An object's properties carry the LOC public properties (§2.3 "LOC Properties", registered in §6):

| type | name                | value                                                                   |
|------|---------------------|-------------------------------------------------------------------------|
| 0x08 | TIMESCALE           | vi64: TIMESTAMP units per second                                        |
| 0x09 | VIDEO_FRAME_MARKING | bytes: RFC 9626 frame marking (1-4 bytes)                               |
| 0x0C | AUDIO_LEVEL         | vi64: RFC 6464 §3 byte (V flag, level in -dBov) in the low 8 bits       |
| 0x0D | VIDEO_CONFIG        | bytes: decoder "extradata" = WebCodecs VideoDecoderConfig.description   |
| 0x0F | AUDIO_CONFIG        | bytes: AudioDecoderConfig.description                                   |
| 0x10 | TIMESTAMP           | vi64: in TIMESCALE units; without TIMESCALE, microseconds since the Unix epoch |

Even types carry an integer, odd types bytes, as every MOQT key-value pair (transport §"Key-Value-Pair").

The payload is the LOC payload as is: LOC private properties (§2.2 figure) only exist inside a Secure Objects
ciphertext (§3.1.3, type 0xA), and we do not encrypt, so there is nothing to strip.

Capture time. LOC-04 has no separate "capture wall clock" property. TIMESTAMP without TIMESCALE *is* wall-clock
time in microseconds since the Unix epoch (§"Timestamp", §"Timescale"); with TIMESCALE it becomes media time with an
application-defined epoch. We send TIMESTAMP alone, set to the capture wall clock: it serves as the media timeline
(tracks of one broadcast share the anchor, so they stay in sync) and lets a receiver measure end-to-end latency as
its own clock minus TIMESTAMP (given synchronized clocks). A frame read from a file gets the wall-clock time at which
the paced reader "captures" it: start time + media time.
"""

from __future__ import annotations

from enum import IntEnum

import msgspec

from moq.media.errors import LocError
from moq.wire.primitives import KeyValue, Properties


class LocProperty(IntEnum):
    """LOC property types (draft-ietf-moq-loc-04 §6, "MOQ Properties Registry")."""

    TIMESCALE = 0x08
    VIDEO_FRAME_MARKING = 0x09
    AUDIO_LEVEL = 0x0C
    VIDEO_CONFIG = 0x0D
    AUDIO_CONFIG = 0x0F
    TIMESTAMP = 0x10


#: The timescale a TIMESTAMP without TIMESCALE is in: microseconds (LOC-04 §"Timestamp").
DEFAULT_TIMESCALE = 1_000_000

_LOC_TYPES = frozenset(int(p) for p in LocProperty)


class FrameMarking(msgspec.Struct, frozen=True, kw_only=True):
    """An RFC 9626 video frame marking (LOC-04 §"Video Frame Marking").

    One byte `S E I D B TID` (RFC 9626 §3.2, scalable form; the non-scalable form of §3.1 is the same byte with B and
    TID zero), then optionally LID and TL0PICIDX bytes for scalable streams.
    """

    start: bool = True
    end: bool = True
    independent: bool = False
    discardable: bool = False
    base_layer_sync: bool = False
    temporal_id: int = 0
    layer_id: int | None = None
    tl0_pic_idx: int | None = None

    def encode(self) -> bytes:
        """The marking's bytes (1 to 3)."""
        if not 0 <= self.temporal_id <= 7:
            raise LocError(f"temporal id {self.temporal_id} does not fit in 3 bits")
        first = (
            (self.start << 7)
            | (self.end << 6)
            | (self.independent << 5)
            | (self.discardable << 4)
            | (self.base_layer_sync << 3)
            | self.temporal_id
        )
        out = bytearray((first,))
        if self.layer_id is not None:
            out.append(self.layer_id)
            if self.tl0_pic_idx is not None:
                out.append(self.tl0_pic_idx)
        elif self.tl0_pic_idx is not None:
            raise LocError("TL0PICIDX needs a layer id before it")
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> FrameMarking:
        """Parse 1 to 4 bytes (LOC-04 allows 4; a fourth, codec-specific byte is ignored)."""
        if not 1 <= len(data) <= 4:
            raise LocError(f"VIDEO_FRAME_MARKING is {len(data)} bytes, not 1 to 4")
        b = data[0]
        return cls(
            start=bool(b & 0x80),
            end=bool(b & 0x40),
            independent=bool(b & 0x20),
            discardable=bool(b & 0x10),
            base_layer_sync=bool(b & 0x08),
            temporal_id=b & 0x07,
            layer_id=data[1] if len(data) > 1 else None,
            tl0_pic_idx=data[2] if len(data) > 2 else None,
        )


class AudioLevel(msgspec.Struct, frozen=True):
    """RFC 6464 §3 audio level: voice activity flag and level in -dBov (0 loudest, 127 silence)."""

    voice: bool
    level: int

    def encode(self) -> int:
        """The byte value carried in the low 8 bits of AUDIO_LEVEL."""
        if not 0 <= self.level <= 127:
            raise LocError(f"audio level {self.level} is not 0..127")
        return (self.voice << 7) | self.level

    @classmethod
    def decode(cls, value: int) -> AudioLevel:
        """Parse the property value (LOC-04: the RFC 6464 byte in the least significant 8 bits of a vi64)."""
        if not 0 <= value <= 0xFF:
            raise LocError(f"AUDIO_LEVEL {value} does not fit in 8 bits")
        return cls(bool(value & 0x80), value & 0x7F)


class LocFrame(msgspec.Struct, frozen=True, kw_only=True):
    """One LOC object: the payload and its LOC properties (draft-ietf-moq-loc-04 §2.2, §2.3).

    `timestamp` is in `timescale` units; `timescale` None means none is sent and `timestamp` is microseconds since
    the Unix epoch. `keyframe` travels as the independent (I) bit of a VIDEO_FRAME_MARKING; `frame_marking` may
    give the full marking instead (then `keyframe` must be None or agree). Properties that are not LOC's are kept,
    untouched, in `other`.
    """

    payload: bytes
    timestamp: int | None = None
    timescale: int | None = None
    keyframe: bool | None = None
    video_config: bytes | None = None
    audio_config: bytes | None = None
    frame_marking: FrameMarking | None = None
    audio_level: AudioLevel | None = None
    other: Properties = ()

    def __post_init__(self) -> None:
        if self.timescale is not None and self.timescale <= 0:
            raise LocError(f"TIMESCALE must be positive, not {self.timescale}")
        if self.timestamp is not None and self.timestamp < 0:
            raise LocError(f"TIMESTAMP must not be negative: {self.timestamp}")
        marking = self.frame_marking
        if marking is not None:
            if self.keyframe is not None and marking.independent != self.keyframe:
                raise LocError("keyframe disagrees with the frame marking's independent bit")
            # One canonical form, so that decode(encode(x)) == x: `keyframe` always mirrors the I bit, and a marking
            # that says nothing but the I bit is held as `keyframe` alone.
            msgspec.structs.force_setattr(self, "keyframe", marking.independent)
            if marking == _simple_marking(marking):
                msgspec.structs.force_setattr(self, "frame_marking", None)

    @property
    def is_wallclock(self) -> bool:
        """True when `timestamp` is wall-clock time (no TIMESCALE sent)."""
        return self.timescale is None

    @property
    def time_us(self) -> int | None:
        """`timestamp` in microseconds (wall clock since the epoch, or media time if a TIMESCALE is sent)."""
        if self.timestamp is None:
            return None
        scale = self.timescale or DEFAULT_TIMESCALE
        return self.timestamp if scale == DEFAULT_TIMESCALE else self.timestamp * DEFAULT_TIMESCALE // scale

    @property
    def marking(self) -> FrameMarking | None:
        """The frame marking to send: the explicit one, or one built from `keyframe`."""
        if self.frame_marking is not None:
            return self.frame_marking
        if self.keyframe is None:
            return None
        return FrameMarking(independent=self.keyframe, base_layer_sync=False)

    def to_object(self, extra: Properties = ()) -> tuple[Properties, bytes]:
        """The MOQT object properties and payload for this frame; `extra` pairs (not LOC's) are added."""
        props: list[KeyValue] = []
        if self.timestamp is not None:
            props.append((LocProperty.TIMESTAMP, self.timestamp))
        if self.timescale is not None:
            props.append((LocProperty.TIMESCALE, self.timescale))
        marking = self.marking
        if marking is not None:
            props.append((LocProperty.VIDEO_FRAME_MARKING, marking.encode()))
        if self.video_config is not None:
            props.append((LocProperty.VIDEO_CONFIG, self.video_config))
        if self.audio_config is not None:
            props.append((LocProperty.AUDIO_CONFIG, self.audio_config))
        if self.audio_level is not None:
            props.append((LocProperty.AUDIO_LEVEL, self.audio_level.encode()))
        for pair in (*self.other, *extra):
            if pair[0] in _LOC_TYPES:
                raise LocError(f"property 0x{pair[0]:x} is LOC's: set it through its field")
            props.append(pair)
        # Ascending type order, as the wire writes them (transport §"Key-Value-Pair" delta encoding).
        props.sort(key=lambda kv: kv[0])
        return tuple((int(k), v) for k, v in props), self.payload

    @classmethod
    def from_object(cls, properties: Properties, payload: bytes) -> LocFrame:
        """Read a LOC object; a LOC property with the wrong value kind, or repeated, is a `LocError`."""
        seen: dict[int, int | bytes] = {}
        other: list[KeyValue] = []
        for kind, value in properties:
            if kind not in _LOC_TYPES:
                other.append((kind, value))
                continue
            if kind in seen:
                raise LocError(f"LOC property 0x{kind:x} appears twice")
            want = bytes if kind & 1 else int
            if not isinstance(value, want) or isinstance(value, bool):
                raise LocError(f"LOC property 0x{kind:x} must carry {want.__name__}")
            seen[kind] = value
        marking_raw = seen.get(LocProperty.VIDEO_FRAME_MARKING)
        marking = FrameMarking.decode(marking_raw) if isinstance(marking_raw, bytes) else None
        level = seen.get(LocProperty.AUDIO_LEVEL)
        timestamp = seen.get(LocProperty.TIMESTAMP)
        timescale = seen.get(LocProperty.TIMESCALE)
        vconf = seen.get(LocProperty.VIDEO_CONFIG)
        aconf = seen.get(LocProperty.AUDIO_CONFIG)
        return cls(
            payload=payload,
            timestamp=timestamp if isinstance(timestamp, int) else None,
            timescale=timescale if isinstance(timescale, int) else None,
            video_config=vconf if isinstance(vconf, bytes) else None,
            audio_config=aconf if isinstance(aconf, bytes) else None,
            frame_marking=marking,
            audio_level=AudioLevel.decode(level) if isinstance(level, int) else None,
            other=tuple(other),
        )


def _simple_marking(marking: FrameMarking) -> FrameMarking:
    """The marking `keyframe` alone would produce; a decoded marking equal to it is folded into `keyframe`."""
    return FrameMarking(independent=marking.independent)
