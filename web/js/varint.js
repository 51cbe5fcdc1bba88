// The MOQT variable-length integer and 64-bit values (draft-ietf-moq-transport-21 §8.1; draft-17 and later).
//
// A varint is 1 to 9 bytes: the number of leading one bits of the first byte is the length minus one, the
// rest is the value, big-endian; nine bytes (0xFF prefix) carry all 64 bits. Non-minimal encodings are valid on
// input; we always write the shortest.
//
// How 64-bit values are held (a "u64" everywhere in this codec): a Number when it is at most
// Number.MAX_SAFE_INTEGER (2^53-1), a BigInt only above that. Every decoded value is in this canonical form,
// so `===`, `<` and Map keys work as expected between decoded values, and a player can use group and object
// IDs as plain Numbers in practice (wall-clock millisecond IDs are ~2^41). Arithmetic on a value that may be a
// BigInt must go through `add` / `sub` below. Encoders accept either type, but refuse an unsafe Number (it
// has already lost precision): pass a BigInt for values above 2^53-1.

import { EncodeError, NeedMoreData } from './errors.js';

export const MAX_U64 = (1n << 64n) - 1n;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** The canonical form of a non-negative integer: Number when safe, BigInt above 2^53-1. */
export function u64(value) {
  if (typeof value === 'bigint') return value <= MAX_SAFE ? Number(value) : value;
  return value;
}

/**
 * Check that `value` is an integer in [0, 2^64-1] and return it in canonical form; EncodeError otherwise.
 * @param {number|bigint} value
 * @param {string} [what] what the value is, for the error message
 */
export function checkU64(value, what = 'varint') {
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && value >= 0) return value;
    if (Number.isInteger(value) && value > 0) {
      throw new EncodeError(`${what} ${value} is above 2^53-1: pass it as a BigInt`);
    }
  } else if (typeof value === 'bigint') {
    if (value >= 0n && value <= MAX_U64) return u64(value);
  }
  throw new EncodeError(`${what} must be an integer in [0, 2^64-1], not ${String(value)}`);
}

/** a + b in canonical form (may exceed 2^64-1: callers check against MAX_U64). */
export function add(a, b) {
  if (typeof a === 'number' && typeof b === 'number') {
    const sum = a + b;
    if (sum <= Number.MAX_SAFE_INTEGER) return sum;
  }
  return u64(BigInt(a) + BigInt(b));
}

/** a - b in canonical form (may be negative: callers check). */
export function sub(a, b) {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const diff = BigInt(a) - BigInt(b);
  return diff < 0n ? Number(diff) : u64(diff);
}

/** Total length of a varint whose first byte is `first` (leading ones + 1). */
export function varintLength(first) {
  return Math.clz32(~first & 0xff) - 24 + 1;
}

/** Bytes the minimal encoding of `value` takes (1 to 9). */
export function varintSize(value) {
  const v = checkU64(value);
  if (typeof v === 'bigint') return v < 1n << 56n ? 8 : 9;
  let n = 1;
  for (let limit = 0x80; v >= limit && n < 8; limit *= 0x80) n++;
  return n;
}

/**
 * Write the minimal varint of `value` into `out` at `pos`; returns the position after it.
 * `out` must have room (varintSize(value) bytes).
 */
export function writeVarint(out, pos, value) {
  const v = checkU64(value);
  if (typeof v === 'number' && v < 0x80) {
    out[pos] = v;
    return pos + 1;
  }
  const n = varintSize(v);
  if (typeof v === 'bigint') {
    let rest = v;
    for (let i = n - 1; i >= 1; i--) {
      out[pos + i] = Number(rest & 0xffn);
      rest >>= 8n;
    }
    out[pos] = n === 9 ? 0xff : 0xfe;
    return pos + n;
  }
  let rest = v;
  for (let i = n - 1; i >= 1; i--) {
    out[pos + i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
  // The prefix is n-1 one bits then a zero; what is left of the value fills the rest of the first byte.
  out[pos] = ((0xff << (9 - n)) & 0xff) | rest;
  return pos + n;
}

/** The minimal varint encoding of `value`. */
export function encodeVarint(value) {
  const out = new Uint8Array(varintSize(value));
  writeVarint(out, 0, value);
  return out;
}

/**
 * Read one varint (any length) from `bytes` at `pos`, not reading at or past `end`.
 * @returns {[number|bigint, number]} the value (canonical u64) and the position after it
 * @throws {NeedMoreData} when the varint runs past `end`
 */
export function readVarint(bytes, pos = 0, end = bytes.length) {
  if (pos >= end) throw new NeedMoreData('varint: no bytes');
  const first = bytes[pos];
  if (first < 0x80) return [first, pos + 1];
  const n = varintLength(first);
  if (pos + n > end) throw new NeedMoreData(`varint: needs ${n} bytes`);
  if (n <= 7) {
    // At most 49 value bits: exact in a Number.
    let value = first & (0xff >> n);
    for (let i = 1; i < n; i++) value = value * 256 + bytes[pos + i];
    return [value, pos + n];
  }
  let value = 0n; // an 8- or 9-byte varint has no value bits in its first byte
  for (let i = 1; i < n; i++) value = (value << 8n) | BigInt(bytes[pos + i]);
  return [u64(value), pos + n];
}
