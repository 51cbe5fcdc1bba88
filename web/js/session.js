// A MOQT session over WebTransport: the subscriber's side (what the listing page and the player need), and the
// publisher's side a call page needs (PUBLISH_NAMESPACE, and the relay's SUBSCRIBEs for our tracks, served by
// tracks.js).
//
// - Negotiation (draft-21 §6.1.3): the drafts go in WebTransport's `protocols` option ("moqt-22", "moqt-21",
//   "moqt-20", "moqt-18"); the server's choice comes back as `transport.protocol`. No choice = no session.
// - Control streams (§6.3): we open one uni stream and send SETUP on it; the peer's uni stream starting with
//   SETUP is its control stream (later only GOAWAY may come on it). Neither is ever closed.
// - Requests (§6.4): each SUBSCRIBE / SUBSCRIBE_NAMESPACE on a bidi stream of its own, answered on it; client
//   Request IDs are even, from 0. Cancelling = reset our side and STOP_SENDING theirs.
// - Objects arrive on subgroup streams (one uni stream per subgroup, §11.3) and in datagrams (§11.2), named by
//   the Track Alias of SUBSCRIBE_OK. A stream whose alias is not known yet (its SUBSCRIBE_OK is still on the
//   way) waits for it, within bounds (MAX_PENDING_STREAMS, ALIAS_WAIT_MS).
// - Publishing (§9.6, §9.7): publishNamespace() makes our namespace known; a SUBSCRIBE the relay opens toward us
//   for a track added with addTrack() gets SUBSCRIBE_OK with a Track Alias of ours and is served from the
//   track's latest group (tracks.js); one for any other track gets REQUEST_ERROR DOES_NOT_EXIST. Any other
//   request gets NOT_SUPPORTED. The relay cancels a subscription by resetting its request stream.
//
// The wire codec (moqt.js) does the bytes; this module does the streams. A ProtocolViolation from the peer
// closes the session with its code.

import * as moqt from './moqt.js';
import { ServedSubscription, trackKey } from './tracks.js';

/** What we call ourselves in SETUP (MOQT_IMPLEMENTATION). */
export const IMPLEMENTATION = 'moq-web/0.1';
/** Uni streams waiting for their Track Alias at once; more are cancelled (a peer must not make us hoard them). */
export const MAX_PENDING_STREAMS = 64;
/** How long a uni stream waits for the SUBSCRIBE_OK that names its Track Alias. */
export const ALIAS_WAIT_MS = 3000;
/** How long connect() waits for the transport and the peer's SETUP. */
export const SETUP_TIMEOUT_MS = 10000;

const EMPTY = new Uint8Array(0);

/** A REQUEST_ERROR (or a request stream that ended without an answer). */
export class RequestError extends Error {
  /** @param {number} code  @param {string} reason */
  constructor(code, reason) {
    super(`request refused: ${reason || 'no reason'} (code 0x${code.toString(16)})`);
    this.code = code;
    this.reason = reason;
  }
}

/** The hex sha-256 of a certificate as bytes, for `serverCertificateHashes`. */
export function hexToBytes(hex) {
  const clean = hex.replace(/[^0-9a-fA-F]/g, '');
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** A WebTransportError carrying a stream error code (Chromium takes the init dictionary as first argument). */
function streamError(code, message = '') {
  try {
    return new WebTransportError({ message, streamErrorCode: code });
  } catch {
    return new Error(message);
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Messages of one request stream, in order, until its FIN. */
async function* readMessages(reader, version) {
  const messages = new moqt.MessageReader(version);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) {
      if (messages.buffered) throw new moqt.ProtocolViolation(moqt.PV, 'request stream ended inside a message');
      return;
    }
    for (const msg of messages.feed(value)) yield msg;
  }
}

/** An incoming data stream being read. Cancelling it (STOP_SENDING) also tells its read loop to stop quietly:
 * the reader then sees an end that is no FIN, and must not take it for one (a FIN inside an object would be a
 * PROTOCOL_VIOLATION). */
class IncomingStream {
  cancelled = false;

  constructor(reader) {
    this.reader = reader;
  }

  cancel(code, reason) {
    if (this.cancelled) return;
    this.cancelled = true;
    this.reader.cancel(streamError(code, reason)).catch(() => {});
  }
}

/**
 * One subscription (SUBSCRIBE .. SUBSCRIBE_OK .. PUBLISH_DONE). Objects go to `onObject`, the end of each
 * subgroup stream (FIN, or reset) to `onStreamEnd`, the end of the subscription to `onDone`.
 */
export class Subscription {
  /** @type {number | bigint | null} */
  trackAlias = null;
  largest = null;
  ended = false;
  /** Objects and bytes (stream and datagram payloads) received on this subscription. */
  objects = 0;
  bytes = 0;
  /** REQUEST_UPDATEs sent, and answers (REQUEST_OK or REQUEST_ERROR) received. */
  updatesSent = 0;
  updatesAnswered = 0;
  /** @type {(obj: MoqObject) => void} */
  onObject = () => {};
  /** @type {(info: {groupId: number, subgroupId: number, reset: boolean}) => void} */
  onStreamEnd = () => {};
  /** @type {(info: {statusCode: number, reason: string}) => void} */
  onDone = () => {};
  #session;
  #writer;
  #reader;
  /** Open data streams (IncomingStream), by group, to cancel the ones a player skips. */
  #streams = new Map();

  constructor(session, requestId, namespace, name, writer, reader) {
    this.#session = session;
    this.requestId = requestId;
    this.namespace = namespace;
    this.name = name;
    this.#writer = writer;
    this.#reader = reader;
  }

  /** Unsubscribe: reset our side of the request stream and ask the publisher to stop (draft-21 §6.4.2.3). */
  cancel() {
    if (this.ended) return;
    this.#finish({ statusCode: moqt.PublishDoneCode.INTERNAL_ERROR, reason: 'cancelled' }, false);
    const error = streamError(moqt.StreamResetCode.CANCELLED, 'unsubscribed');
    this.#writer.abort(error).catch(() => {});
    this.#reader.cancel(error).catch(() => {});
    for (const streams of this.#streams.values()) {
      for (const stream of streams) stream.cancel(moqt.StreamResetCode.CANCELLED, 'unsubscribed');
    }
    this.#streams.clear();
  }

  /**
   * REQUEST_UPDATE (§9.10): a new subscriber priority (and/or forward state) for this subscription. Not awaited:
   * the REQUEST_OK (or REQUEST_ERROR) comes on the request stream and is counted in `updatesAnswered`.
   * @param {{priority?: number, forward?: number}} changes
   */
  update({ priority, forward } = {}) {
    if (this.ended) return;
    const parameters = {};
    if (priority !== undefined) parameters.subscriberPriority = priority;
    if (forward !== undefined) parameters.forward = forward;
    const msg = { type: 'REQUEST_UPDATE', requestId: this.#session._nextRequestId(), parameters };
    this.updatesSent++;
    this.#writer.write(moqt.encodeMessage(msg, this.#session.version)).catch(() => {});
  }

  /** STOP_SENDING on the streams of groups before `groupId`: the player skipped them (§11.3.2). */
  cancelGroupsBefore(groupId) {
    for (const [group, streams] of this.#streams) {
      if (group < groupId) {
        for (const stream of streams) stream.cancel(moqt.StreamResetCode.TOO_FAR_BEHIND, 'skipped');
        this.#streams.delete(group);
      }
    }
  }

  _streamOpened(groupId, stream) {
    let streams = this.#streams.get(groupId);
    if (!streams) this.#streams.set(groupId, (streams = new Set()));
    streams.add(stream);
  }

  _streamClosed(groupId, subgroupId, stream, reset) {
    const streams = this.#streams.get(groupId);
    if (streams?.delete(stream) && streams.size === 0) this.#streams.delete(groupId);
    if (!this.ended) this.onStreamEnd({ groupId, subgroupId, reset });
  }

  _object(obj) {
    if (this.ended) return;
    this.objects++;
    this.bytes += obj.payload.length;
    this.onObject(obj);
  }

  /** Read the rest of the request stream: PUBLISH_DONE, or its end. */
  async _follow(messages) {
    try {
      for await (const msg of messages) {
        if (msg.type === 'PUBLISH_DONE') {
          this.#finish({ statusCode: msg.statusCode, reason: msg.reason }, true);
        } else if (msg.type === 'PUBLISH_STATE_NOTIFY' && msg.parameters.largestObject) {
          this.largest = msg.parameters.largestObject;
        } else if (msg.type === 'REQUEST_OK' || msg.type === 'REQUEST_ERROR') {
          this.updatesAnswered++;
        }
      }
      this.#finish({ statusCode: moqt.PublishDoneCode.INTERNAL_ERROR, reason: 'request stream closed' }, true);
    } catch (err) {
      if (this.ended) return; // we cancelled: the stream's end is ours
      if (err instanceof moqt.ProtocolViolation) this.#session.close(err.code, err.message);
      this.#finish({ statusCode: moqt.PublishDoneCode.INTERNAL_ERROR, reason: String(err?.message ?? err) }, true);
    }
  }

  #finish(info, notify) {
    if (this.ended) return;
    this.ended = true;
    this.#session._forget(this);
    if (notify) this.onDone(info);
  }
}

/**
 * A MoQ object as handed to a subscription's `onObject`:
 * @typedef {{groupId: number, subgroupId: number | null, objectId: number, status: number,
 *   properties: Array<[number, number | Uint8Array]>, payload: Uint8Array, publisherPriority: number | null,
 *   datagram: boolean, endOfGroup: boolean, receivedAt: number}} MoqObject
 */

/** SUBSCRIBE_NAMESPACE: NAMESPACE / NAMESPACE_DONE until cancelled (draft-21 §9.16). */
export class NamespaceSubscription {
  /** Namespaces announced and not withdrawn, keyed by their '/'-joined display text. */
  active = new Map();
  ended = false;
  onNamespace = (namespace) => {};
  onNamespaceDone = (namespace) => {};
  onEnd = () => {};
  #writer;
  #reader;

  constructor(requestId, prefix, writer, reader) {
    this.requestId = requestId;
    this.prefix = prefix;
    this.#writer = writer;
    this.#reader = reader;
  }

  cancel() {
    if (this.ended) return;
    this.ended = true;
    const error = streamError(moqt.StreamResetCode.CANCELLED, 'unsubscribed');
    this.#writer.abort(error).catch(() => {});
    this.#reader.cancel(error).catch(() => {});
  }

  async _follow(messages, session) {
    try {
      for await (const msg of messages) {
        if (msg.type !== 'NAMESPACE' && msg.type !== 'NAMESPACE_DONE') continue;
        const namespace = [...this.prefix, ...msg.namespaceSuffix];
        const key = namespace.map((f) => moqt.renderName([f])).join('/');
        if (msg.type === 'NAMESPACE') {
          if (!this.active.has(key)) {
            this.active.set(key, namespace);
            this.onNamespace(namespace);
          }
        } else {
          // NAMESPACE_DONE for a namespace never announced is a PROTOCOL_VIOLATION (draft-21 §9.16).
          if (!this.active.delete(key)) throw new moqt.ProtocolViolation(moqt.PV, 'NAMESPACE_DONE before NAMESPACE');
          this.onNamespaceDone(namespace);
        }
      }
    } catch (err) {
      if (err instanceof moqt.ProtocolViolation && !this.ended) session.close(err.code, err.message);
    }
    // The stream's end (or reset) withdraws everything it announced (§9.16).
    for (const namespace of this.active.values()) this.onNamespaceDone(namespace);
    this.active.clear();
    this.ended = true;
    this.onEnd();
  }
}

/** A MOQT session over one WebTransport session (see the top of this file). */
export class Session {
  /** Bytes received on data streams and in datagrams (for a bitrate). */
  bytesReceived = 0;
  /** @type {{code: number | null, reason: string} | null} */
  closeInfo = null;
  onGoaway = (uri) => {};
  /** What the publisher's side did on this session (the subscriptions it served, summed). */
  publisherStats = {
    subscriptions: 0,
    served: 0,
    objectsSent: 0,
    bytesSent: 0,
    streamsOpened: 0,
    groupsDropped: 0,
  };
  #nextRequestId = 0;
  /** Tracks we publish, by trackKey; and the subscriptions we serve. */
  #localTracks = new Map();
  #served = new Set();
  #nextAlias = 0;
  #subscriptions = new Map(); // track alias -> Subscription
  #aliasWaiters = new Map(); // track alias -> [resolve]
  #pendingStreams = 0;
  #controlWriter = null;
  #peerControl = false;
  #setupResolve;
  #setupReject;

  /**
   * Open a session: WebTransport to `url` offering `drafts`, then SETUP both ways.
   * @param {string} url  https://host:port/path
   * @param {{fingerprint?: string | null, drafts?: number[], timeoutMs?: number}} options
   *   fingerprint: hex sha-256 of the server's (development) certificate, for serverCertificateHashes
   */
  static async connect(url, { fingerprint = null, drafts = moqt.SUPPORTED_VERSIONS, timeoutMs = SETUP_TIMEOUT_MS } = {}) {
    const options = { protocols: drafts.map((v) => moqt.alpn(v)) };
    if (fingerprint) options.serverCertificateHashes = [{ algorithm: 'sha-256', value: hexToBytes(fingerprint) }];
    const transport = new WebTransport(url, options);
    transport.closed.catch(() => {});
    try {
      await withTimeout(transport.ready, timeoutMs, 'WebTransport session');
    } catch (err) {
      transport.close();
      throw err;
    }
    const version = moqt.versionFromAlpn(transport.protocol);
    if (version === null || !drafts.includes(version)) {
      transport.close({ closeCode: moqt.SessionErrorCode.PROTOCOL_VIOLATION, reason: 'no MOQT draft negotiated' });
      throw new Error(`the server chose no draft we offered (protocol "${transport.protocol}")`);
    }
    const session = new Session(transport, version);
    try {
      await session.#start(timeoutMs);
    } catch (err) {
      session.close(moqt.SessionErrorCode.CONTROL_MESSAGE_TIMEOUT, 'setup failed');
      throw err;
    }
    return session;
  }

  /** @param {WebTransport} transport  @param {number} version the negotiated draft */
  constructor(transport, version) {
    this.transport = transport;
    this.version = version;
    this.peerSetup = null;
    this.setupDone = new Promise((resolve, reject) => {
      this.#setupResolve = resolve;
      this.#setupReject = reject;
    });
    this.setupDone.catch(() => {});
    /** Resolves with {code, reason} when the session is over, whoever ended it. */
    this.closed = transport.closed.then(
      (info) => (this.closeInfo ??= { code: info?.closeCode ?? 0, reason: info?.reason ?? '' }),
      (err) => (this.closeInfo ??= { code: null, reason: String(err?.message ?? err) }),
    );
    this.closed.then(() => {
      this.#setupReject(new Error('the session closed'));
      for (const served of this.#served) served.cancel(moqt.StreamResetCode.SESSION_CLOSED);
      this.#served.clear();
    });
  }

  async #start(timeoutMs) {
    const control = await this.transport.createUnidirectionalStream();
    this.#controlWriter = control.getWriter();
    const setup = moqt.createSetup({ implementation: IMPLEMENTATION });
    await this.#controlWriter.write(moqt.encodeMessage(setup, this.version));
    this.#acceptUni();
    this.#acceptBidi();
    this.#readDatagrams();
    await withTimeout(this.setupDone, timeoutMs, "the relay's SETUP");
  }

  /** Close the session with a MOQT code (draft-21 §13.1) and reason. */
  close(code = moqt.SessionErrorCode.NO_ERROR, reason = '') {
    this.closeInfo ??= { code, reason };
    try {
      this.transport.close({ closeCode: code, reason: reason.slice(0, 1000) });
    } catch {
      // already closed
    }
  }

  #requestId() {
    const id = this.#nextRequestId;
    this.#nextRequestId += 2;
    return id;
  }

  /** A fresh Request ID (REQUEST_UPDATE consumes one, §9.10). */
  _nextRequestId() {
    return this.#requestId();
  }

  async #openRequest(msg) {
    const stream = await this.transport.createBidirectionalStream();
    const writer = stream.writable.getWriter();
    const reader = stream.readable.getReader();
    await writer.write(moqt.encodeMessage(msg, this.version));
    return { writer, reader, messages: readMessages(reader, this.version) };
  }

  /** The first message on a request stream: the answer. Throws RequestError for REQUEST_ERROR or no answer. */
  async #answer(messages) {
    let first;
    try {
      first = await messages.next();
    } catch (err) {
      if (err instanceof moqt.ProtocolViolation) this.close(err.code, err.message);
      throw err;
    }
    if (first.done) throw new RequestError(moqt.RequestErrorCode.INTERNAL_ERROR, 'request stream ended unanswered');
    const msg = first.value;
    if (msg.type === 'REQUEST_ERROR') throw new RequestError(msg.errorCode, msg.reason);
    return msg;
  }

  /**
   * SUBSCRIBE_NAMESPACE for `prefix` (fields as strings or bytes; [] = every namespace). Resolves once the
   * relay accepted it; NAMESPACE / NAMESPACE_DONE then reach the handlers, with whole namespaces.
   * @param {Array<string | Uint8Array>} prefix
   * @returns {Promise<NamespaceSubscription>}
   */
  async subscribeNamespace(prefix, { onNamespace, onNamespaceDone, onEnd } = {}) {
    const requestId = this.#requestId();
    const fields = prefix.map((f) => (typeof f === 'string' ? moqt.utf8(f) : f));
    const req = await this.#openRequest({
      type: 'SUBSCRIBE_NAMESPACE',
      requestId,
      namespacePrefix: fields,
      parameters: {},
    });
    const watch = new NamespaceSubscription(requestId, fields, req.writer, req.reader);
    if (onNamespace) watch.onNamespace = onNamespace;
    if (onNamespaceDone) watch.onNamespaceDone = onNamespaceDone;
    if (onEnd) watch.onEnd = onEnd;
    try {
      const answer = await this.#answer(req.messages);
      if (answer.type !== 'REQUEST_OK') {
        throw new moqt.ProtocolViolation(moqt.PV, `${answer.type} answered SUBSCRIBE_NAMESPACE`);
      }
    } catch (err) {
      watch.cancel();
      if (err instanceof moqt.ProtocolViolation) this.close(err.code, err.message);
      throw err;
    }
    watch._follow(req.messages, this);
    return watch;
  }

  /**
   * PUBLISH_NAMESPACE (§9.6): the relay routes SUBSCRIBEs for tracks under `namespace` to us, and tells its
   * SUBSCRIBE_NAMESPACE subscribers. Resolves once accepted. Withdraw with the result's cancel() (or close the
   * session); `ended` resolves when the relay ends it.
   * @param {Array<string | Uint8Array>} namespace
   * @returns {Promise<{namespace: Uint8Array[], cancel: () => void, ended: Promise<void>}>}
   */
  async publishNamespace(namespace) {
    const requestId = this.#requestId();
    const fields = namespace.map((f) => (typeof f === 'string' ? moqt.utf8(f) : f));
    const req = await this.#openRequest({ type: 'PUBLISH_NAMESPACE', requestId, namespace: fields, parameters: {} });
    const cancel = () => {
      const error = streamError(moqt.StreamResetCode.CANCELLED, 'withdrawn');
      req.writer.abort(error).catch(() => {});
      req.reader.cancel(error).catch(() => {});
    };
    try {
      const answer = await this.#answer(req.messages);
      if (answer.type !== 'REQUEST_OK') {
        throw new moqt.ProtocolViolation(moqt.PV, `${answer.type} answered PUBLISH_NAMESPACE`);
      }
    } catch (err) {
      cancel();
      if (err instanceof moqt.ProtocolViolation) this.close(err.code, err.message);
      throw err;
    }
    const ended = (async () => {
      try {
        for await (const msg of req.messages) void msg; // nothing is expected but the stream's end
      } catch {
        // reset: withdrawn
      }
    })();
    return { namespace: fields, cancel, ended };
  }

  /** Serve `track` (a tracks.js LocalTrack) to whoever SUBSCRIBEs to it on this session. */
  addTrack(track) {
    this.#localTracks.set(track.key, track);
  }

  /** Stop offering `track` to new subscribers (the ones it has go on until it ends). */
  removeTrack(track) {
    if (this.#localTracks.get(track.key) === track) this.#localTracks.delete(track.key);
  }

  /**
   * SUBSCRIBE to a track, starting at its latest group (the relay's default, and for drafts 20+ said
   * explicitly: LOCATION_FILTER relative StartGroup 1 = the current group, draft-21 §3.5).
   * @param {Array<string | Uint8Array>} namespace
   * @param {string | Uint8Array} name
   * @param {{priority?: number, onObject?: Function, onStreamEnd?: Function, onDone?: Function}} options
   * @returns {Promise<Subscription>}
   */
  async subscribe(namespace, name, { priority = 128, onObject, onStreamEnd, onDone } = {}) {
    const requestId = this.#requestId();
    const fields = namespace.map((f) => (typeof f === 'string' ? moqt.utf8(f) : f));
    const nameBytes = typeof name === 'string' ? moqt.utf8(name) : name;
    const parameters = { subscriberPriority: priority, forward: 1 };
    if (moqt.family(this.version) >= 20) {
      parameters.locationFilter = { type: moqt.LocationFilterType.RELATIVE_START_GROUP, startGroup: 1 };
    }
    const req = await this.#openRequest({ type: 'SUBSCRIBE', requestId, namespace: fields, name: nameBytes, parameters });
    const sub = new Subscription(this, requestId, fields, nameBytes, req.writer, req.reader);
    if (onObject) sub.onObject = onObject;
    if (onStreamEnd) sub.onStreamEnd = onStreamEnd;
    if (onDone) sub.onDone = onDone;
    let answer;
    try {
      answer = await this.#answer(req.messages);
      if (answer.type !== 'SUBSCRIBE_OK') throw new moqt.ProtocolViolation(moqt.PV, `${answer.type} answered SUBSCRIBE`);
    } catch (err) {
      sub.cancel();
      if (err instanceof moqt.ProtocolViolation) this.close(err.code, err.message);
      throw err;
    }
    const alias = answer.trackAlias;
    if (this.#subscriptions.has(alias)) {
      this.close(moqt.SessionErrorCode.DUPLICATE_TRACK_ALIAS, 'track alias already in use');
      throw new Error('duplicate track alias');
    }
    sub.trackAlias = alias;
    sub.largest = answer.parameters.largestObject ?? null;
    this.#subscriptions.set(alias, sub);
    for (const wake of this.#aliasWaiters.get(alias) ?? []) wake(sub);
    this.#aliasWaiters.delete(alias);
    sub._follow(req.messages);
    return sub;
  }

  _forget(sub) {
    if (this.#subscriptions.get(sub.trackAlias) === sub) this.#subscriptions.delete(sub.trackAlias);
  }

  // -- incoming streams and datagrams ------------------------------------------------------------------------

  async #acceptUni() {
    const incoming = this.transport.incomingUnidirectionalStreams.getReader();
    try {
      for (;;) {
        const { value, done } = await incoming.read();
        if (done) return;
        this.#uniStream(value);
      }
    } catch {
      // the session is over
    }
  }

  /** The subscription a Track Alias names, waiting (bounded) for its SUBSCRIBE_OK; null if it never comes. */
  async #subscriptionFor(alias) {
    const known = this.#subscriptions.get(alias);
    if (known) return known;
    if (this.#pendingStreams >= MAX_PENDING_STREAMS) return null;
    this.#pendingStreams++;
    try {
      let wake;
      const arrived = new Promise((resolve) => (wake = resolve));
      const waiters = this.#aliasWaiters.get(alias) ?? [];
      waiters.push(wake);
      this.#aliasWaiters.set(alias, waiters);
      const timer = new Promise((resolve) => setTimeout(() => resolve(null), ALIAS_WAIT_MS));
      const sub = await Promise.race([arrived, timer]);
      if (!sub) {
        const left = (this.#aliasWaiters.get(alias) ?? []).filter((w) => w !== wake);
        if (left.length) this.#aliasWaiters.set(alias, left);
        else this.#aliasWaiters.delete(alias);
      }
      return sub;
    } finally {
      this.#pendingStreams--;
    }
  }

  async #uniStream(stream) {
    const reader = stream.getReader();
    const incoming = new IncomingStream(reader);
    const parser = new moqt.DataStreamParser(this.version);
    let sub = null;
    let header = null;
    let ended = false;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (incoming.cancelled) return;
        if (value) this.bytesReceived += value.length;
        const events = parser.feed(value ?? EMPTY, done);
        for (const event of events) {
          if (event.type === 'SUBGROUP_HEADER') {
            sub = await this.#subscriptionFor(event.trackAlias);
            if (!sub || sub.ended) {
              incoming.cancel(moqt.StreamResetCode.CANCELLED, 'unknown track alias');
              return;
            }
            header = event;
            sub._streamOpened(event.groupId, incoming);
          } else if (event.type === 'SUBGROUP_OBJECT') {
            header = parser.header; // resolved subgroup id (FIRST_OBJECT_ID mode)
            sub._object({
              groupId: header.groupId,
              subgroupId: header.subgroupId,
              objectId: event.objectId,
              status: event.status,
              properties: event.properties,
              payload: event.payload,
              publisherPriority: header.publisherPriority,
              datagram: false,
              endOfGroup: false,
              receivedAt: performance.now(),
            });
          } else if (event.type === 'CONTROL_DATA') {
            this.#controlData(event.data);
          } else if (event.type === 'FETCH_HEADER') {
            // We send no FETCH and ask for no fill: nothing to read here.
            incoming.cancel(moqt.StreamResetCode.CANCELLED, 'unexpected fetch stream');
            return;
          }
        }
        if (done) break;
      }
      if (parser.streamType === moqt.StreamType.SETUP) {
        throw new moqt.ProtocolViolation(moqt.PV, 'the control stream was closed');
      }
      ended = true;
      if (sub && header) sub._streamClosed(header.groupId, header.subgroupId, incoming, false);
    } catch (err) {
      if (incoming.cancelled && !(err instanceof moqt.ProtocolViolation)) return;
      if (err instanceof moqt.ProtocolViolation) {
        this.close(err.code, err.message);
      } else if (err instanceof moqt.ObjectTooLarge) {
        incoming.cancel(moqt.StreamResetCode.EXCESSIVE_LOAD, err.message);
      }
      if (!ended && sub && header) sub._streamClosed(header.groupId, header.subgroupId, incoming, true);
    }
  }

  #controlReader = null;

  #controlData(bytes) {
    if (!this.#controlReader) {
      if (this.#peerControl) throw new moqt.ProtocolViolation(moqt.PV, 'a second control stream');
      this.#peerControl = true;
      this.#controlReader = new moqt.MessageReader(this.version);
    }
    for (const msg of this.#controlReader.feed(bytes)) {
      if (msg.type === 'SETUP' && this.peerSetup === null) {
        this.peerSetup = msg;
        this.#setupResolve(msg);
      } else if (msg.type === 'GOAWAY' && this.peerSetup !== null) {
        this.onGoaway(msg.newSessionUri);
      } else {
        throw new moqt.ProtocolViolation(moqt.PV, `${msg.type} on the control stream`);
      }
    }
  }

  /** Requests the relay opens toward us: a SUBSCRIBE for one of our tracks is served; anything else refused. */
  async #acceptBidi() {
    const incoming = this.transport.incomingBidirectionalStreams.getReader();
    try {
      for (;;) {
        const { value, done } = await incoming.read();
        if (done) return;
        this.#incomingRequest(value);
      }
    } catch {
      // the session is over
    }
  }

  async #incomingRequest(stream) {
    const reader = stream.readable.getReader();
    const writer = stream.writable.getWriter();
    try {
      const messages = readMessages(reader, this.version);
      const first = await messages.next();
      if (first.done) return;
      const msg = first.value;
      if (msg.type === 'SUBSCRIBE') {
        const track = this.#localTracks.get(trackKey(msg.namespace, msg.name));
        if (track && !track.ended) {
          await this.#serve(track, msg, messages, reader, writer);
          return;
        }
        await this.#refuse(reader, writer, moqt.RequestErrorCode.DOES_NOT_EXIST, 'no such track');
        return;
      }
      const code = moqt.RequestErrorCode.NOT_SUPPORTED;
      await this.#refuse(reader, writer, code, `this client does not serve ${msg.type}`);
    } catch (err) {
      if (err instanceof moqt.ProtocolViolation) this.close(err.code, err.message);
      writer.abort().catch(() => {});
    }
  }

  /** REQUEST_ERROR and FIN (§6.4.2.3). */
  async #refuse(reader, writer, errorCode, reason) {
    const error = { type: 'REQUEST_ERROR', errorCode, retryInterval: 0, reason };
    await writer.write(moqt.encodeMessage(error, this.version));
    await writer.close();
    reader.cancel().catch(() => {});
  }

  /** Serve one SUBSCRIBE until the subscriber resets its request stream, the track ends or the session does. */
  async #serve(track, msg, messages, reader, writer) {
    const served = new ServedSubscription({
      transport: this.transport,
      version: this.version,
      track,
      requestId: msg.requestId,
      trackAlias: this.#nextAlias++,
      parameters: msg.parameters,
      writer,
      stats: this.publisherStats,
    });
    this.#served.add(served);
    this.publisherStats.subscriptions++;
    this.publisherStats.served = this.#served.size;
    const follow = async () => {
      try {
        await served.start();
        for await (const update of messages) {
          if (update.type === 'REQUEST_UPDATE') served.update(update.parameters);
          else throw new moqt.ProtocolViolation(moqt.PV, `${update.type} on a subscription we serve`);
        }
        // A FIN only says no REQUEST_UPDATE will come (§6.4.2.2); STOP_SENDING on our side still cancels.
        await writer.closed;
      } catch (err) {
        if (err instanceof moqt.ProtocolViolation) this.close(err.code, err.message);
        served.cancel(); // the subscriber reset the stream: it unsubscribed
      }
    };
    follow();
    await served.over;
    reader.cancel().catch(() => {});
    this.#served.delete(served);
    this.publisherStats.served = this.#served.size;
  }

  async #readDatagrams() {
    const reader = this.transport.datagrams.readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        this.bytesReceived += value.length;
        const dgram = moqt.decodeDatagram(value, this.version);
        if (dgram.type !== 'OBJECT_DATAGRAM') continue;
        const sub = this.#subscriptions.get(dgram.trackAlias);
        if (!sub) continue; // an unknown alias: dropped (draft-21 §3.1.3.1 allows it)
        sub._object({
          groupId: dgram.groupId,
          subgroupId: null,
          objectId: dgram.objectId,
          status: dgram.status ?? moqt.ObjectStatus.NORMAL,
          properties: dgram.properties ?? [],
          payload: dgram.payload,
          publisherPriority: dgram.publisherPriority,
          datagram: true,
          endOfGroup: dgram.endOfGroup,
          receivedAt: performance.now(),
        });
      }
    } catch (err) {
      if (err instanceof moqt.ProtocolViolation) this.close(err.code, err.message);
    }
  }
}
