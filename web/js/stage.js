// The stage of a broadcast, on the watch page: viewers the broadcaster brought on, and this viewer stepping up.
//
// - Joining (`StageSpot`): the viewer publishes its camera and microphone (publisher.js, as a call page does) on
//   the page's one session, under the broadcast's namespace + ["stage", name] (PUBLISH_NAMESPACE). That asks; the
//   broadcaster decides who appears (`moq publish --stage`: cli/media_stage.py). Leaving ends the tracks
//   (PUBLISH_DONE to their subscribers) and withdraws the namespace (PUBLISH_NAMESPACE_DONE).
// - Who appears is what the broadcast's own MSF catalog lists: track entries whose `namespace` is another one than
//   the broadcast's. `stageParticipants` groups them by namespace, and `StageView` keeps one tile per group (a
//   Player on the same session that plays the listed tracks: `playListed`), adding and removing tiles as catalogs
//   come. This page's own namespace gets no tile (its preview is local); that the catalog lists it says the
//   broadcaster took us on (`StageView.selfListed`).

import { displayName } from './names.js';
import { inNamespace, namespaceFromText, namespaceText, sameNamespace } from './player.js';
import { Publisher } from './publisher.js';

/** The namespace field under the broadcast's where stage participants publish: NAME/stage/<name>. */
export const STAGE_FIELD = 'stage';
/** Tiles a page shows at most (each is a video and an audio decoder); groups past it are left out. */
export const MAX_STAGE_TILES = 16;
/** Bytes of UTF-8 a stage name may have (the host refuses longer ones: cli/media_stage.py). */
export const MAX_STAGE_NAME_BYTES = 64;
/** SUBSCRIBER_PRIORITY of stage tiles (lower first): the broadcast's own are audio 64, video 128. */
export const STAGE_PRIORITY = Object.freeze({ audio: 64, video: 160 });

const encoder = new TextEncoder();

/** `name` if it can be a stage name (one namespace field: non-empty, no '/', short); else an Error says why. */
export function checkStageName(name) {
  if (typeof name !== 'string' || name.length === 0) throw new Error('a stage name must not be empty');
  if (name.includes('/')) throw new Error(`stage name "${name}": no "/" (a name is one namespace field)`);
  if (encoder.encode(name).length > MAX_STAGE_NAME_BYTES) {
    throw new Error(`stage name "${name.slice(0, 20)}…": over ${MAX_STAGE_NAME_BYTES} bytes`);
  }
  return name;
}

/** The namespace a viewer called `name` publishes under when on the stage of `broadcast`. */
export function stageNamespace(broadcast, name) {
  return [...broadcast, encoder.encode(STAGE_FIELD), encoder.encode(checkStageName(name))];
}

/** A participant's name for people: the last field of NAME/stage/x, else its whole namespace. */
export function participantName(namespace, broadcast) {
  const under = stageNamespace(broadcast, 'x').slice(0, -1);
  if (namespace.length === under.length + 1 && sameNamespace(namespace.slice(0, -1), under)) {
    return displayName(namespace.slice(-1));
  }
  return displayName(namespace);
}

/**
 * The catalog's tracks that live in other namespaces than `broadcast`'s, grouped by namespace in catalog order:
 * Map(namespace text -> {key, namespace, name, tracks}). Tracks whose `namespace` is no namespace are skipped;
 * at most `max` groups.
 */
export function stageParticipants(catalog, broadcast, { max = MAX_STAGE_TILES } = {}) {
  const groups = new Map();
  for (const track of catalog?.tracks ?? []) {
    if (inNamespace(track, broadcast)) continue;
    const namespace = namespaceFromText(track.namespace);
    if (namespace === null) continue;
    const key = namespaceText(namespace);
    let group = groups.get(key);
    if (!group) {
      if (groups.size >= max) continue;
      group = { key, namespace, name: participantName(namespace, broadcast), tracks: [] };
      groups.set(key, group);
    }
    group.tracks.push(track);
  }
  return groups;
}

/**
 * One tile per stage participant the catalog lists (see the top of this file). `open(group)` makes a tile and
 * returns its handle, which has `list(tracks)` (the participant's tracks changed) and `close()`; `update` is
 * called with every catalog (null: the broadcast ended, no tiles).
 */
export class StageView {
  /** key -> {group, handle} */
  tiles = new Map();
  /** Whether the catalog lists `self` (the broadcaster took us on stage). */
  selfListed = false;

  /**
   * @param {{broadcast: Uint8Array[], open: (group: object) => {list: Function, close: Function},
   *   self?: Uint8Array[] | null, max?: number}} init  self: our own stage namespace, never given a tile
   */
  constructor({ broadcast, open, self = null, max = MAX_STAGE_TILES }) {
    this.broadcast = broadcast;
    this.open = open;
    this.self = self;
    this.max = max;
    this.catalog = null;
  }

  /** Our own stage namespace (null when we are not on stage); the tiles follow at the next update. */
  setSelf(namespace) {
    this.self = namespace;
    this.update(this.catalog);
  }

  /** Follow a catalog: tiles for new participants, new track lists, no tiles for the ones it no longer lists. */
  update(catalog) {
    this.catalog = catalog;
    // One more than the bound, so that leaving ourselves out still leaves `max` others.
    const groups = stageParticipants(catalog, this.broadcast, { max: this.max + 1 });
    const selfKey = this.self ? namespaceText(this.self) : null;
    this.selfListed = selfKey !== null && groups.has(selfKey);
    if (selfKey !== null) groups.delete(selfKey);
    while (groups.size > this.max) groups.delete([...groups.keys()].at(-1));
    const changes = { added: [], removed: [], changed: [] };
    for (const [key, tile] of this.tiles) {
      if (groups.has(key)) continue;
      this.tiles.delete(key);
      tile.handle.close();
      changes.removed.push(tile.group.name);
    }
    for (const [key, group] of groups) {
      const tile = this.tiles.get(key);
      if (!tile) {
        const handle = this.open(group);
        handle.list(group.tracks);
        this.tiles.set(key, { group, handle });
        changes.added.push(group.name);
      } else if (JSON.stringify(tile.group.tracks) !== JSON.stringify(group.tracks)) {
        tile.group = group;
        tile.handle.list(group.tracks);
        changes.changed.push(group.name);
      }
    }
    return changes;
  }

  /** Remove every tile (the session ended; the next one starts afresh). */
  clear() {
    for (const tile of this.tiles.values()) tile.handle.close();
    this.tiles.clear();
    this.selfListed = false;
    this.catalog = null;
  }
}

/**
 * This viewer on stage: a Publisher (camera, microphone, catalog) whose tracks are served on the page's session
 * under the broadcast's namespace + ["stage", name]. join() and leave() may be called in any order; a new session
 * (after a reconnect) gets the tracks and the namespace again with attach().
 */
export class StageSpot {
  /** @type {Publisher | null} */
  publisher = null;
  /** 'off', 'joining', 'on stage', 'leaving' */
  state = 'off';
  #session = null;
  #announcement = null;
  #generation = 0;

  /**
   * @param {{broadcast: Uint8Array[], name: string, options?: object, createStats: () => object,
   *   devices?: {camera?: boolean, microphone?: boolean}}} init
   */
  constructor({ broadcast, name, options = {}, createStats, devices = {} }) {
    this.namespace = stageNamespace(broadcast, name);
    this.name = name;
    this.options = options;
    this.createStats = createStats;
    this.devices = devices;
  }

  get active() {
    return this.state === 'joining' || this.state === 'on stage';
  }

  /** Open the camera and the microphone, and publish them on `session`. */
  async join(session) {
    if (this.active) return;
    const generation = ++this.#generation;
    this.state = 'joining';
    const publisher = new Publisher({
      namespace: this.namespace,
      label: this.name,
      stats: this.createStats(),
      options: this.options,
    });
    this.publisher = publisher;
    await publisher.start({ camera: this.devices.camera !== false, microphone: this.devices.microphone !== false });
    if (generation !== this.#generation) return; // left while the devices opened
    await this.attach(session);
    if (generation === this.#generation) this.state = 'on stage';
  }

  /** Serve our tracks on `session` and announce the namespace there (a new session after a reconnect). */
  async attach(session) {
    const publisher = this.publisher;
    if (!publisher || !this.active || !session) return;
    this.#session = session;
    for (const track of publisher.tracks) session.addTrack(track);
    const announcement = await session.publishNamespace(this.namespace);
    if (this.publisher !== publisher || this.#session !== session) {
      announcement.cancel(); // left (or moved on) while PUBLISH_NAMESPACE was on its way
      return;
    }
    this.#announcement = announcement;
  }

  /** Stop publishing: end the tracks (their subscribers get PUBLISH_DONE), withdraw the namespace. */
  leave() {
    if (!this.publisher) return;
    this.#generation++;
    this.state = 'leaving';
    const publisher = this.publisher;
    this.publisher = null;
    publisher.stop();
    for (const track of publisher.tracks) this.#session?.removeTrack(track);
    this.#announcement?.cancel();
    this.#announcement = null;
    this.#session = null;
    this.state = 'off';
  }

  /** The session ended: what was announced there is gone with it (the publisher goes on for the next one). */
  detach() {
    this.#announcement = null;
    this.#session = null;
  }
}
