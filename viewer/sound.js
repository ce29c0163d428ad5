// @ts-check
// The host's sound (the runner's screen-share-audio track) and our microphone for the host.
//
// Sound: played from the runner's identity only, and only while its track is announced end-to-end
// encrypted and the E2EE worker decrypts the runner's frames (the same evidence trust.js uses for
// the picture; a frame that does not decrypt with our keys is dropped by the worker, so a wrong
// key plays silence). Browsers refuse to start sound without a user gesture: then `blocked` is
// true and the page shows a "Click for sound" button; the click starts it.
//
// Microphone: published only when the user asks (the button), only while this viewer has control,
// and unpublished when control goes; getUserMedia is called by that click, never at join. The
// runner plays only the controller's microphone into the host (audio.microphone).

import { Track } from 'livekit-client';

/** @typedef {import('livekit-client').RemoteTrack} RemoteTrack */
/** @typedef {import('livekit-client').Room} Room */

import { MICROPHONE_OPTIONS, soundStatus, spectrumPeak } from './soundlogic.js';

/** @typedef {import('./soundlogic.js').SoundStatus} SoundStatus */

const ANALYSER_FFT_SIZE = 8192; // 5.9 Hz bins at 48 kHz: enough to tell 440 Hz from 880 Hz

export class Sound {
  /** @type {RemoteTrack | null} the runner's sound track, subscribed */
  track = null;
  trusted = false;
  blocked = false;
  muted = false;
  volume = 1;
  /** @type {AudioContext | null} */
  context = null;
  /** @type {AnalyserNode | null} */
  analyser = null;
  /** @type {MediaStreamAudioSourceNode | null} */
  tap = null;

  /** @param {HTMLAudioElement} element @param {() => void} changed */
  constructor(element, changed) {
    this.element = element;
    this.changed = changed;
  }

  get status() {
    return soundStatus({
      track: this.track !== null, trusted: this.trusted, blocked: this.blocked, muted: this.muted,
    });
  }

  /** @param {RemoteTrack} track */
  attach(track) {
    if (this.track === track) return;
    this.detach();
    this.track = track;
    this.blocked = false;
    this.tapTrack(track);
    this.apply();
  }

  detach() {
    if (!this.track) return;
    this.track.detach(this.element);
    this.track = null;
    this.tap?.disconnect();
    this.tap = null;
    this.trusted = false;
    this.changed();
  }

  /** The analyser listens to the track itself, whether it is played or not: tests (and the
   * page's level) then tell "silent because not played" from "silent because nothing decrypts".
   * @param {RemoteTrack} track */
  tapTrack(track) {
    try {
      this.context ??= new AudioContext();
      if (!this.analyser) {
        this.analyser = this.context.createAnalyser();
        this.analyser.fftSize = ANALYSER_FFT_SIZE;
        this.analyser.smoothingTimeConstant = 0;
      }
      this.tap = this.context.createMediaStreamSource(new MediaStream([track.mediaStreamTrack]));
      this.tap.connect(this.analyser);
    } catch (error) {
      console.warn('sound analyser unavailable', error);
    }
  }

  /** @param {boolean} trusted the track may be played (see the top of this file) */
  setTrusted(trusted) {
    if (trusted === this.trusted) return;
    this.trusted = trusted;
    this.apply();
  }

  /** Play or stop according to trust and the user's choice. */
  apply() {
    const { track } = this;
    if (!track) return;
    if (!this.trusted) {
      track.detach(this.element);
      this.changed();
      return;
    }
    if (!track.attachedElements.includes(this.element)) track.attach(this.element);
    // After attach(), which sets the element up its own way.
    this.element.muted = this.muted;
    this.element.volume = this.volume;
    this.play();
  }

  play() {
    this.element.play().then(() => {
      this.blocked = false;
      this.context?.resume().catch(() => {});
      this.changed();
    }, (error) => {
      // NotAllowedError: the autoplay rule; the page asks for a click.
      this.blocked = error?.name === 'NotAllowedError';
      if (!this.blocked) console.warn('sound: play failed', error);
      this.changed();
    });
  }

  /** The user's click: starts sound the browser held back, and unmutes. */
  unblock() {
    this.muted = false;
    this.context?.resume().catch(() => {});
    this.apply();
  }

  /** @param {boolean} muted */
  setMuted(muted) {
    this.muted = muted;
    this.apply();
    this.changed();
  }

  /** @param {number} volume 0..1 */
  setVolume(volume) {
    this.volume = Math.min(1, Math.max(0, Number(volume) || 0));
    this.element.volume = this.volume;
    this.changed();
  }

  /** The current peak frequency and its level, or null without a track.
   * @returns {{frequency: number, db: number} | null} */
  peak() {
    if (!this.track || !this.analyser || !this.context) return null;
    const spectrum = new Float32Array(this.analyser.frequencyBinCount);
    this.analyser.getFloatFrequencyData(spectrum);
    return spectrumPeak(spectrum, this.context.sampleRate);
  }

  /** RMS level in dB of the last analyser window (-Infinity for digital silence), or null. */
  level() {
    if (!this.track || !this.analyser) return null;
    const samples = new Float32Array(this.analyser.fftSize);
    this.analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    return 10 * Math.log10(sum / samples.length);
  }
}

/**
 * 'off' | 'starting' | 'on' | 'stopping' | 'failed'
 * @typedef {'off' | 'starting' | 'on' | 'stopping' | 'failed'} MicrophoneStatus
 */

export class Microphone {
  /** @type {MicrophoneStatus} */
  status = 'off';
  lastError = '';

  /** @param {() => void} changed */
  constructor(changed) {
    this.changed = changed;
  }

  /** Start publishing the microphone in `room` (asks for permission: call from a click).
   * @param {Room} room */
  async start(room) {
    if (this.status === 'on' || this.status === 'starting') return;
    this.status = 'starting';
    this.changed();
    try {
      await room.localParticipant.setMicrophoneEnabled(true, MICROPHONE_OPTIONS);
      this.status = 'on';
      this.lastError = '';
    } catch (error) {
      this.status = 'failed';
      this.lastError = error?.message ?? String(error);
      throw error;
    } finally {
      this.changed();
    }
  }

  /** Stop and unpublish it (control lost, the user's click, leaving).
   * @param {Room | null} room */
  async stop(room) {
    if (this.status === 'off') return;
    this.status = 'stopping';
    this.changed();
    try {
      const publication = room?.localParticipant.getTrackPublication(Track.Source.Microphone);
      if (publication?.track) await room?.localParticipant.unpublishTrack(publication.track, true);
    } catch (error) {
      console.warn('microphone: stop failed', error);
    } finally {
      this.status = 'off';
      this.changed();
    }
  }
}
