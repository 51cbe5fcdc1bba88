// The player: an MSF catalog, LOC video and audio, WebCodecs decoders, a canvas and Web Audio.
//
// What it reads (DIGEST §18; moq/media):
// - the track `catalog` of the broadcast: object 0 of each group is a whole MSF catalog (JSON), later objects
//   of the group are delta updates; a group older than the one applied is ignored (groups travel on streams of
//   their own, and may overtake one another). Of the tracks in the broadcast's own namespace (no `namespace`
//   field, or the broadcast's) it picks the first LOC video track and the first LOC audio track it can decode and
//   subscribes to them; a new subscriber starts at the latest group. Tracks the catalog lists in other namespaces
//   (a stage: viewers the broadcaster brought on) are not played here: `onCatalog` hands each catalog to the page,
//   which plays them in tiles of their own (stage.js) with players that read no catalog but are given their
//   tracks (`playListed`, `listTracks`).
// - A track's `namespace` is a string: the fields percent-encoded, '/' between them, as in /watch/NAME paths
//   (`namespaceFromText`; moq/media/catalog.py's `namespace_text` writes it).
// - LOC objects (draft-ietf-moq-loc-04): the payload is one WebCodecs chunk; TIMESTAMP (0x10) is the capture
//   time, microseconds since the Unix epoch unless TIMESCALE (0x08) says otherwise; VIDEO_CONFIG (0x0D) on a
//   group's first object is the decoder description (avcC for "avc1"); VIDEO_FRAME_MARKING (0x09) marks
//   keyframes. One group per GOP, object 0 the keyframe; audio (Opus) one or a few frames per group.
//
// How it plays:
// - Each track has a group buffer (GroupBuffer): objects by group, played in group order and, inside a group,
//   in object order. The next group is taken when the current one has ended (its stream's FIN) and the next
//   id follows on, or after a short wait (a lost group, a late FIN). Buffers are bounded.
// - One playout clock for both tracks (PlayoutClock): an object with capture time T is due at
//   T + (best transit seen lately) + jitter, in this page's clock. The jitter is fixed (100 ms), or adaptive (call
//   pages): how late objects have lately become playable, within bounds. The best transit is the minimum of
//   (arrival - T) over a sliding window, so it follows the live edge and not the burst of cached frames a
//   subscriber gets first; it also absorbs a constant clock difference between publisher and viewer. It is
//   kept per track and the slowest track's counts (audio through an encoder arrives later after capture than
//   video): the faster track waits for it, in sync.
// - Video: chunks go to a VideoDecoder as soon as they are in order (a few in flight); decoded frames wait in
//   a small render queue and are drawn on the canvas when due, at animation-frame rate; frames due at once
//   (catching up) are decoded but only the newest is drawn.
// - Audio: each decoded AudioData becomes an AudioBuffer started at its due time on the AudioContext's clock;
//   one that is already late is dropped, one within a few ms of the previous buffer's end is butted to it.
// - Falling behind: before each chunk, a track compares the chunk's capture time with the newest capture
//   time received (its live edge). More than `maxLatencyMs` behind, it skips to the newest group that starts
//   with object 0: the groups in between are dropped (counted in groupsDropped) and their streams cancelled
//   (STOP_SENDING), and the decoder resumes at that group's keyframe.
//
// Counters go to `stats` (the page exposes it as window.moqStats).

import * as moqt from './moqt.js';
import { decodeField, encodeField } from './names.js';
import { RequestError, Session } from './session.js';

/** LOC property types (draft-ietf-moq-loc-04 §6). */
export const LocProperty = Object.freeze({
  TIMESCALE: 0x08,
  VIDEO_FRAME_MARKING: 0x09,
  AUDIO_LEVEL: 0x0c,
  VIDEO_CONFIG: 0x0d,
  AUDIO_CONFIG: 0x0f,
  TIMESTAMP: 0x10,
});

export const CATALOG_TRACK = 'catalog';

/** Tunables; a page may override them from its query. */
export const DEFAULTS = Object.freeze({
  /** Playout delay over the best transit seen (ms): what absorbs network jitter. With `adaptiveJitter`, where it
   * starts: it then follows how late objects become playable (see PlayoutClock), within min/maxJitterMs. */
  jitterMs: 100,
  adaptiveJitter: false,
  minJitterMs: 20,
  maxJitterMs: 400,
  /** Behind the live edge by more than this (ms), a track skips to its newest group. */
  maxLatencyMs: 1000,
  /** Groups a track buffers (audio: 20 ms frames, 1-5 per group, so 8-40 s); past it the oldest are dropped. */
  maxBufferedGroups: 400,
  /** Payload bytes a track buffers. */
  maxBufferedBytes: 32 * 1024 * 1024,
  /** Chunks in a decoder's queue before we wait for it. */
  maxDecodeQueue: 6,
  /** Decoded video frames waiting for their time (each holds a picture's memory). */
  maxRenderQueue: 30,
  /** Test hook: after this many decoded video frames, stall every decode loop for `stallMs` (once). */
  stallAfterFrames: null,
  stallMs: 0,
  /** Keep the capture time of every decoded video frame in stats.trace (bounded by MAX_TRACE), and the latency
   * (ms) of every video frame shown (trace.videoLatencyMs) and audio frame scheduled (trace.audioLatencyMs). */
  trace: false,
  /** SUBSCRIBER_PRIORITY of the media subscriptions (lower is more urgent; the catalog's is 0). */
  videoPriority: 128,
  audioPriority: 64,
});

/** The number of entries stats.trace keeps. */
export const MAX_TRACE = 20000;
/** The playout clock's window for the best transit (ms): two windows of this length are kept. */
const TRANSIT_WINDOW_MS = 5000;
/** Adaptive jitter: how many samples a track keeps of how late after its best transit an object became playable
 * (decoded): 4 s of audio, 10 s of video. */
const JITTER_SAMPLES = 200;
/** Adaptive jitter: the share of those samples it leaves on time (the rest come too late: audio is dropped). */
const JITTER_PERCENTILE = 0.98;
/** Adaptive jitter: added to the percentile (audio is scheduled at least 5 ms ahead; the decode queue varies). */
const JITTER_MARGIN_MS = 10;
/** Adaptive jitter: how often it is worked out again (ms), samples it needs first, and how far it may come down
 * each time (ms; up it goes at once): 40 ms a second, so a shrinking delay does not cut audio short. */
const JITTER_UPDATE_MS = 250;
const JITTER_MIN_SAMPLES = 20;
const JITTER_FALL_MS = 20;
/** Adaptive jitter: a track's first objects are not sampled (ms): a new subscriber gets the latest group at once,
 * objects captured up to a GOP ago, and plays the live edge only once that burst is past. */
const JITTER_SETTLE_MS = 3000;
/** How long a finished group's successor may be missing before we move past the gap (ms). */
const GAP_WAIT_MS = 80;
/** How long a group with no FIN and no new object holds back the next group (ms). */
const STALE_GROUP_MS = 400;
/** How long the first objects of a track are held so that early groups arriving out of order line up (ms). */
const START_HOLD_MS = 40;
/** Retry delays when the broadcast is not there (yet) or the session failed (ms). */
const RETRY_MS = [500, 1000, 2000, 4000];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const textDecoder = new TextDecoder();

/** A wake-up for a loop waiting on data: notify() ends every current wait(); wait(ms) also ends after ms. */
class Signal {
  #resolve = null;
  #promise = null;

  notify() {
    const resolve = this.#resolve;
    this.#resolve = this.#promise = null;
    resolve?.();
  }

  wait(ms) {
    this.#promise ??= new Promise((resolve) => (this.#resolve = resolve));
    if (ms === undefined) return this.#promise;
    let timer;
    return Promise.race([this.#promise, new Promise((r) => (timer = setTimeout(r, ms)))]).finally(() =>
      clearTimeout(timer),
    );
  }
}

/** Events per second over the last second. */
class RateMeter {
  #times = [];
  #amounts = [];

  add(amount = 1, now = performance.now()) {
    this.#times.push(now);
    this.#amounts.push(amount);
    this.#trim(now);
  }

  rate(now = performance.now()) {
    this.#trim(now);
    return this.#amounts.reduce((a, b) => a + b, 0);
  }

  #trim(now) {
    while (this.#times.length && this.#times[0] < now - 1000) {
      this.#times.shift();
      this.#amounts.shift();
    }
  }
}

let pageAudioContext = null;

/** The page's one AudioContext, for every player on it (made, and asked to resume, on first use). */
export function sharedAudioContext() {
  if (!pageAudioContext && typeof AudioContext !== 'undefined') {
    pageAudioContext = new AudioContext({ latencyHint: 'interactive', sampleRate: 48000 });
    pageAudioContext.resume().catch(() => {});
  }
  return pageAudioContext;
}

/**
 * Media time (capture ms) to this page's clock (performance.now() ms); see the top of this file. The best
 * transit is kept per track, and the clock follows the slowest track's: audio coming through an encoder that
 * holds 20 ms frames (and its lookahead) arrives tens of ms later after capture than video does, and must not
 * be late by design; the video then waits for it (lip sync). A track silent for two windows no longer counts.
 *
 * Each track's jitter is fixed (`jitterMs`), or, with `adaptive` ({min, max}), follows how late after its best
 * transit the track's objects became playable (`ready()`: decoded, so the decoder's delay counts too): the
 * JITTER_PERCENTILE of its last JITTER_SAMPLES plus JITTER_MARGIN_MS, within [min, max], from JITTER_SETTLE_MS
 * after the track's first object on. It rises at once and comes down by JITTER_FALL_MS at most every
 * JITTER_UPDATE_MS (audio leaves a frame out where its schedule moves earlier: AudioTrack). A quiet path gets a small delay (a call on one
 * machine: about 20 ms instead of 100), a busy one a bigger delay instead of late audio.
 */
export class PlayoutClock {
  /** @type {Map<string, {windows: number[], first: number, start: number, last: number, jitter: number,
   *   spreads: number[], next: number}>} */
  #tracks = new Map();
  #adaptive;
  #now;
  #adaptedAt = -Infinity;

  /**
   * @param {number} jitterMs the jitter (ms), or with `adaptive` where it starts
   * @param {{adaptive?: {min: number, max: number} | null, now?: () => number}} options
   */
  constructor(jitterMs, { adaptive = null, now = () => performance.now() } = {}) {
    this.jitterMs = jitterMs;
    this.#adaptive = adaptive;
    this.#now = now;
  }

  /** An object of track `kind` captured at `mediaMs` arrived at `arrival` (performance.now()). */
  observe(mediaMs, arrival, kind = 'media') {
    let track = this.#tracks.get(kind);
    if (!track) {
      track = {
        windows: [Infinity, Infinity],
        first: arrival,
        start: arrival,
        last: arrival,
        jitter: this.jitterMs,
        spreads: [],
        next: 0,
      };
      this.#tracks.set(kind, track);
    }
    if (arrival - track.start > TRANSIT_WINDOW_MS) {
      track.windows = [track.windows[1], Infinity];
      track.start = arrival;
    }
    track.windows[1] = Math.min(track.windows[1], arrival - mediaMs);
    track.last = arrival;
  }

  /** An object of track `kind` captured at `mediaMs` became playable (decoded) at `at` (adaptive jitter only). */
  ready(mediaMs, at, kind = 'media') {
    const track = this.#tracks.get(kind);
    if (!this.#adaptive || !track || at - track.first < JITTER_SETTLE_MS) return;
    const best = Math.min(...track.windows);
    if (best === Infinity) return;
    const spread = at - mediaMs - best;
    if (track.spreads.length < JITTER_SAMPLES) track.spreads.push(spread);
    else track.spreads[track.next] = spread;
    track.next = (track.next + 1) % JITTER_SAMPLES;
  }

  /** Start `kind` afresh: a new subscription may come from a new source, with its own capture clock. */
  forget(kind) {
    this.#tracks.delete(kind);
  }

  /** performance.now() - capture time for an object played on time, or null before any was seen. */
  get offset() {
    return this.#followed()?.offset ?? null;
  }

  /** The jitter of the track the clock follows now (ms), or null before any was seen. */
  get jitter() {
    return this.#followed()?.jitter ?? null;
  }

  /** The slowest track's best transit + jitter (the offset), and its jitter; null before any was seen. */
  #followed() {
    const now = this.#now();
    if (this.#adaptive && now - this.#adaptedAt >= JITTER_UPDATE_MS) this.#adapt(now);
    let followed = null;
    for (const track of this.#tracks.values()) {
      if (now - track.last > 2 * TRANSIT_WINDOW_MS && this.#tracks.size > 1) continue;
      const offset = Math.min(...track.windows) + track.jitter;
      if (offset !== Infinity && (followed === null || offset > followed.offset)) {
        followed = { offset, jitter: track.jitter };
      }
    }
    return followed;
  }

  #adapt(now) {
    this.#adaptedAt = now;
    const { min, max } = this.#adaptive;
    for (const track of this.#tracks.values()) {
      if (track.spreads.length < JITTER_MIN_SAMPLES) continue;
      const sorted = [...track.spreads].sort((a, b) => a - b);
      const at = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * JITTER_PERCENTILE))];
      const target = Math.min(max, Math.max(min, at + JITTER_MARGIN_MS));
      track.jitter = target >= track.jitter ? target : Math.max(target, track.jitter - JITTER_FALL_MS);
    }
  }

  /** When an object captured at `mediaMs` is due, in performance.now() ms. */
  due(mediaMs) {
    const offset = this.offset;
    return offset === null ? this.#now() : mediaMs + offset;
  }
}

/**
 * One track's received objects, by group, handed out in play order (see the top of this file).
 * `needsStart`: a group can only be played from its object 0 (video: it holds the keyframe).
 */
export class GroupBuffer {
  /** Group ids held, ascending. */
  ids = [];
  groups = new Map();
  /** The group being played, or null before the first (or after losing our place). */
  current = null;
  /** The newest capture time received (µs). */
  liveEdgeUs = null;
  bytes = 0;
  /** Groups given up without being played whole. */
  dropped = 0;
  #firstArrival = null;

  constructor({ needsStart, maxGroups, maxBytes }) {
    this.needsStart = needsStart;
    this.maxGroups = maxGroups;
    this.maxBytes = maxBytes;
  }

  /** Add an object (with `timeUs` set); false when it comes too late to be played. */
  push(obj) {
    if (this.current !== null && obj.groupId < this.current) return false;
    let group = this.groups.get(obj.groupId);
    if (!group) {
      group = { id: obj.groupId, objects: [], next: 0, ended: false, reset: false, lastArrival: 0, endedAt: 0 };
      this.groups.set(obj.groupId, group);
      this.#insertId(obj.groupId);
    }
    const objects = group.objects;
    let at = objects.length;
    while (at > 0 && objects[at - 1].objectId > obj.objectId) at--;
    if ((at > 0 && objects[at - 1].objectId === obj.objectId) || at < group.next) return false;
    objects.splice(at, 0, obj);
    group.lastArrival = obj.receivedAt;
    this.#firstArrival ??= obj.receivedAt;
    this.bytes += obj.payload.length;
    if (obj.timeUs !== null && (this.liveEdgeUs === null || obj.timeUs > this.liveEdgeUs)) this.liveEdgeUs = obj.timeUs;
    this.#bound();
    return true;
  }

  /** The group's stream ended: FIN (`reset` false) or RESET_STREAM (true). */
  end(groupId, reset, now = performance.now()) {
    const group = this.groups.get(groupId);
    if (!group || group.ended) return;
    group.ended = true;
    group.reset = reset;
    group.endedAt = now;
  }

  /** The next object to play, without taking it: the rest of the current group, else the next group's first. */
  peek() {
    const group = this.current === null ? null : this.groups.get(this.current);
    if (group && group.next < group.objects.length) return group.objects[group.next];
    const following = this.ids.find((id) => this.current === null || id > this.current);
    return following === undefined ? null : (this.groups.get(following).objects[0] ?? null);
  }

  /** How far (ms) the next object to play is behind the live edge; null when there is none. */
  behindMs() {
    const head = this.peek();
    if (head === null || head.timeUs === null || this.liveEdgeUs === null) return null;
    return (this.liveEdgeUs - head.timeUs) / 1000;
  }

  /** The newest group that can be played from its start, or null. */
  newestStart() {
    for (let i = this.ids.length - 1; i >= 0; i--) {
      if (this.#startable(this.groups.get(this.ids[i]))) return this.ids[i];
    }
    return null;
  }

  /** Drop every group before `groupId` and play from it; returns the groups dropped. */
  skipTo(groupId) {
    let dropped = 0;
    while (this.ids.length && this.ids[0] < groupId) {
      const group = this.groups.get(this.ids[0]);
      if (group.objects.length) dropped++;
      this.#remove(this.ids[0]);
    }
    this.current = this.groups.has(groupId) ? groupId : null;
    this.dropped += dropped;
    return dropped;
  }

  /** The next object in play order, or null when it is not there yet. */
  take(now = performance.now()) {
    for (;;) {
      if (this.current === null) {
        if (this.#firstArrival === null || now - this.#firstArrival < START_HOLD_MS) return null;
        const start = this.ids.find((id) => this.#startable(this.groups.get(id)));
        if (start === undefined) return null;
        this.skipTo(start);
      }
      const group = this.groups.get(this.current);
      if (group.next < group.objects.length) {
        const obj = group.objects[group.next];
        const previous = group.next > 0 ? group.objects[group.next - 1].objectId : null;
        if (this.needsStart && previous !== null && obj.objectId !== previous + 1) {
          // A hole inside the group (an object lost): what follows cannot be decoded. Give up the group.
          this.#advance(group, now, true);
          continue;
        }
        group.next++;
        return obj;
      }
      if (!this.#advance(group, now, false)) return null;
    }
  }

  /** Move past the exhausted (or broken) current group when its successor may start; false to wait. */
  #advance(group, now, broken) {
    const index = this.ids.indexOf(group.id);
    const nextId = this.ids[index + 1];
    if (nextId === undefined) {
      if (!broken) return false;
      this.dropped++;
      this.#remove(group.id);
      this.current = null;
      return true;
    }
    const follows = Number(nextId) === Number(group.id) + 1;
    if (!broken) {
      const settled = group.ended ? follows || now - group.endedAt > GAP_WAIT_MS : now - group.lastArrival > STALE_GROUP_MS;
      if (!settled) return false;
    }
    if (broken || group.reset) this.dropped++;
    if (!follows) this.dropped += Math.max(0, Number(nextId) - Number(group.id) - 1);
    this.#remove(group.id);
    this.current = this.#startable(this.groups.get(nextId)) ? nextId : null;
    return true;
  }

  #startable(group) {
    return group !== undefined && group.objects.length > 0 && (!this.needsStart || group.objects[0].objectId === 0);
  }

  #insertId(id) {
    let at = this.ids.length;
    while (at > 0 && this.ids[at - 1] > id) at--;
    this.ids.splice(at, 0, id);
  }

  #remove(id) {
    const group = this.groups.get(id);
    if (!group) return;
    for (const obj of group.objects) this.bytes -= obj.payload.length;
    this.groups.delete(id);
    this.ids.splice(this.ids.indexOf(id), 1);
  }

  #bound() {
    while (this.ids.length > 1 && (this.ids.length > this.maxGroups || this.bytes > this.maxBytes)) {
      const oldest = this.ids[0];
      this.dropped++;
      this.#remove(oldest);
      if (oldest === this.current) this.current = null;
    }
  }
}

/** The capture time of a LOC object in µs (TIMESTAMP in TIMESCALE units, default µs), or null. */
export function captureTimeUs(properties, trackTimescale = null) {
  const stamp = moqt.getProperty(properties, LocProperty.TIMESTAMP);
  if (stamp === undefined) return null;
  const scale = moqt.getProperty(properties, LocProperty.TIMESCALE) ?? trackTimescale;
  const value = Number(stamp);
  return scale && Number(scale) !== 1_000_000 ? (value * 1_000_000) / Number(scale) : value;
}

/** Whether a video object is a keyframe: VIDEO_FRAME_MARKING's I bit (RFC 9626), else object 0 of a group. */
function isKeyframe(obj) {
  const marking = moqt.getProperty(obj.properties, LocProperty.VIDEO_FRAME_MARKING);
  if (marking instanceof Uint8Array && marking.length > 0) return (marking[0] & 0x20) !== 0;
  return obj.objectId === 0;
}

/** "avc1.PPCCLL" from an avcC record, for a catalog that gives no codec. */
function codecFromAvcC(avcC) {
  const hex = (b) => b.toString(16).padStart(2, '0');
  return `avc1.${hex(avcC[1])}${hex(avcC[2])}${hex(avcC[3])}`;
}

function sameBytes(a, b) {
  if (a === b) return true;
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// -- Catalog (MSF §"Catalog", §"Delta updates") ------------------------------------------------------------------

/** Namespace fields a catalog's `namespace` string may have (MOQT's limit, §2.4.1). */
const MAX_NAMESPACE_FIELDS = 32;
/** The longest `namespace` string read: every byte of a 4096-byte namespace percent-encoded, and separators. */
const MAX_NAMESPACE_TEXT = 3 * 4096 + MAX_NAMESPACE_FIELDS;

/**
 * The namespace (fields as Uint8Array) a catalog track's `namespace` string names: fields percent-encoded, '/'
 * between them ("live/demo/stage/bob"); null for what is no namespace (empty, an empty field, too long).
 */
export function namespaceFromText(text) {
  if (typeof text !== 'string' || text.length === 0 || text.length > MAX_NAMESPACE_TEXT) return null;
  const parts = text.split('/');
  if (parts.length > MAX_NAMESPACE_FIELDS || parts.some((p) => p.length === 0)) return null;
  return parts.map(decodeField);
}

/** A namespace's `namespace` string (the canonical form: what namespaceFromText reads back). */
export function namespaceText(namespace) {
  return namespace.map(encodeField).join('/');
}

/** Whether two namespaces (fields as strings or bytes) are the same, field by field. */
export function sameNamespace(a, b) {
  return a.length === b.length && namespaceText(a) === namespaceText(b);
}

/** Whether a catalog track lives in `namespace`: no `namespace` field (it inherits the catalog's), or the same. */
export function inNamespace(track, namespace) {
  if (track.namespace === undefined || track.namespace === null) return true;
  const ns = namespaceFromText(track.namespace);
  return ns !== null && sameNamespace(ns, namespace);
}

function trackKey(track) {
  return `${track.namespace ?? ''}\u0000${track.name}`;
}

/** The catalog after a delta update's operations (add, remove, clone, update), in order. */
export function applyDelta(catalog, delta) {
  const tracks = new Map(catalog.tracks.map((t) => [trackKey(t), t]));
  for (const operation of delta.deltaUpdate ?? []) {
    for (const patch of operation.tracks ?? []) {
      const { parentName, parentNamespace, ...fields } = patch;
      if (operation.op === 'add') {
        tracks.set(trackKey(fields), fields);
      } else if (operation.op === 'remove') {
        tracks.delete(trackKey(fields));
      } else if (operation.op === 'clone' || operation.op === 'update') {
        const parentKey = trackKey({ name: parentName ?? patch.name, namespace: parentNamespace ?? patch.namespace });
        const parent = tracks.get(parentKey);
        if (!parent) continue;
        if (operation.op === 'clone') {
          const clone = { ...parent, ...fields };
          tracks.set(trackKey(clone), clone);
        } else {
          if (!parentName) delete fields.name;
          const updated = { ...parent, ...fields };
          const entries = [...tracks].map(([k, v]) => (k === parentKey ? [trackKey(updated), updated] : [k, v]));
          tracks.clear();
          for (const [k, v] of entries) tracks.set(k, v);
        }
      }
    }
  }
  return { ...catalog, generatedAt: delta.generatedAt ?? catalog.generatedAt, tracks: [...tracks.values()] };
}

export function roleOf(track) {
  if (track.role) return track.role;
  const codec = track.codec ?? '';
  if (/^(avc|hvc|hev|vp0|vp8|vp9|av01)/.test(codec)) return 'video';
  if (/^(opus|mp4a|flac|vorbis)/.test(codec)) return 'audio';
  return null;
}

/** The stats the page shows and exposes as window.moqStats (one object, updated in place). */
export function createStats(trace = false) {
  return {
    state: 'starting',
    draft: null,
    /** Sessions opened (1 while nothing went wrong: a reconnect adds one). */
    sessions: 0,
    relay: null,
    broadcast: null,
    framesDecoded: 0,
    framesRendered: 0,
    framesSkipped: 0,
    audioFramesDecoded: 0,
    audioFramesPlayed: 0,
    audioFramesLate: 0,
    /** Audio frames left out where the playout delay came down (they would have overlapped the previous one). */
    audioFramesCut: 0,
    /** How far past its due time the newest audio frame too late to play was decoded (ms). */
    audioLateMs: null,
    latencyMs: null,
    /** How long after capture objects are due (ms): the best transit of the slowest track, plus the jitter. */
    playoutDelayMs: null,
    /** The jitter in that delay (ms): fixed, or adapted (the `adaptiveJitter` option). */
    jitterMs: null,
    /** Capture to the moment a decoded audio frame is due to be heard (ms), while audio plays. */
    audioLatencyMs: null,
    /** The AUDIO_LEVEL (LOC) of the newest audio object: -dBov, 0 loudest .. 127 silence; and its V flag. */
    audioLevel: null,
    voice: false,
    audioLevelAt: null,
    audioLevelPeak: null,
    videoPriority: null,
    audioPriority: null,
    /** REQUEST_UPDATEs sent to change a subscription's priority. */
    priorityUpdates: 0,
    fps: 0,
    bitrateKbps: 0,
    groupsDropped: 0,
    videoGroupsDropped: 0,
    audioGroupsDropped: 0,
    skips: 0,
    outOfOrder: 0,
    objectsReceived: 0,
    bytesReceived: 0,
    videoTrack: null,
    audioTrack: null,
    /** When the video subscription was accepted (ms since the epoch): from then on every frame should play. */
    videoSince: null,
    videoCodec: null,
    audioCodec: null,
    width: null,
    height: null,
    audioState: null,
    stalled: false,
    catalogTracks: [],
    /** Whole catalogs applied (a new catalog group each). */
    catalogVersions: 0,
    lastError: null,
    trace: trace ? { video: [], skips: [], videoLatencyMs: [], audioLatencyMs: [] } : null,
  };
}

// -- Tracks ------------------------------------------------------------------------------------------------------

/** What video and audio tracks share: the subscription, the group buffer, the decode loop and skipping. */
class MediaTrack {
  signal = new Signal();
  closed = false;
  sub = null;

  constructor(player, track, kind) {
    this.player = player;
    this.track = track;
    this.kind = kind;
    const o = player.options;
    this.buffer = new GroupBuffer({
      needsStart: kind === 'video',
      maxGroups: o.maxBufferedGroups,
      maxBytes: o.maxBufferedBytes,
    });
    // A video subscriber joins at the start of the latest GOP, up to a GOP behind the live edge: skipping then
    // would throw away the group it just joined. So the bound is at least a GOP (MSF maxGopDuration) + margin.
    this.gopMs = kind === 'video' ? Number(track.maxGopDuration ?? track.maxGroupDuration ?? 0) : 0;
  }

  /** How far behind its live edge the track may fall before it skips ahead (ms), with the clock's jitter now. */
  get skipThresholdMs() {
    const o = this.player.options;
    return Math.max(o.maxLatencyMs, this.gopMs + 2 * (this.player.clock.jitter ?? o.jitterMs));
  }

  async start(session, namespace) {
    const ns = (this.track.namespace && namespaceFromText(this.track.namespace)) || namespace;
    const priorityKey = `${this.kind}Priority`;
    const priority = this.player.options[priorityKey];
    this.player.clock.forget(this.kind);
    this.sub = await session.subscribe(ns, this.track.name, {
      priority,
      onObject: (obj) => this.#received(obj),
      onStreamEnd: ({ groupId, reset }) => {
        this.buffer.end(groupId, reset);
        this.signal.notify();
      },
      onDone: ({ reason }) => this.player.trackEnded(this, reason),
    });
    if (this.closed) {
      this.sub.cancel(); // closed while SUBSCRIBE was on its way (the tile went, the player stopped)
      return;
    }
    if (this.kind === 'video') this.player.stats.videoSince = Date.now();
    this.player.stats[priorityKey] = priority;
    // The priority changed while SUBSCRIBE was on its way: tell the publisher now.
    const wanted = this.player.options[priorityKey];
    if (wanted !== priority) this.player.setPriority(this.kind, wanted, true);
    this.#loop().catch((err) => this.player.fail(err));
  }

  close() {
    this.closed = true;
    this.sub?.cancel();
    this.signal.notify();
  }

  #received(obj) {
    const stats = this.player.stats;
    stats.objectsReceived++;
    this.player.mediaBytes += obj.payload.length;
    if (this.kind === 'audio') {
      const level = moqt.getProperty(obj.properties, LocProperty.AUDIO_LEVEL);
      if (level !== undefined) {
        stats.audioLevel = Number(level) & 0x7f;
        stats.voice = (Number(level) & 0x80) !== 0;
        stats.audioLevelAt = Date.now();
        // The loudest since a reader last took it (takeAudioPeak): a short word between two reads still counts.
        stats.audioLevelPeak = Math.min(stats.audioLevelPeak ?? 127, stats.audioLevel);
      }
    }
    if (obj.status !== moqt.ObjectStatus.NORMAL) {
      if (obj.status === moqt.ObjectStatus.END_OF_GROUP) this.buffer.end(obj.groupId, false);
      this.signal.notify();
      return;
    }
    obj.timeUs = captureTimeUs(obj.properties, this.track.timescale ?? null);
    if (obj.timeUs !== null) this.player.clock.observe(obj.timeUs / 1000, obj.receivedAt, this.kind);
    this.buffer.push(obj);
    if (obj.datagram && obj.endOfGroup) this.buffer.end(obj.groupId, false);
    this.signal.notify();
  }

  async #loop() {
    while (!this.closed) {
      await this.player.stallPoint();
      const behind = this.buffer.behindMs();
      if (behind !== null && behind > this.skipThresholdMs) this.#skipAhead(behind);
      if (this.busy()) {
        await this.signal.wait(10);
        continue;
      }
      const obj = this.buffer.take();
      if (obj === null) {
        await this.signal.wait(GAP_WAIT_MS / 2);
        continue;
      }
      this.decode(obj);
    }
  }

  #skipAhead(behind) {
    const buffer = this.buffer;
    const target = buffer.newestStart();
    const from = buffer.current ?? buffer.ids[0];
    if (target === null || from === undefined || target <= from) return;
    const dropped = buffer.skipTo(target);
    this.sub?.cancelGroupsBefore(target);
    this.skipped(dropped);
    const stats = this.player.stats;
    stats.skips++;
    stats.trace?.skips.push({ kind: this.kind, from: Number(from), to: Number(target), dropped, behindMs: behind });
    console.info(`${this.kind}: ${Math.round(behind)} ms behind, skipped from group ${from} to ${target}`);
  }

  /** Dropped groups are counted once, from the buffer's own count. */
  countDrops() {
    const stats = this.player.stats;
    const field = this.kind === 'video' ? 'videoGroupsDropped' : 'audioGroupsDropped';
    stats[field] = this.buffer.dropped;
    stats.groupsDropped = stats.videoGroupsDropped + stats.audioGroupsDropped;
  }

  /** Hooks for the subclasses. */
  busy() {
    return false;
  }

  skipped(dropped) {}

  decode(obj) {}
}

class VideoTrack extends MediaTrack {
  decoder = null;
  config = null;
  waitingForKey = true;
  renderQueue = [];
  lastTimestamp = -Infinity;
  renderMeter = new RateMeter();
  #drawing = false;

  constructor(player, track) {
    super(player, track, 'video');
    this.canvas = player.canvas;
    this.context = this.canvas?.getContext('2d') ?? null;
  }

  async start(session, namespace) {
    await super.start(session, namespace);
    this.#scheduleDraw();
  }

  close() {
    super.close();
    for (const frame of this.renderQueue) frame.close();
    this.renderQueue = [];
    if (this.decoder && this.decoder.state !== 'closed') this.decoder.close();
  }

  busy() {
    return (this.decoder !== null && this.decoder.decodeQueueSize >= this.player.options.maxDecodeQueue) ||
      this.renderQueue.length >= this.player.options.maxRenderQueue;
  }

  skipped() {
    this.waitingForKey = true; // the next chunk is the new group's keyframe
    this.countDrops();
  }

  #configure(description) {
    if (!this.decoder || this.decoder.state === 'closed') {
      this.decoder = new VideoDecoder({
        output: (frame) => this.#decoded(frame),
        error: (err) => {
          this.player.stats.lastError = `video decoder: ${err.message}`;
          console.warn(`video decoder: ${err.message}`);
          this.decoder = null;
          this.config = null;
          this.waitingForKey = true;
        },
      });
      this.decoder.addEventListener('dequeue', () => this.signal.notify());
    }
    const codec = this.track.codec ?? (description ? codecFromAvcC(description) : 'avc1.42e01e');
    const config = { codec, optimizeForLatency: true };
    if (description) config.description = description;
    this.decoder.configure(config);
    this.config = description ?? new Uint8Array(0);
    this.player.stats.videoCodec = codec;
  }

  decode(obj) {
    this.countDrops();
    const key = isKeyframe(obj);
    if (key) {
      const description = moqt.getProperty(obj.properties, LocProperty.VIDEO_CONFIG) ?? null;
      const wanted = description ?? this.config ?? new Uint8Array(0);
      if (!this.decoder || this.decoder.state !== 'configured' || !sameBytes(wanted, this.config)) {
        this.#configure(description ?? (this.config?.length ? this.config : null));
      }
    }
    if (!this.decoder || this.decoder.state !== 'configured' || (this.waitingForKey && !key)) {
      this.player.stats.framesSkipped++;
      return;
    }
    this.waitingForKey = false;
    try {
      this.decoder.decode(new EncodedVideoChunk({ type: key ? 'key' : 'delta', timestamp: obj.timeUs ?? 0, data: obj.payload }));
    } catch (err) {
      this.player.stats.lastError = `video decode: ${err.message}`;
      this.waitingForKey = true;
    }
  }

  #decoded(frame) {
    const stats = this.player.stats;
    stats.framesDecoded++;
    if (frame.timestamp <= this.lastTimestamp) stats.outOfOrder++;
    this.lastTimestamp = frame.timestamp;
    if (stats.trace && stats.trace.video.length < MAX_TRACE) stats.trace.video.push(frame.timestamp);
    stats.width = frame.displayWidth;
    stats.height = frame.displayHeight;
    if (this.closed) {
      frame.close();
      return;
    }
    this.player.clock.ready(frame.timestamp / 1000, performance.now(), this.kind);
    this.renderQueue.push(frame);
  }

  #scheduleDraw() {
    if (this.closed || this.#drawing) return;
    this.#drawing = true;
    const next = () => {
      this.#drawing = false;
      this.#draw();
      this.#scheduleDraw();
    };
    if (document.visibilityState === 'visible') requestAnimationFrame(next);
    else setTimeout(next, 16);
  }

  /** Draw the newest frame that is due; frames due before it are passed over (catching up). */
  #draw() {
    const now = performance.now();
    const clock = this.player.clock;
    let show = null;
    while (this.renderQueue.length && clock.due(this.renderQueue[0].timestamp / 1000) <= now) {
      if (show) {
        show.close();
        this.player.stats.framesSkipped++;
      }
      show = this.renderQueue.shift();
    }
    if (this.renderQueue.length < this.player.options.maxRenderQueue) this.signal.notify();
    if (!show) return;
    const canvas = this.canvas;
    if (canvas && this.context) {
      if (canvas.width !== show.displayWidth || canvas.height !== show.displayHeight) {
        canvas.width = show.displayWidth;
        canvas.height = show.displayHeight;
      }
      this.context.drawImage(show, 0, 0, canvas.width, canvas.height);
    }
    const stats = this.player.stats;
    stats.framesRendered++;
    const latency = Date.now() - show.timestamp / 1000;
    stats.latencyMs = Math.round(latency);
    const videoTrace = stats.trace?.videoLatencyMs;
    if (videoTrace && videoTrace.length < MAX_TRACE) videoTrace.push(Math.round(latency * 10) / 10);
    this.renderMeter.add(1, now);
    show.close();
  }
}

class AudioTrack extends MediaTrack {
  decoder = null;
  #nextTime = 0;
  #clockBase = null;
  #clockBaseAt = -Infinity;

  constructor(player, track) {
    super(player, track, 'audio');
    this.context = player.audioContext();
  }

  close() {
    super.close();
    if (this.decoder && this.decoder.state !== 'closed') this.decoder.close();
  }

  busy() {
    return this.decoder !== null && this.decoder.decodeQueueSize >= this.player.options.maxDecodeQueue;
  }

  skipped() {
    this.countDrops();
  }

  #configure(description) {
    this.decoder = new AudioDecoder({
      output: (data) => this.#decoded(data),
      error: (err) => {
        this.player.stats.lastError = `audio decoder: ${err.message}`;
        console.warn(`audio decoder: ${err.message}`);
        this.decoder = null;
      },
    });
    this.decoder.addEventListener('dequeue', () => this.signal.notify());
    const config = {
      codec: this.track.codec ?? 'opus',
      sampleRate: this.track.samplerate ?? 48000,
      numberOfChannels: parseInt(this.track.channelConfig ?? '2', 10) || 2,
    };
    if (description) config.description = description;
    this.decoder.configure(config);
    this.player.stats.audioCodec = config.codec;
  }

  decode(obj) {
    this.countDrops();
    if (!this.decoder || this.decoder.state === 'closed') {
      this.#configure(moqt.getProperty(obj.properties, LocProperty.AUDIO_CONFIG) ?? null);
    }
    try {
      this.decoder.decode(new EncodedAudioChunk({ type: 'key', timestamp: obj.timeUs ?? 0, data: obj.payload }));
    } catch (err) {
      this.player.stats.lastError = `audio decode: ${err.message}`;
    }
  }

  /** The AudioContext's time minus performance.now() in seconds, re-read once a second (it drifts slowly). */
  #contextOffset(now) {
    if (now - this.#clockBaseAt > 1000) {
      const stamp = this.context.getOutputTimestamp?.();
      this.#clockBase =
        stamp && stamp.performanceTime
          ? stamp.contextTime - stamp.performanceTime / 1000
          : this.context.currentTime - now / 1000;
      this.#clockBaseAt = now;
    }
    return this.#clockBase;
  }

  #decoded(data) {
    const stats = this.player.stats;
    stats.audioFramesDecoded++;
    const ctx = this.context;
    try {
      if (this.closed || !ctx || ctx.state !== 'running') return;
      const now = performance.now();
      // Playable from the earliest moment a buffer can start (currentTime runs ahead of what is heard by the
      // output latency, and a start must be 5 ms ahead of it), in performance time.
      const earliest = (ctx.currentTime + 0.005 - this.#contextOffset(now)) * 1000;
      this.player.clock.ready(data.timestamp / 1000, Math.max(now, earliest), this.kind);
      let when = this.player.clock.due(data.timestamp / 1000) / 1000 + this.#contextOffset(now);
      if (Math.abs(when - this.#nextTime) < 0.01) when = this.#nextTime; // butt it to the previous buffer
      if (this.#nextTime - when >= 0.01 && this.#nextTime > ctx.currentTime) {
        // The playout delay came down (PlayoutClock): this frame would overlap the previous one. Leave it out; the
        // next ones start later by a frame each, until one butts to the previous buffer again.
        stats.audioFramesCut++;
        return;
      }
      if (when < ctx.currentTime + 0.005) {
        stats.audioFramesLate++;
        stats.audioLateMs = Math.round((ctx.currentTime + 0.005 - when) * 1000);
        return;
      }
      const buffer = ctx.createBuffer(data.numberOfChannels, data.numberOfFrames, data.sampleRate);
      for (let ch = 0; ch < data.numberOfChannels; ch++) {
        data.copyTo(buffer.getChannelData(ch), { planeIndex: ch, format: 'f32-planar' });
      }
      const source = ctx.createBufferSource();
      source.buffer = buffer;
      source.connect(ctx.destination);
      source.start(when);
      this.#nextTime = when + buffer.duration;
      stats.audioFramesPlayed++;
      // Capture to the moment it is heard: `when` mapped back to performance time through the output timestamp
      // (currentTime runs ahead of what is heard by the context's base and output latency, ~37 ms in Chromium).
      const heardIn = (when - this.#contextOffset(now)) * 1000 - now;
      const audioLatency = Date.now() - data.timestamp / 1000 + heardIn;
      stats.audioLatencyMs = Math.round(audioLatency);
      const audioTrace = stats.trace?.audioLatencyMs;
      if (audioTrace && audioTrace.length < MAX_TRACE) audioTrace.push(Math.round(audioLatency * 10) / 10);
      if (!this.player.video) stats.latencyMs = stats.audioLatencyMs;
    } finally {
      data.close();
    }
  }
}

// -- The player --------------------------------------------------------------------------------------------------

export class Player {
  /** @type {Session | null} */
  session = null;
  video = null;
  audio = null;
  catalog = null;
  /** Media payload bytes received (for a bitrate when the session is shared). */
  mediaBytes = 0;
  #audioContext = null;
  #ownsSession = true;
  #stallUntil = 0;
  #stallUsed = false;
  #stopped = false;
  #bytesAt = null;
  #ended = null;
  /** Catalog changes are applied one after the other (choosing a track awaits the decoder and the relay). */
  #choosing = Promise.resolve();
  /** The group of the catalog applied (a group older than it is stale). */
  #catalogGroup = null;
  /** Playing tracks given by listTracks() rather than read from a catalog track (playListed). */
  #listed = false;

  /**
   * @param {{namespace: Uint8Array[], canvas?: HTMLCanvasElement, options?: object, stats?: object,
   *   audioContext?: AudioContext | null, onCatalog?: (catalog: object | null) => void}} init
   *   audioContext: one to share (a page with many players); onCatalog: called with every catalog applied (after
   *   a whole catalog or a delta), and with null when the broadcast ends
   */
  constructor({ namespace, canvas = null, options = {}, stats = null, audioContext = null, onCatalog = null }) {
    this.namespace = namespace;
    this.onCatalog = onCatalog;
    this.#audioContext = audioContext;
    this.canvas = canvas;
    this.options = { ...DEFAULTS, ...options };
    this.stats = stats ?? createStats(this.options.trace);
    const o = this.options;
    const adaptive = o.adaptiveJitter ? { min: o.minJitterMs, max: o.maxJitterMs } : null;
    this.clock = new PlayoutClock(o.jitterMs, { adaptive });
    this.ticker = setInterval(() => this.#tick(), 250);
  }

  /** The shared AudioContext (created on first use); null where Web Audio is missing. */
  audioContext() {
    this.#audioContext ??= sharedAudioContext();
    return this.#audioContext;
  }

  /** Resume audio after a user gesture (browsers start an AudioContext suspended without one). */
  async resumeAudio() {
    await this.audioContext()?.resume();
  }

  /** Play until stop(): connect, play the broadcast, and start again whenever the session or broadcast ends. */
  async run(config) {
    this.stats.relay = config.url;
    let attempt = 0;
    while (!this.#stopped) {
      try {
        this.stats.state = 'connecting';
        this.session = await Session.connect(config.url, config);
        this.stats.sessions++;
        this.stats.draft = this.session.version;
        attempt = 0;
        await this.#play(this.session);
      } catch (err) {
        this.fail(err);
      }
      this.#closeTracks();
      this.session?.close();
      this.session = null;
      if (this.#stopped) break;
      await sleep(RETRY_MS[Math.min(attempt++, RETRY_MS.length - 1)]);
    }
  }

  /**
   * Play on a session someone else owns and shares (a call page: one session for every tile) until stop() or
   * the end of the session, which is not closed here.
   * @param {Session} session
   */
  async playOn(session) {
    this.#ownsSession = false;
    this.session = session;
    this.stats.sessions++;
    this.stats.draft = session.version;
    try {
      await this.#play(session);
    } catch (err) {
      this.fail(err);
    }
    this.#closeTracks();
  }

  /**
   * Play tracks someone else has read from a catalog (a stage participant the host's catalog lists: its tracks
   * carry its namespace), on a shared session, until stop() or the end of the session. The tracks come with
   * listTracks(), now and whenever the listing changes; a track whose subscription ends is dropped until the
   * next listing.
   * @param {Session} session
   */
  async playListed(session) {
    this.#ownsSession = false;
    this.#listed = true;
    this.session = session;
    this.stats.sessions++;
    this.stats.draft = session.version;
    this.stats.state = 'waiting for tracks';
    const ended = new Promise((resolve) => (this.#ended = resolve));
    await Promise.race([ended, session.closed]);
    this.#closeTracks();
    this.stats.state = 'stopped';
  }

  /** The tracks to play (catalog track objects), for a player started with playListed(). */
  listTracks(tracks) {
    this.catalog = { version: 'listed', tracks: [...tracks] };
    this.stats.catalogTracks = tracks.map((t) => t.name);
    const session = this.session;
    if (session && !this.#stopped) {
      this.#choosing = this.#choosing.then(() => this.#choose(session)).catch((err) => this.fail(err));
    }
  }

  stop() {
    this.#stopped = true;
    clearInterval(this.ticker);
    this.#closeTracks();
    if (this.#ownsSession) this.session?.close();
    this.#ended?.();
  }

  /**
   * A new SUBSCRIBER_PRIORITY for the video or audio subscription: REQUEST_UPDATE now (§9.10), and the value
   * for later subscriptions.
   * @param {'video' | 'audio'} kind
   */
  setPriority(kind, priority, force = false) {
    const key = `${kind}Priority`;
    if (this.options[key] === priority && !force) return;
    this.options[key] = priority;
    const sub = this[kind]?.sub;
    if (!sub || sub.ended) return;
    sub.update({ priority });
    this.stats[key] = priority;
    this.stats.priorityUpdates++;
  }

  fail(err) {
    const message = String(err?.message ?? err);
    this.stats.lastError = message;
    console.warn(`player: ${message}`);
  }

  /** A track's subscription ended (PUBLISH_DONE or its stream closed). */
  trackEnded(track, reason) {
    console.info(`${track.kind} track ended: ${reason}`);
    if (this.#listed) {
      // One participant's track: drop it (its tile stays until the host's catalog drops the participant).
      track.close();
      if (this[track.kind] === track) {
        this[track.kind] = null;
        this.stats[`${track.kind}Track`] = null;
      }
      return;
    }
    this.#ended?.();
  }

  /** The test hook: wait out a stall (see DEFAULTS.stallAfterFrames). */
  async stallPoint() {
    const o = this.options;
    if (!this.#stallUsed && o.stallAfterFrames !== null && this.stats.framesDecoded >= o.stallAfterFrames) {
      this.#stallUsed = true;
      this.#stallUntil = performance.now() + o.stallMs;
      console.info(`stalling the decode loops for ${o.stallMs} ms`);
    }
    const left = this.#stallUntil - performance.now();
    this.stats.stalled = left > 0;
    if (left > 0) await sleep(left);
  }

  /** One broadcast on one session, until the broadcast or the session ends. */
  async #play(session) {
    let attempt = 0;
    while (!this.#stopped && !session.closeInfo) {
      this.stats.state = 'waiting for the broadcast';
      const ended = new Promise((resolve) => (this.#ended = resolve));
      let catalogSub;
      try {
        catalogSub = await session.subscribe(this.namespace, CATALOG_TRACK, {
          priority: 0,
          onObject: (obj) => this.#catalogObject(obj, session),
          onDone: () => this.#ended?.(),
        });
      } catch (err) {
        if (!(err instanceof RequestError)) throw err;
        await Promise.race([sleep(RETRY_MS[Math.min(attempt++, RETRY_MS.length - 1)]), session.closed]);
        continue;
      }
      attempt = 0;
      await Promise.race([ended, session.closed]);
      catalogSub.cancel();
      this.#closeTracks();
      this.catalog = null;
      this.#catalogGroup = null;
      this.#notifyCatalog();
      if (!session.closeInfo && !this.#stopped) {
        this.stats.state = 'broadcast ended';
        await Promise.race([sleep(RETRY_MS[0]), session.closed]);
      }
    }
    this.stats.state = 'disconnected';
  }

  #catalogObject(obj, session) {
    if (obj.status !== moqt.ObjectStatus.NORMAL || obj.payload.length === 0) return;
    let parsed;
    try {
      parsed = JSON.parse(textDecoder.decode(obj.payload));
    } catch (err) {
      this.fail(new Error(`catalog is not JSON: ${err.message}`));
      return;
    }
    if (parsed.deltaUpdate) {
      // A delta of the group whose catalog we have (MSF: deltas follow object 0 in its group); else wait for the
      // next whole one.
      if (!this.catalog || obj.groupId !== this.#catalogGroup) return;
      this.catalog = applyDelta(this.catalog, parsed);
    } else {
      if (!Array.isArray(parsed.tracks)) {
        this.fail(new Error('catalog has no tracks'));
        return;
      }
      if (this.#catalogGroup !== null && obj.groupId < this.#catalogGroup) return; // overtaken by a newer one
      this.catalog = parsed;
      this.#catalogGroup = obj.groupId;
      this.stats.catalogVersions++;
    }
    this.stats.catalogTracks = this.catalog.tracks.map((t) => t.name);
    this.#notifyCatalog();
    this.#choosing = this.#choosing.then(() => this.#choose(session)).catch((err) => this.fail(err));
  }

  #notifyCatalog() {
    try {
      this.onCatalog?.(this.catalog);
    } catch (err) {
      this.fail(err);
    }
  }

  /**
   * Subscribe to the first LOC video and audio tracks of the catalog, in our namespace, that we can decode; drop
   * the ones no longer listed.
   */
  async #choose(session) {
    if (!this.catalog || session.closeInfo || this.#stopped) return;
    const tracks = this.catalog.tracks.filter(
      (t) => (t.packaging ?? 'loc') === 'loc' && inNamespace(t, this.namespace),
    );
    for (const kind of ['video', 'audio']) {
      const current = this[kind];
      if (current && !tracks.some((t) => t.name === current.track.name)) {
        current.close();
        this[kind] = null;
        this.stats[`${kind}Track`] = null;
      }
      if (this[kind]) continue;
      const candidates = tracks.filter((t) => roleOf(t) === kind);
      for (const track of candidates) {
        if (!(await this.#supported(kind, track))) continue;
        if (this.#stopped || session.closeInfo) return;
        const media = kind === 'video' ? new VideoTrack(this, track) : new AudioTrack(this, track);
        this[kind] = media;
        this.stats[`${kind}Track`] = track.name;
        try {
          await media.start(session, this.namespace);
        } catch (err) {
          this[kind] = null;
          media.close();
          this.fail(err);
          continue;
        }
        break;
      }
    }
    this.stats.state = this.video || this.audio ? 'playing' : 'no playable track';
  }

  async #supported(kind, track) {
    try {
      if (kind === 'video') {
        if (typeof VideoDecoder === 'undefined') return false;
        const { supported } = await VideoDecoder.isConfigSupported({ codec: track.codec ?? 'avc1.42e01e' });
        return supported;
      }
      if (typeof AudioDecoder === 'undefined') return false;
      const { supported } = await AudioDecoder.isConfigSupported({
        codec: track.codec ?? 'opus',
        sampleRate: track.samplerate ?? 48000,
        numberOfChannels: parseInt(track.channelConfig ?? '2', 10) || 2,
      });
      return supported;
    } catch {
      return false;
    }
  }

  #closeTracks() {
    this.video?.close();
    this.audio?.close();
    this.video = this.audio = null;
  }

  #tick() {
    const stats = this.stats;
    const now = performance.now();
    stats.fps = this.video ? this.video.renderMeter.rate(now) : 0;
    stats.audioState = this.#audioContext?.state ?? null;
    const offset = this.clock.offset;
    stats.playoutDelayMs = offset === null ? null : Math.round(offset + Date.now() - now);
    const jitter = this.clock.jitter;
    stats.jitterMs = jitter === null ? null : Math.round(jitter);
    const session = this.session;
    if (session && !this.#ownsSession) {
      // A shared session's bytes are everyone's: count this player's media payloads.
      const bytes = this.mediaBytes;
      if (this.#bytesAt) {
        const seconds = (now - this.#bytesAt.time) / 1000;
        const kbps = seconds > 0 ? ((bytes - this.#bytesAt.bytes) * 8) / seconds / 1000 : 0;
        stats.bitrateKbps = Math.round(stats.bitrateKbps * 0.6 + kbps * 0.4);
      }
      stats.bytesReceived = bytes;
      this.#bytesAt = { session: null, time: now, bytes };
    } else if (session) {
      stats.bytesReceived = session.bytesReceived;
      if (this.#bytesAt && this.#bytesAt.session === session) {
        const seconds = (now - this.#bytesAt.time) / 1000;
        const bits = (session.bytesReceived - this.#bytesAt.bytes) * 8;
        const kbps = seconds > 0 ? bits / seconds / 1000 : 0;
        stats.bitrateKbps = Math.round(stats.bitrateKbps * 0.6 + kbps * 0.4);
      }
      this.#bytesAt = { session, time: now, bytes: session.bytesReceived };
    }
    this.video?.countDrops();
    this.audio?.countDrops();
  }
}
