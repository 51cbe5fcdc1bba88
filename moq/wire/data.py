"""The data plane: unidirectional stream types, subgroup and fetch streams, object datagrams, padding.

draft-ietf-moq-transport-21 §11 (drafts 20, 21 and 22 share this wire format) and §6.4.1 (stream types);
draft-ietf-moq-transport-18 §"Data Streams and Datagrams". The one data-plane difference between the two families:
draft-18 has no End of Timed-Out Range (0x20C) on fetch streams.

Encoders are written for a relay's hot path: a payload can be a megabyte and is never copied by them. The
`*_header` encoders return only the few header bytes; the caller writes the payload after them, by reference.

`DataStreamParser` is incremental and sans-IO: feed it the bytes of one uni stream as they arrive and it returns
the header, then each object once it is whole. It is linear in the bytes fed however they are split (a field that
straddles two feeds is re-read from a carry of at most `_MAX_STAGE` bytes; payload and property bytes are
collected once, never re-parsed), and bounded (`MAX_OBJECT_PAYLOAD_BYTES`, `MAX_OBJECT_PROPERTIES_BYTES`).

Canonical forms (what the decoders return, so that decode(encode(x)) == x):

- Object Properties: `None` (datagrams, fetch objects) or `()` (subgroup objects) when there are none; the
  encoders treat `None` and `()` alike and set the PROPERTIES flag only for a non-empty tuple. A fetch object
  whose flag is set with a zero Properties Length decodes as `None`.
- `SubgroupHeader.subgroup_id` is `None` exactly when the mode is FIRST_OBJECT_ID: the wire does not carry it,
  it is the first object's ID. `DataStreamParser.header` holds the resolved header once that object is parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum, IntEnum
from typing import Final

import msgspec
from aioquic.buffer import Buffer

from moq.errors import EncodeError, MoqError, NeedMoreData, ProtocolViolation
from moq.wire.codes import ObjectStatus, SessionErrorCode
from moq.wire.params import GroupOrder
from moq.wire.primitives import Properties, encode_key_values, pull_key_values
from moq.wire.varint import MAX_VARINT, decode_varint, encode_varint
from moq.wire.version import Version

__all__ = [
    "FETCH_HEADER_TYPE",
    "MAX_OBJECT_PAYLOAD_BYTES",
    "MAX_OBJECT_PROPERTIES_BYTES",
    "PADDING_DATAGRAM_TYPE",
    "PADDING_STREAM_TYPE",
    "SETUP_STREAM_TYPE",
    "ControlStreamData",
    "DataStreamEvent",
    "DataStreamParser",
    "DatagramFlag",
    "EndOfRangeKind",
    "FetchEndOfRange",
    "FetchHeader",
    "FetchObject",
    "FetchObjectEncoder",
    "FetchSerializationFlag",
    "ObjectDatagram",
    "ObjectTooLarge",
    "Padding",
    "StreamType",
    "SubgroupFlag",
    "SubgroupHeader",
    "SubgroupIdMode",
    "SubgroupObject",
    "decode_datagram",
    "encode_datagram",
    "encode_fetch_header",
    "encode_padding_datagram",
    "encode_padding_stream",
    "encode_subgroup_header",
    "encode_subgroup_object",
    "encode_subgroup_object_header",
    "peek_stream_type",
    "stream_type_of",
    "subgroup_id_mode_for",
]

_PV: Final = SessionErrorCode.PROTOCOL_VIOLATION

#: Largest Object Payload Length a parser accepts (bytes). A parser holds an object whole before handing it on
#: (a relay caches and fans out whole objects), so this caps what one stream can make us buffer. 16 MiB is far
#: above real media objects (a 4K key frame is a few MB; several seconds of CMAF at 20 Mb/s is ~10 MB); a peer
#: with bigger objects must split them. Past it: `ObjectTooLarge`, and the session resets the stream with
#: EXCESSIVE_LOAD. It is a resource limit of ours, not a protocol violation by the peer.
MAX_OBJECT_PAYLOAD_BYTES: Final = 16 * 1024 * 1024

#: Largest Properties Length a stream parser accepts (bytes), for the same reason. No single property value may
#: exceed 65535 bytes (draft-21 §8.3); one MiB leaves room for many of them.
MAX_OBJECT_PROPERTIES_BYTES: Final = 1024 * 1024

#: Uni stream type of a FETCH_HEADER stream (draft-21 §6.4.1, §11.4.1).
FETCH_HEADER_TYPE: Final = 0x05
#: Uni stream type of a control stream: the type is the SETUP message type (draft-21 §6.4.1, §9.1).
SETUP_STREAM_TYPE: Final = 0x2F00
#: Uni stream type of a padding stream (draft-21 §11.5.1).
PADDING_STREAM_TYPE: Final = 0x132B3E28
#: Datagram type of a padding datagram (draft-21 §11.5.2).
PADDING_DATAGRAM_TYPE: Final = 0x132B3E29

# Every bounded step of the stream parser (a stream header, an object's fixed fields) fits in this many bytes:
# the largest is a fetch object's Serialization Flags + Group ID Delta + Subgroup ID + Object ID Delta +
# Properties Length (five 9-byte varints) + Publisher Priority = 46. A step that straddles feeds is retried on
# its carried bytes plus at most this many new ones, which keeps one-byte-at-a-time feeding linear.
_MAX_STAGE = 64
# Payload or property pieces smaller than this are coalesced before being kept, so that a peer sending one-byte
# STREAM frames cannot make us hold one Python object per byte; larger pieces are kept by reference.
_COALESCE_BELOW = 512


class ObjectTooLarge(MoqError):
    """An object's payload or properties are longer than this parser accepts.

    Not the peer breaking the protocol: a limit of ours. The session resets the stream (EXCESSIVE_LOAD) and
    carries on.
    """

    def __init__(self, what: str, length: int, limit: int) -> None:
        super().__init__(f"{what} of {length} bytes is over the limit of {limit}")
        self.length = length
        self.limit = limit


# -- Stream types (draft-21 §6.4.1) ---------------------------------------------------------------------------


class StreamType(Enum):
    """What a unidirectional stream carries, from its first varint (draft-21 §6.4.1, Table 2)."""

    FETCH_HEADER = "fetch"
    SUBGROUP_HEADER = "subgroup"
    SETUP = "setup"
    PADDING = "padding"


class SubgroupFlag(IntEnum):
    """SUBGROUP_HEADER Type Flags bits (draft-21 §11.3.1). Bit 0x10 is always set."""

    PROPERTIES = 0x01
    SUBGROUP_ID_MODE = 0x06  # a two-bit field: see SubgroupIdMode
    END_OF_GROUP = 0x08
    SUBGROUP_HEADER = 0x10
    DEFAULT_PRIORITY = 0x20
    FIRST_OBJECT = 0x40


class SubgroupIdMode(IntEnum):
    """SUBGROUP_ID_MODE, `(type & 0x06) >> 1` (draft-21 §11.3.1). 0b11 is reserved and refused."""

    ZERO = 0  # no Subgroup ID field; the Subgroup ID is 0
    FIRST_OBJECT_ID = 1  # no field; the Subgroup ID is the first object's Object ID
    EXPLICIT = 2  # the Subgroup ID field is present


def _is_subgroup_type(value: int) -> bool:
    # draft-21 §11.3.1: < 128, bit 4 set, SUBGROUP_ID_MODE not 0b11. Bits 0-6 are all defined, so "undefined
    # bits" only arise at 128 and up. draft-18 lists the same set as ranges (0x10..0x15 / 0x18..0x1D / ...).
    return value < 0x80 and value & 0x10 != 0 and value & 0x06 != 0x06


def stream_type_of(value: int, version: Version) -> StreamType:
    """Classify the first varint of a uni stream; an unknown or invalid type is a PROTOCOL_VIOLATION.

    Unknown stream type: draft-21 §6.4.1 ("MUST close the session"). Invalid SUBGROUP_HEADER types (reserved
    subgroup-id mode, bit 4 clear, >= 128): draft-21 §11.3.1. The same in draft-18.
    """
    if value == FETCH_HEADER_TYPE:
        return StreamType.FETCH_HEADER
    if _is_subgroup_type(value):
        return StreamType.SUBGROUP_HEADER
    if value == SETUP_STREAM_TYPE:
        return StreamType.SETUP
    if value == PADDING_STREAM_TYPE:
        return StreamType.PADDING
    if value < 0x80 and value & 0x10 and value & 0x06 == 0x06:
        raise ProtocolViolation(_PV, f"SUBGROUP_HEADER type 0x{value:x} uses the reserved subgroup-id mode 0b11")
    raise ProtocolViolation(_PV, f"unknown unidirectional stream type 0x{value:x}")


def peek_stream_type(data: bytes, version: Version) -> StreamType:
    """The type of a uni stream from its first bytes; `NeedMoreData` until the first varint is whole.

    A session routes SETUP streams to the control-message parser and everything else to `DataStreamParser`
    (which also reports a SETUP stream, as `ControlStreamData`, for a session that feeds it every uni stream).
    """
    try:
        value, _ = decode_varint(data, 0)
    except IndexError:
        raise NeedMoreData("stream type incomplete") from None
    return stream_type_of(value, version)


# -- Structures -------------------------------------------------------------------------------------------------


class SubgroupHeader(msgspec.Struct, frozen=True):
    """SUBGROUP_HEADER (draft-21 §11.3.1, Figure 25).

    `publisher_priority` None = DEFAULT_PRIORITY (inherit the priority of the subscription's control message).
    `subgroup_id` is None exactly when `subgroup_id_mode` is FIRST_OBJECT_ID (see the module docstring); in
    ZERO mode it is 0. `has_properties`: every object on the stream carries a Properties Length.
    `end_of_group`: this subgroup holds the group's largest object (meaningful at FIN, not at reset).
    `first_object`: the stream starts at the first object the original publisher sent in the subgroup.
    """

    track_alias: int
    group_id: int
    subgroup_id: int | None
    publisher_priority: int | None
    subgroup_id_mode: SubgroupIdMode = SubgroupIdMode.EXPLICIT
    has_properties: bool = False
    end_of_group: bool = False
    first_object: bool = False

    @property
    def type_flags(self) -> int:
        """The Type Flags value this header is sent with."""
        value = 0x10 | (self.subgroup_id_mode << 1)
        if self.has_properties:
            value |= 0x01
        if self.end_of_group:
            value |= 0x08
        if self.publisher_priority is None:
            value |= 0x20
        if self.first_object:
            value |= 0x40
        return value


class SubgroupObject(msgspec.Struct, frozen=True):
    """One object on a subgroup stream (draft-21 §11.3.1, Figure 26), its Object ID resolved from the delta.

    `properties` is `()` when the object has none (always so when the header lacks the PROPERTIES flag).
    Only a NORMAL object carries payload or properties (draft-21 §11.1.2-§11.1.3).
    """

    object_id: int
    properties: Properties = ()
    status: ObjectStatus = ObjectStatus.NORMAL
    payload: bytes = b""


class ObjectDatagram(msgspec.Struct, frozen=True):
    """OBJECT_DATAGRAM (draft-21 §11.2.1, Figure 24).

    `publisher_priority` None = DEFAULT_PRIORITY flag. `status` None = the STATUS flag is clear and `payload` is
    the object (possibly empty, a zero-length Normal object); otherwise `status` is sent and there is no payload.
    """

    track_alias: int
    group_id: int
    object_id: int
    publisher_priority: int | None
    properties: Properties | None = None
    end_of_group: bool = False
    status: ObjectStatus | None = None
    payload: bytes = b""


class FetchHeader(msgspec.Struct, frozen=True):
    """FETCH_HEADER (draft-21 §11.4.1, Figure 27): the Request ID of the FETCH (or of the fill's request)."""

    request_id: int


class FetchObject(msgspec.Struct, frozen=True):
    """One object on a fetch stream (draft-21 §11.4.1, Figure 28), every field resolved to its absolute value.

    `subgroup_id` None = an object whose forwarding preference is Datagram (Serialization Flags bit 0x40).
    Fetch objects carry no Object Status (draft-21 §11.1.2).
    """

    group_id: int
    subgroup_id: int | None
    object_id: int
    publisher_priority: int
    properties: Properties | None = None
    payload: bytes = b""


class EndOfRangeKind(IntEnum):
    """End of Range Serialization Flags values (draft-21 §11.4.1, Table 7). TIMED_OUT is draft-20 and later."""

    NON_EXISTENT = 0x8C
    UNKNOWN = 0x10C
    TIMED_OUT = 0x20C


class FetchEndOfRange(msgspec.Struct, frozen=True):
    """An End of Range marker on a fetch stream (draft-21 §11.4.1.2): every Location after the previous entry up
    to and including (group_id, object_id) does not exist, is unknown, or timed out."""

    kind: EndOfRangeKind
    group_id: int
    object_id: int


class Padding(msgspec.Struct, frozen=True):
    """A padding stream was opened, or a padding datagram arrived (draft-21 §11.5): discard it."""


class ControlStreamData(msgspec.Struct, frozen=True):
    """Bytes of a uni stream that turned out to be a control stream (type SETUP, 0x2F00).

    The first event carries every byte from the stream's start (the type varint is the SETUP message type);
    later ones carry what follows. Hand them to the control-message parser.
    """

    data: bytes


DataStreamEvent = (
    SubgroupHeader | FetchHeader | Padding | ControlStreamData | SubgroupObject | FetchObject | FetchEndOfRange
)
"""What `DataStreamParser.feed` returns."""


class DatagramFlag(IntEnum):
    """OBJECT_DATAGRAM Type Flags bits (draft-21 §11.2.1). Bit 0x10 is reserved and must be zero."""

    PROPERTIES = 0x01
    END_OF_GROUP = 0x02
    ZERO_OBJECT_ID = 0x04
    DEFAULT_PRIORITY = 0x08
    STATUS = 0x20


class FetchSerializationFlag(IntEnum):
    """Fetch object Serialization Flags bits (draft-21 §11.4.1.1, Tables 8-9)."""

    SUBGROUP_MODE = 0x03  # 0 zero, 1 prior, 2 prior + 1, 3 field present
    OBJECT_ID_DELTA = 0x04
    GROUP_ID_DELTA = 0x08
    PRIORITY = 0x10
    PROPERTIES = 0x20
    DATAGRAM = 0x40


_STATUS_BY_VALUE: Final[dict[int, ObjectStatus]] = {status.value: status for status in ObjectStatus}
_NORMAL: Final = ObjectStatus.NORMAL


def _status(value: int) -> ObjectStatus:
    # draft-21 §11.1.2: "Any other value SHOULD be treated as a protocol error ... PROTOCOL_VIOLATION".
    status = _STATUS_BY_VALUE.get(value)
    if status is None:
        raise ProtocolViolation(_PV, f"undefined Object Status 0x{value:x}")
    return status


def _check_priority(priority: int) -> None:
    if not 0 <= priority <= 0xFF:
        raise EncodeError(f"publisher priority must be 0-255: {priority}")


def _check_status(status: ObjectStatus) -> None:
    if status not in _STATUS_BY_VALUE:
        raise EncodeError(f"undefined Object Status {status!r}")


def _parse_properties(data: bytes) -> Properties:
    buf = Buffer(data=data)
    return pull_key_values(buf, len(data))


# -- Encoders ---------------------------------------------------------------------------------------------------


def subgroup_id_mode_for(subgroup_id: int, first_object_id: int) -> SubgroupIdMode:
    """The cheapest SUBGROUP_ID_MODE for a subgroup whose stream starts at `first_object_id`."""
    if subgroup_id == 0:
        return SubgroupIdMode.ZERO
    if subgroup_id == first_object_id:
        return SubgroupIdMode.FIRST_OBJECT_ID
    return SubgroupIdMode.EXPLICIT


def encode_subgroup_header(header: SubgroupHeader, version: Version) -> bytes:
    """SUBGROUP_HEADER bytes (draft-21 §11.3.1); the same layout in every supported draft."""
    mode = header.subgroup_id_mode
    subgroup = b""
    if mode == SubgroupIdMode.EXPLICIT:
        if header.subgroup_id is None:
            raise EncodeError("an EXPLICIT subgroup-id mode needs a subgroup_id")
        subgroup = encode_varint(header.subgroup_id)
    elif mode == SubgroupIdMode.ZERO:
        if header.subgroup_id not in (0, None):
            raise EncodeError(f"subgroup-id mode ZERO cannot carry subgroup {header.subgroup_id}")
    elif mode != SubgroupIdMode.FIRST_OBJECT_ID:
        raise EncodeError(f"undefined subgroup-id mode {mode!r}")
    out = bytes((header.type_flags,)) + encode_varint(header.track_alias) + encode_varint(header.group_id) + subgroup
    priority = header.publisher_priority
    if priority is not None:
        _check_priority(priority)
        out += bytes((priority,))
    return out


def encode_subgroup_object_header(
    header: SubgroupHeader,
    prev_object_id: int | None,
    object_id: int,
    properties: Properties | None,
    payload_length: int,
    status: ObjectStatus = ObjectStatus.NORMAL,
) -> bytes:
    """The fields of one subgroup object up to its payload (draft-21 §11.3.1, Figure 26); send the payload next.

    `prev_object_id` is the previous object written on this stream (None for the first): the Object ID Delta is
    `object_id` for the first object, `object_id - prev - 1` after. A zero `payload_length` sends `status`
    explicitly; a non-zero one requires NORMAL.
    """
    if prev_object_id is None:
        if (
            header.subgroup_id_mode == SubgroupIdMode.FIRST_OBJECT_ID
            and header.subgroup_id is not None
            and header.subgroup_id != object_id
        ):
            raise EncodeError(f"subgroup {header.subgroup_id} is sent as the first object's ID, not {object_id}")
        delta = object_id
    else:
        delta = object_id - prev_object_id - 1
        if delta < 0:
            raise EncodeError(f"object {object_id} does not follow object {prev_object_id} on its stream")
    out = encode_varint(delta)
    if status is not _NORMAL:
        _check_status(status)
    if header.has_properties:
        if properties:
            if status != _NORMAL:
                raise EncodeError("only a NORMAL object can carry properties")
            props = encode_key_values(properties)
            out += encode_varint(len(props)) + props
        else:
            out += b"\x00"
    elif properties:
        raise EncodeError("the subgroup header has no PROPERTIES flag: objects cannot carry properties")
    if payload_length:
        if status != _NORMAL:
            raise EncodeError("only a NORMAL object can carry a payload")
        return out + encode_varint(payload_length)
    return out + b"\x00" + encode_varint(status)


def encode_subgroup_object(header: SubgroupHeader, prev_object_id: int | None, obj: SubgroupObject) -> bytes:
    """A whole subgroup object, payload included (copies the payload: for tests and small objects)."""
    head = encode_subgroup_object_header(
        header, prev_object_id, obj.object_id, obj.properties, len(obj.payload), obj.status
    )
    return head + obj.payload


def encode_datagram(dgram: ObjectDatagram, version: Version) -> bytes:
    """OBJECT_DATAGRAM bytes with the smallest Type Flags (draft-21 §11.2.1); the same in draft-18.

    Object ID 0 is omitted (ZERO_OBJECT_ID), Properties are sent only when non-empty. Refused locally: a status
    with END_OF_GROUP, a status with a payload, properties on a non-NORMAL object.
    """
    flags = 0
    parts = [b"", encode_varint(dgram.track_alias), encode_varint(dgram.group_id)]
    if dgram.object_id:
        parts.append(encode_varint(dgram.object_id))
    else:
        flags |= 0x04
    priority = dgram.publisher_priority
    if priority is None:
        flags |= 0x08
    else:
        _check_priority(priority)
        parts.append(bytes((priority,)))
    status = dgram.status
    if dgram.properties:
        if status is not None and status != _NORMAL:
            raise EncodeError("only a NORMAL object can carry properties")
        flags |= 0x01
        props = encode_key_values(dgram.properties)
        parts.append(encode_varint(len(props)))
        parts.append(props)
    if dgram.end_of_group:
        if status is not None:
            raise EncodeError("a datagram cannot carry both an Object Status and END_OF_GROUP")
        flags |= 0x02
    if status is not None:
        _check_status(status)
        if dgram.payload:
            raise EncodeError("a datagram with an Object Status carries no payload")
        flags |= 0x20
        parts.append(encode_varint(status))
    else:
        parts.append(dgram.payload)
    parts[0] = bytes((flags,))
    return b"".join(parts)


def encode_fetch_header(request_id: int) -> bytes:
    """FETCH_HEADER bytes (draft-21 §11.4.1, Figure 27)."""
    return b"\x05" + encode_varint(request_id)


_PADDING_STREAM_PREFIX: Final = encode_varint(PADDING_STREAM_TYPE)
_PADDING_DATAGRAM_PREFIX: Final = encode_varint(PADDING_DATAGRAM_TYPE)


def encode_padding_stream(length: int = 0) -> bytes:
    """A padding stream's type followed by `length` zero bytes (draft-21 §11.5.1); more zeros may follow."""
    if length < 0:
        raise EncodeError(f"padding length must not be negative: {length}")
    return _PADDING_STREAM_PREFIX + bytes(length)


def encode_padding_datagram(size: int) -> bytes:
    """A padding datagram of exactly `size` bytes, type included (draft-21 §11.5.2)."""
    if size < len(_PADDING_DATAGRAM_PREFIX):
        raise EncodeError(f"a padding datagram takes at least {len(_PADDING_DATAGRAM_PREFIX)} bytes, not {size}")
    return _PADDING_DATAGRAM_PREFIX + bytes(size - len(_PADDING_DATAGRAM_PREFIX))


class FetchObjectEncoder:
    """Writes the entries of one fetch stream with the smallest Serialization Flags (draft-21 §11.4.1.1).

    It remembers the prior entry's Group and Object IDs and the last actual object's Subgroup ID and priority,
    as the receiver does (draft-21 §11.4.1.2), and chooses what to omit. `group_order` is the fetch's GROUP_ORDER:
    a Group ID Delta counts up in ASCENDING order and down in DESCENDING. Entries must follow that order, and
    Object IDs must ascend within a group (draft-21 §9.11); anything else is an `EncodeError`.

    Write `encode_fetch_header` first, then for each object `object_header(...)` followed by its payload.
    """

    def __init__(self, version: Version, group_order: GroupOrder = GroupOrder.ASCENDING) -> None:
        self.version = version
        self.group_order = GroupOrder(group_order)
        self._group: int | None = None
        self._object = 0
        self._subgroup: int | None = None
        self._priority: int | None = None

    def _locate(self, group_id: int, object_id: int) -> tuple[int, list[bytes]]:
        """Flags and fields for the Group/Object part of an object; checks the fetch's order."""
        prior = self._group
        if prior is None:
            return 0x0C, [encode_varint(group_id), encode_varint(object_id)]
        if group_id == prior:
            if object_id <= self._object:
                raise EncodeError(f"object {object_id} of group {group_id} does not follow object {self._object}")
            if object_id == self._object + 1:
                return 0, []
            return 0x04, [encode_varint(object_id - self._object)]
        if self.group_order == GroupOrder.ASCENDING:
            if group_id < prior:
                raise EncodeError(f"group {group_id} after group {prior} in an ascending fetch")
            delta = group_id - prior - 1
        else:
            if group_id > prior:
                raise EncodeError(f"group {group_id} after group {prior} in a descending fetch")
            delta = prior - group_id - 1
        if object_id == self._object + 1:
            # draft-21 §11.4.1.1: without an Object ID Delta the ID is the prior one plus one, "regardless of
            # which group it belongs to".
            return 0x08, [encode_varint(delta)]
        return 0x0C, [encode_varint(delta), encode_varint(object_id)]

    def object_header(
        self,
        group_id: int,
        subgroup_id: int | None,
        object_id: int,
        publisher_priority: int,
        properties: Properties | None,
        payload_length: int,
    ) -> bytes:
        """The fields of one fetch object up to its payload; `subgroup_id` None = a Datagram-preference object."""
        _check_priority(publisher_priority)
        # The subgroup too: 2^64 would otherwise match "prior + 1" after 2^64-1 and be written with no field.
        for value in (group_id, object_id, payload_length, 0 if subgroup_id is None else subgroup_id):
            if not 0 <= value <= MAX_VARINT:
                raise EncodeError(f"value out of varint range: {value}")
        flags, fields = self._locate(group_id, object_id)
        first = self._group is None
        subgroup_field = b""
        if subgroup_id is None:
            flags |= 0x40  # Datagram: the two low bits SHOULD be zero (draft-21 §11.4.1.1)
        elif subgroup_id == 0:
            pass
        elif not first and self._subgroup is not None and subgroup_id == self._subgroup:
            flags |= 0x01
        elif not first and self._subgroup is not None and subgroup_id == self._subgroup + 1:
            flags |= 0x02
        else:
            flags |= 0x03
            subgroup_field = encode_varint(subgroup_id)
        priority_field = b""
        if publisher_priority != self._priority:
            flags |= 0x10
            priority_field = bytes((publisher_priority,))
        props_field = b""
        if properties:
            flags |= 0x20
            props = encode_key_values(properties)
            props_field = encode_varint(len(props)) + props
        # Wire order (Figure 28): flags, Group ID Delta, Subgroup ID, Object ID Delta, Priority, Properties.
        group_field = fields[0] if flags & 0x08 else b""
        object_field = fields[-1] if flags & 0x04 else b""
        out = b"".join(
            (
                bytes((flags,)),
                group_field,
                subgroup_field,
                object_field,
                priority_field,
                props_field,
                encode_varint(payload_length),
            )
        )
        self._group = group_id
        self._object = object_id
        self._subgroup = subgroup_id
        self._priority = publisher_priority
        return out

    def end_of_range(self, kind: EndOfRangeKind, group_id: int, object_id: int) -> bytes:
        """An End of Range marker (draft-21 §11.4.1.2); TIMED_OUT does not exist in draft-18."""
        kind = EndOfRangeKind(kind)
        if kind == EndOfRangeKind.TIMED_OUT and self.version.family < 20:
            raise EncodeError("End of Timed-Out Range (0x20C) does not exist in draft-18")
        if self._group is not None:
            self._locate(group_id, object_id)  # only for the order check
        out = encode_varint(kind) + encode_varint(group_id) + encode_varint(object_id)
        # The prior Group and Object become the marker's; the prior Subgroup and Priority stay the last actual
        # object's (draft-21 §11.4.1.2).
        self._group = group_id
        self._object = object_id
        return out

    def encode(self, item: FetchObject | FetchEndOfRange) -> bytes:
        """A whole entry, payload included (copies the payload: for tests and small objects)."""
        if isinstance(item, FetchEndOfRange):
            return self.end_of_range(item.kind, item.group_id, item.object_id)
        head = self.object_header(
            item.group_id, item.subgroup_id, item.object_id, item.publisher_priority, item.properties, len(item.payload)
        )
        return head + item.payload


# -- Datagram decoding ------------------------------------------------------------------------------------------


def decode_datagram(data: bytes, version: Version) -> ObjectDatagram | Padding:
    """Parse one datagram (draft-21 §11.2.1, §11.5.2). Anything malformed is a PROTOCOL_VIOLATION.

    Refused (draft-21 §11.2.1): an unknown type; bit 0x10 or any undefined bit (>= 0x40) set; STATUS with
    END_OF_GROUP; the PROPERTIES flag with a zero Properties Length; properties on a non-Normal status; an
    undefined status (§11.1.2). Also a datagram cut short, or with bytes after its Object Status. draft-18 allows
    the same set of types (0b00X0XXXX minus STATUS|END_OF_GROUP), stated as ranges.
    """
    try:
        kind, pos = decode_varint(data, 0)
        if kind >= 0x40 or kind & 0x10:
            if kind == PADDING_DATAGRAM_TYPE:
                return Padding()
            if kind < 0x40:
                raise ProtocolViolation(_PV, f"datagram type 0x{kind:x} has the reserved bit 0x10 set")
            raise ProtocolViolation(_PV, f"unknown datagram type 0x{kind:x}")
        if kind & 0x22 == 0x22:
            raise ProtocolViolation(_PV, f"datagram type 0x{kind:x} has both STATUS and END_OF_GROUP")
        alias, pos = decode_varint(data, pos)
        group, pos = decode_varint(data, pos)
        object_id = 0
        if not kind & 0x04:
            object_id, pos = decode_varint(data, pos)
        priority: int | None = None
        if not kind & 0x08:
            priority = data[pos]
            pos += 1
        properties: Properties | None = None
        if kind & 0x01:
            length, pos = decode_varint(data, pos)
            if length == 0:
                raise ProtocolViolation(_PV, "datagram has the PROPERTIES flag but a zero Properties Length")
            end = pos + length
            if end > len(data):
                raise ProtocolViolation(_PV, "datagram properties run past its end")
            properties = _parse_properties(data[pos:end])
            pos = end
        if kind & 0x20:
            value, pos = decode_varint(data, pos)
            status = _status(value)
            if properties is not None and status != _NORMAL:
                raise ProtocolViolation(_PV, f"properties on an object with status {status.name}")
            if pos != len(data):
                raise ProtocolViolation(_PV, "datagram has bytes after its Object Status")
            return ObjectDatagram(alias, group, object_id, priority, properties, False, status, b"")
        return ObjectDatagram(alias, group, object_id, priority, properties, bool(kind & 0x02), None, data[pos:])
    except IndexError:
        raise ProtocolViolation(_PV, "datagram truncated") from None


# -- Stream parsing ---------------------------------------------------------------------------------------------

_S_TYPE = 0
_S_SUBGROUP_HEADER = 1
_S_FETCH_HEADER = 2
_S_PADDING = 3
_S_CONTROL = 4
_S_OBJECT = 5  # at an object boundary: the object's leading fields
_S_PROPERTIES = 6  # collecting Properties bytes
_S_TAIL = 7  # Object Payload Length (and the Object Status on subgroup streams)
_S_PAYLOAD = 8  # collecting payload bytes
_S_FINISHED = 9
_S_FAILED = 10


class DataStreamParser:
    """Incremental parser of one unidirectional stream: subgroup, fetch, padding (or SETUP, passed through).

    `feed(data, fin)` returns the events completed by `data`: first the header (`SubgroupHeader`, `FetchHeader`,
    `Padding`, or `ControlStreamData` for a control stream), then each `SubgroupObject` / `FetchObject` /
    `FetchEndOfRange` as soon as it is whole. A payload is joined once from the pieces it arrived in and is a
    plain `bytes` a relay can cache and fan out as is.

    Errors: `ProtocolViolation` (the session closes), `ObjectTooLarge` (reset this stream with EXCESSIVE_LOAD).
    After either, the parser is dead and raises the same error again.

    `fetch_group_order` is the GROUP_ORDER of the fetch whose objects the stream carries: it decides whether a
    Group ID Delta counts up (ASCENDING, the FETCH default) or down (draft-21 §11.4.1.1). The FETCH_HEADER only
    names the request, so it may be a callable, called once with the header's Request ID before any object is
    parsed, that returns the order of that request.
    """

    def __init__(
        self,
        version: Version,
        fetch_group_order: GroupOrder | Callable[[int], GroupOrder] = GroupOrder.ASCENDING,
        max_payload_bytes: int = MAX_OBJECT_PAYLOAD_BYTES,
        max_properties_bytes: int = MAX_OBJECT_PROPERTIES_BYTES,
    ) -> None:
        self.version = version
        self.stream_type: StreamType | None = None
        #: The stream header once parsed; a FIRST_OBJECT_ID header is replaced by its resolved form (subgroup_id
        #: set) once the first object is parsed.
        self.header: SubgroupHeader | FetchHeader | None = None
        self._group_order_source = fetch_group_order
        self._descending = False
        self._max_payload = max_payload_bytes
        self._max_properties = max_properties_bytes
        self._state = _S_TYPE
        self._error: MoqError | None = None
        self._carry = b""
        self._control_prefix = b""
        self._subgroup_type = 0
        self._has_properties = False
        self._is_fetch = False
        # The object being parsed.
        self._object_id = 0
        self._properties: Properties = ()
        self._fetch_properties: Properties | None = None
        self._status = _NORMAL
        self._need = 0  # bytes of properties or payload still to come
        # Pieces of a payload or property block that arrived in several feeds, joined once when it is whole.
        # Pieces under _COALESCE_BELOW bytes are appended to a trailing bytearray instead of being kept one by
        # one, so a peer sending one-byte STREAM frames cannot make us hold one Python object per byte.
        self._pieces: list[bytes | bytearray] = []
        # Subgroup streams: the previous Object ID (None before the first object).
        self._prev_object_id: int | None = None
        # Fetch streams: the prior entry's Group/Object (None before the first entry), and the last actual
        # object's Subgroup (None if none, or if it had Datagram preference) and priority (draft-21 §11.4.1.2).
        self._prior_group: int | None = None
        self._prior_object = 0
        self._prior_subgroup: int | None = None
        self._prior_priority: int | None = None
        self._group = 0
        self._subgroup: int | None = None
        self._priority = 0

    @property
    def at_object_boundary(self) -> bool:
        """True when the stream so far ends between objects (a FIN here is clean)."""
        return self._state in (_S_OBJECT, _S_PADDING, _S_CONTROL, _S_FINISHED) and not self._carry

    def feed(self, data: bytes, fin: bool = False) -> list[DataStreamEvent]:
        """Parse `data` (the next bytes of the stream); `fin` marks the stream's graceful end."""
        if self._error is not None:
            raise self._error
        if self._state == _S_FINISHED:
            raise ValueError("data fed after the stream's FIN")
        if type(data) is not bytes:
            data = bytes(data)
        events: list[DataStreamEvent] = []
        try:
            self._consume(data, events)
            if fin:
                self._finish()
        except (ProtocolViolation, ObjectTooLarge) as exc:
            self._state = _S_FAILED
            self._error = exc
            raise
        return events

    def _finish(self) -> None:
        state = self._state
        if state in (_S_PADDING, _S_CONTROL) or (state == _S_OBJECT and not self._carry):
            self._state = _S_FINISHED
            return
        if state in (_S_TYPE, _S_SUBGROUP_HEADER, _S_FETCH_HEADER):
            raise ProtocolViolation(_PV, "FIN before the stream header was complete")
        # draft-21 §11.3: "If a stream ends gracefully ... in the middle of a serialized Object, the session
        # SHOULD be closed with a PROTOCOL_VIOLATION".
        raise ProtocolViolation(_PV, "FIN in the middle of an object")

    def _consume(self, data: bytes, events: list[DataStreamEvent]) -> None:
        pos = 0
        end = len(data)
        while True:
            state = self._state
            if state in (_S_PAYLOAD, _S_PROPERTIES):
                need = self._need
                avail = end - pos
                pieces = self._pieces
                if avail < need:
                    if avail:
                        piece = data[pos:] if pos else data
                        if avail >= _COALESCE_BELOW:
                            pieces.append(piece)
                        elif pieces and type(pieces[-1]) is bytearray:
                            pieces[-1] += piece
                        else:
                            pieces.append(bytearray(piece))
                        self._need = need - avail
                    return
                piece = data[pos : pos + need] if (pos or need != end) else data
                pos += need
                if pieces:
                    pieces.append(piece)
                    piece = b"".join(pieces)
                    self._pieces = []
                if state == _S_PAYLOAD:
                    self._complete(piece, events)
                else:
                    props = _parse_properties(piece)
                    if self._is_fetch:
                        self._fetch_properties = props
                    else:
                        self._properties = props
                    self._state = _S_TAIL
                continue
            if state == _S_PADDING:
                return  # draft-21 §11.5.1: the receiver MUST discard padding
            if state == _S_CONTROL:
                rest = data[pos:] if pos else data
                if self._control_prefix:
                    rest = self._control_prefix + rest
                    self._control_prefix = b""
                if rest:
                    events.append(ControlStreamData(rest))
                return
            if pos >= end:
                return
            # A bounded step: parse it whole, or keep its bytes and wait for more.
            if state == _S_OBJECT:
                step = self._fetch_object if self._is_fetch else self._subgroup_object
            elif state == _S_TAIL:
                step = self._tail
            elif state == _S_TYPE:
                step = self._stream_type
            elif state == _S_SUBGROUP_HEADER:
                step = self._subgroup_header
            else:
                step = self._fetch_header
            carry = self._carry
            if carry:
                joined = carry + data[pos : pos + _MAX_STAGE]
                try:
                    used = step(joined, 0, events)
                except IndexError:
                    # Fewer than _MAX_STAGE new bytes (else the step would have fit): all of them are kept.
                    self._carry = joined
                    return
                pos += used - len(carry)
                self._carry = b""
            else:
                try:
                    pos = step(data, pos, events)
                except IndexError:
                    self._carry = data[pos:]
                    return

    # Each step reads from `buf` at `pos` and returns the position after what it read. Running short raises
    # IndexError before any state changes, so the step can be retried from the same place with more bytes.

    def _stream_type(self, buf: bytes, pos: int, events: list[DataStreamEvent]) -> int:
        value, end = decode_varint(buf, pos)
        kind = stream_type_of(value, self.version)
        self.stream_type = kind
        if kind == StreamType.SUBGROUP_HEADER:
            self._subgroup_type = value
            self._state = _S_SUBGROUP_HEADER
        elif kind == StreamType.FETCH_HEADER:
            self._is_fetch = True
            self._state = _S_FETCH_HEADER
        elif kind == StreamType.PADDING:
            events.append(Padding())
            self._state = _S_PADDING
        else:
            self._control_prefix = buf[pos:end]
            self._state = _S_CONTROL
        return end

    def _subgroup_header(self, buf: bytes, pos: int, events: list[DataStreamEvent]) -> int:
        kind = self._subgroup_type
        alias, pos = decode_varint(buf, pos)
        group, pos = decode_varint(buf, pos)
        mode = SubgroupIdMode((kind >> 1) & 0x03)
        subgroup: int | None = 0
        if mode == SubgroupIdMode.EXPLICIT:
            subgroup, pos = decode_varint(buf, pos)
        elif mode == SubgroupIdMode.FIRST_OBJECT_ID:
            subgroup = None
        priority: int | None = None
        if not kind & 0x20:
            priority = buf[pos]
            pos += 1
        header = SubgroupHeader(
            alias, group, subgroup, priority, mode, bool(kind & 0x01), bool(kind & 0x08), bool(kind & 0x40)
        )
        self.header = header
        self._has_properties = header.has_properties
        self._state = _S_OBJECT
        events.append(header)
        return pos

    def _fetch_header(self, buf: bytes, pos: int, events: list[DataStreamEvent]) -> int:
        request_id, pos = decode_varint(buf, pos)
        source = self._group_order_source
        order = source if isinstance(source, GroupOrder) else source(request_id)
        self._descending = order == GroupOrder.DESCENDING
        header = FetchHeader(request_id)
        self.header = header
        self._state = _S_OBJECT
        events.append(header)
        return pos

    def _subgroup_object(self, buf: bytes, pos: int, events: list[DataStreamEvent]) -> int:
        delta, pos = decode_varint(buf, pos)
        props_length = length = status_value = 0
        if self._has_properties:
            props_length, pos = decode_varint(buf, pos)
        if not props_length:
            # No property bytes to wait for: read the rest of the object's fields in the same bounded step.
            length, pos = decode_varint(buf, pos)
            if not length:
                status_value, pos = decode_varint(buf, pos)
        prev = self._prev_object_id
        if prev is None:
            object_id = delta
            header = self.header
            if isinstance(header, SubgroupHeader) and header.subgroup_id_mode == SubgroupIdMode.FIRST_OBJECT_ID:
                self.header = msgspec.structs.replace(header, subgroup_id=object_id)
        else:
            object_id = prev + delta + 1
            if object_id > MAX_VARINT:
                # draft-21 §11.3.1: "greater than 2^64 - 1 ... MUST close the session with a PROTOCOL_VIOLATION"
                raise ProtocolViolation(_PV, "Object ID Delta overflows 2^64-1")
        self._object_id = object_id
        self._prev_object_id = object_id
        self._properties = ()
        if props_length:
            if props_length > self._max_properties:
                raise ObjectTooLarge("object properties", props_length, self._max_properties)
            self._need = props_length
            self._state = _S_PROPERTIES
        else:
            self._sized(length, status_value, events)
        return pos

    def _fetch_object(self, buf: bytes, pos: int, events: list[DataStreamEvent]) -> int:
        flags, pos = decode_varint(buf, pos)
        prior_group = self._prior_group
        first = prior_group is None
        if flags >= 0x80:
            return self._end_of_range(flags, buf, pos, events)
        group = prior_group or 0
        group_delta = object_delta = 0
        if flags & 0x08:
            group_delta, pos = decode_varint(buf, pos)
        datagram = bool(flags & 0x40)
        mode = flags & 0x03
        subgroup: int | None = 0
        if datagram:
            subgroup = None  # the two low bits MUST be ignored (draft-21 §11.4.1.1)
        elif mode == 0x03:
            subgroup, pos = decode_varint(buf, pos)
        if flags & 0x04:
            object_delta, pos = decode_varint(buf, pos)
        priority = self._prior_priority
        if flags & 0x10:
            priority = buf[pos]
            pos += 1
        props_length = length = 0
        if flags & 0x20:
            props_length, pos = decode_varint(buf, pos)
        if not props_length:
            length, pos = decode_varint(buf, pos)  # Object Payload Length, in the same bounded step
        # Everything is read; now resolve against the prior entry (draft-21 §11.4.1.1-§11.4.1.2).
        if first and flags & 0x0C != 0x0C:
            raise ProtocolViolation(_PV, "the first fetch object must carry a Group ID Delta and an Object ID Delta")
        if not datagram and (mode == 0x01 or mode == 0x02):
            base = self._prior_subgroup
            if base is None:
                raise ProtocolViolation(_PV, "fetch object refers to a prior Subgroup ID that does not exist")
            subgroup = base if mode == 0x01 else base + 1
            if subgroup > MAX_VARINT:
                raise ProtocolViolation(_PV, "Subgroup ID overflows 2^64-1")
        if priority is None:
            raise ProtocolViolation(_PV, "fetch object refers to a prior priority that does not exist")
        if flags & 0x08:
            if first:
                group = group_delta
            elif self._descending:
                group = group - group_delta - 1
                if group < 0:
                    raise ProtocolViolation(_PV, "Group ID Delta goes below group 0 in a descending fetch")
            else:
                group = group + group_delta + 1
                if group > MAX_VARINT:
                    raise ProtocolViolation(_PV, "Group ID Delta overflows 2^64-1")
            object_id = object_delta if flags & 0x04 else self._prior_object + 1
        else:
            object_id = self._prior_object + (object_delta if flags & 0x04 else 1)
        if object_id > MAX_VARINT:
            raise ProtocolViolation(_PV, "Object ID overflows 2^64-1")
        self._prior_group = self._group = group
        self._prior_object = self._object_id = object_id
        self._prior_subgroup = self._subgroup = subgroup
        self._prior_priority = self._priority = priority
        self._fetch_properties = None
        if props_length:
            if props_length > self._max_properties:
                raise ObjectTooLarge("object properties", props_length, self._max_properties)
            self._need = props_length
            self._state = _S_PROPERTIES
        else:
            self._sized(length, 0, events)
        return pos

    def _end_of_range(self, flags: int, buf: bytes, pos: int, events: list[DataStreamEvent]) -> int:
        if flags == EndOfRangeKind.NON_EXISTENT or flags == EndOfRangeKind.UNKNOWN:
            kind = EndOfRangeKind(flags)
        elif flags == EndOfRangeKind.TIMED_OUT and self.version.family >= 20:
            kind = EndOfRangeKind.TIMED_OUT
        else:
            # draft-21 §11.4.1 Table 7: "Any other value is a PROTOCOL_VIOLATION"; draft-18 has no 0x20C.
            raise ProtocolViolation(_PV, f"undefined fetch Serialization Flags 0x{flags:x}")
        # draft-21 §11.4.1.2: "the Group ID and Object ID fields are present". We read them as absolute IDs, not
        # as deltas: the text names them "Group ID" and "Object ID" (not "... Delta"), and a delta-coded Group ID
        # could not name a location in the prior object's group (a present Group ID Delta always moves to
        # another group), which is exactly where a non-existent range after an object usually ends.
        group, pos = decode_varint(buf, pos)
        object_id, pos = decode_varint(buf, pos)
        self._prior_group = group
        self._prior_object = object_id
        events.append(FetchEndOfRange(kind, group, object_id))
        return pos

    def _tail(self, buf: bytes, pos: int, events: list[DataStreamEvent]) -> int:
        length, pos = decode_varint(buf, pos)
        status_value = 0
        if not length and not self._is_fetch:
            status_value, pos = decode_varint(buf, pos)
        self._sized(length, status_value, events)
        return pos

    def _sized(self, length: int, status_value: int, events: list[DataStreamEvent]) -> None:
        """The Object Payload Length (and, if it is 0 on a subgroup stream, the Object Status) are known."""
        if length:
            if length > self._max_payload:
                raise ObjectTooLarge("object payload", length, self._max_payload)
            self._status = _NORMAL
            self._need = length
            self._state = _S_PAYLOAD
            return
        if self._is_fetch:
            status = _NORMAL  # fetch objects carry no status (draft-21 §11.1.2)
        else:
            # draft-21 §11.3.1: "The Object Status field is only sent if the Object Payload Length is zero."
            status = _status(status_value)
            if status != _NORMAL and self._properties:
                # draft-21 §11.1.3: properties on a non-Normal object MUST close the session.
                raise ProtocolViolation(_PV, f"properties on an object with status {status.name}")
        self._status = status
        self._complete(b"", events)

    def _complete(self, payload: bytes, events: list[DataStreamEvent]) -> None:
        if self._is_fetch:
            events.append(
                FetchObject(
                    self._group, self._subgroup, self._object_id, self._priority, self._fetch_properties, payload
                )
            )
        else:
            events.append(SubgroupObject(self._object_id, self._properties, self._status, payload))
        self._state = _S_OBJECT
