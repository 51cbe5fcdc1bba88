// The data plane (web/js/data.js) against the Python codec's vectors: datagrams, subgroup / fetch / padding /
// control streams fed whole, bytewise and split at random, damaged ones, and the encoders byte for byte.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  DataStreamParser,
  EndOfRangeKind,
  FetchObjectEncoder,
  ObjectStatus,
  StreamType,
  SubgroupIdMode,
  decodeDatagram,
  encodeDatagram,
  encodeFetchHeader,
  encodePaddingDatagram,
  encodePaddingStream,
  encodeSubgroupHeader,
  encodeSubgroupObject,
  peekStreamType,
  subgroupIdModeFor,
} from '../js/data.js';
import { EncodeError, NeedMoreData, ObjectTooLarge, ProtocolViolation } from '../js/errors.js';
import { GroupOrder } from '../js/params.js';
import { SUPPORTED_VERSIONS } from '../js/version.js';
import {
  bytewise,
  eventForms,
  fromJSONForm,
  hex,
  loadVectors,
  prng,
  randomSplit,
  toJSONForm,
  unhex,
} from './helpers.js';

/** What a parser makes of a stream fed in `pieces` then FIN: {events} or {error}, as the vectors write it. */
function parse(pieces, version, groupOrder) {
  const parser = new DataStreamParser(version, { fetchGroupOrder: groupOrder });
  const events = [];
  try {
    for (const piece of pieces) events.push(...parser.feed(piece));
    events.push(...parser.feed(new Uint8Array(0), true));
  } catch (err) {
    if (err instanceof ProtocolViolation) return { error: err.code };
    if (err instanceof ObjectTooLarge) return { error: 'too_large' };
    throw err; // anything else is a bug
  }
  return { events: eventForms(events) };
}

function datagramOutcome(bytes, version) {
  try {
    return { value: toJSONForm(decodeDatagram(bytes, version)) };
  } catch (err) {
    if (err instanceof ProtocolViolation) return { error: err.code };
    throw err;
  }
}

/** Re-encode a parsed stream from its events (JSON form), as a publisher would send it. */
function encodeStream(events, version, groupOrder) {
  const [header, ...rest] = events.map(fromJSONForm);
  const parts = [];
  if (header.type === 'SUBGROUP_HEADER') {
    parts.push(encodeSubgroupHeader(header, version));
    let prev = null;
    for (const obj of rest) {
      parts.push(encodeSubgroupObject(header, prev, obj));
      prev = obj.objectId;
    }
  } else if (header.type === 'FETCH_HEADER') {
    parts.push(encodeFetchHeader(header.requestId));
    const encoder = new FetchObjectEncoder(version, groupOrder);
    for (const entry of rest) parts.push(encoder.encode(entry));
  } else {
    return null;
  }
  return parts.map(hex).join('');
}

test('every Python datagram decodes to its fields and re-encodes to the same bytes', () => {
  const { datagrams } = loadVectors();
  for (const { version, hex: bytes, value } of datagrams) {
    assert.deepEqual(toJSONForm(decodeDatagram(unhex(bytes), version)), value, bytes);
    if (value.type === 'PADDING') {
      assert.equal(hex(encodePaddingDatagram(bytes.length / 2)), bytes);
    } else {
      assert.equal(hex(encodeDatagram(fromJSONForm(value), version)), bytes);
    }
  }
});

test('damaged datagrams: the same verdict as the Python codec', () => {
  for (const { version, hex: bytes, outcome } of loadVectors().datagram_mutations) {
    assert.deepEqual(datagramOutcome(unhex(bytes), version), outcome, `draft-${version} ${bytes}`);
  }
});

test('every Python stream gives the same events whole, bytewise and split at random', () => {
  const random = prng(18);
  const { streams } = loadVectors();
  const kinds = new Set(streams.map((s) => s.outcome.events[0]?.type));
  assert.deepEqual([...kinds].sort(), ['CONTROL_DATA', 'FETCH_HEADER', 'PADDING', 'SUBGROUP_HEADER']);
  for (const { version, group_order: order, hex: bytes, outcome } of streams) {
    const data = unhex(bytes);
    for (const pieces of [[data], bytewise(data), randomSplit(data, random)]) {
      assert.deepEqual(parse(pieces, version, order), outcome, `draft-${version} ${bytes} in ${pieces.length}`);
    }
  }
});

test('every Python subgroup and fetch stream re-encodes to the same bytes from its events', () => {
  for (const { version, group_order: order, hex: bytes, outcome } of loadVectors().streams) {
    const encoded = encodeStream(outcome.events, version, order);
    if (encoded !== null) assert.equal(encoded, bytes, `draft-${version}`);
  }
});

test('damaged streams: the same verdict as the Python codec, whole and bytewise', () => {
  const mutations = loadVectors().stream_mutations;
  assert.ok(mutations.some((m) => m.outcome.error === 'too_large'));
  for (const { version, group_order: order, hex: bytes, outcome } of mutations) {
    const data = unhex(bytes);
    assert.deepEqual(parse([data], version, order), outcome, `draft-${version} ${bytes}`);
    assert.deepEqual(parse(bytewise(data), version, order), outcome, `bytewise draft-${version} ${bytes}`);
  }
});

test('a stream cut short without FIN gives the events so far and waits', () => {
  for (const { version, group_order: order, hex: bytes, outcome } of loadVectors().streams) {
    if (outcome.events[0].type === 'CONTROL_DATA') continue; // passed through as it comes: no object boundaries
    const data = unhex(bytes);
    const parser = new DataStreamParser(version, { fetchGroupOrder: order });
    const events = eventForms(parser.feed(data.subarray(0, data.length - 1)));
    assert.deepEqual(events, outcome.events.slice(0, events.length));
  }
});

test('stream types, FIN rules and the parser after an error', () => {
  assert.equal(peekStreamType(unhex('10'), 22), StreamType.SUBGROUP_HEADER);
  assert.equal(peekStreamType(unhex('05'), 18), StreamType.FETCH_HEADER);
  assert.equal(peekStreamType(unhex('af00'), 22), StreamType.SETUP);
  assert.equal(peekStreamType(encodePaddingStream(), 22), StreamType.PADDING);
  assert.throws(() => peekStreamType(unhex('af'), 22), NeedMoreData);
  for (const bad of ['16', '00', '80 80', '0f', '7e']) {
    assert.throws(() => peekStreamType(unhex(bad.replace(' ', '')), 22), ProtocolViolation, bad);
  }
  // FIN in the middle of an object; the parser is dead afterwards and says so again.
  const parser = new DataStreamParser(22);
  assert.deepEqual(parser.feed(unhex('10010280')).length, 1);
  assert.equal(parser.atObjectBoundary, true);
  parser.feed(unhex('0005616263'));
  assert.equal(parser.atObjectBoundary, false);
  assert.throws(() => parser.feed(new Uint8Array(0), true), ProtocolViolation);
  assert.throws(() => parser.feed(unhex('00')), ProtocolViolation);
  // Data after FIN is a local error.
  const done = new DataStreamParser(22);
  done.feed(unhex('1001028000026869'), true);
  assert.throws(() => done.feed(unhex('00')), Error);
  // End of Timed-Out Range exists from draft-20 on.
  const timedOut = unhex('0507820c0102'); // FETCH_HEADER 7, then flags 0x20C (vi64 82 0c), Group 1, Object 2
  assert.equal(parse([timedOut], 20, 1).events[1].kind, EndOfRangeKind.TIMED_OUT);
  assert.ok('error' in parse([timedOut], 18, 1));
});

test('FIRST_OBJECT_ID headers resolve once the first object is parsed; payload views are not copied', () => {
  const header = { trackAlias: 1, groupId: 2, subgroupId: null, publisherPriority: null, subgroupIdMode: 1 };
  const stream = new Uint8Array([
    ...encodeSubgroupHeader(header, 22),
    ...encodeSubgroupObject(header, null, { objectId: 7, payload: new Uint8Array([1, 2, 3]) }),
  ]);
  const parser = new DataStreamParser(22);
  const [event, obj] = parser.feed(stream, true);
  assert.equal(event.subgroupId, null);
  assert.equal(parser.header.subgroupId, 7);
  assert.equal(obj.objectId, 7);
  assert.equal(obj.payload.buffer, stream.buffer); // arrived whole: a view into the chunk
  assert.equal(subgroupIdModeFor(0, 7), SubgroupIdMode.ZERO);
  assert.equal(subgroupIdModeFor(7, 7), SubgroupIdMode.FIRST_OBJECT_ID);
  assert.equal(subgroupIdModeFor(3, 7), SubgroupIdMode.EXPLICIT);
});

test('a fetch stream in descending order, the order chosen by Request ID', () => {
  for (const version of SUPPORTED_VERSIONS) {
    const encoder = new FetchObjectEncoder(version, GroupOrder.DESCENDING);
    const entries = [
      { type: 'FETCH_OBJECT', groupId: 9, subgroupId: 0, objectId: 0, publisherPriority: 1, payload: unhex('aa') },
      { type: 'FETCH_END_OF_RANGE', kind: EndOfRangeKind.NON_EXISTENT, groupId: 9, objectId: 4 },
      { type: 'FETCH_OBJECT', groupId: 5, subgroupId: 2, objectId: 1, publisherPriority: 1, payload: unhex('bb') },
      { type: 'FETCH_OBJECT', groupId: 2n ** 60n, subgroupId: null, objectId: 0, publisherPriority: 3 },
    ];
    assert.throws(() => entries.forEach((e) => encoder.encode(e)), EncodeError); // 2^60 after 5: not descending
    const good = new FetchObjectEncoder(version, GroupOrder.DESCENDING);
    const bytes = new Uint8Array([...encodeFetchHeader(3), ...entries.slice(0, 3).flatMap((e) => [...good.encode(e)])]);
    const byRequest = (id) => (id === 3 ? GroupOrder.DESCENDING : GroupOrder.ASCENDING);
    const events = new DataStreamParser(version, { fetchGroupOrder: byRequest }).feed(bytes, true);
    assert.deepEqual(
      events.map((e) => [e.type, e.groupId, e.objectId]),
      [['FETCH_HEADER', undefined, undefined], ...entries.slice(0, 3).map((e) => [e.type, e.groupId, e.objectId])],
    );
  }
});

test('objects over the limits are ObjectTooLarge; limits are per parser', () => {
  const parser = new DataStreamParser(22, { maxPayloadBytes: 4 });
  parser.feed(unhex('1001028000'));
  assert.throws(() => parser.feed(unhex('05')), ObjectTooLarge);
  assert.throws(() => parser.feed(unhex('00')), ObjectTooLarge);
  assert.deepEqual(new DataStreamParser(22, { maxPayloadBytes: 4 }).feed(unhex('1001028000046162636400'))[1].payload, unhex('61626364'));
});

test('encoder refusals', () => {
  const header = { trackAlias: 1, groupId: 2, subgroupId: 0, publisherPriority: 0, subgroupIdMode: 0 };
  assert.throws(() => encodeSubgroupHeader({ ...header, subgroupIdMode: 3 }, 22), EncodeError);
  assert.throws(() => encodeSubgroupHeader({ ...header, subgroupIdMode: 2, subgroupId: null }, 22), EncodeError);
  assert.throws(() => encodeSubgroupHeader({ ...header, publisherPriority: 256 }, 22), EncodeError);
  assert.throws(() => encodeSubgroupObject(header, 5, { objectId: 5 }), EncodeError); // not after 5
  assert.throws(() => encodeSubgroupObject(header, null, { objectId: 0, properties: [[2, 1]] }), EncodeError);
  const withProps = { ...header, hasProperties: true };
  const eog = { objectId: 0, properties: [[2, 1]], status: ObjectStatus.END_OF_GROUP };
  assert.throws(() => encodeSubgroupObject(withProps, null, eog), EncodeError);
  assert.throws(() => encodeSubgroupObject(header, null, { objectId: 0, status: 1 }), EncodeError);
  const dgram = { trackAlias: 1, groupId: 1, objectId: 0, publisherPriority: null };
  assert.throws(() => encodeDatagram({ ...dgram, status: 3, endOfGroup: true }, 22), EncodeError);
  assert.throws(() => encodeDatagram({ ...dgram, status: 3, payload: unhex('00') }, 22), EncodeError);
  assert.throws(() => new FetchObjectEncoder(18).endOfRange(EndOfRangeKind.TIMED_OUT, 0, 0), EncodeError);
  const encoder = new FetchObjectEncoder(22);
  encoder.objectHeader(1, 0, 5, 0, null, 0);
  assert.throws(() => encoder.objectHeader(1, 0, 5, 0, null, 0), EncodeError); // object 5 again
  assert.throws(() => encoder.objectHeader(0, 0, 9, 0, null, 0), EncodeError); // group 0 after 1, ascending
  assert.throws(() => encodePaddingDatagram(4), EncodeError);
});
