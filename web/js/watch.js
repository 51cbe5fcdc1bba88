// The watch page (/watch/NAME): plays one broadcast (see player.js), its stage, and lets this viewer step on stage.
// Its counters are window.moqStats, for scripts.
//
// - The page opens one session and keeps it (a new one after a failure). On it, the broadcast's Player reads the
//   catalog and plays the broadcast's own video and audio.
// - The stage (stage.js): the catalog may also list tracks in other namespaces: viewers the broadcaster brought
//   on stage (`moq publish --stage`). Each such namespace gets a tile, a Player on the same session playing the
//   tracks the catalog lists for it; a tile goes when the catalog stops listing it.
// - "Join the stage" publishes this viewer's camera and microphone (publisher.js, as on a call page) on the same
//   session under NAME/stage/<name>; the broadcaster decides whether the catalog lists it ("on stage, listed" or
//   "asking"). "Leave the stage" ends the tracks and withdraws the namespace.
//
// window.moqStats = the broadcast player's counters (player.js createStats: framesDecoded, audioFramesDecoded,
// latencyMs, groupsDropped, draft, fps, bitrateKbps, state, ...) and: onStage (we publish on stage), stageState
// ('off', 'joining', 'on stage', 'leaving'), stageListed (the catalog lists us), stageName, publisher (our
// publisher's counters, with what the session served: objectsSent, subscriptions, served, ...; null when never on
// stage), stage ({name: a tile player's counters: framesDecoded, audioFramesDecoded, latencyMs, audioLatencyMs,
// videoTrack, audioTrack, namespace, ...}), stageTiles (tiles added in all).
//
// Query options (all optional): relay, fingerprint, drafts (see config.js); jitter (ms), maxLatency (ms);
// trace=1 (keep every decoded frame's capture time); stallAfter=N&stall=MS (a test hook: after N decoded video
// frames, stall the decode loops for MS once, to make the player fall behind). For the stage: name (ours, else a
// random guest-xxxxxxxx), stage=1 (join at once), camera=0 / mic=0 (join with them off), width, height, fps,
// vbitrate, abitrate, gop, codec=vp8 (as on a call page).

import { loadConfig, queryNumber } from './config.js';
import { displayName, namespaceFromPath, randomHex } from './names.js';
import { DEFAULTS, Player, createStats, namespaceText, sharedAudioContext } from './player.js';
import { createPublisherStats, publisherOptions } from './publisher.js';
import { Session } from './session.js';
import { STAGE_PRIORITY, StageSpot, StageView, checkStageName, stageNamespace, stageParticipants } from './stage.js';

const RETRY_MS = [500, 1000, 2000, 4000];
/** How often the page redraws its counters (ms). */
const TICK_MS = 250;

const query = new URLSearchParams(location.search);
const namespace = namespaceFromPath(location.pathname);
const stats = Object.assign(createStats(query.get('trace') === '1'), {
  onStage: false,
  stageState: 'off',
  stageListed: false,
  stageName: null,
  stageError: null,
  publisher: null,
  stage: {},
  stageTiles: 0,
});
window.moqStats = stats;

const $ = (id) => document.getElementById(id);

let session = null;
/** @type {StageView | null} */
let view = null;
/** @type {StageSpot | null} */
let spot = null;



function fail(err) {
  stats.lastError = String(err?.message ?? err);
  console.warn(`watch: ${stats.lastError}`);
}

// -- the stage: tiles --------------------------------------------------------------------------------------------

/** A tile for a stage participant the catalog lists: a Player on our session, playing its listed tracks. */
function openTile(group) {
  const tile = document.createElement('div');
  tile.className = 'stage-tile';
  tile.dataset.participant = group.name;
  const canvas = document.createElement('canvas');
  canvas.width = 640;
  canvas.height = 480;
  const label = document.createElement('span');
  label.className = 'name';
  label.textContent = group.name;
  const latency = document.createElement('span');
  latency.className = 'latency';
  latency.textContent = '-';
  tile.append(canvas, label, latency);
  $('stage-tiles').append(tile);
  const pstats = Object.assign(createStats(), { name: group.name, namespace: displayName(group.namespace) });
  stats.stage[group.name] = pstats;
  stats.stageTiles++;
  const player = new Player({
    namespace: group.namespace,
    canvas,
    stats: pstats,
    audioContext: sharedAudioContext(),
    options: {
      jitterMs: queryNumber(query, 'jitter', DEFAULTS.jitterMs),
      maxLatencyMs: queryNumber(query, 'maxLatency', DEFAULTS.maxLatencyMs),
      audioPriority: STAGE_PRIORITY.audio,
      videoPriority: STAGE_PRIORITY.video,
    },
  });
  player.playListed(session).catch(fail);
  console.info(`stage: ${group.name} on stage`);
  return {
    tile,
    stats: pstats,
    list: (tracks) => player.listTracks(tracks),
    close: () => {
      player.stop();
      tile.remove();
      if (stats.stage[group.name] === pstats) delete stats.stage[group.name];
      console.info(`stage: ${group.name} left the stage`);
    },
  };
}

// -- the stage: this viewer --------------------------------------------------------------------------------------

function stageName() {
  return ($('stage-name').value || '').trim();
}

async function joinStage() {
  if (spot?.active) return;
  sharedAudioContext()?.resume();
  let name;
  try {
    name = checkStageName(stageName());
    const ours = namespaceText(stageNamespace(namespace, name));
    if (stageParticipants(view?.catalog ?? null, namespace).has(ours)) {
      throw new Error(`"${name}" is on stage already: pick another name`);
    }
  } catch (err) {
    stats.stageError = err.message;
    fail(err);
    return;
  }
  stats.stageError = null;
  spot = new StageSpot({
    broadcast: namespace,
    name,
    createStats: () => (stats.publisher = createPublisherStats()),
    devices: { camera: query.get('camera') !== '0', microphone: query.get('mic') !== '0' },
    options: publisherOptions(query),
  });
  stats.stageName = name;
  view?.setSelf(spot.namespace);
  const joining = spot;
  try {
    await joining.join(session);
    showPreview();
  } catch (err) {
    fail(err);
    if (spot === joining) leaveStage();
  }
}

function leaveStage() {
  if (!spot) return;
  spot.leave();
  spot = null;
  view?.setSelf(null);
  showPreview();
}

function showPreview() {
  const video = $('stage-preview');
  const input = spot?.publisher?.videoInput;
  video.srcObject = input ? new MediaStream([input]) : null;
}

// -- showing -----------------------------------------------------------------------------------------------------

function latencyText(s) {
  const parts = [];
  if (s.videoTrack && s.latencyMs !== null) parts.push(`video ${s.latencyMs} ms`);
  if (s.audioTrack && s.audioLatencyMs !== null) parts.push(`audio ${s.audioLatencyMs} ms`);
  return parts.join(' · ') || '-';
}

function show() {
  $('state').textContent = stats.state;
  $('draft').textContent = stats.draft ? `draft-${stats.draft}` : '';
  $('relay').textContent = stats.relay ? `relay ${stats.relay}` : '';
  $('latency').textContent = stats.latencyMs === null ? '-' : `${stats.latencyMs} ms`;
  $('fps').textContent = `${stats.fps} fps`;
  $('bitrate').textContent = `${(stats.bitrateKbps / 1000).toFixed(2)} Mbit/s`;
  $('dropped').textContent = `${stats.groupsDropped} (video ${stats.videoGroupsDropped}, audio ${stats.audioGroupsDropped})`;
  $('video-info').textContent = stats.videoTrack
    ? `${stats.videoCodec ?? '?'} · ${stats.width ?? '?'}x${stats.height ?? '?'}`
    : '-';
  $('audio-info').textContent = stats.audioTrack ? `${stats.audioCodec ?? '?'} · ${stats.audioState ?? ''}` : '-';
  $('frames').textContent =
    `${stats.framesDecoded} video, ${stats.framesRendered} shown; ${stats.audioFramesDecoded} audio`;
  $('error').textContent = stats.lastError ?? '-';
  $('unmute').hidden = !(stats.audioTrack && stats.audioState === 'suspended');
  // The stage.
  stats.stageState = spot?.state ?? 'off';
  stats.onStage = spot?.active ?? false;
  stats.stageListed = view?.selfListed ?? false;
  if (stats.publisher && spot?.publisher) {
    stats.publisher.fps = spot.publisher.fps;
    if (session) Object.assign(stats.publisher, session.publisherStats);
  }
  for (const tile of view?.tiles.values() ?? []) {
    const s = tile.handle.stats;
    tile.handle.tile.classList.toggle('camera-off', !s.videoTrack);
    tile.handle.tile.querySelector('.latency').textContent = latencyText(s);
  }
  const count = view?.tiles.size ?? 0;
  const everyone = count + (stats.stageListed ? 1 : 0);
  $('stage').classList.toggle('empty', count === 0 && !stats.onStage);
  $('stage-count').textContent = everyone ? `${everyone} on stage` : 'nobody on stage';
  $('stage-join').textContent = stats.onStage ? 'Leave the stage' : 'Join the stage';
  $('stage-join').classList.toggle('on', stats.onStage);
  $('stage-name').disabled = stats.onStage;
  $('stage-self').hidden = !stats.onStage;
  $('stage-self-name').textContent = stats.stageName ? `${stats.stageName} (you)` : '';
  let status = '';
  if (stats.stageError) status = stats.stageError;
  else if (stats.stageState === 'joining') status = 'opening your camera and microphone…';
  else if (stats.onStage && stats.stageListed) status = 'you are on stage: everyone watching sees you';
  else if (stats.onStage) status = 'asking: the broadcaster has not put you on stage (yet)';
  const deviceError = stats.onStage ? stats.publisher?.lastError : null;
  $('stage-status').textContent = deviceError ? `${status} (${deviceError})` : status;
}

// -- the session -------------------------------------------------------------------------------------------------

async function main() {
  if (!namespace) {
    stats.state = 'no broadcast named: /watch/NAME';
    show();
    return;
  }
  stats.broadcast = displayName(namespace);
  $('broadcast').textContent = stats.broadcast;
  document.title = `${stats.broadcast} · moq`;
  $('stage-name').value = query.get('name') || `guest-${randomHex(4)}`;
  const config = await loadConfig(query);
  stats.relay = config.url;
  view = new StageView({ broadcast: namespace, open: openTile });
  const stall = queryNumber(query, 'stallAfter', null);
  const player = new Player({
    namespace,
    canvas: $('video'),
    stats,
    audioContext: sharedAudioContext(),
    onCatalog: (catalog) => view.update(catalog),
    options: {
      jitterMs: queryNumber(query, 'jitter', DEFAULTS.jitterMs),
      maxLatencyMs: queryNumber(query, 'maxLatency', DEFAULTS.maxLatencyMs),
      stallAfterFrames: stall,
      stallMs: queryNumber(query, 'stall', 0),
      trace: stats.trace !== null,
    },
  });
  $('unmute').addEventListener('click', () => player.resumeAudio());
  $('stage-join').addEventListener('click', () => (spot?.active ? leaveStage() : joinStage()));
  addEventListener('pagehide', () => {
    spot?.leave();
    session?.close(0, 'left');
  });
  setInterval(show, TICK_MS);
  show();

  let attempt = 0;
  let autoJoin = query.get('stage') === '1';
  for (;;) {
    try {
      stats.state = 'connecting';
      session = await Session.connect(config.url, config);
      attempt = 0;
      if (spot?.active) spot.attach(session).catch(fail); // on stage before the session failed: again
      if (autoJoin) {
        autoJoin = false;
        joinStage();
      }
      await player.playOn(session);
      const info = session.closeInfo;
      if (info) stats.lastError = `session closed: ${info.reason || 'no reason'} (code ${info.code})`;
    } catch (err) {
      fail(err);
    }
    session?.close();
    view.clear();
    spot?.detach();
    stats.state = 'disconnected, retrying';
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS[Math.min(attempt++, RETRY_MS.length - 1)]));
  }
}

main().catch((err) => {
  fail(err);
  show();
});
