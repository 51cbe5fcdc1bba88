// The stage's logic that needs no browser: `namespace` strings in a catalog, grouping a catalog's tracks by
// participant, the tiles following catalogs (stage.js), and the player following catalog updates (new groups,
// deltas, stale groups) and playing only its own namespace's tracks, over a fake session (player.js).
// The browser end to end is tests/web/test_stage.py, in real Chromium.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Player, inNamespace, namespaceFromText, namespaceText, sameNamespace } from '../js/player.js';
import {
  MAX_STAGE_TILES,
  StageView,
  checkStageName,
  participantName,
  stageNamespace,
  stageParticipants,
} from '../js/stage.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const ns = (...fields) => fields.map((f) => enc.encode(f));
const SHOW = ns('live', 'show');
const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

function media(name, role, namespace = undefined, extra = {}) {
  const track = { name, packaging: 'loc', isLive: true, role, codec: role === 'video' ? 'avc1.42e01f' : 'opus' };
  if (namespace !== undefined) track.namespace = namespace;
  return { ...track, ...extra };
}

/** A host's catalog: its own video and audio, then each stage participant's. */
function hostCatalog(...names) {
  const tracks = [media('video', 'video'), media('audio', 'audio')];
  for (const name of names) {
    tracks.push(media('video', 'video', `live/show/stage/${name}`, { label: name }));
    tracks.push(media('audio', 'audio', `live/show/stage/${name}`, { label: name }));
  }
  return { version: 'draft-01', generatedAt: 1, tracks };
}

test('namespace strings: fields percent-encoded, "/" between them, read back; bad ones are no namespace', () => {
  const fields = [enc.encode('live'), enc.encode('late show/2'), new Uint8Array([0xff, 0x41])];
  assert.equal(namespaceText(fields), 'live/late%20show%2F2/%FFA');
  assert.deepEqual(namespaceFromText('live/late%20show%2F2/%FFA'), fields);
  assert.deepEqual(
    namespaceFromText('conference.example.com/conference123/alice'),
    ns('conference.example.com', 'conference123', 'alice'),
  );
  for (const bad of ['', 'a//b', '/a', 'a/', 'x'.repeat(20000), Array(33).fill('a').join('/'), null, 3]) {
    assert.equal(namespaceFromText(bad), null, String(bad).slice(0, 20));
  }
  assert.ok(sameNamespace(['live', 'show'], SHOW));
  assert.ok(!sameNamespace(SHOW, ns('live')));
  assert.ok(inNamespace(media('video', 'video'), SHOW), 'no namespace: the catalog\'s');
  assert.ok(inNamespace(media('video', 'video', 'live/show'), SHOW));
  assert.ok(!inNamespace(media('video', 'video', 'live/show/stage/bob'), SHOW));
  assert.ok(!inNamespace(media('video', 'video', 'a//b'), SHOW), 'a bad namespace is nobody\'s');
});

test('stage names and namespaces', () => {
  assert.deepEqual(stageNamespace(SHOW, 'bob'), ns('live', 'show', 'stage', 'bob'));
  assert.throws(() => checkStageName(''), /empty/);
  assert.throws(() => checkStageName('a/b'), /no "\/"/);
  assert.throws(() => checkStageName('é'.repeat(33)), /64 bytes/);
  assert.equal(checkStageName('é'.repeat(32)), 'é'.repeat(32));
  assert.equal(participantName(ns('live', 'show', 'stage', 'bob'), SHOW), 'bob');
  assert.equal(participantName(ns('elsewhere', 'carol'), SHOW), 'elsewhere/carol');
});

test('a catalog\'s tracks in other namespaces, grouped by participant in catalog order, bounded', () => {
  const groups = stageParticipants(hostCatalog('bob', 'alice'), SHOW);
  assert.deepEqual([...groups.keys()], ['live/show/stage/bob', 'live/show/stage/alice']);
  const bob = groups.get('live/show/stage/bob');
  assert.equal(bob.name, 'bob');
  assert.deepEqual(bob.namespace, ns('live', 'show', 'stage', 'bob'));
  assert.deepEqual(bob.tracks.map((t) => t.role), ['video', 'audio']);
  assert.equal(stageParticipants(hostCatalog(), SHOW).size, 0);
  assert.equal(stageParticipants(null, SHOW).size, 0);
  const many = hostCatalog(...Array.from({ length: MAX_STAGE_TILES + 5 }, (_, i) => `p${i}`));
  assert.equal(stageParticipants(many, SHOW).size, MAX_STAGE_TILES);
  assert.equal(stageParticipants(many, SHOW, { max: 2 }).size, 2);
});

/** A StageView whose tiles record what they were told. */
function view(options = {}) {
  const log = [];
  const opened = new Map();
  const stage = new StageView({
    broadcast: SHOW,
    open: (group) => {
      const tile = { name: group.name, lists: [], closed: false };
      opened.set(group.name, tile);
      log.push(`open ${group.name}`);
      return {
        list: (tracks) => tile.lists.push(tracks.map((t) => t.role)),
        close: () => {
          tile.closed = true;
          log.push(`close ${group.name}`);
        },
      };
    },
    ...options,
  });
  return { stage, log, opened };
}

test('tiles follow the catalogs: added, given new track lists, removed; the broadcast\'s end removes all', () => {
  const { stage, log, opened } = view();
  assert.deepEqual(stage.update(hostCatalog()), { added: [], removed: [], changed: [] });
  assert.deepEqual(stage.update(hostCatalog('bob')), { added: ['bob'], removed: [], changed: [] });
  assert.deepEqual(stage.update(hostCatalog('bob')), { added: [], removed: [], changed: [] }, 'the same again');
  const muted = hostCatalog('bob', 'alice');
  muted.tracks = muted.tracks.filter((t) => !(t.label === 'bob' && t.role === 'audio'));
  assert.deepEqual(stage.update(muted), { added: ['alice'], removed: [], changed: ['bob'] });
  assert.deepEqual(opened.get('bob').lists, [['video', 'audio'], ['video']]);
  assert.deepEqual(stage.update(hostCatalog('alice')), { added: [], removed: ['bob'], changed: [] });
  assert.ok(opened.get('bob').closed && !opened.get('alice').closed);
  stage.update(null);
  assert.ok(opened.get('alice').closed);
  assert.equal(stage.tiles.size, 0);
  assert.deepEqual(log, ['open bob', 'open alice', 'close bob', 'close alice']);
});

test('our own stage namespace gets no tile; that the catalog lists it says we are on stage', () => {
  const { stage } = view({ max: 2 });
  stage.update(hostCatalog('bob', 'me', 'alice'));
  assert.deepEqual([...stage.tiles.values()].map((t) => t.group.name), ['bob', 'me']);
  assert.equal(stage.selfListed, false);
  stage.setSelf(stageNamespace(SHOW, 'me'));
  assert.deepEqual([...stage.tiles.values()].map((t) => t.group.name), ['bob', 'alice'], 'still at most two');
  assert.equal(stage.selfListed, true);
  stage.update(hostCatalog('bob'));
  assert.equal(stage.selfListed, false);
  stage.setSelf(null);
  stage.clear();
  assert.equal(stage.tiles.size, 0);
});

/** A session stand-in: records SUBSCRIBEs and hands the test each one's callbacks. */
class FakeSession {
  version = 22;
  closeInfo = null;
  subscriptions = [];
  #close;

  constructor() {
    this.closed = new Promise((resolve) => (this.#close = resolve));
  }

  async subscribe(namespace, name, options) {
    const sub = {
      namespace: namespace.map((f) => (typeof f === 'string' ? f : dec.decode(f))).join('/'),
      name,
      options,
      cancelled: false,
      cancel() {
        this.cancelled = true;
      },
      update() {},
    };
    this.subscriptions.push(sub);
    return sub;
  }

  close() {
    this.closeInfo = { code: 0, reason: 'test' };
    this.#close(this.closeInfo);
  }

  find(namespace, name) {
    return this.subscriptions.filter((s) => s.namespace === namespace && s.name === name && !s.cancelled);
  }
}

function subscribed(session) {
  return session.subscriptions.map((s) => `${s.namespace}:${s.name}`).sort();
}

function catalogObject(groupId, catalog, objectId = 0) {
  return { groupId, objectId, status: 0, properties: [], payload: enc.encode(JSON.stringify(catalog)) };
}

/** Decoders that say yes, and a hidden page (node has none of these). */
function fakeBrowser() {
  const { VideoDecoder, AudioDecoder, document } = globalThis;
  const saved = { VideoDecoder, AudioDecoder, document };
  const yes = { isConfigSupported: async () => ({ supported: true }) };
  globalThis.VideoDecoder = yes;
  globalThis.AudioDecoder = yes;
  globalThis.document = { visibilityState: 'hidden' };
  return () => Object.assign(globalThis, saved);
}

test('the player follows catalog updates: new groups, deltas of the current group, never an older group', async () => {
  const restore = fakeBrowser();
  const seen = [];
  const session = new FakeSession();
  const onCatalog = (c) => seen.push(c ? c.tracks.map((t) => t.label ?? '-') : null);
  const player = new Player({ namespace: SHOW, onCatalog });
  const playing = player.playOn(session);
  try {
    await tick();
    const [catalogSub] = session.find('live/show', 'catalog');
    const feed = (obj) => catalogSub.options.onObject(obj);
    feed(catalogObject(10, hostCatalog('bob')));
    feed(catalogObject(9, hostCatalog('stale'))); // an older group, overtaken: ignored
    const al = media('video', 'video', 'live/show/stage/al', { label: 'al' });
    feed(catalogObject(10, { generatedAt: 2, deltaUpdate: [{ op: 'add', tracks: [al] }] }, 1));
    const remove = { generatedAt: 3, deltaUpdate: [{ op: 'remove', tracks: [{ name: 'video' }] }] };
    feed(catalogObject(8, remove, 1)); // a delta of another group than the catalog's: ignored
    feed(catalogObject(11, hostCatalog()));
    assert.deepEqual(seen, [['-', '-', 'bob', 'bob'], ['-', '-', 'bob', 'bob', 'al'], ['-', '-']]);
    assert.equal(player.stats.catalogVersions, 2);
    for (let i = 0; i < 20 && session.find('live/show', 'audio').length === 0; i++) await tick();
    // Only the broadcast's own tracks are played here (the stage's go to tiles of their own).
    assert.deepEqual(subscribed(session), ['live/show:audio', 'live/show:catalog', 'live/show:video']);
    session.close();
    await playing;
    assert.equal(seen.at(-1), null, 'the end of the session: no catalog, no tiles');
  } finally {
    player.stop();
    restore();
  }
});

test('a stage tile\'s player plays the tracks it is given, in their namespace; drops what goes', async () => {
  const restore = fakeBrowser();
  const session = new FakeSession();
  const bob = ns('live', 'show', 'stage', 'bob');
  const player = new Player({ namespace: bob, options: { videoPriority: 160 } });
  const playing = player.playListed(session);
  try {
    player.listTracks(hostCatalog('bob').tracks.filter((t) => t.label === 'bob'));
    for (let i = 0; i < 20 && session.find('live/show/stage/bob', 'audio').length === 0; i++) await tick();
    assert.deepEqual(subscribed(session), ['live/show/stage/bob:audio', 'live/show/stage/bob:video']);
    assert.equal(session.find('live/show/stage/bob', 'video')[0].options.priority, 160);
    assert.equal(player.stats.videoTrack, 'video');
    // Bob's camera goes off: the host lists his audio alone.
    player.listTracks(hostCatalog('bob').tracks.filter((t) => t.label === 'bob' && t.role === 'audio'));
    for (let i = 0; i < 20 && player.stats.videoTrack !== null; i++) await tick();
    assert.equal(player.stats.videoTrack, null);
    assert.equal(session.find('live/show/stage/bob', 'video').length, 0, 'the video subscription was cancelled');
    // His audio subscription ends (PUBLISH_DONE): dropped until the next listing subscribes again.
    const audio = session.find('live/show/stage/bob', 'audio')[0];
    audio.options.onDone({ statusCode: 2, reason: 'ended' });
    assert.equal(player.stats.audioTrack, null);
    player.listTracks(hostCatalog('bob').tracks.filter((t) => t.label === 'bob' && t.role === 'audio'));
    for (let i = 0; i < 20 && player.stats.audioTrack === null; i++) await tick();
    assert.equal(player.stats.audioTrack, 'audio');
    player.stop();
    await playing;
    assert.equal(player.stats.state, 'stopped');
  } finally {
    player.stop();
    restore();
  }
});
