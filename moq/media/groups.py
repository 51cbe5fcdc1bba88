"""Encoded frames to MOQT groups and objects, packaged as LOC.

The rules, and where they come from:

- Video: one group per GOP. MSF §"LOC packaging": "Samples that belong to the same Group of Pictures (GOP) MUST be
  placed within the same MOQT Group"; LOC-04 §"Application with one single quality video track": the group id
  increments at each IDR frame, object 0 is the IDR frame, then one object per frame in decode order. Frames before
  the first keyframe cannot be decoded by anyone and are dropped.
- Audio: every frame is a random access point, so a group may hold any number of frames. LOC-04 §"Application with
  one audio track" puts one audio frame in each group (object 0 only); we follow it by default
  (`AUDIO_FRAMES_PER_GROUP` = 1): a subscriber joining at the latest group then starts at the newest 20 ms of
  audio, and a relay that drops a late group loses one frame, not a second. The price is one QUIC stream per
  20 ms per subscriber, which the transport's stream gating is built for.
- Group ids: MSF §"Group numbering": unique, increasing, +1 per group, and a restarted publisher must start above
  every id it used before: "use the current wall clock time in milliseconds since the Unix epoch as the starting
  Group ID". A mapper starts there; since groups come far less often than once a millisecond, a restart always
  lands above the previous run's ids.
- Object ids 0, 1, 2, ... within each group (MSF §"Object Numbering"), all in subgroup 0.
- Decoder configuration rides on object 0 of each group, so that a subscriber joining at any group can start
  decoding (LOC-04 §"Video Config": parameter sets "sent in headers before key frames"). Opus mono/stereo needs no
  configuration (WebCodecs and FFmpeg decode it without an OpusHead), so by default its OpusHead is not repeated:
  on 20 ms frames it would cost about 8 kbit/s.
- Streams are the transport's business; what the helper gives is one subgroup (0) per group, which LOC's examples
  send as one QUIC stream per group. MSF §"Media transmission" says "each MOQT Object MUST be mapped to a new MOQT
  Stream", which contradicts its own group and LOC's examples; we read it as "each group".
- Every video object carries a one-byte VIDEO_FRAME_MARKING whose I bit says "keyframe", so a relay can tell
  group starts without reading the payload.
"""

from __future__ import annotations

import time

import msgspec

from moq.media.frames import EncodedFrame, TrackKind
from moq.media.loc import LocFrame
from moq.wire.primitives import Properties

#: Audio frames per MOQT group (LOC-04 §"Application with one audio track": one).
AUDIO_FRAMES_PER_GROUP = 1


def wallclock_group_start() -> int:
    """A starting group id above any a previous run used: now in milliseconds since the epoch (MSF §"Group
    numbering")."""
    return time.time_ns() // 1_000_000


class LocObject(msgspec.Struct, frozen=True, kw_only=True):
    """One MOQT object to publish: where it goes and what it carries."""

    group_id: int
    object_id: int
    subgroup_id: int = 0
    properties: Properties
    payload: bytes
    frame: EncodedFrame

    @property
    def new_group(self) -> bool:
        """True for the first object of a group (the caller opens a new subgroup stream)."""
        return self.object_id == 0


def sends_config(frame: EncodedFrame) -> bool:
    """Whether object 0 of each group should carry the decoder configuration (see the module notes)."""
    info = frame.info
    if info.config is None:
        return False
    return not (info.codec == "opus" and (info.channels or 2) <= 2)


class GroupMapper:
    """Assigns group and object ids to one track's frames and packages them as LOC objects."""

    def __init__(
        self,
        kind: TrackKind,
        *,
        start_group: int | None = None,
        frames_per_group: int | None = None,
        send_config: bool | None = None,
    ) -> None:
        """`frames_per_group` applies to audio (default `AUDIO_FRAMES_PER_GROUP`); video groups follow keyframes.
        `send_config` None chooses per codec (`sends_config`)."""
        if frames_per_group is not None and frames_per_group < 1:
            raise ValueError("frames_per_group must be at least 1")
        if kind == "video" and frames_per_group is not None:
            raise ValueError("video groups follow GOPs; frames_per_group is for audio")
        self.kind: TrackKind = kind
        self._next_group = wallclock_group_start() if start_group is None else start_group
        self._frames_per_group = frames_per_group or AUDIO_FRAMES_PER_GROUP
        self._send_config = send_config
        self._group: int | None = None
        self._object = 0
        #: Frames dropped because no keyframe had opened a group yet.
        self.dropped = 0

    @property
    def group_id(self) -> int | None:
        """The current group, or None before the first."""
        return self._group

    def push(self, frame: EncodedFrame) -> LocObject | None:
        """The object for `frame`, or None when it is dropped (video before the first keyframe)."""
        if frame.kind != self.kind:
            raise ValueError(f"a {self.kind} mapper was given a {frame.kind} frame")
        if self.kind == "video":
            opens = frame.keyframe
        else:
            opens = self._group is None or self._object >= self._frames_per_group
        if opens:
            self._group = self._next_group
            self._next_group += 1
            self._object = 0
        elif self._group is None:
            self.dropped += 1
            return None
        assert self._group is not None
        send_config = self._send_config if self._send_config is not None else sends_config(frame)
        config = frame.config if self._object == 0 and send_config else None
        video = self.kind == "video"
        loc = LocFrame(
            payload=frame.payload,
            timestamp=frame.timestamp_us,
            keyframe=frame.keyframe if video else None,
            video_config=config if video else None,
            audio_config=None if video else config,
        )
        properties, payload = loc.to_object()
        obj = LocObject(
            group_id=self._group, object_id=self._object, properties=properties, payload=payload, frame=frame
        )
        self._object += 1
        return obj
