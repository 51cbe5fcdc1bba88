"""MOQT varint (draft-17+) and QUIC varint: the spec's examples, the edges, round trips, non-minimal input."""

from __future__ import annotations

import pytest
from aioquic.buffer import Buffer, BufferReadError
from hypothesis import example, given
from hypothesis import strategies as st

from moq.errors import EncodeError
from moq.wire.varint import (
    MAX_QUIC_VARINT,
    MAX_VARINT,
    decode_varint,
    encode_varint,
    pull_quic_varint,
    pull_varint,
    push_quic_varint,
    push_varint,
    quic_varint_size,
    varint_size,
)

# draft-ietf-moq-transport-21 §8.1, Table 3 (and the digest's verified list).
SPEC_EXAMPLES = {
    "25": 37,
    "8025": 37,
    "bbbd": 15293,
    "ed7f3e7d": 226442877,
    "faa1a0e403d8": 2893212287960,
    "fc8998abc66bc0": 151288809941952,
    "fefa318fa8e3ca11": 70423237261249041,
    "ffffffffffffffffff": 2**64 - 1,
}

# The largest value of each length, and the first value that needs one byte more.
EDGES = [0, 1, 127, 128, 2**14 - 1, 2**14, 2**21 - 1, 2**21, 2**28 - 1, 2**28, 2**35 - 1, 2**35]
EDGES += [2**42 - 1, 2**42, 2**49 - 1, 2**49, 2**56 - 1, 2**56, 2**63, 2**64 - 1]


@pytest.mark.parametrize(("hexbytes", "value"), SPEC_EXAMPLES.items())
def test_spec_examples_decode(hexbytes: str, value: int) -> None:
    data = bytes.fromhex(hexbytes)
    buf = Buffer(data=data)
    assert pull_varint(buf) == value
    assert buf.eof()
    assert decode_varint(data) == (value, len(data))


def test_minimal_encodings() -> None:
    assert encode_varint(37) == bytes.fromhex("25")
    assert encode_varint(15293) == bytes.fromhex("bbbd")
    assert encode_varint(0x2F00) == bytes.fromhex("af00")
    assert encode_varint(0x132B3E28) == bytes.fromhex("f0132b3e28")
    assert encode_varint(0x80) == bytes.fromhex("8080")
    assert encode_varint(16384) == bytes.fromhex("c04000")
    assert encode_varint(2**64 - 1) == b"\xff" * 9


@pytest.mark.parametrize("value", EDGES)
def test_edges_take_the_expected_length(value: int) -> None:
    expected = 9 if value >= 2**56 else max(1, (value.bit_length() + 6) // 7)
    assert varint_size(value) == len(encode_varint(value)) == expected


@given(st.integers(min_value=0, max_value=MAX_VARINT))
@example(0)
@example(127)
@example(128)
@example(16383)
@example(16384)
@example(2**56 - 1)
@example(2**56)
@example(MAX_VARINT)
def test_round_trip(value: int) -> None:
    buf = Buffer(capacity=9)
    push_varint(buf, value)
    assert buf.tell() == varint_size(value)
    read = Buffer(data=buf.data)
    assert pull_varint(read) == value
    assert read.eof()


@given(st.integers(min_value=0, max_value=MAX_VARINT), st.integers(min_value=1, max_value=9))
def test_non_minimal_forms_are_accepted(value: int, length: int) -> None:
    """Any length that can hold the value is valid input (draft-21 §8.1)."""
    if length < varint_size(value):
        return
    if length == 9:
        data = b"\xff" + value.to_bytes(8, "big")
    else:
        prefix = ((0xFF << (9 - length)) & 0xFF) << (8 * (length - 1))
        data = (value | prefix).to_bytes(length, "big")
    assert pull_varint(Buffer(data=data)) == value
    assert decode_varint(data) == (value, length)


@pytest.mark.parametrize("value", [-1, MAX_VARINT + 1])
def test_out_of_range_is_a_local_error(value: int) -> None:
    with pytest.raises(EncodeError):
        encode_varint(value)


@given(st.binary(min_size=1, max_size=9))
def test_truncated_input_says_so(data: bytes) -> None:
    """Reading from too few bytes raises the buffer's own error, never anything else."""
    buf = Buffer(data=data)
    try:
        pull_varint(buf)
    except BufferReadError:
        with pytest.raises(IndexError):
            decode_varint(data)


@given(st.integers(min_value=0, max_value=MAX_QUIC_VARINT))
@example(63)
@example(64)
@example(16383)
@example(16384)
@example(2**30 - 1)
@example(2**30)
@example(MAX_QUIC_VARINT)
def test_quic_varint_round_trip(value: int) -> None:
    buf = Buffer(capacity=8)
    push_quic_varint(buf, value)
    assert buf.tell() == quic_varint_size(value)
    assert pull_quic_varint(Buffer(data=buf.data)) == value


def test_quic_varint_refuses_past_2_62() -> None:
    with pytest.raises(EncodeError):
        quic_varint_size(MAX_QUIC_VARINT + 1)
