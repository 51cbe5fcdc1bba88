"""Data plane (moq.wire.data): stream types, subgroup/fetch streams, datagrams, padding; draft-18 and 20-22."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from moq.errors import EncodeError, MoqError, NeedMoreData, ProtocolViolation
from moq.wire.codes import ObjectStatus, SessionErrorCode
from moq.wire.data import (
    MAX_OBJECT_PAYLOAD_BYTES,
    ControlStreamData,
    DataStreamEvent,
    DataStreamParser,
    EndOfRangeKind,
    FetchEndOfRange,
    FetchHeader,
    FetchObject,
    FetchObjectEncoder,
    ObjectDatagram,
    ObjectTooLarge,
    Padding,
    StreamType,
    SubgroupHeader,
    SubgroupIdMode,
    SubgroupObject,
    decode_datagram,
    encode_datagram,
    encode_fetch_header,
    encode_padding_datagram,
    encode_padding_stream,
    encode_subgroup_header,
    encode_subgroup_object,
    encode_subgroup_object_header,
    peek_stream_type,
    stream_type_of,
    subgroup_id_mode_for,
)
from moq.wire.params import GroupOrder
from moq.wire.varint import MAX_VARINT, encode_varint
from moq.wire.version import Version
from tests.wire.data_strategies import (
    FetchEntry,
    datagrams,
    fetch_entries,
    group_orders,
    split,
    split_points,
    subgroup_headers,
    subgroup_streams,
    versions,
)

PV = SessionErrorCode.PROTOCOL_VIOLATION
V18, V20, V21, V22 = Version.DRAFT_18, Version.DRAFT_20, Version.DRAFT_21, Version.DRAFT_22
ALL_VERSIONS = list(Version)
NORMAL, EOG, EOT = ObjectStatus.NORMAL, ObjectStatus.END_OF_GROUP, ObjectStatus.END_OF_TRACK


def parse_whole(data: bytes, version: Version = V22, **kw: object) -> list[DataStreamEvent]:
    parser = DataStreamParser(version, **kw)  # type: ignore[arg-type]
    return parser.feed(data, fin=True)


def parse_pieces(pieces: list[bytes], version: Version = V22, **kw: object) -> list[DataStreamEvent]:
    parser = DataStreamParser(version, **kw)  # type: ignore[arg-type]
    events: list[DataStreamEvent] = []
    for piece in pieces:
        events += parser.feed(piece)
    events += parser.feed(b"", fin=True)
    return events


def parse_bytewise(data: bytes, version: Version = V22, **kw: object) -> list[DataStreamEvent]:
    return parse_pieces([data[i : i + 1] for i in range(len(data))], version, **kw)


def encode_subgroup_stream(header: SubgroupHeader, objects: list[SubgroupObject], version: Version) -> bytes:
    parts = [encode_subgroup_header(header, version)]
    prev = None
    for obj in objects:
        parts.append(encode_subgroup_object(header, prev, obj))
        prev = obj.object_id
    return b"".join(parts)


def encode_fetch_stream(request_id: int, entries: list[FetchEntry], version: Version, order: GroupOrder) -> bytes:
    encoder = FetchObjectEncoder(version, order)
    return encode_fetch_header(request_id) + b"".join(encoder.encode(entry) for entry in entries)


def expect_pv(fn: Callable[..., object], *args: object, match: str | None = None, **kw: object) -> ProtocolViolation:
    with pytest.raises(ProtocolViolation, match=match) as info:
        fn(*args, **kw)
    assert info.value.code == PV
    return info.value


# -- Golden bytes, written by hand from the draft figures -------------------------------------------------------


def test_golden_subgroup_header_type_0x10() -> None:
    # draft-21 Figure 25: Type 0x10 (subgroup 0, no properties, priority present), Track Alias 1, Group 2, priority.
    header = SubgroupHeader(1, 2, 0, 0x80, SubgroupIdMode.ZERO)
    assert header.type_flags == 0x10
    assert encode_subgroup_header(header, V22) == bytes.fromhex("10 01 02 80")
    assert parse_whole(bytes.fromhex("10 01 02 80")) == [header]


def test_golden_subgroup_header_variants() -> None:
    # 0x30: DEFAULT_PRIORITY, no priority byte.
    assert encode_subgroup_header(SubgroupHeader(1, 2, 0, None, SubgroupIdMode.ZERO), V18) == bytes.fromhex("30 01 02")
    # 0x14: explicit Subgroup ID 7, priority 0.
    assert encode_subgroup_header(SubgroupHeader(1, 2, 7, 0, SubgroupIdMode.EXPLICIT), V22) == bytes.fromhex(
        "14 01 02 07 00"
    )
    # 0x7B: FIRST_OBJECT|DEFAULT_PRIORITY|END_OF_GROUP|FIRST_OBJECT_ID mode|PROPERTIES; alias 300 = 2-byte varint.
    header = SubgroupHeader(300, 0, None, None, SubgroupIdMode.FIRST_OBJECT_ID, True, True, True)
    assert encode_subgroup_header(header, V22) == bytes.fromhex("7b 81 2c 00")


def test_golden_subgroup_objects() -> None:
    header = SubgroupHeader(1, 2, 0, 0x80, SubgroupIdMode.ZERO)
    stream = bytes.fromhex("10 01 02 80") + bytes.fromhex("00 05") + b"hello"  # object 0, delta 0
    stream += bytes.fromhex("01 02") + b"hi"  # object 0 + 1 + 1 = 2
    stream += bytes.fromhex("00 00 03")  # object 3: zero length, status End of Group
    assert parse_whole(stream) == [
        header,
        SubgroupObject(0, (), NORMAL, b"hello"),
        SubgroupObject(2, (), NORMAL, b"hi"),
        SubgroupObject(3, (), EOG, b""),
    ]
    assert encode_subgroup_object_header(header, None, 0, None, 5) == bytes.fromhex("00 05")
    assert encode_subgroup_object_header(header, 0, 2, None, 2) == bytes.fromhex("01 02")
    assert encode_subgroup_object_header(header, 2, 3, None, 0, EOG) == bytes.fromhex("00 00 03")


def test_golden_subgroup_object_with_properties() -> None:
    header = SubgroupHeader(1, 2, 0, None, SubgroupIdMode.ZERO, has_properties=True)
    # Properties: type 0x3C (PRIOR_GROUP_ID_GAP) = 5 -> 3c 05, length 2. Zero-length normal object: status 0.
    data = bytes.fromhex("31 01 02") + bytes.fromhex("04 02 3c 05 01") + b"z" + bytes.fromhex("00 00 00 00")
    assert parse_whole(data) == [
        header,
        SubgroupObject(4, ((0x3C, 5),), NORMAL, b"z"),
        SubgroupObject(5, (), NORMAL, b""),
    ]


def test_golden_object_datagram() -> None:
    # draft-21 Figure 24. Type 0x00: Object ID and priority present, payload to the end.
    dgram = ObjectDatagram(1, 2, 3, 0x80, payload=b"hi")
    assert encode_datagram(dgram, V22) == bytes.fromhex("00 01 02 03 80 68 69")
    assert decode_datagram(bytes.fromhex("00 01 02 03 80 68 69"), V22) == dgram
    # 0x0C: ZERO_OBJECT_ID | DEFAULT_PRIORITY.
    assert encode_datagram(ObjectDatagram(1, 2, 0, None, payload=b"hi"), V18) == bytes.fromhex("0c 01 02 68 69")
    # 0x2C: STATUS | DEFAULT_PRIORITY | ZERO_OBJECT_ID, status End of Track.
    assert encode_datagram(ObjectDatagram(1, 2, 0, None, status=EOT), V22) == bytes.fromhex("2c 01 02 04")
    # 0x03: PROPERTIES | END_OF_GROUP, properties {0x3E: 1} (2 bytes).
    dgram = ObjectDatagram(1, 2, 9, 7, ((0x3E, 1),), True, None, b"!")
    assert encode_datagram(dgram, V22) == bytes.fromhex("03 01 02 09 07 02 3e 01 21")
    assert decode_datagram(bytes.fromhex("03 01 02 09 07 02 3e 01 21"), V22) == dgram


def test_golden_fetch_stream() -> None:
    encoder = FetchObjectEncoder(V22)
    assert encode_fetch_header(7) == bytes.fromhex("05 07")
    # First object: flags 0x1C = Group ID Delta | Object ID Delta | Priority, subgroup 0; group 5, object 0.
    assert encoder.object_header(5, 0, 0, 0x80, None, 2) == bytes.fromhex("1c 05 00 80 02")
    # Next object of the same group, subgroup and priority: everything implicit.
    assert encoder.object_header(5, 0, 1, 0x80, None, 1) == bytes.fromhex("00 01")
    # Subgroup prior + 1 (mode 2), Object ID delta 3 (1 + 3 = 4).
    assert encoder.object_header(5, 1, 4, 0x80, None, 0) == bytes.fromhex("06 03 00")
    # End of Non-Existent Range 0x8C (2-byte varint 80 8c), absolute group 5 object 9.
    assert encoder.end_of_range(EndOfRangeKind.NON_EXISTENT, 5, 9) == bytes.fromhex("80 8c 05 09")
    # Next group in ascending order: Group ID Delta 0 (= 6), object 10 = prior 9 + 1, prior subgroup 1 (mode 1).
    assert encoder.object_header(6, 1, 10, 0x80, None, 0) == bytes.fromhex("09 00 00")
    # Datagram-preference object, new priority, explicit object 0 in group 8 (delta 1).
    assert encoder.object_header(8, None, 0, 3, None, 0) == bytes.fromhex("5c 01 00 03 00")
    assert encoder.end_of_range(EndOfRangeKind.UNKNOWN, 9, 0) == bytes.fromhex("81 0c 09 00")
    assert encoder.end_of_range(EndOfRangeKind.TIMED_OUT, 10, 0) == bytes.fromhex("82 0c 0a 00")
    stream = bytes.fromhex("05 07 1c 05 00 80 02") + b"ab" + bytes.fromhex("00 01 63 06 03 00 80 8c 05 09 09 00 00")
    stream += bytes.fromhex("5c 01 00 03 00 81 0c 09 00 82 0c 0a 00")
    assert parse_whole(stream) == [
        FetchHeader(7),
        FetchObject(5, 0, 0, 0x80, None, b"ab"),
        FetchObject(5, 0, 1, 0x80, None, b"c"),
        FetchObject(5, 1, 4, 0x80, None, b""),
        FetchEndOfRange(EndOfRangeKind.NON_EXISTENT, 5, 9),
        FetchObject(6, 1, 10, 0x80, None, b""),
        FetchObject(8, None, 0, 3, None, b""),
        FetchEndOfRange(EndOfRangeKind.UNKNOWN, 9, 0),
        FetchEndOfRange(EndOfRangeKind.TIMED_OUT, 10, 0),
    ]


def test_golden_padding_and_setup_types() -> None:
    assert encode_padding_stream(3) == bytes.fromhex("f0 13 2b 3e 28 00 00 00")
    assert encode_padding_datagram(8) == bytes.fromhex("f0 13 2b 3e 29 00 00 00")
    assert peek_stream_type(bytes.fromhex("af 00"), V22) == StreamType.SETUP
    assert peek_stream_type(bytes.fromhex("f0 13 2b 3e 28"), V18) == StreamType.PADDING
    assert peek_stream_type(b"\x05", V22) == StreamType.FETCH_HEADER
    with pytest.raises(NeedMoreData):
        peek_stream_type(bytes.fromhex("f0 13"), V22)
    with pytest.raises(NeedMoreData):
        peek_stream_type(b"", V22)


# -- Stream types -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_every_one_byte_stream_type(version: Version) -> None:
    for value in range(0x100):
        valid_subgroup = 0x10 <= value < 0x80 and value & 0x10 and value & 0x06 != 0x06
        if value == 0x05:
            assert stream_type_of(value, version) == StreamType.FETCH_HEADER
        elif valid_subgroup:
            assert stream_type_of(value, version) == StreamType.SUBGROUP_HEADER
        else:
            expect_pv(stream_type_of, value, version)
            expect_pv(parse_whole, encode_varint(value) + bytes(8), version)


@pytest.mark.parametrize("value", [0x16, 0x17, 0x1E, 0x1F, 0x36, 0x3F, 0x56, 0x7E, 0x7F])
def test_reserved_subgroup_id_mode_refused(value: int) -> None:
    expect_pv(stream_type_of, value, V18, match="reserved subgroup-id mode")


@pytest.mark.parametrize("value", [0x80, 0x90, 0xB0, 0x2F01, 0x2EFF, 0x132B3E29, 0x132B3E27, MAX_VARINT])
def test_other_stream_types_refused(value: int) -> None:
    expect_pv(stream_type_of, value, V22)


def test_padding_stream_is_discarded() -> None:
    data = encode_padding_stream(1000)
    for version in ALL_VERSIONS:
        assert parse_whole(data, version) == [Padding()]
        assert parse_bytewise(data, version) == [Padding()]


def test_setup_stream_is_passed_through() -> None:
    data = bytes.fromhex("af 00 00 03 01 02 03") + b"rest"
    parser = DataStreamParser(V22)
    events = parser.feed(data[:1]) + parser.feed(data[1:4]) + parser.feed(data[4:]) + parser.feed(b"", fin=True)
    assert parser.stream_type == StreamType.SETUP
    assert all(isinstance(event, ControlStreamData) for event in events)
    assert b"".join(event.data for event in events if isinstance(event, ControlStreamData)) == data


# -- Subgroup streams -------------------------------------------------------------------------------------------


@given(header=subgroup_headers(), version=versions)
@example(
    header=SubgroupHeader(MAX_VARINT, MAX_VARINT, MAX_VARINT, 0xFF, SubgroupIdMode.EXPLICIT, True, True, True),
    version=V18,
)
@example(header=SubgroupHeader(0x3FFF, 0x4000, 0x80, 0, SubgroupIdMode.EXPLICIT), version=V20)
@example(header=SubgroupHeader(0x7F, 1 << 56, None, None, SubgroupIdMode.FIRST_OBJECT_ID), version=V21)
def test_subgroup_header_round_trip(header: SubgroupHeader, version: Version) -> None:
    data = encode_subgroup_header(header, version)
    assert data[0] == header.type_flags
    assert stream_type_of(data[0], version) == StreamType.SUBGROUP_HEADER
    assert parse_whole(data, version) == [header]


@settings(max_examples=150)
@given(stream=subgroup_streams(), version=versions, data=st.data())
@example(
    stream=(
        SubgroupHeader(0, 0, None, None, SubgroupIdMode.FIRST_OBJECT_ID, True),
        [SubgroupObject(MAX_VARINT - 1, ((2, MAX_VARINT),), NORMAL, b"a"), SubgroupObject(MAX_VARINT, (), EOT, b"")],
    ),
    version=V22,
    data=None,
)
def test_subgroup_stream_round_trip(
    stream: tuple[SubgroupHeader, list[SubgroupObject]], version: Version, data: st.DataObject | None
) -> None:
    header, objects = stream
    wire = encode_subgroup_stream(header, objects, version)
    expected: list[DataStreamEvent] = [header, *objects]
    assert parse_whole(wire, version) == expected
    assert parse_bytewise(wire, version) == expected
    if data is not None:
        assert parse_pieces(split(wire, data.draw(split_points(len(wire)))), version) == expected
    parser = DataStreamParser(version)
    parser.feed(wire, fin=True)
    if header.subgroup_id_mode == SubgroupIdMode.FIRST_OBJECT_ID and objects:
        assert parser.header == SubgroupHeader(
            header.track_alias,
            header.group_id,
            objects[0].object_id,
            header.publisher_priority,
            header.subgroup_id_mode,
            header.has_properties,
            header.end_of_group,
            header.first_object,
        )
    else:
        assert parser.header == header


def test_many_objects_whole_bytewise_and_random_splits() -> None:
    rng = random.Random(1234)
    header = SubgroupHeader(9, 77, 3, 10, SubgroupIdMode.EXPLICIT, has_properties=True)
    objects = []
    object_id = 0
    for i in range(300):
        status = rng.choice([NORMAL] * 8 + [EOG, EOT])
        if status == NORMAL:
            props = ((0x3C, i),) if i % 3 == 0 else ()
            payload = rng.randbytes(rng.choice([0, 1, 50, 600, 1500, 5000]))
            objects.append(SubgroupObject(object_id, props, NORMAL, payload))
        else:
            objects.append(SubgroupObject(object_id, (), status, b""))
        object_id += 1 + rng.choice([0, 0, 0, 1, 200])
    wire = encode_subgroup_stream(header, objects, V22)
    expected: list[DataStreamEvent] = [header, *objects]
    assert parse_whole(wire) == expected
    assert parse_bytewise(wire) == expected
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(wire)), rng.randint(1, 400)))
        assert parse_pieces(split(wire, cuts)) == expected


def test_objects_are_returned_as_soon_as_whole() -> None:
    header = SubgroupHeader(1, 2, 0, 0, SubgroupIdMode.ZERO)
    wire = encode_subgroup_stream(header, [SubgroupObject(0, payload=b"abc"), SubgroupObject(1, payload=b"d")], V22)
    parser = DataStreamParser(V22)
    assert parser.feed(wire[:8]) == [header]  # header (4) + object header (2) + 2 payload bytes
    assert not parser.at_object_boundary
    assert parser.feed(wire[8:9]) == [SubgroupObject(0, payload=b"abc")]
    assert parser.at_object_boundary
    assert parser.feed(wire[9:]) == [SubgroupObject(1, payload=b"d")]


def test_large_payload_is_joined_once_and_passed_by_reference() -> None:
    header = SubgroupHeader(1, 2, 0, 0, SubgroupIdMode.ZERO)
    payload = bytes(range(256)) * 4096  # 1 MiB
    head = encode_subgroup_header(header, V22) + encode_subgroup_object_header(header, None, 0, None, len(payload))
    parser = DataStreamParser(V22)
    assert parser.feed(head) == [header]
    (event,) = parser.feed(payload, fin=True)
    assert isinstance(event, SubgroupObject)
    assert event.payload is payload  # the fed bytes object itself: no copy
    chunks = [payload[i : i + 1200] for i in range(0, len(payload), 1200)]
    parser = DataStreamParser(V22)
    events = parser.feed(head)
    for chunk in chunks:
        events += parser.feed(chunk)
    assert events == [header, SubgroupObject(0, payload=payload)]


def test_bytewise_feeding_stays_bounded() -> None:
    # Large properties and payload fed one byte at a time: the carry never holds more than one bounded step,
    # and the payload pieces are coalesced (no one-object-per-byte blow-up).
    header = SubgroupHeader(1, 2, 0, 0, SubgroupIdMode.ZERO, has_properties=True)
    props = tuple((2 * i + 1, bytes(60)) for i in range(300))
    obj = SubgroupObject(5, props, NORMAL, bytes(50_000))
    wire = encode_subgroup_stream(header, [obj], V22)
    parser = DataStreamParser(V22)
    events: list[DataStreamEvent] = []
    largest_carry = 0
    most_pieces = 0
    for i in range(len(wire)):
        events += parser.feed(wire[i : i + 1])
        largest_carry = max(largest_carry, len(parser._carry))
        most_pieces = max(most_pieces, len(parser._pieces))
    assert events == [header, obj]
    assert largest_carry <= 64
    assert most_pieces <= 1  # one-byte pieces all land in one bytearray


def test_fin_in_the_middle_of_an_object() -> None:
    header = SubgroupHeader(1, 2, 0, 0, SubgroupIdMode.ZERO, has_properties=True)
    wire = encode_subgroup_stream(header, [SubgroupObject(0, ((2, 300),), NORMAL, b"abcdef")], V22)
    head = len(encode_subgroup_header(header, V22))
    assert parse_whole(wire[:head]) == [header]  # a header and no objects is fine
    for cut in range(head + 1, len(wire)):
        expect_pv(parse_whole, wire[:cut], match="FIN in the middle of an object")
    for cut in range(0, head):
        expect_pv(parse_whole, wire[:cut], match="FIN before the stream header")


def test_parser_is_dead_after_an_error_and_after_fin() -> None:
    parser = DataStreamParser(V22)
    with pytest.raises(ProtocolViolation):
        parser.feed(b"\x00")
    with pytest.raises(ProtocolViolation):
        parser.feed(b"\x10")
    parser = DataStreamParser(V22)
    parser.feed(bytes.fromhex("30 01 02"), fin=True)
    with pytest.raises(ValueError):
        parser.feed(b"")


def test_subgroup_object_validation() -> None:
    base = bytes.fromhex("31 01 02")  # PROPERTIES, DEFAULT_PRIORITY, subgroup 0
    # Properties on an End of Group object.
    expect_pv(parse_whole, base + bytes.fromhex("00 02 3c 05 00 03"), match="properties on an object")
    # Empty properties on a non-Normal object are fine.
    assert parse_whole(base + bytes.fromhex("00 00 00 04"))[1] == SubgroupObject(0, (), EOT)
    # Undefined Object Status (0x1 was removed; 0x2 and 0x5 never existed).
    for value in (1, 2, 5, 0x9D):
        expect_pv(parse_whole, bytes.fromhex("30 01 02 00 00") + encode_varint(value), match="undefined Object Status")
    # Object ID Delta past 2^64-1.
    wire = bytes.fromhex("30 01 02") + encode_varint(MAX_VARINT) + bytes.fromhex("01 61 00 01 61")
    expect_pv(parse_whole, wire, match="overflows")
    assert parse_whole(wire[:-3]) == [
        SubgroupHeader(1, 2, 0, None, SubgroupIdMode.ZERO),
        SubgroupObject(MAX_VARINT, payload=b"a"),
    ]
    # Properties that are not valid Key-Value-Pairs (odd type, length past the end).
    with pytest.raises(ProtocolViolation):
        parse_whole(base + bytes.fromhex("00 02 01 05 00 00"))


def test_object_too_large() -> None:
    head = bytes.fromhex("30 01 02 00")
    with pytest.raises(ObjectTooLarge):
        parse_whole(head + encode_varint(MAX_OBJECT_PAYLOAD_BYTES + 1))
    # At the limit is accepted (only the header arrives here).
    parser = DataStreamParser(V22)
    parser.feed(head + encode_varint(MAX_OBJECT_PAYLOAD_BYTES))
    assert not parser.at_object_boundary
    with pytest.raises(ObjectTooLarge):
        parse_whole(head + encode_varint(101) + bytes(101), max_payload_bytes=100)
    with pytest.raises(ObjectTooLarge):
        parse_whole(bytes.fromhex("31 01 02 00") + encode_varint(1 << 40))
    with pytest.raises(ObjectTooLarge):
        parse_whole(bytes.fromhex("05 00 3c 00 00 00") + encode_varint(1 << 40))
    assert not issubclass(ObjectTooLarge, ProtocolViolation)


def test_subgroup_encoder_refusals() -> None:
    header = SubgroupHeader(1, 2, 0, 0, SubgroupIdMode.ZERO)
    with_props = SubgroupHeader(1, 2, 0, 0, SubgroupIdMode.ZERO, has_properties=True)
    refusals: list[Callable[[], object]] = [
        lambda: encode_subgroup_object_header(header, None, 0, ((2, 1),), 1),  # no PROPERTIES flag
        lambda: encode_subgroup_object_header(with_props, None, 0, ((2, 1),), 0, EOG),  # props on End of Group
        lambda: encode_subgroup_object_header(header, None, 0, None, 3, EOT),  # payload on End of Track
        lambda: encode_subgroup_object_header(header, 5, 5, None, 1),  # not after the previous object
        lambda: encode_subgroup_object_header(header, 5, 2, None, 1),
        lambda: encode_subgroup_object_header(header, None, MAX_VARINT + 1, None, 1),
        lambda: encode_subgroup_object_header(header, None, 0, None, 0, 1),  # type: ignore[arg-type]
        lambda: encode_subgroup_object_header(
            SubgroupHeader(1, 2, 7, 0, SubgroupIdMode.FIRST_OBJECT_ID), None, 6, None, 1
        ),
        lambda: encode_subgroup_header(SubgroupHeader(1, 2, 7, 0, SubgroupIdMode.ZERO), V22),
        lambda: encode_subgroup_header(SubgroupHeader(1, 2, None, 0, SubgroupIdMode.EXPLICIT), V22),
        lambda: encode_subgroup_header(SubgroupHeader(1, 2, 0, 256, SubgroupIdMode.ZERO), V22),
        lambda: encode_subgroup_header(SubgroupHeader(1, 2, 0, -1, SubgroupIdMode.ZERO), V22),
        lambda: encode_subgroup_header(SubgroupHeader(MAX_VARINT + 1, 2, 0, 0, SubgroupIdMode.ZERO), V22),
    ]
    for refusal in refusals:
        with pytest.raises(EncodeError):
            refusal()
    # FIRST_OBJECT_ID with the matching subgroup, and without one, are both fine.
    assert encode_subgroup_object_header(SubgroupHeader(1, 2, 6, 0, SubgroupIdMode.FIRST_OBJECT_ID), None, 6, None, 1)
    assert subgroup_id_mode_for(0, 5) == SubgroupIdMode.ZERO
    assert subgroup_id_mode_for(5, 5) == SubgroupIdMode.FIRST_OBJECT_ID
    assert subgroup_id_mode_for(4, 5) == SubgroupIdMode.EXPLICIT


# -- Datagrams --------------------------------------------------------------------------------------------------


@given(dgram=datagrams(), version=versions)
@example(dgram=ObjectDatagram(MAX_VARINT, MAX_VARINT, MAX_VARINT, 0xFF, ((MAX_VARINT, b"x"),), True), version=V18)
@example(dgram=ObjectDatagram(0x80, 0x3FFF, 0x4000, 0, status=NORMAL, properties=((0, 0),)), version=V20)
@example(dgram=ObjectDatagram(0, 0, 0, None, status=EOG), version=V21)
@example(dgram=ObjectDatagram(0, 0, 0, None), version=V22)
def test_datagram_round_trip(dgram: ObjectDatagram, version: Version) -> None:
    data = encode_datagram(dgram, version)
    assert decode_datagram(data, version) == dgram
    assert data[0] < 0x40 and not data[0] & 0x10


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_every_datagram_type(version: Version) -> None:
    for kind in range(0x80):
        fields = b"\x01\x02"
        if not kind & 0x04:
            fields += b"\x03"
        if not kind & 0x08:
            fields += b"\x80"
        if kind & 0x01:
            fields += b"\x02\x3e\x01"
        fields += b"\x00" if kind & 0x20 else b"pay"
        data = bytes((kind,)) + fields
        if kind >= 0x40 or kind & 0x10 or kind & 0x22 == 0x22:
            expect_pv(decode_datagram, data, version)
        else:
            dgram = decode_datagram(data, version)
            assert isinstance(dgram, ObjectDatagram)
            assert dgram.end_of_group == bool(kind & 0x02)
            assert encode_datagram(dgram, version) == data  # every valid type is the minimal one for its fields


def test_datagram_refusals() -> None:
    expect_pv(decode_datagram, bytes.fromhex("01 01 02 03 80 00") + b"x", V22, match="zero Properties Length")
    expect_pv(decode_datagram, bytes.fromhex("21 01 02 03 80 02 3e 01 03"), V22, match="properties on an object")
    assert decode_datagram(bytes.fromhex("21 01 02 03 80 02 3e 01 00"), V22) == ObjectDatagram(
        1, 2, 3, 0x80, ((0x3E, 1),), False, NORMAL
    )
    expect_pv(decode_datagram, bytes.fromhex("20 01 02 03 80 01"), V22, match="undefined Object Status")
    expect_pv(decode_datagram, bytes.fromhex("20 01 02 03 80 00 00"), V22, match="bytes after")
    expect_pv(decode_datagram, bytes.fromhex("00 01 02 03"), V22, match="truncated")
    expect_pv(decode_datagram, bytes.fromhex("01 01 02 03 80 05 3e"), V22, match="run past")
    expect_pv(decode_datagram, b"", V22, match="truncated")
    expect_pv(decode_datagram, encode_varint(0x132B3E28), V22, match="unknown datagram type")
    expect_pv(decode_datagram, encode_varint(0x80), V22, match="unknown datagram type")
    for version in ALL_VERSIONS:
        assert decode_datagram(encode_padding_datagram(40), version) == Padding()


def test_datagram_encoder_refusals() -> None:
    refusals = [
        ObjectDatagram(1, 2, 3, 0, end_of_group=True, status=EOG),
        ObjectDatagram(1, 2, 3, 0, status=EOT, payload=b"x"),
        ObjectDatagram(1, 2, 3, 0, status=NORMAL, payload=b"x"),
        ObjectDatagram(1, 2, 3, 0, properties=((2, 1),), status=EOG),
        ObjectDatagram(1, 2, 3, 300),
        ObjectDatagram(1, MAX_VARINT + 1, 3, 0),
    ]
    for dgram in refusals:
        with pytest.raises(EncodeError):
            encode_datagram(dgram, V22)
    with pytest.raises(EncodeError):
        encode_padding_datagram(4)
    # Empty properties are the same as none.
    assert encode_datagram(ObjectDatagram(1, 2, 3, 0, ()), V22) == encode_datagram(ObjectDatagram(1, 2, 3, 0), V22)


# -- Fetch streams ----------------------------------------------------------------------------------------------


@settings(max_examples=150)
@given(version=versions, order=group_orders, data=st.data())
def test_fetch_stream_round_trip(version: Version, order: GroupOrder, data: st.DataObject) -> None:
    entries = data.draw(fetch_entries(version, order))
    request_id = data.draw(st.sampled_from([0, 1, 0x3FFF, 0x4000, MAX_VARINT]))
    wire = encode_fetch_stream(request_id, entries, version, order)
    expected: list[DataStreamEvent] = [FetchHeader(request_id), *entries]
    assert parse_whole(wire, version, fetch_group_order=order) == expected
    assert parse_bytewise(wire, version, fetch_group_order=order) == expected
    pieces = split(wire, data.draw(split_points(len(wire))))
    assert parse_pieces(pieces, version, fetch_group_order=lambda request: order) == expected


def test_fetch_group_order_from_the_request() -> None:
    encoder = FetchObjectEncoder(V22, GroupOrder.DESCENDING)
    entries: list[FetchEntry] = [
        FetchObject(10, 0, 0, 1, None, b"a"),
        FetchObject(10, 0, 1, 1, None, b"b"),
        FetchObject(7, 0, 0, 1, None, b"c"),  # Group ID Delta 2: 10 - (2 + 1)
        FetchEndOfRange(EndOfRangeKind.UNKNOWN, 6, 4),
        FetchObject(0, 3, 5, 1, None, b"d"),
    ]
    wire = encode_fetch_header(3) + b"".join(encoder.encode(entry) for entry in entries)
    asked: list[int] = []

    def order_of(request_id: int) -> GroupOrder:
        asked.append(request_id)
        return GroupOrder.DESCENDING

    assert parse_whole(wire, fetch_group_order=order_of) == [FetchHeader(3), *entries]
    assert asked == [3]
    # Read as ascending, the same bytes name other groups (the marker is absolute, 6; then 6 + 5 + 1).
    ascending = parse_whole(wire)
    assert [e.group_id for e in ascending if isinstance(e, FetchObject)] == [
        10,
        10,
        13,
        12,
    ]  # the marker is absolute (6); 6 + 5 + 1


def test_fetch_first_object_rules() -> None:
    header = bytes.fromhex("05 00")
    # Must carry Group ID Delta and Object ID Delta.
    for flags in (0x10, 0x14, 0x18):
        expect_pv(parse_whole, header + bytes((flags,)) + bytes.fromhex("01 80 00"), match="first fetch object")
    # Must not refer to a prior Subgroup or Priority.
    expect_pv(parse_whole, header + bytes.fromhex("1d 01 01 80 00"), match="prior Subgroup")
    expect_pv(parse_whole, header + bytes.fromhex("1e 01 01 80 00"), match="prior Subgroup")
    expect_pv(parse_whole, header + bytes.fromhex("0c 01 01 00"), match="prior priority")
    # After a leading End of Range, Group and Object may refer to it, Subgroup and Priority may not.
    eor = bytes.fromhex("80 8c 03 04")
    assert parse_whole(header + eor + bytes.fromhex("10 07 00"))[2] == FetchObject(3, 0, 5, 7)
    expect_pv(parse_whole, header + eor + bytes.fromhex("00 00"), match="prior priority")
    expect_pv(parse_whole, header + eor + bytes.fromhex("11 07 00"), match="prior Subgroup")
    # The Datagram bit makes the two low bits meaningless, even on the first object.
    assert parse_whole(header + bytes.fromhex("5f 01 02 80 00"))[1] == FetchObject(1, None, 2, 0x80)
    # After a Datagram-preference object there is no prior Subgroup ID to refer to.
    expect_pv(parse_whole, header + bytes.fromhex("5c 01 02 80 00 01 00"), match="prior Subgroup")


def test_fetch_serialization_flag_values() -> None:
    first = bytes.fromhex("05 00 1c 01 02 80 00")
    for value in (0x80, 0x8B, 0x8D, 0x8C | 0x10, 0x10D, 0x20B, 0x30C, 0x40C, MAX_VARINT):
        expect_pv(parse_whole, first + encode_varint(value) + bytes.fromhex("05 05"), match="Serialization Flags")
    timed_out = first + encode_varint(0x20C) + bytes.fromhex("05 05")
    expect_pv(parse_whole, timed_out, V18, match="Serialization Flags")
    for version in (V20, V21, V22):
        assert parse_whole(timed_out, version)[-1] == FetchEndOfRange(EndOfRangeKind.TIMED_OUT, 5, 5)
    with pytest.raises(EncodeError):
        FetchObjectEncoder(V18).end_of_range(EndOfRangeKind.TIMED_OUT, 1, 1)
    # Every value below 128 is a set of defined flags.
    for flags in range(0x80):
        wire = bytes.fromhex("05 00 1c 01 02 80 00") + bytes((flags,))
        wire += b"\x01" if flags & 0x08 else b""
        wire += b"\x02" if flags & 0x03 == 0x03 and not flags & 0x40 else b""
        wire += b"\x01" if flags & 0x04 else b""
        wire += b"\x07" if flags & 0x10 else b""
        wire += b"\x02\x3e\x01" if flags & 0x20 else b""
        wire += b"\x00"
        events = parse_whole(wire)
        assert len(events) == 3


def test_fetch_id_overflow() -> None:
    first = bytes.fromhex("05 00 1c") + encode_varint(MAX_VARINT) + encode_varint(MAX_VARINT) + bytes.fromhex("80 00")
    expect_pv(parse_whole, first + bytes.fromhex("08 00 00"), match="overflows")  # group + 1
    expect_pv(parse_whole, first + bytes.fromhex("00 00"), match="Object ID overflows")  # object + 1
    expect_pv(parse_whole, first + bytes.fromhex("04 01 00"), match="Object ID overflows")
    # Subgroup prior + 1 past 2^64-1.
    big_sub = bytes.fromhex("05 00 1f 00") + encode_varint(MAX_VARINT) + bytes.fromhex("00 80 00")
    expect_pv(parse_whole, big_sub + bytes.fromhex("02 00"), match="Subgroup ID overflows")
    # Descending below group 0.
    low = bytes.fromhex("05 00 1c 01 00 80 00")
    expect_pv(parse_whole, low + bytes.fromhex("08 01 00"), fetch_group_order=GroupOrder.DESCENDING, match="below")
    assert parse_whole(low + bytes.fromhex("08 00 00"), fetch_group_order=GroupOrder.DESCENDING)[-1] == FetchObject(
        0, 0, 1, 0x80
    )


def test_fetch_properties() -> None:
    encoder = FetchObjectEncoder(V22)
    obj = FetchObject(1, 0, 0, 5, ((0x3C, 2), (0x3E, 1)), b"x")
    wire = encode_fetch_header(0) + encoder.encode(obj)
    assert parse_whole(wire)[1] == obj
    # A PROPERTIES flag with a zero length decodes to the canonical "no properties".
    assert parse_whole(bytes.fromhex("05 00 3c 01 02 80 00 00"))[1] == FetchObject(1, 0, 2, 0x80, None)


def test_fetch_encoder_refusals() -> None:
    ascending = FetchObjectEncoder(V22)
    ascending.object_header(5, 0, 3, 0, None, 0)
    refusals: list[Callable[[], object]] = [
        lambda: ascending.object_header(4, 0, 0, 0, None, 0),  # group goes down in an ascending fetch
        lambda: ascending.object_header(5, 0, 3, 0, None, 0),  # same object again
        lambda: ascending.object_header(5, 0, 2, 0, None, 0),
        lambda: ascending.object_header(6, 0, 0, 256, None, 0),
        lambda: ascending.end_of_range(EndOfRangeKind.UNKNOWN, 5, 1),
        lambda: ascending.object_header(6, 0, MAX_VARINT + 1, 0, None, 0),
    ]
    descending = FetchObjectEncoder(V22, GroupOrder.DESCENDING)
    descending.object_header(5, 0, 3, 0, None, 0)
    refusals.append(lambda: descending.object_header(6, 0, 0, 0, None, 0))
    for refusal in refusals:
        with pytest.raises(EncodeError):
            refusal()


# -- Arbitrary input only raises the codec's own errors ---------------------------------------------------------


def _only_codec_errors(fn: Callable[..., object], *args: object) -> None:
    with contextlib.suppress(NeedMoreData, ProtocolViolation, ObjectTooLarge):
        fn(*args)


@settings(max_examples=400)
@given(st.binary(max_size=80), versions, group_orders, st.booleans())
@example(b"\x05\x00\x8c", V22, GroupOrder.ASCENDING, True)
@example(b"\xff" * 12, V18, GroupOrder.DESCENDING, True)
def test_arbitrary_stream_bytes(data: bytes, version: Version, order: GroupOrder, fin: bool) -> None:
    parser = DataStreamParser(version, fetch_group_order=order)
    _only_codec_errors(parser.feed, data, fin)


@settings(max_examples=300)
@given(
    st.sampled_from([b"\x05", b"\x05\x00", b"\x10\x01\x02\x03", b"\x31\x01\x02", b"\x75\x00\x00\x00"]),
    st.binary(max_size=80),
    versions,
    group_orders,
    st.data(),
)
def test_arbitrary_objects_after_a_valid_header(
    head: bytes, body: bytes, version: Version, order: GroupOrder, data: st.DataObject
) -> None:
    wire = head + body
    whole: list[DataStreamEvent] | type[MoqError]
    try:
        whole = parse_whole(wire, version, fetch_group_order=order)
    except (NeedMoreData, ProtocolViolation, ObjectTooLarge) as exc:
        whole = type(exc)
    pieces = split(wire, data.draw(split_points(len(wire))))
    try:
        in_pieces: list[DataStreamEvent] | type[MoqError] = parse_pieces(pieces, version, fetch_group_order=order)
    except (NeedMoreData, ProtocolViolation, ObjectTooLarge) as exc:
        in_pieces = type(exc)
    assert whole == in_pieces


@settings(max_examples=400)
@given(st.binary(max_size=60), versions)
@example(b"\x01\x01\x02\x03\x80\x00", V22)
def test_arbitrary_datagram_bytes(data: bytes, version: Version) -> None:
    _only_codec_errors(decode_datagram, data, version)


# -- Throughput (printed, never asserted) -----------------------------------------------------------------------


def test_report_subgroup_parse_throughput(capsys: pytest.CaptureFixture[str]) -> None:
    header = SubgroupHeader(1, 2, 0, 0x80, SubgroupIdMode.ZERO)
    payload = bytes(1200)
    count = 20_000
    parts = [encode_subgroup_header(header, V22)]
    for object_id in range(count):
        parts.append(encode_subgroup_object_header(header, object_id - 1 if object_id else None, object_id, None, 1200))
        parts.append(payload)
    wire = b"".join(parts)
    packets = [wire[i : i + 1200] for i in range(0, len(wire), 1200)]
    parser = DataStreamParser(V22)
    start = time.perf_counter()
    received = 0
    for packet in packets:
        received += len(parser.feed(packet))
    elapsed = time.perf_counter() - start
    assert received == count + 1
    with capsys.disabled():
        print(f"\nsubgroup parser: {count / elapsed:,.0f} objects/s (1200-byte payloads, fed in 1200-byte pieces)")


def test_fetch_encoder_refuses_a_subgroup_id_past_2_64() -> None:
    """After subgroup 2^64-1, 2^64 is not "prior + 1" (found by the JS cross-tests): it is out of range."""
    enc = FetchObjectEncoder(Version.DRAFT_22)
    enc.object_header(0, MAX_VARINT, 0, 128, None, 0)
    with pytest.raises(EncodeError):
        enc.object_header(0, MAX_VARINT + 1, 1, 128, None, 0)
