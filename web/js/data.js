// The data plane: uni stream types, subgroup and fetch streams, object datagrams, padding
// (draft-ietf-moq-transport-21 §6.4.1, §11; draft-18 §"Data Streams and Datagrams"; moq/wire/data.py).
// Drafts 18-22 share this wire format except that draft-18 has no End of Timed-Out Range (0x20C).
//
// What the decoders give (u64 = Number or BigInt, see varint.js; `null` = the field is not there):
//   {type: 'SUBGROUP_HEADER', trackAlias, groupId, subgroupId, publisherPriority, subgroupIdMode,
//    hasProperties, endOfGroup, firstObject}
//       publisherPriority null = DEFAULT_PRIORITY flag; subgroupId null in FIRST_OBJECT_ID mode (it is the
//       first object's ID: `parser.header` holds the resolved header once that object is parsed)
//   {type: 'SUBGROUP_OBJECT', objectId, properties: [[type, value]...], status, payload}
//   {type: 'FETCH_HEADER', requestId}
//   {type: 'FETCH_OBJECT', groupId, subgroupId, objectId, publisherPriority, properties, payload}
//       subgroupId null = Datagram forwarding preference; properties null when there are none
//   {type: 'FETCH_END_OF_RANGE', kind, groupId, objectId}   (absolute IDs, as the Python codec reads them)
//   {type: 'PADDING'}   {type: 'CONTROL_DATA', data}   (a uni stream that is the peer's control stream)
//   {type: 'OBJECT_DATAGRAM', trackAlias, groupId, objectId, publisherPriority, properties, endOfGroup,
//    status, payload}   status null = no STATUS flag (payload is the object)
//
// Payloads are Uint8Array. When a payload arrives whole in one chunk it is a view into that chunk (no copy):
// do not reuse a chunk's memory after feeding it (WebTransport readers hand out fresh chunks).

import { EncodeError, ObjectTooLarge, PV, ProtocolViolation, NeedMoreData } from './errors.js';
import { GroupOrder } from './params.js';
import { EMPTY, Reader, Writer, encodeKeyValues, readKeyValues } from './primitives.js';
import { MAX_U64, add, checkU64, encodeVarint, readVarint, sub } from './varint.js';
import { family } from './version.js';

/** Largest Object Payload Length a parser accepts: it holds an object whole before handing it on. */
export const MAX_OBJECT_PAYLOAD_BYTES = 16 * 1024 * 1024;
/** Largest Properties Length a parser accepts (no single property value may exceed 65535 bytes). */
export const MAX_OBJECT_PROPERTIES_BYTES = 1024 * 1024;

export const FETCH_HEADER_TYPE = 0x05;
export const SETUP_STREAM_TYPE = 0x2f00;
export const PADDING_STREAM_TYPE = 0x132b3e28;
export const PADDING_DATAGRAM_TYPE = 0x132b3e29;

/** Object Status (draft-21 §11.1.2). */
export const ObjectStatus = Object.freeze({ NORMAL: 0x0, END_OF_GROUP: 0x3, END_OF_TRACK: 0x4 });
/** SUBGROUP_ID_MODE, (type & 0x06) >> 1 (draft-21 §11.3.1); 0b11 is reserved. */
export const SubgroupIdMode = Object.freeze({ ZERO: 0, FIRST_OBJECT_ID: 1, EXPLICIT: 2 });
/** End of Range Serialization Flags (draft-21 §11.4.1, Table 7); TIMED_OUT is draft-20+. */
export const EndOfRangeKind = Object.freeze({ NON_EXISTENT: 0x8c, UNKNOWN: 0x10c, TIMED_OUT: 0x20c });
/** What a unidirectional stream carries, from its first varint (draft-21 §6.4.1). */
export const StreamType = Object.freeze({
  FETCH_HEADER: 'fetch',
  SUBGROUP_HEADER: 'subgroup',
  SETUP: 'setup',
  PADDING: 'padding',
});

const STATUSES = new Set(Object.values(ObjectStatus));
const NORMAL = ObjectStatus.NORMAL;

function checkStatusValue(value) {
  // draft-21 §11.1.2: any other value SHOULD be treated as a PROTOCOL_VIOLATION.
  if (!STATUSES.has(value)) throw new ProtocolViolation(PV, `undefined Object Status 0x${value.toString(16)}`);
  return value;
}

function checkPriority(priority) {
  if (!Number.isInteger(priority) || priority < 0 || priority > 0xff) {
    throw new EncodeError(`publisher priority must be 0-255: ${priority}`);
  }
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let pos = 0;
  for (const part of parts) {
    out.set(part, pos);
    pos += part.length;
  }
  return out;
}

// -- Stream types (draft-21 §6.4.1, §11.3.1) -------------------------------------------------------------------

function isSubgroupType(value) {
  // < 128, bit 4 set, SUBGROUP_ID_MODE not 0b11 (draft-18 lists the same set as ranges).
  return typeof value === 'number' && value < 0x80 && (value & 0x10) !== 0 && (value & 0x06) !== 0x06;
}

/** Classify the first varint of a uni stream; an unknown or invalid type is a PROTOCOL_VIOLATION. */
export function streamTypeOf(value, version) {
  if (value === FETCH_HEADER_TYPE) return StreamType.FETCH_HEADER;
  if (isSubgroupType(value)) return StreamType.SUBGROUP_HEADER;
  if (value === SETUP_STREAM_TYPE) return StreamType.SETUP;
  if (value === PADDING_STREAM_TYPE) return StreamType.PADDING;
  if (typeof value === 'number' && value < 0x80 && value & 0x10 && (value & 0x06) === 0x06) {
    throw new ProtocolViolation(PV, `SUBGROUP_HEADER type 0x${value.toString(16)} uses the reserved mode 0b11`);
  }
  throw new ProtocolViolation(PV, `unknown unidirectional stream type 0x${value.toString(16)}`);
}

/** The StreamType of a uni stream from its first bytes; NeedMoreData until the first varint is whole. */
export function peekStreamType(bytes, version) {
  return streamTypeOf(readVarint(bytes, 0)[0], version);
}

// -- Encoders --------------------------------------------------------------------------------------------------

/** The Type Flags a SUBGROUP_HEADER is sent with (draft-21 §11.3.1). */
export function subgroupTypeFlags(header) {
  let value = 0x10 | (header.subgroupIdMode << 1);
  if (header.hasProperties) value |= 0x01;
  if (header.endOfGroup) value |= 0x08;
  if (header.publisherPriority === null || header.publisherPriority === undefined) value |= 0x20;
  if (header.firstObject) value |= 0x40;
  return value;
}

/** The cheapest SUBGROUP_ID_MODE for a subgroup whose stream starts at `firstObjectId`. */
export function subgroupIdModeFor(subgroupId, firstObjectId) {
  if (subgroupId === 0) return SubgroupIdMode.ZERO;
  if (subgroupId === firstObjectId) return SubgroupIdMode.FIRST_OBJECT_ID;
  return SubgroupIdMode.EXPLICIT;
}

/** SUBGROUP_HEADER bytes (draft-21 §11.3.1, Figure 25). */
export function encodeSubgroupHeader(header, version) {
  family(version);
  const mode = header.subgroupIdMode;
  const subgroupId = header.subgroupId ?? null;
  if (mode === SubgroupIdMode.EXPLICIT) {
    if (subgroupId === null) throw new EncodeError('an EXPLICIT subgroup-id mode needs a subgroupId');
  } else if (mode === SubgroupIdMode.ZERO) {
    if (subgroupId !== null && subgroupId !== 0) throw new EncodeError(`mode ZERO cannot carry subgroup ${subgroupId}`);
  } else if (mode !== SubgroupIdMode.FIRST_OBJECT_ID) {
    throw new EncodeError(`undefined subgroup-id mode ${mode}`);
  }
  const w = new Writer(32);
  w.uint8(subgroupTypeFlags(header));
  w.varint(header.trackAlias);
  w.varint(header.groupId);
  if (mode === SubgroupIdMode.EXPLICIT) w.varint(subgroupId);
  const priority = header.publisherPriority ?? null;
  if (priority !== null) {
    checkPriority(priority);
    w.uint8(priority);
  }
  return w.finish();
}

/**
 * The fields of one subgroup object up to its payload (draft-21 §11.3.1, Figure 26); send the payload next.
 * `prevObjectId` is the previous object on this stream (null for the first). A zero `payloadLength` sends
 * `status` explicitly; a non-zero one requires NORMAL.
 */
export function encodeSubgroupObjectHeader(header, prevObjectId, objectId, properties, payloadLength, status = NORMAL) {
  const id = checkU64(objectId, 'objectId');
  let delta;
  if (prevObjectId === null || prevObjectId === undefined) {
    const subgroupId = header.subgroupId ?? null;
    if (header.subgroupIdMode === SubgroupIdMode.FIRST_OBJECT_ID && subgroupId !== null && subgroupId !== id) {
      throw new EncodeError(`subgroup ${subgroupId} is sent as the first object's ID, not ${id}`);
    }
    delta = id;
  } else {
    delta = sub(sub(id, checkU64(prevObjectId, 'prevObjectId')), 1);
    if (delta < 0) throw new EncodeError(`object ${id} does not follow object ${prevObjectId} on its stream`);
  }
  if (!STATUSES.has(status)) throw new EncodeError(`undefined Object Status ${status}`);
  const w = new Writer(32);
  w.varint(delta);
  const hasProps = properties !== null && properties !== undefined && properties.length > 0;
  if (header.hasProperties) {
    if (hasProps) {
      if (status !== NORMAL) throw new EncodeError('only a NORMAL object can carry properties');
      w.lengthBytes(encodeKeyValues(properties));
    } else {
      w.uint8(0);
    }
  } else if (hasProps) {
    throw new EncodeError('the subgroup header has no PROPERTIES flag: objects cannot carry properties');
  }
  if (payloadLength) {
    if (status !== NORMAL) throw new EncodeError('only a NORMAL object can carry a payload');
    w.varint(payloadLength);
  } else {
    w.uint8(0);
    w.varint(status);
  }
  return w.finish();
}

/** A whole subgroup object, payload included: `obj` is {objectId, properties, status, payload}. */
export function encodeSubgroupObject(header, prevObjectId, obj) {
  const payload = obj.payload ?? EMPTY;
  const head = encodeSubgroupObjectHeader(
    header,
    prevObjectId,
    obj.objectId,
    obj.properties,
    payload.length,
    obj.status ?? NORMAL,
  );
  return concat(head, payload);
}

/**
 * OBJECT_DATAGRAM bytes with the smallest Type Flags (draft-21 §11.2.1): Object ID 0 is omitted, Properties
 * are sent only when non-empty. Refused: a status with END_OF_GROUP or a payload; properties on non-NORMAL.
 */
export function encodeDatagram(dgram, version) {
  family(version);
  let flags = 0;
  const w = new Writer(32 + (dgram.payload?.length ?? 0));
  w.uint8(0); // the flags, filled in below
  w.varint(dgram.trackAlias);
  w.varint(dgram.groupId);
  if (dgram.objectId) w.varint(dgram.objectId);
  else flags |= 0x04;
  const priority = dgram.publisherPriority ?? null;
  if (priority === null) {
    flags |= 0x08;
  } else {
    checkPriority(priority);
    w.uint8(priority);
  }
  const status = dgram.status ?? null;
  if (dgram.properties?.length) {
    if (status !== null && status !== NORMAL) throw new EncodeError('only a NORMAL object can carry properties');
    flags |= 0x01;
    w.lengthBytes(encodeKeyValues(dgram.properties));
  }
  if (dgram.endOfGroup) {
    if (status !== null) throw new EncodeError('a datagram cannot carry both an Object Status and END_OF_GROUP');
    flags |= 0x02;
  }
  if (status !== null) {
    if (!STATUSES.has(status)) throw new EncodeError(`undefined Object Status ${status}`);
    if (dgram.payload?.length) throw new EncodeError('a datagram with an Object Status carries no payload');
    flags |= 0x20;
    w.varint(status);
  } else {
    w.bytes(dgram.payload ?? EMPTY);
  }
  const out = w.finish();
  out[0] = flags;
  return out;
}

/** FETCH_HEADER bytes (draft-21 §11.4.1, Figure 27). */
export function encodeFetchHeader(requestId) {
  return concat([FETCH_HEADER_TYPE], encodeVarint(requestId));
}

/** A padding stream's type followed by `length` zero bytes (draft-21 §11.5.1). */
export function encodePaddingStream(length = 0) {
  return concat(encodeVarint(PADDING_STREAM_TYPE), new Uint8Array(length));
}

/** A padding datagram of exactly `size` bytes, type included (draft-21 §11.5.2). */
export function encodePaddingDatagram(size) {
  const prefix = encodeVarint(PADDING_DATAGRAM_TYPE);
  if (size < prefix.length) throw new EncodeError(`a padding datagram takes at least ${prefix.length} bytes`);
  return concat(prefix, new Uint8Array(size - prefix.length));
}

/**
 * Writes the entries of one fetch stream with the smallest Serialization Flags (draft-21 §11.4.1.1). It keeps
 * the prior entry's Group and Object and the last object's Subgroup and priority, as the receiver does.
 * Entries must follow `groupOrder`, Object IDs ascending within a group; anything else is an EncodeError.
 * Write encodeFetchHeader first, then for each object objectHeader(...) and its payload (or encode(item)).
 */
export class FetchObjectEncoder {
  #group = null;
  #object = 0;
  #subgroup = null;
  #priority = null;

  constructor(version, groupOrder = GroupOrder.ASCENDING) {
    family(version);
    if (groupOrder !== GroupOrder.ASCENDING && groupOrder !== GroupOrder.DESCENDING) {
      throw new EncodeError(`group order must be 1 or 2, not ${groupOrder}`);
    }
    this.version = version;
    this.groupOrder = groupOrder;
  }

  /** [flags, Group ID Delta or null, Object ID Delta or null] for an entry at (group, object). */
  #locate(group, object) {
    const prior = this.#group;
    if (prior === null) return [0x0c, group, object];
    const next = add(this.#object, 1);
    if (group === prior) {
      if (object <= this.#object) {
        throw new EncodeError(`object ${object} of group ${group} does not follow object ${this.#object}`);
      }
      return object === next ? [0, null, null] : [0x04, null, sub(object, this.#object)];
    }
    let delta;
    if (this.groupOrder === GroupOrder.ASCENDING) {
      if (group < prior) throw new EncodeError(`group ${group} after group ${prior} in an ascending fetch`);
      delta = sub(sub(group, prior), 1);
    } else {
      if (group > prior) throw new EncodeError(`group ${group} after group ${prior} in a descending fetch`);
      delta = sub(sub(prior, group), 1);
    }
    // Without an Object ID Delta the ID is the prior one plus one, whatever the group (§11.4.1.1).
    return object === next ? [0x08, delta, null] : [0x0c, delta, object];
  }

  /** The fields of one fetch object up to its payload; `subgroupId` null = a Datagram-preference object. */
  objectHeader(groupId, subgroupId, objectId, publisherPriority, properties, payloadLength) {
    checkPriority(publisherPriority);
    const group = checkU64(groupId, 'groupId');
    const object = checkU64(objectId, 'objectId');
    checkU64(payloadLength, 'payload length');
    let [flags, groupDelta, objectDelta] = this.#locate(group, object);
    const first = this.#group === null;
    const subgroup = subgroupId === null || subgroupId === undefined ? null : checkU64(subgroupId, 'subgroupId');
    let subgroupField = null;
    if (subgroup === null) {
      flags |= 0x40; // Datagram forwarding preference: the two low bits stay 0
    } else if (subgroup !== 0) {
      // Mode 0 (Subgroup ID 0) needs nothing; else the prior object's subgroup, the next one, or the field.
      const prior = first ? null : this.#subgroup;
      if (prior !== null && subgroup === prior) flags |= 0x01;
      else if (prior !== null && subgroup === add(prior, 1)) flags |= 0x02;
      else {
        flags |= 0x03;
        subgroupField = subgroup;
      }
    }
    if (publisherPriority !== this.#priority) flags |= 0x10;
    const props = properties?.length ? encodeKeyValues(properties) : null;
    if (props) flags |= 0x20;
    // Wire order (Figure 28): flags, Group ID Delta, Subgroup ID, Object ID Delta, Priority, Properties, Length.
    const w = new Writer(48);
    w.uint8(flags);
    if (groupDelta !== null) w.varint(groupDelta);
    if (subgroupField !== null) w.varint(subgroupField);
    if (objectDelta !== null) w.varint(objectDelta);
    if (flags & 0x10) w.uint8(publisherPriority);
    if (props) w.lengthBytes(props);
    w.varint(payloadLength);
    this.#group = group;
    this.#object = object;
    this.#subgroup = subgroup;
    this.#priority = publisherPriority;
    return w.finish();
  }

  /** An End of Range marker (draft-21 §11.4.1.2); TIMED_OUT does not exist in draft-18. */
  endOfRange(kind, groupId, objectId) {
    if (!Object.values(EndOfRangeKind).includes(kind)) throw new EncodeError(`unknown End of Range kind ${kind}`);
    if (kind === EndOfRangeKind.TIMED_OUT && family(this.version) < 20) {
      throw new EncodeError('End of Timed-Out Range (0x20C) does not exist in draft-18');
    }
    const group = checkU64(groupId, 'groupId');
    const object = checkU64(objectId, 'objectId');
    if (this.#group !== null) this.#locate(group, object); // only for the order check
    // The prior Group and Object become the marker's; Subgroup and priority stay the last object's.
    this.#group = group;
    this.#object = object;
    return concat(encodeVarint(kind), encodeVarint(group), encodeVarint(object));
  }

  /** A whole entry (a FETCH_OBJECT or FETCH_END_OF_RANGE event shape), payload included. */
  encode(item) {
    if (item.type === 'FETCH_END_OF_RANGE') return this.endOfRange(item.kind, item.groupId, item.objectId);
    const payload = item.payload ?? EMPTY;
    const head = this.objectHeader(
      item.groupId,
      item.subgroupId,
      item.objectId,
      item.publisherPriority,
      item.properties,
      payload.length,
    );
    return concat(head, payload);
  }
}

// -- Datagram decoding -----------------------------------------------------------------------------------------

/**
 * Parse one datagram (draft-21 §11.2.1, §11.5.2): an OBJECT_DATAGRAM or {type: 'PADDING'}. Refused with
 * PROTOCOL_VIOLATION: an unknown type, bit 0x10 or a bit >= 0x40 set, STATUS with END_OF_GROUP, PROPERTIES with
 * a zero length, properties on a non-Normal status, an undefined status, truncation, bytes after the status.
 */
export function decodeDatagram(bytes, version) {
  family(version);
  try {
    const r = new Reader(bytes);
    const kind = r.varint();
    if (kind >= 0x40 || kind & 0x10) {
      if (kind === PADDING_DATAGRAM_TYPE) return { type: 'PADDING' };
      if (kind < 0x40) throw new ProtocolViolation(PV, `datagram type 0x${kind.toString(16)} has reserved bit 0x10`);
      throw new ProtocolViolation(PV, `unknown datagram type 0x${kind.toString(16)}`);
    }
    if ((kind & 0x22) === 0x22) throw new ProtocolViolation(PV, 'datagram type has both STATUS and END_OF_GROUP');
    const trackAlias = r.varint();
    const groupId = r.varint();
    const objectId = kind & 0x04 ? 0 : r.varint();
    const publisherPriority = kind & 0x08 ? null : r.uint8();
    let properties = null;
    if (kind & 0x01) {
      const length = r.varint();
      if (length === 0) throw new ProtocolViolation(PV, 'datagram has the PROPERTIES flag but a zero length');
      if (length > r.remaining) throw new ProtocolViolation(PV, 'datagram properties run past its end');
      properties = readKeyValues(r.sub(length));
    }
    const dgram = { type: 'OBJECT_DATAGRAM', trackAlias, groupId, objectId, publisherPriority, properties };
    if (kind & 0x20) {
      const status = checkStatusValue(r.varint());
      if (properties !== null && status !== NORMAL) {
        throw new ProtocolViolation(PV, `properties on an object with status ${status}`);
      }
      if (r.remaining) throw new ProtocolViolation(PV, 'datagram has bytes after its Object Status');
      return { ...dgram, endOfGroup: false, status, payload: EMPTY };
    }
    return { ...dgram, endOfGroup: (kind & 0x02) !== 0, status: null, payload: r.view(r.remaining) };
  } catch (err) {
    if (err instanceof NeedMoreData) throw new ProtocolViolation(PV, 'datagram truncated');
    throw err;
  }
}

// -- Stream parsing --------------------------------------------------------------------------------------------

const S_TYPE = 0;
const S_SUBGROUP_HEADER = 1;
const S_FETCH_HEADER = 2;
const S_PADDING = 3;
const S_CONTROL = 4;
const S_OBJECT = 5; // at an object boundary: the object's leading fields
const S_PROPERTIES = 6; // collecting Properties bytes
const S_TAIL = 7; // Object Payload Length (and the Object Status on subgroup streams)
const S_PAYLOAD = 8; // collecting payload bytes
const S_FINISHED = 9;
const S_FAILED = 10;

/**
 * Incremental parser of one unidirectional stream: subgroup, fetch, padding (or SETUP, passed through).
 *
 * `feed(chunk, fin)` returns the events `chunk` completes: first the header, then each object as soon as it
 * is whole. Errors: ProtocolViolation (close the session), ObjectTooLarge (reset this stream with
 * EXCESSIVE_LOAD); after either the parser is dead and throws the same error again.
 *
 * `fetchGroupOrder` is the GROUP_ORDER of the FETCH whose objects the stream carries (it decides whether a
 * Group ID Delta counts up or down, §11.4.1.1), or a function called once with the FETCH_HEADER's Request ID
 * that returns it.
 */
export class DataStreamParser {
  streamType = null;
  /** The stream header once parsed (resolved: subgroupId set, once a FIRST_OBJECT_ID stream's first object is). */
  header = null;
  #state = S_TYPE;
  #error = null;
  #carry = EMPTY; // bytes of a bounded step that straddles chunks (under 64 bytes)
  #controlPrefix = EMPTY;
  #subgroupType = 0;
  #isFetch = false;
  #descending = false;
  // The object being parsed.
  #objectId = 0;
  #properties = [];
  #status = NORMAL;
  #need = 0; // bytes of properties or payload still to come
  #partial = null; // a properties or payload block arriving in several chunks
  #filled = 0;
  // Subgroup streams: the previous Object ID. Fetch streams: the prior entry's Group/Object, and the last
  // object's Subgroup (null if none or Datagram preference) and priority (§11.4.1.2).
  #prevObjectId = null;
  #priorGroup = null;
  #priorObject = 0;
  #priorSubgroup = null;
  #priorPriority = null;
  #group = 0;
  #subgroup = 0;
  #priority = 0;

  constructor(
    version,
    {
      fetchGroupOrder = GroupOrder.ASCENDING,
      maxPayloadBytes = MAX_OBJECT_PAYLOAD_BYTES,
      maxPropertiesBytes = MAX_OBJECT_PROPERTIES_BYTES,
    } = {},
  ) {
    family(version);
    this.version = version;
    this.fetchGroupOrder = fetchGroupOrder;
    this.maxPayloadBytes = maxPayloadBytes;
    this.maxPropertiesBytes = maxPropertiesBytes;
  }

  /** True when the stream so far ends between objects (a FIN here is clean). */
  get atObjectBoundary() {
    return [S_OBJECT, S_PADDING, S_CONTROL, S_FINISHED].includes(this.#state) && this.#carry.length === 0;
  }

  /** Parse `chunk` (the next bytes of the stream); `fin` marks the stream's graceful end. */
  feed(chunk, fin = false) {
    if (this.#error) throw this.#error;
    if (this.#state === S_FINISHED) throw new Error("data fed after the stream's FIN");
    const events = [];
    try {
      this.#consume(chunk, events);
      if (fin) this.#finish();
    } catch (err) {
      if (err instanceof ProtocolViolation || err instanceof ObjectTooLarge) {
        this.#state = S_FAILED;
        this.#error = err;
      }
      throw err;
    }
    return events;
  }

  #finish() {
    const state = this.#state;
    if (state === S_PADDING || state === S_CONTROL || (state === S_OBJECT && this.#carry.length === 0)) {
      this.#state = S_FINISHED;
      return;
    }
    if (state === S_TYPE || state === S_SUBGROUP_HEADER || state === S_FETCH_HEADER) {
      throw new ProtocolViolation(PV, 'FIN before the stream header was complete');
    }
    // draft-21 §11.3: a stream that ends gracefully in the middle of an object SHOULD close the session.
    throw new ProtocolViolation(PV, 'FIN in the middle of an object');
  }

  #consume(chunk, events) {
    let buf = chunk;
    let pos = 0;
    if (this.#carry.length) {
      buf = concat(this.#carry, chunk);
      this.#carry = EMPTY;
    }
    for (;;) {
      const state = this.#state;
      if (state === S_PAYLOAD || state === S_PROPERTIES) {
        const take = Math.min(buf.length - pos, this.#need);
        const block = this.#collect(buf.subarray(pos, pos + take));
        pos += take;
        if (!block) return;
        if (state === S_PAYLOAD) {
          this.#complete(block, events);
        } else {
          const properties = readKeyValues(new Reader(block));
          if (this.#isFetch) this.#properties = properties.length ? properties : null;
          else this.#properties = properties;
          this.#state = S_TAIL;
        }
        continue;
      }
      if (state === S_PADDING) return; // draft-21 §11.5.1: the receiver MUST discard padding
      if (state === S_CONTROL) {
        const rest = concat(this.#controlPrefix, buf.subarray(pos));
        this.#controlPrefix = EMPTY;
        if (rest.length) events.push({ type: 'CONTROL_DATA', data: rest });
        return;
      }
      if (pos >= buf.length) return;
      // A bounded step: parse it whole, or keep its bytes and wait for more. Steps change no state before
      // they have read everything, so a step cut short can be retried from the same place.
      const r = new Reader(buf, pos);
      try {
        if (state === S_OBJECT) this.#isFetch ? this.#fetchObject(r, events) : this.#subgroupObject(r, events);
        else if (state === S_TAIL) this.#tail(r, events);
        else if (state === S_TYPE) this.#streamType(r, events);
        else if (state === S_SUBGROUP_HEADER) this.#subgroupHeader(r, events);
        else this.#fetchHeader(r, events);
      } catch (err) {
        if (!(err instanceof NeedMoreData)) throw err;
        this.#carry = buf.slice(pos);
        return;
      }
      pos = r.pos;
    }
  }

  /** Add `piece` to the properties or payload block being collected: the whole block once complete, else null. */
  #collect(piece) {
    if (this.#partial === null) {
      if (piece.length === this.#need) {
        this.#need = 0;
        return piece; // arrived whole in one chunk: a view, no copy
      }
      this.#partial = new Uint8Array(this.#need);
      this.#filled = 0;
    }
    this.#partial.set(piece, this.#filled);
    this.#filled += piece.length;
    this.#need -= piece.length;
    if (this.#need > 0) return null;
    const block = this.#partial;
    this.#partial = null;
    return block;
  }

  #streamType(r, events) {
    const start = r.pos;
    const value = r.varint();
    const kind = streamTypeOf(value, this.version);
    this.streamType = kind;
    if (kind === StreamType.SUBGROUP_HEADER) {
      this.#subgroupType = value;
      this.#state = S_SUBGROUP_HEADER;
    } else if (kind === StreamType.FETCH_HEADER) {
      this.#isFetch = true;
      this.#properties = null;
      this.#state = S_FETCH_HEADER;
    } else if (kind === StreamType.PADDING) {
      events.push({ type: 'PADDING' });
      this.#state = S_PADDING;
    } else {
      this.#controlPrefix = r.buf.slice(start, r.pos);
      this.#state = S_CONTROL;
    }
  }

  #subgroupHeader(r, events) {
    const kind = this.#subgroupType;
    const trackAlias = r.varint();
    const groupId = r.varint();
    const subgroupIdMode = (kind >> 1) & 0x03;
    let subgroupId = 0;
    if (subgroupIdMode === SubgroupIdMode.EXPLICIT) subgroupId = r.varint();
    else if (subgroupIdMode === SubgroupIdMode.FIRST_OBJECT_ID) subgroupId = null;
    const publisherPriority = kind & 0x20 ? null : r.uint8();
    const header = {
      type: 'SUBGROUP_HEADER',
      trackAlias,
      groupId,
      subgroupId,
      publisherPriority,
      subgroupIdMode,
      hasProperties: (kind & 0x01) !== 0,
      endOfGroup: (kind & 0x08) !== 0,
      firstObject: (kind & 0x40) !== 0,
    };
    this.header = header;
    this.#state = S_OBJECT;
    events.push(header);
  }

  #fetchHeader(r, events) {
    const requestId = r.varint();
    const source = this.fetchGroupOrder;
    const order = typeof source === 'function' ? source(requestId) : source;
    this.#descending = order === GroupOrder.DESCENDING;
    const header = { type: 'FETCH_HEADER', requestId };
    this.header = header;
    this.#state = S_OBJECT;
    events.push(header);
  }

  #subgroupObject(r, events) {
    const delta = r.varint();
    let propsLength = 0;
    let length = 0;
    let statusValue = 0;
    if (this.header.hasProperties) propsLength = r.varint();
    if (!propsLength) {
      // No property bytes to wait for: read the rest of the object's fields in the same bounded step.
      length = r.varint();
      if (!length) statusValue = r.varint();
    }
    let objectId;
    if (this.#prevObjectId === null) {
      objectId = delta;
      if (this.header.subgroupIdMode === SubgroupIdMode.FIRST_OBJECT_ID) {
        this.header = { ...this.header, subgroupId: objectId };
      }
    } else {
      objectId = add(add(this.#prevObjectId, delta), 1);
      if (objectId > MAX_U64) throw new ProtocolViolation(PV, 'Object ID Delta overflows 2^64-1');
    }
    this.#objectId = objectId;
    this.#prevObjectId = objectId;
    this.#properties = [];
    this.#startBlock(propsLength, length, statusValue, events);
  }

  #fetchObject(r, events) {
    const flags = r.varint();
    if (flags >= 0x80) return this.#endOfRange(flags, r, events);
    const first = this.#priorGroup === null;
    let group = this.#priorGroup ?? 0;
    const groupDelta = flags & 0x08 ? r.varint() : 0;
    const datagram = (flags & 0x40) !== 0;
    const mode = flags & 0x03;
    // With the Datagram bit the two low bits MUST be ignored (§11.4.1.1).
    let subgroup = datagram ? null : mode === 0x03 ? r.varint() : 0;
    const objectDelta = flags & 0x04 ? r.varint() : 0;
    const priority = flags & 0x10 ? r.uint8() : this.#priorPriority;
    const propsLength = flags & 0x20 ? r.varint() : 0;
    const length = propsLength ? 0 : r.varint(); // Object Payload Length, in the same bounded step
    // Everything is read; now resolve against the prior entry (§11.4.1.1-§11.4.1.2).
    if (first && (flags & 0x0c) !== 0x0c) {
      throw new ProtocolViolation(PV, 'the first fetch object must carry a Group ID Delta and an Object ID Delta');
    }
    if (!datagram && (mode === 0x01 || mode === 0x02)) {
      const base = this.#priorSubgroup;
      if (base === null) throw new ProtocolViolation(PV, 'fetch object refers to a prior Subgroup ID that does not exist');
      subgroup = mode === 0x01 ? base : add(base, 1);
      if (subgroup > MAX_U64) throw new ProtocolViolation(PV, 'Subgroup ID overflows 2^64-1');
    }
    if (priority === null) throw new ProtocolViolation(PV, 'fetch object refers to a prior priority that does not exist');
    let objectId;
    if (flags & 0x08) {
      if (first) {
        group = groupDelta;
      } else if (this.#descending) {
        group = sub(sub(group, groupDelta), 1);
        if (group < 0) throw new ProtocolViolation(PV, 'Group ID Delta goes below group 0 in a descending fetch');
      } else {
        group = add(add(group, groupDelta), 1);
        if (group > MAX_U64) throw new ProtocolViolation(PV, 'Group ID Delta overflows 2^64-1');
      }
      objectId = flags & 0x04 ? objectDelta : add(this.#priorObject, 1);
    } else {
      objectId = add(this.#priorObject, flags & 0x04 ? objectDelta : 1);
    }
    if (objectId > MAX_U64) throw new ProtocolViolation(PV, 'Object ID overflows 2^64-1');
    this.#priorGroup = this.#group = group;
    this.#priorObject = this.#objectId = objectId;
    this.#priorSubgroup = this.#subgroup = subgroup;
    this.#priorPriority = this.#priority = priority;
    this.#properties = null;
    this.#startBlock(propsLength, length, 0, events);
  }

  #endOfRange(flags, r, events) {
    const kinds = [EndOfRangeKind.NON_EXISTENT, EndOfRangeKind.UNKNOWN];
    if (family(this.version) >= 20) kinds.push(EndOfRangeKind.TIMED_OUT);
    if (!kinds.includes(flags)) {
      // Table 7: any other value is a PROTOCOL_VIOLATION; draft-18 has no 0x20C.
      throw new ProtocolViolation(PV, `undefined fetch Serialization Flags 0x${flags.toString(16)}`);
    }
    // The marker's Group ID and Object ID are absolute, not deltas (as moq/wire/data.py reads them).
    const groupId = r.varint();
    const objectId = r.varint();
    this.#priorGroup = groupId;
    this.#priorObject = objectId;
    events.push({ type: 'FETCH_END_OF_RANGE', kind: flags, groupId, objectId });
  }

  #tail(r, events) {
    const length = r.varint();
    const statusValue = !length && !this.#isFetch ? r.varint() : 0;
    this.#sized(length, statusValue, events);
  }

  /** After an object's leading fields: collect its properties, or go on with its length and status. */
  #startBlock(propsLength, length, statusValue, events) {
    if (propsLength) {
      if (propsLength > this.maxPropertiesBytes) {
        throw new ObjectTooLarge('object properties', propsLength, this.maxPropertiesBytes);
      }
      this.#need = propsLength;
      this.#state = S_PROPERTIES;
    } else {
      this.#sized(length, statusValue, events);
    }
  }

  /** The Object Payload Length (and, if it is 0 on a subgroup stream, the Object Status) are known. */
  #sized(length, statusValue, events) {
    if (length) {
      if (length > this.maxPayloadBytes) throw new ObjectTooLarge('object payload', length, this.maxPayloadBytes);
      this.#status = NORMAL;
      this.#need = length;
      this.#state = S_PAYLOAD;
      return;
    }
    let status = NORMAL; // fetch objects carry no status (§11.1.2)
    if (!this.#isFetch) {
      status = checkStatusValue(statusValue);
      if (status !== NORMAL && this.#properties.length) {
        // §11.1.3: properties on a non-Normal object MUST close the session.
        throw new ProtocolViolation(PV, `properties on an object with status ${status}`);
      }
    }
    this.#status = status;
    this.#complete(EMPTY, events);
  }

  #complete(payload, events) {
    if (this.#isFetch) {
      events.push({
        type: 'FETCH_OBJECT',
        groupId: this.#group,
        subgroupId: this.#subgroup,
        objectId: this.#objectId,
        publisherPriority: this.#priority,
        properties: this.#properties,
        payload,
      });
    } else {
      events.push({
        type: 'SUBGROUP_OBJECT',
        objectId: this.#objectId,
        properties: this.#properties,
        status: this.#status,
        payload,
      });
    }
    this.#state = S_OBJECT;
  }
}
