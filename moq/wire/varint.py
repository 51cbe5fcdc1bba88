"""The two integer encodings of MOQT.

- The MOQT varint (draft-17 and later, draft-22 §1.4.1): the number of leading one bits of the first byte is the
  length minus one; 1 to 9 bytes; the whole 64-bit range. Any length that fits is accepted on input (non-minimal
  forms are valid), the shortest is written on output.
- The QUIC varint (RFC 9000 §16): used by drafts <= 16 and by all HTTP/3 and WebTransport framing. aioquic's
  `Buffer.pull_uint_var` / `push_uint_var` implement it; the wrappers here only give it the same names.

Reading past the end of a `Buffer` raises aioquic's `BufferReadError`; the framers turn that into `NeedMoreData`
(a stream that has not delivered enough yet) or a `ProtocolViolation` (a message whose length said otherwise).
"""

from __future__ import annotations

from aioquic.buffer import Buffer

from moq.errors import EncodeError

MAX_VARINT = (1 << 64) - 1
MAX_QUIC_VARINT = (1 << 62) - 1

# Total encoded length, indexed by the first byte: leading ones + 1.
_LENGTH = bytes(min(9, 8 - (b ^ 0xFF).bit_length() + 1) for b in range(256))
# Mask of the value bits left in the first byte, indexed by total length.
_FIRST_MASK = (0, 0x7F, 0x3F, 0x1F, 0x0F, 0x07, 0x03, 0x01, 0x00, 0x00)
# The length prefix, already shifted into place, indexed by total length (1..8).
_PREFIX = tuple(0 if n == 0 else ((0xFF << (9 - n)) & 0xFF) << (8 * (n - 1)) for n in range(9))


def varint_size(value: int) -> int:
    """Bytes the minimal MOQT varint encoding of `value` takes (1 to 9)."""
    if value < 0x80:
        if value < 0:
            raise EncodeError(f"varint must not be negative: {value}")
        return 1
    bits = value.bit_length()
    if bits > 56:
        if bits > 64:
            raise EncodeError(f"varint out of range: {value}")
        return 9
    return (bits + 6) // 7


def encode_varint(value: int) -> bytes:
    """The minimal MOQT varint encoding of `value`."""
    if 0 <= value < 0x80:
        return bytes((value,))
    n = varint_size(value)
    if n == 9:
        return b"\xff" + value.to_bytes(8, "big")
    return (value | _PREFIX[n]).to_bytes(n, "big")


def push_varint(buf: Buffer, value: int) -> None:
    """Write `value` as a minimal MOQT varint."""
    if 0 <= value < 0x80:
        buf.push_uint8(value)
    else:
        buf.push_bytes(encode_varint(value))


def pull_varint(buf: Buffer) -> int:
    """Read one MOQT varint, of any length 1 to 9."""
    first = buf.pull_uint8()
    if first < 0x80:
        return first
    n = _LENGTH[first]
    if n == 2:
        return ((first & 0x3F) << 8) | buf.pull_uint8()
    if n == 9:
        return int(buf.pull_uint64())
    rest = buf.pull_bytes(n - 1)
    return ((first & _FIRST_MASK[n]) << (8 * (n - 1))) | int.from_bytes(rest, "big")


def varint_length_from_first_byte(first: int) -> int:
    """Total length of a MOQT varint whose first byte is `first`."""
    return _LENGTH[first]


def decode_varint(data: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int]:
    """Read a MOQT varint from `data` at `pos`: (value, next position). Raises IndexError if `data` is short."""
    first = data[pos]
    n = _LENGTH[first]
    if n == 1:
        return first, pos + 1
    end = pos + n
    if end > len(data):
        raise IndexError("varint truncated")
    if n == 9:
        return int.from_bytes(data[pos + 1 : end], "big"), end
    return ((first & _FIRST_MASK[n]) << (8 * (n - 1))) | int.from_bytes(data[pos + 1 : end], "big"), end


def quic_varint_size(value: int) -> int:
    """Bytes the RFC 9000 varint encoding of `value` takes (1, 2, 4 or 8)."""
    if value < 0 or value > MAX_QUIC_VARINT:
        raise EncodeError(f"QUIC varint out of range: {value}")
    if value < 0x40:
        return 1
    if value < 0x4000:
        return 2
    if value < 0x40000000:
        return 4
    return 8


def push_quic_varint(buf: Buffer, value: int) -> None:
    """Write `value` as an RFC 9000 varint (drafts <= 16, HTTP/3, WebTransport)."""
    quic_varint_size(value)
    buf.push_uint_var(value)


def pull_quic_varint(buf: Buffer) -> int:
    """Read one RFC 9000 varint."""
    return int(buf.pull_uint_var())
