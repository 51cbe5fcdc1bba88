// The MOQT varint and the u64 representation (web/js/varint.js), against the draft's examples and the Python
// codec's vectors (minimal and non-minimal encodings).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { EncodeError, NeedMoreData } from '../js/errors.js';
import {
  MAX_U64,
  add,
  checkU64,
  encodeVarint,
  readVarint,
  sub,
  u64,
  varintLength,
  varintSize,
} from '../js/varint.js';
import { fromJSONForm, hex, loadVectors, unhex } from './helpers.js';

test('draft examples (DIGEST §2.1) decode and re-encode', () => {
  const examples = [
    ['25', 37],
    ['8025', 37],
    ['bbbd', 15293],
    ['ed7f3e7d', 226442877],
    ['faa1a0e403d8', 2893212287960],
    ['fc8998abc66bc0', 151288809941952],
    ['fefa318fa8e3ca11', 70423237261249041n],
    ['ffffffffffffffffff', MAX_U64],
  ];
  for (const [bytes, value] of examples) {
    assert.deepEqual(readVarint(unhex(bytes)), [value, bytes.length / 2]);
  }
  assert.equal(hex(encodeVarint(37)), '25');
  assert.equal(hex(encodeVarint(0x2f00)), 'af00');
  assert.equal(hex(encodeVarint(0x132b3e28)), 'f0132b3e28');
  assert.equal(hex(encodeVarint(0x80)), '8080');
  assert.equal(hex(encodeVarint(16384)), 'c04000');
  assert.equal(hex(encodeVarint(MAX_U64)), 'ffffffffffffffffff');
});

test('every Python vector decodes to its value; minimal ones re-encode to the same bytes', () => {
  const { varints } = loadVectors();
  assert.ok(varints.length > 100);
  for (const { hex: bytes, value } of varints) {
    const expected = fromJSONForm(value);
    const [decoded, next] = readVarint(unhex(bytes));
    assert.equal(decoded, expected, bytes);
    assert.equal(next, bytes.length / 2);
    assert.equal(varintLength(unhex(bytes)[0]), bytes.length / 2);
    if (varintSize(expected) === bytes.length / 2) assert.equal(hex(encodeVarint(expected)), bytes);
  }
});

test('decoded values are canonical: Number up to 2^53-1, BigInt above', () => {
  assert.equal(readVarint(encodeVarint(2 ** 53 - 1))[0], Number.MAX_SAFE_INTEGER);
  assert.equal(typeof readVarint(encodeVarint(2n ** 53n))[0], 'bigint');
  assert.equal(readVarint(encodeVarint(5n))[0], 5); // a small BigInt comes back as a Number
  assert.equal(readVarint(unhex('ff0000000000000005'))[0], 5); // so does a small 9-byte one
  assert.equal(u64(7n), 7);
  assert.equal(u64(2n ** 60n), 2n ** 60n);
});

test('every length boundary encodes with the expected size', () => {
  for (let n = 1; n <= 8; n++) {
    const last = (1n << BigInt(7 * n)) - 1n;
    assert.equal(varintSize(last), n);
    assert.equal(encodeVarint(last).length, n);
    assert.equal(varintSize(last + 1n), n + 1);
    assert.equal(readVarint(encodeVarint(last))[0], u64(last));
    assert.equal(readVarint(encodeVarint(last + 1n))[0], u64(last + 1n));
  }
});

test('out-of-range and unsafe values are EncodeErrors', () => {
  for (const bad of [-1, -1n, 1.5, 2 ** 53, 2 ** 64, MAX_U64 + 1n, NaN, '1', null, undefined]) {
    assert.throws(() => encodeVarint(bad), EncodeError, String(bad));
  }
  assert.equal(checkU64(2n ** 64n - 1n), MAX_U64);
});

test('a short varint is NeedMoreData', () => {
  assert.throws(() => readVarint(new Uint8Array(0)), NeedMoreData);
  assert.throws(() => readVarint(unhex('80')), NeedMoreData);
  assert.throws(() => readVarint(unhex('ffffffffffffffff')), NeedMoreData);
  assert.throws(() => readVarint(unhex('8080'), 0, 1), NeedMoreData); // `end` bounds the read
});

test('add and sub keep the canonical form across 2^53', () => {
  assert.equal(add(1, 2), 3);
  assert.equal(add(Number.MAX_SAFE_INTEGER, 1), 2n ** 53n);
  assert.equal(add(2n ** 53n, 1), 2n ** 53n + 1n);
  assert.equal(sub(2n ** 53n, 1), Number.MAX_SAFE_INTEGER);
  assert.equal(sub(0, 1), -1);
  assert.equal(sub(1n << 60n, (1n << 60n) + 1n), -1);
  assert.ok(add(MAX_U64, 1) > MAX_U64);
});
