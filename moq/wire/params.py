"""Message Parameters (draft-22 §9.20 / draft-21 §9.20; draft-18 §"Message Parameters").

Wire form: `Number of Parameters (vi64)` then `{Type Delta (vi64), Value}` in ascending type order. These are not
Key-Value-Pairs: each parameter has its own value encoding (uint8, varint, Location or length-prefixed), so an
unknown parameter cannot be skipped and closes the session with PROTOCOL_VIOLATION; so does a parameter in a
message it is not allowed in, and an unexpected duplicate.

`Parameters` holds every parameter any supported draft defines, as optional fields (None = absent). Which of them a
message may carry, and how 0x21 is encoded, depends on the draft: see `ALLOWED` and the codec functions below.

- `pull_parameters` reads a block; peer errors are `ProtocolViolation`s, and a range filter whose deltas overflow is
  an `InvalidFilter` (a request error, REQUEST_ERROR INVALID_FILTER, never a session error).
- `encode_parameters` / `push_parameters` write the minimal ascending form; anything the draft or the message cannot
  carry is an `EncodeError`, raised before a byte is written.
- Request-level checks (inverted ranges, odd Property Types, priorities over 255, MAX_FILTER_RANGES, repeated
  (Type, SetID, Property Type)) and per-request narrowing of REQUEST_UPDATE / REQUEST_OK belong to the session.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Any

import msgspec
from aioquic.buffer import Buffer, BufferReadError

from moq.errors import EncodeError, MoqError, ProtocolViolation
from moq.wire.codes import RequestErrorCode, SessionErrorCode
from moq.wire.primitives import (
    Location,
    Token,
    TrackNamespace,
    check_namespace,
    decode_token,
    encode_token,
    pull_length,
    pull_length_bytes,
    pull_namespace,
)
from moq.wire.varint import MAX_VARINT, encode_varint, pull_varint
from moq.wire.version import Version


class ParameterType(IntEnum):
    """Message Parameter types. 0x21 is LOCATION_FILTER from draft-20 on, SUBSCRIPTION_FILTER in draft-18."""

    OBJECT_DELIVERY_TIMEOUT = 0x02
    AUTHORIZATION_TOKEN = 0x03
    RENDEZVOUS_TIMEOUT = 0x04
    SUBGROUP_DELIVERY_TIMEOUT = 0x06
    EXPIRES = 0x08
    LARGEST_OBJECT = 0x09
    FILL_TIMEOUT = 0x0A
    FORWARD = 0x10
    SUBSCRIBER_PRIORITY = 0x20
    LOCATION_FILTER = 0x21
    GROUP_ORDER = 0x22
    FILL_PARAMETERS = 0x23
    SUBGROUP_FILTER = 0x25
    OBJECTID_FILTER = 0x26
    PRIORITY_FILTER = 0x27
    OBJECT_PROPERTY_FILTER = 0x28
    TRACK_PROPERTY_FILTER = 0x29
    NEW_GROUP_REQUEST = 0x32
    TRACK_NAMESPACE_PREFIX = 0x34
    INCLUDE_PROPERTIES = 0x35


class GroupOrder(IntEnum):
    """GROUP_ORDER values (0 is only valid as "publisher's default" where a draft says so)."""

    ASCENDING = 0x1
    DESCENDING = 0x2


class LocationFilterType(IntEnum):
    """The forms a location filter takes. Values are draft-22's Location Filter Type codepoints (§9.20.x)."""

    NONE = 0x00  # no filter (removes one in REQUEST_UPDATE)
    RELATIVE_START_GROUP = 0x01  # start = {Largest.Group + 1 - start_group, 0}
    ABSOLUTE_START = 0x02  # start = {start_group, start_object}, open-ended
    ABSOLUTE_RANGE = 0x03  # start .. end of group end_group
    ABSOLUTE_RANGE_OBJECT = 0x04  # start .. {end_group, end_object}
    NEXT_OBJECT = 0x05  # start = {Largest.Group, Largest.Object + 1}


class LocationFilter(msgspec.Struct, frozen=True):
    """A location filter: an inclusive range of Locations (draft-20+ LOCATION_FILTER, draft-18 SUBSCRIPTION_FILTER).

    `end_group` is absolute here; on the wire it travels as a delta from `start_group`. Draft-18's Subscription
    Filter types map onto these forms: NextGroupStart = RELATIVE_START_GROUP with start_group 0, LargestObject =
    NEXT_OBJECT, AbsoluteStart = ABSOLUTE_START, AbsoluteRange = ABSOLUTE_RANGE. A form a draft cannot express
    is refused with `EncodeError` when encoding for that draft.
    """

    type: LocationFilterType
    start_group: int = 0
    start_object: int = 0
    end_group: int | None = None
    end_object: int | None = None


class RangeFilter(msgspec.Struct, frozen=True):
    """A range filter parameter, 0x25-0x29 (draft-21 §3.3.2, §8.6; draft-19 and later).

    `ranges` are absolute inclusive (start, end) pairs; the last end may be None (open-ended). An empty filter
    (`set_id` None) is the zero-length form that removes a filter in REQUEST_UPDATE.
    """

    set_id: int | None = None
    property_type: int | None = None  # only for OBJECT_PROPERTY_FILTER and TRACK_PROPERTY_FILTER
    ranges: tuple[tuple[int, int | None], ...] = ()


class FillParameters(msgspec.Struct, frozen=True):
    """FILL_PARAMETERS (0x23, draft-20+): the parameters of a fill fetch, in their own delta scope.

    Wire form: Length, then `Number of Parameters` and the parameters, "encoded as if they were Parameters for a
    separate message" (draft-21 §9.20.16), i.e. with their count, as a message's Parameters field is. aiomoqt
    0.13 writes it so too; see docs/INTEROP-NOTES.md.
    """

    fill_timeout: int | None = None
    subscriber_priority: int | None = None
    location_filter: LocationFilter | None = None
    group_order: GroupOrder | None = None
    subgroup_filters: tuple[RangeFilter, ...] = ()
    objectid_filters: tuple[RangeFilter, ...] = ()
    priority_filters: tuple[RangeFilter, ...] = ()
    object_property_filters: tuple[RangeFilter, ...] = ()


class Parameters(msgspec.Struct, frozen=True):
    """The Message Parameters of one message; None (or an empty tuple) means absent."""

    object_delivery_timeout: int | None = None
    authorization_tokens: tuple[Token, ...] = ()
    rendezvous_timeout: int | None = None
    subgroup_delivery_timeout: int | None = None
    expires: int | None = None
    largest_object: Location | None = None
    fill_timeout: int | None = None
    forward: int | None = None
    subscriber_priority: int | None = None
    location_filter: LocationFilter | None = None
    group_order: GroupOrder | None = None
    fill_parameters: FillParameters | None = None
    subgroup_filters: tuple[RangeFilter, ...] = ()
    objectid_filters: tuple[RangeFilter, ...] = ()
    priority_filters: tuple[RangeFilter, ...] = ()
    object_property_filters: tuple[RangeFilter, ...] = ()
    track_property_filters: tuple[RangeFilter, ...] = ()
    new_group_request: int | None = None
    track_namespace_prefix: TrackNamespace | None = None
    include_properties: int | None = None


NO_PARAMETERS = Parameters()


class InvalidFilter(MoqError):
    """A range filter whose Start/End deltas sum past 2^64-1 (draft-21 §8.6).

    Not a session error: the request carrying it must be refused with REQUEST_ERROR INVALID_FILTER (`code`). Raised
    by `pull_parameters` only after the whole parameter block has been read, so a session error anywhere in the block
    wins, and the buffer stands just past the block.
    """

    code = RequestErrorCode.INVALID_FILTER

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CarrierType(IntEnum):
    """Type codes of the control messages that carry Message Parameters (draft-21 §9, Table 5; draft-18 §9).

    Only the carriers: REQUEST_ERROR, NAMESPACE and PUBLISH_DONE have no Parameters field in either draft. The
    REQUEST_OK aliases (PUBLISH_OK, REQUEST_UPDATE_OK, TRACK_STATUS_OK, SUBSCRIBE_NAMESPACE_OK, SUBSCRIBE_TRACKS_OK,
    PUBLISH_NAMESPACE_OK) share REQUEST_OK's code.
    """

    REQUEST_UPDATE = 0x02
    SUBSCRIBE = 0x03
    SUBSCRIBE_OK = 0x04
    PUBLISH_NAMESPACE = 0x06
    REQUEST_OK = 0x07
    TRACK_STATUS = 0x0D
    FETCH = 0x16
    FETCH_OK = 0x18
    PUBLISH = 0x1D
    PUBLISH_OK_18 = 0x1E  # draft-18 only: its Table 5 still lists PUBLISH_OK at 0x1E though §9.3 makes it REQUEST_OK
    PUBLISH_STATE_NOTIFY = 0x22  # draft-20 and later
    SUBSCRIBE_NAMESPACE = 0x50
    SUBSCRIBE_TRACKS = 0x51


# -- Which parameters exist, where they may appear, and which may repeat ------------------------------------------

_P = ParameterType
_M = CarrierType

#: The Message Parameter types each wire family defines (draft-21 §16.7, Table 13; draft-18 §"Message Parameters"
#: IANA table). Anything else is an unknown parameter: PROTOCOL_VIOLATION (draft-21 §9.20).
DEFINED: dict[int, frozenset[ParameterType]] = {
    18: frozenset(
        {
            _P.OBJECT_DELIVERY_TIMEOUT,
            _P.AUTHORIZATION_TOKEN,
            _P.RENDEZVOUS_TIMEOUT,
            _P.SUBGROUP_DELIVERY_TIMEOUT,
            _P.EXPIRES,
            _P.LARGEST_OBJECT,
            _P.FILL_TIMEOUT,
            _P.FORWARD,
            _P.SUBSCRIBER_PRIORITY,
            _P.LOCATION_FILTER,  # SUBSCRIPTION_FILTER in draft-18
            _P.GROUP_ORDER,
            _P.NEW_GROUP_REQUEST,
            _P.TRACK_NAMESPACE_PREFIX,
        }
    ),
    20: frozenset(ParameterType),
}

#: Parameters that may appear more than once in one message (or one FILL_PARAMETERS scope). Range filters: draft-21
#: §3.3.2 ("MAY appear multiple times"). AUTHORIZATION_TOKEN: draft-21 §9.20.17 speaks of sending "one or more
#: updated AUTHORIZATION_TOKENs" in one REQUEST_UPDATE; §9.20.3 itself is silent, so we accept repeats rather than
#: close a session over them.
REPEATABLE: frozenset[ParameterType] = frozenset(
    {
        _P.AUTHORIZATION_TOKEN,
        _P.SUBGROUP_FILTER,
        _P.OBJECTID_FILTER,
        _P.PRIORITY_FILTER,
        _P.OBJECT_PROPERTY_FILTER,
        _P.TRACK_PROPERTY_FILTER,
    }
)

_OBJECT_RANGE_FILTERS = frozenset(
    {_P.SUBGROUP_FILTER, _P.OBJECTID_FILTER, _P.PRIORITY_FILTER, _P.OBJECT_PROPERTY_FILTER}
)

#: What may appear inside FILL_PARAMETERS (draft-21 §9.20.16, Table 6); anything else is a PROTOCOL_VIOLATION.
FILL_ALLOWED: frozenset[ParameterType] = (
    frozenset({_P.FILL_TIMEOUT, _P.SUBSCRIBER_PRIORITY, _P.LOCATION_FILTER, _P.GROUP_ORDER}) | _OBJECT_RANGE_FILTERS
)

# draft-21: each parameter's "MAY appear in" list (§9.20.3-§9.20.22), range filters from §3.3.2.
_SUBSCRIBE_20 = (
    frozenset(
        {
            _P.OBJECT_DELIVERY_TIMEOUT,  # §9.20.5
            _P.AUTHORIZATION_TOKEN,  # §9.20.3
            _P.RENDEZVOUS_TIMEOUT,  # §9.20.7
            _P.SUBGROUP_DELIVERY_TIMEOUT,  # §9.20.4
            _P.FORWARD,  # §9.20.19
            _P.SUBSCRIBER_PRIORITY,  # §9.20.8
            _P.LOCATION_FILTER,  # §9.20.10
            _P.GROUP_ORDER,  # §9.20.9
            _P.FILL_PARAMETERS,  # §9.20.16
            _P.NEW_GROUP_REQUEST,  # §9.20.20
            _P.INCLUDE_PROPERTIES,  # §9.20.22
        }
    )
    | _OBJECT_RANGE_FILTERS
)
_RESPONSE_20 = frozenset({_P.EXPIRES, _P.LARGEST_OBJECT})  # §9.20.17, §9.20.18

#: ALLOWED[family][message type code]: the parameters that message may carry (draft-21 §9.20.1: any other is a
#: PROTOCOL_VIOLATION). The codec is stateless, so REQUEST_UPDATE and REQUEST_OK allow the union of what any use of
#: them may carry (a REQUEST_UPDATE of a subscription, of a FETCH, of a SUBSCRIBE_NAMESPACE...; PUBLISH_OK,
#: TRACK_STATUS_OK...): the session narrows that by the request the message belongs to.
ALLOWED: dict[int, dict[int, frozenset[ParameterType]]] = {
    20: {
        _M.SUBSCRIBE: _SUBSCRIBE_20,
        _M.SUBSCRIBE_OK: _RESPONSE_20,
        # EXPIRES in PUBLISH_OK, SUBSCRIBE_NAMESPACE_OK, SUBSCRIBE_TRACKS_OK, PUBLISH_NAMESPACE_OK, REQUEST_UPDATE_OK;
        # LARGEST_OBJECT in REQUEST_UPDATE_OK, TRACK_STATUS_OK.
        _M.REQUEST_OK: _RESPONSE_20,
        # The list §9.8 gives in prose, and the one each parameter gives: mondain's draft-22 decoder agrees.
        _M.PUBLISH: frozenset(
            {
                _P.OBJECT_DELIVERY_TIMEOUT,
                _P.AUTHORIZATION_TOKEN,
                _P.SUBGROUP_DELIVERY_TIMEOUT,
                _P.EXPIRES,
                _P.LARGEST_OBJECT,
                _P.FORWARD,
                _P.SUBSCRIBER_PRIORITY,
                _P.LOCATION_FILTER,
                _P.GROUP_ORDER,
            }
        ),
        _M.PUBLISH_STATE_NOTIFY: frozenset({_P.LARGEST_OBJECT, _P.FORWARD, _P.LOCATION_FILTER}),
        _M.FETCH: frozenset(
            {
                _P.AUTHORIZATION_TOKEN,
                _P.FILL_TIMEOUT,
                _P.SUBSCRIBER_PRIORITY,
                _P.LOCATION_FILTER,
                _P.GROUP_ORDER,
                _P.INCLUDE_PROPERTIES,
            }
        )
        | _OBJECT_RANGE_FILTERS,
        _M.FETCH_OK: frozenset(),  # no parameter names FETCH_OK
        _M.TRACK_STATUS: frozenset({_P.AUTHORIZATION_TOKEN, _P.INCLUDE_PROPERTIES}),
        _M.PUBLISH_NAMESPACE: frozenset({_P.AUTHORIZATION_TOKEN}),
        _M.SUBSCRIBE_NAMESPACE: frozenset({_P.AUTHORIZATION_TOKEN}),
        # Its own list (AUTHORIZATION_TOKEN, FORWARD, GROUP_ORDER, range filters incl. TRACK_PROPERTY_FILTER,
        # INCLUDE_PROPERTIES), plus §9.18.1: "Any Parameter that can be specified on a Subscription (ie: in
        # SUBSCRIBE) is valid in SUBSCRIBE_TRACKS, unless otherwise specified" (Location filter and FILL_PARAMETERS
        # are named there).
        _M.SUBSCRIBE_TRACKS: _SUBSCRIBE_20 | {_P.TRACK_PROPERTY_FILTER},
        # Union over the requests it may update. Not GROUP_ORDER (not updatable, §5.1), not EXPIRES or
        # INCLUDE_PROPERTIES (no REQUEST_UPDATE in their lists).
        _M.REQUEST_UPDATE: frozenset(
            {
                _P.OBJECT_DELIVERY_TIMEOUT,
                _P.AUTHORIZATION_TOKEN,
                _P.SUBGROUP_DELIVERY_TIMEOUT,
                _P.FORWARD,
                _P.SUBSCRIBER_PRIORITY,
                _P.LOCATION_FILTER,
                _P.FILL_PARAMETERS,
                _P.TRACK_PROPERTY_FILTER,
                _P.NEW_GROUP_REQUEST,
                _P.TRACK_NAMESPACE_PREFIX,
            }
        )
        | _OBJECT_RANGE_FILTERS,
    },
}

# draft-18: each parameter's "MAY appear in" list (§"Message Parameters" subsections). PUBLISH_OK (a REQUEST_OK)
# still carries the subscriber's subscription parameters in draft-18.
_REQUEST_OK_18 = frozenset(
    {
        _P.OBJECT_DELIVERY_TIMEOUT,
        _P.SUBGROUP_DELIVERY_TIMEOUT,
        _P.EXPIRES,
        _P.LARGEST_OBJECT,
        _P.FORWARD,
        _P.SUBSCRIBER_PRIORITY,
        _P.LOCATION_FILTER,
        _P.GROUP_ORDER,
        _P.NEW_GROUP_REQUEST,
    }
)
ALLOWED[18] = {
    _M.SUBSCRIBE: frozenset(
        {
            _P.OBJECT_DELIVERY_TIMEOUT,
            _P.AUTHORIZATION_TOKEN,
            _P.RENDEZVOUS_TIMEOUT,
            _P.SUBGROUP_DELIVERY_TIMEOUT,
            _P.FORWARD,
            _P.SUBSCRIBER_PRIORITY,
            _P.LOCATION_FILTER,
            _P.GROUP_ORDER,
            _P.NEW_GROUP_REQUEST,
        }
    ),
    _M.SUBSCRIBE_OK: frozenset({_P.EXPIRES, _P.LARGEST_OBJECT}),
    _M.REQUEST_OK: _REQUEST_OK_18,
    _M.PUBLISH_OK_18: _REQUEST_OK_18,
    _M.PUBLISH: frozenset({_P.AUTHORIZATION_TOKEN, _P.EXPIRES, _P.LARGEST_OBJECT, _P.FORWARD}),
    _M.FETCH: frozenset({_P.AUTHORIZATION_TOKEN, _P.FILL_TIMEOUT, _P.SUBSCRIBER_PRIORITY, _P.GROUP_ORDER}),
    _M.FETCH_OK: frozenset(),
    _M.TRACK_STATUS: frozenset({_P.AUTHORIZATION_TOKEN}),
    _M.PUBLISH_NAMESPACE: frozenset({_P.AUTHORIZATION_TOKEN}),
    _M.SUBSCRIBE_NAMESPACE: frozenset({_P.AUTHORIZATION_TOKEN}),
    _M.SUBSCRIBE_TRACKS: frozenset({_P.AUTHORIZATION_TOKEN, _P.FORWARD}),
    _M.REQUEST_UPDATE: frozenset(
        {
            _P.OBJECT_DELIVERY_TIMEOUT,
            _P.AUTHORIZATION_TOKEN,
            _P.SUBGROUP_DELIVERY_TIMEOUT,
            _P.FORWARD,
            _P.SUBSCRIBER_PRIORITY,
            _P.LOCATION_FILTER,
            _P.NEW_GROUP_REQUEST,
            _P.TRACK_NAMESPACE_PREFIX,
        }
    ),
}


def allowed_parameters(version: Version, message_type: int) -> frozenset[ParameterType]:
    """The parameters a message of `message_type` may carry in `version`; ValueError for a non-carrier."""
    try:
        return ALLOWED[version.family][message_type]
    except KeyError:
        raise ValueError(f"message type 0x{message_type:x} carries no Message Parameters in {version.alpn}") from None


# The field of `Parameters` / `FillParameters` each type fills: its name, plural for the repeatable ones.
_FIELD: dict[ParameterType, str] = {
    kind: kind.name.lower() + ("s" if kind in REPEATABLE else "") for kind in ParameterType
}
_ASCENDING: tuple[ParameterType, ...] = tuple(sorted(ParameterType))
_BY_CODE: dict[int, ParameterType] = {kind.value: kind for kind in ParameterType}
_PROPERTY_FILTERS = frozenset({_P.OBJECT_PROPERTY_FILTER, _P.TRACK_PROPERTY_FILTER})

_PV = SessionErrorCode.PROTOCOL_VIOLATION


def _name(kind: int) -> str:
    known = _BY_CODE.get(kind)
    return f"{known.name} (0x{kind:x})" if known is not None else f"0x{kind:x}"


# -- Decoding ---------------------------------------------------------------------------------------------------


def pull_parameters(buf: Buffer, end: int, version: Version, message_type: int) -> Parameters:
    """Read `Number of Parameters (vi64)` and that many parameters, none reaching past `end` (draft-21 §9.20).

    Every malformed, unknown, misplaced or unexpectedly repeated parameter raises `ProtocolViolation` with the
    code the draft names (an undecodable token: KEY_VALUE_FORMATTING_ERROR). A range filter whose deltas overflow
    raises `InvalidFilter` once the whole block has been read. Request-level judgements (inverted ranges, odd
    property types, priorities over 255, too many ranges, MAX_FILTER_RANGES) are left to the session: the values
    are returned as sent. Does not require the block to end at `end` (Track Properties may follow).
    """
    allowed = allowed_parameters(version, message_type)
    try:
        count = pull_varint(buf)
        # Every parameter takes at least two bytes (a type delta and a value of one byte or more): a count the rest
        # of the message cannot hold is refused before looping.
        if count > (end - buf.tell()) // 2:
            raise ProtocolViolation(_PV, f"{count} parameters cannot fit in the rest of the message")
        fields, pending = _pull_block(buf, end, version, allowed, count)
    except BufferReadError:
        raise ProtocolViolation(_PV, "the message ends before its parameters do") from None
    if pending is not None:
        raise pending
    return Parameters(**fields)


def _pull_block(
    buf: Buffer, end: int, version: Version, allowed: frozenset[ParameterType], count: int, where: str = "this message"
) -> tuple[dict[str, Any], InvalidFilter | None]:
    """Read `count` parameters, none past `end`.

    Returns the struct fields read and the first `InvalidFilter` met (kept, not raised, so that a session error
    later in the block still wins).
    """
    defined = DEFINED[version.family]
    fields: dict[str, Any] = {}
    pending: InvalidFilter | None = None
    kind = 0
    index = 0
    while index < count:
        index += 1
        kind += pull_varint(buf)
        if kind > MAX_VARINT:
            raise ProtocolViolation(_PV, "parameter type delta overflows 2^64-1")
        known = _BY_CODE.get(kind)
        if known is None or known not in defined:
            raise ProtocolViolation(_PV, f"unknown message parameter {_name(kind)} in {version.alpn}")
        if known not in allowed:
            raise ProtocolViolation(_PV, f"parameter {known.name} is not allowed in {where}")
        field = _FIELD[known]
        repeatable = known in REPEATABLE
        if field in fields and not repeatable:
            raise ProtocolViolation(_PV, f"parameter {known.name} repeated")
        try:
            value = _DECODERS[known](buf, end, version, known)
        except InvalidFilter as exc:
            # The value was read whole (the buffer stands after it): keep going, a session error may follow.
            pending = pending or exc
            fields.setdefault(field, [])
            continue
        if buf.tell() > end:
            raise ProtocolViolation(_PV, f"parameter {known.name} runs past the end of its enclosing structure")
        if repeatable:
            fields.setdefault(field, []).append(value)
        else:
            fields[field] = value
    for field, value in fields.items():
        if isinstance(value, list):
            fields[field] = tuple(value)
    return fields, pending


_Decoder = Callable[[Buffer, int, Version, ParameterType], Any]


def _pull_varint_value(buf: Buffer, end: int, version: Version, kind: ParameterType) -> int:
    return pull_varint(buf)


def _pull_uint8(buf: Buffer, end: int, version: Version, kind: ParameterType) -> int:
    return buf.pull_uint8()


def _pull_flag(buf: Buffer, end: int, version: Version, kind: ParameterType) -> int:
    """FORWARD (draft-21 §9.20.19) and INCLUDE_PROPERTIES (§9.20.22): uint8, 0 or 1, else PROTOCOL_VIOLATION."""
    value = buf.pull_uint8()
    if value > 1:
        raise ProtocolViolation(_PV, f"{kind.name} must be 0 or 1, not {value}")
    return value


def _pull_group_order(buf: Buffer, end: int, version: Version, kind: ParameterType) -> GroupOrder:
    """GROUP_ORDER (draft-21 §9.20.9): uint8, Ascending 1 or Descending 2, else PROTOCOL_VIOLATION."""
    value = buf.pull_uint8()
    if value not in (GroupOrder.ASCENDING, GroupOrder.DESCENDING):
        raise ProtocolViolation(_PV, f"GROUP_ORDER must be 1 or 2, not {value}")
    return GroupOrder(value)


def _pull_location_value(buf: Buffer, end: int, version: Version, kind: ParameterType) -> Location:
    return Location(pull_varint(buf), pull_varint(buf))


def _pull_token(buf: Buffer, end: int, version: Version, kind: ParameterType) -> Token:
    """AUTHORIZATION_TOKEN (draft-21 §9.20.3): a length-prefixed Token; undecodable: KEY_VALUE_FORMATTING_ERROR."""
    return decode_token(pull_length_bytes(buf, end, "AUTHORIZATION_TOKEN"))


def _pull_namespace_prefix(buf: Buffer, end: int, version: Version, kind: ParameterType) -> TrackNamespace:
    """TRACK_NAMESPACE_PREFIX (draft-21 §9.20.21): a Track Namespace (§8.7), with no length of its own."""
    return pull_namespace(buf, end)


def _end_group(start_group: int, delta: int) -> int:
    """End Group from its delta; past 2^64-1 closes the session (draft-21 §9.20.10, draft-18 §Subscription Filters)."""
    end_group = start_group + delta
    if end_group > MAX_VARINT:
        raise ProtocolViolation(_PV, "StartGroup + EndGroupDelta exceeds 2^64-1")
    return end_group


def _pull_location_filter(buf: Buffer, end: int, version: Version, kind: ParameterType) -> LocationFilter:
    if version >= Version.DRAFT_22:
        return _pull_location_filter_22(buf)
    if version.family == 20:
        return _pull_location_filter_21(buf, end)
    return _pull_subscription_filter_18(buf, end)


def _pull_location_filter_22(buf: Buffer) -> LocationFilter:
    """draft-22 LOCATION_FILTER: Location Filter Type (vi64) 0x00-0x05, then the fields that type selects.

    The draft-22 text is not in hand; this follows the draft-21 -> 22 delta (DIGEST §6.1; #1913, #1953): no Length,
    0x00 none, 0x01 StartGroup (relative), 0x02 +StartObject (absolute, {0,0} included), 0x03 +EndGroupDelta,
    0x04 +EndObject, 0x05 Next Object; any other type is a PROTOCOL_VIOLATION.
    """
    code = pull_varint(buf)
    if code > LocationFilterType.NEXT_OBJECT:
        raise ProtocolViolation(_PV, f"unknown Location Filter Type 0x{code:x}")
    form = LocationFilterType(code)
    if form is LocationFilterType.NONE or form is LocationFilterType.NEXT_OBJECT:
        return LocationFilter(form)
    start_group = pull_varint(buf)
    if form is LocationFilterType.RELATIVE_START_GROUP:
        return LocationFilter(form, start_group)
    start_object = pull_varint(buf)
    if form is LocationFilterType.ABSOLUTE_START:
        return LocationFilter(form, start_group, start_object)
    end_group = _end_group(start_group, pull_varint(buf))
    if form is LocationFilterType.ABSOLUTE_RANGE:
        return LocationFilter(form, start_group, start_object, end_group)
    return LocationFilter(form, start_group, start_object, end_group, pull_varint(buf))


def _pull_location_filter_21(buf: Buffer, end: int) -> LocationFilter:
    """draft-20/21 LOCATION_FILTER (draft-21 §9.20.10): Length, then 0-4 vi64 fields, counted by decoding.

    0 fields: no filter; 1: relative StartGroup; 2: absolute start, except {0, 0} which means Next Object; 3: plus
    EndGroupDelta; 4: plus EndObject. A fifth field, or a field cut by Length, is a PROTOCOL_VIOLATION.
    """
    length = pull_length(buf, end, "LOCATION_FILTER")
    stop = buf.tell() + length
    values: list[int] = []
    while buf.tell() < stop:
        if len(values) == 4:
            raise ProtocolViolation(_PV, "LOCATION_FILTER has more than four fields")
        values.append(pull_varint(buf))
    if buf.tell() != stop:
        raise ProtocolViolation(_PV, "a LOCATION_FILTER field runs past its Length")
    if not values:
        return LocationFilter(LocationFilterType.NONE)
    if len(values) == 1:
        return LocationFilter(LocationFilterType.RELATIVE_START_GROUP, values[0])
    start_group, start_object = values[0], values[1]
    if len(values) == 2:
        if start_group == 0 and start_object == 0:
            return LocationFilter(LocationFilterType.NEXT_OBJECT)
        return LocationFilter(LocationFilterType.ABSOLUTE_START, start_group, start_object)
    end_group = _end_group(start_group, values[2])
    if len(values) == 3:
        return LocationFilter(LocationFilterType.ABSOLUTE_RANGE, start_group, start_object, end_group)
    return LocationFilter(LocationFilterType.ABSOLUTE_RANGE_OBJECT, start_group, start_object, end_group, values[3])


# draft-18 Subscription Filter Types (draft-18 §"Subscription Filters").
_NEXT_GROUP_START_18 = 0x1
_LARGEST_OBJECT_18 = 0x2
_ABSOLUTE_START_18 = 0x3
_ABSOLUTE_RANGE_18 = 0x4


def _pull_subscription_filter_18(buf: Buffer, end: int) -> LocationFilter:
    """draft-18 SUBSCRIPTION_FILTER: Length, then {Filter Type, [Start Location], [End Group Delta]}.

    Mapped onto LocationFilter: NextGroupStart -> RELATIVE_START_GROUP 0, LargestObject -> NEXT_OBJECT, AbsoluteStart
    -> ABSOLUTE_START, AbsoluteRange -> ABSOLUTE_RANGE. An unknown Filter Type, an empty value (no Filter Type) or
    a value that does not fill its Length exactly is a PROTOCOL_VIOLATION.
    """
    length = pull_length(buf, end, "SUBSCRIPTION_FILTER")
    stop = buf.tell() + length
    if length == 0:
        raise ProtocolViolation(_PV, "SUBSCRIPTION_FILTER has no Filter Type")
    code = pull_varint(buf)
    if code == _NEXT_GROUP_START_18:
        result = LocationFilter(LocationFilterType.RELATIVE_START_GROUP, 0)
    elif code == _LARGEST_OBJECT_18:
        result = LocationFilter(LocationFilterType.NEXT_OBJECT)
    elif code == _ABSOLUTE_START_18:
        result = LocationFilter(LocationFilterType.ABSOLUTE_START, pull_varint(buf), pull_varint(buf))
    elif code == _ABSOLUTE_RANGE_18:
        start_group, start_object = pull_varint(buf), pull_varint(buf)
        end_group = _end_group(start_group, pull_varint(buf))
        result = LocationFilter(LocationFilterType.ABSOLUTE_RANGE, start_group, start_object, end_group)
    else:
        raise ProtocolViolation(_PV, f"unknown Subscription Filter Type 0x{code:x}")
    if buf.tell() != stop:
        raise ProtocolViolation(_PV, "SUBSCRIPTION_FILTER does not fill its Length")
    return result


def _pull_range_filter(buf: Buffer, end: int, version: Version, kind: ParameterType) -> RangeFilter:
    """A range filter (draft-21 §8.6, §9.20.11-15): Length, [SetID (8)], [Property Type], Ranges until Length.

    Each Start is a delta from the previous End (0 first), each End a delta from its Start; the last End may be
    missing (open-ended). A field cut by Length, or a property filter without its Property Type, is malformed:
    PROTOCOL_VIOLATION. Deltas summing past 2^64-1 raise `InvalidFilter`, after the whole value has been read.
    """
    length = pull_length(buf, end, kind.name)
    if length == 0:
        return RangeFilter()
    stop = buf.tell() + length
    set_id = buf.pull_uint8()
    property_type = None
    if kind in _PROPERTY_FILTERS:
        if buf.tell() == stop:
            raise ProtocolViolation(_PV, f"{kind.name} has no Property Type")
        property_type = pull_varint(buf)
    ranges: list[tuple[int, int | None]] = []
    previous_end = 0
    overflow = False
    while buf.tell() < stop:
        start = previous_end + pull_varint(buf)
        finish = start + pull_varint(buf) if buf.tell() < stop else None
        overflow = overflow or start > MAX_VARINT or (finish is not None and finish > MAX_VARINT)
        ranges.append((start, finish))
        if finish is not None:
            previous_end = finish
    if buf.tell() != stop:
        raise ProtocolViolation(_PV, f"a {kind.name} range runs past its Length")
    if overflow:
        raise InvalidFilter(f"{kind.name} range deltas exceed 2^64-1")
    return RangeFilter(set_id, property_type, tuple(ranges))


def _pull_fill_parameters(buf: Buffer, end: int, version: Version, kind: ParameterType) -> FillParameters:
    """FILL_PARAMETERS (draft-21 §9.20.16): Length, then Number of Parameters and parameters of Table 6, their
    own delta scope, filling the Length exactly."""
    length = pull_length(buf, end, "FILL_PARAMETERS")
    stop = buf.tell() + length
    count = pull_varint(buf)
    if buf.tell() > stop:
        raise ProtocolViolation(_PV, "FILL_PARAMETERS count runs past its length")
    fields, pending = _pull_block(buf, stop, version, FILL_ALLOWED, count, "FILL_PARAMETERS")
    if buf.tell() != stop:
        raise ProtocolViolation(_PV, "FILL_PARAMETERS does not fill its length exactly")
    if pending is not None:
        raise pending
    return FillParameters(**fields)


_DECODERS: dict[ParameterType, _Decoder] = {
    _P.OBJECT_DELIVERY_TIMEOUT: _pull_varint_value,
    _P.AUTHORIZATION_TOKEN: _pull_token,
    _P.RENDEZVOUS_TIMEOUT: _pull_varint_value,  # encoding unstated in draft-21 §9.20.7: a varint, like its peers
    _P.SUBGROUP_DELIVERY_TIMEOUT: _pull_varint_value,
    _P.EXPIRES: _pull_varint_value,
    _P.LARGEST_OBJECT: _pull_location_value,
    _P.FILL_TIMEOUT: _pull_varint_value,  # encoding unstated in draft-21 §9.20.6: a varint, like its peers
    _P.FORWARD: _pull_flag,
    _P.SUBSCRIBER_PRIORITY: _pull_uint8,
    _P.LOCATION_FILTER: _pull_location_filter,
    _P.GROUP_ORDER: _pull_group_order,
    _P.FILL_PARAMETERS: _pull_fill_parameters,
    _P.SUBGROUP_FILTER: _pull_range_filter,
    _P.OBJECTID_FILTER: _pull_range_filter,
    _P.PRIORITY_FILTER: _pull_range_filter,
    _P.OBJECT_PROPERTY_FILTER: _pull_range_filter,
    _P.TRACK_PROPERTY_FILTER: _pull_range_filter,
    _P.NEW_GROUP_REQUEST: _pull_varint_value,
    _P.TRACK_NAMESPACE_PREFIX: _pull_namespace_prefix,
    _P.INCLUDE_PROPERTIES: _pull_flag,
}


# -- Encoding ---------------------------------------------------------------------------------------------------


def encode_parameters(params: Parameters, version: Version, message_type: int) -> bytes:
    """`Number of Parameters` and the parameters, ascending by type, minimal varints (draft-21 §9.20).

    A parameter `version` does not define, one the message may not carry, or a value the wire cannot express in
    `version` raises `EncodeError`.
    """
    body = bytearray()
    count = _encode_block(body, params, version, allowed_parameters(version, message_type), "this message")
    return encode_varint(count) + bytes(body)


def push_parameters(buf: Buffer, params: Parameters, version: Version, message_type: int) -> None:
    """Write `encode_parameters(...)` to `buf`; an `EncodeError` is raised before anything is written."""
    buf.push_bytes(encode_parameters(params, version, message_type))


def _encode_block(
    out: bytearray, struct: Parameters | FillParameters, version: Version, allowed: frozenset[ParameterType], where: str
) -> int:
    """Append every present parameter of `struct`, types delta-encoded; returns how many were written."""
    defined = DEFINED[version.family]
    previous = 0
    count = 0
    for kind in _ASCENDING:
        value = getattr(struct, _FIELD[kind], None)
        # An empty tuple is absence only for the repeatable ones: an empty TRACK_NAMESPACE_PREFIX is a real value.
        if value is None or (kind in REPEATABLE and not value):
            continue
        if kind not in defined:
            raise EncodeError(f"parameter {kind.name} does not exist in {version.alpn}")
        if kind not in allowed:
            raise EncodeError(f"parameter {kind.name} is not allowed in {where} in {version.alpn}")
        for item in value if kind in REPEATABLE else (value,):
            out += encode_varint(kind - previous)
            previous = kind
            _ENCODERS[kind](out, item, version, kind)
            count += 1
    return count


_Encoder = Callable[[bytearray, Any, Version, ParameterType], None]


def _push_varint_value(out: bytearray, value: int, version: Version, kind: ParameterType) -> None:
    out += encode_varint(value)


def _push_uint8(out: bytearray, value: int, version: Version, kind: ParameterType) -> None:
    if not 0 <= value <= 0xFF:
        raise EncodeError(f"{kind.name} is a uint8, not {value}")
    out.append(value)


def _push_flag(out: bytearray, value: int, version: Version, kind: ParameterType) -> None:
    if value not in (0, 1):
        raise EncodeError(f"{kind.name} must be 0 or 1, not {value}")
    out.append(value)


def _push_group_order(out: bytearray, value: GroupOrder, version: Version, kind: ParameterType) -> None:
    if value not in (GroupOrder.ASCENDING, GroupOrder.DESCENDING):
        raise EncodeError(f"GROUP_ORDER must be 1 or 2, not {value}")
    out.append(value)


def _push_location_value(out: bytearray, value: Location, version: Version, kind: ParameterType) -> None:
    out += encode_varint(value.group)
    out += encode_varint(value.object)


def _push_length_prefixed(out: bytearray, value: bytes | bytearray) -> None:
    out += encode_varint(len(value))
    out += value


def _push_token(out: bytearray, value: Token, version: Version, kind: ParameterType) -> None:
    _push_length_prefixed(out, encode_token(value))


def _push_namespace_prefix(out: bytearray, value: TrackNamespace, version: Version, kind: ParameterType) -> None:
    check_namespace(value)
    out += encode_varint(len(value))
    for field in value:
        _push_length_prefixed(out, field)


def _location_filter_fields(value: LocationFilter) -> list[int]:
    """The wire fields of a filter (StartGroup, StartObject, EndGroupDelta, EndObject, as many as its form has).

    Refuses a struct whose fields do not fit its form, so that what we send is what we mean.
    """
    try:
        form = LocationFilterType(value.type)
    except ValueError:
        raise EncodeError(f"unknown location filter form {value.type!r}") from None
    has_end_group = form in (LocationFilterType.ABSOLUTE_RANGE, LocationFilterType.ABSOLUTE_RANGE_OBJECT)
    has_start_object = has_end_group or form is LocationFilterType.ABSOLUTE_START
    has_start_group = has_start_object or form is LocationFilterType.RELATIVE_START_GROUP
    if (
        (not has_start_group and value.start_group != 0)
        or (not has_start_object and value.start_object != 0)
        or ((value.end_group is not None) != has_end_group)
        or ((value.end_object is not None) != (form is LocationFilterType.ABSOLUTE_RANGE_OBJECT))
    ):
        raise EncodeError(f"location filter fields do not match its form {form.name}: {value}")
    fields = []
    if has_start_group:
        fields.append(value.start_group)
    if has_start_object:
        fields.append(value.start_object)
    if value.end_group is not None:
        if value.end_group < value.start_group:
            raise EncodeError(f"location filter ends (group {value.end_group}) before it starts ({value.start_group})")
        fields.append(value.end_group - value.start_group)
    if value.end_object is not None:
        fields.append(value.end_object)
    return fields


def _push_location_filter(out: bytearray, value: LocationFilter, version: Version, kind: ParameterType) -> None:
    fields = _location_filter_fields(value)
    form = value.type
    if version >= Version.DRAFT_22:
        out += encode_varint(form)
        for field in fields:
            out += encode_varint(field)
        return
    if version.family == 20:
        # draft-21 §9.20.10: the field count says the form, so {0, 0} as two fields is Next Object.
        if form is LocationFilterType.ABSOLUTE_START and value.start_group == 0 and value.start_object == 0:
            raise EncodeError(
                f"{version.alpn} cannot express an absolute start at {{0, 0}} (it reads as Next Object); "
                "an open-ended filter from {0, 0} is unfiltered: omit it, or send NONE to remove one"
            )
        if form is LocationFilterType.NEXT_OBJECT:
            fields = [0, 0]
        _push_length_prefixed(out, b"".join(encode_varint(field) for field in fields))
        return
    if form is LocationFilterType.RELATIVE_START_GROUP and value.start_group == 0:
        code = _NEXT_GROUP_START_18
    elif form is LocationFilterType.NEXT_OBJECT:
        code = _LARGEST_OBJECT_18
    elif form is LocationFilterType.ABSOLUTE_START:
        code = _ABSOLUTE_START_18
    elif form is LocationFilterType.ABSOLUTE_RANGE:
        code = _ABSOLUTE_RANGE_18
    else:
        raise EncodeError(f"{version.alpn} SUBSCRIPTION_FILTER cannot express {value}")
    start = fields if code >= _ABSOLUTE_START_18 else []
    _push_length_prefixed(out, encode_varint(code) + b"".join(encode_varint(field) for field in start))


def _push_range_filter(out: bytearray, value: RangeFilter, version: Version, kind: ParameterType) -> None:
    """A range filter (draft-21 §8.6); refuses ranges the delta encoding cannot carry (descending, overlapping)."""
    if value.set_id is None:
        if value.property_type is not None or value.ranges:
            raise EncodeError(f"{kind.name} without a SetID is the empty (removing) form: no Property Type or ranges")
        out.append(0)
        return
    if not 0 <= value.set_id <= 0xFF:
        raise EncodeError(f"{kind.name} SetID is 8 bits, not {value.set_id}")
    body = bytearray((value.set_id,))
    if kind in _PROPERTY_FILTERS:
        if value.property_type is None:
            raise EncodeError(f"{kind.name} needs a Property Type")
        body += encode_varint(value.property_type)
    elif value.property_type is not None:
        raise EncodeError(f"{kind.name} has no Property Type")
    previous_end = 0
    last = len(value.ranges) - 1
    for index, (start, finish) in enumerate(value.ranges):
        if not previous_end <= start <= MAX_VARINT:
            raise EncodeError(f"{kind.name} range start {start} is before the previous end or out of range")
        body += encode_varint(start - previous_end)
        if finish is None:
            if index != last:
                raise EncodeError(f"only the last {kind.name} range may be open-ended")
            continue
        if not start <= finish <= MAX_VARINT:
            raise EncodeError(f"{kind.name} range end {finish} is before its start {start} or out of range")
        body += encode_varint(finish - start)
        previous_end = finish
    _push_length_prefixed(out, body)


def _push_fill_parameters(out: bytearray, value: FillParameters, version: Version, kind: ParameterType) -> None:
    body = bytearray()
    count = _encode_block(body, value, version, FILL_ALLOWED, "FILL_PARAMETERS")
    _push_length_prefixed(out, encode_varint(count) + body)


_ENCODERS: dict[ParameterType, _Encoder] = {
    _P.OBJECT_DELIVERY_TIMEOUT: _push_varint_value,
    _P.AUTHORIZATION_TOKEN: _push_token,
    _P.RENDEZVOUS_TIMEOUT: _push_varint_value,
    _P.SUBGROUP_DELIVERY_TIMEOUT: _push_varint_value,
    _P.EXPIRES: _push_varint_value,
    _P.LARGEST_OBJECT: _push_location_value,
    _P.FILL_TIMEOUT: _push_varint_value,
    _P.FORWARD: _push_flag,
    _P.SUBSCRIBER_PRIORITY: _push_uint8,
    _P.LOCATION_FILTER: _push_location_filter,
    _P.GROUP_ORDER: _push_group_order,
    _P.FILL_PARAMETERS: _push_fill_parameters,
    _P.SUBGROUP_FILTER: _push_range_filter,
    _P.OBJECTID_FILTER: _push_range_filter,
    _P.PRIORITY_FILTER: _push_range_filter,
    _P.OBJECT_PROPERTY_FILTER: _push_range_filter,
    _P.TRACK_PROPERTY_FILTER: _push_range_filter,
    _P.NEW_GROUP_REQUEST: _push_varint_value,
    _P.TRACK_NAMESPACE_PREFIX: _push_namespace_prefix,
    _P.INCLUDE_PROPERTIES: _push_flag,
}
