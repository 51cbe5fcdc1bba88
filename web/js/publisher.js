// The publisher: camera and microphone -> WebCodecs encoders -> LOC objects in tracks, with an MSF catalog.
//
// What it emits (DIGEST §18; the same shapes as moq/media/groups.py, loc.py and catalog.py):
// - track `video`: H.264 ("avc1", Constrained Baseline, avcC description) where the browser can encode it,
//   else VP8. One group per keyframe interval: a keyframe is forced every `gopFrames` frames (and a keyframe
//   the encoder makes by itself starts a group too); object 0 of each group is its keyframe, objects 1, 2, ...
//   the frames that follow, in decode order. Every object carries TIMESTAMP (0x10: the capture wall clock in
//   µs since the Unix epoch, no TIMESCALE) and VIDEO_FRAME_MARKING (0x09: RFC 9626, S and E set, I on
//   keyframes); keyframes also carry VIDEO_CONFIG (0x0D: the avcC, WebCodecs' decoderConfig.description).
// - track `audio`: Opus, 20 ms frames, `audioFramesPerGroup` (5) to a group, objects 0-4 (LOC-04's "one audio
//   track" has one, as the Python publisher does: see PUBLISHER_DEFAULTS for why not here), each
//   with TIMESTAMP and AUDIO_LEVEL (0x0C: RFC 6464, the V flag and the level in -dBov of the input it encodes).
// - track `catalog`: object 0 of each group is the whole MSF catalog (JSON, `buildCatalog`); a new group for each
//   change (camera or microphone off/on, a new size or codec). Group ids start at the wall clock in ms and go up
//   by one (MSF group numbering), so a page that reloads continues above its previous ids.
// - Publisher priorities: catalog 0, audio 64, video 128 (lower is more urgent), as tests/web/broadcast.py.
//
// Capture times: a VideoFrame's and an AudioData's timestamps are µs on a capture clock of their own (not the
// epoch). Each source maps them to the wall clock with one offset, the smallest (now - timestamp) seen over its
// first CLOCK_SETTLE_MS (the read with the least delay; the first reads of a new source come late), and nothing
// is encoded until it is settled: a later correction would be a jump in TIMESTAMP, which a player would take
// for a change in transit time (its playout clock follows the best transit it has seen).
//
// Camera off and mute stop the device's track (its light goes off), close the encoder and publish a catalog
// without the track; the LocalTrack itself stays, idle, so subscriptions to it are not ended (a subscriber sees
// the catalog change and unsubscribes). On again: the device is opened again, a new encoder starts with a
// keyframe, and the catalog lists the track again.

import { queryNumber } from './config.js';
import { LocalTrack } from './tracks.js';

/** LOC property types (draft-ietf-moq-loc-04 §6). */
const LOC = Object.freeze({ VIDEO_FRAME_MARKING: 0x09, AUDIO_LEVEL: 0x0c, VIDEO_CONFIG: 0x0d, TIMESTAMP: 0x10 });
/** RFC 9626 frame marking, non-scalable form: S (start) | E (end) | I (independent). */
const MARK_KEY = 0x80 | 0x40 | 0x20;
const MARK_DELTA = 0x80 | 0x40;

export const MSF_VERSION = 'draft-01';
export const CATALOG_PRIORITY = 0;
export const AUDIO_PRIORITY = 64;
export const VIDEO_PRIORITY = 128;

/** Tunables; a page may override them from its query. */
export const PUBLISHER_DEFAULTS = Object.freeze({
  width: 640,
  height: 360,
  fps: 30,
  videoBitrate: 600_000,
  /** Frames per group (a keyframe is forced at each): one second at `fps` when null. */
  gopFrames: null,
  audioBitrate: 32_000,
  /**
   * Audio frames (20 ms each) per group, each group a stream. LOC-04's audio example has one, but a stream per 20 ms
   * frame costs every browser on the way dearly: a three-page call on 2 cores fell behind by a second and played
   * half its audio at one frame a group, and kept up (~100 ms mouth to ear, 1% late) at five (bench/, the call
   * part). Five bound what a relay drops with a late group, or a joiner starts behind by, to 100 ms.
   */
  audioFramesPerGroup: 5,
  /** 'avc1' (H.264, VP8 where it cannot be encoded) or 'vp8'. */
  videoCodec: 'avc1',
  /** Below this level (-dBov, 0 loudest .. 127 silence) the V (voice) flag of AUDIO_LEVEL is set. */
  voiceLevel: 50,
});

/** Frames waiting in an encoder beyond which new ones are dropped (real time: never queue up). */
const MAX_ENCODE_QUEUE = 3;
/** How long a source's wall-clock offset is measured before anything is encoded (ms). */
const CLOCK_SETTLE_MS = 300;
/** Reads a source's wall-clock offset is measured on, at least. */
const CLOCK_SETTLE_SAMPLES = 5;
/** How long start() waits for the first camera and microphone frames before publishing what it has (ms). */
const FIRST_FRAME_WAIT_MS = 5000;

/**
 * The H.264 codec string for a size: Constrained Baseline (42e0) at the smallest level of the usual ones that
 * holds it (3.1 up to 1280x720, 4.0 up to 1920x1080, else 5.1).
 */
export function avcCodecFor(width, height) {
  const pixels = width * height;
  const level = pixels <= 921_600 ? '1f' : pixels <= 2_097_152 ? '28' : '33';
  return `avc1.42e0${level}`;
}

/**
 * An MSF catalog (draft-ietf-moq-msf-01) with the same JSON shape as moq.media.catalog's make_catalog: field
 * names and order of its Track struct, `version` "draft-01", `generatedAt` in ms. `video` / `audio` null = that
 * track is off.
 * @param {{video?: {codec: string, width: number, height: number, framerate: number, bitrate: number,
 *   gopMs?: number} | null, audio?: {codec?: string, samplerate?: number, channels?: number, bitrate: number} | null,
 *   label?: string | null, generatedAt?: number}} description
 */
export function buildCatalog({ video = null, audio = null, label = null, generatedAt = Date.now() } = {}) {
  const tracks = [];
  if (video) {
    const track = { name: 'video', packaging: 'loc', isLive: true, role: 'video' };
    if (label) track.label = label;
    Object.assign(track, { renderGroup: 1, codec: video.codec, framerate: video.framerate, bitrate: video.bitrate });
    if (video.gopMs) track.maxGopDuration = Math.round(video.gopMs);
    Object.assign(track, { width: video.width, height: video.height });
    tracks.push(track);
  }
  if (audio) {
    const track = { name: 'audio', packaging: 'loc', isLive: true, role: 'audio' };
    if (label) track.label = label;
    Object.assign(track, {
      renderGroup: 1,
      codec: audio.codec ?? 'opus',
      bitrate: audio.bitrate,
      samplerate: audio.samplerate ?? 48000,
      channelConfig: String(audio.channels ?? 1),
    });
    tracks.push(track);
  }
  return { version: MSF_VERSION, generatedAt, tracks };
}

/**
 * RFC 6464 level of some samples: -dBov, 0 (full scale) .. 127 (silence), from their RMS (a full-scale square
 * wave is 0 dBov).
 * @param {Float32Array} samples
 */
export function audioLevel(samples) {
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  const rms = Math.sqrt(sum / Math.max(samples.length, 1));
  if (rms <= 0) return 127;
  return Math.max(0, Math.min(127, Math.round(-20 * Math.log10(rms))));
}

/**
 * The LOC properties of a video object (ascending types, as moq/media/loc.py writes them): VIDEO_FRAME_MARKING,
 * VIDEO_CONFIG (keyframes, when there is a description), TIMESTAMP.
 * @param {{keyframe: boolean, timestampUs: number, description?: Uint8Array | null}} frame
 */
export function videoProperties({ keyframe, timestampUs, description = null }) {
  const properties = [[LOC.VIDEO_FRAME_MARKING, new Uint8Array([keyframe ? MARK_KEY : MARK_DELTA])]];
  if (keyframe && description) properties.push([LOC.VIDEO_CONFIG, description]);
  properties.push([LOC.TIMESTAMP, timestampUs]);
  return properties;
}

/** A publisher's options from a page's query (?width=&height=&fps=&vbitrate=&abitrate=&gop=&codec=). */
export function publisherOptions(query) {
  return {
    width: queryNumber(query, 'width', PUBLISHER_DEFAULTS.width),
    height: queryNumber(query, 'height', PUBLISHER_DEFAULTS.height),
    fps: queryNumber(query, 'fps', PUBLISHER_DEFAULTS.fps),
    videoBitrate: queryNumber(query, 'vbitrate', PUBLISHER_DEFAULTS.videoBitrate),
    audioBitrate: queryNumber(query, 'abitrate', PUBLISHER_DEFAULTS.audioBitrate),
    gopFrames: queryNumber(query, 'gop', null),
    audioFramesPerGroup: queryNumber(query, 'agroup', PUBLISHER_DEFAULTS.audioFramesPerGroup),
    videoCodec: query.get('codec') ?? PUBLISHER_DEFAULTS.videoCodec,
  };
}

/**
 * The LOC properties of an audio object: AUDIO_LEVEL (RFC 6464: V flag when `level` is below `voiceLevel`, and
 * the level in -dBov) and TIMESTAMP.
 */
export function audioProperties({ level, timestampUs, voiceLevel = PUBLISHER_DEFAULTS.voiceLevel }) {
  const voice = level < voiceLevel ? 0x80 : 0;
  return [
    [LOC.AUDIO_LEVEL, voice | level],
    [LOC.TIMESTAMP, timestampUs],
  ];
}

/**
 * Capture timestamps (µs, a source's own clock) to the wall clock (µs since the epoch); see the top. Feed it
 * each sample as it is read (`observe`); once `ready`, its offset is fixed and `toWall` maps.
 */
export class WallClock {
  #offset = null;
  #started = null;
  #samples = 0;
  #last = -Infinity;
  ready = false;

  /** A sample with capture time `captureUs` is read now (`nowUs`, the wall clock in µs). */
  observe(captureUs, nowUs = Date.now() * 1000) {
    if (this.ready) return;
    this.#started ??= nowUs;
    const delay = nowUs - captureUs;
    if (this.#offset === null || delay < this.#offset) this.#offset = delay;
    this.#samples++;
    this.ready = nowUs - this.#started >= CLOCK_SETTLE_MS * 1000 && this.#samples >= CLOCK_SETTLE_SAMPLES;
  }

  /** The wall-clock time of a capture timestamp; strictly increasing from one call to the next. */
  toWall(captureUs) {
    if (this.#offset === null) throw new Error('the clock has seen no sample yet');
    const wall = Math.max(Math.round(captureUs + this.#offset), this.#last + 1);
    this.#last = wall;
    return wall;
  }
}

/** Events per second over the last second. */
class Rate {
  #times = [];

  add(now = performance.now()) {
    this.#times.push(now);
    while (this.#times[0] < now - 1000) this.#times.shift();
  }

  get value() {
    const now = performance.now();
    while (this.#times.length && this.#times[0] < now - 1000) this.#times.shift();
    return this.#times.length;
  }
}

/** The publisher's counters (the call page shows them as window.moqStats.publisher). */
export function createPublisherStats() {
  return {
    state: 'starting',
    cameraOn: false,
    micOn: false,
    videoCodec: null,
    width: null,
    height: null,
    fps: 0,
    videoFramesCaptured: 0,
    videoFramesEncoded: 0,
    videoFramesDropped: 0,
    keyframes: 0,
    videoGroups: 0,
    videoBytes: 0,
    audioFramesEncoded: 0,
    audioGroups: 0,
    audioFramesDropped: 0,
    audioBytes: 0,
    /** The latest input level, -dBov (0 loudest, 127 silence), and whether it counts as voice. */
    audioLevel: 127,
    speaking: false,
    catalogVersions: 0,
    lastError: null,
  };
}

/**
 * Camera and microphone published as LOC tracks under one namespace (see the top of this file). The tracks are
 * `tracks` (LocalTrack: catalog, video, audio); a page adds them to its session (session.addTrack) and publishes
 * the namespace once `start()` has resolved.
 */
export class Publisher {
  /** @type {MediaStreamTrack | null} */
  videoInput = null;
  /** @type {MediaStreamTrack | null} */
  audioInput = null;
  #videoEncoder = null;
  #videoSize = null; // the size #videoEncoder was configured for
  #audioEncoder = null;
  #videoConfig = null; // {codec, width, height, description}
  #audioConfig = null; // {codec, samplerate, channels}
  #videoGroup = null;
  #videoObject = 0;
  #audioGroup;
  #audioObject = 0; // the next object's id in the open audio group (0: a new group)
  #catalogGroup;
  #catalogJson = null;
  #levels = []; // recent input levels: {start, end, level} in capture µs
  #videoClock = new WallClock();
  #audioClock = new WallClock();
  #videoGeneration = 0;
  #audioGeneration = 0;
  #frameIndex = 0;
  #fps = new Rate();
  #firstVideo = null;
  #firstAudio = null;
  #stopped = false;

  /**
   * @param {{namespace: Array<string | Uint8Array>, label?: string, options?: object, stats?: object}} init
   */
  constructor({ namespace, label = null, options = {}, stats = null }) {
    this.namespace = namespace;
    this.label = label;
    this.options = { ...PUBLISHER_DEFAULTS, ...options };
    this.options.gopFrames ??= Math.max(1, Math.round(this.options.fps));
    this.stats = stats ?? createPublisherStats();
    const start = Date.now();
    this.#audioGroup = start;
    this.#catalogGroup = start;
    this.catalog = new LocalTrack(namespace, 'catalog', { priority: CATALOG_PRIORITY });
    this.video = new LocalTrack(namespace, 'video', { priority: VIDEO_PRIORITY });
    this.audio = new LocalTrack(namespace, 'audio', { priority: AUDIO_PRIORITY });
    this.tracks = [this.catalog, this.video, this.audio];
    this.#videoGroup = start - 1;
  }

  /** Open the camera and the microphone (what is there), start encoding, publish the first catalog. */
  async start({ camera = true, microphone = true } = {}) {
    const first = [];
    if (camera) first.push(this.setCamera(true).catch((err) => this.#fail('camera', err)));
    if (microphone) first.push(this.setMicrophone(true).catch((err) => this.#fail('microphone', err)));
    await Promise.all(first);
    // Wait (bounded) for the first frames: the catalog needs the camera's size and the encoders' configuration.
    const waits = [this.#firstVideo, this.#firstAudio].filter(Boolean);
    await Promise.race([Promise.all(waits), new Promise((resolve) => setTimeout(resolve, FIRST_FRAME_WAIT_MS))]);
    this.#publishCatalog(true);
    this.stats.state = 'publishing';
  }

  /** Turn the camera on (open it again) or off (stop its track: the device is released). */
  async setCamera(on) {
    if (this.#stopped) return;
    if (!on) {
      this.#videoGeneration++;
      this.videoInput?.stop();
      this.videoInput = null;
      this.#closeVideoEncoder();
      this.stats.cameraOn = false;
      this.#publishCatalog();
      return;
    }
    if (this.videoInput) return;
    const o = this.options;
    const media = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: o.width }, height: { ideal: o.height }, frameRate: { ideal: o.fps } },
    });
    const track = media.getVideoTracks()[0];
    if (this.#stopped || this.videoInput) {
      track.stop();
      return;
    }
    this.videoInput = track;
    this.stats.cameraOn = true;
    this.#videoClock = new WallClock(); // a new track may count its timestamps from elsewhere
    const generation = ++this.#videoGeneration;
    let arrived;
    this.#firstVideo = new Promise((resolve) => (arrived = resolve));
    this.#videoLoop(track, generation, arrived).catch((err) => this.#fail('video', err));
  }

  /** Turn the microphone on (open it again) or off (stop its track). */
  async setMicrophone(on) {
    if (this.#stopped) return;
    if (!on) {
      this.#audioGeneration++;
      this.audioInput?.stop();
      this.audioInput = null;
      this.#closeAudioEncoder();
      this.stats.micOn = false;
      this.stats.audioLevel = 127;
      this.stats.speaking = false;
      this.#publishCatalog();
      return;
    }
    if (this.audioInput) return;
    const media = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: { ideal: 1 }, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    const track = media.getAudioTracks()[0];
    if (this.#stopped || this.audioInput) {
      track.stop();
      return;
    }
    this.audioInput = track;
    this.stats.micOn = true;
    this.#audioClock = new WallClock();
    const generation = ++this.#audioGeneration;
    let arrived;
    this.#firstAudio = new Promise((resolve) => (arrived = resolve));
    this.#audioLoop(track, generation, arrived).catch((err) => this.#fail('audio', err));
  }

  /** Stop capturing and end every track (subscribers get PUBLISH_DONE). */
  stop() {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#videoGeneration++;
    this.#audioGeneration++;
    this.videoInput?.stop();
    this.audioInput?.stop();
    this.videoInput = this.audioInput = null;
    this.#closeVideoEncoder();
    this.#closeAudioEncoder();
    for (const track of this.tracks) track.end();
    this.stats.state = 'stopped';
  }

  /** The encoded frame rate over the last second. */
  get fps() {
    return this.#fps.value;
  }

  #fail(what, err) {
    const message = `${what}: ${err?.message ?? err}`;
    this.stats.lastError = message;
    console.warn(`publisher: ${message}`);
  }

  // -- catalog ------------------------------------------------------------------------------------------------

  #publishCatalog(force = false) {
    if (this.#stopped || (!force && this.#catalogJson === null)) return; // nothing published before start()
    const o = this.options;
    const video = this.stats.cameraOn && this.#videoConfig
      ? {
          codec: this.#videoConfig.codec,
          width: this.#videoConfig.width,
          height: this.#videoConfig.height,
          framerate: o.fps,
          bitrate: o.videoBitrate,
          gopMs: (1000 * o.gopFrames) / o.fps,
        }
      : null;
    const audio = this.stats.micOn && this.#audioConfig ? { ...this.#audioConfig, bitrate: o.audioBitrate } : null;
    const { generatedAt, ...content } = buildCatalog({ video, audio, label: this.label });
    const json = JSON.stringify(content);
    if (json === this.#catalogJson) return;
    this.#catalogJson = json;
    const catalog = buildCatalog({ video, audio, label: this.label, generatedAt: Date.now() });
    const group = this.#catalogGroup++;
    this.catalog.append(group, 0, new TextEncoder().encode(JSON.stringify(catalog)));
    this.catalog.endGroup(group);
    this.stats.catalogVersions++;
  }

  // -- video --------------------------------------------------------------------------------------------------

  async #videoLoop(track, generation, arrived) {
    const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
    try {
      while (generation === this.#videoGeneration) {
        const { value: frame, done } = await reader.read();
        if (done) break;
        try {
          if (generation !== this.#videoGeneration) break;
          this.stats.videoFramesCaptured++;
          this.#videoClock.observe(frame.timestamp);
          if (!this.#videoClock.ready) continue;
          await this.#encodeVideo(frame);
          arrived();
        } finally {
          frame.close();
        }
      }
    } finally {
      reader.cancel().catch(() => {});
      arrived();
    }
  }

  async #encodeVideo(frame) {
    const width = frame.displayWidth;
    const height = frame.displayHeight;
    const encoder = this.#videoEncoder;
    const size = this.#videoSize;
    if (!encoder || encoder.state === 'closed' || size?.width !== width || size?.height !== height) {
      await this.#configureVideo(width, height);
    }
    const current = this.#videoEncoder;
    if (!current || current.state !== 'configured') return;
    if (current.encodeQueueSize >= MAX_ENCODE_QUEUE) {
      this.stats.videoFramesDropped++;
      return;
    }
    const keyFrame = this.#frameIndex % this.options.gopFrames === 0;
    this.#frameIndex++;
    current.encode(frame, { keyFrame });
  }

  async #configureVideo(width, height) {
    this.#closeVideoEncoder();
    const o = this.options;
    const base = {
      width,
      height,
      bitrate: o.videoBitrate,
      framerate: o.fps,
      latencyMode: 'realtime',
    };
    const candidates = [];
    if (o.videoCodec !== 'vp8') candidates.push({ ...base, codec: avcCodecFor(width, height), avc: { format: 'avc' } });
    candidates.push({ ...base, codec: 'vp8' });
    let config = null;
    for (const candidate of candidates) {
      try {
        if ((await VideoEncoder.isConfigSupported(candidate)).supported) {
          config = candidate;
          break;
        }
      } catch {
        // not this one
      }
    }
    if (!config) throw new Error('this browser can encode neither H.264 nor VP8');
    const generation = this.#videoGeneration;
    const encoder = new VideoEncoder({
      output: (chunk, metadata) => this.#videoChunk(chunk, metadata, generation),
      error: (err) => {
        this.#fail('video encoder', err);
        if (this.#videoEncoder === encoder) this.#videoEncoder = null;
      },
    });
    encoder.configure(config);
    this.#videoEncoder = encoder;
    this.#videoSize = { width, height };
    this.#frameIndex = 0; // the first frame of a new encoder is a keyframe: a new group
    this.#videoConfig = { codec: config.codec, width, height, description: null };
    this.stats.videoCodec = config.codec;
    this.stats.width = width;
    this.stats.height = height;
    this.#publishCatalog();
  }

  #closeVideoEncoder() {
    const encoder = this.#videoEncoder;
    this.#videoEncoder = null;
    if (encoder && encoder.state !== 'closed') encoder.close();
    // Whatever comes next starts a new group with a keyframe: this one is complete.
    if (this.video.latestGroup !== null) this.video.endGroup(this.video.latestGroup);
  }

  #videoChunk(chunk, metadata, generation) {
    if (generation !== this.#videoGeneration || this.#stopped) return;
    const config = metadata?.decoderConfig;
    if (config) {
      const description = config.description ? copyBytes(config.description) : null;
      const changed = config.codec !== this.#videoConfig?.codec;
      this.#videoConfig = { ...this.#videoConfig, codec: config.codec, description };
      this.stats.videoCodec = config.codec;
      if (changed) this.#publishCatalog();
    }
    const key = chunk.type === 'key';
    if (key) {
      this.#videoGroup++;
      this.#videoObject = 0;
      this.stats.keyframes++;
      this.stats.videoGroups++;
    } else if (this.video.latestGroup !== this.#videoGroup || this.video.groups.at(-1)?.ended) {
      return; // no keyframe to start from (the encoder was replaced): wait for one
    } else {
      this.#videoObject++;
    }
    const payload = new Uint8Array(chunk.byteLength);
    chunk.copyTo(payload);
    const properties = videoProperties({
      keyframe: key,
      timestampUs: this.#videoClock.toWall(chunk.timestamp),
      description: this.#videoConfig?.description,
    });
    this.video.append(this.#videoGroup, this.#videoObject, payload, properties);
    this.stats.videoFramesEncoded++;
    this.stats.videoBytes += payload.length;
    this.#fps.add();
  }

  // -- audio --------------------------------------------------------------------------------------------------

  async #audioLoop(track, generation, arrived) {
    const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
    try {
      while (generation === this.#audioGeneration) {
        const { value: data, done } = await reader.read();
        if (done) break;
        try {
          if (generation !== this.#audioGeneration) break;
          this.#measure(data);
          this.#audioClock.observe(data.timestamp);
          if (!this.#audioClock.ready) continue;
          this.#encodeAudio(data, generation);
          arrived();
        } finally {
          data.close();
        }
      }
    } finally {
      reader.cancel().catch(() => {});
      arrived();
    }
  }

  /** The input's level, kept by capture time so that each encoded frame carries the level of what it holds. */
  #measure(data) {
    const samples = new Float32Array(data.numberOfFrames);
    data.copyTo(samples, { planeIndex: 0, format: 'f32-planar' });
    const level = audioLevel(samples);
    const start = data.timestamp;
    this.#levels.push({ start, end: start + data.duration, level });
    if (this.#levels.length > 100) this.#levels.shift();
    this.stats.audioLevel = level;
    this.stats.speaking = level < this.options.voiceLevel;
  }

  #levelAt(start, end) {
    let best = 127;
    for (const entry of this.#levels) if (entry.end > start && entry.start < end) best = Math.min(best, entry.level);
    while (this.#levels.length && this.#levels[0].end <= start) this.#levels.shift();
    return best;
  }

  #encodeAudio(data, generation) {
    let encoder = this.#audioEncoder;
    if (!encoder || encoder.state === 'closed') {
      encoder = this.#configureAudio(data, generation);
      if (!encoder) return;
    }
    if (encoder.encodeQueueSize >= MAX_ENCODE_QUEUE * 4) {
      this.stats.audioFramesDropped++;
      return;
    }
    encoder.encode(data);
  }

  #configureAudio(data, generation) {
    const config = {
      codec: 'opus',
      sampleRate: data.sampleRate,
      numberOfChannels: data.numberOfChannels,
      bitrate: this.options.audioBitrate,
      opus: { frameDuration: 20000 },
    };
    const encoder = new AudioEncoder({
      output: (chunk) => this.#audioChunk(chunk, generation),
      error: (err) => {
        this.#fail('audio encoder', err);
        if (this.#audioEncoder === encoder) this.#audioEncoder = null;
      },
    });
    try {
      encoder.configure(config);
    } catch (err) {
      this.#fail('audio encoder', err);
      return null;
    }
    this.#audioEncoder = encoder;
    this.#audioConfig = { codec: 'opus', samplerate: 48000, channels: data.numberOfChannels };
    this.#publishCatalog();
    return encoder;
  }

  #closeAudioEncoder() {
    const encoder = this.#audioEncoder;
    this.#audioEncoder = null;
    if (encoder && encoder.state !== 'closed') encoder.close();
    if (this.audio.latestGroup !== null) this.audio.endGroup(this.audio.latestGroup);
    this.#audioObject = 0;
  }

  #audioChunk(chunk, generation) {
    if (generation !== this.#audioGeneration || this.#stopped) return;
    const payload = new Uint8Array(chunk.byteLength);
    chunk.copyTo(payload);
    const level = this.#levelAt(chunk.timestamp, chunk.timestamp + (chunk.duration ?? 20000));
    const properties = audioProperties({
      level,
      timestampUs: this.#audioClock.toWall(chunk.timestamp),
      voiceLevel: this.options.voiceLevel,
    });
    if (this.#audioObject === 0) {
      this.#audioGroup++;
      this.stats.audioGroups++;
    }
    const group = this.#audioGroup - 1;
    const object = this.#audioObject;
    this.audio.append(group, object, payload, properties);
    this.#audioObject = (object + 1) % Math.max(1, this.options.audioFramesPerGroup);
    if (this.#audioObject === 0) this.audio.endGroup(group);
    this.stats.audioFramesEncoded++;
    this.stats.audioBytes += payload.length;
  }
}

function copyBytes(source) {
  if (source instanceof Uint8Array) return source.slice();
  if (ArrayBuffer.isView(source)) {
    return new Uint8Array(source.buffer.slice(source.byteOffset, source.byteOffset + source.byteLength));
  }
  return new Uint8Array(source.slice(0));
}
