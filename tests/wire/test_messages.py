"""Control messages: round trips for every message and draft, incremental parsing, limits, and golden bytes.

Golden bytes are written by hand from the message figures of draft-ietf-moq-transport-21 §9 and draft-18
§"Control Messages", so the encoding is pinned to the drafts and not only self-consistent.
"""

from __future__ import annotations

import contextlib
import itertools
import random

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import moq.wire.messages as messages_module
from moq.errors import EncodeError, NeedMoreData, ProtocolViolation
from moq.wire.codes import RequestErrorCode, SessionErrorCode
from moq.wire.messages import (
    MAX_FRAME_BYTES,
    MAX_GOAWAY_URI_BYTES,
    Fetch,
    FetchOk,
    FetchType,
    GoAway,
    Message,
    MessageReader,
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
    decode_message,
    encode_message,
    message_classes,
    message_type,
)
from moq.wire.params import InvalidFilter
from moq.wire.primitives import Location, Token, TokenAliasType, encode_token
from moq.wire.varint import encode_varint
from moq.wire.version import Version
from tests.wire.strategies import VARINT_EDGES, message_of, messages, varints

PV = SessionErrorCode.PROTOCOL_VIOLATION
KVFE = SessionErrorCode.KEY_VALUE_FORMATTING_ERROR
ALL_VERSIONS = list(Version)
DRAFT_20_FAMILY = [Version.DRAFT_20, Version.DRAFT_21, Version.DRAFT_22]


def frame(kind: int, body: bytes) -> bytes:
    """A control message frame built by hand: Type (vi64) | Length (16) | Body (draft-21 §9, Figure 4)."""
    return encode_varint(kind) + len(body).to_bytes(2, "big") + body


def round_trip(msg: Message, version: Version) -> None:
    data = encode_message(msg, version)
    decoded, used = decode_message(data, version)
    assert decoded == msg
    assert used == len(data)
    assert type(decoded) is type(msg)


def refused(data: bytes, version: Version, code: int = PV) -> ProtocolViolation:
    with pytest.raises(ProtocolViolation) as info:
        decode_message(data, version)
    assert info.value.code == code
    # A stream reader refuses it the same way.
    with pytest.raises(ProtocolViolation) as again:
        MessageReader(version).feed(data)
    assert again.value.code == code
    return info.value


# -- Round trips --------------------------------------------------------------------------------------------------

CASES = [(version, cls) for version in ALL_VERSIONS for cls in message_classes(version)]


@pytest.mark.parametrize(("version", "cls"), CASES, ids=[f"d{v.value}-{c.__name__}" for v, c in CASES])
@given(data=st.data())
def test_every_message_round_trips(version: Version, cls: type[Message], data: st.DataObject) -> None:
    round_trip(data.draw(message_of(cls, version)), version)


def test_message_tables_per_draft() -> None:
    assert PublishStateNotify not in message_classes(Version.DRAFT_18)
    assert PublishSkipped not in message_classes(Version.DRAFT_18)
    assert PublishBlocked in message_classes(Version.DRAFT_18)
    for version in DRAFT_20_FAMILY:
        assert PublishStateNotify in message_classes(version)
        assert PublishSkipped in message_classes(version)
        assert PublishBlocked not in message_classes(version)
    assert len(message_classes(Version.DRAFT_18)) == 18
    assert len(message_classes(Version.DRAFT_22)) == 19


def _varint_messages(value: int, version: Version) -> list[Message]:
    """One message per varint-carrying field position, all holding `value`."""
    out: list[Message] = [
        Subscribe(value, (b"a",), b"t"),
        RequestUpdate(value),
        SubscribeOk(value, properties=((2, value), (0x11C, value))),
        Publish(value, (b"a",), b"t", value),
        PublishDone(value, value, "r"),
        FetchOk(True, Location(value, value)),
        TrackStatus(value, (), b""),
        PublishNamespace(value, (b"a",)),
        SubscribeNamespace(value, ()),
        SubscribeTracks(value, (b"a", b"b")),
        RequestError(value if value != RequestErrorCode.REDIRECT else 0, value, "x"),
        GoAway("", value, value if version.family == 18 else None),
        Setup.create(max_auth_token_cache_size=value, extra=((0x9D + 0x7F, value),)),
    ]
    if version.family == 18:
        standalone = Location(value, value), Location(value, 0)
        out.append(Fetch(value, (b"a",), b"t", fetch_type=FetchType.STANDALONE, start=standalone[0], end=standalone[1]))
        out.append(Fetch(value, fetch_type=FetchType.RELATIVE_JOINING, joining_request_id=value, joining_start=value))
    else:
        out.append(Fetch(value, (b"a",), b"t"))
    return out


@given(varints)
@example(0)
@example(127)
@example(128)
@example(2**14 - 1)
@example(2**14)
@example(2**21 - 1)
@example(2**21)
@example(2**56 - 1)
@example(2**56)
@example(2**64 - 1)
def test_varint_edges_in_every_field(value: int) -> None:
    for version in ALL_VERSIONS:
        for msg in _varint_messages(value, version):
            round_trip(msg, version)


def test_varint_edges_cover_every_length() -> None:
    sizes = {len(encode_varint(value)) for value in VARINT_EDGES}
    assert sizes == set(range(1, 10))


def test_out_of_range_varints_are_encode_errors() -> None:
    with pytest.raises(EncodeError):
        encode_message(Subscribe(2**64, (), b""), Version.DRAFT_22)
    with pytest.raises(EncodeError):
        encode_message(PublishDone(-1), Version.DRAFT_22)


# -- Golden bytes (hand-written from the draft figures) ------------------------------------------------------------


GOLDEN: list[tuple[str, list[Version], Message, str]] = [
    # SETUP 0x2F00 -> vi64 "af 00"; Length 6; PATH (0x01, odd: Length + bytes) "/moq" (§9.1, §9.1.2, §8.3).
    ("setup-path", ALL_VERSIONS, Setup.create(path="/moq"), "af00 0006 01 04 2f6d6f71"),
    # PATH 0x01, MAX_AUTH_TOKEN_CACHE_SIZE 0x04 = 100 (delta 3), MOQT_IMPLEMENTATION 0x07 = "x" (delta 3).
    (
        "setup-three-options",
        ALL_VERSIONS,
        Setup.create(path="/moq", max_auth_token_cache_size=100, implementation="x"),
        "af00 000b 01 04 2f6d6f71 03 64 03 01 78",
    ),
    # An empty SETUP: Setup Options span the whole (empty) body.
    ("setup-empty", ALL_VERSIONS, Setup(), "af00 0000"),
    # SUBSCRIBE 0x3: Request ID 0, Namespace (2 fields "ex","live"), Track Name "video", 0 parameters (§9.6).
    (
        "subscribe-no-params",
        ALL_VERSIONS,
        Subscribe(0, (b"ex", b"live"), b"video"),
        "03 0011 00 02 02 6578 04 6c697665 05 766964656f 00",
    ),
    # SUBSCRIBE with the largest Request ID: the 9-byte varint "ff" + 8 bytes.
    (
        "subscribe-max-request-id",
        ALL_VERSIONS,
        Subscribe(2**64 - 1, (), b""),
        "03 000c ffffffffffffffffff 00 00 00",
    ),
    # REQUEST_ERROR 0x5: DOES_NOT_EXIST 0x10, Retry Interval 0, Reason "no" (§9.4.2).
    (
        "request-error",
        ALL_VERSIONS,
        RequestError(RequestErrorCode.DOES_NOT_EXIST, 0, "no"),
        "05 0005 10 00 02 6e6f",
    ),
    # REQUEST_ERROR REDIRECT 0x34 with Redirect {Connect URI "", Namespace ("a"), Track Name ""} (§9.4.1).
    (
        "request-error-redirect",
        ALL_VERSIONS,
        RequestError(RequestErrorCode.REDIRECT, 1, "", Redirect("", (b"a",), b"")),
        "05 0008 34 01 00 00 01 01 61 00",
    ),
    # GOAWAY 0x10: New Session URI "" and Timeout 1000 (2-byte varint 83 e8) (§9.2).
    ("goaway", ALL_VERSIONS, GoAway("", 1000), "10 0003 00 83e8"),
    # Draft-18 GOAWAY with its trailing Request ID 4.
    ("goaway-18-request-id", [Version.DRAFT_18], GoAway("", 1000, 4), "10 0004 00 83e8 04"),
    # GOAWAY with a URI.
    ("goaway-uri", ALL_VERSIONS, GoAway("moqt://b", 0), "10 000a 08 6d6f71743a2f2f62 00"),
    # REQUEST_UPDATE 0x2: Request ID 6, no parameters (§9.5).
    ("request-update", ALL_VERSIONS, RequestUpdate(6), "02 0002 06 00"),
    # REQUEST_OK 0x7: no parameters, no Track Properties (§9.3).
    ("request-ok", ALL_VERSIONS, RequestOk(), "07 0001 00"),
    # TRACK_STATUS_OK: Track Property DEFAULT_PUBLISHER_PRIORITY (0x0E, even: one varint) = 64.
    ("request-ok-properties", ALL_VERSIONS, RequestOk(properties=((0x0E, 64),)), "07 0003 00 0e 40"),
    # SUBSCRIBE_OK 0x4: Track Alias 5, no parameters, Track Property 0x0B (odd) = "ab" (§9.7).
    (
        "subscribe-ok",
        ALL_VERSIONS,
        SubscribeOk(5, properties=((0x0B, b"ab"),)),
        "04 0006 05 00 0b 02 6162",
    ),
    # PUBLISH 0x1D: Request ID 1, Namespace ("a"), Name "t", Track Alias 2, no parameters, no properties (§9.8).
    ("publish", ALL_VERSIONS, Publish(1, (b"a",), b"t", 2), "1d 0008 01 01 01 61 01 74 02 00"),
    # PUBLISH_DONE 0xB: TRACK_ENDED 0x2, Stream Count 0, Reason "" (§9.9).
    ("publish-done", ALL_VERSIONS, PublishDone(2, 0, ""), "0b 0003 02 00 00"),
    # PUBLISH_DONE with the "unknown" Stream Count 2^64-1.
    ("publish-done-unknown-count", ALL_VERSIONS, PublishDone(2, 2**64 - 1, ""), "0b 000b 02 ffffffffffffffffff 00"),
    # PUBLISH_STATE_NOTIFY 0x22 (20+): no parameters (§9.10).
    ("publish-state-notify", DRAFT_20_FAMILY, PublishStateNotify(), "22 0001 00"),
    # FETCH 0x16 (20+): Request ID 2, Namespace ("a"), Name "t", no parameters (§9.11).
    ("fetch", DRAFT_20_FAMILY, Fetch(2, (b"a",), b"t"), "16 0007 02 01 01 61 01 74 00"),
    # Draft-18 standalone FETCH: Request ID 2, Fetch Type 1, ("a"), "t", Start {0,0}, End {5,0}, 0 parameters.
    (
        "fetch-18-standalone",
        [Version.DRAFT_18],
        Fetch(2, (b"a",), b"t", fetch_type=FetchType.STANDALONE, start=Location(0, 0), end=Location(5, 0)),
        "16 000c 02 01 01 01 61 01 74 00 00 05 00 00",
    ),
    # Draft-18 relative joining FETCH: Request ID 4, Fetch Type 2, Joining Request ID 0, Joining Start 1.
    (
        "fetch-18-joining",
        [Version.DRAFT_18],
        Fetch(4, fetch_type=FetchType.RELATIVE_JOINING, joining_request_id=0, joining_start=1),
        "16 0005 04 02 00 01 00",
    ),
    # FETCH_OK 0x18: End Of Track 1 (8 bits), End Location {5,3}, no parameters, property 0x0E = 64 (§9.12).
    ("fetch-ok", ALL_VERSIONS, FetchOk(True, Location(5, 3), properties=((0x0E, 64),)), "18 0006 01 05 03 00 0e 40"),
    # TRACK_STATUS 0xD: same layout as SUBSCRIBE (§9.13).
    ("track-status", ALL_VERSIONS, TrackStatus(8, (b"a",), b""), "0d 0006 08 01 01 61 00 00"),
    # PUBLISH_NAMESPACE 0x6: Request ID 1, Namespace ("a","b"), no parameters (§9.14).
    ("publish-namespace", ALL_VERSIONS, PublishNamespace(1, (b"a", b"b")), "06 0007 01 02 01 61 01 62 00"),
    # SUBSCRIBE_NAMESPACE 0x50 with the empty (zero-field) prefix (§9.15).
    ("subscribe-namespace", ALL_VERSIONS, SubscribeNamespace(0, ()), "50 0003 00 00 00"),
    # SUBSCRIBE_TRACKS 0x51 (§9.18).
    ("subscribe-tracks", ALL_VERSIONS, SubscribeTracks(2, (b"a",)), "51 0005 02 01 01 61 00"),
    # NAMESPACE 0x8 and NAMESPACE_DONE 0xE: Track Namespace Suffix ("x") (§9.16, §9.17).
    ("namespace", ALL_VERSIONS, Namespace((b"x",)), "08 0003 01 01 78"),
    ("namespace-done", ALL_VERSIONS, NamespaceDone((b"x",)), "0e 0003 01 01 78"),
    # PUBLISH_SKIPPED 0xF (20+) and draft-18's PUBLISH_BLOCKED 0xF: suffix ("x"), Track Name "t" (§9.19).
    ("publish-skipped", DRAFT_20_FAMILY, PublishSkipped((b"x",), b"t"), "0f 0005 01 01 78 01 74"),
    ("publish-blocked", [Version.DRAFT_18], PublishBlocked((b"x",), b"t"), "0f 0005 01 01 78 01 74"),
]


@pytest.mark.parametrize(("name", "versions", "msg", "hex_bytes"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_bytes(name: str, versions: list[Version], msg: Message, hex_bytes: str) -> None:
    expected = bytes.fromhex(hex_bytes.replace(" ", ""))
    for version in versions:
        assert encode_message(msg, version) == expected
        assert decode_message(expected, version) == (msg, len(expected))


def test_draft_18_reads_0x1e_publish_ok_as_request_ok() -> None:
    data = frame(0x1E, bytes([0]))
    assert decode_message(data, Version.DRAFT_18) == (RequestOk(), len(data))
    # ... and always writes REQUEST_OK as 0x07.
    assert encode_message(RequestOk(), Version.DRAFT_18)[0] == 0x07
    for version in DRAFT_20_FAMILY:
        assert "0x1e" in refused(data, version).reason


def test_non_minimal_varints_are_accepted() -> None:
    # SETUP's type as a 3-byte varint, and Request ID 0 as "80 00" (draft-21 §8.1: any length is valid).
    data = bytes.fromhex("c02f00 0000")
    assert decode_message(data, Version.DRAFT_22) == (Setup(), 5)
    body = bytes.fromhex("8000 00 00 00")
    assert decode_message(frame(0x03, body), Version.DRAFT_22)[0] == Subscribe(0, (), b"")


# -- Version-specific fields ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", DRAFT_20_FAMILY)
def test_draft_18_only_fields_are_refused_for_20_family(version: Version) -> None:
    with pytest.raises(EncodeError):
        encode_message(GoAway("", 0, request_id=2), version)
    for bad in (
        Fetch(0, (b"a",), b"t", fetch_type=FetchType.STANDALONE),
        Fetch(0, (b"a",), b"t", start=Location(0, 0)),
        Fetch(0, joining_request_id=0, joining_start=0),
    ):
        with pytest.raises(EncodeError):
            encode_message(bad, version)
    with pytest.raises(EncodeError):
        message_type(PublishBlocked((), b""), version)
    with pytest.raises(EncodeError):
        encode_message(PublishBlocked((), b""), version)


def test_draft_20_only_messages_are_refused_for_18() -> None:
    for msg in (PublishStateNotify(), PublishSkipped((), b"")):
        with pytest.raises(EncodeError):
            encode_message(msg, Version.DRAFT_18)
    # 0x22 does not exist in draft-18.
    assert "0x22" in refused(frame(0x22, b"\x00"), Version.DRAFT_18).reason


def test_draft_18_fetch_shapes() -> None:
    v = Version.DRAFT_18
    for bad in (
        Fetch(0, (b"a",), b"t"),  # no fetch type
        Fetch(0, (b"a",), b"t", fetch_type=FetchType.STANDALONE, start=Location(0, 0)),  # no end
        Fetch(0, fetch_type=FetchType.ABSOLUTE_JOINING, joining_request_id=0),  # no joining start
        Fetch(0, (b"a",), b"", fetch_type=FetchType.ABSOLUTE_JOINING, joining_request_id=0, joining_start=0),
        Fetch(
            0,
            (b"a",),
            b"t",
            fetch_type=FetchType.STANDALONE,
            start=Location(0, 0),
            end=Location(1, 0),
            joining_start=0,
        ),
    ):
        with pytest.raises(EncodeError):
            encode_message(bad, v)
    # Fetch Type other than 1, 2, 3: PROTOCOL_VIOLATION (draft-18 §"FETCH").
    for fetch_type in (0, 4):
        assert "Fetch Type" in refused(frame(0x16, bytes([2, fetch_type, 0, 0, 0])), v).reason


def test_draft_18_goaway_request_id_is_optional() -> None:
    v = Version.DRAFT_18
    assert decode_message(frame(0x10, bytes([0, 0])), v)[0] == GoAway("", 0, None)
    assert decode_message(frame(0x10, bytes([0, 0, 7])), v)[0] == GoAway("", 0, 7)
    # In 20+ the same trailing byte is a length mismatch.
    refused(frame(0x10, bytes([0, 0, 7])), Version.DRAFT_22)


def test_message_type_per_draft() -> None:
    assert message_type(Setup(), Version.DRAFT_22) == 0x2F00
    assert message_type(PublishSkipped((), b""), Version.DRAFT_22) == 0x0F
    assert message_type(PublishBlocked((), b""), Version.DRAFT_18) == 0x0F
    assert message_type(PublishStateNotify(), Version.DRAFT_20) == 0x22
    assert message_type(RequestOk(), Version.DRAFT_18) == 0x07


# -- Limits and malformed input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_namespace_limits(version: Version) -> None:
    field = b"\x01a"
    # 33 fields in a SUBSCRIBE namespace, in a SUBSCRIBE_NAMESPACE prefix and in a NAMESPACE suffix.
    too_many = encode_varint(33) + field * 33
    refused(frame(0x03, b"\x00" + too_many + b"\x00\x00"), version)
    refused(frame(0x50, b"\x00" + too_many + b"\x00"), version)
    refused(frame(0x08, too_many), version)
    with pytest.raises(EncodeError):
        encode_message(Subscribe(0, tuple([b"a"] * 33), b""), version)
    # 32 fields are fine.
    ok = Subscribe(0, tuple([b"a"] * 32), b"")
    round_trip(ok, version)
    # An empty field.
    refused(frame(0x03, bytes([0, 2, 1, 0x61, 0, 0, 0])), version)
    with pytest.raises(EncodeError):
        encode_message(PublishNamespace(0, (b"a", b"")), version)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_full_track_name_limit(version: Version) -> None:
    namespace = (b"n" * 2048,)
    exact = Subscribe(0, namespace, b"t" * 2048)
    round_trip(exact, version)
    body = b"\x00" + encode_varint(1) + encode_varint(2048) + b"n" * 2048 + encode_varint(2049) + b"t" * 2049 + b"\x00"
    refused(frame(0x03, body), version)
    with pytest.raises(EncodeError):
        encode_message(Subscribe(0, namespace, b"t" * 2049), version)
    # The same limit binds PUBLISH_SKIPPED's suffix + name and a Redirect's target.
    with pytest.raises(EncodeError):
        encode_message(RequestError(RequestErrorCode.REDIRECT, 0, "", Redirect("", namespace, b"t" * 2049)), version)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_reason_phrase_limit(version: Version) -> None:
    round_trip(RequestError(0, 0, "r" * 1024), version)
    with pytest.raises(EncodeError):
        encode_message(RequestError(0, 0, "r" * 1025), version)
    with pytest.raises(EncodeError):
        encode_message(PublishDone(0, 0, "é" * 513), version)
    refused(frame(0x05, b"\x00\x00" + encode_varint(1025) + b"r" * 1025), version)
    refused(frame(0x0B, b"\x00\x00" + encode_varint(1025) + b"r" * 1025), version)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_goaway_uri_limit(version: Version) -> None:
    round_trip(GoAway("u" * MAX_GOAWAY_URI_BYTES, 0), version)
    with pytest.raises(EncodeError):
        encode_message(GoAway("u" * (MAX_GOAWAY_URI_BYTES + 1), 0), version)
    body = encode_varint(MAX_GOAWAY_URI_BYTES + 1) + b"u" * (MAX_GOAWAY_URI_BYTES + 1) + b"\x00"
    refused(frame(0x10, body), version)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_fetch_ok_end_of_track_must_be_0_or_1(version: Version) -> None:
    for flag in (0, 1):
        assert decode_message(frame(0x18, bytes([flag, 0, 0, 0])), version)[0] == FetchOk(flag == 1, Location(0, 0))
    for flag in (2, 0xFF):
        assert "End Of Track" in refused(frame(0x18, bytes([flag, 0, 0, 0])), version).reason


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_length_mismatch_both_ways(version: Version) -> None:
    good = encode_message(Subscribe(0, (b"a",), b"t"), version)
    body = good[3:]
    # Length says more than the fields use: bytes left over.
    assert "left over" in refused(frame(0x03, body + b"\x00"), version).reason
    # Length says less than the fields need: the body ends early.
    assert "ends before" in refused(frame(0x03, body[:-1]), version).reason
    # A field length running past the body.
    refused(frame(0x08, bytes([1, 5, 0x61])), version)
    # Messages without a trailing field of their own still catch a short body.
    refused(frame(0x10, b"\x00"), version)
    refused(frame(0x18, bytes([1, 0])), version)
    refused(frame(0x05, b""), version)


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("kind", [0x00, 0x01, 0x09, 0x20, 0x21, 0x40, 0x41, 0x7F, 0x2F01, 2**64 - 1])
def test_unknown_message_type(version: Version, kind: int) -> None:
    violation = refused(frame(kind, b""), version)
    assert f"0x{kind:x}" in violation.reason
    # The type is refused as soon as it is readable, without waiting for the body.
    with pytest.raises(ProtocolViolation):
        decode_message(encode_varint(kind), version)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_request_error_redirect_presence(version: Version) -> None:
    with pytest.raises(EncodeError):
        encode_message(RequestError(RequestErrorCode.REDIRECT, 0, ""), version)
    with pytest.raises(EncodeError):
        encode_message(RequestError(0, 0, "", Redirect()), version)
    # REDIRECT without the structure: the body ends early.
    refused(frame(0x05, bytes([0x34, 0, 0])), version)


def test_body_over_65535_bytes_is_an_encode_error() -> None:
    big = ((1, b"x" * 40000), (3, b"y" * 40000))
    with pytest.raises(EncodeError):
        encode_message(SubscribeOk(0, properties=big), Version.DRAFT_22)
    # Exactly 65535 bytes is fine: alias 0, 0 parameters, then a single property filling the rest.
    value = b"z" * (0xFFFF - 2 - 1 - 3)
    msg = SubscribeOk(0, properties=((1, value),))
    data = encode_message(msg, Version.DRAFT_22)
    assert data[1:3] == b"\xff\xff"
    assert decode_message(data, Version.DRAFT_22) == (msg, len(data))


# -- SETUP options --------------------------------------------------------------------------------------------------


def test_setup_typed_options() -> None:
    token = Token(TokenAliasType.USE_VALUE, None, 0, b"secret")
    setup = Setup.create(
        path="/live?x=1",
        authority="relay.example:443",
        authorization_tokens=[token, Token(TokenAliasType.DELETE, 3)],
        max_auth_token_cache_size=4096,
        max_filter_ranges=8,
        implementation="moq-py 0.1",
        max_request_updates=2,
        extra=((0x9D, b"grease"),),
    )
    for version in ALL_VERSIONS:
        decoded = decode_message(encode_message(setup, version), version)[0]
        assert isinstance(decoded, Setup)
        assert decoded.path == "/live?x=1"
        assert decoded.authority == "relay.example:443"
        assert decoded.authorization_tokens == (token, Token(TokenAliasType.DELETE, 3))
        assert decoded.max_auth_token_cache_size == 4096
        assert decoded.max_filter_ranges == 8
        assert decoded.implementation == "moq-py 0.1"
        assert decoded.max_request_updates == 2
        assert decoded.option(0x9D) == b"grease"
    empty = Setup()
    assert (empty.path, empty.authority, empty.implementation) == (None, None, None)
    assert (empty.max_auth_token_cache_size, empty.max_filter_ranges, empty.max_request_updates) == (0, 0, 0)
    assert empty.authorization_tokens == ()


def test_setup_unknown_options_may_repeat_known_ones_may_not() -> None:
    # The unknown (GREASE) option 0x9D twice, then unknown even option 0xA0 (delta 3): kept, in order.
    setup = Setup(((0x9D, b"a"), (0x9D, b"b"), (0xA0, 5)))
    data = frame(0x2F00, bytes.fromhex("809d 01 61 00 01 62 03 05"))
    for version in ALL_VERSIONS:
        assert encode_message(setup, version) == data
        assert decode_message(data, version)[0] == setup
    # Two PATH options: refused on both sides.
    for version in ALL_VERSIONS:
        refused(frame(0x2F00, bytes.fromhex("01 01 61 00 01 62")), version)
        with pytest.raises(EncodeError):
            encode_message(Setup(((1, b"a"), (1, b"b"))), version)
    # Two AUTHORIZATION_TOKENs are allowed (§9.1.4: "one or more tokens").
    token = encode_token(Token(TokenAliasType.USE_ALIAS, 1))
    round_trip(Setup(((3, token), (3, token))), Version.DRAFT_22)
    # MAX_FILTER_RANGES (0x06) twice: refused in 20+, an unknown option (so allowed) in draft-18.
    doubled = Setup(((SetupOption.MAX_FILTER_RANGES, 1), (SetupOption.MAX_FILTER_RANGES, 2)))
    round_trip(doubled, Version.DRAFT_18)
    with pytest.raises(EncodeError):
        encode_message(doubled, Version.DRAFT_22)
    refused(frame(0x2F00, bytes.fromhex("06 01 00 02")), Version.DRAFT_22)


def test_setup_undecodable_token_is_a_formatting_error() -> None:
    # AUTHORIZATION_TOKEN with Alias Type 9 (undefined) -> KEY_VALUE_FORMATTING_ERROR (draft-21 §8.9).
    for version in ALL_VERSIONS:
        refused(frame(0x2F00, bytes.fromhex("03 01 09")), version, KVFE)


def test_setup_non_ascii_path_is_malformed() -> None:
    with pytest.raises(EncodeError):
        Setup.create(path="/caf\u00e9")
    with pytest.raises(EncodeError):
        Setup.create(authority="h\u00e9")
    setup = Setup(((SetupOption.PATH, b"/\xff"), (SetupOption.AUTHORITY, b"h\xc3\xa9")))
    with pytest.raises(ProtocolViolation) as info:
        _ = setup.path
    assert info.value.code == SessionErrorCode.MALFORMED_PATH
    with pytest.raises(ProtocolViolation) as info:
        _ = setup.authority
    assert info.value.code == SessionErrorCode.MALFORMED_AUTHORITY


# -- Incremental parsing ----------------------------------------------------------------------------------------------


def _feed_all(reader: MessageReader, chunks: list[bytes]) -> list[Message]:
    out: list[Message] = []
    for chunk in chunks:
        out.extend(reader.feed(chunk))
    return out


@pytest.mark.parametrize("version", ALL_VERSIONS)
@given(data=st.data())
def test_reader_gives_the_same_messages_however_split(version: Version, data: st.DataObject) -> None:
    msgs = data.draw(st.lists(messages(version), max_size=8))
    stream = b"".join(encode_message(msg, version) for msg in msgs)
    # Whole.
    whole = MessageReader(version)
    assert whole.feed(stream) == msgs
    assert whole.buffered == 0
    # One byte at a time.
    bytewise = MessageReader(version)
    assert _feed_all(bytewise, [stream[i : i + 1] for i in range(len(stream))]) == msgs
    # Split at random points.
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=10)))
    bounds = [0, *cuts, len(stream)]
    pieces = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    split = MessageReader(version)
    assert _feed_all(split, pieces) == msgs
    assert split.buffered == 0
    # decode_message walks the same stream.
    pos = 0
    walked: list[Message] = []
    while pos < len(stream):
        msg, used = decode_message(memoryview(stream)[pos:], version)
        walked.append(msg)
        pos += used
    assert walked == msgs


def test_reader_decodes_each_body_once_when_fed_bytewise(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real = messages_module._decode_body

    def counting(kind: int, body: bytes, version: Version) -> Message:
        nonlocal calls
        calls += 1
        return real(kind, body, version)

    monkeypatch.setattr(messages_module, "_decode_body", counting)
    msgs: list[Message] = [Subscribe(i, (b"ns", b"x" * 300), b"track") for i in range(20)]
    msgs.append(SubscribeOk(1, properties=((1, b"p" * 5000),)))
    stream = b"".join(encode_message(msg, Version.DRAFT_22) for msg in msgs)
    reader = MessageReader(Version.DRAFT_22)
    out: list[Message] = []
    for i in range(len(stream)):
        out.extend(reader.feed(stream[i : i + 1]))
        assert reader.buffered <= MAX_FRAME_BYTES
    assert out == msgs
    assert calls == len(msgs)


def test_reader_keeps_at_most_one_partial_frame() -> None:
    msg = SubscribeOk(0, properties=((1, b"z" * (0xFFFF - 6)),))
    data = encode_message(msg, Version.DRAFT_22)
    reader = MessageReader(Version.DRAFT_22)
    assert reader.feed(data[:-1]) == []
    assert reader.buffered == len(data) - 1 <= MAX_FRAME_BYTES
    assert reader.feed(data[-1:] + data[:5]) == [msg]
    assert reader.buffered == 5


def test_reader_stays_failed_after_a_violation() -> None:
    reader = MessageReader(Version.DRAFT_22)
    with pytest.raises(ProtocolViolation):
        reader.feed(frame(0x7F, b""))
    with pytest.raises(ProtocolViolation):
        reader.feed(encode_message(RequestOk(), Version.DRAFT_22))


# SUBSCRIBE {Request ID 0, no namespace, empty name, 1 parameter: SUBGROUP_FILTER (0x25) Length 11, SetID 0,
# Start delta 2^64-1, End delta 1}: the End overflows 2^64-1, a request-level INVALID_FILTER (draft-21 §8.6).
_OVERFLOWING_FILTER = bytes.fromhex("00 00 00 01 25 0b 00 ffffffffffffffffff 01")


@pytest.mark.parametrize("version", DRAFT_20_FAMILY)
def test_invalid_filter_is_request_level_and_the_reader_goes_on(version: Version) -> None:
    data = frame(0x03, _OVERFLOWING_FILTER)
    with pytest.raises(InvalidFilter):
        decode_message(data, version)
    reader = MessageReader(version)
    ok = encode_message(RequestUpdate(2), version)
    reader.push(ok + data + ok)
    assert reader.next_message() == RequestUpdate(2)
    with pytest.raises(InvalidFilter):
        reader.next_message()
    assert reader.next_message() == RequestUpdate(2)
    assert reader.next_message() is None
    assert reader.buffered == 0
    # A length mismatch in the same frame is a session error, and wins.
    refused(frame(0x03, _OVERFLOWING_FILTER + b"\x00"), version)


def test_reader_push_and_next_message() -> None:
    msgs = [RequestUpdate(i) for i in range(5)]
    stream = b"".join(encode_message(msg, Version.DRAFT_22) for msg in msgs)
    reader = MessageReader(Version.DRAFT_22)
    out: list[Message] = []
    for i in range(0, len(stream), 3):
        reader.push(stream[i : i + 3])
        while (msg := reader.next_message()) is not None:
            out.append(msg)
    assert out == msgs


def test_decode_message_needs_more_data() -> None:
    data = encode_message(Subscribe(0, (b"a",), b"t"), Version.DRAFT_22)
    for i in range(len(data)):
        with pytest.raises(NeedMoreData):
            decode_message(data[:i], Version.DRAFT_22)
    # A 9-byte type varint cut short.
    with pytest.raises(NeedMoreData):
        decode_message(b"\xff\x00", Version.DRAFT_22)


# -- Arbitrary bytes --------------------------------------------------------------------------------------------------


def _only_codec_errors(data: bytes, version: Version) -> None:
    """The codec's own errors only: NeedMoreData, ProtocolViolation, and the request-level InvalidFilter."""
    with contextlib.suppress(NeedMoreData, ProtocolViolation, InvalidFilter):
        decode_message(data, version)
    with contextlib.suppress(ProtocolViolation, InvalidFilter):
        MessageReader(version).feed(data)


@pytest.mark.parametrize("version", ALL_VERSIONS)
@given(st.binary(max_size=200))
@example(b"")
@example(b"\x03\x00\x05\x00\x21\x00\x00\x00")
@example(b"\xaf\x00\x00\x03\x03\x01\x09")
def test_arbitrary_bytes_raise_only_codec_errors(version: Version, data: bytes) -> None:
    _only_codec_errors(data, version)


@pytest.mark.parametrize("version", ALL_VERSIONS)
@given(data=st.data())
def test_mutated_messages_raise_only_codec_errors(version: Version, data: st.DataObject) -> None:
    """Valid frames with a byte changed, inserted or removed: closer to the parser's edges than random bytes."""
    raw = bytearray(encode_message(data.draw(messages(version)), version))
    seed = data.draw(st.integers(min_value=0, max_value=2**32))
    rng = random.Random(seed)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        pos = rng.randrange(len(raw) + 1)
        action = rng.randrange(3)
        if action == 0 and pos < len(raw):
            raw[pos] = rng.randrange(256)
        elif action == 1:
            raw.insert(pos, rng.randrange(256))
        elif pos < len(raw):
            del raw[pos]
    # Keep the length field honest sometimes, so bodies are parsed rather than refused for their length.
    if data.draw(st.booleans()) and len(raw) > 3 and raw[0] < 0x80:
        raw[1:3] = (len(raw) - 3).to_bytes(2, "big")
    _only_codec_errors(bytes(raw), version)
