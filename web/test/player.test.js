// The player's logic that needs no browser: group buffering and skipping, LOC times, catalog deltas, names.
// (The browser end to end is tests/web/test_browser.py, in real Chromium.)

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { decodeField, displayName, encodeField, namespaceFromPath, watchPath } from '../js/names.js';
import { GroupBuffer, LocProperty, applyDelta, captureTimeUs } from '../js/player.js';

const enc = new TextEncoder();

function obj(groupId, objectId, { at = 0, timeUs = (groupId * 30 + objectId) * 33_333 } = {}) {
  return { groupId, objectId, payload: new Uint8Array(10), receivedAt: at, timeUs };
}

function video(options = {}) {
  return new GroupBuffer({ needsStart: true, maxGroups: 100, maxBytes: 1 << 20, ...options });
}

test('objects come out group by group, in object order, once the previous group has ended', () => {
  const buffer = video();
  const now = 1000;
  buffer.push(obj(1, 0, { at: now }));
  buffer.push(obj(1, 2, { at: now }));
  buffer.push(obj(1, 1, { at: now }));
  buffer.push(obj(2, 0, { at: now }));
  assert.equal(buffer.take(now), null, 'the first objects are held a moment, for early groups to line up');
  const later = now + 50;
  assert.deepEqual([buffer.take(later), buffer.take(later), buffer.take(later)].map((o) => o.objectId), [0, 1, 2]);
  assert.equal(buffer.take(later), null, 'group 1 has not ended and has been active recently: wait');
  buffer.end(1, false, later);
  assert.equal(buffer.take(later).groupId, 2, 'ended, and 2 follows 1: go on at once');
  assert.equal(buffer.dropped, 0);
});

test('a group that never ends is left behind after a while; a gap in group ids counts as dropped', () => {
  const buffer = video();
  buffer.push(obj(1, 0, { at: 0 }));
  buffer.push(obj(4, 0, { at: 10 }));
  assert.equal(buffer.take(100).groupId, 1);
  assert.equal(buffer.take(100), null);
  assert.equal(buffer.take(1000).groupId, 4, 'stale: move on');
  assert.equal(buffer.dropped, 2, 'groups 2 and 3 never came');
});

test('video starts at the oldest group that begins with object 0; later objects of older groups are refused', () => {
  const buffer = video();
  buffer.push(obj(5, 3, { at: 0 }));
  buffer.push(obj(6, 0, { at: 0 }));
  assert.equal(buffer.take(100).groupId, 6);
  assert.equal(buffer.push(obj(5, 4)), false, 'older than what is playing');
});

test('a hole inside a group gives up the rest of it', () => {
  const buffer = video();
  buffer.push(obj(1, 0));
  buffer.push(obj(1, 2));
  buffer.push(obj(2, 0));
  assert.equal(buffer.take(100).objectId, 0);
  assert.deepEqual([buffer.take(100).groupId, buffer.dropped], [2, 1]);
});

test('skipping to the newest group drops the ones in between', () => {
  const buffer = video();
  for (let g = 1; g <= 4; g++) for (let o = 0; o < 30; o++) buffer.push(obj(g, o));
  buffer.take(100);
  assert.ok(buffer.behindMs() > 2900);
  assert.equal(buffer.newestStart(), 4);
  assert.equal(buffer.skipTo(4), 3);
  assert.deepEqual([buffer.take(100).groupId, buffer.dropped], [4, 3]);
  assert.ok(buffer.behindMs() < 1000);
});

test('audio (any object starts a group) sees how far behind the next group is', () => {
  const audio = new GroupBuffer({ needsStart: false, maxGroups: 100, maxBytes: 1 << 20 });
  for (let g = 0; g < 100; g++) audio.push(obj(g, 0, { timeUs: g * 20_000 }));
  audio.take(100);
  assert.equal(audio.behindMs(), 1960, 'the next object is in the next group');
});

test('the buffer is bounded: the oldest groups go first', () => {
  const buffer = video({ maxGroups: 3 });
  for (let g = 1; g <= 5; g++) buffer.push(obj(g, 0));
  assert.deepEqual([buffer.ids, buffer.dropped], [[3, 4, 5], 2]);
  const small = video({ maxBytes: 25 });
  for (let g = 1; g <= 4; g++) small.push(obj(g, 0));
  assert.deepEqual(small.ids, [3, 4]);
});

test('LOC capture time: microseconds, or TIMESCALE units', () => {
  assert.equal(captureTimeUs([[LocProperty.TIMESTAMP, 1_700_000_000_000_000]]), 1_700_000_000_000_000);
  assert.equal(captureTimeUs([[LocProperty.TIMESCALE, 90000], [LocProperty.TIMESTAMP, 90000]]), 1_000_000);
  assert.equal(captureTimeUs([[LocProperty.TIMESTAMP, 48000]], 48000), 1_000_000);
  assert.equal(captureTimeUs([]), null);
});

test('catalog delta updates: add, remove, clone, update', () => {
  const catalog = { version: 'draft-01', tracks: [{ name: 'video', codec: 'avc1.42c01e', packaging: 'loc' }] };
  const next = applyDelta(catalog, {
    generatedAt: 5,
    deltaUpdate: [
      { op: 'add', tracks: [{ name: 'audio', codec: 'opus', packaging: 'loc' }] },
      { op: 'clone', tracks: [{ parentName: 'video', name: 'video-hd', width: 1920 }] },
      { op: 'update', tracks: [{ name: 'video', bitrate: 1000 }] },
      { op: 'remove', tracks: [{ name: 'audio' }] },
    ],
  });
  assert.equal(next.generatedAt, 5);
  assert.deepEqual(
    next.tracks.map((t) => [t.name, t.bitrate ?? null, t.width ?? null]),
    [
      ['video', 1000, null],
      ['video-hd', null, 1920],
    ],
  );
});

test('broadcast names in paths: bytes percent-encoded, "/" between fields, as relay/web.py writes them', () => {
  const ns = [enc.encode('live'), enc.encode('late show/2'), new Uint8Array([0xff, 0x41])];
  const path = watchPath(ns);
  assert.equal(path, '/watch/live/late%20show%2F2/%FFA');
  assert.deepEqual(namespaceFromPath(path), ns);
  assert.equal(namespaceFromPath('/watch/'), null);
  assert.equal(encodeField('a-b_c.d~e'), 'a-b_c.d~e');
  assert.deepEqual(decodeField('caf%C3%A9'), enc.encode('café'));
  assert.deepEqual(decodeField('café'), enc.encode('café'));
  assert.deepEqual(decodeField('100%'), enc.encode('100%'));
  assert.equal(displayName([enc.encode('live'), enc.encode('demo')]), 'live/demo');
});
