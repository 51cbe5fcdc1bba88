// Control messages and Message Parameters (web/js/messages.js, params.js) against the Python codec's vectors:
// every message class of drafts 18, 20, 21 and 22, decoded, re-encoded, fed whole, bytewise and split;
// damaged messages must get the same verdict from both codecs.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { EncodeError, NeedMoreData, ProtocolViolation, SessionErrorCode } from '../js/errors.js';
import {
  MessageReader,
  SetupOption,
  createSetup,
  decodeMessage,
  encodeMessage,
  messageNames,
  setupOption,
} from '../js/messages.js';
import { LocationFilterType, allowedParameters, definedParameters } from '../js/params.js';
import { decodeToken, encodeToken, utf8 } from '../js/primitives.js';
import { SUPPORTED_VERSIONS, alpn, versionFromAlpn } from '../js/version.js';
import {
  bytewise,
  fromJSONForm,
  hex,
  loadVectors,
  prng,
  randomSplit,
  toJSONForm,
  unhex,
} from './helpers.js';

const PV = SessionErrorCode.PROTOCOL_VIOLATION;

/** A decoded message in JSON form; tokens re-encoded minimally, as the Python form holds them. */
function messageForm(msg) {
  const form = toJSONForm(msg);
  const tokens = msg.parameters?.authorizationTokens;
  if (tokens) form.parameters.authorizationTokens = tokens.map((t) => toJSONForm(encodeToken(decodeToken(t))));
  return form;
}

function outcome(bytes, version) {
  try {
    const [msg, consumed] = decodeMessage(bytes, version);
    return { value: messageForm(msg), consumed };
  } catch (err) {
    if (err instanceof NeedMoreData) return { need_more: true };
    if (err instanceof ProtocolViolation) return { error: err.code };
    throw err; // anything else is a bug: bad input may only raise the codec's own errors
  }
}

test('the vectors cover every message of every draft', () => {
  const { messages } = loadVectors();
  for (const version of SUPPORTED_VERSIONS) {
    const seen = new Set(messages.filter((v) => v.version === version).map((v) => v.value.type));
    assert.deepEqual([...seen].sort(), messageNames(version).sort(), `draft-${version}`);
  }
});

test('every Python message decodes to its fields', () => {
  for (const { version, hex: bytes, value } of loadVectors().messages) {
    const [msg, consumed] = decodeMessage(unhex(bytes), version);
    assert.deepEqual(messageForm(msg), value, `draft-${version} ${bytes}`);
    assert.equal(consumed, bytes.length / 2);
  }
});

test('every Python message re-encodes to the same bytes, from its decoding and from its JSON form', () => {
  for (const { version, hex: bytes, value } of loadVectors().messages) {
    const [msg] = decodeMessage(unhex(bytes), version);
    assert.equal(hex(encodeMessage(msg, version)), bytes, `re-encoding draft-${version} ${value.type}`);
    assert.equal(hex(encodeMessage(fromJSONForm(value), version)), bytes, `encoding draft-${version} ${value.type}`);
  }
});

test('MessageReader gives the same messages whole, bytewise and split at random', () => {
  const random = prng(22);
  for (const version of SUPPORTED_VERSIONS) {
    const vectors = loadVectors().messages.filter((v) => v.version === version);
    const stream = unhex(vectors.map((v) => v.hex).join(''));
    const expected = vectors.map((v) => v.value);
    for (const pieces of [[stream], bytewise(stream), randomSplit(stream, random), randomSplit(stream, random)]) {
      const reader = new MessageReader(version);
      const got = pieces.flatMap((piece) => reader.feed(piece));
      assert.deepEqual(got.map(messageForm), expected, `draft-${version}, ${pieces.length} pieces`);
      assert.equal(reader.buffered, 0);
    }
  }
});

test('damaged messages: the same verdict as the Python codec (value, error code or need more)', () => {
  const mutations = loadVectors().message_mutations;
  assert.ok(mutations.length > 500);
  for (const { version, hex: bytes, outcome: expected } of mutations) {
    assert.deepEqual(outcome(unhex(bytes), version), expected, `draft-${version} ${bytes}`);
  }
});

test('damaged messages fed bytewise to a MessageReader fail or succeed as when whole', () => {
  for (const { version, hex: bytes, outcome: expected } of loadVectors().message_mutations) {
    const reader = new MessageReader(version);
    let got = null;
    try {
      for (const piece of bytewise(unhex(bytes))) {
        const messages = reader.feed(piece);
        if (messages.length && got === null) got = { value: messageForm(messages[0]) };
      }
    } catch (err) {
      if (!(err instanceof ProtocolViolation)) throw err;
      got ??= { error: err.code };
    }
    if ('value' in expected) assert.deepEqual(got, { value: expected.value });
    else if ('error' in expected) assert.deepEqual(got, { error: expected.error }, `draft-${version} ${bytes}`);
    else assert.equal(got, null);
  }
});

test('parameter tables match the Python codec (within the supported parameters)', () => {
  const { tables } = loadVectors();
  for (const version of SUPPORTED_VERSIONS) {
    const family = version >= 20 ? '20' : '18';
    assert.deepEqual([...definedParameters(version)].sort((a, b) => a - b), tables.defined[family]);
    for (const [type, kinds] of Object.entries(tables.allowed[family])) {
      const mine = [...allowedParameters(version, Number(type))].sort((a, b) => a - b);
      assert.deepEqual(mine, kinds, `draft-${version} message 0x${Number(type).toString(16)}`);
    }
  }
});

test('a subscriber SUBSCRIBE in each draft: golden bytes', () => {
  const msg = {
    type: 'SUBSCRIBE',
    requestId: 0,
    namespace: ['ex', 'live'],
    name: 'video',
    parameters: { subscriberPriority: 10, locationFilter: { type: LocationFilterType.NEXT_OBJECT } },
  };
  // SUBSCRIBER_PRIORITY 0x20 = 10, then LOCATION_FILTER (delta 1) as Next Object in each draft's form.
  const tail = { 22: '01 05', 21: '01 02 0000', 20: '01 02 0000', 18: '01 01 02' };
  for (const version of SUPPORTED_VERSIONS) {
    const body = `00 02 02 6578 04 6c697665 05 766964656f 02 20 0a ${tail[version]}`.replaceAll(' ', '');
    const expected = `03 ${(body.length / 2).toString(16).padStart(4, '0')} ${body}`.replaceAll(' ', '');
    assert.equal(hex(encodeMessage(msg, version)), expected, `draft-${version}`);
  }
});

test('draft differences: 0x1E, PUBLISH_STATE_NOTIFY, GOAWAY Request ID, FETCH shapes, LOCATION_FILTER forms', () => {
  // Draft-18 reads its table's 0x1E PUBLISH_OK as REQUEST_OK; 20+ reserve it.
  assert.equal(decodeMessage(unhex('1e000100'), 18)[0].type, 'REQUEST_OK');
  assert.throws(() => decodeMessage(unhex('1e000100'), 22), ProtocolViolation);
  assert.throws(() => encodeMessage({ type: 'PUBLISH_STATE_NOTIFY', parameters: {} }, 18), EncodeError);
  assert.equal(decodeMessage(unhex('0f00020000'), 18)[0].type, 'PUBLISH_BLOCKED');
  assert.equal(decodeMessage(unhex('0f00020000'), 20)[0].type, 'PUBLISH_SKIPPED');
  assert.throws(() => encodeMessage({ type: 'GOAWAY', newSessionUri: '', timeout: 0, requestId: 1 }, 22), EncodeError);
  assert.equal(hex(encodeMessage({ type: 'GOAWAY', newSessionUri: '', timeout: 5, requestId: 1 }, 18)), '100003000501');
  const fetch20 = { type: 'FETCH', requestId: 2, namespace: ['a'], name: 'b', parameters: {} };
  assert.throws(() => encodeMessage({ ...fetch20, fetchType: 1 }, 22), EncodeError);
  assert.throws(() => encodeMessage(fetch20, 18), EncodeError); // draft-18 needs a fetchType
  const standalone = { ...fetch20, fetchType: 1, start: { group: 1, object: 0 }, end: { group: 3, object: 0 } };
  assert.equal(hex(encodeMessage(standalone, 18)), '16000c020101016101620100030000');
  // {0, 0} as two fields means Next Object in drafts 20/21: an absolute start there cannot be sent.
  const absolute00 = { type: LocationFilterType.ABSOLUTE_START, startGroup: 0, startObject: 0 };
  const subscribe = { ...fetch20, type: 'SUBSCRIBE', parameters: { locationFilter: absolute00 } };
  assert.throws(() => encodeMessage(subscribe, 21), EncodeError);
  assert.ok(encodeMessage(subscribe, 22));
  // The draft-21 bytes of Next Object mean an absolute {0, 0} in draft-22.
  const bytes21 = encodeMessage({ ...subscribe, parameters: { locationFilter: { type: 5 } } }, 21);
  assert.deepEqual(decodeMessage(bytes21, 21)[0].parameters.locationFilter, { type: 5, startGroup: 0, startObject: 0 });
  assert.deepEqual(decodeMessage(bytes21, 22)[0].parameters.locationFilter, { type: 2, startGroup: 0, startObject: 0 });
});

test('protocol violations: unknown parameter, unknown type, length mismatch, limits', () => {
  const expectPV = (bytes, version = 22, code = PV) =>
    assert.throws(
      () => decodeMessage(typeof bytes === 'string' ? unhex(bytes.replaceAll(' ', '')) : bytes, version),
      (err) => err instanceof ProtocolViolation && err.code === code,
    );
  expectPV('03 0006 00 00 00 01 25 00'); // a range filter: this client never allows them (MAX_FILTER_RANGES 0)
  expectPV('03 0006 00 00 00 01 7f 00'); // an unknown parameter type
  expectPV('04 0004 00 01 20 05'); // SUBSCRIBER_PRIORITY is not allowed in SUBSCRIBE_OK
  expectPV('03 0007 00 00 00 02 20 01 00 02'); // SUBSCRIBER_PRIORITY twice (delta 0)
  expectPV('03 0005 00 00 00 01 10'); // the body ends before FORWARD's value
  expectPV('0b 0004 00 00 00 00'); // PUBLISH_DONE with a byte left over
  expectPV('09 0000'); // 0x09 is no message type
  expectPV('03 0005 00 01 00 00 00'); // an empty namespace field
  expectPV('05 0005 00 00 03 61 62'); // a reason phrase longer than the body
  expectPV('18 0005 02 00 00 00 00'); // FETCH_OK End Of Track must be 0 or 1
  expectPV('af00 0003 03 01 05', 22, SessionErrorCode.KEY_VALUE_FORMATTING_ERROR); // undecodable token in SETUP
  expectPV('af00 0003 07 05 61', 22, SessionErrorCode.KEY_VALUE_FORMATTING_ERROR); // a value cut by the end
  expectPV('af00 0006 07 01 61 00 01 62'); // MOQT_IMPLEMENTATION twice
  // An unknown type is refused as soon as it is readable, without waiting for the rest of the frame.
  assert.throws(() => new MessageReader(22).feed(unhex('09')), ProtocolViolation);
  assert.throws(() => decodeMessage(unhex('03'), 22), NeedMoreData);
  assert.throws(() => decodeMessage(unhex('0300'), 22), NeedMoreData);
  assert.throws(() => decodeMessage(unhex('03000500'), 22), NeedMoreData);
});

test('a MessageReader stays failed after a violation', () => {
  const reader = new MessageReader(22);
  assert.throws(() => reader.feed(unhex('0b000400000000')), ProtocolViolation);
  assert.throws(() => reader.feed(unhex('0b0003000000')), ProtocolViolation);
  assert.throws(() => reader.next(), ProtocolViolation);
});

test('encode refusals: limits, missing or misplaced fields, values out of range', () => {
  const sub = (parameters, fields = {}) => ({ type: 'SUBSCRIBE', requestId: 0, namespace: [], name: '', parameters, ...fields });
  const refused = [
    sub({ expires: 1 }), // EXPIRES is not allowed in SUBSCRIBE
    sub({ subscriberPriority: 256 }),
    sub({ forward: 2 }),
    sub({ groupOrder: 0 }),
    sub({ locationFilter: { type: 3, startGroup: 5, startObject: 0, endGroup: 4 } }), // ends before it starts
    sub({ locationFilter: { type: 1, startGroup: 1, endObject: 2 } }), // a field its form does not have
    sub({ locationFilter: { type: 6 } }),
    sub({ subscriberPriorty: 1 }), // a misspelt parameter is refused, not dropped
    sub({ authorizationTokens: [utf8('not a token')] }),
    sub({}, { namespace: Array(33).fill('x') }),
    sub({}, { namespace: [''] }),
    sub({}, { name: 'x'.repeat(4097) }),
    sub({}, { requestId: -1 }),
    sub({}, { requestId: 2 ** 60 }), // an unsafe Number: pass a BigInt
    { type: 'PUBLISH_DONE', statusCode: 0, streamCount: 0, reason: 'x'.repeat(1025) },
    { type: 'PUBLISH_DONE', statusCode: 0, streamCount: 0, reason: '\ud800' }, // no UTF-8 form
    { type: 'REQUEST_ERROR', errorCode: 0x34, retryInterval: 0, reason: '' }, // REDIRECT needs a redirect
    { type: 'GOAWAY', newSessionUri: 'x'.repeat(8193), timeout: 0 },
    { type: 'SETUP', options: [[7, utf8('a')], [7, utf8('b')]] },
    { type: 'SETUP', options: [[7, 5]] }, // an odd option carries bytes
    { type: 'NO_SUCH_MESSAGE' },
    { type: 'REQUEST_OK', parameters: {}, properties: [[1, new Uint8Array(65535)]] }, // body over 65535
  ];
  for (const msg of refused) assert.throws(() => encodeMessage(msg, 22), EncodeError, JSON.stringify(msg.parameters));
  assert.ok(encodeMessage(sub({ fillParameters: { subscriberPriority: 1 } }), 22));
  assert.throws(() => encodeMessage(sub({ fillParameters: {} }), 18), EncodeError); // no FILL_PARAMETERS in 18
  const rangeToObject = { type: 4, startGroup: 1, startObject: 0, endGroup: 2, endObject: 3 };
  assert.throws(() => encodeMessage(sub({ locationFilter: rangeToObject }), 18), EncodeError); // not in draft-18
});

test('createSetup, setupOption, ALPN helpers', () => {
  const setup = createSetup({ implementation: 'moq-web', maxRequestUpdates: 4 });
  const bytes = encodeMessage(setup, 22);
  assert.equal(hex(bytes), 'af00000b' + '07076d6f712d776562' + '0104');
  const [decoded] = decodeMessage(bytes, 22);
  assert.equal(new TextDecoder().decode(setupOption(decoded, SetupOption.MOQT_IMPLEMENTATION)), 'moq-web');
  assert.equal(setupOption(decoded, SetupOption.MAX_REQUEST_UPDATES), 4);
  assert.equal(setupOption(decoded, SetupOption.PATH), undefined);
  assert.throws(() => createSetup({ path: '/caf\u00e9' }), EncodeError); // URI components are ASCII
  assert.deepEqual(SUPPORTED_VERSIONS.map(alpn), ['moqt-22', 'moqt-21', 'moqt-20', 'moqt-18']);
  assert.equal(versionFromAlpn('moqt-21'), 21);
  assert.equal(versionFromAlpn('moqt-19'), null);
});

test('u64 fields: 2^64-1 round-trips as a BigInt; text keeps a BOM and replaces invalid UTF-8', () => {
  const done = { type: 'PUBLISH_DONE', statusCode: 2, streamCount: 2n ** 64n - 1n, reason: '\ufeffok' };
  const [decoded] = decodeMessage(encodeMessage(done, 22), 22);
  assert.deepEqual(decoded, done);
  const [bad] = decodeMessage(unhex('0b000500000261ff'), 22);
  assert.equal(bad.reason, 'a\ufffd');
});
