"""Hypothesis strategies for wire values and control messages, reusable by round-trip and fuzz tests.

`messages(version)` draws any valid control message of that draft (valid = `encode_message` accepts it and
`decode_message` gives it back). `message_of(cls, version)` draws one message class. Both are cached: building
`st.builds` strategies for msgspec classes is slow, drawing from a built one is not. Message Parameters are drawn
only from the parameters the parameter codec accepts for that message under that draft: which ones those are is
found by asking the codec (`_allowed_fields`), so these strategies follow `moq.wire.params` instead of duplicating
its tables.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from aioquic.buffer import Buffer
from hypothesis import strategies as st

from moq.errors import MoqError
from moq.wire import params as wire_params
from moq.wire.codes import RequestErrorCode
from moq.wire.messages import (
    Fetch,
    FetchOk,
    FetchType,
    GoAway,
    Message,
    MessageType,
    Namespace,
    NamespaceDone,
    Publish,
    PublishBlocked,
    PublishDone,
    PublishNamespace,
    PublishSkipped,
    PublishStateNotify,
    Redirect,
    RequestError,
    RequestOk,
    RequestUpdate,
    Setup,
    SetupOption,
    Subscribe,
    SubscribeNamespace,
    SubscribeOk,
    SubscribeTracks,
    TrackStatus,
    message_classes,
)
from moq.wire.params import NO_PARAMETERS, Parameters
from moq.wire.primitives import MAX_NAMESPACE_FIELDS, KeyValue, Location, Properties, Token, TokenAliasType
from moq.wire.varint import MAX_VARINT
from moq.wire.version import Version

#: Varint values at every length boundary (draft-21 §8.1): the largest of each length and the first of the next.
VARINT_EDGES: tuple[int, ...] = tuple(
    sorted({0, 1, MAX_VARINT} | {(1 << (7 * n)) - 1 for n in range(1, 9)} | {1 << (7 * n) for n in range(1, 9)})
)

varints = st.one_of(st.sampled_from(VARINT_EDGES), st.integers(min_value=0, max_value=MAX_VARINT))
uint8s = st.integers(min_value=0, max_value=255)
fields = st.binary(min_size=1, max_size=16)
namespaces = st.lists(fields, max_size=MAX_NAMESPACE_FIELDS).map(tuple)
small_namespaces = st.lists(fields, max_size=4).map(tuple)
track_names = st.binary(max_size=48)
locations = st.builds(Location, varints, varints)
texts = st.text(st.characters(codec="utf-8"), max_size=64)
uris = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80)


def _key_value(kind: int) -> st.SearchStrategy[KeyValue]:
    if kind & 1:
        return st.binary(max_size=32).map(lambda value: (kind, value))
    return varints.map(lambda value: (kind, value))


def _sorted_pairs(pairs: list[KeyValue]) -> Properties:
    return tuple(sorted(pairs, key=lambda pair: pair[0]))


#: Key-Value-Pairs in ascending type order (the only order the wire has), repeats allowed.
properties: st.SearchStrategy[Properties] = st.lists(
    st.one_of(st.sampled_from([0x02, 0x0B, 0x0E, 0x22, 0x30, 0x9D, 0x4000]), varints).flatmap(_key_value),
    max_size=6,
).map(_sorted_pairs)

tokens: st.SearchStrategy[Token] = st.one_of(
    st.builds(Token, st.just(TokenAliasType.DELETE), varints),
    st.builds(Token, st.just(TokenAliasType.USE_ALIAS), varints),
    st.builds(Token, st.just(TokenAliasType.REGISTER), varints, varints, st.binary(max_size=32)),
    st.builds(Token, st.just(TokenAliasType.USE_VALUE), st.none(), varints, st.binary(max_size=32)),
)

# -- Message Parameters -----------------------------------------------------------------------------------------


def _absolute_ranges(steps: list[tuple[int, int]], open_ended: bool) -> tuple[tuple[int, int | None], ...]:
    """Ascending, non-overlapping inclusive ranges from (gap, width) steps, the form the delta encoding carries."""
    ranges: list[tuple[int, int | None]] = []
    previous_end = 0
    for gap, width in steps:
        start = previous_end + gap
        ranges.append((start, start + width))
        previous_end = start + width
    if open_ended and ranges:
        ranges[-1] = (ranges[-1][0], None)
    return tuple(ranges)


_ranges = st.builds(
    _absolute_ranges,
    st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 1 << 20)), max_size=4),
    st.booleans(),
)


def _range_filter_lists(*, with_property_type: bool) -> st.SearchStrategy[tuple[wire_params.RangeFilter, ...]]:
    """One to three range filters (draft-21 §8.6), or the single empty (removing) form."""
    property_type = varints.map(lambda t: t & ~1) if with_property_type else st.none()
    one = st.builds(wire_params.RangeFilter, uint8s, property_type, _ranges)
    return st.one_of(st.lists(one, min_size=1, max_size=3).map(tuple), st.just((wire_params.RangeFilter(),)))


#: Location filters of every form; which forms a draft can express is left to the codec to say.
location_filters: st.SearchStrategy[wire_params.LocationFilter] = st.one_of(
    st.builds(wire_params.LocationFilter, st.just(wire_params.LocationFilterType.NONE)),
    st.builds(wire_params.LocationFilter, st.just(wire_params.LocationFilterType.NEXT_OBJECT)),
    st.builds(wire_params.LocationFilter, st.just(wire_params.LocationFilterType.RELATIVE_START_GROUP), varints),
    st.builds(wire_params.LocationFilter, st.just(wire_params.LocationFilterType.ABSOLUTE_START), varints, varints),
    st.integers(min_value=0, max_value=1 << 32).flatmap(
        lambda start: st.builds(
            wire_params.LocationFilter,
            st.just(wire_params.LocationFilterType.ABSOLUTE_RANGE),
            st.just(start),
            varints,
            st.integers(min_value=start, max_value=start + (1 << 32)),
        )
    ),
    st.integers(min_value=0, max_value=1 << 32).flatmap(
        lambda start: st.builds(
            wire_params.LocationFilter,
            st.just(wire_params.LocationFilterType.ABSOLUTE_RANGE_OBJECT),
            st.just(start),
            varints,
            st.integers(min_value=start, max_value=start + (1 << 32)),
            varints,
        )
    ),
)

# One strategy per Parameters field. Values a draft cannot express are filtered out per draft by asking the codec.
_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "object_delivery_timeout": varints,
    "authorization_tokens": st.lists(tokens, min_size=1, max_size=2).map(tuple),
    "rendezvous_timeout": varints,
    "subgroup_delivery_timeout": varints,
    "expires": varints,
    "largest_object": locations,
    "fill_timeout": varints,
    "forward": st.integers(min_value=0, max_value=1),
    "subscriber_priority": uint8s,
    "location_filter": location_filters,
    "group_order": st.sampled_from(wire_params.GroupOrder),
    "fill_parameters": st.builds(
        wire_params.FillParameters,
        fill_timeout=st.none() | varints,
        subscriber_priority=st.none() | uint8s,
        location_filter=st.none() | location_filters,
        group_order=st.none() | st.sampled_from(wire_params.GroupOrder),
        subgroup_filters=st.just(()) | _range_filter_lists(with_property_type=False),
        object_property_filters=st.just(()) | _range_filter_lists(with_property_type=True),
    ),
    "subgroup_filters": _range_filter_lists(with_property_type=False),
    "objectid_filters": _range_filter_lists(with_property_type=False),
    "priority_filters": _range_filter_lists(with_property_type=False),
    "object_property_filters": _range_filter_lists(with_property_type=True),
    "track_property_filters": _range_filter_lists(with_property_type=True),
    "new_group_request": varints,
    "track_namespace_prefix": small_namespaces,
    "include_properties": st.integers(min_value=0, max_value=1),
}

# A representative value per field, used to ask the codec whether a message may carry that parameter at all.
_PROBES: dict[str, Any] = {
    "object_delivery_timeout": 1000,
    "authorization_tokens": (Token(TokenAliasType.USE_VALUE, None, 0, b"t"),),
    "rendezvous_timeout": 1000,
    "subgroup_delivery_timeout": 1000,
    "expires": 1000,
    "largest_object": Location(1, 2),
    "fill_timeout": 1000,
    "forward": 1,
    "subscriber_priority": 128,
    "location_filter": wire_params.LocationFilter(wire_params.LocationFilterType.ABSOLUTE_START, 1, 0),
    "group_order": wire_params.GroupOrder.ASCENDING,
    "fill_parameters": wire_params.FillParameters(subscriber_priority=1),
    "subgroup_filters": (wire_params.RangeFilter(0, None, ((1, 2),)),),
    "objectid_filters": (wire_params.RangeFilter(0, None, ((1, 2),)),),
    "priority_filters": (wire_params.RangeFilter(0, None, ((1, 2),)),),
    "object_property_filters": (wire_params.RangeFilter(0, 2, ((1, 2),)),),
    "track_property_filters": (wire_params.RangeFilter(0, 2, ((1, 2),)),),
    "new_group_request": 1,
    "track_namespace_prefix": (b"a",),
    "include_properties": 1,
}


def _encodes(parameters: Parameters, version: Version, message_type: int) -> bool:
    try:
        buf = Buffer(capacity=0x10000)
        wire_params.push_parameters(buf, parameters, version, message_type)
        end = buf.tell()
        decoded = wire_params.pull_parameters(Buffer(data=buf.data), end, version, message_type)
    except (MoqError, ValueError):
        return False
    return decoded == parameters


@cache
def _allowed_fields(version: Version, message_type: int) -> tuple[str, ...]:
    """The Parameters fields the parameter codec lets `message_type` carry under `version`."""
    return tuple(
        name for name, probe in _PROBES.items() if _encodes(Parameters(**{name: probe}), version, message_type)
    )


@cache
def parameters(version: Version, message_type: int) -> st.SearchStrategy[Parameters]:
    """Message Parameters the codec accepts, and gives back unchanged, for `message_type` under `version`."""
    allowed = _allowed_fields(version, message_type)
    if not allowed:
        return st.just(NO_PARAMETERS)

    def one(name: str) -> st.SearchStrategy[tuple[str, Any]]:
        def expressible(value: Any) -> bool:
            return _encodes(Parameters(**{name: value}), version, message_type)

        return _FIELD_VALUES[name].filter(expressible).map(lambda value: (name, value))

    chosen = st.lists(st.sampled_from(allowed), unique=True, max_size=len(allowed))
    return chosen.flatmap(lambda names: st.tuples(*(one(name) for name in names))).map(
        lambda pairs: Parameters(**dict(pairs))
    )


# -- Messages ---------------------------------------------------------------------------------------------------

_unknown_option_types = st.one_of(st.sampled_from([0x09, 0x0A, 0x9D, 0x11C, 0x3F]), st.integers(9, MAX_VARINT))


def setups(version: Version) -> st.SearchStrategy[Setup]:
    """SETUP with any mix of known options and unknown ones (GREASE, repeats of unknown types)."""
    # Under draft-18, 0x06 and 0x08 are unknown options, so they may repeat there.
    unknown = _unknown_option_types
    if version.family == 18:
        unknown = st.one_of(unknown, st.sampled_from([SetupOption.MAX_FILTER_RANGES, SetupOption.MAX_REQUEST_UPDATES]))
    extra = st.lists(unknown.flatmap(lambda kind: _key_value(int(kind))), max_size=4).map(_sorted_pairs)
    if version.family == 18:
        return st.builds(
            Setup.create,
            path=st.none() | uris,
            authority=st.none() | uris,
            authorization_tokens=st.lists(tokens, max_size=2),
            max_auth_token_cache_size=st.none() | varints,
            implementation=st.none() | texts,
            extra=extra,
        )
    return st.builds(
        Setup.create,
        path=st.none() | uris,
        authority=st.none() | uris,
        authorization_tokens=st.lists(tokens, max_size=2),
        max_auth_token_cache_size=st.none() | varints,
        max_filter_ranges=st.none() | varints,
        implementation=st.none() | texts,
        max_request_updates=st.none() | varints,
        extra=extra,
    )


def _fetches(version: Version) -> st.SearchStrategy[Fetch]:
    params = parameters(version, MessageType.FETCH)
    if version.family != 18:
        return st.builds(Fetch, varints, namespaces, track_names, params)
    standalone = st.builds(
        Fetch,
        varints,
        namespaces,
        track_names,
        params,
        fetch_type=st.just(FetchType.STANDALONE),
        start=locations,
        end=locations,
    )
    joining = st.builds(
        Fetch,
        varints,
        parameters=params,
        fetch_type=st.sampled_from([FetchType.RELATIVE_JOINING, FetchType.ABSOLUTE_JOINING]),
        joining_request_id=varints,
        joining_start=varints,
    )
    return st.one_of(standalone, joining)


def _request_errors() -> st.SearchStrategy[RequestError]:
    plain = st.builds(
        RequestError, varints.filter(lambda code: code != RequestErrorCode.REDIRECT), varints, texts, st.none()
    )
    redirect = st.builds(
        RequestError,
        st.just(int(RequestErrorCode.REDIRECT)),
        varints,
        texts,
        st.builds(Redirect, uris, namespaces, track_names),
    )
    return st.one_of(plain, redirect)


def _goaways(version: Version) -> st.SearchStrategy[GoAway]:
    request_id = st.none() | varints if version.family == 18 else st.none()
    return st.builds(GoAway, uris, varints, request_id)


def _builders(version: Version) -> dict[type[Message], Callable[[], st.SearchStrategy[Any]]]:
    def p(kind: MessageType) -> st.SearchStrategy[Parameters]:
        return parameters(version, kind)

    return {
        Setup: lambda: setups(version),
        GoAway: lambda: _goaways(version),
        RequestOk: lambda: st.builds(RequestOk, p(MessageType.REQUEST_OK), properties),
        RequestError: _request_errors,
        RequestUpdate: lambda: st.builds(RequestUpdate, varints, p(MessageType.REQUEST_UPDATE)),
        Subscribe: lambda: st.builds(Subscribe, varints, namespaces, track_names, p(MessageType.SUBSCRIBE)),
        SubscribeOk: lambda: st.builds(SubscribeOk, varints, p(MessageType.SUBSCRIBE_OK), properties),
        Publish: lambda: st.builds(
            Publish, varints, namespaces, track_names, varints, p(MessageType.PUBLISH), properties
        ),
        PublishDone: lambda: st.builds(PublishDone, varints, varints, texts),
        PublishStateNotify: lambda: st.builds(PublishStateNotify, p(MessageType.PUBLISH_STATE_NOTIFY)),
        Fetch: lambda: _fetches(version),
        FetchOk: lambda: st.builds(FetchOk, st.booleans(), locations, p(MessageType.FETCH_OK), properties),
        TrackStatus: lambda: st.builds(TrackStatus, varints, namespaces, track_names, p(MessageType.TRACK_STATUS)),
        PublishNamespace: lambda: st.builds(PublishNamespace, varints, namespaces, p(MessageType.PUBLISH_NAMESPACE)),
        SubscribeNamespace: lambda: st.builds(
            SubscribeNamespace, varints, namespaces, p(MessageType.SUBSCRIBE_NAMESPACE)
        ),
        SubscribeTracks: lambda: st.builds(SubscribeTracks, varints, namespaces, p(MessageType.SUBSCRIBE_TRACKS)),
        Namespace: lambda: st.builds(Namespace, namespaces),
        NamespaceDone: lambda: st.builds(NamespaceDone, namespaces),
        PublishSkipped: lambda: st.builds(PublishSkipped, namespaces, track_names),
        PublishBlocked: lambda: st.builds(PublishBlocked, namespaces, track_names),
    }


@cache
def message_of(cls: type[Message], version: Version) -> st.SearchStrategy[Message]:
    """Valid messages of class `cls` under `version` (the class must exist in that draft)."""
    if cls not in message_classes(version):
        raise ValueError(f"{cls.__name__} does not exist in draft-{version.value}")
    strategy: st.SearchStrategy[Message] = _builders(version)[cls]()
    return strategy


@cache
def messages(version: Version) -> st.SearchStrategy[Message]:
    """Any valid control message of `version`."""
    return st.one_of(*(message_of(cls, version) for cls in message_classes(version)))
