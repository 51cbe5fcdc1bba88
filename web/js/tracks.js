// The publisher's side of a session: the tracks this page produces, and the subscriptions it serves.
//
// - LocalTrack: one track we produce (draft-21 §2.3: groups of objects). It keeps its newest groups, bounded
//   (MAX_CACHED_GROUPS, MAX_CACHED_BYTES), so that a subscriber arriving mid-group can start at the start of the
//   latest group (draft-21 §3.5 "the current group"; for video that is a keyframe, MSF's group rule), and hands
//   each new object to every subscription that serves it. It knows nothing of sessions: several sessions (a
//   reconnect) may serve one track.
// - ServedSubscription: one SUBSCRIBE we accepted (SUBSCRIBE_OK with a Track Alias of ours). One uni stream per
//   group, subgroup 0 (§11.3: the LOC/MSF mapping, one group per GOP, each group on a stream of its own), objects
//   written in order, FIN when the group is complete (END_OF_GROUP flag). A stream's sendOrder ranks it by
//   subscriber priority, then publisher priority, then group (oldest first), as §5.1 orders objects; WebTransport
//   sends queued bytes of higher sendOrder first. REQUEST_UPDATE changes the priority (open streams re-ranked
//   too) or forward state; the end of the track sends PUBLISH_DONE once every data stream is closed (§9.12).
// - A subscriber that falls behind loses its older groups: their streams are reset with TOO_FAR_BEHIND and never
//   reopened (DESIGN.md decision 4). Behind means more than MAX_QUEUED_BYTES waiting in its streams (finished
//   groups' streams count until their bytes are taken), or, once a newer group has begun, an older group's bytes
//   waiting MAX_QUEUED_MS: an audio track's groups are a few hundred bytes each and never add up to the byte bound,
//   but 50 of them a second sent oldest first to a page that cannot keep up are heard later and later. A
//   STOP_SENDING on a stream (the subscriber skipped that group) ends that group only.
//
// The request stream itself (reading SUBSCRIBE, REQUEST_UPDATE, its cancellation) is session.js's business;
// this module writes on it: SUBSCRIBE_OK, REQUEST_OK, PUBLISH_DONE.

import * as moqt from './moqt.js';

/** Groups a LocalTrack keeps for subscribers that arrive later (the latest is the one they start at). */
export const MAX_CACHED_GROUPS = 3;
/** Payload bytes a LocalTrack keeps; older groups go first, the newest group is always kept whole. */
export const MAX_CACHED_BYTES = 4 * 1024 * 1024;
/** Bytes one subscription may have waiting in its streams before its older groups are dropped. */
export const MAX_QUEUED_BYTES = 1024 * 1024;
/** How long an older group's bytes may wait to be taken, once a newer group has begun, before it is dropped (the
 * relay's MAX_STREAM_OPEN_WAIT_SECONDS, moq/api/session.py). */
export const MAX_QUEUED_MS = 500;
/** How long PUBLISH_DONE waits for the data streams to close (a stuck stream is reset then). */
export const DONE_WAIT_MS = 2000;

const utf8 = new TextEncoder();

/** A WebTransportError carrying a stream error code (as session.js makes them). */
function streamError(code, message = '') {
  try {
    return new WebTransportError({ message, streamErrorCode: code });
  } catch {
    return new Error(message);
  }
}

/** The '\0'-joined key of a full track name (fields and name as bytes or strings). */
export function trackKey(namespace, name) {
  const text = (f) => (typeof f === 'string' ? f : Array.from(f, (b) => String.fromCharCode(b)).join(''));
  return [...namespace.map(text), text(name)].join('\u0000');
}

/** Lexicographic order of two locations {group, object} (Numbers). */
function before(a, b) {
  return a.group < b.group || (a.group === b.group && a.object < b.object);
}

/**
 * One track this page produces (see the top of this file).
 * A listener is {object(groupId, obj), groupEnded(groupId), trackEnded({statusCode, reason})}.
 */
export class LocalTrack {
  /**
   * The cached groups, oldest first.
   * @type {Array<{id: number, objects: Array<{objectId: number, properties: Array, payload: Uint8Array}>,
   *   ended: boolean, bytes: number}>}
   */
  groups = [];
  /** @type {{group: number, object: number} | null} the largest location published */
  largest = null;
  /** @type {{statusCode: number, reason: string} | null} */
  ended = null;
  bytes = 0;
  objects = 0;
  #listeners = new Set();

  /**
   * @param {Array<string | Uint8Array>} namespace
   * @param {string | Uint8Array} name
   * @param {{priority?: number, maxGroups?: number, maxBytes?: number}} options
   *   priority: the publisher priority of its subgroups (0 most urgent)
   */
  constructor(namespace, name, { priority = 128, maxGroups = MAX_CACHED_GROUPS, maxBytes = MAX_CACHED_BYTES } = {}) {
    this.namespace = namespace.map((f) => (typeof f === 'string' ? utf8.encode(f) : f));
    this.name = typeof name === 'string' ? utf8.encode(name) : name;
    this.key = trackKey(this.namespace, this.name);
    this.publisherPriority = priority;
    this.maxGroups = maxGroups;
    this.maxBytes = maxBytes;
  }

  get latestGroup() {
    return this.groups.length ? this.groups[this.groups.length - 1].id : null;
  }

  get listeners() {
    return this.#listeners.size;
  }

  /**
   * Publish an object. A group id above the newest starts a new group and completes the newest one; an object
   * must follow the previous one of its group (ids ascending). Objects of older groups are refused.
   */
  append(groupId, objectId, payload, properties = []) {
    if (this.ended) throw new Error('the track has ended');
    let group = this.groups[this.groups.length - 1];
    if (!group || groupId > group.id) {
      if (group && !group.ended) this.endGroup(group.id);
      group = { id: groupId, objects: [], ended: false, bytes: 0 };
      this.groups.push(group);
    } else if (groupId !== group.id || group.ended) {
      throw new Error(`group ${groupId} is not the open group (${group.id}${group.ended ? ', ended' : ''})`);
    }
    const last = group.objects[group.objects.length - 1];
    if (last && objectId <= last.objectId) throw new Error(`object ${objectId} does not follow ${last.objectId}`);
    const obj = { objectId, properties, payload };
    group.objects.push(obj);
    group.bytes += payload.length;
    this.bytes += payload.length;
    this.objects++;
    this.largest = { group: groupId, object: objectId };
    this.#bound();
    for (const listener of this.#listeners) listener.object(groupId, obj);
  }

  /** The group is complete: no object will be added to it (its streams get a FIN). */
  endGroup(groupId) {
    const group = this.groups.find((g) => g.id === groupId);
    if (!group || group.ended) return;
    group.ended = true;
    for (const listener of this.#listeners) listener.groupEnded(groupId);
  }

  /** The track is over: every subscription gets PUBLISH_DONE with this status. */
  end(statusCode = moqt.PublishDoneCode.TRACK_ENDED, reason = 'track ended') {
    if (this.ended) return;
    const open = this.groups[this.groups.length - 1];
    if (open && !open.ended) this.endGroup(open.id);
    this.ended = { statusCode, reason };
    for (const listener of [...this.#listeners]) listener.trackEnded(this.ended);
    this.#listeners.clear();
  }

  /** Cached groups whose id is at least `groupId`, oldest first. */
  groupsFrom(groupId) {
    return this.groups.filter((g) => g.id >= groupId);
  }

  listen(listener) {
    this.#listeners.add(listener);
  }

  unlisten(listener) {
    this.#listeners.delete(listener);
  }

  #bound() {
    while (this.groups.length > 1 && (this.groups.length > this.maxGroups || this.bytes > this.maxBytes)) {
      const oldest = this.groups.shift();
      this.bytes -= oldest.bytes;
    }
  }
}

/**
 * Where a subscription starts (draft-21 §3.3, §9.20.10), as a location, from its LOCATION_FILTER and the track's
 * largest location: the latest group when there is no filter (what a relay asks for: the current group), or
 * {0, 0} when nothing was published yet. Relative StartGroup n: n-1 groups back (0 = the next group).
 */
export function startLocation(filter, largest) {
  const F = moqt.LocationFilterType;
  if (!filter || filter.type === F.NONE) return { group: largest ? largest.group : 0, object: 0 };
  if (filter.type === F.NEXT_OBJECT) {
    return largest ? { group: largest.group, object: largest.object + 1 } : { group: 0, object: 0 };
  }
  if (filter.type === F.RELATIVE_START_GROUP) {
    if (!largest) return { group: 0, object: 0 };
    return { group: Math.max(0, largest.group + 1 - Number(filter.startGroup)), object: 0 };
  }
  return { group: Number(filter.startGroup), object: Number(filter.startObject ?? 0) };
}

/** The last group a filter lets through (an absolute range), or Infinity. */
function endGroupOf(filter) {
  const F = moqt.LocationFilterType;
  if (filter && (filter.type === F.ABSOLUTE_RANGE || filter.type === F.ABSOLUTE_RANGE_OBJECT)) {
    return Number(filter.endGroup);
  }
  return Infinity;
}

/**
 * WebTransport's sendOrder for a subgroup stream: higher is sent first. Subscriber priority, then publisher
 * priority (both 0 = most urgent), then the older group first (ascending group order, §5.1).
 */
export function sendOrderFor(subscriberPriority, publisherPriority, groupIndex) {
  const rank = (255 - subscriberPriority) * 256 + (255 - publisherPriority);
  const age = 0xffffff - Math.min(Math.max(groupIndex, 0), 0xffffff);
  return rank * 0x1000000 + age;
}

/**
 * One outgoing uni stream: bytes written in order, without awaiting; `queued` counts what is not yet taken, and
 * `waitingSince` is when the oldest of it was written (null: nothing waits).
 */
class OutStream {
  queued = 0;
  finished = false;
  failed = false;
  /** True once the stream is over: FIN taken, reset, or failed. */
  settled = false;
  #writer = null;
  #stream = null;
  #sendOrder;
  #pending = [];
  /** When each write not yet taken was made, oldest first (writes are taken in order). */
  #writtenAt = [];
  #now;
  #resolveDone;

  constructor(transport, sendOrder, onFail, now) {
    this.onFail = onFail;
    this.#now = now;
    this.#sendOrder = sendOrder;
    this.done = new Promise((resolve) => (this.#resolveDone = resolve)).then(() => (this.settled = true));
    transport.createUnidirectionalStream({ sendOrder }).then(
      (stream) => {
        this.#stream = stream;
        if (this.#sendOrder !== sendOrder) stream.sendOrder = this.#sendOrder; // changed while it opened
        this.#writer = stream.getWriter();
        if (this.failed) {
          this.#writer.abort(this.failed).catch(() => {});
          return;
        }
        for (const bytes of this.#pending) this.#write(bytes);
        this.#pending = [];
        if (this.finished) this.#close();
      },
      (err) => this.#fail(err),
    );
  }

  /** Re-rank the stream (a REQUEST_UPDATE changed the subscriber priority): its queued bytes go by the new order. */
  setSendOrder(sendOrder) {
    this.#sendOrder = sendOrder;
    if (this.#stream) this.#stream.sendOrder = sendOrder;
  }

  get waitingSince() {
    return this.failed ? null : (this.#writtenAt[0] ?? null);
  }

  write(bytes) {
    if (this.failed || this.finished) return;
    this.queued += bytes.length;
    this.#writtenAt.push(this.#now());
    if (this.#writer) this.#write(bytes);
    else this.#pending.push(bytes);
  }

  /** FIN once everything written is taken. */
  finish() {
    if (this.failed || this.finished) return;
    this.finished = true;
    if (this.#writer) this.#close();
  }

  /** RESET_STREAM with `code`; queued bytes are dropped. */
  reset(code, reason = '') {
    if (this.failed) return;
    const error = streamError(code, reason);
    this.failed = error;
    this.#pending = [];
    this.#writtenAt = [];
    this.#writer?.abort(error).catch(() => {});
    this.#resolveDone();
  }

  #write(bytes) {
    this.#writer.write(bytes).then(
      () => {
        this.queued -= bytes.length;
        this.#writtenAt.shift();
      },
      (err) => this.#fail(err),
    );
  }

  #close() {
    this.#writer.close().then(
      () => this.#resolveDone(),
      (err) => this.#fail(err),
    );
  }

  #fail(err) {
    if (this.failed) return;
    this.failed = err ?? new Error('stream failed');
    this.#pending = [];
    this.#writtenAt = [];
    this.#resolveDone();
    this.onFail(err);
  }
}

/**
 * One SUBSCRIBE we serve (see the top of this file). `writer` is the request stream's writer; `stats`, if
 * given, gets objectsSent, bytesSent, streamsOpened and groupsDropped added to; `now` is the clock (ms).
 */
export class ServedSubscription {
  streamsOpened = 0;
  objectsSent = 0;
  bytesSent = 0;
  groupsDropped = 0;
  closed = false;
  /** @type {Map<number, {stream: OutStream, header: object, prev: number}>} open streams by group */
  #streams = new Map();
  /** @type {Map<number, OutStream>} finished groups whose bytes are not all taken yet, by group */
  #draining = new Map();
  /** Groups given up (reset, or the subscriber stopped them): never reopened. */
  #skipped = new Set();
  #start;
  #endGroup;
  #firstGroup = null;
  #resolveOver;
  /** Resolves when the subscription is over: cancelled, or PUBLISH_DONE sent. */
  over = new Promise((resolve) => (this.#resolveOver = resolve));

  #now;

  constructor({
    transport,
    version,
    track,
    requestId,
    trackAlias,
    parameters,
    writer,
    stats = null,
    now = () => performance.now(),
  }) {
    this.#now = now;
    this.transport = transport;
    this.version = version;
    this.track = track;
    this.requestId = requestId;
    this.trackAlias = trackAlias;
    this.writer = writer;
    this.stats = stats;
    this.priority = parameters.subscriberPriority ?? 128;
    this.forward = parameters.forward ?? 1;
    this.#start = startLocation(parameters.locationFilter ?? null, track.largest);
    this.#endGroup = endGroupOf(parameters.locationFilter ?? null);
  }

  /** SUBSCRIBE_OK, then the cached objects from the start location on, then every new one. */
  async start() {
    const parameters = {};
    if (this.track.largest) parameters.largestObject = { ...this.track.largest };
    const ok = { type: 'SUBSCRIBE_OK', trackAlias: this.trackAlias, parameters, properties: [] };
    await this.writer.write(moqt.encodeMessage(ok, this.version));
    if (this.closed) return;
    if (this.forward) this.#replay();
    this.track.listen(this);
  }

  /** A REQUEST_UPDATE from the subscriber (§9.10): a new priority (for the open streams too), forward. */
  update(parameters) {
    if (parameters.subscriberPriority !== undefined && parameters.subscriberPriority !== this.priority) {
      this.priority = parameters.subscriberPriority;
      for (const [group, open] of this.#streams) {
        open.stream.setSendOrder(sendOrderFor(this.priority, this.track.publisherPriority, group - this.#firstGroup));
      }
    }
    if (parameters.forward !== undefined && parameters.forward !== this.forward) {
      this.forward = parameters.forward;
      if (!this.forward) {
        // Objects skipped while paused must not look delivered: reset what is open (§11.3.2).
        for (const [group, open] of this.#streams) this.#giveUp(group, open.stream, moqt.StreamResetCode.CANCELLED);
      } else {
        // Resume at the next group: the current one's earlier objects were not sent.
        this.#start = { group: (this.track.latestGroup ?? -1) + 1, object: 0 };
      }
    }
    const answer = { type: 'REQUEST_OK', parameters: {}, properties: [] };
    this.writer.write(moqt.encodeMessage(answer, this.version)).catch(() => {});
  }

  /** The subscriber went away (it reset the request stream, or the session ended): stop at once. */
  cancel(code = moqt.StreamResetCode.CANCELLED) {
    if (this.closed) return;
    this.closed = true;
    this.track.unlisten(this);
    for (const [group, open] of this.#streams) this.#giveUp(group, open.stream, code, false);
    for (const [group, stream] of this.#draining) this.#giveUp(group, stream, code, false);
    this.writer.abort(streamError(code, 'cancelled')).catch(() => {});
    this.#resolveOver();
  }

  // -- LocalTrack listener ----------------------------------------------------------------------------------

  object(groupId, obj) {
    if (this.closed || !this.forward) return;
    if (groupId > this.#endGroup || before({ group: groupId, object: obj.objectId }, this.#start)) return;
    if (this.#skipped.has(groupId)) return;
    let open = this.#streams.get(groupId);
    if (!open) open = this.#open(groupId, obj.objectId);
    const bytes = moqt.encodeSubgroupObject(open.header, open.prev, obj);
    open.prev = obj.objectId;
    open.stream.write(bytes);
    this.objectsSent++;
    this.bytesSent += bytes.length;
    if (this.stats) {
      this.stats.objectsSent++;
      this.stats.bytesSent += bytes.length;
    }
    this.#pressure(groupId);
  }

  groupEnded(groupId) {
    const open = this.#streams.get(groupId);
    if (!open) return;
    this.#streams.delete(groupId);
    open.stream.finish();
    if (open.stream.settled) return;
    this.#draining.set(groupId, open.stream);
    open.stream.done.then(() => {
      if (this.#draining.get(groupId) === open.stream) this.#draining.delete(groupId);
    });
  }

  trackEnded({ statusCode, reason }) {
    if (this.closed) return;
    this.closed = true;
    const streams = [...this.#streams.values()].map((open) => open.stream);
    for (const stream of streams) stream.finish();
    streams.push(...this.#draining.values());
    this.#streams.clear();
    this.#draining.clear();
    const timer = new Promise((resolve) => setTimeout(resolve, DONE_WAIT_MS));
    Promise.race([Promise.all(streams.map((s) => s.done)), timer]).then(() => {
      for (const stream of streams) {
        if (!stream.settled) stream.reset(moqt.StreamResetCode.INTERNAL_ERROR, 'track ended');
      }
      const done = { type: 'PUBLISH_DONE', statusCode, streamCount: this.streamsOpened, reason };
      this.writer.write(moqt.encodeMessage(done, this.version)).catch(() => {});
      this.writer.close().catch(() => {});
      this.#resolveOver();
    });
  }

  // -- streams ----------------------------------------------------------------------------------------------

  #replay() {
    for (const group of this.track.groupsFrom(this.#start.group)) {
      // A group whose object 0 is no longer here (or was never sent) cannot start a stream at the group's
      // start; a subscriber would get a group without its keyframe. Only the start location may be mid-group.
      const first = group.objects[0];
      if (!first) continue;
      if (first.objectId !== 0 && group.id !== this.#start.group) continue;
      for (const obj of group.objects) this.object(group.id, obj);
      if (group.ended) this.groupEnded(group.id);
    }
  }

  #open(groupId, firstObjectId) {
    this.#firstGroup ??= groupId;
    const header = {
      trackAlias: this.trackAlias,
      groupId,
      subgroupId: 0,
      subgroupIdMode: moqt.SubgroupIdMode.ZERO,
      publisherPriority: this.track.publisherPriority,
      hasProperties: true,
      endOfGroup: true,
      firstObject: firstObjectId === 0,
    };
    const order = sendOrderFor(this.priority, this.track.publisherPriority, groupId - this.#firstGroup);
    const stream = new OutStream(
      this.transport,
      order,
      () => {
        // The subscriber stopped this group (STOP_SENDING), or the session ended: never reopen it.
        if (this.#streams.get(groupId)?.stream === stream) this.#streams.delete(groupId);
        if (this.#draining.get(groupId) === stream) this.#draining.delete(groupId);
        this.#skipped.add(groupId);
        this.#trimSkipped();
      },
      this.#now,
    );
    const headerBytes = moqt.encodeSubgroupHeader(header, this.version);
    stream.write(headerBytes);
    this.bytesSent += headerBytes.length;
    const open = { stream, header, prev: null };
    this.#streams.set(groupId, open);
    this.streamsOpened++;
    if (this.stats) this.stats.streamsOpened++;
    return open;
  }

  /**
   * Too much waiting (MAX_QUEUED_BYTES in all, or an older group's bytes for MAX_QUEUED_MS): drop the older groups
   * concerned, every one but the newest for the byte bound (their streams are reset).
   */
  #pressure(newest) {
    const streams = [...[...this.#streams].map(([group, open]) => [group, open.stream]), ...this.#draining];
    let queued = 0;
    for (const [, stream] of streams) queued += stream.queued;
    const tooMuch = queued > MAX_QUEUED_BYTES;
    const now = this.#now();
    for (const [group, stream] of streams) {
      if (group >= newest) continue;
      const since = stream.waitingSince;
      if (tooMuch || (since !== null && now - since >= MAX_QUEUED_MS)) {
        this.#giveUp(group, stream, moqt.StreamResetCode.TOO_FAR_BEHIND);
      }
    }
  }

  #giveUp(group, stream, code, count = true) {
    stream.reset(code, 'dropped');
    if (this.#streams.get(group)?.stream === stream) this.#streams.delete(group);
    if (this.#draining.get(group) === stream) this.#draining.delete(group);
    this.#skipped.add(group);
    this.#trimSkipped();
    if (count) {
      this.groupsDropped++;
      if (this.stats) this.stats.groupsDropped++;
    }
  }

  #trimSkipped() {
    if (this.#skipped.size <= 64) return;
    const floor = (this.track.groups[0]?.id ?? 0) - 1;
    for (const group of this.#skipped) if (group < floor) this.#skipped.delete(group);
  }
}
