"""Error, status and reset codes (draft-22 §12-13, §16.11; draft-18 §"Error Codes").

Each registry is one IntEnum holding every code any supported draft defines; `codes_for()` says which of them a
given draft has. A code we do not know (including GREASE, 0x7f * N + 0x9D) is never a reason to close a session:
`interpret()` maps it to INTERNAL_ERROR, as the draft requires.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar

from moq.wire.version import Version


class SessionErrorCode(IntEnum):
    """Session termination codes: QUIC CONNECTION_CLOSE application code / WebTransport session close code."""

    NO_ERROR = 0x0
    INTERNAL_ERROR = 0x1
    UNAUTHORIZED = 0x2
    PROTOCOL_VIOLATION = 0x3
    INVALID_REQUEST_ID = 0x4
    DUPLICATE_TRACK_ALIAS = 0x5
    KEY_VALUE_FORMATTING_ERROR = 0x6
    INVALID_PATH = 0x8
    MALFORMED_PATH = 0x9
    GOAWAY_TIMEOUT = 0x10
    CONTROL_MESSAGE_TIMEOUT = 0x11
    DATA_STREAM_TIMEOUT = 0x12
    AUTH_TOKEN_CACHE_OVERFLOW = 0x13
    DUPLICATE_AUTH_TOKEN_ALIAS = 0x14
    VERSION_NEGOTIATION_FAILED = 0x15  # draft-18 only (removed in draft-20)
    MALFORMED_AUTH_TOKEN = 0x16
    UNKNOWN_AUTH_TOKEN_ALIAS = 0x17
    EXPIRED_AUTH_TOKEN = 0x18
    INVALID_AUTHORITY = 0x19
    MALFORMED_AUTHORITY = 0x1A
    TOO_MANY_REQUEST_UPDATES = 0x1B  # draft-19 and later


class RequestErrorCode(IntEnum):
    """REQUEST_ERROR codes."""

    INTERNAL_ERROR = 0x0
    UNAUTHORIZED = 0x1
    TIMEOUT = 0x2
    NOT_SUPPORTED = 0x3
    MALFORMED_AUTH_TOKEN = 0x4
    EXPIRED_AUTH_TOKEN = 0x5
    GOING_AWAY = 0x6
    EXCESSIVE_LOAD = 0x9
    DOES_NOT_EXIST = 0x10
    INVALID_RANGE = 0x11
    MALFORMED_TRACK = 0x12
    DUPLICATE_SUBSCRIPTION = 0x19  # draft-18 only
    UNINTERESTED = 0x20
    PREFIX_OVERLAP = 0x30
    NAMESPACE_TOO_LARGE = 0x31
    INVALID_JOINING_REQUEST_ID = 0x32  # draft-18 only (joining FETCH)
    UNSUPPORTED_EXTENSION = 0x33
    REDIRECT = 0x34
    CONFLICTING_FILTERS = 0x35  # draft-19 and later
    INVALID_FILTER = 0x36  # draft-19 and later


class PublishDoneCode(IntEnum):
    """PUBLISH_DONE status codes."""

    INTERNAL_ERROR = 0x0
    UNAUTHORIZED = 0x1
    TRACK_ENDED = 0x2
    SUBSCRIPTION_ENDED = 0x3  # draft-18 only (removed in draft-20)
    GOING_AWAY = 0x4
    TOO_FAR_BEHIND = 0x5
    EXPIRED = 0x6
    UPDATE_FAILED = 0x8
    EXCESSIVE_LOAD = 0x9
    MALFORMED_TRACK = 0x12


class StreamResetCode(IntEnum):
    """RESET_STREAM / STOP_SENDING application codes for MOQT streams (the same in drafts 18-22)."""

    INTERNAL_ERROR = 0x0
    CANCELLED = 0x1
    DELIVERY_TIMEOUT = 0x2
    SESSION_CLOSED = 0x3
    GOING_AWAY = 0x4
    TOO_FAR_BEHIND = 0x5
    UNKNOWN_OBJECT_STATUS = 0x6
    EXPIRED_AUTH_TOKEN = 0x7
    EXCESSIVE_LOAD = 0x9
    MALFORMED_TRACK = 0x12


class ObjectStatus(IntEnum):
    """Object status (draft-22 §11.1.1). 0x1 "does not exist" was removed before draft-18."""

    NORMAL = 0x0
    END_OF_GROUP = 0x3
    END_OF_TRACK = 0x4


_ONLY_18: dict[type[IntEnum], frozenset[int]] = {
    SessionErrorCode: frozenset({0x15}),
    RequestErrorCode: frozenset({0x19, 0x32}),
    PublishDoneCode: frozenset({0x3}),
    StreamResetCode: frozenset(),
}
_SINCE_19: dict[type[IntEnum], frozenset[int]] = {
    SessionErrorCode: frozenset({0x1B}),
    RequestErrorCode: frozenset({0x35, 0x36}),
    PublishDoneCode: frozenset(),
    StreamResetCode: frozenset(),
}

E = TypeVar("E", bound=IntEnum)


def codes_for(registry: type[E], version: Version) -> frozenset[E]:
    """The codes of `registry` that `version` defines."""
    excluded = _SINCE_19[registry] if version < 19 else _ONLY_18[registry]
    return frozenset(code for code in registry if code.value not in excluded)


def is_grease(value: int) -> bool:
    """True for the reserved GREASE values 0x7f * N + 0x9D (draft-22 §13)."""
    return value >= 0x9D and (value - 0x9D) % 0x7F == 0


def interpret(registry: type[E], value: int, version: Version) -> E:
    """`value` as a code of `registry` for `version`; unknown and GREASE values read as INTERNAL_ERROR."""
    try:
        code = registry(value)
    except ValueError:
        return registry["INTERNAL_ERROR"]
    if code not in codes_for(registry, version):
        return registry["INTERNAL_ERROR"]
    return code
