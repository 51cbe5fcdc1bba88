// Shared by the web tests (and by tests/web/js_vectors.mjs): the vector file, the JSON form, seeded splits.
// Not a test file itself: run the tests with `node --test web/test/*.test.js`.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

let cached = null;

/**
 * The vectors written by tests/web/make_vectors.py from the Python codec: the file named by $MOQ_WEB_VECTORS
 * (pytest sets it), else a fresh one made with the repository's Python.
 */
export function loadVectors() {
  if (cached) return cached;
  let path = process.env.MOQ_WEB_VECTORS;
  if (!path) {
    path = join(mkdtempSync(join(tmpdir(), 'moq-web-')), 'vectors.json');
    const venv = join(ROOT, '.venv', 'bin', 'python');
    const python = existsSync(venv) ? venv : 'python3';
    execFileSync(python, [join(ROOT, 'tests', 'web', 'make_vectors.py'), path], { cwd: ROOT, stdio: 'inherit' });
  }
  cached = JSON.parse(readFileSync(path, 'utf8'));
  return cached;
}

export const hex = (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('hex');
export const unhex = (text) => new Uint8Array(Buffer.from(text, 'hex'));

/**
 * The JSON form of a decoded value (see tests/web/make_vectors.py): BigInt -> {u64: decimal}, Uint8Array ->
 * {hex}, null and undefined fields left out. A BigInt at or below 2^53-1 would show as {u64}, where Python
 * writes a number, so non-canonical u64s are caught too.
 */
export function toJSONForm(value) {
  if (typeof value === 'bigint') return { u64: value.toString() };
  if (value instanceof Uint8Array) return { hex: hex(value) };
  if (Array.isArray(value)) return value.map(toJSONForm);
  if (value !== null && typeof value === 'object') {
    const out = {};
    for (const [key, field] of Object.entries(value)) {
      if (field !== null && field !== undefined) out[key] = toJSONForm(field);
    }
    return out;
  }
  return value;
}

/** The JS value a JSON form stands for (the inverse of toJSONForm, absent fields staying absent). */
export function fromJSONForm(json) {
  if (Array.isArray(json)) return json.map(fromJSONForm);
  if (json !== null && typeof json === 'object') {
    const keys = Object.keys(json);
    if (keys.length === 1 && keys[0] === 'hex') return unhex(json.hex);
    if (keys.length === 1 && keys[0] === 'u64') return BigInt(json.u64);
    return Object.fromEntries(keys.map((key) => [key, fromJSONForm(json[key])]));
  }
  return json;
}

/** A seeded PRNG (mulberry32): floats in [0, 1). */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `bytes` cut at random points (some empty pieces too). */
export function randomSplit(bytes, random) {
  const pieces = [];
  let pos = 0;
  while (pos < bytes.length) {
    const size = random() < 0.1 ? 0 : 1 + Math.floor(random() * Math.min(bytes.length - pos, random() < 0.5 ? 4 : 64));
    pieces.push(bytes.subarray(pos, pos + size));
    pos += size;
  }
  return pieces;
}

/** `bytes` one byte at a time. */
export function bytewise(bytes) {
  return Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1));
}

/** Events in JSON form, consecutive CONTROL_DATA merged (their split depends on how the stream was fed). */
export function eventForms(events) {
  const out = [];
  for (const event of events.map(toJSONForm)) {
    const last = out.at(-1);
    if (event.type === 'CONTROL_DATA' && last?.type === 'CONTROL_DATA') last.data.hex += event.data.hex;
    else out.push(event);
  }
  return out;
}
