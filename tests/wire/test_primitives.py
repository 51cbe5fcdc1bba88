"""Wire primitives: Key-Value-Pairs, namespaces and names with their limits, reason phrases, tokens, rendering."""

from __future__ import annotations

import pytest
from aioquic.buffer import Buffer
from hypothesis import example, given
from hypothesis import strategies as st

from moq.errors import EncodeError, ProtocolViolation
from moq.wire.codes import SessionErrorCode
from moq.wire.primitives import (
    MAX_FULL_TRACK_NAME_BYTES,
    MAX_NAMESPACE_FIELDS,
    FullTrackName,
    Location,
    Properties,
    Token,
    TokenAliasType,
    decode_token,
    encode_key_values,
    encode_token,
    key_values_size,
    namespace_has_prefix,
    parse_name,
    pull_key_values,
    pull_location,
    pull_namespace,
    pull_reason_phrase,
    pull_track_name,
    push_location,
    push_namespace,
    push_reason_phrase,
    push_track_name,
    render_name,
)
from moq.wire.varint import MAX_VARINT, encode_varint

PV = SessionErrorCode.PROTOCOL_VIOLATION
KVFE = SessionErrorCode.KEY_VALUE_FORMATTING_ERROR

varints = st.integers(min_value=0, max_value=MAX_VARINT)
key_value = st.one_of(
    st.tuples(varints.map(lambda t: t & ~1), varints),
    st.tuples(varints.map(lambda t: t | 1), st.binary(max_size=64)),
)
fields = st.binary(min_size=1, max_size=24)
namespaces = st.lists(fields, max_size=MAX_NAMESPACE_FIELDS).map(tuple)


def _buf(*parts: bytes) -> Buffer:
    return Buffer(data=b"".join(parts))


# -- Key-Value-Pairs -------------------------------------------------------------------------------------------


@given(st.lists(key_value, max_size=12))
@example([(0, 0), (1, b""), (MAX_VARINT - 1, MAX_VARINT), (MAX_VARINT, b"x")])
def test_key_values_round_trip(pairs: list[tuple[int, int | bytes]]) -> None:
    data = encode_key_values(tuple(pairs))
    assert len(data) == key_values_size(tuple(pairs))
    decoded = pull_key_values(Buffer(data=data), len(data))
    assert decoded == tuple(sorted(pairs, key=lambda p: p[0]))


def test_key_values_are_delta_encoded() -> None:
    pairs: Properties = ((2, 5), (3, b"ab"), (3, b"c"), (10, 1))
    # types 2, 3, 3, 10 -> deltas 2, 1, 0, 7
    assert encode_key_values(pairs) == bytes.fromhex("02 05 01 02 6162 00 01 63 07 01".replace(" ", ""))


def test_key_value_type_overflow_is_a_protocol_violation() -> None:
    # Type 2^64-2 (even, value 0), then a delta of 2 would make type 2^64.
    data = encode_varint(MAX_VARINT - 1) + encode_varint(0) + encode_varint(2) + encode_varint(0)
    with pytest.raises(ProtocolViolation) as info:
        pull_key_values(Buffer(data=data), len(data))
    assert info.value.code == PV


def test_key_value_length_over_65535_is_a_protocol_violation() -> None:
    data = encode_varint(1) + encode_varint(65536) + b"\x00" * 65536
    with pytest.raises(ProtocolViolation) as info:
        pull_key_values(Buffer(data=data), len(data))
    assert info.value.code == PV


@pytest.mark.parametrize("data", [bytes([1, 5, 0x61]), bytes([2]), bytes([2, 0x80])])
def test_key_value_cut_by_its_enclosing_length_is_a_formatting_error(data: bytes) -> None:
    with pytest.raises(ProtocolViolation) as info:
        pull_key_values(Buffer(data=data), len(data))
    assert info.value.code == KVFE


def test_key_value_shape_is_checked_when_encoding() -> None:
    with pytest.raises(EncodeError):
        encode_key_values(((1, 5),))
    with pytest.raises(EncodeError):
        encode_key_values(((2, b"x"),))


# -- Namespaces and names --------------------------------------------------------------------------------------


@given(namespaces, st.binary(max_size=40))
def test_namespace_and_name_round_trip(namespace: tuple[bytes, ...], name: bytes) -> None:
    buf = Buffer(capacity=8192)
    push_namespace(buf, namespace)
    push_track_name(buf, namespace, name)
    read = Buffer(data=buf.data)
    end = len(buf.data)
    got = pull_namespace(read, end)
    assert got == namespace
    assert pull_track_name(read, end, got) == name
    assert read.eof()


def test_namespace_of_33_fields_is_refused() -> None:
    data = encode_varint(33) + b"".join(b"\x01a" for _ in range(33))
    with pytest.raises(ProtocolViolation) as info:
        pull_namespace(Buffer(data=data), len(data))
    assert info.value.code == PV
    with pytest.raises(EncodeError):
        push_namespace(Buffer(capacity=200), tuple(b"a" for _ in range(33)))


def test_namespace_of_32_fields_and_zero_fields_are_fine() -> None:
    for count in (0, 32):
        data = encode_varint(count) + b"".join(b"\x01a" for _ in range(count))
        assert len(pull_namespace(Buffer(data=data), len(data))) == count


def test_empty_namespace_field_is_refused() -> None:
    data = bytes([2, 1, 0x61, 0])
    with pytest.raises(ProtocolViolation) as info:
        pull_namespace(Buffer(data=data), len(data))
    assert info.value.code == PV
    with pytest.raises(EncodeError):
        push_namespace(Buffer(capacity=10), (b"a", b""))


def test_full_track_name_limit_is_4096_bytes() -> None:
    namespace = (b"n" * 2000, b"m" * 2000)
    ok = b"x" * (MAX_FULL_TRACK_NAME_BYTES - 4000)
    buf = Buffer(capacity=9000)
    push_namespace(buf, namespace)
    push_track_name(buf, namespace, ok)
    read = Buffer(data=buf.data)
    assert pull_track_name(read, len(buf.data), pull_namespace(read, len(buf.data))) == ok
    # One byte more: refused on both sides.
    with pytest.raises(EncodeError):
        push_track_name(Buffer(capacity=9000), namespace, ok + b"x")
    raw = encode_varint(len(ok) + 1) + ok + b"x"
    with pytest.raises(ProtocolViolation) as info:
        pull_track_name(Buffer(data=raw), len(raw), namespace)
    assert info.value.code == PV
    # A namespace alone over 4096 bytes.
    big = encode_varint(2) + encode_varint(2048) + b"a" * 2048 + encode_varint(2049) + b"b" * 2049
    with pytest.raises(ProtocolViolation):
        pull_namespace(Buffer(data=big), len(big))


def test_field_length_past_the_message_is_a_protocol_violation() -> None:
    data = bytes([1, 10, 0x61])
    with pytest.raises(ProtocolViolation) as info:
        pull_namespace(Buffer(data=data), len(data))
    assert info.value.code == PV


def test_prefix_matching_is_field_by_field() -> None:
    assert namespace_has_prefix((b"foo", b"bar"), (b"foo",))
    assert namespace_has_prefix((b"foo", b"bar"), ())
    assert not namespace_has_prefix((b"foobar",), (b"foo",))
    assert not namespace_has_prefix((b"foo",), (b"foo", b"bar"))


# -- Reason phrase, location -----------------------------------------------------------------------------------


def test_reason_phrase_limit_is_1024_bytes() -> None:
    buf = Buffer(capacity=2000)
    push_reason_phrase(buf, "é" * 512)
    assert pull_reason_phrase(Buffer(data=buf.data), len(buf.data)) == "é" * 512
    with pytest.raises(EncodeError):
        push_reason_phrase(Buffer(capacity=2000), "x" * 1025)
    raw = encode_varint(1025) + b"x" * 1025
    with pytest.raises(ProtocolViolation) as info:
        pull_reason_phrase(Buffer(data=raw), len(raw))
    assert info.value.code == PV


@given(varints, varints)
def test_location_round_trip_and_order(group: int, obj: int) -> None:
    buf = Buffer(capacity=18)
    push_location(buf, Location(group, obj))
    assert pull_location(Buffer(data=buf.data)) == Location(group, obj)
    assert Location(group, obj) < Location(group, obj).next()
    assert Location(group, MAX_VARINT) < Location(group + 1, 0)


# -- Tokens ----------------------------------------------------------------------------------------------------

tokens = st.one_of(
    st.builds(Token, st.sampled_from([TokenAliasType.DELETE, TokenAliasType.USE_ALIAS]), varints),
    st.builds(Token, st.just(TokenAliasType.REGISTER), varints, varints, st.binary(max_size=32)),
    st.builds(Token, st.just(TokenAliasType.USE_VALUE), st.none(), varints, st.binary(max_size=32)),
)


@given(tokens)
def test_token_round_trip(token: Token) -> None:
    assert decode_token(encode_token(token)) == token


@pytest.mark.parametrize("data", [b"", b"\x04", b"\x00", b"\x01\x05", b"\x02\x01\x00"])
def test_undecodable_token_is_a_formatting_error(data: bytes) -> None:
    with pytest.raises(ProtocolViolation) as info:
        decode_token(data)
    assert info.value.code == KVFE


# -- Human-readable names (§8.8) -------------------------------------------------------------------------------


def test_spec_rendering_example() -> None:
    namespace, name = (b"example.net", b"team2", b"project_x"), b"report"
    assert render_name(namespace, name) == "example.2enet-team2-project_x--report"
    assert parse_name("example.2enet-team2-project_x--report") == (namespace, name)
    assert str(FullTrackName(namespace, name)) == "example.2enet-team2-project_x--report"


@given(namespaces, st.one_of(st.none(), st.binary(max_size=16)))
def test_rendering_is_bijective(namespace: tuple[bytes, ...], name: bytes | None) -> None:
    assert parse_name(render_name(namespace, name)) == (namespace, name)


@pytest.mark.parametrize("text", ["a.61", "a.2E", "a.2", "a.", "a-b-", "a--b.", "a b", "a--.zz"])
def test_non_canonical_renderings_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_name(text)
