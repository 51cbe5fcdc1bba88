// Message Parameters (draft-ietf-moq-transport-21 §9.20; draft-22 LOCATION_FILTER; draft-18 §"Message
// Parameters"; moq/wire/params.py).
//
// Wire form: Number of Parameters (vi64), then {Type Delta (vi64), Value} in ascending type order. These are
// not Key-Value-Pairs: each type has its own value encoding, so an unknown parameter cannot be skipped and is
// a PROTOCOL_VIOLATION, as is one the message may not carry, or a repeat of one that may not repeat.
//
// In JS a parameter block is a plain object; an absent parameter is an absent key:
//   objectDeliveryTimeout, subgroupDeliveryTimeout, rendezvousTimeout, expires, fillTimeout, newGroupRequest: u64
//   authorizationTokens: [Uint8Array]  (each a whole Token structure, §8.9; see encodeToken / decodeToken)
//   largestObject: {group, object}      subscriberPriority: 0-255      groupOrder: 1 asc | 2 desc
//   forward, includeProperties: 0 | 1   trackNamespacePrefix: [Uint8Array]
//   locationFilter: {type, startGroup, startObject, endGroup?, endObject?} (type: LocationFilterType; endGroup
//                   absolute here, a delta on the wire)
//   fillParameters: {fillTimeout?, subscriberPriority?, locationFilter?, groupOrder?}
//
// Not supported: the range filters 0x25-0x29 (draft-19+). A peer may only send them after we advertise
// MAX_FILTER_RANGES in SETUP (default 0 = "MUST NOT send", §9.1.6), which this client never does, so receiving
// one is a PROTOCOL_VIOLATION here too.

import { EncodeError, NeedMoreData, PV, ProtocolViolation } from './errors.js';
import {
  Writer,
  decodeToken,
  asBytes,
  readLength,
  readLengthBytes,
  readLocation,
  readNamespace,
  writeLocation,
  writeNamespace,
} from './primitives.js';
import { MAX_U64, add, checkU64, sub } from './varint.js';
import { family } from './version.js';

export const ParameterType = Object.freeze({
  OBJECT_DELIVERY_TIMEOUT: 0x02,
  AUTHORIZATION_TOKEN: 0x03,
  RENDEZVOUS_TIMEOUT: 0x04,
  SUBGROUP_DELIVERY_TIMEOUT: 0x06,
  EXPIRES: 0x08,
  LARGEST_OBJECT: 0x09,
  FILL_TIMEOUT: 0x0a,
  FORWARD: 0x10,
  SUBSCRIBER_PRIORITY: 0x20,
  LOCATION_FILTER: 0x21, // SUBSCRIPTION_FILTER in draft-18
  GROUP_ORDER: 0x22,
  FILL_PARAMETERS: 0x23,
  NEW_GROUP_REQUEST: 0x32,
  TRACK_NAMESPACE_PREFIX: 0x34,
  INCLUDE_PROPERTIES: 0x35,
});

export const GroupOrder = Object.freeze({ ASCENDING: 0x1, DESCENDING: 0x2 });

/** The forms of a location filter; the values are draft-22's Location Filter Type codepoints. */
export const LocationFilterType = Object.freeze({
  NONE: 0x00, // no filter (removes one in REQUEST_UPDATE)
  RELATIVE_START_GROUP: 0x01, // start = {Largest.Group + 1 - startGroup, 0}
  ABSOLUTE_START: 0x02, // start = {startGroup, startObject}, open-ended
  ABSOLUTE_RANGE: 0x03, // start .. end of group endGroup
  ABSOLUTE_RANGE_OBJECT: 0x04, // start .. {endGroup, endObject}
  NEXT_OBJECT: 0x05, // start = {Largest.Group, Largest.Object + 1}
});

const P = ParameterType;
const F = LocationFilterType;

/** Control message types that carry Message Parameters (draft-21 Table 5); 0x1E is draft-18's PUBLISH_OK. */
const M = Object.freeze({
  REQUEST_UPDATE: 0x02,
  SUBSCRIBE: 0x03,
  SUBSCRIBE_OK: 0x04,
  PUBLISH_NAMESPACE: 0x06,
  REQUEST_OK: 0x07,
  TRACK_STATUS: 0x0d,
  FETCH: 0x16,
  FETCH_OK: 0x18,
  PUBLISH: 0x1d,
  PUBLISH_OK_18: 0x1e,
  PUBLISH_STATE_NOTIFY: 0x22,
  SUBSCRIBE_NAMESPACE: 0x50,
  SUBSCRIBE_TRACKS: 0x51,
});

// -- Which parameters exist, and where they may appear ---------------------------------------------------------

const set = (...types) => new Set(types);

/** The types each wire family defines (draft-21 Table 13; draft-18's table), within what this codec supports. */
const DEFINED = {
  18: set(0x02, 0x03, 0x04, 0x06, 0x08, 0x09, 0x0a, 0x10, 0x20, 0x21, 0x22, 0x32, 0x34),
  20: new Set(Object.values(P)),
};

/** What FILL_PARAMETERS may hold (draft-21 §9.20.16, Table 6). */
const FILL_ALLOWED = set(P.FILL_TIMEOUT, P.SUBSCRIBER_PRIORITY, P.LOCATION_FILTER, P.GROUP_ORDER);

// draft-21: each parameter's "MAY appear in" list. REQUEST_UPDATE and REQUEST_OK allow the union over the
// requests they may belong to: the session narrows it (the codec does not know the request).
const SUBSCRIBE_20 = set(0x02, 0x03, 0x04, 0x06, 0x10, 0x20, 0x21, 0x22, 0x23, 0x32, 0x35);
const RESPONSE = set(P.EXPIRES, P.LARGEST_OBJECT);
const REQUEST_OK_18 = set(0x02, 0x06, 0x08, 0x09, 0x10, 0x20, 0x21, 0x22, 0x32);

const ALLOWED = {
  20: {
    [M.SUBSCRIBE]: SUBSCRIBE_20,
    [M.SUBSCRIBE_OK]: RESPONSE,
    [M.REQUEST_OK]: RESPONSE,
    [M.PUBLISH]: set(0x02, 0x03, 0x06, 0x08, 0x09, 0x10, 0x20, 0x21, 0x22),
    [M.PUBLISH_STATE_NOTIFY]: set(P.LARGEST_OBJECT, P.FORWARD, P.LOCATION_FILTER),
    [M.FETCH]: set(0x03, 0x0a, 0x20, 0x21, 0x22, 0x35),
    [M.FETCH_OK]: set(),
    [M.TRACK_STATUS]: set(P.AUTHORIZATION_TOKEN, P.INCLUDE_PROPERTIES),
    [M.PUBLISH_NAMESPACE]: set(P.AUTHORIZATION_TOKEN),
    [M.SUBSCRIBE_NAMESPACE]: set(P.AUTHORIZATION_TOKEN),
    [M.SUBSCRIBE_TRACKS]: SUBSCRIBE_20,
    [M.REQUEST_UPDATE]: set(0x02, 0x03, 0x06, 0x10, 0x20, 0x21, 0x23, 0x32, 0x34),
  },
  18: {
    [M.SUBSCRIBE]: set(0x02, 0x03, 0x04, 0x06, 0x10, 0x20, 0x21, 0x22, 0x32),
    [M.SUBSCRIBE_OK]: RESPONSE,
    [M.REQUEST_OK]: REQUEST_OK_18,
    [M.PUBLISH_OK_18]: REQUEST_OK_18,
    [M.PUBLISH]: set(0x03, 0x08, 0x09, 0x10),
    [M.FETCH]: set(0x03, 0x0a, 0x20, 0x22),
    [M.FETCH_OK]: set(),
    [M.TRACK_STATUS]: set(P.AUTHORIZATION_TOKEN),
    [M.PUBLISH_NAMESPACE]: set(P.AUTHORIZATION_TOKEN),
    [M.SUBSCRIBE_NAMESPACE]: set(P.AUTHORIZATION_TOKEN),
    [M.SUBSCRIBE_TRACKS]: set(P.AUTHORIZATION_TOKEN, P.FORWARD),
    [M.REQUEST_UPDATE]: set(0x02, 0x03, 0x06, 0x10, 0x20, 0x21, 0x32, 0x34),
  },
};

/** The parameter types a message of `messageType` may carry in `version` (a Set); RangeError for a non-carrier. */
export function allowedParameters(version, messageType) {
  const allowed = ALLOWED[family(version)][messageType];
  if (!allowed) throw new RangeError(`message type 0x${messageType.toString(16)} carries no Message Parameters`);
  return allowed;
}

/** The parameter types `version` defines (a Set), within what this codec supports. */
export function definedParameters(version) {
  return DEFINED[family(version)];
}

// -- Value codecs ----------------------------------------------------------------------------------------------

const varintValue = {
  read: (r) => r.varint(),
  write: (w, value, version, kind) => w.varint(checkU64(value, NAMES[kind])),
};

const uint8Value = {
  read: (r) => r.uint8(),
  write: (w, value, version, kind) => {
    if (!Number.isInteger(value) || value < 0 || value > 0xff) throw new EncodeError(`${NAMES[kind]} is a uint8`);
    w.uint8(value);
  },
};

/** FORWARD (§9.20.19) and INCLUDE_PROPERTIES (§9.20.22): uint8, 0 or 1, else PROTOCOL_VIOLATION. */
const flagValue = {
  read: (r, version, kind) => {
    const value = r.uint8();
    if (value > 1) throw new ProtocolViolation(PV, `${NAMES[kind]} must be 0 or 1, not ${value}`);
    return value;
  },
  write: (w, value, version, kind) => {
    const v = value === true ? 1 : value === false ? 0 : value;
    if (v !== 0 && v !== 1) throw new EncodeError(`${NAMES[kind]} must be 0 or 1, not ${value}`);
    w.uint8(v);
  },
};

/** GROUP_ORDER (§9.20.9): uint8, Ascending 1 or Descending 2, else PROTOCOL_VIOLATION. */
const groupOrderValue = {
  read: (r) => {
    const value = r.uint8();
    if (value !== 1 && value !== 2) throw new ProtocolViolation(PV, `GROUP_ORDER must be 1 or 2, not ${value}`);
    return value;
  },
  write: (w, value) => {
    if (value !== 1 && value !== 2) throw new EncodeError(`GROUP_ORDER must be 1 or 2, not ${value}`);
    w.uint8(value);
  },
};

const locationValue = { read: readLocation, write: writeLocation };

/** AUTHORIZATION_TOKEN (§9.20.3): a length-prefixed Token, kept as its bytes; undecodable: KVFE. */
const tokenValue = {
  read: (r) => {
    const bytes = readLengthBytes(r, 'AUTHORIZATION_TOKEN');
    decodeToken(bytes);
    return bytes;
  },
  write: (w, value) => {
    const bytes = asBytes(value, 'AUTHORIZATION_TOKEN');
    try {
      decodeToken(bytes);
    } catch {
      throw new EncodeError('AUTHORIZATION_TOKEN is not a Token structure (see encodeToken)');
    }
    w.lengthBytes(bytes);
  },
};

/** TRACK_NAMESPACE_PREFIX (§9.20.21): a Track Namespace, no length of its own. */
const namespaceValue = { read: readNamespace, write: (w, value) => writeNamespace(w, value) };

const locationFilterValue = {
  read: (r, version) => {
    if (version >= 22) return readFilter22(r);
    return family(version) === 20 ? readFilter21(r) : readFilter18(r);
  },
  write: writeLocationFilter,
};

/**
 * FILL_PARAMETERS (draft-21 §9.20.16): Length, then the parameters "encoded as if they were Parameters for a
 * separate message", i.e. Number of Parameters first, in their own delta scope, filling the Length exactly.
 */
const fillParametersValue = {
  read: (r, version) => {
    const inner = r.sub(readLength(r, 'FILL_PARAMETERS'));
    const value = readBlock(inner, version, FILL_ALLOWED, inner.varint(), 'FILL_PARAMETERS');
    if (inner.remaining !== 0) throw new ProtocolViolation(PV, 'FILL_PARAMETERS does not fill its length exactly');
    return value;
  },
  write: (w, value, version) => {
    const body = new Writer();
    const count = writeBlock(body, value, version, FILL_ALLOWED, 'FILL_PARAMETERS');
    const whole = new Writer();
    whole.varint(count);
    whole.bytes(body.finish());
    w.lengthBytes(whole.finish());
  },
};

/** Per type: its field in the JS object, its value codec, whether it may repeat. */
const SPECS = new Map([
  [P.OBJECT_DELIVERY_TIMEOUT, { field: 'objectDeliveryTimeout', codec: varintValue }],
  [P.AUTHORIZATION_TOKEN, { field: 'authorizationTokens', codec: tokenValue, repeatable: true }],
  [P.RENDEZVOUS_TIMEOUT, { field: 'rendezvousTimeout', codec: varintValue }],
  [P.SUBGROUP_DELIVERY_TIMEOUT, { field: 'subgroupDeliveryTimeout', codec: varintValue }],
  [P.EXPIRES, { field: 'expires', codec: varintValue }],
  [P.LARGEST_OBJECT, { field: 'largestObject', codec: locationValue }],
  [P.FILL_TIMEOUT, { field: 'fillTimeout', codec: varintValue }],
  [P.FORWARD, { field: 'forward', codec: flagValue }],
  [P.SUBSCRIBER_PRIORITY, { field: 'subscriberPriority', codec: uint8Value }],
  [P.LOCATION_FILTER, { field: 'locationFilter', codec: locationFilterValue }],
  [P.GROUP_ORDER, { field: 'groupOrder', codec: groupOrderValue }],
  [P.FILL_PARAMETERS, { field: 'fillParameters', codec: fillParametersValue }],
  [P.NEW_GROUP_REQUEST, { field: 'newGroupRequest', codec: varintValue }],
  [P.TRACK_NAMESPACE_PREFIX, { field: 'trackNamespacePrefix', codec: namespaceValue }],
  [P.INCLUDE_PROPERTIES, { field: 'includeProperties', codec: flagValue }],
]);
const NAMES = Object.fromEntries(Object.entries(P).map(([name, kind]) => [kind, name]));
const FIELDS = new Set([...SPECS.values()].map((spec) => spec.field));
const ASCENDING = [...SPECS.keys()].sort((a, b) => a - b);

// -- Decoding --------------------------------------------------------------------------------------------------

/**
 * Read Number of Parameters and that many parameters (draft-21 §9.20). Every malformed, unknown, misplaced or
 * repeated parameter is a ProtocolViolation (an undecodable token: KEY_VALUE_FORMATTING_ERROR).
 */
export function readParameters(r, version, messageType) {
  const allowed = allowedParameters(version, messageType);
  try {
    const count = r.varint();
    // Every parameter takes at least two bytes: refuse a count the rest of the message cannot hold.
    if (count > Math.floor(r.remaining / 2)) {
      throw new ProtocolViolation(PV, `${count} parameters cannot fit in the rest of the message`);
    }
    return readBlock(r, version, allowed, count);
  } catch (err) {
    if (err instanceof NeedMoreData) throw new ProtocolViolation(PV, 'the message ends before its parameters do');
    throw err;
  }
}

/** `count` parameters from `r` (a message's block, or FILL_PARAMETERS' own delta scope). */
function readBlock(r, version, allowed, count, where = 'this message') {
  const defined = DEFINED[family(version)];
  const out = {};
  let kind = 0;
  for (let i = 0; i < count; i++) {
    kind = add(kind, r.varint());
    if (kind > MAX_U64) throw new ProtocolViolation(PV, 'parameter type delta overflows 2^64-1');
    const spec = SPECS.get(kind);
    if (!spec || !defined.has(kind)) {
      throw new ProtocolViolation(PV, `unknown message parameter 0x${kind.toString(16)} in draft-${version}`);
    }
    if (!allowed.has(kind)) {
      throw new ProtocolViolation(PV, `parameter ${NAMES[kind]} is not allowed in ${where}`);
    }
    if (spec.field in out && !spec.repeatable) throw new ProtocolViolation(PV, `parameter ${NAMES[kind]} repeated`);
    const value = spec.codec.read(r, version, kind);
    if (spec.repeatable) (out[spec.field] ??= []).push(value);
    else out[spec.field] = value;
  }
  return out;
}

function endGroupOf(startGroup, delta) {
  const endGroup = add(startGroup, delta);
  if (endGroup > MAX_U64) throw new ProtocolViolation(PV, 'StartGroup + EndGroupDelta exceeds 2^64-1');
  return endGroup;
}

/** draft-22: Location Filter Type (vi64) 0x00-0x05, then the fields that type selects (DIGEST §6.1). */
function readFilter22(r) {
  const type = r.varint();
  if (type > F.NEXT_OBJECT) throw new ProtocolViolation(PV, `unknown Location Filter Type 0x${type.toString(16)}`);
  const filter = { type, startGroup: 0, startObject: 0 };
  if (type === F.NONE || type === F.NEXT_OBJECT) return filter;
  filter.startGroup = r.varint();
  if (type === F.RELATIVE_START_GROUP) return filter;
  filter.startObject = r.varint();
  if (type === F.ABSOLUTE_START) return filter;
  filter.endGroup = endGroupOf(filter.startGroup, r.varint());
  if (type === F.ABSOLUTE_RANGE_OBJECT) filter.endObject = r.varint();
  return filter;
}

/** draft-20/21 (§9.20.10): Length, then 0-4 vi64 fields; their count says the form; {0, 0} is Next Object. */
function readFilter21(r) {
  const inner = r.sub(readLength(r, 'LOCATION_FILTER'));
  const v = [];
  while (inner.remaining > 0) {
    if (v.length === 4) throw new ProtocolViolation(PV, 'LOCATION_FILTER has more than four fields');
    v.push(inner.varint());
  }
  switch (v.length) {
    case 0:
      return { type: F.NONE, startGroup: 0, startObject: 0 };
    case 1:
      return { type: F.RELATIVE_START_GROUP, startGroup: v[0], startObject: 0 };
    case 2:
      if (v[0] === 0 && v[1] === 0) return { type: F.NEXT_OBJECT, startGroup: 0, startObject: 0 };
      return { type: F.ABSOLUTE_START, startGroup: v[0], startObject: v[1] };
    case 3:
      return { type: F.ABSOLUTE_RANGE, startGroup: v[0], startObject: v[1], endGroup: endGroupOf(v[0], v[2]) };
    default:
      return {
        type: F.ABSOLUTE_RANGE_OBJECT,
        startGroup: v[0],
        startObject: v[1],
        endGroup: endGroupOf(v[0], v[2]),
        endObject: v[3],
      };
  }
}

// draft-18 Subscription Filter Types (draft-18 §"Subscription Filters").
const NEXT_GROUP_START_18 = 0x1;
const LARGEST_OBJECT_18 = 0x2;
const ABSOLUTE_START_18 = 0x3;
const ABSOLUTE_RANGE_18 = 0x4;

/** draft-18 SUBSCRIPTION_FILTER: Length, then {Filter Type, [Start Location], [End Group Delta]}. */
function readFilter18(r) {
  const length = readLength(r, 'SUBSCRIPTION_FILTER');
  if (length === 0) throw new ProtocolViolation(PV, 'SUBSCRIPTION_FILTER has no Filter Type');
  const inner = r.sub(length);
  const code = inner.varint();
  let filter;
  if (code === NEXT_GROUP_START_18) {
    filter = { type: F.RELATIVE_START_GROUP, startGroup: 0, startObject: 0 };
  } else if (code === LARGEST_OBJECT_18) {
    filter = { type: F.NEXT_OBJECT, startGroup: 0, startObject: 0 };
  } else if (code === ABSOLUTE_START_18 || code === ABSOLUTE_RANGE_18) {
    const startGroup = inner.varint();
    filter = { type: F.ABSOLUTE_START, startGroup, startObject: inner.varint() };
    if (code === ABSOLUTE_RANGE_18) {
      filter.type = F.ABSOLUTE_RANGE;
      filter.endGroup = endGroupOf(startGroup, inner.varint());
    }
  } else {
    throw new ProtocolViolation(PV, `unknown Subscription Filter Type 0x${code.toString(16)}`);
  }
  if (inner.remaining !== 0) throw new ProtocolViolation(PV, 'SUBSCRIPTION_FILTER does not fill its Length');
  return filter;
}

// -- Encoding --------------------------------------------------------------------------------------------------

/** Write Number of Parameters and the parameters, ascending by type; EncodeError before any byte is written. */
export function writeParameters(w, params, version, messageType) {
  const body = new Writer();
  const count = writeBlock(body, params ?? {}, version, allowedParameters(version, messageType), 'this message');
  w.varint(count);
  w.bytes(body.finish());
}

function writeBlock(w, params, version, allowed, where) {
  for (const key of Object.keys(params)) {
    if (!FIELDS.has(key)) throw new EncodeError(`unknown parameter field "${key}"`);
  }
  const defined = DEFINED[family(version)];
  let previous = 0;
  let count = 0;
  for (const kind of ASCENDING) {
    const spec = SPECS.get(kind);
    const value = params[spec.field];
    if (value === undefined || value === null || (spec.repeatable && value.length === 0)) continue;
    if (!defined.has(kind)) throw new EncodeError(`parameter ${NAMES[kind]} does not exist in draft-${version}`);
    if (!allowed.has(kind)) throw new EncodeError(`parameter ${NAMES[kind]} is not allowed in ${where}`);
    for (const item of spec.repeatable ? value : [value]) {
      w.varint(kind - previous);
      previous = kind;
      spec.codec.write(w, item, version, kind);
      count++;
    }
  }
  return count;
}

/** The wire fields of a filter (StartGroup, StartObject, EndGroupDelta, EndObject: as many as its form has). */
function filterFields(filter) {
  const type = filter.type;
  if (!Number.isInteger(type) || type < F.NONE || type > F.NEXT_OBJECT) {
    throw new EncodeError(`unknown location filter form ${type}`);
  }
  const hasEndGroup = type === F.ABSOLUTE_RANGE || type === F.ABSOLUTE_RANGE_OBJECT;
  const hasStartObject = hasEndGroup || type === F.ABSOLUTE_START;
  const hasStartGroup = hasStartObject || type === F.RELATIVE_START_GROUP;
  const startGroup = checkU64(filter.startGroup ?? 0, 'startGroup');
  const startObject = checkU64(filter.startObject ?? 0, 'startObject');
  const endGroup = filter.endGroup ?? null;
  const endObject = filter.endObject ?? null;
  if (
    (!hasStartGroup && startGroup !== 0) ||
    (!hasStartObject && startObject !== 0) ||
    (endGroup !== null) !== hasEndGroup ||
    (endObject !== null) !== (type === F.ABSOLUTE_RANGE_OBJECT)
  ) {
    throw new EncodeError(`location filter fields do not match its form ${type}`);
  }
  const fields = [];
  if (hasStartGroup) fields.push(startGroup);
  if (hasStartObject) fields.push(startObject);
  if (endGroup !== null) {
    if (checkU64(endGroup, 'endGroup') < startGroup) throw new EncodeError('location filter ends before it starts');
    fields.push(sub(endGroup, startGroup));
  }
  if (endObject !== null) fields.push(checkU64(endObject, 'endObject'));
  return fields;
}

function writeLocationFilter(w, filter, version) {
  let fields = filterFields(filter);
  const type = filter.type;
  if (version >= 22) {
    w.varint(type);
    for (const field of fields) w.varint(field);
    return;
  }
  const inner = new Writer();
  if (family(version) === 20) {
    if (type === F.ABSOLUTE_START && fields[0] === 0 && fields[1] === 0) {
      throw new EncodeError(
        `draft-${version} cannot express an absolute start at {0, 0} (it reads as Next Object): omit the filter`,
      );
    }
    if (type === F.NEXT_OBJECT) fields = [0, 0];
  } else {
    let code;
    if (type === F.RELATIVE_START_GROUP && fields[0] === 0) code = NEXT_GROUP_START_18;
    else if (type === F.NEXT_OBJECT) code = LARGEST_OBJECT_18;
    else if (type === F.ABSOLUTE_START) code = ABSOLUTE_START_18;
    else if (type === F.ABSOLUTE_RANGE) code = ABSOLUTE_RANGE_18;
    else throw new EncodeError(`draft-18 SUBSCRIPTION_FILTER cannot express form ${type}`);
    inner.varint(code);
    if (code < ABSOLUTE_START_18) fields = [];
  }
  for (const field of fields) inner.varint(field);
  w.lengthBytes(inner.finish());
}
