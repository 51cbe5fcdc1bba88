// The watch page (/watch/NAME): plays one broadcast (see player.js) and shows its counters, which scripts
// read as window.moqStats.
//
// Query options (all optional): relay, fingerprint, drafts (see config.js); jitter (ms), maxLatency (ms);
// trace=1 (keep every decoded frame's capture time); stallAfter=N&stall=MS (a test hook: after N decoded video
// frames, stall the decode loops for MS once, to make the player fall behind).

import { loadConfig, queryNumber } from './config.js';
import { displayName, namespaceFromPath } from './names.js';
import { DEFAULTS, Player, createStats } from './player.js';

const query = new URLSearchParams(location.search);
const namespace = namespaceFromPath(location.pathname);
const stats = createStats(query.get('trace') === '1');
window.moqStats = stats;

const $ = (id) => document.getElementById(id);

function show(player) {
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
  $('unmute').hidden = !(player && stats.audioTrack && stats.audioState === 'suspended');
}

async function main() {
  if (!namespace) {
    stats.state = 'no broadcast named: /watch/NAME';
    show(null);
    return;
  }
  stats.broadcast = displayName(namespace);
  $('broadcast').textContent = stats.broadcast;
  document.title = `${stats.broadcast} · moq`;
  const config = await loadConfig(query);
  const stall = queryNumber(query, 'stallAfter', null);
  const player = new Player({
    namespace,
    canvas: $('video'),
    stats,
    options: {
      jitterMs: queryNumber(query, 'jitter', DEFAULTS.jitterMs),
      maxLatencyMs: queryNumber(query, 'maxLatency', DEFAULTS.maxLatencyMs),
      stallAfterFrames: stall,
      stallMs: queryNumber(query, 'stall', 0),
      trace: stats.trace !== null,
    },
  });
  $('unmute').addEventListener('click', () => player.resumeAudio());
  setInterval(() => show(player), 250);
  show(player);
  await player.run(config);
}

main().catch((err) => {
  stats.lastError = String(err?.message ?? err);
  show(null);
});
