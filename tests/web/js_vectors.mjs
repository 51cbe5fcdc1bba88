// The other direction of the cross-test: the JS codec (web/js) encodes structures drawn from a seeded PRNG and
// prints them as JSON to stdout: {messages: [{version, hex, value}], datagrams: [...], streams: [{version,
// group_order, hex, events}]}, with `value` / `events` in the JSON form of tests/web/make_vectors.py.
// tests/web/test_js_vectors.py runs this with node and decodes every one with the Python codec.
//
// Usage: node tests/web/js_vectors.mjs [seed] [count]

import assert from 'node:assert/strict';

import {
  EndOfRangeKind,
  FetchObjectEncoder,
  ObjectStatus,
  SubgroupIdMode,
  encodeDatagram,
  encodeFetchHeader,
  encodeSubgroupHeader,
  encodeSubgroupObject,
} from '../../web/js/data.js';
import { EncodeError } from '../../web/js/errors.js';
import { createSetup, decodeMessage, encodeMessage, messageNames, messageType } from '../../web/js/messages.js';
import { LocationFilterType, ParameterType, allowedParameters, writeParameters } from '../../web/js/params.js';
import { TokenAliasType, Writer, encodeToken } from '../../web/js/primitives.js';
import { MAX_U64, add, u64 } from '../../web/js/varint.js';
import { SUPPORTED_VERSIONS, family } from '../../web/js/version.js';
import { hex, prng, toJSONForm } from '../../web/test/helpers.js';

const seed = Number(process.argv[2] ?? 20261122);
const count = Number(process.argv[3] ?? 10);
const random = prng(seed);

const int = (lo, hi) => lo + Math.floor(random() * (hi - lo + 1));
const pick = (items) => items[int(0, items.length - 1)];
const chance = (p) => random() < p;

const EDGES = [0n, 1n, MAX_U64, MAX_U64 - 1n, 2n ** 53n - 1n, 2n ** 53n];
for (let n = 1n; n <= 8n; n++) EDGES.push((1n << (7n * n)) - 1n, 1n << (7n * n));

function varint() {
  if (chance(0.35)) return u64(pick(EDGES));
  if (chance(0.5)) return int(0, 300);
  let value = 0n;
  for (let i = 0; i < 4; i++) value = (value << 16n) | BigInt(int(0, 0xffff));
  return u64(value >> BigInt(int(0, 63)));
}
const small = () => (chance(0.8) ? int(0, 300) : u64(pick(EDGES)));
const blob = (max = 24, min = 0) => Uint8Array.from({ length: int(min, max) }, () => int(0, 255));
const TEXT = [...'abcXYZ019 -_/.:?~é€中文😀\ufeff\u0000\u00a0'];
const text = (max = 24) => Array.from({ length: int(0, max) }, () => pick(TEXT)).join('');
const uri = () => Array.from({ length: int(0, 40) }, () => pick([...'abcdefxyz0189:/.?=&%-'])).join('');
const namespace = (max = 5) => Array.from({ length: int(0, chance(0.03) ? 32 : max) }, () => blob(12, 1));
const location = () => ({ group: varint(), object: varint() });
const sortPairs = (pairs) => pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));

function properties(min = 0) {
  const pairs = [];
  for (let i = int(min, 4); i > 0; i--) {
    const kind = pick([0x02, 0x04, 0x0b, 0x0e, 0x22, 0x30, 0x9d, 0x4000, varint()]);
    const odd = typeof kind === 'bigint' ? (kind & 1n) === 1n : kind % 2 === 1;
    pairs.push([kind, odd ? blob(20) : varint()]);
  }
  return sortPairs(pairs);
}

function token() {
  const aliasType = pick(Object.values(TokenAliasType));
  if (aliasType === TokenAliasType.DELETE || aliasType === TokenAliasType.USE_ALIAS) {
    return encodeToken({ aliasType, alias: varint() });
  }
  if (aliasType === TokenAliasType.REGISTER) return encodeToken({ aliasType, alias: varint(), tokenType: varint(), value: blob() });
  return encodeToken({ aliasType, tokenType: varint(), value: blob() });
}

function locationFilter() {
  const type = pick(Object.values(LocationFilterType));
  const filter = { type, startGroup: 0, startObject: 0 };
  if (type === LocationFilterType.NONE || type === LocationFilterType.NEXT_OBJECT) return filter;
  filter.startGroup = varint();
  if (type === LocationFilterType.RELATIVE_START_GROUP) return filter;
  filter.startObject = varint();
  if (type === LocationFilterType.ABSOLUTE_START) return filter;
  const end = add(filter.startGroup, pick([0, 1, small(), varint()]));
  filter.endGroup = end > MAX_U64 ? u64(MAX_U64) : end;
  if (type === LocationFilterType.ABSOLUTE_RANGE_OBJECT) filter.endObject = varint();
  return filter;
}

const P = ParameterType;
const PARAMETER_VALUES = {
  objectDeliveryTimeout: varint,
  authorizationTokens: () => Array.from({ length: int(1, 2) }, token),
  rendezvousTimeout: varint,
  subgroupDeliveryTimeout: varint,
  expires: varint,
  largestObject: location,
  fillTimeout: varint,
  forward: () => int(0, 1),
  subscriberPriority: () => int(0, 255),
  locationFilter,
  groupOrder: () => int(1, 2),
  fillParameters: () => {
    const fill = {};
    if (chance(0.5)) fill.fillTimeout = varint();
    if (chance(0.5)) fill.subscriberPriority = int(0, 255);
    if (chance(0.5)) fill.locationFilter = locationFilter();
    if (chance(0.5)) fill.groupOrder = int(1, 2);
    return fill;
  },
  newGroupRequest: varint,
  trackNamespacePrefix: () => namespace(3),
  includeProperties: () => int(0, 1),
};
const FIELD = {
  [P.OBJECT_DELIVERY_TIMEOUT]: 'objectDeliveryTimeout',
  [P.AUTHORIZATION_TOKEN]: 'authorizationTokens',
  [P.RENDEZVOUS_TIMEOUT]: 'rendezvousTimeout',
  [P.SUBGROUP_DELIVERY_TIMEOUT]: 'subgroupDeliveryTimeout',
  [P.EXPIRES]: 'expires',
  [P.LARGEST_OBJECT]: 'largestObject',
  [P.FILL_TIMEOUT]: 'fillTimeout',
  [P.FORWARD]: 'forward',
  [P.SUBSCRIBER_PRIORITY]: 'subscriberPriority',
  [P.LOCATION_FILTER]: 'locationFilter',
  [P.GROUP_ORDER]: 'groupOrder',
  [P.FILL_PARAMETERS]: 'fillParameters',
  [P.NEW_GROUP_REQUEST]: 'newGroupRequest',
  [P.TRACK_NAMESPACE_PREFIX]: 'trackNamespacePrefix',
  [P.INCLUDE_PROPERTIES]: 'includeProperties',
};

/** Some of the parameters a message may carry, each one the draft can express. */
function parameters(version, name) {
  const code = messageType(name, version);
  const out = {};
  for (const kind of [...allowedParameters(version, code)].sort((a, b) => a - b)) {
    if (!chance(0.4)) continue;
    const field = FIELD[kind];
    for (let attempt = 0; attempt < 8; attempt++) {
      const value = PARAMETER_VALUES[field]();
      try {
        writeParameters(new Writer(), { [field]: value }, version, code);
      } catch (err) {
        if (err instanceof EncodeError) continue; // e.g. a filter form this draft lacks
        throw err;
      }
      out[field] = value;
      break;
    }
  }
  return out;
}

function message(name, version) {
  const p = () => parameters(version, name);
  switch (name) {
    case 'SETUP': {
      const f20 = family(version) === 20;
      return createSetup({
        path: chance(0.3) ? uri() : undefined,
        authority: chance(0.3) ? uri() : undefined,
        authorizationTokens: Array.from({ length: int(0, 2) }, token),
        maxAuthTokenCacheSize: chance(0.5) ? varint() : undefined,
        maxFilterRanges: f20 && chance(0.5) ? varint() : undefined,
        implementation: chance(0.7) ? text() : undefined,
        maxRequestUpdates: f20 && chance(0.5) ? varint() : undefined,
        extra: chance(0.4) ? [[0x9d, blob()], [0x11c, varint()], [0x3f, blob()]] : [], // GREASE, unknown
      });
    }
    case 'GOAWAY': {
      const msg = { type: name, newSessionUri: uri(), timeout: varint() };
      if (family(version) === 18 && chance(0.5)) msg.requestId = varint();
      return msg;
    }
    case 'REQUEST_OK':
      return { type: name, parameters: p(), properties: properties() };
    case 'REQUEST_ERROR': {
      if (chance(0.25)) {
        const redirect = { connectUri: uri(), namespace: namespace(), name: blob() };
        return { type: name, errorCode: 0x34, retryInterval: varint(), reason: text(), redirect };
      }
      const code = pick([0, 0x10, 0x11, 0x9d, varint()]);
      return { type: name, errorCode: code === 0x34 ? 0 : code, retryInterval: varint(), reason: text() };
    }
    case 'REQUEST_UPDATE':
      return { type: name, requestId: varint(), parameters: p() };
    case 'SUBSCRIBE':
    case 'TRACK_STATUS':
      return { type: name, requestId: varint(), namespace: namespace(), name: blob(), parameters: p() };
    case 'SUBSCRIBE_OK':
      return { type: name, trackAlias: varint(), parameters: p(), properties: properties() };
    case 'PUBLISH':
      return {
        type: name,
        requestId: varint(),
        namespace: namespace(),
        name: blob(),
        trackAlias: varint(),
        parameters: p(),
        properties: properties(),
      };
    case 'PUBLISH_DONE':
      return { type: name, statusCode: varint(), streamCount: pick([0, 3, u64(MAX_U64), varint()]), reason: text() };
    case 'PUBLISH_STATE_NOTIFY':
      return { type: name, parameters: p() };
    case 'FETCH': {
      const msg = { type: name, requestId: varint(), namespace: namespace(), name: blob(), parameters: p() };
      if (family(version) !== 18) return msg;
      if (chance(0.5)) return { ...msg, fetchType: 1, start: location(), end: location() };
      const joining = { joiningRequestId: varint(), joiningStart: varint() };
      return { ...msg, namespace: [], name: new Uint8Array(0), fetchType: int(2, 3), ...joining };
    }
    case 'FETCH_OK':
      return { type: name, endOfTrack: chance(0.5), endLocation: location(), parameters: p(), properties: properties() };
    case 'PUBLISH_NAMESPACE':
      return { type: name, requestId: varint(), namespace: namespace(), parameters: p() };
    case 'SUBSCRIBE_NAMESPACE':
    case 'SUBSCRIBE_TRACKS':
      return { type: name, requestId: varint(), namespacePrefix: namespace(), parameters: p() };
    case 'NAMESPACE':
    case 'NAMESPACE_DONE':
      return { type: name, namespaceSuffix: namespace() };
    default: // PUBLISH_SKIPPED, PUBLISH_BLOCKED
      return { type: name, namespaceSuffix: namespace(), name: blob() };
  }
}

const payload = () => (chance(0.1) ? new Uint8Array(0) : chance(0.95) ? blob(40, 1) : blob(3000, 128));
const status = () => pick(Object.values(ObjectStatus));

function datagram() {
  const st = chance(0.4) ? status() : null;
  let props = chance(0.4) ? properties(1) : null;
  if (st !== null && st !== ObjectStatus.NORMAL) props = null;
  return {
    type: 'OBJECT_DATAGRAM',
    trackAlias: varint(),
    groupId: varint(),
    objectId: chance(0.3) ? 0 : varint(),
    publisherPriority: chance(0.3) ? null : int(0, 255),
    properties: props,
    endOfGroup: st === null && chance(0.3),
    status: st,
    payload: st === null ? payload() : new Uint8Array(0),
  };
}

function subgroupStream(version) {
  const mode = pick(Object.values(SubgroupIdMode));
  const header = {
    type: 'SUBGROUP_HEADER',
    trackAlias: varint(),
    groupId: varint(),
    subgroupId: mode === SubgroupIdMode.ZERO ? 0 : mode === SubgroupIdMode.EXPLICIT ? varint() : null,
    publisherPriority: chance(0.3) ? null : int(0, 255),
    subgroupIdMode: mode,
    hasProperties: chance(0.5),
    endOfGroup: chance(0.3),
    firstObject: chance(0.3),
  };
  const events = [header];
  const parts = [encodeSubgroupHeader(header, version)];
  let objectId = small();
  let prev = null;
  for (let i = int(0, 6); i > 0 && objectId <= MAX_U64; i--) {
    const st = chance(0.3) ? status() : ObjectStatus.NORMAL;
    const normal = st === ObjectStatus.NORMAL;
    const obj = {
      type: 'SUBGROUP_OBJECT',
      objectId: u64(objectId),
      properties: normal && header.hasProperties && chance(0.5) ? properties(1) : [],
      status: st,
      payload: normal ? payload() : new Uint8Array(0),
    };
    parts.push(encodeSubgroupObject(header, prev, obj));
    events.push(obj);
    prev = obj.objectId;
    objectId = add(add(objectId, 1), chance(0.6) ? 0 : small());
  }
  return { hex: parts.map(hex).join(''), events, group_order: 1 };
}

function fetchStream(version, order) {
  const encoder = new FetchObjectEncoder(version, order);
  const header = { type: 'FETCH_HEADER', requestId: varint() };
  const events = [header];
  const parts = [encodeFetchHeader(header.requestId)];
  const groups = [...new Set(Array.from({ length: int(0, 4) }, () => BigInt(varint())))].sort((a, b) => (a < b ? -1 : 1));
  if (order === 2) groups.reverse();
  const kinds = [EndOfRangeKind.NON_EXISTENT, EndOfRangeKind.UNKNOWN];
  if (family(version) >= 20) kinds.push(EndOfRangeKind.TIMED_OUT);
  let priority = int(0, 255);
  let subgroup = 0;
  for (const group of groups) {
    const start = BigInt(pick([0, small(), varint()]));
    const ids = new Set(Array.from({ length: int(1, 4) }, () => start + BigInt(small())));
    for (const id of [...ids].filter((x) => x <= MAX_U64).sort((a, b) => (a < b ? -1 : 1))) {
      let entry;
      if (chance(0.15)) {
        entry = { type: 'FETCH_END_OF_RANGE', kind: pick(kinds), groupId: u64(group), objectId: u64(id) };
      } else {
        const roll = random();
        if (roll < 0.15) subgroup = null;
        else if (roll < 0.3) subgroup = subgroup === null ? 1 : add(subgroup, 1) > MAX_U64 ? u64(MAX_U64) : add(subgroup, 1);
        else if (roll < 0.4) subgroup = varint();
        if (chance(0.3)) priority = int(0, 255);
        const props = chance(0.3) ? properties(1) : null;
        entry = { type: 'FETCH_OBJECT', groupId: u64(group), subgroupId: subgroup, objectId: u64(id) };
        Object.assign(entry, { publisherPriority: priority, properties: props, payload: payload() });
      }
      parts.push(encoder.encode(entry));
      events.push(entry);
    }
  }
  return { hex: parts.map(hex).join(''), events, group_order: order };
}

const out = { seed, messages: [], datagrams: [], streams: [] };
for (const version of SUPPORTED_VERSIONS) {
  for (const name of messageNames(version)) {
    for (let i = 0; i < count; i++) {
      const msg = message(name, version);
      let bytes;
      try {
        bytes = encodeMessage(msg, version);
      } catch (err) {
        if (err instanceof EncodeError && /over 65535/.test(err.message)) continue;
        throw err;
      }
      const value = toJSONForm(msg);
      assert.deepStrictEqual(toJSONForm(decodeMessage(bytes, version)[0]), value, `JS reads back its own ${name}`);
      out.messages.push({ version, hex: hex(bytes), value });
    }
  }
  for (let i = 0; i < count * 2; i++) {
    const dgram = datagram();
    out.datagrams.push({ version, hex: hex(encodeDatagram(dgram, version)), value: toJSONForm(dgram) });
  }
  for (let i = 0; i < count; i++) {
    for (const stream of [subgroupStream(version), fetchStream(version, 1), fetchStream(version, 2)]) {
      out.streams.push({ version, ...stream, events: stream.events.map(toJSONForm) });
    }
  }
}
process.stdout.write(JSON.stringify(out));
