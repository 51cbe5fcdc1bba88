// Who is speaking: the active speaker of a call, from the participants' audio levels (LOC AUDIO_LEVEL, RFC 6464:
// -dBov, 0 loudest .. 127 silence). The call page favours that participant's video (a lower SUBSCRIBER_PRIORITY
// number, sent as REQUEST_UPDATE) over everyone else's.
//
// Each participant's loudness (127 - level) feeds a score that follows a louder level at once and decays
// between words (`decay` per update), so a speaker stays the speaker through short pauses. The speaker changes
// only to someone whose score passes `threshold` (speech, not room noise) and beats the current speaker's by
// `margin` dB (no flapping between two people talking at once); one who leaves is forgotten.

export class SpeakerDetector {
  /** @type {string | null} */
  current = null;
  /** @type {Map<string, number>} */
  scores = new Map();
  changes = 0;

  /**
   * @param {{threshold?: number, decay?: number, margin?: number}} options
   *   threshold: the loudness (127 - level) a new speaker needs; decay: the score kept per update (0..1)
   */
  constructor({ threshold = 127 - 50, decay = 0.85, margin = 6 } = {}) {
    this.threshold = threshold;
    this.decay = decay;
    this.margin = margin;
  }

  /**
   * One step: each participant's newest level (null when nothing was heard lately). Returns the active speaker
   * (null before anyone spoke).
   * @param {Map<string, number | null>} levels
   */
  update(levels) {
    for (const id of this.scores.keys()) if (!levels.has(id)) this.scores.delete(id);
    for (const [id, level] of levels) {
      const loudness = level === null || level === undefined ? 0 : 127 - Math.min(127, Math.max(0, level));
      this.scores.set(id, Math.max((this.scores.get(id) ?? 0) * this.decay, loudness));
    }
    if (this.current !== null && !levels.has(this.current)) this.current = null;
    let best = null;
    let bestScore = -Infinity;
    for (const [id, score] of this.scores) {
      if (score > bestScore) {
        best = id;
        bestScore = score;
      }
    }
    if (best === null || best === this.current || bestScore < this.threshold) return this.current;
    const currentScore = this.current === null ? -Infinity : this.scores.get(this.current);
    if (bestScore > currentScore + this.margin) {
      this.current = best;
      this.changes++;
    }
    return this.current;
  }
}
