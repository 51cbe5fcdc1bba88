"""Write cross-test vectors for the browser codec (web/js) from the Python reference codec (moq.wire).

Usage: `python tests/web/make_vectors.py OUT.json [--seed N] [--count N]`. Deterministic for a given seed: the
generators below draw from `random.Random(seed)`, not hypothesis, so the vectors do not change with a hypothesis
release. The web tests (`node --test web/test/*.test.js`) read the file named by $MOQ_WEB_VECTORS, or run this
script themselves.

The vector file is one JSON object:

- `messages`: valid control messages, every class of every draft: `{version, hex, value}`. `hex` is the framed
  message as `encode_message` writes it, `value` its decoded fields in the JSON form below.
- `message_mutations`: damaged messages and what `decode_message` says of them: `{version, hex, outcome}`,
  outcome `{"value": ..., "consumed": n}`, `{"error": code}` or `{"need_more": true}`.
- `datagrams` / `datagram_mutations`: `{version, hex, value}` / `{version, hex, outcome}` (`decode_datagram`).
- `streams` / `stream_mutations`: whole uni streams fed with FIN to `DataStreamParser`: `{version, group_order,
  hex, outcome}`, outcome `{"events": [...]}` or `{"error": code | "too_large"}`.
- `varints`: `{hex, value}`, minimal and non-minimal encodings.
- `tables`: the Message Parameters each draft defines and each message may carry (`defined`, `allowed`), within
  the parameters the JS codec supports, so that its tables are checked against `moq.wire.params`.

JSON form (shared with web/test/helpers.js): objects with the JS codec's camelCase field names and `type` the
spec's message or event name; an integer above 2^53-1 is `{"u64": "<decimal>"}`; bytes are `{"hex": "..."}`;
text is a string; an absent field (None) is left out. Vectors whose decoded form has range filters (0x25-0x29,
not supported by the JS codec: see web/js/params.js) are not written.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moq.errors import EncodeError, NeedMoreData, ProtocolViolation
from moq.wire.codes import ObjectStatus, RequestErrorCode
from moq.wire.data import (
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
)
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
    Subscribe,
    SubscribeNamespace,
    SubscribeOk,
    SubscribeTracks,
    TrackStatus,
    decode_message,
    encode_message,
    message_classes,
)
from moq.wire.params import (
    ALLOWED,
    DEFINED,
    FillParameters,
    GroupOrder,
    InvalidFilter,
    LocationFilter,
    LocationFilterType,
    Parameters,
    ParameterType,
    encode_parameters,
)
from moq.wire.primitives import Location, Properties, Token, TokenAliasType, TrackNamespace, encode_token
from moq.wire.varint import MAX_VARINT, decode_varint, encode_varint
from moq.wire.version import Version

Json = Any
MAX_SAFE = 2**53 - 1
DEFAULT_SEED = 20261121

#: The Message Parameters the JS codec supports (web/js/params.js); range filters are left out.
JS_PARAMETERS: frozenset[ParameterType] = frozenset(ParameterType) - {
    ParameterType.SUBGROUP_FILTER,
    ParameterType.OBJECTID_FILTER,
    ParameterType.PRIORITY_FILTER,
    ParameterType.OBJECT_PROPERTY_FILTER,
    ParameterType.TRACK_PROPERTY_FILTER,
}


class Unsupported(Exception):
    """A decoded value the JS codec does not model (a range filter): the vector is not written."""


# -- JSON form --------------------------------------------------------------------------------------------------


def j_int(value: int) -> Json:
    """An integer: a JSON number up to 2^53-1, else {"u64": decimal} (JS holds it as a BigInt)."""
    return int(value) if value <= MAX_SAFE else {"u64": str(value)}


def j_bytes(value: bytes) -> Json:
    return {"hex": value.hex()}


def j_namespace(namespace: TrackNamespace) -> Json:
    return [j_bytes(field) for field in namespace]


def j_properties(pairs: Properties) -> Json:
    return [[j_int(kind), j_bytes(value) if isinstance(value, bytes) else j_int(value)] for kind, value in pairs]


def j_location(location: Location) -> Json:
    return {"group": j_int(location.group), "object": j_int(location.object)}


def j_filter(value: LocationFilter) -> Json:
    out: dict[str, Json] = {
        "type": int(value.type),
        "startGroup": j_int(value.start_group),
        "startObject": j_int(value.start_object),
    }
    if value.end_group is not None:
        out["endGroup"] = j_int(value.end_group)
    if value.end_object is not None:
        out["endObject"] = j_int(value.end_object)
    return out


_RANGE_FIELDS = (
    "subgroup_filters",
    "objectid_filters",
    "priority_filters",
    "object_property_filters",
    "track_property_filters",
)


def _strip_none(out: dict[str, Json]) -> dict[str, Json]:
    return {key: value for key, value in out.items() if value is not None}


def j_fill(value: FillParameters) -> Json:
    if any(getattr(value, name, ()) for name in _RANGE_FIELDS):
        raise Unsupported("range filter in FILL_PARAMETERS")
    return _strip_none(
        {
            "fillTimeout": None if value.fill_timeout is None else j_int(value.fill_timeout),
            "subscriberPriority": value.subscriber_priority,
            "locationFilter": None if value.location_filter is None else j_filter(value.location_filter),
            "groupOrder": None if value.group_order is None else int(value.group_order),
        }
    )


def j_params(p: Parameters) -> Json:
    if any(getattr(p, name) for name in _RANGE_FIELDS):
        raise Unsupported("range filter")

    def opt(value: int | None) -> Json:
        return None if value is None else j_int(value)

    return _strip_none(
        {
            "objectDeliveryTimeout": opt(p.object_delivery_timeout),
            "authorizationTokens": [j_bytes(encode_token(t)) for t in p.authorization_tokens] or None,
            "rendezvousTimeout": opt(p.rendezvous_timeout),
            "subgroupDeliveryTimeout": opt(p.subgroup_delivery_timeout),
            "expires": opt(p.expires),
            "largestObject": None if p.largest_object is None else j_location(p.largest_object),
            "fillTimeout": opt(p.fill_timeout),
            "forward": p.forward,
            "subscriberPriority": p.subscriber_priority,
            "locationFilter": None if p.location_filter is None else j_filter(p.location_filter),
            "groupOrder": None if p.group_order is None else int(p.group_order),
            "fillParameters": None if p.fill_parameters is None else j_fill(p.fill_parameters),
            "newGroupRequest": opt(p.new_group_request),
            "trackNamespacePrefix": None if p.track_namespace_prefix is None else j_namespace(p.track_namespace_prefix),
            "includeProperties": p.include_properties,
        }
    )


_MESSAGE_NAMES: dict[type[Message], str] = {
    Setup: "SETUP",
    GoAway: "GOAWAY",
    RequestOk: "REQUEST_OK",
    RequestError: "REQUEST_ERROR",
    RequestUpdate: "REQUEST_UPDATE",
    Subscribe: "SUBSCRIBE",
    SubscribeOk: "SUBSCRIBE_OK",
    Publish: "PUBLISH",
    PublishDone: "PUBLISH_DONE",
    PublishStateNotify: "PUBLISH_STATE_NOTIFY",
    Fetch: "FETCH",
    FetchOk: "FETCH_OK",
    TrackStatus: "TRACK_STATUS",
    PublishNamespace: "PUBLISH_NAMESPACE",
    SubscribeNamespace: "SUBSCRIBE_NAMESPACE",
    SubscribeTracks: "SUBSCRIBE_TRACKS",
    Namespace: "NAMESPACE",
    NamespaceDone: "NAMESPACE_DONE",
    PublishSkipped: "PUBLISH_SKIPPED",
    PublishBlocked: "PUBLISH_BLOCKED",
}


def j_message(msg: Message) -> Json:
    """The JSON form of a control message, with the JS codec's field names."""
    out: dict[str, Json] = {"type": _MESSAGE_NAMES[type(msg)]}
    if isinstance(msg, Setup):
        out["options"] = j_properties(msg.options)
    elif isinstance(msg, GoAway):
        out.update(newSessionUri=msg.new_session_uri, timeout=j_int(msg.timeout))
        if msg.request_id is not None:
            out["requestId"] = j_int(msg.request_id)
    elif isinstance(msg, RequestOk):
        out.update(parameters=j_params(msg.parameters), properties=j_properties(msg.properties))
    elif isinstance(msg, RequestError):
        out.update(errorCode=j_int(msg.error_code), retryInterval=j_int(msg.retry_interval), reason=msg.reason)
        if msg.redirect is not None:
            r = msg.redirect
            out["redirect"] = {
                "connectUri": r.connect_uri,
                "namespace": j_namespace(r.namespace),
                "name": j_bytes(r.name),
            }
    elif isinstance(msg, RequestUpdate):
        out.update(requestId=j_int(msg.request_id), parameters=j_params(msg.parameters))
    elif isinstance(msg, Subscribe | TrackStatus):
        out.update(
            requestId=j_int(msg.request_id),
            namespace=j_namespace(msg.namespace),
            name=j_bytes(msg.name),
            parameters=j_params(msg.parameters),
        )
    elif isinstance(msg, SubscribeOk):
        out.update(
            trackAlias=j_int(msg.track_alias),
            parameters=j_params(msg.parameters),
            properties=j_properties(msg.properties),
        )
    elif isinstance(msg, Publish):
        out.update(
            requestId=j_int(msg.request_id),
            namespace=j_namespace(msg.namespace),
            name=j_bytes(msg.name),
            trackAlias=j_int(msg.track_alias),
            parameters=j_params(msg.parameters),
            properties=j_properties(msg.properties),
        )
    elif isinstance(msg, PublishDone):
        out.update(statusCode=j_int(msg.status_code), streamCount=j_int(msg.stream_count), reason=msg.reason)
    elif isinstance(msg, PublishStateNotify):
        out["parameters"] = j_params(msg.parameters)
    elif isinstance(msg, Fetch):
        out.update(
            requestId=j_int(msg.request_id),
            namespace=j_namespace(msg.namespace),
            name=j_bytes(msg.name),
            parameters=j_params(msg.parameters),
        )
        if msg.fetch_type is not None:
            out["fetchType"] = int(msg.fetch_type)
        if msg.start is not None and msg.end is not None:
            out.update(start=j_location(msg.start), end=j_location(msg.end))
        if msg.joining_request_id is not None and msg.joining_start is not None:
            out.update(joiningRequestId=j_int(msg.joining_request_id), joiningStart=j_int(msg.joining_start))
    elif isinstance(msg, FetchOk):
        out.update(
            endOfTrack=msg.end_of_track,
            endLocation=j_location(msg.end_location),
            parameters=j_params(msg.parameters),
            properties=j_properties(msg.properties),
        )
    elif isinstance(msg, PublishNamespace):
        out.update(
            requestId=j_int(msg.request_id), namespace=j_namespace(msg.namespace), parameters=j_params(msg.parameters)
        )
    elif isinstance(msg, SubscribeNamespace | SubscribeTracks):
        out.update(
            requestId=j_int(msg.request_id),
            namespacePrefix=j_namespace(msg.namespace_prefix),
            parameters=j_params(msg.parameters),
        )
    elif isinstance(msg, Namespace | NamespaceDone):
        out["namespaceSuffix"] = j_namespace(msg.namespace_suffix)
    else:
        out.update(namespaceSuffix=j_namespace(msg.namespace_suffix), name=j_bytes(msg.name))
    return out


def j_event(event: DataStreamEvent | ObjectDatagram) -> Json:
    """The JSON form of a data-stream event or a datagram, with the JS codec's field names."""
    if isinstance(event, SubgroupHeader):
        return _strip_none(
            {
                "type": "SUBGROUP_HEADER",
                "trackAlias": j_int(event.track_alias),
                "groupId": j_int(event.group_id),
                "subgroupId": None if event.subgroup_id is None else j_int(event.subgroup_id),
                "publisherPriority": event.publisher_priority,
                "subgroupIdMode": int(event.subgroup_id_mode),
                "hasProperties": event.has_properties,
                "endOfGroup": event.end_of_group,
                "firstObject": event.first_object,
            }
        )
    if isinstance(event, SubgroupObject):
        return {
            "type": "SUBGROUP_OBJECT",
            "objectId": j_int(event.object_id),
            "properties": j_properties(event.properties),
            "status": int(event.status),
            "payload": j_bytes(event.payload),
        }
    if isinstance(event, FetchHeader):
        return {"type": "FETCH_HEADER", "requestId": j_int(event.request_id)}
    if isinstance(event, FetchObject):
        return _strip_none(
            {
                "type": "FETCH_OBJECT",
                "groupId": j_int(event.group_id),
                "subgroupId": None if event.subgroup_id is None else j_int(event.subgroup_id),
                "objectId": j_int(event.object_id),
                "publisherPriority": event.publisher_priority,
                "properties": None if event.properties is None else j_properties(event.properties),
                "payload": j_bytes(event.payload),
            }
        )
    if isinstance(event, FetchEndOfRange):
        return {
            "type": "FETCH_END_OF_RANGE",
            "kind": int(event.kind),
            "groupId": j_int(event.group_id),
            "objectId": j_int(event.object_id),
        }
    if isinstance(event, Padding):
        return {"type": "PADDING"}
    if isinstance(event, ControlStreamData):
        return {"type": "CONTROL_DATA", "data": j_bytes(event.data)}
    return _strip_none(
        {
            "type": "OBJECT_DATAGRAM",
            "trackAlias": j_int(event.track_alias),
            "groupId": j_int(event.group_id),
            "objectId": j_int(event.object_id),
            "publisherPriority": event.publisher_priority,
            "properties": None if event.properties is None else j_properties(event.properties),
            "endOfGroup": event.end_of_group,
            "status": None if event.status is None else int(event.status),
            "payload": j_bytes(event.payload),
        }
    )


# -- Outcomes: what the Python codec says of some bytes ----------------------------------------------------------


def message_outcome(data: bytes, version: Version) -> Json:
    """`decode_message`'s verdict on `data`; raises Unsupported where the JS codec knowingly differs."""
    try:
        msg, consumed = decode_message(data, version)
    except NeedMoreData:
        return {"need_more": True}
    except ProtocolViolation as exc:
        return {"error": exc.code}
    except InvalidFilter:
        raise Unsupported("range filter") from None
    return {"value": j_message(msg), "consumed": consumed}


def datagram_outcome(data: bytes, version: Version) -> Json:
    try:
        return {"value": j_event(decode_datagram(data, version))}
    except ProtocolViolation as exc:
        return {"error": exc.code}


def stream_outcome(data: bytes, version: Version, order: GroupOrder) -> Json:
    """What `DataStreamParser` makes of a whole stream fed at once, with FIN."""
    parser = DataStreamParser(version, order)
    try:
        events = parser.feed(data, fin=True)
    except ProtocolViolation as exc:
        return {"error": exc.code}
    except ObjectTooLarge:
        return {"error": "too_large"}
    return {"events": [j_event(event) for event in events]}


# -- Deterministic generators -------------------------------------------------------------------------------------

VARINT_EDGES: tuple[int, ...] = tuple(
    sorted(
        {0, 1, MAX_VARINT - 1, MAX_VARINT, MAX_SAFE, MAX_SAFE + 1}
        | {(1 << (7 * n)) - 1 for n in range(1, 9)}
        | {1 << (7 * n) for n in range(1, 9)}
    )
)
_TEXT_POOL = "abcXYZ019 -_/.:?~é€中文😀\ufeff\u0000\u00a0"


class Gen:
    """Values for vectors, drawn from one seeded `random.Random`."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def varint(self) -> int:
        roll = self.rng.random()
        if roll < 0.35:
            return self.rng.choice(VARINT_EDGES)
        if roll < 0.7:
            return self.rng.randint(0, 300)
        return self.rng.getrandbits(self.rng.randint(1, 64))

    def small(self) -> int:
        return self.rng.randint(0, 300) if self.rng.random() < 0.8 else self.rng.choice(VARINT_EDGES)

    def blob(self, max_size: int = 24, min_size: int = 0) -> bytes:
        return self.rng.randbytes(self.rng.randint(min_size, max_size))

    def text(self, max_chars: int = 24) -> str:
        return "".join(self.rng.choice(_TEXT_POOL) for _ in range(self.rng.randint(0, max_chars)))

    def uri(self) -> str:
        chars = "abcdefghijklmnopqrstuvwxyz0123456789:/.?=&%-"
        return "".join(self.rng.choice(chars) for _ in range(self.rng.randint(0, 40)))

    def namespace(self, max_fields: int = 5) -> TrackNamespace:
        if self.rng.random() < 0.03:
            max_fields = 32
        return tuple(self.blob(12, 1) for _ in range(self.rng.randint(0, max_fields)))

    def properties(self, min_size: int = 0) -> Properties:
        pairs: list[tuple[int, int | bytes]] = []
        for _ in range(self.rng.randint(min_size, 4)):
            kind = self.rng.choice([0x02, 0x04, 0x0B, 0x0E, 0x22, 0x30, 0x9D, 0x4000, self.varint()])
            pairs.append((kind, self.blob(20) if kind & 1 else self.varint()))
        return tuple(sorted(pairs, key=lambda pair: pair[0]))

    def token(self) -> Token:
        kind = self.rng.choice(list(TokenAliasType))
        if kind in (TokenAliasType.DELETE, TokenAliasType.USE_ALIAS):
            return Token(kind, self.varint())
        if kind == TokenAliasType.REGISTER:
            return Token(kind, self.varint(), self.varint(), self.blob())
        return Token(kind, None, self.varint(), self.blob())

    def location(self) -> Location:
        return Location(self.varint(), self.varint())

    def location_filter(self) -> LocationFilter:
        form = self.rng.choice(list(LocationFilterType))
        if form in (LocationFilterType.NONE, LocationFilterType.NEXT_OBJECT):
            return LocationFilter(form)
        if form == LocationFilterType.RELATIVE_START_GROUP:
            return LocationFilter(form, self.varint())
        start = self.varint()
        if form == LocationFilterType.ABSOLUTE_START:
            return LocationFilter(form, start, self.varint())
        end = min(MAX_VARINT, start + self.rng.choice([0, 1, self.small(), self.varint()]))
        if form == LocationFilterType.ABSOLUTE_RANGE:
            return LocationFilter(form, start, self.varint(), end)
        return LocationFilter(form, start, self.varint(), end, self.varint())

    def parameter(self, kind: ParameterType) -> Any:
        rng = self.rng
        values: dict[ParameterType, Callable[[], Any]] = {
            ParameterType.OBJECT_DELIVERY_TIMEOUT: self.varint,
            ParameterType.AUTHORIZATION_TOKEN: lambda: tuple(self.token() for _ in range(rng.randint(1, 2))),
            ParameterType.RENDEZVOUS_TIMEOUT: self.varint,
            ParameterType.SUBGROUP_DELIVERY_TIMEOUT: self.varint,
            ParameterType.EXPIRES: self.varint,
            ParameterType.LARGEST_OBJECT: self.location,
            ParameterType.FILL_TIMEOUT: self.varint,
            ParameterType.FORWARD: lambda: rng.randint(0, 1),
            ParameterType.SUBSCRIBER_PRIORITY: lambda: rng.randint(0, 255),
            ParameterType.LOCATION_FILTER: self.location_filter,
            ParameterType.GROUP_ORDER: lambda: rng.choice(list(GroupOrder)),
            ParameterType.FILL_PARAMETERS: lambda: FillParameters(
                fill_timeout=self.varint() if rng.random() < 0.5 else None,
                subscriber_priority=rng.randint(0, 255) if rng.random() < 0.5 else None,
                location_filter=self.location_filter() if rng.random() < 0.5 else None,
                group_order=rng.choice(list(GroupOrder)) if rng.random() < 0.5 else None,
            ),
            ParameterType.NEW_GROUP_REQUEST: self.varint,
            ParameterType.TRACK_NAMESPACE_PREFIX: lambda: self.namespace(3),
            ParameterType.INCLUDE_PROPERTIES: lambda: rng.randint(0, 1),
        }
        return values[kind]()

    def parameters(self, version: Version, message_type: int) -> Parameters:
        """Some of the parameters `message_type` may carry under `version`, each one the codec can express."""
        allowed = sorted(ALLOWED[version.family][message_type] & JS_PARAMETERS)
        chosen = [kind for kind in allowed if self.rng.random() < 0.4]
        fields: dict[str, Any] = {}
        for kind in chosen:
            field = kind.name.lower() + ("s" if kind == ParameterType.AUTHORIZATION_TOKEN else "")
            for _ in range(8):  # some filter forms do not exist in every draft: draw again
                value = self.parameter(kind)
                try:
                    encode_parameters(Parameters(**{field: value}), version, message_type)
                except EncodeError:
                    continue
                fields[field] = value
                break
        return Parameters(**fields)

    def message(self, cls: type[Message], version: Version) -> Message:
        rng = self.rng
        p = self.parameters
        if cls is Setup:
            return Setup.create(
                path=self.uri() if rng.random() < 0.3 else None,
                authority=self.uri() if rng.random() < 0.3 else None,
                authorization_tokens=[self.token() for _ in range(rng.randint(0, 2))],
                max_auth_token_cache_size=self.varint() if rng.random() < 0.5 else None,
                max_filter_ranges=self.varint() if version.family == 20 and rng.random() < 0.5 else None,
                implementation=self.text() if rng.random() < 0.7 else None,
                max_request_updates=self.varint() if version.family == 20 and rng.random() < 0.5 else None,
                extra=tuple(
                    (kind, self.blob() if kind & 1 else self.varint())
                    for kind in sorted(rng.choice([0x09, 0x0A, 0x9D, 0x11C, 0x3F, 1 << 40]) for _ in range(2))
                    if rng.random() < 0.4
                ),
            )
        if cls is GoAway:
            request_id = self.varint() if version.family == 18 and rng.random() < 0.5 else None
            return GoAway(self.uri(), self.varint(), request_id)
        if cls is RequestOk:
            return RequestOk(p(version, MessageType.REQUEST_OK), self.properties())
        if cls is RequestError:
            if rng.random() < 0.25:
                redirect = Redirect(self.uri(), self.namespace(), self.blob())
                return RequestError(RequestErrorCode.REDIRECT, self.varint(), self.text(), redirect)
            code = self.rng.choice([0x0, 0x10, 0x11, 0x9D, self.varint()])
            return RequestError(0 if code == RequestErrorCode.REDIRECT else code, self.varint(), self.text())
        if cls is RequestUpdate:
            return RequestUpdate(self.varint(), p(version, MessageType.REQUEST_UPDATE))
        if cls is Subscribe:
            return Subscribe(self.varint(), self.namespace(), self.blob(), p(version, MessageType.SUBSCRIBE))
        if cls is TrackStatus:
            return TrackStatus(self.varint(), self.namespace(), self.blob(), p(version, MessageType.TRACK_STATUS))
        if cls is SubscribeOk:
            return SubscribeOk(self.varint(), p(version, MessageType.SUBSCRIBE_OK), self.properties())
        if cls is Publish:
            params = p(version, MessageType.PUBLISH)
            return Publish(self.varint(), self.namespace(), self.blob(), self.varint(), params, self.properties())
        if cls is PublishDone:
            return PublishDone(self.varint(), self.rng.choice([0, 3, MAX_VARINT, self.varint()]), self.text())
        if cls is PublishStateNotify:
            return PublishStateNotify(p(version, MessageType.PUBLISH_STATE_NOTIFY))
        if cls is Fetch:
            params = p(version, MessageType.FETCH)
            if version.family != 18:
                return Fetch(self.varint(), self.namespace(), self.blob(), params)
            if rng.random() < 0.5:
                return Fetch(
                    self.varint(),
                    self.namespace(),
                    self.blob(),
                    params,
                    FetchType.STANDALONE,
                    self.location(),
                    self.location(),
                )
            kind = rng.choice([FetchType.RELATIVE_JOINING, FetchType.ABSOLUTE_JOINING])
            return Fetch(
                self.varint(),
                parameters=params,
                fetch_type=kind,
                joining_request_id=self.varint(),
                joining_start=self.varint(),
            )
        if cls is FetchOk:
            return FetchOk(rng.random() < 0.5, self.location(), p(version, MessageType.FETCH_OK), self.properties())
        if cls is PublishNamespace:
            return PublishNamespace(self.varint(), self.namespace(), p(version, MessageType.PUBLISH_NAMESPACE))
        if cls is SubscribeNamespace:
            return SubscribeNamespace(self.varint(), self.namespace(), p(version, MessageType.SUBSCRIBE_NAMESPACE))
        if cls is SubscribeTracks:
            return SubscribeTracks(self.varint(), self.namespace(), p(version, MessageType.SUBSCRIBE_TRACKS))
        if cls is Namespace:
            return Namespace(self.namespace())
        if cls is NamespaceDone:
            return NamespaceDone(self.namespace())
        if cls is PublishSkipped:
            return PublishSkipped(self.namespace(), self.blob())
        return PublishBlocked(self.namespace(), self.blob())

    def payload(self) -> bytes:
        roll = self.rng.random()
        if roll < 0.1:
            return b""
        if roll < 0.95:
            return self.blob(40, 1)
        return self.blob(3000, 128)

    def status(self) -> ObjectStatus:
        return self.rng.choice(list(ObjectStatus))

    def datagram(self) -> ObjectDatagram:
        rng = self.rng
        status = self.status() if rng.random() < 0.4 else None
        props = self.properties(1) if rng.random() < 0.4 else None
        if status is not None and status != ObjectStatus.NORMAL:
            props = None
        return ObjectDatagram(
            track_alias=self.varint(),
            group_id=self.varint(),
            object_id=0 if rng.random() < 0.3 else self.varint(),
            publisher_priority=None if rng.random() < 0.3 else rng.randint(0, 255),
            properties=props,
            end_of_group=False if status is not None else rng.random() < 0.3,
            status=status,
            payload=b"" if status is not None else self.payload(),
        )

    def subgroup_stream(self, version: Version) -> bytes:
        rng = self.rng
        mode = rng.choice(list(SubgroupIdMode))
        subgroup: int | None = {SubgroupIdMode.ZERO: 0, SubgroupIdMode.FIRST_OBJECT_ID: None}.get(mode, self.varint())
        header = SubgroupHeader(
            self.varint(),
            self.varint(),
            subgroup,
            None if rng.random() < 0.3 else rng.randint(0, 255),
            mode,
            has_properties=rng.random() < 0.5,
            end_of_group=rng.random() < 0.3,
            first_object=rng.random() < 0.3,
        )
        parts = [encode_subgroup_header(header, version)]
        object_id = self.small()
        prev: int | None = None
        for _ in range(rng.randint(0, 6)):
            status = self.status() if rng.random() < 0.3 else ObjectStatus.NORMAL
            if status != ObjectStatus.NORMAL:
                obj = SubgroupObject(object_id, (), status, b"")
            else:
                props = self.properties(1) if header.has_properties and rng.random() < 0.5 else ()
                obj = SubgroupObject(object_id, props, status, self.payload())
            parts.append(encode_subgroup_object(header, prev, obj))
            prev = object_id
            object_id += 1 + (0 if rng.random() < 0.6 else self.small())
            if object_id > MAX_VARINT:
                break
        return b"".join(parts)

    def fetch_stream(self, version: Version, order: GroupOrder) -> bytes:
        rng = self.rng
        groups = sorted({self.varint() for _ in range(rng.randint(0, 4))}, reverse=order == GroupOrder.DESCENDING)
        kinds = [EndOfRangeKind.NON_EXISTENT, EndOfRangeKind.UNKNOWN]
        if version.family >= 20:
            kinds.append(EndOfRangeKind.TIMED_OUT)
        encoder = FetchObjectEncoder(version, order)
        parts = [encode_fetch_header(self.varint())]
        priority = rng.randint(0, 255)
        for group in groups:
            start = self.rng.choice([0, self.small(), self.varint()])
            object_ids = sorted({min(MAX_VARINT, start + self.small()) for _ in range(rng.randint(1, 4))})
            subgroup: int | None = rng.choice([0, 1, self.small()])
            for object_id in object_ids:
                if rng.random() < 0.15:
                    parts.append(encoder.end_of_range(rng.choice(kinds), group, object_id))
                    continue
                roll = rng.random()
                if roll < 0.15:
                    subgroup = None
                elif roll < 0.3:
                    subgroup = min(MAX_VARINT, (subgroup or 0) + 1)
                elif roll < 0.4:
                    subgroup = self.varint()
                if rng.random() < 0.3:
                    priority = rng.randint(0, 255)
                props = self.properties(1) if rng.random() < 0.3 else None
                obj = FetchObject(group, subgroup, object_id, priority, props, self.payload())
                parts.append(encoder.encode(obj))
        return b"".join(parts)

    def mutate(self, data: bytes) -> bytes:
        """`data` damaged once: a byte changed, inserted or deleted, or the tail cut off."""
        rng = self.rng
        out = bytearray(data)
        roll = rng.random()
        if not out or roll < 0.2:
            out.insert(rng.randint(0, len(out)), rng.getrandbits(8))
        elif roll < 0.6:
            out[rng.randrange(len(out))] = rng.choice([0x00, 0x01, 0x3F, 0x7F, 0x80, 0xC0, 0xFF, rng.getrandbits(8)])
        elif roll < 0.8:
            del out[rng.randrange(len(out))]
        else:
            del out[rng.randrange(len(out)) :]
        return bytes(out)

    def mutate_message(self, data: bytes) -> bytes:
        """Damage a framed message; most of the time fix its Length so the damage reaches the body's fields."""
        _, type_end = decode_varint(data, 0)
        body = self.mutate(data[type_end + 2 :])
        if self.rng.random() < 0.2:
            return self.mutate(data)
        return data[:type_end] + min(len(body), 0xFFFF).to_bytes(2, "big") + body


# -- Vectors -------------------------------------------------------------------------------------------------------


def message_vectors(gen: Gen, count: int) -> tuple[list[Json], list[Json]]:
    valid: list[Json] = []
    mutations: list[Json] = []
    for version in Version:
        for cls in message_classes(version):
            made = 0
            for _ in range(count * 4):
                if made == count:
                    break
                msg = gen.message(cls, version)
                try:
                    data = encode_message(msg, version)
                except EncodeError:
                    continue  # e.g. a body over 65535 bytes
                decoded, consumed = decode_message(data, version)
                assert consumed == len(data) and encode_message(decoded, version) == data, (msg, decoded)
                valid.append({"version": int(version), "hex": data.hex(), "value": j_message(decoded)})
                made += 1
                for _ in range(2):
                    damaged = gen.mutate_message(data)
                    try:
                        outcome = message_outcome(damaged, version)
                    except Unsupported:
                        continue
                    mutations.append({"version": int(version), "hex": damaged.hex(), "outcome": outcome})
            assert made == count, f"could not draw {count} {cls.__name__} for draft-{version}"
        # Random bodies under every type code, framed right: the field readers' own error paths.
        for code in sorted({*(int(kind) for kind in MessageType), 0x01, 0x09, 0x21}):
            for _ in range(count // 2):
                body = gen.blob(40)
                data = encode_varint(code) + len(body).to_bytes(2, "big") + body
                try:
                    outcome = message_outcome(data, version)
                except Unsupported:
                    continue
                mutations.append({"version": int(version), "hex": data.hex(), "outcome": outcome})
    return valid, mutations


def datagram_vectors(gen: Gen, count: int) -> tuple[list[Json], list[Json]]:
    valid: list[Json] = []
    mutations: list[Json] = []
    for version in Version:
        samples = [gen.datagram() for _ in range(count)]
        encoded = [encode_datagram(dgram, version) for dgram in samples]
        encoded += [encode_padding_datagram(size) for size in (5, 6, 40)]
        for _ in range(count):
            data = bytes([gen.rng.randrange(0x40)]) + gen.blob(30)
            mutations.append({"version": int(version), "hex": data.hex(), "outcome": datagram_outcome(data, version)})
        for data in encoded:
            valid.append({"version": int(version), "hex": data.hex(), "value": j_event(decode_datagram(data, version))})
            for _ in range(2):
                damaged = gen.mutate(data)
                mutations.append(
                    {"version": int(version), "hex": damaged.hex(), "outcome": datagram_outcome(damaged, version)}
                )
    return valid, mutations


def stream_vectors(gen: Gen, count: int) -> tuple[list[Json], list[Json]]:
    valid: list[Json] = []
    mutations: list[Json] = []
    for version in Version:
        cases: list[tuple[GroupOrder, bytes]] = []
        for _ in range(count):
            cases.append((GroupOrder.ASCENDING, gen.subgroup_stream(version)))
        for order in GroupOrder:
            for _ in range(count // 2):
                cases.append((order, gen.fetch_stream(version, order)))
        cases.append((GroupOrder.ASCENDING, encode_padding_stream(0)))
        cases.append((GroupOrder.ASCENDING, encode_padding_stream(33)))
        setup = encode_message(Setup.create(implementation="moq-web-vectors"), version)
        cases.append((GroupOrder.ASCENDING, setup + setup))
        # An object over the parser's payload limit: ObjectTooLarge, not a violation.
        too_large = encode_subgroup_header(SubgroupHeader(1, 2, 0, None, SubgroupIdMode.ZERO), version)
        mutations.append(
            {
                "version": int(version),
                "group_order": 1,
                "hex": (too_large + b"\x00" + encode_varint(16 * 1024 * 1024 + 1)).hex(),
                "outcome": {"error": "too_large"},
            }
        )
        for order in GroupOrder:
            for prefix in (b"\x05\x01", b"\x10\x01\x02\x80", b"\x31\x01\x02\x03", b"\x75\x01\x02"):
                data = prefix + gen.blob(40)
                outcome = stream_outcome(data, version, order)
                mutations.append(
                    {"version": int(version), "group_order": int(order), "hex": data.hex(), "outcome": outcome}
                )
        for order, data in cases:
            outcome = stream_outcome(data, version, order)
            assert "events" in outcome, outcome
            valid.append({"version": int(version), "group_order": int(order), "hex": data.hex(), "outcome": outcome})
            for _ in range(3):
                damaged = gen.mutate(data)
                mutations.append(
                    {
                        "version": int(version),
                        "group_order": int(order),
                        "hex": damaged.hex(),
                        "outcome": stream_outcome(damaged, version, order),
                    }
                )
    return valid, mutations


def varint_vectors(gen: Gen) -> list[Json]:
    values = [*VARINT_EDGES, *(gen.varint() for _ in range(60))]
    out: list[Json] = []
    for value in values:
        forms = [encode_varint(value)]
        # Non-minimal encodings are valid (draft-21 §8.1): the same value in every longer length.
        for n in range(len(forms[0]) + 1, 10):
            if n == 9:
                forms.append(b"\xff" + value.to_bytes(8, "big"))
            elif value.bit_length() <= 7 * n:
                prefix = ((0xFF << (9 - n)) & 0xFF) << (8 * (n - 1))
                forms.append((prefix | value).to_bytes(n, "big"))
        for data in forms:
            assert decode_varint(data, 0) == (value, len(data))
            out.append({"hex": data.hex(), "value": j_int(value)})
    return out


def tables() -> Json:
    defined = {str(family): sorted(int(k) for k in kinds & JS_PARAMETERS) for family, kinds in DEFINED.items()}
    allowed = {
        str(family): {
            str(int(message)): sorted(int(k) for k in kinds & JS_PARAMETERS) for message, kinds in rows.items()
        }
        for family, rows in ALLOWED.items()
    }
    return {"defined": defined, "allowed": allowed}


def make_vectors(seed: int = DEFAULT_SEED, count: int = 12) -> Json:
    """Every vector set, drawn from `seed`; `count` samples per message class / datagram set / stream kind."""
    gen = Gen(seed)
    messages, message_mutations = message_vectors(gen, count)
    datagrams, datagram_mutations = datagram_vectors(gen, count * 2)
    streams, stream_mutations = stream_vectors(gen, count)
    return {
        "generator": "tests/web/make_vectors.py",
        "seed": seed,
        "tables": tables(),
        "varints": varint_vectors(gen),
        "messages": messages,
        "message_mutations": message_mutations,
        "datagrams": datagrams,
        "datagram_mutations": datagram_mutations,
        "streams": streams,
        "stream_mutations": stream_mutations,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the JSON file to write")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--count", type=int, default=12, help="samples per message class and draft")
    args = parser.parse_args(argv)
    args.out.write_text(json.dumps(make_vectors(args.seed, args.count), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
