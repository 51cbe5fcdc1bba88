"""The sans-IO WebTransport pieces: error code mapping, capsules, structured fields. No sockets."""

from __future__ import annotations

import random

import pytest
from aioquic.buffer import encode_uint_var
from hypothesis import example, given
from hypothesis import strategies as st

from moq.transport import wtproto
from moq.transport.wtproto import (
    WT_APPLICATION_ERROR_FIRST,
    WT_APPLICATION_ERROR_LAST,
    CapsuleParser,
    CapsuleTooLarge,
    app_code_to_http3,
    decode_close_session,
    encode_capsule,
    encode_close_session,
    http3_to_app_code,
    parse_sf_string,
    parse_sf_string_list,
    serialize_sf_string,
    serialize_sf_string_list,
)

# ---------------------------------------------------------------------------------------------- error codes


def test_error_code_range_ends() -> None:
    """draft-ietf-webtrans-http3 §4.4: 0x00000000 -> 0x52e4a40fa8db, 0xffffffff -> 0x52e5ac983162."""
    assert app_code_to_http3(0) == WT_APPLICATION_ERROR_FIRST == 0x52E4A40FA8DB
    assert app_code_to_http3(0xFFFFFFFF) == WT_APPLICATION_ERROR_LAST == 0x52E5AC983162


def test_reserved_http3_codepoints_are_skipped() -> None:
    """No application code lands on an HTTP/3 reserved codepoint 0x1f * N + 0x21 (RFC 9114 §8.1)."""
    for code in range(2000):
        assert (app_code_to_http3(code) - 0x21) % 0x1F != 0
    # The first reserved codepoint in the range sits between codes 29 and 30.
    assert app_code_to_http3(30) - app_code_to_http3(29) == 2
    reserved = app_code_to_http3(29) + 1
    assert (reserved - 0x21) % 0x1F == 0
    assert http3_to_app_code(reserved) is None


@given(st.integers(min_value=0, max_value=0xFFFFFFFF))
@example(0)
@example(29)
@example(30)
@example(0xFFFFFFFF)
def test_error_code_round_trip(code: int) -> None:
    assert http3_to_app_code(app_code_to_http3(code)) == code


@given(st.integers(min_value=0, max_value=(1 << 62) - 1))
@example(WT_APPLICATION_ERROR_FIRST - 1)
@example(WT_APPLICATION_ERROR_LAST + 1)
@example(0x170D7B68)  # WT_SESSION_GONE
def test_any_http3_code_decodes_to_a_code_or_none(wire: int) -> None:
    code = http3_to_app_code(wire)
    if code is not None:
        assert app_code_to_http3(code) == wire


def test_out_of_range_codes_are_refused() -> None:
    with pytest.raises(ValueError):
        app_code_to_http3(1 << 32)
    with pytest.raises(ValueError):
        app_code_to_http3(-1)


# ---------------------------------------------------------------------------------------------- capsules


def _feed(parser: CapsuleParser, chunks: list[bytes]) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


capsules_strategy = st.lists(
    st.tuples(st.integers(min_value=0, max_value=(1 << 62) - 1), st.binary(max_size=300)), max_size=8
)


@given(capsules_strategy, st.randoms(use_true_random=False))
def test_capsule_stream_whole_bytewise_and_split(capsules: list[tuple[int, bytes]], rnd: random.Random) -> None:
    stream = b"".join(encode_capsule(t, p) for t, p in capsules)
    assert _feed(CapsuleParser(), [stream]) == capsules
    assert _feed(CapsuleParser(), [stream[i : i + 1] for i in range(len(stream))]) == capsules
    cuts = sorted(rnd.sample(range(len(stream) + 1), min(4, len(stream) + 1)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert _feed(CapsuleParser(), pieces) == capsules


def test_close_session_capsule() -> None:
    encoded = encode_close_session(4242, "bye")
    parser = CapsuleParser()
    [(capsule_type, payload)] = parser.feed(encoded)
    assert capsule_type == wtproto.CAPSULE_CLOSE_SESSION == 0x2843
    assert payload == (4242).to_bytes(4, "big") + b"bye"
    assert decode_close_session(payload) == (4242, "bye")


def test_close_reason_is_cut_on_a_character_boundary() -> None:
    _, payload = CapsuleParser().feed(encode_close_session(1, "é" * 600))[0]
    code, reason = decode_close_session(payload)
    assert code == 1
    assert reason == "é" * 512  # 1024 bytes of two-byte characters
    with pytest.raises(ValueError):
        decode_close_session(b"\x00\x01")
    with pytest.raises(ValueError):
        encode_close_session(1 << 32, "")


def test_oversized_capsule_is_refused_before_buffering() -> None:
    parser = CapsuleParser(max_size=100)
    with pytest.raises(CapsuleTooLarge):
        parser.feed(encode_uint_var(0x2843) + encode_uint_var(1_000_000))


# ---------------------------------------------------------------------------------------------- structured fields


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ('"moqt-22", "moqt-20"', ["moqt-22", "moqt-20"]),
        ('"moqt-22"', ["moqt-22"]),
        ('  "moqt-22" ,\t"moqt-18"  ', ["moqt-22", "moqt-18"]),
        ('"moqt-22";q=0.5;x, "moqt-18";y="a,b"', ["moqt-22", "moqt-18"]),  # parameters ignored
        (r'"a\"b", "c\\d"', ['a"b', "c\\d"]),
        ("", []),
        ('"moqt-22", moqt-20', None),  # a Token, not a String: the whole field is ignored
        ('"moqt-22", 20', None),
        ('"moqt-22", ("moqt-20")', None),  # inner list
        ('"moqt-22",', None),  # trailing comma
        ('"moqt-22', None),  # unterminated
        ('"moqt-22" "moqt-20"', None),  # missing comma
        ('"bad\\x"', None),  # bad escape
    ],
)
def test_parse_wt_available_protocols(field: str, expected: list[str] | None) -> None:
    assert parse_sf_string_list(field) == expected


def test_several_field_lines_are_one_list() -> None:
    assert parse_sf_string_list(['"moqt-22"', '"moqt-20"']) == ["moqt-22", "moqt-20"]


def test_wt_protocol_item() -> None:
    assert parse_sf_string('"moqt-22"') == "moqt-22"
    assert parse_sf_string(' "moqt-22";a=1 ') == "moqt-22"
    assert parse_sf_string("moqt-22") is None
    assert parse_sf_string('"moqt-22", "moqt-20"') is None


@given(st.lists(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20), max_size=6))
def test_serialize_then_parse(values: list[str]) -> None:
    assert parse_sf_string_list(serialize_sf_string_list(values)) == values
    for value in values:
        assert parse_sf_string(serialize_sf_string(value)) == value


def test_serialize_refuses_non_ascii() -> None:
    with pytest.raises(ValueError):
        serialize_sf_string("moqt-é")
