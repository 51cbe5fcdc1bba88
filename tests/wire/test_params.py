"""Message Parameters (draft-21 §9.20, draft-22 LOCATION_FILTER, draft-18 §"Message Parameters"): round trips for
every message of every draft, the drafts' byte examples, every refusal with its code, and arbitrary input."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from aioquic.buffer import Buffer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from moq.errors import EncodeError, ProtocolViolation
from moq.wire.codes import RequestErrorCode, SessionErrorCode
from moq.wire.params import (
    ALLOWED,
    DEFINED,
    FILL_ALLOWED,
    REPEATABLE,
    CarrierType,
    FillParameters,
    GroupOrder,
    InvalidFilter,
    LocationFilter,
    LocationFilterType,
    Parameters,
    ParameterType,
    RangeFilter,
    allowed_parameters,
    encode_parameters,
    pull_parameters,
    push_parameters,
)
from moq.wire.primitives import MAX_NAMESPACE_FIELDS, Location, Token, TokenAliasType
from moq.wire.varint import MAX_VARINT, encode_varint
from moq.wire.version import Version

PV = SessionErrorCode.PROTOCOL_VIOLATION
KVFE = SessionErrorCode.KEY_VALUE_FORMATTING_ERROR
P = ParameterType
M = CarrierType
F = LocationFilterType
D18, D20, D21, D22 = Version.DRAFT_18, Version.DRAFT_20, Version.DRAFT_21, Version.DRAFT_22

#: Every (draft, message) pair that carries parameters.
CASES = [(version, CarrierType(message)) for version in Version for message in ALLOWED[version.family]]
VARINT_EDGES = (0, 0x7F, 0x80, 0x3FFF, 0x4000, (1 << 56) - 1, 1 << 56, MAX_VARINT - 1, MAX_VARINT)
MAX = encode_varint(MAX_VARINT).hex()

varints = st.integers(min_value=0, max_value=MAX_VARINT)


def _field(kind: ParameterType) -> str:
    return kind.name.lower() + ("s" if kind in REPEATABLE else "")


# -- Strategies: only what each draft and message allows ----------------------------------------------------------

tokens = st.one_of(
    st.builds(lambda a: Token(TokenAliasType.DELETE, alias=a), varints),
    st.builds(lambda a: Token(TokenAliasType.USE_ALIAS, alias=a), varints),
    st.builds(lambda a, t, v: Token(TokenAliasType.REGISTER, a, t, v), varints, varints, st.binary(max_size=16)),
    st.builds(lambda t, v: Token(TokenAliasType.USE_VALUE, None, t, v), varints, st.binary(max_size=16)),
)
namespaces = st.lists(st.binary(min_size=1, max_size=12), max_size=MAX_NAMESPACE_FIELDS).map(tuple)
start_and_end_group = varints.flatmap(lambda g: st.tuples(st.just(g), st.integers(min_value=g, max_value=MAX_VARINT)))


def location_filters(version: Version) -> st.SearchStrategy[LocationFilter]:
    absolute_start = st.builds(lambda g, o: LocationFilter(F.ABSOLUTE_START, g, o), varints, varints)
    absolute_range = st.builds(
        lambda ge, o: LocationFilter(F.ABSOLUTE_RANGE, ge[0], o, ge[1]), start_and_end_group, varints
    )
    if version.family == 18:
        # NextGroupStart, LargestObject, AbsoluteStart, AbsoluteRange.
        return st.one_of(
            st.just(LocationFilter(F.RELATIVE_START_GROUP, 0)),
            st.just(LocationFilter(F.NEXT_OBJECT)),
            absolute_start,
            absolute_range,
        )
    if version < D22:
        # {0, 0} as two fields is Next Object in draft-20/21: an absolute start there cannot be expressed.
        absolute_start = absolute_start.filter(lambda f: (f.start_group, f.start_object) != (0, 0))
    return st.one_of(
        st.just(LocationFilter(F.NONE)),
        st.just(LocationFilter(F.NEXT_OBJECT)),
        st.builds(lambda g: LocationFilter(F.RELATIVE_START_GROUP, g), varints),
        absolute_start,
        absolute_range,
        st.builds(
            lambda ge, o, eo: LocationFilter(F.ABSOLUTE_RANGE_OBJECT, ge[0], o, ge[1], eo),
            start_and_end_group,
            varints,
            varints,
        ),
    )


def _ranges(points: list[int]) -> tuple[tuple[int, int | None], ...]:
    """Sorted points paired into ranges; an odd one out makes the last range open-ended."""
    points = sorted(points)
    ranges: list[tuple[int, int | None]] = [(points[i], points[i + 1]) for i in range(0, len(points) - 1, 2)]
    if len(points) % 2:
        ranges.append((points[-1], None))
    return tuple(ranges)


def range_filters(kind: ParameterType) -> st.SearchStrategy[RangeFilter]:
    property_types = varints if kind in (P.OBJECT_PROPERTY_FILTER, P.TRACK_PROPERTY_FILTER) else st.none()
    filled = st.builds(
        lambda s, p, points: RangeFilter(s, p, _ranges(points)),
        st.integers(min_value=0, max_value=255),
        property_types,
        st.lists(varints, max_size=7),
    )
    return st.one_of(st.just(RangeFilter()), filled)


def values(kind: ParameterType, version: Version) -> st.SearchStrategy[Any]:
    if kind in REPEATABLE:
        one = tokens if kind is P.AUTHORIZATION_TOKEN else range_filters(kind)
        return st.lists(one, min_size=1, max_size=3).map(tuple)
    if kind in (P.FORWARD, P.INCLUDE_PROPERTIES):
        return st.sampled_from((0, 1))
    if kind is P.SUBSCRIBER_PRIORITY:
        return st.integers(min_value=0, max_value=255)
    if kind is P.GROUP_ORDER:
        return st.sampled_from(GroupOrder)
    if kind is P.LARGEST_OBJECT:
        return st.builds(Location, varints, varints)
    if kind is P.LOCATION_FILTER:
        return location_filters(version)
    if kind is P.TRACK_NAMESPACE_PREFIX:
        return namespaces
    if kind is P.FILL_PARAMETERS:
        return blocks(FILL_ALLOWED, version, FillParameters)
    return varints


def blocks(allowed: frozenset[ParameterType], version: Version, struct: Any) -> st.SearchStrategy[Any]:
    optional = {_field(kind): values(kind, version) for kind in sorted(allowed)}
    return st.fixed_dictionaries({}, optional=optional).map(lambda fields: struct(**fields))


def _round_trip(params: Parameters, version: Version, message: int) -> None:
    data = encode_parameters(params, version, message)
    buf = Buffer(data=data + b"\xaa\xbb")  # whatever follows the block (Track Properties) is left alone
    assert pull_parameters(buf, len(data), version, message) == params
    assert buf.tell() == len(data)


# -- Round trips ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "message"), CASES, ids=[f"{v.alpn}-{m.name}" for v, m in CASES])
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_every_message_every_draft(version: Version, message: CarrierType, data: st.DataObject) -> None:
    params = data.draw(blocks(allowed_parameters(version, message), version, Parameters))
    _round_trip(params, version, message)


def _everything(version: Version, message: CarrierType, x: int) -> Parameters:
    """Every parameter `message` allows, each carrying `x` wherever an integer goes."""
    token = Token(TokenAliasType.REGISTER, x, x, b"t")
    if version.family == 18:
        location = LocationFilter(F.ABSOLUTE_RANGE, x, x, x)
    else:
        location = LocationFilter(F.ABSOLUTE_RANGE_OBJECT, x, x, x, x)
    full: dict[str, Any] = {
        "object_delivery_timeout": x,
        "authorization_tokens": (token, Token(TokenAliasType.USE_ALIAS, alias=x)),
        "rendezvous_timeout": x,
        "subgroup_delivery_timeout": x,
        "expires": x,
        "largest_object": Location(x, x),
        "fill_timeout": x,
        "forward": x & 1,
        "subscriber_priority": x & 0xFF,
        "location_filter": location,
        "group_order": GroupOrder.DESCENDING,
        "fill_parameters": FillParameters(
            fill_timeout=x,
            subscriber_priority=x & 0xFF,
            location_filter=LocationFilter(F.RELATIVE_START_GROUP, x),
            group_order=GroupOrder.ASCENDING,
            subgroup_filters=(RangeFilter(x & 0xFF, None, ((0, x),)),),
        ),
        "subgroup_filters": (RangeFilter(0, None, ((x, x),)), RangeFilter(1, None, ((0, x), (x, None)))),
        "objectid_filters": (RangeFilter(),),
        "priority_filters": (RangeFilter(255, None, ((0, None),)),),
        "object_property_filters": (RangeFilter(2, x, ((x, None),)),),
        "track_property_filters": (RangeFilter(3, x, ()),),
        "new_group_request": x,
        "track_namespace_prefix": (b"a", b"b" * 8),
        "include_properties": x & 1,
    }
    allowed = allowed_parameters(version, message)
    return Parameters(**{_field(kind): full[_field(kind)] for kind in allowed})


@given(x=varints, case=st.sampled_from(CASES))
@example(x=0, case=(D22, M.SUBSCRIBE))
@example(x=0x7F, case=(D21, M.SUBSCRIBE_TRACKS))
@example(x=0x80, case=(D20, M.REQUEST_UPDATE))
@example(x=0x3FFF, case=(D18, M.SUBSCRIBE))
@example(x=0x4000, case=(D22, M.FETCH))
@example(x=(1 << 56) - 1, case=(D21, M.PUBLISH))
@example(x=1 << 56, case=(D18, M.REQUEST_OK))
@example(x=MAX_VARINT - 1, case=(D22, M.REQUEST_UPDATE))
@example(x=MAX_VARINT, case=(D22, M.SUBSCRIBE))
@example(x=MAX_VARINT, case=(D21, M.SUBSCRIBE))
@example(x=MAX_VARINT, case=(D18, M.SUBSCRIBE))
@example(x=MAX_VARINT, case=(D18, M.PUBLISH_OK_18))
def test_round_trip_varint_edges(x: int, case: tuple[Version, CarrierType]) -> None:
    version, message = case
    _round_trip(_everything(version, message, x), version, message)


@pytest.mark.parametrize("version", list(Version))
@pytest.mark.parametrize("x", VARINT_EDGES)
def test_every_parameter_at_every_edge(version: Version, x: int) -> None:
    for message in ALLOWED[version.family]:
        _round_trip(_everything(version, CarrierType(message), x), version, message)


def test_no_parameters_is_one_zero_byte() -> None:
    for version, message in CASES:
        assert encode_parameters(Parameters(), version, message) == b"\x00"
        assert pull_parameters(Buffer(data=b"\x00"), 1, version, message) == Parameters()


def test_non_minimal_varints_are_accepted() -> None:
    # count 1 as 80 01, type 0x02 as c0 00 02, value 5 as 80 05
    data = bytes.fromhex("8001 c00002 8005")
    assert pull_parameters(Buffer(data=data), len(data), D21, M.SUBSCRIBE) == Parameters(object_delivery_timeout=5)


# -- Byte examples from the drafts ------------------------------------------------------------------------------


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def _decode(text: str, version: Version, message: int) -> Parameters:
    data = _hex(text)
    buf = Buffer(data=data)
    params = pull_parameters(buf, len(data), version, message)
    assert buf.tell() == len(data)
    return params


def test_types_are_delta_encoded_with_raw_uint8_values() -> None:
    params = Parameters(object_delivery_timeout=5, forward=1, subscriber_priority=0x80)
    # types 0x02, 0x10, 0x20 -> deltas 02, 0e, 10; SUBSCRIBER_PRIORITY is one raw byte, not a varint
    assert encode_parameters(params, D21, M.SUBSCRIBE) == _hex("03 02 05 0e 01 10 80")


def test_next_object_in_draft_22_is_type_05() -> None:
    # DIGEST §6.1: Next Object as the first parameter is `21 05` in draft-22.
    params = Parameters(location_filter=LocationFilter(F.NEXT_OBJECT))
    assert encode_parameters(params, D22, M.SUBSCRIBE) == _hex("01 21 05")
    assert _decode("01 21 05", D22, M.SUBSCRIBE) == params


@pytest.mark.parametrize("version", [D20, D21])
def test_next_object_in_draft_21_is_two_zero_fields(version: Version) -> None:
    # draft-21 §9.20.10: only StartGroup and StartObject, both 0, is the Next Object.
    params = Parameters(location_filter=LocationFilter(F.NEXT_OBJECT))
    assert encode_parameters(params, version, M.SUBSCRIBE) == _hex("01 21 02 00 00")
    assert _decode("01 21 02 00 00", version, M.SUBSCRIBE) == params


def test_draft_21_next_object_bytes_are_an_absolute_start_in_draft_22() -> None:
    # In draft-22 the byte after 0x21 is the Location Filter Type: 02 = StartGroup, StartObject = {0, 0}, absolute.
    assert _decode("01 21 02 00 00", D22, M.SUBSCRIBE) == Parameters(
        location_filter=LocationFilter(F.ABSOLUTE_START, 0, 0)
    )


@pytest.mark.parametrize(
    ("version", "text", "expected"),
    [
        (D21, "01 21 00", LocationFilter(F.NONE)),
        (D22, "01 21 00", LocationFilter(F.NONE)),
        (D21, "01 21 01 03", LocationFilter(F.RELATIVE_START_GROUP, 3)),
        (D22, "01 21 01 03", LocationFilter(F.RELATIVE_START_GROUP, 3)),
        (D21, "01 21 02 07 01", LocationFilter(F.ABSOLUTE_START, 7, 1)),
        (D22, "01 21 02 07 01", LocationFilter(F.ABSOLUTE_START, 7, 1)),
        # EndGroupDelta 2 from StartGroup 7: end group 9, absolute in the struct.
        (D21, "01 21 03 07 01 02", LocationFilter(F.ABSOLUTE_RANGE, 7, 1, 9)),
        (D22, "01 21 03 07 01 02", LocationFilter(F.ABSOLUTE_RANGE, 7, 1, 9)),
        (D21, "01 21 04 07 01 02 05", LocationFilter(F.ABSOLUTE_RANGE_OBJECT, 7, 1, 9, 5)),
        (D22, "01 21 04 07 01 02 05", LocationFilter(F.ABSOLUTE_RANGE_OBJECT, 7, 1, 9, 5)),
        # draft-18 SUBSCRIPTION_FILTER: Length, Filter Type, [Start Location], [End Group Delta].
        (D18, "01 21 01 01", LocationFilter(F.RELATIVE_START_GROUP, 0)),
        (D18, "01 21 01 02", LocationFilter(F.NEXT_OBJECT)),
        (D18, "01 21 03 03 07 01", LocationFilter(F.ABSOLUTE_START, 7, 1)),
        (D18, "01 21 03 03 00 00", LocationFilter(F.ABSOLUTE_START, 0, 0)),
        (D18, "01 21 04 04 07 01 02", LocationFilter(F.ABSOLUTE_RANGE, 7, 1, 9)),
    ],
)
def test_location_filter_forms(version: Version, text: str, expected: LocationFilter) -> None:
    params = Parameters(location_filter=expected)
    assert _decode(text, version, M.SUBSCRIBE) == params
    assert encode_parameters(params, version, M.SUBSCRIBE) == _hex(text)


def test_inverted_range_within_a_group_is_left_to_the_session() -> None:
    # End before start in one group is INVALID_RANGE, a request error (#1913): decoded as sent.
    assert _decode("01 21 04 07 05 00 01", D22, M.FETCH) == Parameters(
        location_filter=LocationFilter(F.ABSOLUTE_RANGE_OBJECT, 7, 5, 7, 1)
    )


def test_range_filter_example_from_section_8_6() -> None:
    # draft-21 §8.6: ranges 3-5 and 10-15 encode as Start=3, End=2, Start=5, End=5 (after Length and SetID).
    params = Parameters(subgroup_filters=(RangeFilter(0, None, ((3, 5), (10, 15))),))
    assert encode_parameters(params, D21, M.SUBSCRIBE) == _hex("01 25 05 00 03 02 05 05")
    assert _decode("01 25 05 00 03 02 05 05", D21, M.SUBSCRIBE) == params


def test_range_filter_open_ended_empty_and_property_forms() -> None:
    open_ended = Parameters(objectid_filters=(RangeFilter(1, None, ((3, 5), (10, None))),))
    assert encode_parameters(open_ended, D22, M.FETCH) == _hex("01 26 04 01 03 02 05")
    assert _decode("01 26 04 01 03 02 05", D22, M.FETCH) == open_ended
    # Length 0: no filter (removes one in REQUEST_UPDATE).
    assert _decode("01 29 00", D22, M.REQUEST_UPDATE) == Parameters(track_property_filters=(RangeFilter(),))
    # OBJECT_PROPERTY_FILTER: SetID, Property Type, then ranges.
    prop = Parameters(object_property_filters=(RangeFilter(7, 0x3C, ((1, 1),)),))
    assert encode_parameters(prop, D21, M.SUBSCRIBE) == _hex("01 28 04 07 3c 01 00")
    assert _decode("01 28 04 07 3c 01 00", D21, M.SUBSCRIBE) == prop


def test_request_level_filter_errors_are_decoded_as_sent() -> None:
    # Odd Property Type and priorities over 255 are REQUEST_ERROR INVALID_FILTER for the session to send.
    params = _decode("02 27 04 00 80 ff 00 01 03 00 01 01", D21, M.SUBSCRIBE)
    assert params.priority_filters == (RangeFilter(0, None, ((0xFF, 0xFF),)),)
    assert params.object_property_filters == (RangeFilter(0, 1, ((1, None),)),)


def test_repeatable_parameters_repeat_with_delta_zero() -> None:
    params = Parameters(
        authorization_tokens=(Token(TokenAliasType.USE_ALIAS, alias=5), Token(TokenAliasType.USE_ALIAS, alias=6)),
        subgroup_filters=(RangeFilter(0, None, ((1, 2),)), RangeFilter(0, None, ((4, 4),))),
    )
    data = encode_parameters(params, D22, M.SUBSCRIBE)
    # AUTHORIZATION_TOKEN (03) twice, then SUBGROUP_FILTER (03 + 0x22) twice: each repeat is a delta of 0.
    assert data == _hex("04 03 02 02 05 00 02 02 06 22 03 00 01 01 00 03 00 04 00")
    assert _decode(data.hex(), D22, M.SUBSCRIBE) == params


def test_fill_parameters_have_their_own_delta_scope_and_a_count() -> None:
    """Draft-21 §9.20.16: "encoded as if they were Parameters for a separate message", i.e. Number of Parameters
    first, as in a message. aiomoqt 0.13 sends `23 04 01 21 01 02` for a relative-start-group-2 fill."""
    params = Parameters(
        subscriber_priority=1,
        fill_parameters=FillParameters(
            subscriber_priority=2, location_filter=LocationFilter(F.RELATIVE_START_GROUP, 1)
        ),
    )
    # outer: 0x20 = 01; 0x23 (delta 3), Length 6: count 2, inner 0x20 (delta 0x20 again) = 02,
    # 0x21 (delta 1) Length 1, StartGroup 01
    text = "02 20 01 03 06 02 20 02 01 01 01"
    assert encode_parameters(params, D21, M.SUBSCRIBE) == _hex(text)
    assert _decode(text, D21, M.SUBSCRIBE) == params
    # draft-22: the inner filter is type 01 + StartGroup; same bytes by coincidence of Length 1 == type 0x01.
    assert _decode(text, D22, M.SUBSCRIBE) == params
    # The bytes aiomoqt sent us (draft-22): Next Object, and a fill from StartGroup 2 back.
    aiomoqt = _decode("02 21 05 02 04 01 21 01 02", D22, M.SUBSCRIBE)
    assert aiomoqt.location_filter == LocationFilter(F.NEXT_OBJECT)
    assert aiomoqt.fill_parameters == FillParameters(location_filter=LocationFilter(F.RELATIVE_START_GROUP, 2))
    # An empty FILL_PARAMETERS is a real value: it asks for a fill with the subscription's own parameters.
    assert _decode("01 23 01 00", D21, M.REQUEST_UPDATE) == Parameters(fill_parameters=FillParameters())
    # The count must match the Length: one too many, or bytes left over, are refused.
    _refuse("01 23 01 01", D21, M.SUBSCRIBE)
    _refuse("01 23 04 00 20 02 00", D21, M.SUBSCRIBE)


def test_empty_namespace_prefix_is_a_value_not_absence() -> None:
    params = Parameters(track_namespace_prefix=())
    assert encode_parameters(params, D21, M.REQUEST_UPDATE) == _hex("01 34 00")
    assert _decode("01 34 00", D21, M.REQUEST_UPDATE) == params


# -- The ALLOWED table ------------------------------------------------------------------------------------------


def test_allowed_table_matches_the_drafts() -> None:
    # draft-22 §9.8 (as mondain's draft-22 PUBLISH decoder reads it), and draft-21's per-parameter lists.
    assert allowed_parameters(D22, M.PUBLISH) == {
        P.OBJECT_DELIVERY_TIMEOUT,
        P.AUTHORIZATION_TOKEN,
        P.SUBGROUP_DELIVERY_TIMEOUT,
        P.EXPIRES,
        P.LARGEST_OBJECT,
        P.FORWARD,
        P.SUBSCRIBER_PRIORITY,
        P.LOCATION_FILTER,
        P.GROUP_ORDER,
    }
    assert allowed_parameters(D21, M.PUBLISH_STATE_NOTIFY) == {P.LARGEST_OBJECT, P.FORWARD, P.LOCATION_FILTER}
    assert allowed_parameters(D21, M.FETCH_OK) == frozenset()
    assert P.TRACK_PROPERTY_FILTER not in allowed_parameters(D21, M.SUBSCRIBE)
    assert P.TRACK_PROPERTY_FILTER in allowed_parameters(D21, M.SUBSCRIBE_TRACKS)
    assert allowed_parameters(D21, M.SUBSCRIBE) <= allowed_parameters(D21, M.SUBSCRIBE_TRACKS)  # §9.18.1
    assert P.GROUP_ORDER not in allowed_parameters(D21, M.REQUEST_UPDATE)
    # draft-18: PUBLISH_OK still carries subscription parameters, under 0x07 or its old 0x1E.
    assert P.LOCATION_FILTER in allowed_parameters(D18, M.REQUEST_OK)
    assert allowed_parameters(D18, M.PUBLISH_OK_18) == allowed_parameters(D18, M.REQUEST_OK)
    for family, table in ALLOWED.items():
        for message, allowed in table.items():
            assert allowed <= DEFINED[family], (family, message)
    assert DEFINED[20] >= FILL_ALLOWED


def test_a_message_without_parameters_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        allowed_parameters(D21, 0x05)  # REQUEST_ERROR
    with pytest.raises(ValueError):
        pull_parameters(Buffer(data=b"\x00"), 1, D18, M.PUBLISH_STATE_NOTIFY)  # draft-20 and later
    with pytest.raises(ValueError):
        encode_parameters(Parameters(), D21, M.PUBLISH_OK_18)


# -- Refusals: the peer's errors --------------------------------------------------------------------------------


def _refuse(text: str, version: Version, message: int, code: int = PV, end: int | None = None) -> None:
    data = _hex(text)
    with pytest.raises(ProtocolViolation) as info:
        pull_parameters(Buffer(data=data), len(data) if end is None else end, version, message)
    assert info.value.code == code, info.value.reason


@pytest.mark.parametrize(
    ("version", "text"),
    [
        (D21, "01 00 00"),  # type 0
        (D21, "01 05 00"),  # 0x05 is not a parameter
        (D22, "01 01 00"),
        (D21, "01 24 00"),  # a gap in the registry
        (D18, "01 25 00"),  # range filters came in draft-19
        (D18, "01 23 00"),  # FILL_PARAMETERS came in draft-20
        (D18, "01 35 01"),  # INCLUDE_PROPERTIES came in draft-20
    ],
)
def test_unknown_parameter_is_a_protocol_violation(version: Version, text: str) -> None:
    _refuse(text, version, M.SUBSCRIBE)


@pytest.mark.parametrize(
    ("version", "message", "text"),
    [
        (D21, M.SUBSCRIBE, "01 08 00"),  # EXPIRES
        (D21, M.SUBSCRIBE, "01 29 00"),  # TRACK_PROPERTY_FILTER is for SUBSCRIBE_TRACKS
        (D21, M.SUBSCRIBE_OK, "01 02 00"),
        (D21, M.REQUEST_OK, "01 20 01"),  # PUBLISH_OK no longer carries subscription parameters (draft-20)
        (D21, M.REQUEST_UPDATE, "01 22 01"),  # GROUP_ORDER is not updatable
        (D22, M.FETCH_OK, "01 09 00 00"),
        (D22, M.TRACK_STATUS, "01 20 01"),
        (D22, M.PUBLISH_NAMESPACE, "01 10 01"),
        (D22, M.SUBSCRIBE_NAMESPACE, "01 34 00"),
        (D22, M.PUBLISH_STATE_NOTIFY, "01 08 00"),
        (D18, M.PUBLISH, "01 20 01"),
        (D18, M.FETCH, "01 21 01 02"),
    ],
)
def test_parameter_in_the_wrong_message_is_a_protocol_violation(version: Version, message: int, text: str) -> None:
    _refuse(text, version, message)


def test_parameters_outside_the_fill_list_are_a_protocol_violation() -> None:
    _refuse("01 23 03 03 01 03", D21, M.SUBSCRIBE)  # AUTHORIZATION_TOKEN inside FILL_PARAMETERS
    _refuse("01 23 03 23 01 00", D21, M.SUBSCRIBE)  # FILL_PARAMETERS inside FILL_PARAMETERS
    _refuse("01 23 02 29 00", D21, M.SUBSCRIBE)  # TRACK_PROPERTY_FILTER inside FILL_PARAMETERS


def test_unexpected_duplicates_are_a_protocol_violation() -> None:
    _refuse("02 10 01 00 01", D21, M.SUBSCRIBE)  # FORWARD twice
    _refuse("02 21 00 00 00", D22, M.SUBSCRIBE)  # LOCATION_FILTER twice
    _refuse("02 23 00 00 00", D21, M.SUBSCRIBE)  # FILL_PARAMETERS twice
    _refuse("01 23 04 20 01 00 02", D21, M.SUBSCRIBE)  # SUBSCRIBER_PRIORITY twice inside FILL_PARAMETERS
    _refuse("02 34 00 00 00", D18, M.REQUEST_UPDATE)


@pytest.mark.parametrize(
    "text",
    [
        "01 10 02",  # FORWARD 2
        "01 10 ff",
        "01 22 00",  # GROUP_ORDER 0 (omission is how to say "publisher's default")
        "01 22 03",
        "01 35 02",  # INCLUDE_PROPERTIES 2
        "01 23 02 22 00",  # GROUP_ORDER 0 inside FILL_PARAMETERS
    ],
)
def test_out_of_range_enumerations_are_a_protocol_violation(text: str) -> None:
    _refuse(text, D22, M.SUBSCRIBE)


@pytest.mark.parametrize(
    "text",
    [
        "01 03 00",  # empty Token
        "01 03 01 09",  # Alias Type 9
        "01 03 01 01",  # REGISTER without its alias
        "01 03 02 00 80",  # DELETE whose alias is cut by the Length
        "01 03 03 02 05 05",  # USE_ALIAS with a trailing byte
    ],
)
def test_undecodable_token_is_a_key_value_formatting_error(text: str) -> None:
    _refuse(text, D21, M.SUBSCRIBE, KVFE)


@pytest.mark.parametrize(
    ("version", "text", "end"),
    [
        (D21, "01 02 80 05", 3),  # a varint value cut by `end`
        (D21, "01 20 01", 2),  # a uint8 value at `end`
        (D21, "01 03 02 02 05", 4),  # a token whose Length runs past `end`
        (D21, "01 34 01 03 61 62 63", 6),  # a namespace field past `end`
        (D21, "01 21 02 00 00", 4),  # a location filter past `end`
        (D22, "01 21 04 01 01 01 01", 6),
        (D21, "01 25 02 00 01", 4),
        (D21, "01 23 02 20 01", 4),
        (D21, "02 02 00", None),  # two parameters, one present
        (D21, "05 02 00", None),  # a count the message cannot hold
        (D21, "02 02 00 04", 4),  # type byte present, value beyond `end`
        (D21, "", None),  # no count at all
    ],
)
def test_value_past_end_is_a_protocol_violation(version: Version, text: str, end: int | None) -> None:
    _refuse(text, version, M.SUBSCRIBE, end=end)


def test_end_beyond_the_buffer_is_a_protocol_violation_not_a_buffer_error() -> None:
    _refuse("02 02 00", D21, M.SUBSCRIBE, end=10)
    _refuse("01 03 05 02", D21, M.SUBSCRIBE, end=10)


def test_type_delta_overflow_is_a_protocol_violation() -> None:
    # Type 0x02, then a delta of 2^64-2: type 2^64.
    _refuse(f"02 02 00 {encode_varint(MAX_VARINT - 1).hex()} 00", D21, M.SUBSCRIBE)
    _refuse(f"01 {MAX} 00", D21, M.SUBSCRIBE)  # a huge type is simply unknown


@pytest.mark.parametrize(
    ("version", "text"),
    [
        (D22, "01 21 06"),  # Location Filter Type 6
        (D22, f"01 21 03 {MAX} 00 01"),  # StartGroup + EndGroupDelta = 2^64
        (D22, f"01 21 04 {MAX} 00 01 00"),
        (D21, f"01 21 0b {MAX} 00 01"),
        (D21, f"01 21 0c {MAX} 00 01 00"),
        (D21, "01 21 05 01 01 01 01 01"),  # five fields
        (D21, "01 21 01 80 00"),  # a field cut by the Length
        (D18, "01 21 00"),  # no Filter Type
        (D18, "01 21 01 05"),  # Filter Type 5
        (D18, "01 21 01 00"),  # Filter Type 0
        (D18, "01 21 02 02 00"),  # a trailing byte
        (D18, "01 21 02 03 05"),  # AbsoluteStart without its Start Object
        (D18, f"01 21 0c 04 {MAX} 00 01"),  # AbsoluteRange past 2^64-1
    ],
)
def test_malformed_location_filters_are_a_protocol_violation(version: Version, text: str) -> None:
    _refuse(text, version, M.SUBSCRIBE)


def test_malformed_range_filters_are_a_protocol_violation() -> None:
    _refuse("01 28 01 00", D21, M.SUBSCRIBE)  # OBJECT_PROPERTY_FILTER without its Property Type
    _refuse("01 29 01 00", D21, M.SUBSCRIBE_TRACKS)
    _refuse("01 25 02 00 80 00", D21, M.SUBSCRIBE)  # a Start cut by the Length
    _refuse("01 25 03 00 01 80 00", D21, M.SUBSCRIBE)  # an End cut by the Length


def test_range_overflow_is_invalid_filter_not_a_session_error() -> None:
    cases = [
        f"01 25 0b 00 {MAX} 01",  # End = Start + 1 = 2^64
        f"01 26 0c 00 {MAX} 00 01",  # second Start = previous End + 1 = 2^64
        f"01 28 0c 00 02 {MAX} 01",  # likewise after a Property Type
        f"01 23 0e 01 25 0b 00 {MAX} 01",  # inside FILL_PARAMETERS
    ]
    for text in cases:
        data = _hex(text)
        buf = Buffer(data=data)
        with pytest.raises(InvalidFilter) as info:
            pull_parameters(buf, len(data), D21, M.SUBSCRIBE)
        assert info.value.code == RequestErrorCode.INVALID_FILTER
        assert buf.tell() == len(data)  # the whole block was read


def test_invalid_filter_waits_for_the_rest_of_the_block() -> None:
    # A valid parameter after the overflowing filter is still read; the buffer stands after the block.
    # SUBGROUP_FILTER overflowing, then INCLUDE_PROPERTIES (0x25 + 0x10) = 1, then a byte of what follows.
    data = _hex(f"02 25 0b 00 {MAX} 01 10 01 aa")
    buf = Buffer(data=data)
    with pytest.raises(InvalidFilter):
        pull_parameters(buf, len(data) - 1, D22, M.SUBSCRIBE)
    assert buf.tell() == len(data) - 1
    # A session error later in the block wins over the request error: INCLUDE_PROPERTIES 2, or a value past `end`.
    _refuse(f"02 25 0b 00 {MAX} 01 10 02", D22, M.SUBSCRIBE)
    _refuse(f"02 25 0b 00 {MAX} 01 10 01", D22, M.SUBSCRIBE, end=14)


# -- Refusals: our own errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "message", "params"),
    [
        (D21, M.SUBSCRIBE, Parameters(expires=1)),  # not allowed in the message
        (D21, M.REQUEST_OK, Parameters(location_filter=LocationFilter(F.NONE))),
        (D22, M.FETCH_OK, Parameters(largest_object=Location(1, 1))),
        (D18, M.SUBSCRIBE, Parameters(subgroup_filters=(RangeFilter(),))),  # not in draft-18
        (D18, M.SUBSCRIBE, Parameters(include_properties=1)),
        (D18, M.SUBSCRIBE, Parameters(fill_parameters=FillParameters())),
        # Forms a draft cannot express.
        (D21, M.SUBSCRIBE, Parameters(location_filter=LocationFilter(F.ABSOLUTE_START, 0, 0))),
        (D20, M.FETCH, Parameters(location_filter=LocationFilter(F.ABSOLUTE_START, 0, 0))),
        (D18, M.SUBSCRIBE, Parameters(location_filter=LocationFilter(F.NONE))),
        (D18, M.SUBSCRIBE, Parameters(location_filter=LocationFilter(F.RELATIVE_START_GROUP, 3))),
        (D18, M.SUBSCRIBE, Parameters(location_filter=LocationFilter(F.ABSOLUTE_RANGE_OBJECT, 1, 1, 2, 2))),
        # Values the wire cannot carry.
        (D21, M.SUBSCRIBE, Parameters(subscriber_priority=256)),
        (D21, M.SUBSCRIBE, Parameters(subscriber_priority=-1)),
        (D21, M.SUBSCRIBE, Parameters(forward=2)),
        (D21, M.SUBSCRIBE, Parameters(include_properties=7)),
        (D21, M.SUBSCRIBE, Parameters(group_order=0)),  # type: ignore[arg-type]
        (D21, M.SUBSCRIBE, Parameters(object_delivery_timeout=MAX_VARINT + 1)),
        (D21, M.SUBSCRIBE, Parameters(object_delivery_timeout=-1)),
        (D21, M.SUBSCRIBE, Parameters(authorization_tokens=(Token(TokenAliasType.REGISTER, alias=1),))),
        (D21, M.REQUEST_UPDATE, Parameters(track_namespace_prefix=(b"",))),
        (D21, M.REQUEST_UPDATE, Parameters(track_namespace_prefix=(b"x",) * 33)),
        # Location filters whose fields do not fit their form, or end before they start.
        (D22, M.SUBSCRIBE, Parameters(location_filter=LocationFilter(F.ABSOLUTE_RANGE, 5, 0, 4))),
        (D22, M.SUBSCRIBE, Parameters(location_filter=LocationFilter(F.ABSOLUTE_RANGE, 5, 0))),
        (D22, M.SUBSCRIBE, Parameters(location_filter=LocationFilter(F.ABSOLUTE_START, 5, 0, 6))),
        (D22, M.SUBSCRIBE, Parameters(location_filter=LocationFilter(F.NEXT_OBJECT, 1))),
        (D22, M.SUBSCRIBE, Parameters(location_filter=LocationFilter(F.RELATIVE_START_GROUP, 1, 1))),
        (D22, M.SUBSCRIBE, Parameters(location_filter=LocationFilter(F.ABSOLUTE_RANGE, 1, 1, 2, 0))),
        (D22, M.SUBSCRIBE, Parameters(location_filter=LocationFilter(9))),  # type: ignore[arg-type]
        # Range filters the delta encoding cannot carry.
        (D21, M.SUBSCRIBE, Parameters(subgroup_filters=(RangeFilter(0, None, ((5, 3),)),))),
        (D21, M.SUBSCRIBE, Parameters(subgroup_filters=(RangeFilter(0, None, ((3, 5), (4, 6))),))),
        (D21, M.SUBSCRIBE, Parameters(subgroup_filters=(RangeFilter(0, None, ((3, None), (5, 6))),))),
        (D21, M.SUBSCRIBE, Parameters(subgroup_filters=(RangeFilter(0, None, ((3, MAX_VARINT + 1),)),))),
        (D21, M.SUBSCRIBE, Parameters(subgroup_filters=(RangeFilter(256),))),
        (D21, M.SUBSCRIBE, Parameters(subgroup_filters=(RangeFilter(0, 2),))),
        (D21, M.SUBSCRIBE, Parameters(subgroup_filters=(RangeFilter(None, None, ((1, 2),)),))),
        (D21, M.SUBSCRIBE, Parameters(object_property_filters=(RangeFilter(0),))),
    ],
)
def test_what_cannot_be_sent_is_an_encode_error_before_any_byte(
    version: Version, message: int, params: Parameters
) -> None:
    buf = Buffer(capacity=256)
    with pytest.raises(EncodeError):
        push_parameters(buf, params, version, message)
    assert buf.tell() == 0


def test_push_parameters_writes_the_encoding() -> None:
    params = Parameters(forward=0, expires=3, largest_object=Location(1, 2))
    buf = Buffer(capacity=32)
    push_parameters(buf, params, D22, M.PUBLISH)
    assert buf.data == encode_parameters(params, D22, M.PUBLISH) == _hex("03 08 03 01 01 02 07 00")


# -- Arbitrary input --------------------------------------------------------------------------------------------


@given(case=st.sampled_from(CASES), data=st.binary(max_size=80))
@example(case=(D21, M.SUBSCRIBE), data=_hex(f"01 25 0b 00 {MAX} 01"))
@example(case=(D22, M.SUBSCRIBE), data=_hex("01 23 80"))
def test_arbitrary_bytes_raise_only_the_codecs_errors(case: tuple[Version, CarrierType], data: bytes) -> None:
    version, message = case
    for end in (len(data), len(data) // 2, len(data) + 3):
        with contextlib.suppress(ProtocolViolation, InvalidFilter):
            pull_parameters(Buffer(data=data), end, version, message)


@given(case=st.sampled_from(CASES), data=st.data())
def test_mutated_encodings_raise_only_the_codecs_errors(case: tuple[Version, CarrierType], data: st.DataObject) -> None:
    version, message = case
    encoded = bytearray(
        encode_parameters(data.draw(blocks(ALLOWED[version.family][message], version, Parameters)), version, message)
    )
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        position = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
        encoded[position] = data.draw(st.integers(min_value=0, max_value=255))
    with contextlib.suppress(ProtocolViolation, InvalidFilter):
        pull_parameters(Buffer(data=bytes(encoded)), len(encoded), version, message)


@given(case=st.sampled_from(CASES), data=st.data())
def test_every_strict_prefix_is_a_protocol_violation(case: tuple[Version, CarrierType], data: st.DataObject) -> None:
    version, message = case
    encoded = encode_parameters(
        data.draw(blocks(ALLOWED[version.family][message], version, Parameters)), version, message
    )
    end = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    # The bytes after `end` are still in the buffer: only `end` may stop the parser.
    with pytest.raises(ProtocolViolation):
        pull_parameters(Buffer(data=encoded), end, version, message)
