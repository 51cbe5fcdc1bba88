// Control messages and their framing (draft-ietf-moq-transport-21 §9; draft-18 §"Control Messages";
// moq/wire/messages.py).
//
// Every message on a control or request stream is   Type (vi64) | Length (16, big-endian) | Body.
// A message is a plain object whose `type` is the spec's name; the fields (u64 = Number or BigInt, see
// varint.js; names and namespace fields are Uint8Array, encoders also take strings):
//
//   SETUP                {options: [[type, u64 | Uint8Array], ...]}   (Setup Options, §9.1; see createSetup)
//   GOAWAY               {newSessionUri: string, timeout, requestId?}  (requestId: draft-18 only)
//   SUBSCRIBE            {requestId, namespace, name, parameters}
//   SUBSCRIBE_OK         {trackAlias, parameters, properties}
//   REQUEST_OK           {parameters, properties}      (PUBLISH_OK, TRACK_STATUS_OK, ... all share it)
//   REQUEST_ERROR        {errorCode, retryInterval, reason, redirect?: {connectUri, namespace, name}}
//   REQUEST_UPDATE       {requestId, parameters}
//   PUBLISH              {requestId, namespace, name, trackAlias, parameters, properties}
//   PUBLISH_DONE         {statusCode, streamCount, reason}
//   PUBLISH_STATE_NOTIFY {parameters}                   (drafts 20+)
//   FETCH                {requestId, namespace, name, parameters}
//                        draft-18 adds fetchType: 1 standalone {start, end: Location} | 2, 3 joining
//                        {joiningRequestId, joiningStart} (a joining FETCH has namespace [] and name empty)
//   FETCH_OK             {endOfTrack: boolean, endLocation, parameters, properties}
//   TRACK_STATUS         {requestId, namespace, name, parameters}
//   PUBLISH_NAMESPACE    {requestId, namespace, parameters}
//   SUBSCRIBE_NAMESPACE, SUBSCRIBE_TRACKS   {requestId, namespacePrefix, parameters}
//   NAMESPACE, NAMESPACE_DONE               {namespaceSuffix}
//   PUBLISH_SKIPPED (20+) / PUBLISH_BLOCKED (18, same code 0x0F)   {namespaceSuffix, name}
//
// `parameters` is a Message Parameters object (params.js); `properties` are Track Properties, Key-Value-Pairs.
// Draft-18's table still lists 0x1E PUBLISH_OK: it decodes as REQUEST_OK there, and is never sent.
// The codec is stateless: which stream a message may arrive on, who may send a GOAWAY URI, which REQUEST_OK
// may carry Track Properties (only TRACK_STATUS_OK), are the session's to check.

import { EncodeError, NeedMoreData, PV, ProtocolViolation, RequestErrorCode } from './errors.js';
import { readParameters, writeParameters } from './params.js';
import {
  EMPTY,
  Reader,
  Writer,
  decodeToken,
  fromUtf8,
  readFullTrackName,
  readKeyValues,
  readLengthBytes,
  readLocation,
  readNamespace,
  readReasonPhrase,
  utf8,
  writeFullTrackName,
  writeKeyValues,
  writeLocation,
  writeNamespace,
  writeReasonPhrase,
} from './primitives.js';
import { readVarint, varintLength, varintSize } from './varint.js';
import { family } from './version.js';

/** The Message Length field is 16 bits (draft-21 §9). */
export const MAX_MESSAGE_BODY_BYTES = 0xffff;
/** GOAWAY New Session URI is at most this many bytes (draft-21 §9.2). */
export const MAX_GOAWAY_URI_BYTES = 8192;

export const MessageType = Object.freeze({
  REQUEST_UPDATE: 0x02,
  SUBSCRIBE: 0x03,
  SUBSCRIBE_OK: 0x04,
  REQUEST_ERROR: 0x05,
  PUBLISH_NAMESPACE: 0x06,
  REQUEST_OK: 0x07,
  NAMESPACE: 0x08,
  PUBLISH_DONE: 0x0b,
  TRACK_STATUS: 0x0d,
  NAMESPACE_DONE: 0x0e,
  PUBLISH_SKIPPED: 0x0f,
  PUBLISH_BLOCKED: 0x0f,
  GOAWAY: 0x10,
  FETCH: 0x16,
  FETCH_OK: 0x18,
  PUBLISH: 0x1d,
  PUBLISH_OK_DRAFT_18: 0x1e,
  PUBLISH_STATE_NOTIFY: 0x22,
  SUBSCRIBE_NAMESPACE: 0x50,
  SUBSCRIBE_TRACKS: 0x51,
  SETUP: 0x2f00,
});

/** Setup Option types (draft-21 §9.1.1-§9.1.7). Odd types carry bytes, even types a varint. */
export const SetupOption = Object.freeze({
  PATH: 0x01,
  AUTHORIZATION_TOKEN: 0x03,
  MAX_AUTH_TOKEN_CACHE_SIZE: 0x04,
  AUTHORITY: 0x05,
  MAX_FILTER_RANGES: 0x06,
  MOQT_IMPLEMENTATION: 0x07,
  MAX_REQUEST_UPDATES: 0x08,
});

/** Fetch Type of a draft-18 FETCH (draft-18 §"FETCH"); drafts 20+ have none. */
export const FetchType = Object.freeze({ STANDALONE: 0x1, RELATIVE_JOINING: 0x2, ABSOLUTE_JOINING: 0x3 });

const T = MessageType;
const S = SetupOption;

// -- SETUP -----------------------------------------------------------------------------------------------------

/**
 * A SETUP message. Over WebTransport a client sends no PATH or AUTHORITY (draft-21 §6.1.3); give
 * `implementation` (MOQT_IMPLEMENTATION) and, if needed, `authorizationTokens` (Token bytes, see encodeToken).
 */
export function createSetup({
  path,
  authority,
  authorizationTokens = [],
  maxAuthTokenCacheSize,
  maxFilterRanges,
  implementation,
  maxRequestUpdates,
  extra = [],
} = {}) {
  const options = [];
  if (path !== undefined) options.push([S.PATH, ascii(path, 'PATH')]);
  for (const token of authorizationTokens) options.push([S.AUTHORIZATION_TOKEN, token]);
  if (maxAuthTokenCacheSize !== undefined) options.push([S.MAX_AUTH_TOKEN_CACHE_SIZE, maxAuthTokenCacheSize]);
  if (authority !== undefined) options.push([S.AUTHORITY, ascii(authority, 'AUTHORITY')]);
  if (maxFilterRanges !== undefined) options.push([S.MAX_FILTER_RANGES, maxFilterRanges]);
  if (implementation !== undefined) options.push([S.MOQT_IMPLEMENTATION, utf8(implementation)]);
  if (maxRequestUpdates !== undefined) options.push([S.MAX_REQUEST_UPDATES, maxRequestUpdates]);
  options.push(...extra);
  options.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return { type: 'SETUP', options };
}

/** PATH and AUTHORITY are URI components (RFC 3986): ASCII only, percent-encode the rest. */
function ascii(text, what) {
  if (!/^[\x00-\x7f]*$/.test(text)) throw new EncodeError(`${what} setup option must be ASCII: ${text}`);
  return utf8(text);
}

/** The value of the first Setup Option of type `kind` in a SETUP message, or undefined. */
export function setupOption(setup, kind) {
  return setup.options.find(([k]) => k === kind)?.[1];
}

// Options that may appear at most once, by the first draft that defines them. AUTHORIZATION_TOKEN may repeat;
// options a draft does not define may repeat (§9.1).
const SINGLE_OPTIONS = new Map([
  [S.PATH, 18],
  [S.MAX_AUTH_TOKEN_CACHE_SIZE, 18],
  [S.AUTHORITY, 18],
  [S.MAX_FILTER_RANGES, 19],
  [S.MOQT_IMPLEMENTATION, 18],
  [S.MAX_REQUEST_UPDATES, 19],
]);

function duplicateOption(options, version) {
  const seen = new Set();
  for (const [kind] of options) {
    const since = SINGLE_OPTIONS.get(kind);
    if (since === undefined || version < since) continue;
    if (seen.has(kind)) return kind;
    seen.add(kind);
  }
  return null;
}

const setup = {
  read(r, version) {
    const options = readKeyValues(r);
    const duplicate = duplicateOption(options, version);
    if (duplicate !== null) throw new ProtocolViolation(PV, `SETUP repeats option 0x${duplicate.toString(16)}`);
    for (const [kind, value] of options) {
      if (kind === S.AUTHORIZATION_TOKEN) decodeToken(value); // undecodable: KEY_VALUE_FORMATTING_ERROR (§8.9)
    }
    return { options };
  },
  write(w, msg, version) {
    const duplicate = duplicateOption(msg.options, version);
    if (duplicate !== null) throw new EncodeError(`SETUP option 0x${duplicate.toString(16)} must not repeat`);
    writeKeyValues(w, msg.options);
  },
};

// -- Body codecs: read(r, version, code) -> fields; write(w, msg, version, code) --------------------------------

function readText(r, what, limit = null) {
  return fromUtf8(readLengthBytes(r, what, limit));
}

function writeText(w, text, what, limit = null) {
  const raw = utf8(text);
  if (limit !== null && raw.length > limit) throw new EncodeError(`${what} is ${raw.length} bytes, over ${limit}`);
  w.lengthBytes(raw);
}

const goaway = {
  read(r, version) {
    const msg = { newSessionUri: readText(r, 'GOAWAY new session URI', MAX_GOAWAY_URI_BYTES), timeout: r.varint() };
    if (family(version) === 18 && r.remaining > 0) msg.requestId = r.varint();
    return msg;
  },
  write(w, msg, version) {
    const hasRequestId = msg.requestId !== undefined && msg.requestId !== null;
    if (hasRequestId && family(version) !== 18) throw new EncodeError(`GOAWAY has no Request ID in draft-${version}`);
    writeText(w, msg.newSessionUri ?? '', 'GOAWAY new session URI', MAX_GOAWAY_URI_BYTES);
    w.varint(msg.timeout ?? 0);
    if (hasRequestId) w.varint(msg.requestId);
  },
};

const requestOk = {
  // Draft-18's 0x1E PUBLISH_OK is a REQUEST_OK: its parameters are read as REQUEST_OK's.
  read: (r, version) => ({ parameters: readParameters(r, version, T.REQUEST_OK), properties: readKeyValues(r) }),
  write(w, msg, version, code) {
    writeParameters(w, msg.parameters, version, code);
    writeKeyValues(w, msg.properties ?? []);
  },
};

const requestError = {
  read(r) {
    const msg = { errorCode: r.varint(), retryInterval: r.varint(), reason: readReasonPhrase(r) };
    if (msg.errorCode === RequestErrorCode.REDIRECT) {
      const connectUri = readText(r, 'redirect connect URI');
      const [namespace, name] = readFullTrackName(r);
      msg.redirect = { connectUri, namespace, name };
    }
    return msg;
  },
  write(w, msg) {
    const redirect = msg.redirect ?? null;
    if ((msg.errorCode === RequestErrorCode.REDIRECT) !== (redirect !== null)) {
      throw new EncodeError('REQUEST_ERROR carries a Redirect exactly when its code is REDIRECT (0x34)');
    }
    w.varint(msg.errorCode);
    w.varint(msg.retryInterval ?? 0);
    writeReasonPhrase(w, msg.reason ?? '');
    if (redirect !== null) {
      writeText(w, redirect.connectUri ?? '', 'redirect connect URI');
      writeFullTrackName(w, redirect.namespace ?? [], redirect.name ?? EMPTY);
    }
  },
};

const requestUpdate = {
  read: (r, version, code) => ({ requestId: r.varint(), parameters: readParameters(r, version, code) }),
  write(w, msg, version, code) {
    w.varint(msg.requestId);
    writeParameters(w, msg.parameters, version, code);
  },
};

/** SUBSCRIBE and TRACK_STATUS: Request ID, Track Namespace, Track Name, Parameters. */
const trackRequest = {
  read(r, version, code) {
    const requestId = r.varint();
    const [namespace, name] = readFullTrackName(r);
    return { requestId, namespace, name, parameters: readParameters(r, version, code) };
  },
  write(w, msg, version, code) {
    w.varint(msg.requestId);
    writeFullTrackName(w, msg.namespace, msg.name);
    writeParameters(w, msg.parameters, version, code);
  },
};

const subscribeOk = {
  read: (r, version, code) => ({
    trackAlias: r.varint(),
    parameters: readParameters(r, version, code),
    properties: readKeyValues(r),
  }),
  write(w, msg, version, code) {
    w.varint(msg.trackAlias);
    writeParameters(w, msg.parameters, version, code);
    writeKeyValues(w, msg.properties ?? []);
  },
};

const publish = {
  read(r, version, code) {
    const requestId = r.varint();
    const [namespace, name] = readFullTrackName(r);
    const trackAlias = r.varint();
    const parameters = readParameters(r, version, code);
    return { requestId, namespace, name, trackAlias, parameters, properties: readKeyValues(r) };
  },
  write(w, msg, version, code) {
    w.varint(msg.requestId);
    writeFullTrackName(w, msg.namespace, msg.name);
    w.varint(msg.trackAlias);
    writeParameters(w, msg.parameters, version, code);
    writeKeyValues(w, msg.properties ?? []);
  },
};

const publishDone = {
  read: (r) => ({ statusCode: r.varint(), streamCount: r.varint(), reason: readReasonPhrase(r) }),
  write(w, msg) {
    w.varint(msg.statusCode);
    w.varint(msg.streamCount ?? 0);
    writeReasonPhrase(w, msg.reason ?? '');
  },
};

const publishStateNotify = {
  read: (r, version, code) => ({ parameters: readParameters(r, version, code) }),
  write: (w, msg, version, code) => writeParameters(w, msg.parameters, version, code),
};

const present = (value) => value !== undefined && value !== null;

const fetch = {
  read(r, version, code) {
    const requestId = r.varint();
    if (family(version) !== 18) {
      const [namespace, name] = readFullTrackName(r);
      return { requestId, namespace, name, parameters: readParameters(r, version, code) };
    }
    const fetchType = r.varint();
    if (fetchType === FetchType.STANDALONE) {
      const [namespace, name] = readFullTrackName(r);
      const start = readLocation(r);
      const end = readLocation(r);
      return { requestId, namespace, name, parameters: readParameters(r, version, code), fetchType, start, end };
    }
    if (fetchType === FetchType.RELATIVE_JOINING || fetchType === FetchType.ABSOLUTE_JOINING) {
      const joiningRequestId = r.varint();
      const joiningStart = r.varint();
      const parameters = readParameters(r, version, code);
      return { requestId, namespace: [], name: new Uint8Array(0), parameters, fetchType, joiningRequestId, joiningStart };
    }
    throw new ProtocolViolation(PV, `unknown FETCH Fetch Type 0x${fetchType.toString(16)}`);
  },
  write(w, msg, version, code) {
    w.varint(msg.requestId);
    const standalone = present(msg.start) || present(msg.end);
    const joining = present(msg.joiningRequestId) || present(msg.joiningStart);
    if (family(version) !== 18) {
      if (present(msg.fetchType) || standalone || joining) {
        throw new EncodeError(`FETCH has no Fetch Type, Start/End Location or Joining fields in draft-${version}`);
      }
      writeFullTrackName(w, msg.namespace, msg.name);
    } else if (msg.fetchType === FetchType.STANDALONE) {
      if (!present(msg.start) || !present(msg.end) || joining) {
        throw new EncodeError('a draft-18 standalone FETCH needs start and end and no joining fields');
      }
      w.varint(FetchType.STANDALONE);
      writeFullTrackName(w, msg.namespace, msg.name);
      writeLocation(w, msg.start);
      writeLocation(w, msg.end);
    } else if (msg.fetchType === FetchType.RELATIVE_JOINING || msg.fetchType === FetchType.ABSOLUTE_JOINING) {
      if (!present(msg.joiningRequestId) || !present(msg.joiningStart)) {
        throw new EncodeError('a draft-18 joining FETCH needs joiningRequestId and joiningStart');
      }
      if (standalone || msg.namespace?.length || msg.name?.length) {
        throw new EncodeError('a draft-18 joining FETCH carries no track name, start or end');
      }
      w.varint(msg.fetchType);
      w.varint(msg.joiningRequestId);
      w.varint(msg.joiningStart);
    } else {
      throw new EncodeError('a draft-18 FETCH needs a fetchType');
    }
    writeParameters(w, msg.parameters, version, code);
  },
};

const fetchOk = {
  read(r, version, code) {
    const endOfTrack = r.uint8();
    if (endOfTrack > 1) throw new ProtocolViolation(PV, `FETCH_OK End Of Track is ${endOfTrack}, not 0 or 1`);
    const endLocation = readLocation(r);
    const parameters = readParameters(r, version, code);
    return { endOfTrack: endOfTrack === 1, endLocation, parameters, properties: readKeyValues(r) };
  },
  write(w, msg, version, code) {
    w.uint8(msg.endOfTrack ? 1 : 0);
    writeLocation(w, msg.endLocation);
    writeParameters(w, msg.parameters, version, code);
    writeKeyValues(w, msg.properties ?? []);
  },
};

/** PUBLISH_NAMESPACE, SUBSCRIBE_NAMESPACE, SUBSCRIBE_TRACKS: Request ID, a namespace (prefix), Parameters. */
function prefixRequest(field) {
  return {
    read: (r, version, code) => ({
      requestId: r.varint(),
      [field]: readNamespace(r),
      parameters: readParameters(r, version, code),
    }),
    write(w, msg, version, code) {
      w.varint(msg.requestId);
      writeNamespace(w, msg[field]);
      writeParameters(w, msg.parameters, version, code);
    },
  };
}

/** NAMESPACE, NAMESPACE_DONE: a Track Namespace Suffix. */
const suffix = {
  read: (r) => ({ namespaceSuffix: readNamespace(r) }),
  write: (w, msg) => writeNamespace(w, msg.namespaceSuffix),
};

/** PUBLISH_SKIPPED / PUBLISH_BLOCKED: a Track Namespace Suffix and a Track Name. */
const suffixName = {
  read(r) {
    const [namespaceSuffix, name] = readFullTrackName(r);
    return { namespaceSuffix, name };
  },
  write: (w, msg) => writeFullTrackName(w, msg.namespaceSuffix, msg.name),
};

// -- Tables ----------------------------------------------------------------------------------------------------

const COMMON = [
  ['SETUP', T.SETUP, setup],
  ['GOAWAY', T.GOAWAY, goaway],
  ['REQUEST_UPDATE', T.REQUEST_UPDATE, requestUpdate],
  ['SUBSCRIBE', T.SUBSCRIBE, trackRequest],
  ['SUBSCRIBE_OK', T.SUBSCRIBE_OK, subscribeOk],
  ['REQUEST_ERROR', T.REQUEST_ERROR, requestError],
  ['PUBLISH_NAMESPACE', T.PUBLISH_NAMESPACE, prefixRequest('namespace')],
  ['REQUEST_OK', T.REQUEST_OK, requestOk],
  ['NAMESPACE', T.NAMESPACE, suffix],
  ['PUBLISH_DONE', T.PUBLISH_DONE, publishDone],
  ['TRACK_STATUS', T.TRACK_STATUS, trackRequest],
  ['NAMESPACE_DONE', T.NAMESPACE_DONE, suffix],
  ['FETCH', T.FETCH, fetch],
  ['FETCH_OK', T.FETCH_OK, fetchOk],
  ['PUBLISH', T.PUBLISH, publish],
  ['SUBSCRIBE_NAMESPACE', T.SUBSCRIBE_NAMESPACE, prefixRequest('namespacePrefix')],
  ['SUBSCRIBE_TRACKS', T.SUBSCRIBE_TRACKS, prefixRequest('namespacePrefix')],
];

function table(rows) {
  return {
    byName: new Map(rows.map(([name, code, codec]) => [name, { code, codec }])),
    byCode: new Map(rows.map(([name, code, codec]) => [code, { name, codec }])),
  };
}

/** Per wire family: message name -> {code, codec} and code -> {name, codec}. */
const TABLES = {
  18: table([...COMMON, ['PUBLISH_BLOCKED', T.PUBLISH_BLOCKED, suffixName]]),
  20: table([
    ...COMMON,
    ['PUBLISH_SKIPPED', T.PUBLISH_SKIPPED, suffixName],
    ['PUBLISH_STATE_NOTIFY', T.PUBLISH_STATE_NOTIFY, publishStateNotify],
  ]),
};
TABLES[18].byCode.set(T.PUBLISH_OK_DRAFT_18, { name: 'REQUEST_OK', codec: requestOk });

/** The message names `version` defines. */
export function messageNames(version) {
  return [...TABLES[family(version)].byName.keys()];
}

/** The wire Message Type of a message name under `version`; EncodeError if that draft has no such message. */
export function messageType(name, version) {
  const entry = TABLES[family(version)].byName.get(name);
  if (!entry) throw new EncodeError(`${name} does not exist in draft-${version}`);
  return entry.code;
}

function lookup(code, version) {
  const entry = TABLES[family(version)].byCode.get(code);
  if (!entry) throw new ProtocolViolation(PV, `unknown message type 0x${code.toString(16)} for draft-${version}`);
  return entry;
}

// -- Framing ---------------------------------------------------------------------------------------------------

/** `msg` framed as Type | Length (16) | Body for `version`. EncodeError for what the draft cannot carry. */
export function encodeMessage(msg, version) {
  const code = messageType(msg.type, version);
  const body = new Writer(128);
  TABLES[family(version)].byName.get(msg.type).codec.write(body, msg, version, code);
  const size = body.length;
  if (size > MAX_MESSAGE_BODY_BYTES) throw new EncodeError(`${msg.type} body is ${size} bytes, over 65535`);
  const out = new Writer(varintSize(code) + 2 + size);
  out.varint(code);
  out.uint8(size >> 8);
  out.uint8(size & 0xff);
  out.bytes(body.finish());
  return out.finish();
}

/**
 * The header of the frame at `pos`: [type code, header length, body length], or null while incomplete.
 * The type is checked as soon as it is readable, so garbage is refused without waiting for a whole frame.
 */
function frameHeader(bytes, pos, end, version) {
  if (pos >= end) return null;
  const typeSize = varintLength(bytes[pos]);
  if (end - pos < typeSize) return null;
  const [code] = readVarint(bytes, pos, end);
  lookup(code, version);
  if (end - pos < typeSize + 2) return null;
  return [code, typeSize + 2, (bytes[pos + typeSize] << 8) | bytes[pos + typeSize + 1]];
}

function decodeBody(code, bytes, start, stop, version) {
  const { name, codec } = lookup(code, version);
  const r = new Reader(bytes, start, stop);
  let fields;
  try {
    fields = codec.read(r, version, code);
  } catch (err) {
    if (err instanceof NeedMoreData) {
      throw new ProtocolViolation(PV, `${name} body ends before its fields do (length mismatch)`);
    }
    throw err;
  }
  if (r.remaining) {
    throw new ProtocolViolation(PV, `${name} has ${r.remaining} bytes left over after its fields (length mismatch)`);
  }
  return { type: name, ...fields };
}

/**
 * Decode the first framed message in `bytes`: [message, bytes consumed].
 * @throws {NeedMoreData} the frame is incomplete
 * @throws {ProtocolViolation} unknown type for the draft, a body that does not match its length, a bad field
 */
export function decodeMessage(bytes, version) {
  const header = frameHeader(bytes, 0, bytes.length, version);
  if (header === null) throw new NeedMoreData('control message header incomplete');
  const [code, headerSize, bodySize] = header;
  const total = headerSize + bodySize;
  if (bytes.length < total) throw new NeedMoreData(`control message needs ${total} bytes, has ${bytes.length}`);
  return [decodeBody(code, bytes, headerSize, total, version), total];
}

/**
 * Incremental control-message parser for one stream (the control stream or a request stream).
 *
 * `feed(bytes)` appends and returns every message completed; `push(bytes)` + `next()` do the same one at a
 * time. Linear in the bytes fed however they are split; holds at most one partial frame beyond what one call
 * hands it. After a ProtocolViolation the reader is finished and throws it again on every call.
 */
export class MessageReader {
  #buf = new Uint8Array(256);
  #start = 0;
  #end = 0;
  #header = null;
  #error = null;

  constructor(version) {
    family(version);
    this.version = version;
  }

  /** Bytes held of a frame not yet complete (0 at a message boundary: a FIN is clean only then). */
  get buffered() {
    return this.#end - this.#start;
  }

  /** Add bytes received on the stream. */
  push(bytes) {
    if (this.#end + bytes.length > this.#buf.length) this.#makeRoom(bytes.length);
    this.#buf.set(bytes, this.#end);
    this.#end += bytes.length;
  }

  #makeRoom(extra) {
    // Move the unconsumed bytes to the front only when that frees at least half the buffer, else grow it:
    // each byte is then moved O(1) times overall, however the stream is split.
    const kept = this.#end - this.#start;
    if (kept + extra <= this.#buf.length / 2) {
      this.#buf.copyWithin(0, this.#start, this.#end);
    } else {
      const buf = new Uint8Array(Math.max(this.#buf.length * 2, kept + extra));
      buf.set(this.#buf.subarray(this.#start, this.#end));
      this.#buf = buf;
    }
    this.#start = 0;
    this.#end = kept;
  }

  /** The next complete message, or null until more bytes arrive. */
  next() {
    if (this.#error) throw this.#error;
    try {
      if (this.#header === null) {
        this.#header = frameHeader(this.#buf, this.#start, this.#end, this.version);
        if (this.#header === null) return null;
      }
      const [code, headerSize, bodySize] = this.#header;
      const start = this.#start + headerSize;
      const stop = start + bodySize;
      if (stop > this.#end) return null;
      this.#start = stop;
      this.#header = null;
      return decodeBody(code, this.#buf, start, stop, this.version);
    } catch (err) {
      if (err instanceof ProtocolViolation) this.#error = err;
      throw err;
    }
  }

  /** Add `bytes`; return the messages they complete, in order. */
  feed(bytes) {
    this.push(bytes);
    const messages = [];
    for (let msg = this.next(); msg !== null; msg = this.next()) messages.push(msg);
    return messages;
  }
}

