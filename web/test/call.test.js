// The call's logic that needs no browser: the publisher's tracks and the subscriptions it serves (tracks.js,
// over a fake WebTransport), the catalog and LOC properties it emits (publisher.js), the active speaker
// (speaker.js), room paths (names.js). The pages end to end run in Chromium: tests/web/test_call.py.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as moqt from '../js/moqt.js';
import { callPath, namespaceFromPath } from '../js/names.js';
import { PlayoutClock } from '../js/player.js';
import {
  WallClock,
  audioLevel,
  audioProperties,
  avcCodecFor,
  buildCatalog,
  videoProperties,
} from '../js/publisher.js';
import { SpeakerDetector } from '../js/speaker.js';
import {
  LocalTrack,
  MAX_QUEUED_BYTES,
  MAX_QUEUED_MS,
  ServedSubscription,
  sendOrderFor,
  startLocation,
} from '../js/tracks.js';

const V = 22;
const enc = new TextEncoder();
const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

/** A WebTransport stand-in: every uni stream it opens records its bytes, FIN and reset. */
class FakeTransport {
  streams = [];

  createUnidirectionalStream({ sendOrder } = {}) {
    const record = { sendOrder, chunks: [], closed: false, aborted: false };
    this.streams.push(record);
    const stream = new WritableStream({
      write(chunk) {
        record.chunks.push(chunk);
      },
      close() {
        record.closed = true;
      },
      abort() {
        record.aborted = true;
      },
    });
    // WebTransportSendStream.sendOrder can be changed while the stream is open.
    Object.defineProperty(stream, 'sendOrder', { get: () => record.sendOrder, set: (v) => (record.sendOrder = v) });
    return Promise.resolve(stream);
  }
}

/**
 * A WebTransport whose peer takes nothing until told to: each stream's writes wait until `resume()` (the peer's
 * flow control, or a page that cannot keep up); with `opens: false` its streams never even open (no stream credit).
 */
class StalledTransport {
  streams = [];
  flowing = false;
  #waiting = [];

  constructor({ opens = true } = {}) {
    this.opens = opens;
  }

  createUnidirectionalStream() {
    const record = { chunks: [], aborted: false };
    this.streams.push(record);
    if (!this.opens) return new Promise(() => {});
    const waiting = this.#waiting;
    const transport = this;
    return Promise.resolve(
      new WritableStream({
        start(controller) {
          // Aborted at once, even with a write in flight (sink.abort would wait for that write).
          controller.signal.addEventListener('abort', () => (record.aborted = true));
        },
        write(chunk) {
          record.chunks.push(chunk);
          return transport.flowing ? undefined : new Promise((resolve) => waiting.push(resolve));
        },
      }),
    );
  }

  /** The peer takes everything written so far, and from now on whatever is written. */
  resume() {
    this.flowing = true;
    for (const resolve of this.#waiting.splice(0)) resolve();
  }
}

function bytesOf(record) {
  return Uint8Array.from(record.chunks.flatMap((c) => [...c]));
}

/** The request stream's writer side, collecting the messages written on it. */
function requestWriter() {
  const record = { chunks: [], closed: false, aborted: false };
  const writer = new WritableStream({
    write(chunk) {
      record.chunks.push(chunk);
    },
    close() {
      record.closed = true;
    },
    abort() {
      record.aborted = true;
    },
  }).getWriter();
  record.messages = () => {
    const reader = new moqt.MessageReader(V);
    return reader.feed(bytesOf(record));
  };
  return { writer, record };
}

function parseStream(record) {
  const parser = new moqt.DataStreamParser(V);
  return parser.feed(bytesOf(record), true);
}

function serve(track, parameters = {}, transport = new FakeTransport(), now = undefined) {
  const { writer, record } = requestWriter();
  const stats = { objectsSent: 0, bytesSent: 0, streamsOpened: 0, groupsDropped: 0 };
  const sub = new ServedSubscription({
    transport,
    version: V,
    track,
    requestId: 1,
    trackAlias: 7,
    parameters,
    writer,
    stats,
    now,
  });
  return { sub, transport, request: record, stats };
}

const payload = (n) => new Uint8Array([n, n, n]);

test('a LocalTrack keeps its newest groups, ends a group when the next one starts, refuses going back', () => {
  const track = new LocalTrack(['team', 'alice'], 'video', { maxGroups: 2 });
  track.append(10, 0, payload(1));
  track.append(10, 1, payload(2));
  track.append(11, 0, payload(3));
  assert.equal(track.groups[0].ended, true, 'group 10 ended when 11 began');
  track.append(12, 0, payload(4));
  assert.deepEqual(track.groups.map((g) => g.id), [11, 12]);
  assert.deepEqual(track.largest, { group: 12, object: 0 });
  assert.throws(() => track.append(11, 1, payload(5)), /not the open group/);
  assert.throws(() => track.append(12, 0, payload(5)), /does not follow/);
});

test('start locations: the latest group by default, relative and absolute filters, next object', () => {
  const F = moqt.LocationFilterType;
  const largest = { group: 20, object: 4 };
  assert.deepEqual(startLocation(null, largest), { group: 20, object: 0 });
  assert.deepEqual(startLocation(null, null), { group: 0, object: 0 });
  assert.deepEqual(startLocation({ type: F.RELATIVE_START_GROUP, startGroup: 1 }, largest), { group: 20, object: 0 });
  assert.deepEqual(startLocation({ type: F.RELATIVE_START_GROUP, startGroup: 0 }, largest), { group: 21, object: 0 });
  assert.deepEqual(startLocation({ type: F.NEXT_OBJECT }, largest), { group: 20, object: 5 });
  assert.deepEqual(startLocation({ type: F.ABSOLUTE_START, startGroup: 18, startObject: 2 }, largest), {
    group: 18,
    object: 2,
  });
});

test('a subscriber arriving mid-group gets SUBSCRIBE_OK, the latest group from its keyframe, then live', async () => {
  const track = new LocalTrack(['team', 'alice'], 'video', { priority: 128 });
  const props = (key, t) =>
    videoProperties({ keyframe: key, timestampUs: t, description: key ? enc.encode('avcC') : null });
  track.append(100, 0, payload(1), props(true, 1000));
  track.append(100, 1, payload(2), props(false, 2000));
  track.append(101, 0, payload(3), props(true, 3000));
  track.append(101, 1, payload(4), props(false, 4000));
  const { sub, transport, request, stats } = serve(track);
  await sub.start();
  track.append(101, 2, payload(5), props(false, 5000));
  track.append(102, 0, payload(6), props(true, 6000)); // ends group 101
  await tick();

  const [ok] = request.messages();
  assert.equal(ok.type, 'SUBSCRIBE_OK');
  assert.equal(ok.trackAlias, 7);
  assert.deepEqual(ok.parameters.largestObject, { group: 101, object: 1 });
  assert.equal(transport.streams.length, 2, 'groups 101 and 102; group 100 is before the start');
  const [first, second] = transport.streams;
  assert.equal(first.closed, true, 'group 101 is complete: FIN');
  assert.equal(second.closed, false);
  const events = parseStream(first);
  const header = events[0];
  assert.equal(header.type, 'SUBGROUP_HEADER');
  assert.equal(header.trackAlias, 7);
  assert.equal(header.groupId, 101);
  assert.equal(header.publisherPriority, 128);
  assert.equal(header.firstObject, true);
  assert.equal(header.endOfGroup, true);
  const objects = events.filter((e) => e.type === 'SUBGROUP_OBJECT');
  assert.deepEqual(objects.map((o) => o.objectId), [0, 1, 2]);
  assert.deepEqual([...objects[2].payload], [5, 5, 5]);
  assert.equal(moqt.getProperty(objects[0].properties, 0x10), 3000);
  assert.deepEqual([...moqt.getProperty(objects[0].properties, 0x09)], [0xe0]);
  assert.deepEqual([...moqt.getProperty(objects[0].properties, 0x0d)], [...enc.encode('avcC')]);
  assert.deepEqual([...moqt.getProperty(objects[1].properties, 0x09)], [0xc0]);
  assert.equal(moqt.getProperty(objects[1].properties, 0x0d), undefined, 'VIDEO_CONFIG rides on keyframes only');
  assert.equal(stats.streamsOpened, 2);
  assert.equal(stats.objectsSent, 4);
});

test('send order: subscriber priority, then publisher priority, then the older group first', () => {
  assert.ok(sendOrderFor(32, 128, 0) > sendOrderFor(96, 0, 0), 'subscriber priority first');
  assert.ok(sendOrderFor(128, 64, 0) > sendOrderFor(128, 128, 0), 'then publisher priority');
  assert.ok(sendOrderFor(128, 128, 1) > sendOrderFor(128, 128, 2), 'then the older group');
  assert.ok(Number.isSafeInteger(sendOrderFor(0, 0, 0)));
});

test('REQUEST_UPDATE changes the priority of open streams and of those opened next, answered with REQUEST_OK', async () => {
  const track = new LocalTrack(['team', 'bob'], 'video');
  const { sub, transport, request } = serve(track, { subscriberPriority: 160 });
  await sub.start();
  track.append(1, 0, payload(1));
  await tick();
  const before = transport.streams[0].sendOrder;
  sub.update({ subscriberPriority: 96 });
  assert.equal(transport.streams[0].sendOrder, sendOrderFor(96, track.publisherPriority, 0), 'the open stream');
  assert.ok(transport.streams[0].sendOrder > before);
  track.append(2, 0, payload(2));
  await tick();
  assert.equal(transport.streams.length, 2);
  assert.equal(transport.streams[1].sendOrder, sendOrderFor(96, track.publisherPriority, 1), 'the next one');
  assert.deepEqual(request.messages().map((m) => m.type), ['SUBSCRIBE_OK', 'REQUEST_OK']);
});

test('the end of the track: FIN on the open streams, then PUBLISH_DONE counting them', async () => {
  const track = new LocalTrack(['team', 'bob'], 'audio', { priority: 64 });
  const { sub, transport, request } = serve(track);
  await sub.start();
  for (let g = 1; g <= 3; g++) track.append(g, 0, payload(g));
  track.end();
  await sub.over;
  await tick();
  assert.equal(transport.streams.length, 3);
  assert.ok(transport.streams.every((s) => s.closed && !s.aborted));
  const messages = request.messages();
  assert.deepEqual(messages.map((m) => m.type), ['SUBSCRIBE_OK', 'PUBLISH_DONE']);
  assert.equal(messages[1].statusCode, moqt.PublishDoneCode.TRACK_ENDED);
  assert.equal(messages[1].streamCount, 3);
  assert.equal(request.closed, true);
});

test('a cancelled subscription resets its open streams and sends nothing more', async () => {
  const track = new LocalTrack(['team', 'bob'], 'video');
  const { sub, transport } = serve(track);
  await sub.start();
  track.append(1, 0, payload(1));
  await tick();
  sub.cancel();
  track.append(1, 1, payload(2));
  track.append(2, 0, payload(3));
  await sub.over;
  await tick();
  assert.equal(transport.streams.length, 1);
  assert.equal(transport.streams[0].aborted, true);
  assert.equal(track.listeners, 0);
});

test("a subscriber that takes nothing loses its older groups past MAX_QUEUED_BYTES, finished ones too", async () => {
  const track = new LocalTrack(['team', 'bob'], 'video');
  const transport = new StalledTransport();
  const { sub, stats } = serve(track, {}, transport);
  await sub.start();
  const size = 300 * 1024;
  const groups = Math.floor(MAX_QUEUED_BYTES / size) + 1; // the first group that takes the total past the bound
  for (let g = 1; g <= groups; g++) {
    assert.equal(stats.groupsDropped, 0);
    track.append(g, 0, new Uint8Array(size));
    await tick();
  }
  // Every group before the last was finished (the next one began) and is still waiting: they all go.
  assert.equal(stats.groupsDropped, groups - 1);
  assert.deepEqual(
    transport.streams.map((s) => s.aborted),
    [...Array(groups - 1).fill(true), false],
  );
});

test('an older group whose bytes have waited MAX_QUEUED_MS is dropped once a newer group begins', async () => {
  for (const opens of [true, false]) {
    let clock = 0;
    const track = new LocalTrack(['team', 'bob'], 'audio');
    const transport = new StalledTransport({ opens });
    const { sub, stats } = serve(track, {}, transport, () => clock);
    await sub.start();
    // Audio: a one-object group every 20 ms, a few bytes each (nowhere near the byte bound).
    let group = 0;
    const frame = async () => {
      track.append(++group, 0, payload(group));
      await tick();
      clock += 20;
    };
    while (clock < MAX_QUEUED_MS) await frame();
    assert.equal(stats.groupsDropped, 0, `opens=${opens}: nothing has waited MAX_QUEUED_MS yet`);
    await frame();
    assert.equal(stats.groupsDropped, 1, `opens=${opens}: the first group has`);
    for (let i = 0; i < 50; i++) await frame();
    // The peer is stalled throughout: only the last MAX_QUEUED_MS of groups are still there to send.
    assert.equal(stats.groupsDropped, group - MAX_QUEUED_MS / 20, `opens=${opens}`);
    if (opens) {
      // Once the peer takes what is written, it gets every group however far apart they are made.
      transport.resume();
      await tick();
      const before = stats.groupsDropped;
      for (let i = 0; i < 50; i++) {
        await frame();
        clock += MAX_QUEUED_MS;
      }
      assert.equal(stats.groupsDropped, before, 'dropped while the peer takes everything');
    }
  }
});

test('forward 0 sends nothing; forward 1 again resumes at the next group', async () => {
  const track = new LocalTrack(['team', 'bob'], 'video');
  const { sub, transport } = serve(track, { forward: 0 });
  await sub.start();
  track.append(1, 0, payload(1));
  sub.update({ forward: 1 });
  track.append(1, 1, payload(2));
  track.append(2, 0, payload(3));
  await tick();
  assert.equal(transport.streams.length, 1);
  assert.equal(parseStream(transport.streams[0])[0].groupId, 2);
});

test('the catalog has the shape moq.media.catalog writes: version, generatedAt, LOC tracks in field order', () => {
  const catalog = buildCatalog({
    video: { codec: 'avc1.42e01f', width: 320, height: 240, framerate: 20, bitrate: 600000, gopMs: 1000 },
    audio: { codec: 'opus', samplerate: 48000, channels: 1, bitrate: 32000 },
    label: 'alice',
    generatedAt: 1700000000000,
  });
  assert.equal(catalog.version, 'draft-01');
  assert.deepEqual(Object.keys(catalog), ['version', 'generatedAt', 'tracks']);
  assert.deepEqual(Object.keys(catalog.tracks[0]), [
    'name', 'packaging', 'isLive', 'role', 'label', 'renderGroup', 'codec', 'framerate', 'bitrate',
    'maxGopDuration', 'width', 'height',
  ]);
  assert.deepEqual(catalog.tracks[1], {
    name: 'audio', packaging: 'loc', isLive: true, role: 'audio', label: 'alice', renderGroup: 1, codec: 'opus',
    bitrate: 32000, samplerate: 48000, channelConfig: '1',
  });
  assert.deepEqual(buildCatalog({ generatedAt: 1 }).tracks, [], 'camera and microphone off: no tracks');
});

test('H.264 levels by size; audio levels in -dBov; wall-clock capture times only go up', () => {
  assert.equal(avcCodecFor(640, 360), 'avc1.42e01f');
  assert.equal(avcCodecFor(1920, 1080), 'avc1.42e028');
  assert.equal(avcCodecFor(3840, 2160), 'avc1.42e033');
  assert.equal(audioLevel(new Float32Array(480)), 127);
  assert.equal(audioLevel(new Float32Array(480).fill(1)), 0);
  assert.equal(audioLevel(new Float32Array(480).fill(0.1)), 20);
  const [[type, value]] = audioProperties({ level: 20, timestampUs: 1 });
  assert.equal(type, 0x0c);
  assert.equal(value, 0x80 | 20, 'loud: the V flag is set');
  assert.equal(audioProperties({ level: 90, timestampUs: 1 })[0][1], 90);
  const clock = new WallClock();
  const base = 1_700_000_000_000_000;
  // Reads every 100 ms; the second comes with the least delay (10 ms): that is the offset, once settled.
  const reads = [[0, 50_000], [100_000, 110_000], [200_000, 230_000], [300_000, 320_000], [400_000, 420_000]];
  for (const [capture, read] of reads) {
    assert.equal(clock.ready, false);
    clock.observe(capture, base + read);
  }
  assert.equal(clock.ready, true, '300 ms and 5 reads: settled');
  clock.observe(500_000, base + 500_000); // no delay at all: too late to change the offset
  assert.equal(clock.toWall(500_000), base + 510_000);
  assert.equal(clock.toWall(400_000), base + 510_001, 'never backwards');
});

test('the active speaker: the loudest past the threshold, kept through pauses, changed only by a clear margin', () => {
  const speaker = new SpeakerDetector({ threshold: 77, decay: 0.5, margin: 6 });
  assert.equal(speaker.update(new Map([['a', 100], ['b', null]])), null, 'nobody loud enough');
  assert.equal(speaker.update(new Map([['a', 30], ['b', 100]])), 'a');
  assert.equal(speaker.update(new Map([['a', null], ['b', 100]])), 'a', 'a pause keeps the speaker');
  assert.equal(speaker.update(new Map([['a', 32], ['b', 30]])), 'a', 'within the margin: no change');
  for (let i = 0; i < 4; i++) speaker.update(new Map([['a', null], ['b', 30]]));
  assert.equal(speaker.current, 'b');
  assert.equal(speaker.update(new Map([['a', 20]])), 'a', 'b left');
  assert.equal(speaker.changes, 3);
});

test("the playout clock follows the slowest track's best transit; a new subscription starts its track afresh", () => {
  const clock = new PlayoutClock(100);
  const now = performance.now();
  clock.observe(now - 5, now, 'video'); // video: 5 ms after capture
  clock.observe(now - 9, now, 'video');
  assert.equal(clock.offset, 105);
  clock.observe(now - 40, now, 'audio'); // audio through its encoder: 40 ms
  clock.observe(now - 60, now, 'audio');
  assert.equal(clock.offset, 140, 'audio would be late on the video clock: the video waits for it');
  clock.forget('audio');
  assert.equal(clock.offset, 105);
});

test('an adaptive playout clock follows how late objects become playable, within its bounds', () => {
  let now = 1000;
  const clock = new PlayoutClock(100, { adaptive: { min: 20, max: 400 }, now: () => now });
  // Audio arrives 30 ms after capture at best. The first 3 s (the burst a new subscriber starts with) are not
  // sampled, however late: the jitter stays where it starts, jitterMs.
  clock.observe(now - 30, now, 'audio');
  for (let i = 0; i < 100; i++) clock.ready(now - 30, now + 900, 'audio');
  now += 250;
  assert.equal(clock.offset, 30 + 100);
  now += 3000;
  // Then it is decoded 0-9 ms after that (ten samples of each): the 98th percentile (9 ms) + the 10 ms margin =
  // 19 ms, under the floor of 20 ms. It comes down 20 ms each 250 ms at most.
  for (let i = 0; i < 100; i++) {
    clock.observe(now - 30, now, 'audio');
    clock.ready(now - 30, now + (i % 10), 'audio');
  }
  now += 250;
  assert.equal(clock.offset, 30 + 80);
  assert.equal(clock.offset, 30 + 80, 'not again before 250 ms');
  for (let i = 0; i < 3; i++) {
    now += 250;
    void clock.offset;
  }
  assert.equal(clock.offset, 30 + 20);
  assert.equal(clock.jitter, 20);
  // The machine gets busy: 10 of the last 200 objects are playable 150 ms late. It goes up at once.
  for (let i = 0; i < 100; i++) clock.ready(now - 30, now + (i % 10 === 0 ? 150 : 5), 'audio');
  now += 250;
  assert.equal(clock.offset, 30 + 160);
  // Much later, never past the ceiling.
  for (let i = 0; i < 200; i++) clock.ready(now - 30, now + 900, 'audio');
  now += 250;
  assert.equal(clock.offset, 30 + 400);
  // A fixed clock takes no notice of when objects became playable.
  const fixed = new PlayoutClock(100, { now: () => now });
  fixed.observe(now - 30, now, 'audio');
  now += 5000;
  for (let i = 0; i < 200; i++) fixed.ready(now - 30, now + 900, 'audio');
  now += 250;
  assert.equal(fixed.offset, 130);
});

test('room paths: /call/ROOM, fields percent-encoded as in /watch/NAME', () => {
  assert.equal(callPath(['team']), '/call/team');
  assert.equal(callPath(['my team', 'a/b']), '/call/my%20team/a%2Fb');
  assert.deepEqual(namespaceFromPath('/call/my%20team/a%2Fb', '/call/'), [enc.encode('my team'), enc.encode('a/b')]);
  assert.equal(namespaceFromPath('/call/', '/call/'), null);
  assert.equal(namespaceFromPath('/call/team'), null, 'a call is no broadcast');
});
