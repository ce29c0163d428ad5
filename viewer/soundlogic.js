// @ts-check
// The sound controls' pure decisions (sound.js does the I/O): what the page says about the host's
// sound, the peak of a spectrum, and how the microphone is captured. Tested in Node
// (tests/test_viewer_sound_logic.py).

// Voice processing for the microphone: echo cancellation stays on (the viewer plays the host's
// sound, which the microphone would otherwise send back); noise suppression and automatic gain
// are left to the host's applications (a meeting app on the host does its own), and they would
// distort anything that is not speech.
export const MICROPHONE_OPTIONS = Object.freeze({
  echoCancellation: true,
  noiseSuppression: false,
  autoGainControl: false,
  channelCount: 1,
});
const SILENCE_DB = -90;

/**
 * What the sound controls show. 'none': the runner publishes no sound. 'untrusted': its sound
 * is not (yet) known to be encrypted with our key, so it is not played. 'blocked': the browser
 * waits for a click before it plays sound. 'muted' / 'playing'.
 * @typedef {'none' | 'untrusted' | 'blocked' | 'muted' | 'playing'} SoundStatus
 */

/**
 * @param {{track: boolean, trusted: boolean, blocked: boolean, muted: boolean}} s
 * @returns {SoundStatus}
 */
export function soundStatus(s) {
  if (!s.track) return 'none';
  if (!s.trusted) return 'untrusted';
  if (s.muted) return 'muted';
  if (s.blocked) return 'blocked';
  return 'playing';
}

/**
 * The strongest frequency of an analyser's spectrum (dB per bin, as getFloatFrequencyData gives).
 * @param {Float32Array} spectrum @param {number} sampleRate
 * @returns {{frequency: number, db: number}}
 */
export function spectrumPeak(spectrum, sampleRate) {
  let best = 1; // bin 0 is DC
  for (let i = 2; i < spectrum.length; i += 1) if (spectrum[i] > spectrum[best]) best = i;
  const db = Number.isFinite(spectrum[best]) ? spectrum[best] : SILENCE_DB * 2;
  return { frequency: (best * sampleRate) / (2 * spectrum.length), db };
}

