"""LOC objects (draft-ietf-moq-loc-04): properties to the wire and back, codepoints, malformed properties."""

from __future__ import annotations

import msgspec
import pytest
from aioquic.buffer import Buffer
from hypothesis import example, given
from hypothesis import strategies as st

from moq.media.errors import LocError
from moq.media.loc import AudioLevel, FrameMarking, LocFrame, LocProperty
from moq.wire.primitives import Properties, encode_key_values, pull_key_values
from moq.wire.varint import MAX_VARINT


def wire_round_trip(properties: Properties) -> Properties:
    """Through the real MOQT key-value codec, as an object header carries them."""
    data = encode_key_values(properties)
    return pull_key_values(Buffer(data=data), len(data))


def test_codepoints_match_the_loc_04_registry() -> None:
    """§6 "MOQ Properties Registry": the values, and their parity (even = vi64, odd = length + bytes)."""
    assert {p.name: int(p) for p in LocProperty} == {
        "TIMESCALE": 0x08,
        "VIDEO_FRAME_MARKING": 0x09,
        "AUDIO_LEVEL": 0x0C,
        "VIDEO_CONFIG": 0x0D,
        "AUDIO_CONFIG": 0x0F,
        "TIMESTAMP": 0x10,
    }
    for integer in (LocProperty.TIMESTAMP, LocProperty.TIMESCALE, LocProperty.AUDIO_LEVEL):
        assert integer % 2 == 0
    for blob in (LocProperty.VIDEO_FRAME_MARKING, LocProperty.VIDEO_CONFIG, LocProperty.AUDIO_CONFIG):
        assert blob % 2 == 1


def test_video_keyframe_round_trip() -> None:
    frame = LocFrame(
        payload=b"\x00\x00\x00\x02\x65\x88",
        timestamp=1_763_700_000_123_456,
        keyframe=True,
        video_config=b"\x01\x42\xc0\x1e",
    )
    properties, payload = frame.to_object()
    assert payload == frame.payload
    # Ascending types; the keyframe is the I bit of a one-byte RFC 9626 marking with S and E set.
    assert properties == (
        (0x09, b"\xe0"),
        (0x0D, b"\x01\x42\xc0\x1e"),
        (0x10, 1_763_700_000_123_456),
    )
    decoded = LocFrame.from_object(wire_round_trip(properties), payload)
    assert decoded == frame
    assert decoded.is_wallclock and decoded.time_us == frame.timestamp


def test_delta_frame_marking_and_audio_level() -> None:
    assert LocFrame(payload=b"", keyframe=False).to_object()[0] == ((0x09, b"\xc0"),)
    audio = LocFrame(payload=b"\xfc", timestamp=5, audio_level=AudioLevel(voice=True, level=30))
    properties, _ = audio.to_object()
    assert (0x0C, 0x80 | 30) in properties
    assert LocFrame.from_object(wire_round_trip(properties), b"\xfc") == audio


def test_timescale_makes_the_timestamp_media_time() -> None:
    """§"Timescale": with TIMESCALE present the timestamp is media time in those units."""
    frame = LocFrame(payload=b"x", timestamp=180_000, timescale=90_000)
    assert not frame.is_wallclock
    assert frame.time_us == 2_000_000
    decoded = LocFrame.from_object(*frame.to_object())
    assert decoded.timescale == 90_000 and decoded.time_us == 2_000_000


def test_scalable_frame_marking() -> None:
    marking = FrameMarking(
        independent=False, discardable=True, base_layer_sync=True, temporal_id=2, layer_id=1, tl0_pic_idx=7
    )
    assert marking.encode() == bytes((0b1101_1010, 1, 7))
    frame = LocFrame(payload=b"", frame_marking=marking)
    assert frame.keyframe is False  # mirrors the I bit
    assert LocFrame.from_object(*frame.to_object()) == frame


def test_unknown_properties_are_kept_apart() -> None:
    properties = ((0x02, 7), (0x10, 99), (0x3B, b"opaque"))
    frame = LocFrame.from_object(properties, b"p")
    assert frame.timestamp == 99
    assert frame.other == ((0x02, 7), (0x3B, b"opaque"))
    assert frame.to_object() == (properties, b"p")


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        (((0x10, b"\x01"),), "must carry int"),
        (((0x0D, 5),), "must carry bytes"),
        (((0x10, 1), (0x10, 2)), "appears twice"),
        (((0x08, 0),), "TIMESCALE must be positive"),
        (((0x09, b""),), "not 1 to 4"),
        (((0x09, b"12345"),), "not 1 to 4"),
        (((0x0C, 0x100),), "8 bits"),
    ],
)
def test_malformed_properties_raise_loc_error(properties: Properties, message: str) -> None:
    with pytest.raises(LocError, match=message):
        LocFrame.from_object(properties, b"")


def test_loc_types_cannot_sneak_in_as_extra() -> None:
    with pytest.raises(LocError):
        LocFrame(payload=b"").to_object(extra=((0x10, 1),))
    with pytest.raises(LocError):
        LocFrame(payload=b"", keyframe=True, frame_marking=FrameMarking(independent=False))


markings = st.builds(
    FrameMarking,
    start=st.booleans(),
    end=st.booleans(),
    independent=st.booleans(),
    discardable=st.booleans(),
    base_layer_sync=st.booleans(),
    temporal_id=st.integers(0, 7),
    layer_id=st.none() | st.integers(0, 255),
)
frames = st.builds(
    LocFrame,
    payload=st.binary(max_size=64),
    timestamp=st.none() | st.integers(0, MAX_VARINT),
    timescale=st.none() | st.integers(1, MAX_VARINT),
    keyframe=st.none() | st.booleans(),
    video_config=st.none() | st.binary(max_size=40),
    audio_config=st.none() | st.binary(max_size=40),
    audio_level=st.none() | st.builds(AudioLevel, st.booleans(), st.integers(0, 127)),
    other=st.lists(
        st.integers(0x40, 0x60).flatmap(
            lambda k: st.tuples(st.just(k), st.binary(max_size=8) if k % 2 else st.integers(0, MAX_VARINT))
        ),
        max_size=3,
    ).map(lambda pairs: tuple(sorted(pairs, key=lambda kv: kv[0]))),
)


@given(frames, st.none() | markings)
@example(LocFrame(payload=b"", timestamp=MAX_VARINT, timescale=1), None)
@example(LocFrame(payload=b"", timestamp=0x3F, keyframe=False), FrameMarking(independent=False, temporal_id=7))
def test_round_trip_through_the_wire(frame: LocFrame, marking: FrameMarking | None) -> None:
    if marking is not None and frame.keyframe in (None, marking.independent):
        frame = LocFrame(**(msgspec.structs.asdict(frame) | {"frame_marking": marking}))
    properties, payload = frame.to_object()
    assert LocFrame.from_object(wire_round_trip(properties), payload) == frame
