"""The structures every message is built from (draft-22 §8 / draft-21 §8; draft-18 §"Data Encoding").

All readers take an aioquic `Buffer` positioned at the structure and stop at `end` (the byte position the enclosing
length allows); they raise `ProtocolViolation` with the code the draft names. All writers append to a `Buffer`.
"""

from __future__ import annotations

import re
from enum import IntEnum

import msgspec
from aioquic.buffer import Buffer, BufferReadError

from moq.errors import EncodeError, ProtocolViolation
from moq.wire.codes import SessionErrorCode
from moq.wire.varint import MAX_VARINT, encode_varint, pull_varint, push_varint, varint_size

#: A Track Namespace may have at most this many fields (§8.7).
MAX_NAMESPACE_FIELDS = 32
#: A Full Track Name (namespace fields plus track name) may be at most this many bytes (§8.7).
MAX_FULL_TRACK_NAME_BYTES = 4096
#: A Reason Phrase may be at most this many bytes (§8.5).
MAX_REASON_PHRASE_BYTES = 1024
#: The bytes value of a Key-Value-Pair may be at most this long (§8.3).
MAX_KVP_VALUE_BYTES = 0xFFFF

_PV = SessionErrorCode.PROTOCOL_VIOLATION
_KVFE = SessionErrorCode.KEY_VALUE_FORMATTING_ERROR

TrackNamespace = tuple[bytes, ...]
"""A track namespace: 0 to 32 non-empty byte fields (§2.4.1)."""

KeyValue = tuple[int, int | bytes]
"""One Key-Value-Pair: an even type carries an int, an odd type carries bytes (§8.3)."""

Properties = tuple[KeyValue, ...]
"""A sequence of Key-Value-Pairs in ascending type order: setup options, track or object properties."""


class Location(msgspec.Struct, frozen=True, order=True, array_like=True):
    """A position in a track: group, then object; ordered lexicographically (§8.2)."""

    group: int
    object: int

    def next(self) -> Location:
        """The location of the next object in the same group."""
        return Location(self.group, self.object + 1)


class FullTrackName(msgspec.Struct, frozen=True, order=True):
    """A track's identity: namespace and name, compared byte for byte (§2.4)."""

    namespace: TrackNamespace
    name: bytes

    def __str__(self) -> str:
        return render_name(self.namespace, self.name)


class TokenAliasType(IntEnum):
    """Authorization token Alias Types (§8.9)."""

    DELETE = 0x0
    REGISTER = 0x1
    USE_ALIAS = 0x2
    USE_VALUE = 0x3


class Token(msgspec.Struct, frozen=True):
    """An Authorization Token structure (§8.9). Which fields are present depends on `alias_type`."""

    alias_type: TokenAliasType
    alias: int | None = None
    token_type: int | None = None
    value: bytes | None = None


# -- Location -------------------------------------------------------------------------------------------------


def pull_location(buf: Buffer) -> Location:
    """Read a Location {Group (vi64), Object (vi64)}."""
    return Location(pull_varint(buf), pull_varint(buf))


def push_location(buf: Buffer, location: Location) -> None:
    """Write a Location."""
    push_varint(buf, location.group)
    push_varint(buf, location.object)


# -- Length-prefixed bytes --------------------------------------------------------------------------------------


def pull_length(buf: Buffer, end: int, what: str) -> int:
    """Read a vi64 length and check that that many bytes remain before `end`."""
    length = pull_varint(buf)
    if length > end - buf.tell():
        raise ProtocolViolation(_PV, f"{what} length {length} runs past the end of its message")
    return length


def pull_length_bytes(buf: Buffer, end: int, what: str, limit: int | None = None) -> bytes:
    """Read Length (vi64) + bytes, refusing a length over `limit` with PROTOCOL_VIOLATION."""
    length = pull_length(buf, end, what)
    if limit is not None and length > limit:
        raise ProtocolViolation(_PV, f"{what} is {length} bytes, over the limit of {limit}")
    return buf.pull_bytes(length)


def push_length_bytes(buf: Buffer, data: bytes) -> None:
    """Write Length (vi64) + bytes."""
    push_varint(buf, len(data))
    buf.push_bytes(data)


# -- Reason phrase ----------------------------------------------------------------------------------------------


def pull_reason_phrase(buf: Buffer, end: int) -> str:
    """Read a Reason Phrase; over 1024 bytes is a PROTOCOL_VIOLATION (§8.5). Invalid UTF-8 is replaced."""
    raw = pull_length_bytes(buf, end, "reason phrase", MAX_REASON_PHRASE_BYTES)
    return raw.decode("utf-8", errors="replace")


def push_reason_phrase(buf: Buffer, reason: str) -> None:
    """Write a Reason Phrase; a phrase over 1024 bytes is a local error."""
    raw = reason.encode("utf-8")
    if len(raw) > MAX_REASON_PHRASE_BYTES:
        raise EncodeError(f"reason phrase is {len(raw)} bytes, over the limit of {MAX_REASON_PHRASE_BYTES}")
    push_length_bytes(buf, raw)


# -- Track namespace and name -----------------------------------------------------------------------------------


def pull_namespace(buf: Buffer, end: int) -> TrackNamespace:
    """Read a Track Namespace: at most 32 fields, none empty, 4096 bytes in all (§8.7)."""
    count = pull_varint(buf)
    if count > MAX_NAMESPACE_FIELDS:
        raise ProtocolViolation(_PV, f"track namespace has {count} fields, over the limit of {MAX_NAMESPACE_FIELDS}")
    fields = []
    total = 0
    for _ in range(count):
        length = pull_length(buf, end, "track namespace field")
        if length == 0:
            raise ProtocolViolation(_PV, "track namespace field is empty")
        total += length
        if total > MAX_FULL_TRACK_NAME_BYTES:
            raise ProtocolViolation(_PV, f"track namespace is over {MAX_FULL_TRACK_NAME_BYTES} bytes")
        fields.append(buf.pull_bytes(length))
    return tuple(fields)


def check_namespace(namespace: TrackNamespace) -> None:
    """Refuse, locally, a namespace the wire cannot carry."""
    if len(namespace) > MAX_NAMESPACE_FIELDS:
        raise EncodeError(f"track namespace has {len(namespace)} fields, over the limit of {MAX_NAMESPACE_FIELDS}")
    if any(len(field) == 0 for field in namespace):
        raise EncodeError("track namespace fields must not be empty")
    if sum(len(field) for field in namespace) > MAX_FULL_TRACK_NAME_BYTES:
        raise EncodeError(f"track namespace is over {MAX_FULL_TRACK_NAME_BYTES} bytes")


def push_namespace(buf: Buffer, namespace: TrackNamespace) -> None:
    """Write a Track Namespace."""
    check_namespace(namespace)
    push_varint(buf, len(namespace))
    for field in namespace:
        push_length_bytes(buf, field)


def pull_track_name(buf: Buffer, end: int, namespace: TrackNamespace) -> bytes:
    """Read a Track Name (Length + bytes, may be empty); the Full Track Name must stay within 4096 bytes."""
    budget = MAX_FULL_TRACK_NAME_BYTES - sum(len(field) for field in namespace)
    length = pull_length(buf, end, "track name")
    if length > budget:
        raise ProtocolViolation(_PV, f"full track name is over {MAX_FULL_TRACK_NAME_BYTES} bytes")
    return buf.pull_bytes(length)


def push_track_name(buf: Buffer, namespace: TrackNamespace, name: bytes) -> None:
    """Write a Track Name, refusing locally a Full Track Name over 4096 bytes."""
    if sum(len(field) for field in namespace) + len(name) > MAX_FULL_TRACK_NAME_BYTES:
        raise EncodeError(f"full track name is over {MAX_FULL_TRACK_NAME_BYTES} bytes")
    push_length_bytes(buf, name)


def namespace_has_prefix(namespace: TrackNamespace, prefix: TrackNamespace) -> bool:
    """True when `prefix` matches `namespace` field by field (§7: (foo) matches (foo, bar); (foob) does not)."""
    return len(prefix) <= len(namespace) and namespace[: len(prefix)] == prefix


# -- Key-Value-Pairs --------------------------------------------------------------------------------------------


def pull_key_values(buf: Buffer, end: int) -> Properties:
    """Read Key-Value-Pairs with delta-encoded types until `end` (§8.3).

    A type sum past 2^64-1 or a bytes value over 65535 is a PROTOCOL_VIOLATION; a pair cut by `end` is a
    KEY_VALUE_FORMATTING_ERROR (its serialization does not match its type).
    """
    pairs: list[KeyValue] = []
    kind = 0
    try:
        while buf.tell() < end:
            kind += pull_varint(buf)
            if kind > MAX_VARINT:
                raise ProtocolViolation(_PV, "key-value type delta overflows 2^64-1")
            if kind & 1:
                length = pull_varint(buf)
                if length > MAX_KVP_VALUE_BYTES:
                    raise ProtocolViolation(_PV, f"key-value length {length} is over {MAX_KVP_VALUE_BYTES}")
                if length > end - buf.tell():
                    raise ProtocolViolation(_KVFE, f"key-value 0x{kind:x} runs past its enclosing length")
                pairs.append((kind, buf.pull_bytes(length)))
            else:
                pairs.append((kind, pull_varint(buf)))
    except BufferReadError:
        raise ProtocolViolation(_KVFE, "key-value pairs truncated") from None
    if buf.tell() != end:
        raise ProtocolViolation(_KVFE, "key-value pair runs past its enclosing length")
    return tuple(pairs)


def push_key_values(buf: Buffer, pairs: Properties) -> None:
    """Write Key-Value-Pairs, sorted by type (stable, so repeated types keep their order), types delta-encoded."""
    previous = 0
    for kind, value in sorted(pairs, key=_kv_type):
        push_varint(buf, kind - previous)
        previous = kind
        if kind & 1:
            if not isinstance(value, bytes):
                raise EncodeError(f"key-value type 0x{kind:x} is odd and must carry bytes")
            if len(value) > MAX_KVP_VALUE_BYTES:
                raise EncodeError(f"key-value 0x{kind:x} is {len(value)} bytes, over {MAX_KVP_VALUE_BYTES}")
            push_length_bytes(buf, value)
        else:
            if not isinstance(value, int) or isinstance(value, bool):
                raise EncodeError(f"key-value type 0x{kind:x} is even and must carry an integer")
            push_varint(buf, value)


def key_values_size(pairs: Properties) -> int:
    """Bytes `push_key_values` writes for `pairs`."""
    size = 0
    previous = 0
    for kind, value in sorted(pairs, key=_kv_type):
        size += varint_size(kind - previous)
        previous = kind
        if isinstance(value, bytes):
            size += varint_size(len(value)) + len(value)
        else:
            size += varint_size(value)
    return size


def encode_key_values(pairs: Properties) -> bytes:
    """Key-Value-Pairs as bytes."""
    buf = Buffer(capacity=key_values_size(pairs))
    push_key_values(buf, pairs)
    return buf.data


def _kv_type(pair: KeyValue) -> int:
    return pair[0]


def get_property(pairs: Properties, kind: int) -> int | bytes | None:
    """The value of the first pair of type `kind`, or None."""
    for k, value in pairs:
        if k == kind:
            return value
    return None


# -- Tokens -----------------------------------------------------------------------------------------------------


def decode_token(data: bytes) -> Token:
    """Parse a Token structure (§8.9); anything undecodable is a KEY_VALUE_FORMATTING_ERROR."""
    buf = Buffer(data=data)
    try:
        alias_type = pull_varint(buf)
        if alias_type == TokenAliasType.DELETE or alias_type == TokenAliasType.USE_ALIAS:
            token = Token(TokenAliasType(alias_type), alias=pull_varint(buf))
        elif alias_type == TokenAliasType.REGISTER:
            alias = pull_varint(buf)
            token = Token(TokenAliasType.REGISTER, alias, pull_varint(buf), buf.pull_bytes(len(data) - buf.tell()))
        elif alias_type == TokenAliasType.USE_VALUE:
            kind = pull_varint(buf)
            token = Token(TokenAliasType.USE_VALUE, None, kind, buf.pull_bytes(len(data) - buf.tell()))
        else:
            raise ProtocolViolation(_KVFE, f"unknown token alias type {alias_type}")
    except BufferReadError:
        raise ProtocolViolation(_KVFE, "token structure truncated") from None
    if not buf.eof():
        raise ProtocolViolation(_KVFE, "token structure has trailing bytes")
    return token


def encode_token(token: Token) -> bytes:
    """Serialize a Token structure (§8.9); a token missing a field its alias type needs is a local error."""
    out = bytearray(encode_varint(token.alias_type))
    needs_alias = token.alias_type != TokenAliasType.USE_VALUE
    needs_value = token.alias_type in (TokenAliasType.REGISTER, TokenAliasType.USE_VALUE)
    if needs_alias:
        if token.alias is None:
            raise EncodeError(f"token {token.alias_type.name} needs an alias")
        out += encode_varint(token.alias)
    if needs_value:
        if token.token_type is None or token.value is None:
            raise EncodeError(f"token {token.alias_type.name} needs a type and a value")
        out += encode_varint(token.token_type)
        out += token.value
    return bytes(out)


# -- Human-readable names (§8.8) --------------------------------------------------------------------------------

_LITERAL = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_RENDERED = tuple(chr(b) if b in _LITERAL else f".{b:02x}" for b in range(256))
_FIELD_RE = re.compile(r"(?:[a-zA-Z0-9_]|\.[0-9a-f]{2})*")


def render_field(field: bytes) -> str:
    """One namespace field or track name in the §8.8 form: [a-zA-Z0-9_] verbatim, every other byte as .xx."""
    return "".join([_RENDERED[b] for b in field])


def render_name(namespace: TrackNamespace, name: bytes | None = None) -> str:
    """The §8.8 rendering: fields joined by '-', then '--' and the track name (when there is one)."""
    text = "-".join(render_field(field) for field in namespace)
    if name is None:
        return text
    return f"{text}--{render_field(name)}"


def parse_field(text: str) -> bytes:
    """Invert `render_field`, refusing any form but the canonical one (§8.8.1): ValueError otherwise."""
    if _FIELD_RE.fullmatch(text) is None:
        raise ValueError(f"not a canonical rendered name: {text!r}")
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == ".":
            byte = int(text[i + 1 : i + 3], 16)
            if byte in _LITERAL:
                raise ValueError(f"byte {chr(byte)!r} must be written literally, not as .{byte:02x}")
            out.append(byte)
            i += 3
        else:
            out.append(ord(text[i]))
            i += 1
    return bytes(out)


def parse_name(text: str) -> tuple[TrackNamespace, bytes | None]:
    """Invert `render_name`: (namespace, track name or None when the text has no '--')."""
    ns_text, sep, name_text = text.partition("--")
    namespace = tuple(parse_field(part) for part in ns_text.split("-")) if ns_text else ()
    if any(len(field) == 0 for field in namespace):
        raise ValueError(f"empty namespace field in {text!r}")
    return namespace, (parse_field(name_text) if sep else None)
