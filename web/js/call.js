// The call page (/call/ROOM): everyone publishes their camera and microphone, and plays everyone else's,
// through the relay, with the same tracks and players as a broadcast.
//
// - The room is a namespace prefix (ROOM's fields, as in /watch/NAME). This page is participant `id` (?name=,
//   else a random one) and publishes `ROOM/id`: the Publisher's tracks (catalog, video, audio; publisher.js)
//   are added to the session, which answers the relay's SUBSCRIBEs for them (session.js, tracks.js), and
//   PUBLISH_NAMESPACE makes them known.
// - It finds the others with SUBSCRIBE_NAMESPACE on ROOM: NAMESPACE ROOM/other adds a tile that plays it (a
//   Player on the page's one session), NAMESPACE_DONE (the participant left, or its session ended) removes the
//   tile. Its own namespace, and namespaces deeper than ROOM/x, are no participants.
// - Priorities (SUBSCRIBER_PRIORITY, lower first): catalogs 0, call audio 32, the active speaker's video 96, a
//   stage broadcast 64 (audio) and 128 (video), everyone else's video 160. The active speaker comes from the
//   AUDIO_LEVEL of each participant's audio objects (speaker.js); when it changes, REQUEST_UPDATE moves the
//   two videos' priorities.
// - ?watch=NAME adds a stage: the broadcast NAME (e.g. live/demo) played above the tiles, on the same session.
// - Mute and camera off stop the device's track (publisher.js); the others' tiles show it from the catalog.
//
// window.moqStats = {state, draft, relay, room, self, sessions, participants: {id: player stats (framesDecoded,
// audioFramesDecoded, latencyMs, audioLatencyMs, audioLevel, videoPriority, ...)}, activeSpeaker, speakerChanges,
// priorityUpdates, publisher: {...publisher.js counters, + objectsSent, bytesSent, subscriptions, served},
// stage: player stats or null, lastError}.
//
// Other query options: relay, fingerprint, drafts (config.js); width, height, fps, vbitrate, abitrate, gop
// (frames per group), codec=vp8 (publisher.js); jitter, maxLatency (player.js); camera=0, mic=0 (start with
// them off).

import { loadConfig, queryNumber } from './config.js';
import { displayName, namespaceFromPath, randomHex } from './names.js';
import { DEFAULTS, Player, createStats, sharedAudioContext } from './player.js';
import { Publisher, createPublisherStats, publisherOptions } from './publisher.js';
import { Session } from './session.js';
import { SpeakerDetector } from './speaker.js';

/** SUBSCRIBER_PRIORITY values (see the top of this file). */
export const PRIORITY = Object.freeze({ audio: 32, activeVideo: 96, video: 160, stageAudio: 64, stageVideo: 128 });
/** How often the page redraws its counters and re-elects the active speaker (ms). */
const TICK_MS = 250;
/** An audio level older than this (ms) counts as silence (the participant muted, or its audio stalled). */
const LEVEL_FRESH_MS = 600;
const RETRY_MS = [500, 1000, 2000, 5000];

const query = new URLSearchParams(location.search);
const room = namespaceFromPath(location.pathname, '/call/');
const selfId = query.get('name') || `guest-${randomHex(4)}`;
const $ = (id) => document.getElementById(id);

const stats = {
  state: 'starting',
  draft: null,
  relay: null,
  room: room ? displayName(room) : null,
  self: selfId,
  sessions: 0,
  participants: {},
  activeSpeaker: null,
  speakerChanges: 0,
  priorityUpdates: 0,
  publisher: createPublisherStats(),
  stage: null,
  lastError: null,
};
window.moqStats = stats;

/** @type {Map<string, {player: Player, tile: HTMLElement, stats: object}>} */
const participants = new Map();
const speaker = new SpeakerDetector();
let retiredUpdates = 0; // priority updates of participants that left
let publisher = null;
let session = null;
let stage = null;



function playerOptions(audioPriority, videoPriority) {
  return {
    jitterMs: queryNumber(query, 'jitter', DEFAULTS.jitterMs),
    // A call's delay follows the path and the machine (PlayoutClock), unless the page is given one (?jitter=).
    adaptiveJitter: !query.has('jitter'),
    maxLatencyMs: queryNumber(query, 'maxLatency', DEFAULTS.maxLatencyMs),
    audioPriority,
    videoPriority,
  };
}

function fail(err) {
  stats.lastError = String(err?.message ?? err);
  console.warn(`call: ${stats.lastError}`);
}

// -- participants ------------------------------------------------------------------------------------------------

function joined(namespace) {
  if (namespace.length !== room.length + 1) return; // not ROOM/participant
  const id = displayName([namespace[namespace.length - 1]]);
  if (id === selfId || participants.has(id)) return; // never ourselves
  const tile = document.createElement('div');
  tile.className = 'tile camera-off';
  tile.dataset.participant = id;
  const canvas = document.createElement('canvas');
  canvas.width = 640;
  canvas.height = 480;
  const off = document.createElement('span');
  off.className = 'off';
  off.textContent = 'camera off';
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = id;
  const latency = document.createElement('span');
  latency.className = 'latency';
  latency.textContent = '-';
  tile.append(canvas, off, name, latency);
  $('tiles').append(tile);
  const pstats = Object.assign(createStats(), { name: id, speaking: false });
  stats.participants[id] = pstats;
  const player = new Player({
    namespace,
    canvas,
    stats: pstats,
    audioContext: sharedAudioContext(),
    options: playerOptions(PRIORITY.audio, PRIORITY.video),
  });
  participants.set(id, { player, tile, stats: pstats });
  player.playOn(session).catch(fail);
  console.info(`${id} joined`);
}

function left(namespace) {
  if (namespace.length !== room.length + 1) return;
  const id = displayName([namespace[namespace.length - 1]]);
  const p = participants.get(id);
  if (!p) return;
  p.player.stop();
  p.tile.remove();
  retiredUpdates += p.stats.priorityUpdates;
  participants.delete(id);
  delete stats.participants[id];
  console.info(`${id} left`);
}

function leaveAll() {
  for (const p of participants.values()) {
    p.player.stop();
    p.tile.remove();
    retiredUpdates += p.stats.priorityUpdates;
  }
  participants.clear();
  for (const id of Object.keys(stats.participants)) delete stats.participants[id];
  stage?.player.stop();
  stage = null;
}

/** Re-elect the active speaker; when it changes, move the two videos' priorities (REQUEST_UPDATE). */
function electSpeaker() {
  const now = Date.now();
  const levels = new Map();
  for (const [id, p] of participants) {
    const fresh = p.stats.audioLevelAt !== null && now - p.stats.audioLevelAt < LEVEL_FRESH_MS;
    // The loudest level since the last election, not only the newest: a beep or a short word between two
    // elections would otherwise be missed.
    const level = p.stats.audioLevelPeak ?? p.stats.audioLevel;
    p.stats.audioLevelPeak = null;
    levels.set(id, fresh && p.stats.audioTrack ? level : null);
    p.stats.speaking = fresh && p.stats.voice;
  }
  const previous = stats.activeSpeaker;
  const current = speaker.update(levels);
  if (current !== previous) {
    stats.activeSpeaker = current;
    stats.speakerChanges++;
    console.info(`active speaker: ${current ?? 'none'}`);
  }
  for (const [id, p] of participants) {
    p.player.setPriority('video', id === current ? PRIORITY.activeVideo : PRIORITY.video);
    p.stats.active = id === current;
  }
}

// -- the stage ---------------------------------------------------------------------------------------------------

function startStage(namespace) {
  const pstats = Object.assign(createStats(), { name: displayName(namespace) });
  stats.stage = pstats;
  const player = new Player({
    namespace,
    canvas: $('stage-video'),
    stats: pstats,
    audioContext: sharedAudioContext(),
    options: playerOptions(PRIORITY.stageAudio, PRIORITY.stageVideo),
  });
  stage = { player, stats: pstats };
  $('stage').hidden = false;
  $('stage-name').textContent = pstats.name;
  player.playOn(session).catch(fail);
}

// -- showing -----------------------------------------------------------------------------------------------------

function latencyText(s) {
  const parts = [];
  if (s.videoTrack && s.latencyMs !== null) parts.push(`video ${s.latencyMs} ms`);
  if (s.audioTrack && s.audioLatencyMs !== null) parts.push(`audio ${s.audioLatencyMs} ms`);
  return parts.join(' · ') || '-';
}

function show() {
  const pub = stats.publisher;
  if (publisher) pub.fps = publisher.fps;
  if (session) Object.assign(pub, session.publisherStats);
  let updates = retiredUpdates;
  for (const p of participants.values()) {
    updates += p.stats.priorityUpdates;
    p.tile.classList.toggle('camera-off', !p.stats.videoTrack);
    p.tile.classList.toggle('muted', !p.stats.audioTrack);
    p.tile.classList.toggle('speaking', p.stats.active === true);
    p.tile.querySelector('.latency').textContent = latencyText(p.stats);
  }
  stats.priorityUpdates = updates;
  $('state').textContent = stats.state;
  $('draft').textContent = stats.draft ? `draft-${stats.draft}` : '';
  $('relay').textContent = stats.relay ? `relay ${stats.relay}` : '';
  $('self-name').textContent = `${selfId} (you)`;
  $('self').classList.toggle('camera-off', !pub.cameraOn);
  $('self').classList.toggle('muted', !pub.micOn);
  $('self').classList.toggle('speaking', pub.micOn && pub.speaking);
  $('self-level').textContent = pub.micOn ? `${-pub.audioLevel} dBov` : 'muted';
  $('mute').textContent = pub.micOn ? 'Mute' : 'Unmute';
  $('mute').classList.toggle('on', !pub.micOn);
  $('camera').textContent = pub.cameraOn ? 'Camera off' : 'Camera on';
  $('camera').classList.toggle('on', !pub.cameraOn);
  $('people').textContent = `${participants.size + 1} in the call`;
  $('sending').textContent =
    `${pub.fps} fps, ${pub.videoFramesEncoded} video frames (${pub.keyframes} keyframes), ` +
    `${pub.audioFramesEncoded} audio frames; ${pub.objectsSent ?? 0} objects sent`;
  const size = `${pub.width ?? '?'}x${pub.height ?? '?'}`;
  $('video-info').textContent = pub.cameraOn ? `${pub.videoCodec ?? '?'} · ${size}` : 'off';
  $('audio-info').textContent = pub.micOn ? `opus · level ${-pub.audioLevel} dBov` : 'muted';
  $('served').textContent = `${pub.served ?? 0} subscriptions (${pub.subscriptions ?? 0} in all)`;
  $('speaker').textContent = stats.activeSpeaker ?? '-';
  $('error').textContent = stats.lastError ?? pub.lastError ?? '-';
  if (stage) $('stage-latency').textContent = latencyText(stage.stats);
  const audio = participants.size > 0 ? sharedAudioContext() : null;
  $('sound').hidden = !(audio && audio.state === 'suspended');
}

function showPreview() {
  const video = $('preview');
  const input = publisher?.videoInput;
  video.srcObject = input ? new MediaStream([input]) : null;
}

// -- the session -------------------------------------------------------------------------------------------------

async function main() {
  if (!room) {
    stats.state = 'no room named: /call/ROOM';
    show();
    return;
  }
  $('room').textContent = stats.room;
  document.title = `${stats.room} · call · moq`;
  const config = await loadConfig(query);
  stats.relay = config.url;
  publisher = new Publisher({
    namespace: [...room, selfId],
    label: selfId,
    stats: stats.publisher,
    options: publisherOptions(query),
  });
  const capturing = publisher
    .start({ camera: query.get('camera') !== '0', microphone: query.get('mic') !== '0' })
    .then(showPreview);
  $('mute').addEventListener('click', () => {
    sharedAudioContext()?.resume();
    publisher.setMicrophone(!stats.publisher.micOn).catch(fail);
  });
  $('camera').addEventListener('click', () => {
    sharedAudioContext()?.resume();
    publisher.setCamera(!stats.publisher.cameraOn).then(showPreview, fail);
  });
  $('sound').addEventListener('click', () => sharedAudioContext()?.resume());
  addEventListener('pagehide', () => {
    session?.close(0, 'left the call');
    publisher.stop();
  });
  setInterval(() => {
    electSpeaker();
    show();
  }, TICK_MS);
  show();

  const stageName = query.get('watch');
  let attempt = 0;
  for (;;) {
    try {
      stats.state = 'connecting';
      session = await Session.connect(config.url, config);
      stats.sessions++;
      stats.draft = session.version;
      for (const track of publisher.tracks) session.addTrack(track);
      // Find the others first (their tiles need not wait for our camera), then publish ourselves.
      await session.subscribeNamespace(room, { onNamespace: joined, onNamespaceDone: left });
      if (stageName) startStage(namespaceFromPath(`/watch/${stageName}`));
      stats.state = 'joining';
      await capturing;
      await session.publishNamespace([...room, selfId]);
      stats.state = 'in the call';
      attempt = 0;
      const { code, reason } = await session.closed;
      stats.lastError = `session closed: ${reason || 'no reason'} (code ${code})`;
    } catch (err) {
      fail(err);
      session?.close();
    }
    leaveAll();
    stats.state = 'disconnected, retrying';
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS[Math.min(attempt++, RETRY_MS.length - 1)]));
  }
}

main().catch((err) => {
  fail(err);
  show();
});
