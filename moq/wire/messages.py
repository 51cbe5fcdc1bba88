"""Control messages and their framing (draft-ietf-moq-transport-21 §9; draft-ietf-moq-transport-18 §"Control Messages").

Every message on a control or request stream is framed as

    Message Type (vi64) | Message Length (16, big-endian) | Message Body (Length bytes)

(draft-21 §9, Figure 4). Drafts 20, 21 and 22 share one message layout; draft-22 only changes the LOCATION_FILTER
parameter, which the parameter codec (`moq.wire.params`) handles. Draft-18 differs in a few rows, all kept in the
tables below, never in subclasses (DESIGN.md, decision 1):

- 0x0F is PUBLISH_BLOCKED (draft-18) / PUBLISH_SKIPPED (20+), with the same layout;
- 0x22 PUBLISH_STATE_NOTIFY exists only in 20+;
- GOAWAY carries a trailing optional Request ID in draft-18 only;
- FETCH carries Fetch Type plus a Standalone or Joining structure in draft-18 only;
- draft-18's message table still lists 0x1E PUBLISH_OK, although its text made PUBLISH_OK a REQUEST_OK (change log:
  "Remove PUBLISH_OK message type, make it a REQUEST_OK alias (#1611)"). We decode 0x1E as `RequestOk` in draft-18
  and always encode REQUEST_OK as 0x07.

What the codec checks: framing (length mismatch either way, unknown or version-foreign types), every field's shape
and the limits the draft attaches to fields (namespace fields and Full Track Name via `moq.wire.primitives`, reason
phrases, the GOAWAY URI, FETCH_OK End Of Track, the Fetch Type, authorization tokens and duplicate known options in
SETUP). What it cannot check, being stateless, is left to the session: which REQUEST_OK may carry Track Properties
(only TRACK_STATUS_OK, draft-21 §9.3), who may send GOAWAY URIs and Redirect Connect URIs, which stream a message may
arrive on, and role-specific SETUP rules (PATH/AUTHORITY from a server, DELETE tokens in a client SETUP).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import Any, TypeAlias

import msgspec
from aioquic.buffer import Buffer, BufferReadError, BufferWriteError

from moq.errors import EncodeError, NeedMoreData, ProtocolViolation
from moq.wire.codes import RequestErrorCode, SessionErrorCode
from moq.wire.params import NO_PARAMETERS, InvalidFilter, Parameters, pull_parameters, push_parameters
from moq.wire.primitives import (
    Location,
    Properties,
    Token,
    TrackNamespace,
    decode_token,
    encode_token,
    pull_key_values,
    pull_length_bytes,
    pull_location,
    pull_namespace,
    pull_reason_phrase,
    pull_track_name,
    push_key_values,
    push_length_bytes,
    push_location,
    push_namespace,
    push_reason_phrase,
    push_track_name,
)
from moq.wire.varint import decode_varint, encode_varint, pull_varint, push_varint, varint_length_from_first_byte
from moq.wire.version import Version

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_GOAWAY_URI_BYTES",
    "MAX_MESSAGE_BODY_BYTES",
    "FetchOk",
    "FetchType",
    "Fetch",
    "GoAway",
    "Message",
    "MessageReader",
    "MessageType",
    "Namespace",
    "NamespaceDone",
    "Publish",
    "PublishBlocked",
    "PublishDone",
    "PublishNamespace",
    "PublishSkipped",
    "PublishStateNotify",
    "Redirect",
    "RequestError",
    "RequestOk",
    "RequestUpdate",
    "Setup",
    "SetupOption",
    "Subscribe",
    "SubscribeNamespace",
    "SubscribeOk",
    "SubscribeTracks",
    "TrackStatus",
    "decode_message",
    "encode_message",
    "message_classes",
    "message_type",
]

#: The Message Length field is 16 bits, so a body is at most this many bytes (draft-21 §9).
MAX_MESSAGE_BODY_BYTES = 0xFFFF
#: A whole frame: the longest Message Type varint (9 bytes), the 16-bit length and the largest body. The partial
#: frame a `MessageReader` holds between calls is never longer.
MAX_FRAME_BYTES = 9 + 2 + MAX_MESSAGE_BODY_BYTES
#: GOAWAY New Session URI is at most this many bytes; more is a PROTOCOL_VIOLATION (draft-21 §9.2).
MAX_GOAWAY_URI_BYTES = 8192

_PV = SessionErrorCode.PROTOCOL_VIOLATION


class MessageType(IntEnum):
    """Control message types (draft-21 §9, Table 5; draft-18 §"Control Messages").

    0x0F is PUBLISH_SKIPPED in drafts 20+ and PUBLISH_BLOCKED in draft-18 (an alias here). PUBLISH_OK_DRAFT_18
    (0x1E) is decoded as REQUEST_OK in draft-18 only and never sent; 20+ reserve it.
    """

    REQUEST_UPDATE = 0x02
    SUBSCRIBE = 0x03
    SUBSCRIBE_OK = 0x04
    REQUEST_ERROR = 0x05
    PUBLISH_NAMESPACE = 0x06
    REQUEST_OK = 0x07
    NAMESPACE = 0x08
    PUBLISH_DONE = 0x0B
    TRACK_STATUS = 0x0D
    NAMESPACE_DONE = 0x0E
    PUBLISH_SKIPPED = 0x0F
    PUBLISH_BLOCKED = 0x0F
    GOAWAY = 0x10
    FETCH = 0x16
    FETCH_OK = 0x18
    PUBLISH = 0x1D
    PUBLISH_OK_DRAFT_18 = 0x1E
    PUBLISH_STATE_NOTIFY = 0x22
    SUBSCRIBE_NAMESPACE = 0x50
    SUBSCRIBE_TRACKS = 0x51
    SETUP = 0x2F00


class SetupOption(IntEnum):
    """Setup Option types (draft-21 §9.1.1-§9.1.7, §16.4). Odd types carry bytes, even types a varint.

    MAX_FILTER_RANGES and MAX_REQUEST_UPDATES arrived in draft-19: to a draft-18 peer they are unknown options,
    which it must ignore (so sending them is harmless, and receiving them under draft-18 means nothing).
    """

    PATH = 0x01
    AUTHORIZATION_TOKEN = 0x03
    MAX_AUTH_TOKEN_CACHE_SIZE = 0x04
    AUTHORITY = 0x05
    MAX_FILTER_RANGES = 0x06
    MOQT_IMPLEMENTATION = 0x07
    MAX_REQUEST_UPDATES = 0x08


class FetchType(IntEnum):
    """Fetch Type of a draft-18 FETCH (draft-18 §"FETCH"); drafts 20+ have no Fetch Type (fill fetch instead)."""

    STANDALONE = 0x1
    RELATIVE_JOINING = 0x2
    ABSOLUTE_JOINING = 0x3


# -- Messages ---------------------------------------------------------------------------------------------------


class Setup(msgspec.Struct, frozen=True):
    """SETUP (0x2F00): the first message on each control stream (draft-21 §9.1; draft-18 §"SETUP").

    `options` are the Setup Options as Key-Value-Pairs in ascending type order; unknown options are kept (and must
    be ignored by the session), duplicates of unknown options are allowed. Build one with `Setup.create`; read the
    known options with the typed properties, which return the first instance (a duplicate of a known option other
    than AUTHORIZATION_TOKEN is refused by the codec).
    """

    options: Properties = ()

    @classmethod
    def create(
        cls,
        *,
        path: str | None = None,
        authority: str | None = None,
        authorization_tokens: Sequence[Token] = (),
        max_auth_token_cache_size: int | None = None,
        max_filter_ranges: int | None = None,
        implementation: str | None = None,
        max_request_updates: int | None = None,
        extra: Properties = (),
    ) -> Setup:
        """A SETUP carrying the given options (None = absent) plus any `extra` ones (e.g. GREASE).

        PATH and AUTHORITY are URI components (RFC 3986), so they must be ASCII (percent-encode anything else).
        """
        options: list[tuple[int, int | bytes]] = []
        if path is not None:
            options.append((SetupOption.PATH, _ascii(path, "PATH")))
        options.extend((SetupOption.AUTHORIZATION_TOKEN, encode_token(token)) for token in authorization_tokens)
        if max_auth_token_cache_size is not None:
            options.append((SetupOption.MAX_AUTH_TOKEN_CACHE_SIZE, max_auth_token_cache_size))
        if authority is not None:
            options.append((SetupOption.AUTHORITY, _ascii(authority, "AUTHORITY")))
        if max_filter_ranges is not None:
            options.append((SetupOption.MAX_FILTER_RANGES, max_filter_ranges))
        if implementation is not None:
            options.append((SetupOption.MOQT_IMPLEMENTATION, implementation.encode("utf-8")))
        if max_request_updates is not None:
            options.append((SetupOption.MAX_REQUEST_UPDATES, max_request_updates))
        options.extend(extra)
        options.sort(key=_option_type)
        return cls(options=tuple((int(kind), value) for kind, value in options))

    def option(self, kind: int) -> int | bytes | None:
        """The value of the first option of type `kind`, or None."""
        for k, value in self.options:
            if k == kind:
                return value
        return None

    @property
    def path(self) -> str | None:
        """PATH (0x01, draft-21 §9.1.2): path-abempty [? query]; not ASCII -> MALFORMED_PATH."""
        return _uri_option(self.option(SetupOption.PATH), SessionErrorCode.MALFORMED_PATH, "PATH")

    @property
    def authority(self) -> str | None:
        """AUTHORITY (0x05, draft-21 §9.1.1): the URI authority; not ASCII -> MALFORMED_AUTHORITY."""
        return _uri_option(self.option(SetupOption.AUTHORITY), SessionErrorCode.MALFORMED_AUTHORITY, "AUTHORITY")

    @property
    def authorization_tokens(self) -> tuple[Token, ...]:
        """Every AUTHORIZATION_TOKEN (0x03, draft-21 §9.1.4), in order; the option may repeat."""
        return tuple(
            decode_token(value)
            for kind, value in self.options
            if kind == SetupOption.AUTHORIZATION_TOKEN and isinstance(value, bytes)
        )

    @property
    def max_auth_token_cache_size(self) -> int:
        """MAX_AUTH_TOKEN_CACHE_SIZE (0x04, draft-21 §9.1.3); default 0 (no token aliases)."""
        return _int_option(self.option(SetupOption.MAX_AUTH_TOKEN_CACHE_SIZE))

    @property
    def max_filter_ranges(self) -> int:
        """MAX_FILTER_RANGES (0x06, draft-21 §9.1.6; draft-19+); default 0 (no range filters)."""
        return _int_option(self.option(SetupOption.MAX_FILTER_RANGES))

    @property
    def implementation(self) -> str | None:
        """MOQT_IMPLEMENTATION (0x07, draft-21 §9.1.5): informative, so invalid UTF-8 is replaced."""
        value = self.option(SetupOption.MOQT_IMPLEMENTATION)
        return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else None

    @property
    def max_request_updates(self) -> int:
        """MAX_REQUEST_UPDATES (0x08, draft-21 §9.1.7; draft-19+); default 0 (unlimited)."""
        return _int_option(self.option(SetupOption.MAX_REQUEST_UPDATES))


class GoAway(msgspec.Struct, frozen=True):
    """GOAWAY (0x10) on the control stream or a request stream (draft-21 §9.2; draft-18 §"GOAWAY").

    `new_session_uri` is at most 8192 bytes of UTF-8 ("" = reuse the current URI). `request_id` exists only in
    draft-18 (present only on the control stream there); encoding it for 20+ is an `EncodeError`.
    """

    new_session_uri: str = ""
    timeout: int = 0
    request_id: int | None = None


class RequestOk(msgspec.Struct, frozen=True):
    """REQUEST_OK (0x07): PUBLISH_OK, REQUEST_UPDATE_OK, TRACK_STATUS_OK, SUBSCRIBE_NAMESPACE_OK,
    SUBSCRIBE_TRACKS_OK, PUBLISH_NAMESPACE_OK (draft-21 §9.3; draft-18 §"REQUEST_OK").

    `properties` (Track Properties, rest of the message) may be non-empty only in TRACK_STATUS_OK; a stateless codec
    cannot know which request this answers, so the session must refuse them elsewhere with PROTOCOL_VIOLATION.
    """

    parameters: Parameters = NO_PARAMETERS
    properties: Properties = ()


class Redirect(msgspec.Struct, frozen=True):
    """The Redirect structure of a REQUEST_ERROR with code REDIRECT (draft-21 §9.4.1).

    `name` must be empty for namespace-scoped requests and `connect_uri` empty when sent by a client: both are the
    session's to check (the codec does not know the request or the role).
    """

    connect_uri: str = ""
    namespace: TrackNamespace = ()
    name: bytes = b""


class RequestError(msgspec.Struct, frozen=True):
    """REQUEST_ERROR (0x05), the refusal of any request (draft-21 §9.4.2; draft-18 §"REQUEST_ERROR").

    `retry_interval` is milliseconds plus one (0 = do not retry). `redirect` is present exactly when `error_code` is
    REDIRECT (0x34). `error_code` stays a plain int: unknown and GREASE codes must not break decoding.
    """

    error_code: int
    retry_interval: int = 0
    reason: str = ""
    redirect: Redirect | None = None


class RequestUpdate(msgspec.Struct, frozen=True):
    """REQUEST_UPDATE (0x02): modify a request on its stream; consumes a Request ID (draft-21 §9.5)."""

    request_id: int
    parameters: Parameters = NO_PARAMETERS


class Subscribe(msgspec.Struct, frozen=True):
    """SUBSCRIBE (0x03), first on a request stream (draft-21 §9.6; draft-18 §"SUBSCRIBE")."""

    request_id: int
    namespace: TrackNamespace
    name: bytes
    parameters: Parameters = NO_PARAMETERS


class SubscribeOk(msgspec.Struct, frozen=True):
    """SUBSCRIBE_OK (0x04): Track Alias, parameters and Track Properties (draft-21 §9.7)."""

    track_alias: int
    parameters: Parameters = NO_PARAMETERS
    properties: Properties = ()


class Publish(msgspec.Struct, frozen=True):
    """PUBLISH (0x1D), first on a request stream: a publisher-initiated subscription (draft-21 §9.8)."""

    request_id: int
    namespace: TrackNamespace
    name: bytes
    track_alias: int
    parameters: Parameters = NO_PARAMETERS
    properties: Properties = ()


class PublishDone(msgspec.Struct, frozen=True):
    """PUBLISH_DONE (0x0B), last message of a subscription (draft-21 §9.9).

    `stream_count` is 2^64-1 when unknown (draft-18 text says 2^62-1; the field is a vi64 either way).
    """

    status_code: int
    stream_count: int = 0
    reason: str = ""


class PublishStateNotify(msgspec.Struct, frozen=True):
    """PUBLISH_STATE_NOTIFY (0x22, drafts 20+ only): unacknowledged subscription state change (draft-21 §9.10)."""

    parameters: Parameters = NO_PARAMETERS


class Fetch(msgspec.Struct, frozen=True):
    """FETCH (0x16), first on a request stream (draft-21 §9.11; draft-18 §"FETCH").

    Drafts 20+: `namespace`, `name` and `parameters` (the range travels in the LOCATION_FILTER parameter); the
    draft-18-only fields must stay None. Draft-18: `fetch_type` is required; STANDALONE carries `namespace`, `name`,
    `start` and `end` (End Location "plus 1", Object 0 = whole group); the joining types carry `joining_request_id`
    and `joining_start` and no track name (namespace () and name b""). Anything else is an `EncodeError`.
    """

    request_id: int
    namespace: TrackNamespace = ()
    name: bytes = b""
    parameters: Parameters = NO_PARAMETERS
    fetch_type: FetchType | None = None
    start: Location | None = None
    end: Location | None = None
    joining_request_id: int | None = None
    joining_start: int | None = None


class FetchOk(msgspec.Struct, frozen=True):
    """FETCH_OK (0x18) (draft-21 §9.12; draft-18 §"FETCH_OK").

    The wire layout is the same in both drafts, but draft-18's End Location is "last Object plus 1" (Object 0 =
    whole group) while 20+ make it inclusive: the session interprets it per version. End Of Track is one byte that
    must be 0 or 1.
    """

    end_of_track: bool
    end_location: Location
    parameters: Parameters = NO_PARAMETERS
    properties: Properties = ()


class TrackStatus(msgspec.Struct, frozen=True):
    """TRACK_STATUS (0x0D): laid out like SUBSCRIBE; answered by TRACK_STATUS_OK (draft-21 §9.13)."""

    request_id: int
    namespace: TrackNamespace
    name: bytes
    parameters: Parameters = NO_PARAMETERS


class PublishNamespace(msgspec.Struct, frozen=True):
    """PUBLISH_NAMESPACE (0x06), first on a request stream (draft-21 §9.14).

    Draft-22 renames the field "Track Namespace Prefix"; the bytes are the same.
    """

    request_id: int
    namespace: TrackNamespace
    parameters: Parameters = NO_PARAMETERS


class SubscribeNamespace(msgspec.Struct, frozen=True):
    """SUBSCRIBE_NAMESPACE (0x50): namespace discovery under a prefix of 0 to 32 fields (draft-21 §9.15)."""

    request_id: int
    namespace_prefix: TrackNamespace
    parameters: Parameters = NO_PARAMETERS


class SubscribeTracks(msgspec.Struct, frozen=True):
    """SUBSCRIBE_TRACKS (0x51): ask for PUBLISHes of the tracks under a prefix (draft-21 §9.18)."""

    request_id: int
    namespace_prefix: TrackNamespace
    parameters: Parameters = NO_PARAMETERS


class Namespace(msgspec.Struct, frozen=True):
    """NAMESPACE (0x08) on a SUBSCRIBE_NAMESPACE response stream: the fields after the prefix (draft-21 §9.16)."""

    namespace_suffix: TrackNamespace


class NamespaceDone(msgspec.Struct, frozen=True):
    """NAMESPACE_DONE (0x0E) on a SUBSCRIBE_NAMESPACE response stream (draft-21 §9.17)."""

    namespace_suffix: TrackNamespace


class PublishSkipped(msgspec.Struct, frozen=True):
    """PUBLISH_SKIPPED (0x0F, drafts 20+) on a SUBSCRIBE_TRACKS response stream (draft-21 §9.19)."""

    namespace_suffix: TrackNamespace
    name: bytes


class PublishBlocked(msgspec.Struct, frozen=True):
    """PUBLISH_BLOCKED (0x0F, draft-18 only): PUBLISH_SKIPPED's predecessor, same layout.

    draft-ietf-moq-transport-18 §"PUBLISH_BLOCKED".
    """

    namespace_suffix: TrackNamespace
    name: bytes


Message: TypeAlias = (
    Setup
    | GoAway
    | RequestOk
    | RequestError
    | RequestUpdate
    | Subscribe
    | SubscribeOk
    | Publish
    | PublishDone
    | PublishStateNotify
    | Fetch
    | FetchOk
    | TrackStatus
    | PublishNamespace
    | SubscribeNamespace
    | SubscribeTracks
    | Namespace
    | NamespaceDone
    | PublishSkipped
    | PublishBlocked
)


# -- Helpers ----------------------------------------------------------------------------------------------------


def _option_type(pair: tuple[int, int | bytes]) -> int:
    return pair[0]


def _ascii(text: str, what: str) -> bytes:
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        raise EncodeError(f"{what} setup option must be ASCII (percent-encode the rest): {text!r}") from None


def _int_option(value: int | bytes | None) -> int:
    return value if isinstance(value, int) else 0


def _uri_option(value: int | bytes | None, code: int, what: str) -> str | None:
    if not isinstance(value, bytes):
        return None
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolViolation(code, f"{what} setup option is not ASCII") from None


def _pull_name(buf: Buffer, end: int) -> tuple[TrackNamespace, bytes]:
    namespace = pull_namespace(buf, end)
    return namespace, pull_track_name(buf, end, namespace)


def _push_name(buf: Buffer, namespace: TrackNamespace, name: bytes) -> None:
    push_namespace(buf, namespace)
    push_track_name(buf, namespace, name)


def _pull_uri(buf: Buffer, end: int, what: str, limit: int | None = None) -> str:
    return pull_length_bytes(buf, end, what, limit).decode("utf-8", errors="replace")


def _push_uri(buf: Buffer, uri: str, what: str, limit: int | None = None) -> None:
    raw = uri.encode("utf-8")
    if limit is not None and len(raw) > limit:
        raise EncodeError(f"{what} is {len(raw)} bytes, over the limit of {limit}")
    push_length_bytes(buf, raw)


# Setup Options that may appear once at most, by the first draft that defines them. AUTHORIZATION_TOKEN may repeat
# (draft-21 §9.1.4: "one or more tokens"); any option a draft does not define may repeat (§9.1).
_SINGLE_OPTIONS: dict[int, int] = {
    SetupOption.PATH: 18,
    SetupOption.MAX_AUTH_TOKEN_CACHE_SIZE: 18,
    SetupOption.AUTHORITY: 18,
    SetupOption.MAX_FILTER_RANGES: 19,
    SetupOption.MOQT_IMPLEMENTATION: 18,
    SetupOption.MAX_REQUEST_UPDATES: 19,
}


def _duplicate_option(options: Properties, version: Version) -> int | None:
    seen: set[int] = set()
    for kind, _ in options:
        since = _SINGLE_OPTIONS.get(kind)
        if since is None or version < since:
            continue
        if kind in seen:
            return kind
        seen.add(kind)
    return None


# -- Body codecs ------------------------------------------------------------------------------------------------
# Each reader takes (buf, end, version, wire type) with `buf` holding exactly the body; each writer appends the body.


def _pull_setup(buf: Buffer, end: int, version: Version, kind: int) -> Setup:
    options = pull_key_values(buf, end)
    duplicate = _duplicate_option(options, version)
    if duplicate is not None:
        raise ProtocolViolation(_PV, f"SETUP repeats option 0x{duplicate:x}")
    for option, value in options:
        if option == SetupOption.AUTHORIZATION_TOKEN and isinstance(value, bytes):
            decode_token(value)  # an undecodable token is a KEY_VALUE_FORMATTING_ERROR (draft-21 §8.9)
    return Setup(options)


def _push_setup(buf: Buffer, msg: Setup, version: Version, kind: int) -> None:
    duplicate = _duplicate_option(msg.options, version)
    if duplicate is not None:
        raise EncodeError(f"SETUP option 0x{duplicate:x} must not repeat")
    push_key_values(buf, msg.options)


def _pull_goaway(buf: Buffer, end: int, version: Version, kind: int) -> GoAway:
    uri = _pull_uri(buf, end, "GOAWAY new session URI", MAX_GOAWAY_URI_BYTES)
    timeout = pull_varint(buf)
    request_id = None
    if version.family == 18 and buf.tell() < end:
        request_id = pull_varint(buf)
    return GoAway(uri, timeout, request_id)


def _push_goaway(buf: Buffer, msg: GoAway, version: Version, kind: int) -> None:
    if msg.request_id is not None and version.family != 18:
        raise EncodeError(f"GOAWAY has no Request ID in draft-{version.value}")
    _push_uri(buf, msg.new_session_uri, "GOAWAY new session URI", MAX_GOAWAY_URI_BYTES)
    push_varint(buf, msg.timeout)
    if msg.request_id is not None:
        push_varint(buf, msg.request_id)


def _pull_request_ok(buf: Buffer, end: int, version: Version, kind: int) -> RequestOk:
    # Draft-18's 0x1E PUBLISH_OK is a REQUEST_OK: its parameters are read as REQUEST_OK's.
    parameters = pull_parameters(buf, end, version, MessageType.REQUEST_OK)
    return RequestOk(parameters, pull_key_values(buf, end))


def _push_request_ok(buf: Buffer, msg: RequestOk, version: Version, kind: int) -> None:
    push_parameters(buf, msg.parameters, version, kind)
    push_key_values(buf, msg.properties)


def _pull_request_error(buf: Buffer, end: int, version: Version, kind: int) -> RequestError:
    code = pull_varint(buf)
    retry_interval = pull_varint(buf)
    reason = pull_reason_phrase(buf, end)
    redirect = None
    if code == RequestErrorCode.REDIRECT:
        uri = _pull_uri(buf, end, "redirect connect URI")
        namespace, name = _pull_name(buf, end)
        redirect = Redirect(uri, namespace, name)
    return RequestError(code, retry_interval, reason, redirect)


def _push_request_error(buf: Buffer, msg: RequestError, version: Version, kind: int) -> None:
    is_redirect = msg.error_code == RequestErrorCode.REDIRECT
    if is_redirect != (msg.redirect is not None):
        raise EncodeError("REQUEST_ERROR carries a Redirect exactly when its code is REDIRECT (0x34)")
    push_varint(buf, msg.error_code)
    push_varint(buf, msg.retry_interval)
    push_reason_phrase(buf, msg.reason)
    if msg.redirect is not None:
        _push_uri(buf, msg.redirect.connect_uri, "redirect connect URI")
        _push_name(buf, msg.redirect.namespace, msg.redirect.name)


def _pull_request_update(buf: Buffer, end: int, version: Version, kind: int) -> RequestUpdate:
    request_id = pull_varint(buf)
    return RequestUpdate(request_id, pull_parameters(buf, end, version, kind))


def _push_request_update(buf: Buffer, msg: RequestUpdate, version: Version, kind: int) -> None:
    push_varint(buf, msg.request_id)
    push_parameters(buf, msg.parameters, version, kind)


def _pull_subscribe(buf: Buffer, end: int, version: Version, kind: int) -> Subscribe:
    request_id = pull_varint(buf)
    namespace, name = _pull_name(buf, end)
    return Subscribe(request_id, namespace, name, pull_parameters(buf, end, version, kind))


def _push_subscribe(buf: Buffer, msg: Subscribe | TrackStatus, version: Version, kind: int) -> None:
    push_varint(buf, msg.request_id)
    _push_name(buf, msg.namespace, msg.name)
    push_parameters(buf, msg.parameters, version, kind)


def _pull_track_status(buf: Buffer, end: int, version: Version, kind: int) -> TrackStatus:
    request_id = pull_varint(buf)
    namespace, name = _pull_name(buf, end)
    return TrackStatus(request_id, namespace, name, pull_parameters(buf, end, version, kind))


def _pull_subscribe_ok(buf: Buffer, end: int, version: Version, kind: int) -> SubscribeOk:
    track_alias = pull_varint(buf)
    parameters = pull_parameters(buf, end, version, kind)
    return SubscribeOk(track_alias, parameters, pull_key_values(buf, end))


def _push_subscribe_ok(buf: Buffer, msg: SubscribeOk, version: Version, kind: int) -> None:
    push_varint(buf, msg.track_alias)
    push_parameters(buf, msg.parameters, version, kind)
    push_key_values(buf, msg.properties)


def _pull_publish(buf: Buffer, end: int, version: Version, kind: int) -> Publish:
    request_id = pull_varint(buf)
    namespace, name = _pull_name(buf, end)
    track_alias = pull_varint(buf)
    parameters = pull_parameters(buf, end, version, kind)
    return Publish(request_id, namespace, name, track_alias, parameters, pull_key_values(buf, end))


def _push_publish(buf: Buffer, msg: Publish, version: Version, kind: int) -> None:
    push_varint(buf, msg.request_id)
    _push_name(buf, msg.namespace, msg.name)
    push_varint(buf, msg.track_alias)
    push_parameters(buf, msg.parameters, version, kind)
    push_key_values(buf, msg.properties)


def _pull_publish_done(buf: Buffer, end: int, version: Version, kind: int) -> PublishDone:
    status_code = pull_varint(buf)
    stream_count = pull_varint(buf)
    return PublishDone(status_code, stream_count, pull_reason_phrase(buf, end))


def _push_publish_done(buf: Buffer, msg: PublishDone, version: Version, kind: int) -> None:
    push_varint(buf, msg.status_code)
    push_varint(buf, msg.stream_count)
    push_reason_phrase(buf, msg.reason)


def _pull_publish_state_notify(buf: Buffer, end: int, version: Version, kind: int) -> PublishStateNotify:
    return PublishStateNotify(pull_parameters(buf, end, version, kind))


def _push_publish_state_notify(buf: Buffer, msg: PublishStateNotify, version: Version, kind: int) -> None:
    push_parameters(buf, msg.parameters, version, kind)


def _pull_fetch(buf: Buffer, end: int, version: Version, kind: int) -> Fetch:
    request_id = pull_varint(buf)
    if version.family != 18:
        namespace, name = _pull_name(buf, end)
        return Fetch(request_id, namespace, name, pull_parameters(buf, end, version, kind))
    fetch_type = pull_varint(buf)
    if fetch_type == FetchType.STANDALONE:
        namespace, name = _pull_name(buf, end)
        start = pull_location(buf)
        end_location = pull_location(buf)
        parameters = pull_parameters(buf, end, version, kind)
        return Fetch(request_id, namespace, name, parameters, FetchType.STANDALONE, start, end_location)
    if fetch_type in (FetchType.RELATIVE_JOINING, FetchType.ABSOLUTE_JOINING):
        joining_request_id = pull_varint(buf)
        joining_start = pull_varint(buf)
        parameters = pull_parameters(buf, end, version, kind)
        return Fetch(
            request_id,
            parameters=parameters,
            fetch_type=FetchType(fetch_type),
            joining_request_id=joining_request_id,
            joining_start=joining_start,
        )
    raise ProtocolViolation(_PV, f"unknown FETCH Fetch Type 0x{fetch_type:x}")


def _push_fetch(buf: Buffer, msg: Fetch, version: Version, kind: int) -> None:
    push_varint(buf, msg.request_id)
    standalone = (msg.start, msg.end)
    joining = (msg.joining_request_id, msg.joining_start)
    if version.family != 18:
        if msg.fetch_type is not None or standalone != (None, None) or joining != (None, None):
            raise EncodeError(f"FETCH has no Fetch Type, Start/End Location or Joining fields in draft-{version}")
        _push_name(buf, msg.namespace, msg.name)
    elif msg.fetch_type == FetchType.STANDALONE:
        if msg.start is None or msg.end is None or joining != (None, None):
            raise EncodeError("a draft-18 standalone FETCH needs start and end and no joining fields")
        push_varint(buf, FetchType.STANDALONE)
        _push_name(buf, msg.namespace, msg.name)
        push_location(buf, msg.start)
        push_location(buf, msg.end)
    elif msg.fetch_type in (FetchType.RELATIVE_JOINING, FetchType.ABSOLUTE_JOINING):
        if msg.joining_request_id is None or msg.joining_start is None:
            raise EncodeError("a draft-18 joining FETCH needs joining_request_id and joining_start")
        if standalone != (None, None) or msg.namespace or msg.name:
            raise EncodeError("a draft-18 joining FETCH carries no track name, start or end")
        push_varint(buf, msg.fetch_type)
        push_varint(buf, msg.joining_request_id)
        push_varint(buf, msg.joining_start)
    else:
        raise EncodeError("a draft-18 FETCH needs a fetch_type")
    push_parameters(buf, msg.parameters, version, kind)


def _pull_fetch_ok(buf: Buffer, end: int, version: Version, kind: int) -> FetchOk:
    end_of_track = buf.pull_uint8()
    if end_of_track > 1:
        raise ProtocolViolation(_PV, f"FETCH_OK End Of Track is {end_of_track}, not 0 or 1")
    end_location = pull_location(buf)
    parameters = pull_parameters(buf, end, version, kind)
    return FetchOk(end_of_track == 1, end_location, parameters, pull_key_values(buf, end))


def _push_fetch_ok(buf: Buffer, msg: FetchOk, version: Version, kind: int) -> None:
    buf.push_uint8(1 if msg.end_of_track else 0)
    push_location(buf, msg.end_location)
    push_parameters(buf, msg.parameters, version, kind)
    push_key_values(buf, msg.properties)


def _pull_publish_namespace(buf: Buffer, end: int, version: Version, kind: int) -> PublishNamespace:
    request_id = pull_varint(buf)
    namespace = pull_namespace(buf, end)
    return PublishNamespace(request_id, namespace, pull_parameters(buf, end, version, kind))


def _push_prefix_request(
    buf: Buffer, msg: PublishNamespace | SubscribeNamespace | SubscribeTracks, version: Version, kind: int
) -> None:
    push_varint(buf, msg.request_id)
    push_namespace(buf, msg.namespace if isinstance(msg, PublishNamespace) else msg.namespace_prefix)
    push_parameters(buf, msg.parameters, version, kind)


def _pull_subscribe_namespace(buf: Buffer, end: int, version: Version, kind: int) -> SubscribeNamespace:
    request_id = pull_varint(buf)
    prefix = pull_namespace(buf, end)
    return SubscribeNamespace(request_id, prefix, pull_parameters(buf, end, version, kind))


def _pull_subscribe_tracks(buf: Buffer, end: int, version: Version, kind: int) -> SubscribeTracks:
    request_id = pull_varint(buf)
    prefix = pull_namespace(buf, end)
    return SubscribeTracks(request_id, prefix, pull_parameters(buf, end, version, kind))


def _pull_namespace_msg(buf: Buffer, end: int, version: Version, kind: int) -> Namespace:
    return Namespace(pull_namespace(buf, end))


def _pull_namespace_done(buf: Buffer, end: int, version: Version, kind: int) -> NamespaceDone:
    return NamespaceDone(pull_namespace(buf, end))


def _push_suffix(buf: Buffer, msg: Namespace | NamespaceDone, version: Version, kind: int) -> None:
    push_namespace(buf, msg.namespace_suffix)


def _pull_publish_skipped(buf: Buffer, end: int, version: Version, kind: int) -> PublishSkipped:
    return PublishSkipped(*_pull_name(buf, end))


def _pull_publish_blocked(buf: Buffer, end: int, version: Version, kind: int) -> PublishBlocked:
    return PublishBlocked(*_pull_name(buf, end))


def _push_suffix_name(buf: Buffer, msg: PublishSkipped | PublishBlocked, version: Version, kind: int) -> None:
    _push_name(buf, msg.namespace_suffix, msg.name)


# -- Tables -----------------------------------------------------------------------------------------------------

_Puller = Callable[[Buffer, int, Version, int], Message]
_Pusher = Callable[[Buffer, Any, Version, int], None]

_COMMON: dict[type[Message], int] = {
    Setup: MessageType.SETUP,
    GoAway: MessageType.GOAWAY,
    RequestUpdate: MessageType.REQUEST_UPDATE,
    Subscribe: MessageType.SUBSCRIBE,
    SubscribeOk: MessageType.SUBSCRIBE_OK,
    RequestError: MessageType.REQUEST_ERROR,
    PublishNamespace: MessageType.PUBLISH_NAMESPACE,
    RequestOk: MessageType.REQUEST_OK,
    Namespace: MessageType.NAMESPACE,
    PublishDone: MessageType.PUBLISH_DONE,
    TrackStatus: MessageType.TRACK_STATUS,
    NamespaceDone: MessageType.NAMESPACE_DONE,
    Fetch: MessageType.FETCH,
    FetchOk: MessageType.FETCH_OK,
    Publish: MessageType.PUBLISH,
    SubscribeNamespace: MessageType.SUBSCRIBE_NAMESPACE,
    SubscribeTracks: MessageType.SUBSCRIBE_TRACKS,
}

#: Message class -> wire type, per wire family (`Version.family`).
_ENCODE_TYPES: dict[int, dict[type[Message], int]] = {
    18: {**_COMMON, PublishBlocked: MessageType.PUBLISH_BLOCKED},
    20: {**_COMMON, PublishSkipped: MessageType.PUBLISH_SKIPPED, PublishStateNotify: MessageType.PUBLISH_STATE_NOTIFY},
}

_PULLERS: dict[type[Message], _Puller] = {
    Setup: _pull_setup,
    GoAway: _pull_goaway,
    RequestOk: _pull_request_ok,
    RequestError: _pull_request_error,
    RequestUpdate: _pull_request_update,
    Subscribe: _pull_subscribe,
    SubscribeOk: _pull_subscribe_ok,
    Publish: _pull_publish,
    PublishDone: _pull_publish_done,
    PublishStateNotify: _pull_publish_state_notify,
    Fetch: _pull_fetch,
    FetchOk: _pull_fetch_ok,
    TrackStatus: _pull_track_status,
    PublishNamespace: _pull_publish_namespace,
    SubscribeNamespace: _pull_subscribe_namespace,
    SubscribeTracks: _pull_subscribe_tracks,
    Namespace: _pull_namespace_msg,
    NamespaceDone: _pull_namespace_done,
    PublishSkipped: _pull_publish_skipped,
    PublishBlocked: _pull_publish_blocked,
}

_PUSHERS: dict[type[Message], _Pusher] = {
    Setup: _push_setup,
    GoAway: _push_goaway,
    RequestOk: _push_request_ok,
    RequestError: _push_request_error,
    RequestUpdate: _push_request_update,
    Subscribe: _push_subscribe,
    SubscribeOk: _push_subscribe_ok,
    Publish: _push_publish,
    PublishDone: _push_publish_done,
    PublishStateNotify: _push_publish_state_notify,
    Fetch: _push_fetch,
    FetchOk: _push_fetch_ok,
    TrackStatus: _push_subscribe,
    PublishNamespace: _push_prefix_request,
    SubscribeNamespace: _push_prefix_request,
    SubscribeTracks: _push_prefix_request,
    Namespace: _push_suffix,
    NamespaceDone: _push_suffix,
    PublishSkipped: _push_suffix_name,
    PublishBlocked: _push_suffix_name,
}

#: Wire type -> message class, per wire family. Draft-18 also reads its table's 0x1E PUBLISH_OK as REQUEST_OK.
_DECODE_TYPES: dict[int, dict[int, type[Message]]] = {
    18: {
        **{kind: cls for cls, kind in _ENCODE_TYPES[18].items()},
        MessageType.PUBLISH_OK_DRAFT_18: RequestOk,
    },
    20: {kind: cls for cls, kind in _ENCODE_TYPES[20].items()},
}


def message_classes(version: Version) -> tuple[type[Message], ...]:
    """The message classes `version` defines."""
    return tuple(_ENCODE_TYPES[version.family])


def message_type(msg: Message, version: Version) -> int:
    """The wire Message Type of `msg` under `version`; `EncodeError` if that draft has no such message."""
    kind = _ENCODE_TYPES[version.family].get(type(msg))
    if kind is None:
        raise EncodeError(f"{type(msg).__name__} does not exist in draft-{version.value}")
    return kind


# -- Framing ----------------------------------------------------------------------------------------------------


def encode_message(msg: Message, version: Version) -> bytes:
    """`msg` framed as Type | Length (16) | Body for `version` (draft-21 §9).

    A body over 65535 bytes, a field the draft lacks, or a value out of range is an `EncodeError`.
    """
    kind = message_type(msg, version)
    # One byte of slack so an oversized body is seen as such rather than as a write error.
    buf = Buffer(capacity=MAX_MESSAGE_BODY_BYTES + 1)
    try:
        _PUSHERS[type(msg)](buf, msg, version, kind)
    except BufferWriteError:
        raise EncodeError(f"{type(msg).__name__} body is over {MAX_MESSAGE_BODY_BYTES} bytes") from None
    except UnicodeEncodeError as exc:
        raise EncodeError(f"{type(msg).__name__}: text is not encodable as UTF-8: {exc}") from None
    size = buf.tell()
    if size > MAX_MESSAGE_BODY_BYTES:
        raise EncodeError(f"{type(msg).__name__} body is {size} bytes, over {MAX_MESSAGE_BODY_BYTES}")
    return encode_varint(kind) + size.to_bytes(2, "big") + buf.data


def _message_class(kind: int, version: Version) -> type[Message]:
    cls = _DECODE_TYPES[version.family].get(kind)
    if cls is None:
        raise ProtocolViolation(_PV, f"unknown message type 0x{kind:x} for draft-{version.value}")
    return cls


def _frame_header(data: bytes | bytearray | memoryview, pos: int, version: Version) -> tuple[int, int, int] | None:
    """(message type, header length, body length) of the frame at `pos`, or None when the header is incomplete.

    The type is checked as soon as it is readable, so garbage is refused without waiting for a whole frame.
    """
    available = len(data) - pos
    if available < 1:
        return None
    type_size = varint_length_from_first_byte(data[pos])
    if available < type_size:
        return None
    kind, after = decode_varint(data, pos)
    _message_class(kind, version)
    if available < type_size + 2:
        return None
    return kind, type_size + 2, int.from_bytes(data[after : after + 2], "big")


def _decode_body(kind: int, body: bytes, version: Version) -> Message:
    cls = _message_class(kind, version)
    buf = Buffer(data=body)
    end = len(body)
    pending: InvalidFilter | None = None
    try:
        msg = _PULLERS[cls](buf, end, version, kind)
    except BufferReadError:
        raise ProtocolViolation(_PV, f"{cls.__name__} body ends before its fields do (length mismatch)") from None
    except InvalidFilter as exc:
        # Range filters only travel in messages whose Parameters are their last field, and the parameter codec
        # raises this with the block read whole: the framing check below still runs, and a session error wins.
        pending = exc
    left = end - buf.tell()
    if left:
        raise ProtocolViolation(_PV, f"{cls.__name__} has {left} bytes left over after its fields (length mismatch)")
    if pending is not None:
        raise pending
    return msg


def decode_message(data: bytes | bytearray | memoryview, version: Version) -> tuple[Message, int]:
    """Decode the first framed message in `data`: (message, bytes consumed) (draft-21 §9).

    Raises `NeedMoreData` when the frame is incomplete; `ProtocolViolation(PROTOCOL_VIOLATION)` for an unknown
    type, a type the draft does not define, or a body that does not match its length; `ProtocolViolation` with
    another code for field errors the draft names so (e.g. KEY_VALUE_FORMATTING_ERROR for an undecodable token).
    The one request-level error is `moq.wire.params.InvalidFilter` (a range filter whose deltas overflow): the
    request must be refused with REQUEST_ERROR INVALID_FILTER, the session stays up; the frame is `consumed` bytes
    long all the same, as `MessageReader` relies on.
    """
    header = _frame_header(data, 0, version)
    if header is None:
        raise NeedMoreData("control message header incomplete")
    kind, header_size, body_size = header
    total = header_size + body_size
    if len(data) < total:
        raise NeedMoreData(f"control message needs {total} bytes, have {len(data)}")
    return _decode_body(kind, bytes(data[header_size:total]), version), total


class MessageReader:
    """Incremental control-message parser for one stream (control or request), sans IO.

    `feed` appends bytes and returns every message they complete; `push` + `next_message` do the same one
    message at a time, for a caller that must know exactly where an error fell. Work is linear in the bytes fed
    however they are split: a frame header is parsed once, a body is decoded once, when it is all there, and
    consumed bytes are dropped only once they outweigh the rest. Beyond what one call hands it, the reader holds
    at most one partial frame (`MAX_FRAME_BYTES`).

    Errors: after a `ProtocolViolation` the reader is finished and raises it again on every later call (the
    session is closing). `InvalidFilter` (request-level, see `decode_message`) consumes its frame and leaves the
    reader usable; `feed` then drops the messages it had completed earlier in that call, which the draft's
    coalescing of failed REQUEST_UPDATEs permits (draft-21 §9.5); use `next_message` to keep them.
    """

    def __init__(self, version: Version) -> None:
        self.version = version
        self._buf = bytearray()
        self._pos = 0
        self._header: tuple[int, int, int] | None = None
        self._error: ProtocolViolation | None = None

    @property
    def buffered(self) -> int:
        """Bytes held of a frame not yet complete (0 at a message boundary: a FIN is clean only then)."""
        return len(self._buf) - self._pos

    def push(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes received on the stream."""
        self._compact()
        self._buf += data

    def next_message(self) -> Message | None:
        """The next complete message, or None until more bytes arrive."""
        if self._error is not None:
            raise self._error
        try:
            if self._header is None:
                self._header = _frame_header(self._buf, self._pos, self.version)
                if self._header is None:
                    return None
            kind, header_size, body_size = self._header
            start = self._pos + header_size
            stop = start + body_size
            if len(self._buf) < stop:
                return None
            self._pos = stop
            self._header = None
            return _decode_body(kind, bytes(self._buf[start:stop]), self.version)
        except ProtocolViolation as exc:
            self._error = exc
            raise

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Add `data`; return the messages it completes, in order."""
        self.push(data)
        messages: list[Message] = []
        while (msg := self.next_message()) is not None:
            messages.append(msg)
        self._compact()
        return messages

    def _compact(self) -> None:
        # Drop consumed bytes once they are at least half the buffer: the move costs no more than the bytes
        # dropped, so each byte is moved O(1) times overall, and what is kept is at most twice the partial frame.
        if self._pos and self._pos >= len(self._buf) - self._pos:
            del self._buf[: self._pos]
            self._pos = 0
