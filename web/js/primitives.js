// The structures every message is built from (draft-ietf-moq-transport-21 §8; moq/wire/primitives.py):
// a byte Reader and Writer, Location, Track Namespace and Name, Reason Phrase, Key-Value-Pairs, Tokens.
//
// Bytes are Uint8Array. Encoders also take a string wherever bytes are expected (namespace fields, track
// names) and send its UTF-8; decoders always give Uint8Array back.

import { EncodeError, KVFE, NeedMoreData, PV, ProtocolViolation } from './errors.js';
import { MAX_U64, add, checkU64, readVarint, sub, writeVarint } from './varint.js';

/** A Track Namespace has at most this many fields (§8.7). */
export const MAX_NAMESPACE_FIELDS = 32;
/** A Full Track Name (namespace fields plus track name) is at most this many bytes (§8.7). */
export const MAX_FULL_TRACK_NAME_BYTES = 4096;
/** A Reason Phrase is at most this many bytes (§8.5). */
export const MAX_REASON_PHRASE_BYTES = 1024;
/** The bytes value of a Key-Value-Pair is at most this long (§8.3). */
export const MAX_KVP_VALUE_BYTES = 0xffff;

/** A shared empty byte array (zero-length: nothing in it to change). */
export const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();
// Invalid UTF-8 becomes U+FFFD, and a BOM is kept, as Python's decode('utf-8', errors='replace') does.
const decoder = new TextDecoder('utf-8', { ignoreBOM: true });

/** UTF-8 bytes of `text`; a lone surrogate is an EncodeError (it has no UTF-8 form). */
export function utf8(text) {
  if (typeof text.isWellFormed === 'function' && !text.isWellFormed()) {
    throw new EncodeError('text has a lone surrogate: not encodable as UTF-8');
  }
  return encoder.encode(text);
}

/** `bytes` read as UTF-8, invalid sequences replaced by U+FFFD. */
export function fromUtf8(bytes) {
  return decoder.decode(bytes);
}

/** `value` as bytes: a Uint8Array as is, a string as its UTF-8; anything else is an EncodeError. */
export function asBytes(value, what = 'value') {
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'string') return utf8(value);
  throw new EncodeError(`${what} must be a Uint8Array or a string`);
}

/** Reads fields from `bytes` between `pos` and `end`; running short throws NeedMoreData. */
export class Reader {
  constructor(bytes, pos = 0, end = bytes.length) {
    this.buf = bytes;
    this.pos = pos;
    this.end = end;
  }

  get remaining() {
    return this.end - this.pos;
  }

  varint() {
    const [value, next] = readVarint(this.buf, this.pos, this.end);
    this.pos = next;
    return value;
  }

  uint8() {
    if (this.pos >= this.end) throw new NeedMoreData('uint8: no bytes');
    return this.buf[this.pos++];
  }

  /** The next `n` bytes, copied (a decoded message must not pin the stream's buffer). */
  bytes(n) {
    return this.view(n).slice();
  }

  /** The next `n` bytes as a view into the input, not copied. */
  view(n) {
    if (n > this.remaining) throw new NeedMoreData(`needs ${n} bytes, has ${this.remaining}`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** A Reader over the next `n` bytes (n <= remaining); this one moves past them. */
  sub(n) {
    const inner = new Reader(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return inner;
  }
}

/** Appends fields to a growing buffer. Every value is checked before any byte of it is written. */
export class Writer {
  constructor(capacity = 64) {
    this.buf = new Uint8Array(capacity);
    this.length = 0;
  }

  reserve(n) {
    if (this.length + n <= this.buf.length) return;
    const grown = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
    grown.set(this.buf.subarray(0, this.length));
    this.buf = grown;
  }

  varint(value) {
    this.reserve(9);
    this.length = writeVarint(this.buf, this.length, value);
  }

  uint8(value) {
    this.reserve(1);
    this.buf[this.length++] = value;
  }

  bytes(data) {
    this.reserve(data.length);
    this.buf.set(data, this.length);
    this.length += data.length;
  }

  /** Length (vi64) + bytes. */
  lengthBytes(data) {
    this.varint(data.length);
    this.bytes(data);
  }

  /** The bytes written, in an array of their own size. */
  finish() {
    return this.length === this.buf.length ? this.buf : this.buf.slice(0, this.length);
  }
}

// -- Location (§8.2) -------------------------------------------------------------------------------------------

/** Read a Location {Group (vi64), Object (vi64)} as `{group, object}`. */
export function readLocation(r) {
  const group = r.varint();
  return { group, object: r.varint() };
}

export function writeLocation(w, location) {
  w.varint(location.group);
  w.varint(location.object);
}

/** Locations order lexicographically: group, then object (§8.2). Negative, zero or positive. */
export function compareLocations(a, b) {
  if (a.group !== b.group) return a.group < b.group ? -1 : 1;
  if (a.object !== b.object) return a.object < b.object ? -1 : 1;
  return 0;
}

// -- Length-prefixed bytes and reason phrases (§8.5) -----------------------------------------------------------

/** Read a vi64 length and check that that many bytes remain (else PROTOCOL_VIOLATION). */
export function readLength(r, what) {
  const length = r.varint();
  if (length > r.remaining) {
    throw new ProtocolViolation(PV, `${what} length ${length} runs past the end of its message`);
  }
  return length;
}

/** Read Length + bytes, refusing a length over `limit` with PROTOCOL_VIOLATION. */
export function readLengthBytes(r, what, limit = null) {
  const length = readLength(r, what);
  if (limit !== null && length > limit) {
    throw new ProtocolViolation(PV, `${what} is ${length} bytes, over the limit of ${limit}`);
  }
  return r.bytes(length);
}

/** Read a Reason Phrase: at most 1024 bytes (§8.5), invalid UTF-8 replaced. */
export function readReasonPhrase(r) {
  return fromUtf8(readLengthBytes(r, 'reason phrase', MAX_REASON_PHRASE_BYTES));
}

export function writeReasonPhrase(w, reason) {
  const raw = utf8(reason);
  if (raw.length > MAX_REASON_PHRASE_BYTES) {
    throw new EncodeError(`reason phrase is ${raw.length} bytes, over the limit of ${MAX_REASON_PHRASE_BYTES}`);
  }
  w.lengthBytes(raw);
}

// -- Track Namespace and Track Name (§8.7) ---------------------------------------------------------------------

/** Read a Track Namespace: at most 32 fields, none empty, at most 4096 bytes in all. */
export function readNamespace(r) {
  const count = r.varint();
  if (count > MAX_NAMESPACE_FIELDS) {
    throw new ProtocolViolation(PV, `track namespace has ${count} fields, over the limit of ${MAX_NAMESPACE_FIELDS}`);
  }
  const fields = [];
  let total = 0;
  for (let i = 0; i < count; i++) {
    const length = readLength(r, 'track namespace field');
    if (length === 0) throw new ProtocolViolation(PV, 'track namespace field is empty');
    total += length;
    if (total > MAX_FULL_TRACK_NAME_BYTES) {
      throw new ProtocolViolation(PV, `track namespace is over ${MAX_FULL_TRACK_NAME_BYTES} bytes`);
    }
    fields.push(r.bytes(length));
  }
  return fields;
}

/** The namespace as byte fields, refusing locally one the wire cannot carry. */
export function namespaceBytes(namespace) {
  if (!Array.isArray(namespace)) throw new EncodeError('a track namespace is an array of fields');
  const fields = namespace.map((field) => asBytes(field, 'track namespace field'));
  if (fields.length > MAX_NAMESPACE_FIELDS) {
    throw new EncodeError(`track namespace has ${fields.length} fields, over the limit of ${MAX_NAMESPACE_FIELDS}`);
  }
  if (fields.some((field) => field.length === 0)) throw new EncodeError('track namespace fields must not be empty');
  if (byteLength(fields) > MAX_FULL_TRACK_NAME_BYTES) {
    throw new EncodeError(`track namespace is over ${MAX_FULL_TRACK_NAME_BYTES} bytes`);
  }
  return fields;
}

export function writeNamespace(w, namespace) {
  const fields = namespaceBytes(namespace);
  w.varint(fields.length);
  for (const field of fields) w.lengthBytes(field);
}

/** Read a Track Name (may be empty); the Full Track Name must stay within 4096 bytes. */
export function readTrackName(r, namespace) {
  const length = readLength(r, 'track name');
  if (length > MAX_FULL_TRACK_NAME_BYTES - byteLength(namespace)) {
    throw new ProtocolViolation(PV, `full track name is over ${MAX_FULL_TRACK_NAME_BYTES} bytes`);
  }
  return r.bytes(length);
}

/** Write Track Namespace then Track Name (the order of every message that names a track). */
export function writeFullTrackName(w, namespace, name) {
  const fields = namespaceBytes(namespace);
  const raw = asBytes(name, 'track name');
  if (byteLength(fields) + raw.length > MAX_FULL_TRACK_NAME_BYTES) {
    throw new EncodeError(`full track name is over ${MAX_FULL_TRACK_NAME_BYTES} bytes`);
  }
  writeNamespace(w, fields);
  w.lengthBytes(raw);
}

/** Read Track Namespace then Track Name: `[namespace, name]`. */
export function readFullTrackName(r) {
  const namespace = readNamespace(r);
  return [namespace, readTrackName(r, namespace)];
}

function byteLength(fields) {
  return fields.reduce((sum, field) => sum + field.length, 0);
}

const LITERAL = /[a-zA-Z0-9_]/;

/** The §8.8 human-readable form: fields joined by '-', then '--' and the track name; other bytes as .xx. */
export function renderName(namespace, name = null) {
  const field = (bytes) =>
    Array.from(bytes, (b) => {
      const c = String.fromCharCode(b);
      return LITERAL.test(c) ? c : `.${b.toString(16).padStart(2, '0')}`;
    }).join('');
  const text = namespace.map(field).join('-');
  return name === null ? text : `${text}--${field(name)}`;
}

// -- Key-Value-Pairs (§8.3) ------------------------------------------------------------------------------------

/** True when a Key-Value-Pair type is odd (its value is Length + bytes). */
export function isOdd(kind) {
  return typeof kind === 'bigint' ? (kind & 1n) === 1n : kind % 2 === 1;
}

/**
 * Read Key-Value-Pairs with delta-encoded types until the end of `r`: `[[type, value], ...]`, value a u64 for
 * an even type, a Uint8Array for an odd one. A type past 2^64-1 or a value over 65535 bytes is a
 * PROTOCOL_VIOLATION; a pair cut by the end is a KEY_VALUE_FORMATTING_ERROR.
 */
export function readKeyValues(r) {
  const pairs = [];
  let kind = 0;
  try {
    while (r.pos < r.end) {
      kind = add(kind, r.varint());
      if (kind > MAX_U64) throw new ProtocolViolation(PV, 'key-value type delta overflows 2^64-1');
      if (isOdd(kind)) {
        const length = r.varint();
        if (length > MAX_KVP_VALUE_BYTES) {
          throw new ProtocolViolation(PV, `key-value length ${length} is over ${MAX_KVP_VALUE_BYTES}`);
        }
        if (length > r.remaining) {
          throw new ProtocolViolation(KVFE, `key-value 0x${kind.toString(16)} runs past its enclosing length`);
        }
        pairs.push([kind, r.bytes(length)]);
      } else {
        pairs.push([kind, r.varint()]);
      }
    }
  } catch (err) {
    if (err instanceof NeedMoreData) throw new ProtocolViolation(KVFE, 'key-value pairs truncated');
    throw err;
  }
  return pairs;
}

/** Write Key-Value-Pairs sorted by type (stable: repeated types keep their order), types delta-encoded. */
export function writeKeyValues(w, pairs) {
  const sorted = pairs.map(([kind, value]) => [checkU64(kind, 'key-value type'), value]);
  sorted.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  let previous = 0;
  for (const [kind, value] of sorted) {
    w.varint(sub(kind, previous));
    previous = kind;
    if (isOdd(kind)) {
      if (!(value instanceof Uint8Array)) throw new EncodeError(`key-value type 0x${kind.toString(16)} is odd: bytes`);
      if (value.length > MAX_KVP_VALUE_BYTES) {
        throw new EncodeError(`key-value 0x${kind.toString(16)} is ${value.length} bytes, over ${MAX_KVP_VALUE_BYTES}`);
      }
      w.lengthBytes(value);
    } else {
      if (typeof value !== 'number' && typeof value !== 'bigint') {
        throw new EncodeError(`key-value type 0x${kind.toString(16)} is even: an integer`);
      }
      w.varint(value);
    }
  }
}

/** Key-Value-Pairs as bytes. */
export function encodeKeyValues(pairs) {
  const w = new Writer();
  writeKeyValues(w, pairs);
  return w.finish();
}

/** The value of the first pair of type `kind`, or undefined. */
export function getProperty(pairs, kind) {
  const pair = pairs?.find(([k]) => k === kind);
  return pair?.[1];
}

// -- Authorization Token (§8.9) --------------------------------------------------------------------------------

export const TokenAliasType = Object.freeze({ DELETE: 0x0, REGISTER: 0x1, USE_ALIAS: 0x2, USE_VALUE: 0x3 });

/**
 * Parse a Token structure: `{aliasType, alias?, tokenType?, value?}`. Anything undecodable is a
 * KEY_VALUE_FORMATTING_ERROR. Messages keep tokens as opaque bytes; this is for those who want to look inside.
 */
export function decodeToken(bytes) {
  const r = new Reader(bytes);
  let token;
  try {
    const aliasType = r.varint();
    if (aliasType === TokenAliasType.DELETE || aliasType === TokenAliasType.USE_ALIAS) {
      token = { aliasType, alias: r.varint() };
    } else if (aliasType === TokenAliasType.REGISTER) {
      const alias = r.varint();
      const tokenType = r.varint();
      token = { aliasType, alias, tokenType, value: r.bytes(r.remaining) };
    } else if (aliasType === TokenAliasType.USE_VALUE) {
      const tokenType = r.varint();
      token = { aliasType, tokenType, value: r.bytes(r.remaining) };
    } else {
      throw new ProtocolViolation(KVFE, `unknown token alias type ${aliasType}`);
    }
  } catch (err) {
    if (err instanceof NeedMoreData) throw new ProtocolViolation(KVFE, 'token structure truncated');
    throw err;
  }
  if (r.remaining) throw new ProtocolViolation(KVFE, 'token structure has trailing bytes');
  return token;
}

/** Serialize a Token structure; e.g. `encodeToken({aliasType: TokenAliasType.USE_VALUE, tokenType: 0, value})`. */
export function encodeToken({ aliasType, alias, tokenType, value }) {
  const w = new Writer();
  w.varint(aliasType);
  if (aliasType > TokenAliasType.USE_VALUE) throw new EncodeError(`unknown token alias type ${aliasType}`);
  if (aliasType !== TokenAliasType.USE_VALUE) {
    if (alias === undefined || alias === null) throw new EncodeError('this token alias type needs an alias');
    w.varint(alias);
  }
  if (aliasType === TokenAliasType.REGISTER || aliasType === TokenAliasType.USE_VALUE) {
    if (tokenType === undefined || tokenType === null || value === undefined || value === null) {
      throw new EncodeError('this token alias type needs a tokenType and a value');
    }
    w.varint(tokenType);
    w.bytes(asBytes(value, 'token value'));
  }
  return w.finish();
}

