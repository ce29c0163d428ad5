// @ts-check
// Reference viewer: joins a LiveKit room with a shared E2EE passphrase, decrypts the runner's
// screen share and shows it.
//
// For tests and tools it exposes window.viewer:
//   window.viewer.state            live object, refreshed every STATS_INTERVAL_MS (see `state`)
//   window.viewer.samplePixels(pts) [[r, g, b], ...] at normalized [x, y] points of the current
//                                   video frame, or null before the first frame and whenever
//                                   no picture is shown (state.screen is not 'shown')
//   window.viewer.connect({url, token, passphrase, keyIndex, control, runner}),
//   window.viewer.disconnect()      (both async; keyIndex defaults to 0; control (default true):
//                                   request control once the control session is open; runner:
//                                   the runner's identity, default 'desktop-runner')
//   window.viewer.setKey(passphrase, keyIndex)  (async) add or replace the key at keyIndex
//                                   (0..15) without reconnecting, e.g. after the publisher rotated
//                                   to a new key index; kept if the viewer joins the room again.
//                                   Also rekeys the control session (a new dr.hello with the new
//                                   key; the old session is kept if the runner does not take it)
//   window.viewer.room              the livekit-client Room of the current connection, or null
//
// Remote control (docs/protocol.md; control.js, input.js):
//   window.viewer.control           the live ControlSession, or null
//   window.viewer.state.control     {session, you, controller, monitors, selected, viewOnly,
//                                   clipboardMode, lastError, clipboard, rejected, runner,
//                                   rttMs, stats, pointerLocked} (see `state`)
//   window.viewer.state.pointer     the host's pointer as drawn here (cursor.js): {enabled, serial,
//                                   kind, local, css, position, overlay, images, positions}
//   window.viewer.sendInput(message, {reliable = true})  seal and send one input message (async)
//   window.viewer.call(method, params)  sealed RPC; resolves to the result, or rejects with an
//                                   Error whose .code is the runner's error code
//   window.viewer.typeText(text), .selectMonitor(id), .requestControl(), .releaseControl()
//                                   (async; sendInput and typeText reject with code
//                                   'not_shown' while the runner's picture is not shown)
//   window.viewer.setFit(enabled)   the fit-to-window toggle (fit.js); on: fit now (async)
//   window.viewer.toggleOverlay()   show or hide the statistics overlay (overlay.js)
//   window.viewer.state.overlay     the overlay's figures (overlay.js OverlayFigures; null while
//                                   hidden or not measured yet)
//   window.viewer.state.control.resizable / .fitted  the runner can fit its screen to this
//                                   window (dr.hello) / the last dr.screen.fit answer
//
// Link parameters (link.js): url, runner (identity), keyIndex (the key index of the passphrase,
// default 0) and control (0: do not request control on connect), in the fragment or the query.
// The token and the passphrase are pasted into the form: a link that carries them leaves them in
// the browser's history. Opt-in for tests and tools: in the fragment (then the page shows a
// warning); never from the query.
//
// Only the runner's video is shown, and only while it is end-to-end encrypted with our key
// (trust.js says why and how); input is sent only then. state.screen says what is shown.
//
// Sound (sound.js): the runner's screen-share-audio track is played under the same rule
// (state.sound: status 'none' | 'untrusted' | 'blocked' | 'muted' | 'playing', muted, volume);
// 'blocked' shows a "Click for sound" button. The microphone is published only on the user's
// click and only while this viewer has control (state.microphone: status, lastError).
//   window.viewer.soundPeak()       {frequency, db} of the runner's sound as received (also when
//                                   not played), or null without its track
//   window.viewer.soundLevel()      RMS dB of the last 170 ms of it, or null
//   window.viewer.unblockSound(), .setSoundMuted(bool), .setVolume(0..1)
//   window.viewer.startMicrophone(), .stopMicrophone()   (async)
//
// The token and passphrase are never logged or shown; a link's are removed from the address bar
// once read, and they are redacted from any error text before it is displayed. Clipboard text is
// never put into an error message or a log line.
import {
  ConnectionState,
  DisconnectReason,
  LogLevel,
  RoomEvent,
  Track,
  setLogLevel,
} from 'livekit-client';

import { Connection, checkKeyIndex } from './connection.js';
import { ScreenFit } from './fit.js';
import { PointerView, pointerState } from './cursor.js';
import { InputCapture, textChunks } from './input.js';
import { parseLink } from './link.js';
import {
  FrameTimer, OVERLAY_INTERVAL_MS, isOverlayShortcut, noFigures, overlayLines, stallStep, videoFigures,
  videoSample,
} from './overlay.js';
import { Microphone, Sound } from './sound.js';
import { DEFAULT_RUNNER, screenMessage, screenVerdict } from './trust.js';

/** @typedef {import('./connection.js').Credentials} Credentials */
/** @typedef {import('./control.js').ControlSession} ControlSession */
/** @typedef {import('livekit-client').RemoteTrack} RemoteTrack */
/** @typedef {import('livekit-client').RemoteTrackPublication} RemoteTrackPublication */
/** @typedef {import('livekit-client').RemoteParticipant} RemoteParticipant */
/** @typedef {Error & {code?: string}} CodedError */
/** @typedef {import('./trust.js').Screen} Screen */

const STATS_INTERVAL_MS = 250;
// The stall watch samples the screen track this often (overlay.js stallStep). With the 250 ms of
// the figures, a stall was asked about 0.9 s after the last frame (bench_network.py's freeze
// anatomy: the wait, plus up to two samples late, plus where the first sample fell).
const STALL_SAMPLE_MS = 100;
const CONTROL_STATS_INTERVAL_MS = 2000; // dr.ping and dr.stats
const CONTROL_CLIENT = 'desktop-runner reference viewer';
const CLIPBOARD_TO_HOST = new Set(['to-host', 'both']);
const CLIPBOARD_FROM_HOST = new Set(['from-host', 'both']);
const REJOIN_DELAY_MS = 2000;
const MAX_LISTED_ERRORS = 50;
// Disconnects after which joining again cannot help (or is not wanted).
const FINAL_DISCONNECT_REASONS = new Set([
  DisconnectReason.CLIENT_INITIATED,
  DisconnectReason.DUPLICATE_IDENTITY,
  DisconnectReason.PARTICIPANT_REMOVED,
  DisconnectReason.USER_REJECTED,
]);
// After livekit-client resumed a connection (or the viewer joined again), the shown track can stay
// black for good (seen after a 30 s network freeze while the runner had reconnected afresh): within
// a minute of such a resume, a picture that stops for 3 s makes the viewer join again. Outside that
// window a stall is left alone (a missing key also stops the picture; joining again would not help).
const STALL_REJOIN_MS = 3000;
const STALL_AFTER_RESUME_WINDOW_MS = 60000;

/** Remote control as the page shows it (state.control, reset in place for every new session). */
function controlState() {
  return {
    runner: '', // identity the control session talks to
    session: false, // a control session is open (dr.hello answered)
    you: false, // this session has control: input is sent
    /** @type {string | null} identity in control, or null */
    controller: null,
    /** @type {Array<Record<string, any>>} the runner's monitor objects (id, name, x, y, width,
     * height, primary, scale) */
    monitors: [],
    /** @type {string | null} id of the monitor shown (and that pointer positions refer to) */
    selected: null,
    viewOnly: false, // the runner refuses all input (control.view_only)
    /** @type {string | null} the runner's clipboard.mode: off | to-host | from-host | both */
    clipboardMode: null,
    lastError: '', // the latest control error, secrets and clipboard text never included
    /** @type {string | null} text of the last `clipboard` push */
    clipboard: null,
    rejected: 0, // runner packets on our topic that failed to open or were stale
    /** @type {number | null} dr.ping round trip */
    rttMs: null,
    /** @type {Record<string, any> | null} the last dr.stats result */
    stats: null,
    pointerLocked: false,
    resizable: false, // the runner can fit its screen to this window (dr.hello `resizable`)
    /** @type {{width: number, height: number, dpi: number} | null} the last dr.screen.fit answer */
    fitted: null,
  };
}

const INBOUND_COUNTERS = ['packetsReceived', 'packetsLost', 'bytesReceived', 'framesReceived', 'framesDecoded',
  'keyFramesDecoded', 'framesDropped', 'nackCount', 'pliCount', 'firCount', 'decoderImplementation'];

/** The receive counters of an inbound-rtp stats entry (state.inbound); absent ones null.
 * @param {Record<string, any>} stats @returns {Record<string, number | string | null>} */
function inboundCounters(stats) {
  return Object.fromEntries(INBOUND_COUNTERS.map((key) => [key, stats[key] ?? null]));
}

/** What the page shows, and what tests read. Mutated in place; never replaced. */
const state = {
  // 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'signalReconnecting' | 'disconnected'
  // | 'rejoining' (waiting to join again after an unexpected disconnect) | 'failed'
  state: 'idle',
  e2eeEnabled: false, // our side of the room has E2EE switched on
  encryptionErrors: 0, // RoomEvent.EncryptionError count (livekit-client throttles: <= 1/s, 5/min)
  lastError: '', // the latest error of any kind, secrets redacted
  framesDecoded: 0, // inbound-rtp framesDecoded of the shown video track
  /** @type {Record<string, number | string | null> | null} that inbound-rtp's receive counters
   * (packetsReceived, packetsLost, bytesReceived, framesReceived, framesDecoded, keyFramesDecoded,
   * framesDropped, nackCount, pliCount, firCount, decoderImplementation); null while none is shown */
  inbound: null,
  keyframeAsks: 0, // dr.keyframe calls made because the decoder stalled (overlay.js stallStep)
  videoWidth: 0, // of the picture shown; 0 while none is
  videoHeight: 0,
  publisher: '', // identity of the participant whose video is attached (the runner)
  trackEncrypted: false, // that track is announced as end-to-end encrypted by its publisher
  runner: '', // the identity whose video may be shown and who gets our input
  /** @type {Screen} what the picture area shows: see trust.js */
  screen: /** @type {Screen} */ ('idle'),
  /** @type {string[]} identities whose video was not shown: they are not the runner */
  ignoredVideo: [],
  control: controlState(), // remote control, see controlState()
  overlay: noFigures(), // the statistics overlay (overlay.js)
  pointer: pointerState(), // the host's pointer as the viewer draws it, see cursor.js
  /** @type {{status: import('./soundlogic.js').SoundStatus, muted: boolean, volume: number}} */
  sound: { status: 'none', muted: false, volume: 1 },
  /** @type {{status: import('./sound.js').MicrophoneStatus, lastError: string}} */
  microphone: { status: 'off', lastError: '' },
};

/** @template {HTMLElement} T @param {string} id @param {new () => T} type @returns {T} */
function byId(id, type) {
  const node = document.getElementById(id);
  if (!(node instanceof type)) throw new Error(`viewer page: #${id} is missing`);
  return node;
}

const el = {
  form: byId('connect-form', HTMLFormElement),
  url: byId('url', HTMLInputElement),
  token: byId('token', HTMLInputElement),
  passphrase: byId('passphrase', HTMLInputElement),
  keyIndex: byId('key-index', HTMLInputElement),
  tokenHint: byId('token-hint', HTMLElement),
  passphraseHint: byId('passphrase-hint', HTMLElement),
  connect: byId('connect', HTMLButtonElement),
  disconnect: byId('disconnect', HTMLButtonElement),
  video: byId('screen', HTMLVideoElement),
  pointerOverlay: byId('pointer-overlay', HTMLCanvasElement),
  placeholder: byId('placeholder', HTMLElement),
  connectionState: byId('connection-state', HTMLElement),
  encryptionState: byId('encryption-state', HTMLElement),
  publisherState: byId('publisher-state', HTMLElement),
  frames: byId('frames', HTMLElement),
  videoSize: byId('video-size', HTMLElement),
  errorCount: byId('error-count', HTMLElement),
  lastError: byId('last-error', HTMLElement),
  errors: byId('errors', HTMLUListElement),
  runner: byId('runner', HTMLInputElement),
  wantControl: byId('want-control', HTMLInputElement),
  stage: byId('stage', HTMLElement),
  controlPanel: byId('control-panel', HTMLElement),
  controlState: byId('control-state', HTMLElement),
  takeControl: byId('take-control', HTMLButtonElement),
  releaseControl: byId('release-control', HTMLButtonElement),
  monitor: byId('monitor', HTMLSelectElement),
  keyframe: byId('keyframe', HTMLButtonElement),
  pointerLock: byId('pointer-lock', HTMLButtonElement),
  typeForm: byId('type-form', HTMLFormElement),
  typeText: byId('type-text', HTMLTextAreaElement),
  typeSend: byId('type-send', HTMLButtonElement),
  clipboardText: byId('clipboard-text', HTMLTextAreaElement),
  clipboardSet: byId('clipboard-set', HTMLButtonElement),
  clipboardGet: byId('clipboard-get', HTMLButtonElement),
  clipboardHost: byId('clipboard-host', HTMLElement),
  controlStats: byId('control-stats', HTMLElement),
  fit: byId('fit', HTMLInputElement),
  fitHint: byId('fit-hint', HTMLElement),
  statsToggle: byId('stats-toggle', HTMLButtonElement),
  statsOverlay: byId('stats-overlay', HTMLElement),
  linkWarning: byId('link-warning', HTMLElement),
  sound: byId('sound', HTMLAudioElement),
  soundUnblock: byId('sound-unblock', HTMLButtonElement),
  soundPanel: byId('sound-panel', HTMLElement),
  soundState: byId('sound-state', HTMLElement),
  soundMute: byId('sound-mute', HTMLButtonElement),
  soundVolume: byId('sound-volume', HTMLInputElement),
  microphone: byId('microphone', HTMLButtonElement),
  microphoneState: byId('microphone-state', HTMLElement),
};

const sound = new Sound(el.sound, () => render());
const microphone = new Microphone(() => render());

setLogLevel(LogLevel.warn);

/**
 * The viewer's session: what the user asked for (credentials, keys, control wishes) and the
 * current Connection, which is replaced on every join. Everything that outlives one room lives
 * here; everything of one room lives in its Connection.
 */
class Viewer {
  /** @type {Connection | null} the current room, or null */
  connection = null;
  /** @type {Credentials | null} of the session, for rejoins */
  credentials = null;
  /** @type {Map<number, string>} key index -> passphrase, in the order set: connect()'s, then
   * any setKey(). A rejoin installs them all again. */
  keys = new Map();
  /** @type {string[]} token and passphrases of the session, for redaction only */
  secrets = [];
  runnerOption = ''; // from connect(): an explicit runner identity
  wantControl = true; // request control whenever a control session opens
  /** @type {ReturnType<typeof setTimeout> | null} */
  rejoinTimer = null;
  lastReconnectAt = -Infinity;
  lastProgress = { frames: -1, at: 0 };
  reportedControlError = ''; // the last control error put into the error list (no repeats)
  joining = false; // between join() and its Connection existing
  /** @type {RemoteTrackPublication | null} the runner's sound, while subscribed */
  soundPublication = null;
  #refreshing = false;
  #stallSampling = false;
  #pollingControl = false;
  /** @type {import('./overlay.js').VideoSample | null} where the overlay's current interval began */
  #overlayBase = null;
  /** @type {import('./overlay.js').StallState | null} the stall watch over the shown track */
  #stall = null;
  /** @type {unknown} the track #stall watches */
  #stallTrack = null;

  /** The Room of the current connection, or null. */
  get room() {
    return this.connection?.room ?? null;
  }

  /** The ControlSession of the current connection, or null. */
  get control() {
    return this.connection?.control ?? null;
  }

  /** The track shown, or null. */
  get shown() {
    return this.connection?.shown ?? null;
  }

  // --- errors ----------------------------------------------------------------------------------

  /** @param {unknown} text */
  redact(text) {
    let out = String(text);
    for (const secret of this.secrets) {
      if (secret) out = out.split(secret).join('[redacted]');
    }
    return out;
  }

  /** @param {unknown} message @param {{encryption?: boolean}} [options] */
  reportError(message, { encryption = false } = {}) {
    const text = this.redact(message);
    state.lastError = text;
    if (encryption) state.encryptionErrors += 1;
    const item = document.createElement('li');
    const time = document.createElement('time');
    time.textContent = new Date().toLocaleTimeString();
    item.append(time, ' ', encryption ? 'decryption: ' : '', text);
    el.errors.prepend(item);
    while (el.errors.children.length > MAX_LISTED_ERRORS) el.errors.lastElementChild?.remove();
    render();
  }

  // --- the shown track -------------------------------------------------------------------------

  /**
   * @param {Connection} conn
   * @param {RemoteTrack} track
   * @param {RemoteTrackPublication} publication
   * @param {RemoteParticipant} participant
   */
  show(conn, track, publication, participant) {
    conn.shown = { track, publication, participant };
    conn.framesAtError = null;
    track.attach(el.video); // hidden until updateScreen() finds it trustworthy
    state.publisher = participant.identity;
    state.trackEncrypted = publication.isEncrypted;
    state.framesDecoded = 0;
    state.inbound = null;
    this.startControl();
    render();
  }

  /** The runner's sound may be played: its track and the runner's publications announced
   * encrypted, the E2EE worker decrypting the runner's frames, no contrary evidence. */
  soundTrusted() {
    const conn = this.connection;
    const pub = this.soundPublication;
    if (!conn || conn.closed || !pub || !sound.track) return false;
    const runner = conn.room.remoteParticipants.get(state.runner);
    return Boolean(pub.isEncrypted && runner?.isEncrypted && conn.decrypting.get(state.runner) === true
      && !['undecryptable', 'not-runner', 'unencrypted'].includes(state.screen));
  }

  /** @param {RemoteTrack} track @param {RemoteTrackPublication} publication */
  attachSound(track, publication) {
    this.soundPublication = publication;
    sound.attach(track);
    sound.setTrusted(this.soundTrusted());
  }

  unattachSound() {
    this.soundPublication = null;
    sound.detach();
  }

  /** @param {Connection | null} conn */
  unshow(conn) {
    if (!conn?.shown) return;
    conn.shown.track.detach(el.video);
    conn.shown = null;
    Object.assign(state, {
      publisher: '', trackEncrypted: false, framesDecoded: 0, videoWidth: 0, videoHeight: 0,
    });
    render();
  }

  /** Show the runner's first subscribed video track other than `except`; never another
   * participant's.
   * @param {Connection} conn @param {RemoteTrack | null} [except] */
  showFirstVideo(conn, except = null) {
    if (conn.shown || conn.closed) return;
    for (const participant of conn.room.remoteParticipants.values()) {
      for (const publication of participant.videoTrackPublications.values()) {
        if (!publication.track || publication.track === except) continue;
        if (participant.identity !== state.runner) {
          this.ignoreVideo(participant.identity);
          continue;
        }
        this.show(conn, publication.track, publication, participant);
        return;
      }
    }
  }

  /** @param {string} identity */
  ignoreVideo(identity) {
    if (!state.ignoredVideo.includes(identity)) state.ignoredVideo.push(identity);
  }

  /** The evidence for trust.js, from the current connection. */
  evidence() {
    const conn = this.connection;
    const shown = conn?.shown;
    return {
      connected: Boolean(conn?.joined) && !conn?.closed,
      track: Boolean(shown),
      announcedEncrypted: Boolean(shown?.publication.isEncrypted && shown.participant.isEncrypted),
      decrypting: shown ? conn?.decrypting.get(shown.participant.identity) : undefined,
      failing: conn?.framesAtError != null && state.framesDecoded <= conn.framesAtError,
      otherRunner: Boolean(conn?.otherRunner),
    };
  }

  /** Decide what the picture area shows; leaving 'shown' releases what we hold on the host
   * first (the reset goes out while input is still allowed). */
  updateScreen() {
    const screen = screenVerdict(this.evidence());
    if (screen === state.screen) return;
    if (state.screen === 'shown') input.reset();
    state.screen = screen;
  }

  /** Microphone on (from the user's click): only while we have control. */
  async startMicrophone() {
    const room = this.room;
    if (!room || !state.control.you) {
      /** @type {CodedError} */
      const error = new Error('the microphone is sent only while you have control');
      error.code = 'no_control';
      throw error;
    }
    try {
      await microphone.start(room);
    } catch (error) {
      this.reportError(`microphone: ${error?.message ?? error}`);
      throw error;
    }
    if (!state.control.you || this.room !== room) await microphone.stop(room); // lost meanwhile
  }

  async stopMicrophone() {
    await microphone.stop(this.room);
  }

  /** Input may go to the host: we control, the picture shown is the runner's (encrypted with our
   * key) and the runner's dr.hello named the runner we expect. */
  inputAllowed() {
    const conn = this.connection;
    return Boolean(conn?.control && conn.shown && conn.confirmed && state.control.session
      && state.control.you && state.screen === 'shown');
  }

  // --- keys ------------------------------------------------------------------------------------

  /** Add or replace the key at `keyIndex` for this session, without reconnecting.
   * @param {string} passphrase @param {number | string} [keyIndex] */
  async setKey(passphrase, keyIndex = 0) {
    const index = checkKeyIndex(keyIndex);
    if (typeof passphrase !== 'string' || !passphrase) throw new TypeError('passphrase is empty');
    const conn = this.connection;
    if (!conn && this.rejoinTimer === null && !this.joining) throw new Error('not connected');
    this.secrets.push(passphrase);
    this.keys.delete(index); // re-insert, so it counts as the latest key set
    this.keys.set(index, passphrase);
    if (conn) await conn.addKey(passphrase, index);
    const control = this.control;
    if (control) {
      // A failure to rekey control is reported, not thrown: the picture's key is in place.
      try {
        await control.setKey(passphrase, index);
      } catch (error) {
        this.controlFailed('control rekey', error);
      }
    }
  }

  // --- connection ------------------------------------------------------------------------------

  /**
   * Join a room; a fresh session, so the error count starts again at 0 and the only key is
   * `passphrase` at `keyIndex` (default 0). `control` (default true): request control once the
   * control session is open; `runner`: the runner's identity (default: whoever shares the screen).
   * @param {{url: string, token: string, passphrase: string, keyIndex?: number | string,
   *   control?: boolean | string | number, runner?: string}} options
   */
  async connect({ url, token, passphrase, keyIndex = 0, control = true, runner = '' }) {
    Object.assign(state, { encryptionErrors: 0, lastError: '' });
    this.runnerOption = String(runner ?? '').trim();
    state.runner = this.runnerOption || DEFAULT_RUNNER;
    state.ignoredVideo = [];
    this.wantControl = control !== false && control !== '0' && control !== 0;
    let index;
    try {
      index = checkKeyIndex(keyIndex);
    } catch (error) {
      state.state = 'failed';
      this.reportError(error.message);
      throw error;
    }
    this.keys = new Map([[index, passphrase]]);
    await this.join({ url, token });
  }

  /**
   * One attempt to join. A first attempt that fails ends in state 'failed'; once joined, an
   * unexpected disconnect starts rejoin attempts (`retrying`) every REJOIN_DELAY_MS until one
   * succeeds or the user disconnects.
   * @param {Credentials} credentials
   * @param {{retrying?: boolean}} [options]
   */
  async join(credentials, { retrying = false } = {}) {
    if (retrying) this.lastReconnectAt = performance.now(); // a rejoin counts as a resume
    await this.disconnect();
    this.secrets = [credentials.token, ...this.keys.values()];
    // The live map, not a copy: a setKey() meanwhile re-inserts its key at the end, so it is
    // visited after any older key at the same index.
    this.joining = true;
    let conn;
    try {
      conn = await Connection.create(credentials, this.keys);
    } finally {
      this.joining = false;
    }
    this.credentials = credentials;
    this.connection = conn;
    this.wire(conn);
    state.state = 'connecting';
    render();
    try {
      await conn.open();
    } catch (error) {
      if (this.connection === conn) {
        this.connection = null;
        conn.close().catch(() => {});
        this.reportError(`connect failed: ${error?.message ?? error}`);
        if (retrying) this.scheduleRejoin(credentials);
        else state.state = 'failed';
        render();
      }
      throw error;
    }
    this.showFirstVideo(conn);
    this.startControl();
    render();
  }

  /** Room events of `conn`; a closed connection's are ignored.
   * @param {Connection} conn */
  wire(conn) {
    const { room } = conn;
    room
      .on(RoomEvent.ConnectionStateChanged, (connectionState) => {
        if (conn.closed) return;
        if (connectionState === ConnectionState.Connected
            && ['reconnecting', 'signalReconnecting'].includes(state.state)) {
          this.lastReconnectAt = performance.now();
        }
        state.state = connectionState;
        render();
      })
      .on(RoomEvent.Disconnected, (reason) => {
        if (conn.closed || !conn.joined) return; // a failed join is handled in join()
        this.stopControl();
        this.unshow(conn);
        this.unattachSound();
        microphone.stop(null);
        state.e2eeEnabled = false;
        if (reason !== undefined && FINAL_DISCONNECT_REASONS.has(reason)) {
          state.state = 'disconnected';
          if (reason !== DisconnectReason.CLIENT_INITIATED) {
            this.reportError(`disconnected: ${DisconnectReason[reason]}`);
          }
        } else {
          const why = reason === undefined ? 'connection lost' : DisconnectReason[reason];
          this.reportError(`disconnected: ${why}; joining again`);
          this.scheduleRejoin(conn.credentials);
        }
        render();
      })
      .on(RoomEvent.TrackSubscribed, (track, publication, participant) => {
        if (conn.closed) return;
        if (track.kind === Track.Kind.Audio) {
          // Only the runner's desktop sound; other participants' microphones are never played.
          if (participant.identity === state.runner
              && publication.source === Track.Source.ScreenShareAudio) {
            this.attachSound(track, publication);
          }
          return;
        }
        if (track.kind !== Track.Kind.Video) return;
        if (participant.identity !== state.runner) {
          this.ignoreVideo(participant.identity); // never attached: see trust.js
          render();
        } else if (!conn.shown) {
          this.show(conn, track, publication, participant);
        }
      })
      .on(RoomEvent.TrackUnsubscribed, (track) => {
        if (!conn.closed && sound.track === track) this.unattachSound();
        if (!conn.closed && conn.shown?.track === track) {
          this.unshow(conn);
          // livekit-client emits this while the publication still holds `track` (it is removed
          // just after): without the exception the stopped track was attached again, and the
          // publisher's track republished after a resume (a new SID) was then never shown.
          this.showFirstVideo(conn, track);
        }
      })
      .on(RoomEvent.ParticipantConnected, () => {
        if (!conn.closed) this.startControl(); // an explicit runner may join after us
      })
      .on(RoomEvent.TrackSubscriptionFailed, (trackSid, participant, reason) => {
        if (conn.closed) return;
        this.reportError(`could not subscribe to ${participant?.identity}: ${reason ?? trackSid}`);
      })
      .on(RoomEvent.EncryptionError, (error, participant) => {
        if (conn.closed) return;
        if (!participant || participant.identity === state.runner) conn.errorPending = true;
        const who = participant?.identity ? `${participant.identity}: ` : '';
        this.reportError(`${who}${error?.message ?? error}`, { encryption: true });
      })
      .on(RoomEvent.ParticipantEncryptionStatusChanged, (enabled, participant) => {
        if (conn.closed) return;
        if (participant === room.localParticipant) state.e2eeEnabled = enabled;
        else if (participant) conn.decrypting.set(participant.identity, enabled);
        if (conn.shown && participant === conn.shown.participant) {
          state.trackEncrypted = conn.shown.publication.isEncrypted;
        }
        render();
      });
  }

  /** @param {Credentials} credentials */
  scheduleRejoin(credentials) {
    if (this.rejoinTimer !== null) clearTimeout(this.rejoinTimer);
    state.state = 'rejoining';
    this.rejoinTimer = setTimeout(() => {
      this.rejoinTimer = null;
      // A failure is reported, and the next attempt scheduled, by join() itself.
      this.join(credentials, { retrying: true }).catch(() => {});
    }, REJOIN_DELAY_MS);
  }

  async disconnect() {
    if (this.rejoinTimer !== null) clearTimeout(this.rejoinTimer);
    this.rejoinTimer = null;
    const conn = this.connection;
    await microphone.stop(this.room);
    this.stopControl();
    this.unshow(conn);
    this.unattachSound();
    this.connection = null;
    await conn?.close();
    Object.assign(state, { state: conn ? 'disconnected' : state.state, e2eeEnabled: false });
    render();
  }

  // --- remote control --------------------------------------------------------------------------

  /** Open a control session with the runner once it is in the room (again after a rejoin). */
  startControl() {
    const conn = this.connection;
    const runner = state.runner;
    if (!conn || conn.closed || conn.room.state !== ConnectionState.Connected || !runner) return;
    if (conn.control?.runner === runner) return;
    if (!conn.room.remoteParticipants.has(runner)) return; // ParticipantConnected calls us again
    this.stopControl();
    const session = conn.openControl(runner, this.keys, CONTROL_CLIENT);
    state.control.runner = runner;
    this.wireControl(session);
    session.open().catch((error) => {
      if (!session.closed) this.controlFailed('dr.hello', error);
    });
    render();
  }

  stopControl() {
    input.forget();
    input.unlockPointer();
    this.connection?.closeControl();
    Object.assign(state.control, controlState());
    pointer.reset(false);
    this.reportedControlError = '';
  }

  /** @param {ControlSession} session */
  wireControl(session) {
    session.on('session', (hello) => {
      if (session.closed) return;
      const conn = this.connection;
      if (conn) {
        // The answer is sealed by the runner's identity (the envelope's AAD); its own name for
        // itself must agree, or this is not the runner we were asked to show.
        conn.confirmed = hello.runner === session.runner;
        conn.otherRunner = !conn.confirmed;
      }
      if (!conn?.confirmed) {
        this.controlFailed('dr.hello', new Error(
          `the participant ${session.runner} answers as runner ${JSON.stringify(hello.runner)}`));
        render();
        return;
      }
      const had = state.control.you;
      Object.assign(state.control, {
        session: true,
        you: false, // control belongs to a session; a new one has none yet
        controller: hello.controller ?? null,
        viewOnly: hello.view_only === true,
        clipboardMode: typeof hello.clipboard === 'string' ? hello.clipboard : null,
        resizable: hello.resizable === true,
        fitted: null,
        lastError: '',
      });
      fit.forget();
      if (had) input.forget();
      pointer.reset(hello.cursor === 'viewer'); // the runner pushes its pointer (cursor.js)
      this.setMonitors(hello.monitors, hello.selected);
      this.reportedControlError = '';
      render();
      const local = this.room?.localParticipant.identity;
      const free = hello.controller == null || hello.controller === local;
      if (this.wantControl && !state.control.viewOnly && free) {
        this.requestControl().catch(() => {}); // reported by controlCall
      }
    });
    session.on('closed', () => {
      if (session.closed) return;
      Object.assign(state.control, { session: false, you: false });
      input.forget();
      render();
    });
    session.on('rejected', () => {
      if (session.closed) return;
      state.control.rejected = session.rejected;
      render();
    });
    session.on('error', (error) => {
      if (!session.closed) this.controlFailed('control session', error);
    });
    session.onPush('monitors', (message) => {
      if (session.closed) return;
      this.setMonitors(message.monitors, message.selected);
      render();
    });
    session.onPush('control', (message) => {
      if (!session.closed) this.setController(message.controller, message.you);
    });
    session.onPush('cursor', (message) => {
      if (!session.closed) pointer.shape(message).catch(() => {});
    });
    session.onPush('pointer', (message) => {
      if (!session.closed) pointer.pointer(message);
    });
    session.onPush('clipboard', (message) => {
      if (session.closed || typeof message.text !== 'string') return;
      state.control.clipboard = message.text;
      render();
    });
  }

  /** @param {unknown} monitors @param {unknown} selected */
  setMonitors(monitors, selected) {
    if (Array.isArray(monitors)) {
      state.control.monitors = monitors.filter((m) => m && typeof m.id === 'string');
    }
    if (typeof selected === 'string' || selected === null) state.control.selected = selected;
  }

  /** @param {unknown} controller @param {unknown} you */
  setController(controller, you) {
    const had = state.control.you;
    state.control.controller = typeof controller === 'string' ? controller : null;
    state.control.you = you === true;
    if (had && !state.control.you) input.forget(); // the runner released what we held
    if (!had && state.control.you) {
      fit.forget(); // a new controller's size is asked for, even if it is the same
      fit.schedule();
    }
    if (!state.control.you) microphone.stop(this.room); // the microphone goes with control
    render();
  }

  /** Record a control failure; the error list gets each distinct message once in a row.
   * @param {string} what @param {any} error */
  controlFailed(what, error) {
    const code = error?.code ? ` (${error.code})` : '';
    // Clipboard errors carry only their code: a runner's message might quote the text.
    const detail = /clipboard/.test(what) ? 'failed' : (error?.message ?? String(error));
    const text = this.redact(`${what}: ${detail}${code}`);
    state.control.lastError = text;
    if (text !== this.reportedControlError) {
      this.reportedControlError = text;
      this.reportError(`control: ${text}`);
    } else {
      render();
    }
  }

  /** @returns {ControlSession} */
  requireControl() {
    const { control } = this;
    if (!control) {
      /** @type {CodedError} */
      const error = new Error('no control session (not connected, or no runner yet)');
      error.code = 'no_session';
      throw error;
    }
    return control;
  }

  /** A sealed RPC call; failures are recorded and rethrown (Error with .code).
   * @param {string} method @param {Record<string, unknown>} [params] */
  async controlCall(method, params = {}) {
    try {
      return await this.requireControl().call(method, params);
    } catch (error) {
      this.controlFailed(method, error);
      throw error;
    }
  }

  /** The control session, when input may go to the host (see inputAllowed).
   * @returns {ControlSession} */
  requireInput() {
    const session = this.requireControl();
    if (state.screen !== 'shown' || !this.connection?.confirmed) {
      /** @type {CodedError} */
      const error = new Error(`no input while the runner's picture is not shown (${state.screen})`);
      error.code = 'not_shown';
      throw error;
    }
    return session;
  }

  /** @param {Record<string, unknown>} message @param {{reliable?: boolean}} [options] */
  async sendInput(message, { reliable = true } = {}) {
    return this.requireInput().send(message, { reliable });
  }

  /** @param {string} text */
  async typeText(text) {
    const session = this.requireInput();
    for (const chunk of textChunks(text)) await session.send({ t: 'text', text: chunk });
  }

  /** @param {string} id */
  async selectMonitor(id) {
    const result = await this.controlCall('dr.monitors.select', { id });
    state.control.selected = typeof result.selected === 'string' ? result.selected : id;
    render();
    return result;
  }

  async requestControl() {
    this.wantControl = true;
    const result = await this.controlCall('dr.control.request');
    this.setController(result.controller, result.you);
    return result;
  }

  async releaseControl() {
    this.wantControl = false;
    const result = await this.controlCall('dr.control.release');
    this.setController(result.controller, result.you);
    return result;
  }

  /** dr.ping round trip and dr.stats, every CONTROL_STATS_INTERVAL_MS; also what re-opens a
   * session the runner forgot (call() says hello again on `no_session`). */
  async pollControl() {
    const session = this.control;
    const room = this.room;
    if (!session || !room || this.#pollingControl || room.state !== ConnectionState.Connected
        || !room.remoteParticipants.has(session.runner)) return;
    this.#pollingControl = true;
    try {
      const started = performance.now();
      await session.call('dr.ping', { t: Date.now() });
      const rtt = Math.round(performance.now() - started);
      const stats = await session.call('dr.stats');
      if (!session.closed) {
        Object.assign(state.control, { rttMs: rtt, stats });
        if (state.overlay.shown) this.overlayHost();
      }
    } catch (error) {
      if (!session.closed) this.controlFailed('stats', error);
    } finally {
      this.#pollingControl = false;
      render();
    }
  }

  // --- the statistics overlay ------------------------------------------------------------------

  /** Show or hide the overlay; figures start afresh each time it is shown. */
  toggleOverlay() {
    const shown = !state.overlay.shown;
    Object.assign(state.overlay, noFigures(), { shown });
    this.#overlayBase = null;
    if (shown) {
      frameTimer.start();
      this.overlayHost();
    } else {
      frameTimer.stop();
    }
    render();
    return shown;
  }

  /** The runner's figures (dr.ping, dr.stats) into the overlay. */
  overlayHost() {
    const { rttMs, stats } = state.control;
    /** @param {unknown} v */
    const number = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
    Object.assign(state.overlay, {
      rttMs,
      hostMs: number(stats?.host_ms),
      hostFps: number(stats?.fps),
      hostDropped: number(stats?.dropped),
    });
  }

  /** The browser's figures over the last OVERLAY_INTERVAL_MS into the overlay.
   * @param {import('./overlay.js').VideoSample | null} sample */
  overlayVideo(sample) {
    const base = this.#overlayBase;
    if (!sample || !base || sample.framesDecoded < base.framesDecoded) {
      this.#overlayBase = sample; // a first sample, or another track
      return;
    }
    if (sample.at - base.at < OVERLAY_INTERVAL_MS) return;
    Object.assign(state.overlay, videoFigures(base, sample), { renderMs: frameTimer.take() });
    this.#overlayBase = sample;
  }

  /** Ask the runner for a keyframe when the decoder waits on a lost packet (overlay.js
   * stallStep); not while frames fail to decrypt (no keyframe helps) or without a session.
   * @param {unknown} track @param {import('./overlay.js').VideoSample} sample */
  watchStall(track, sample) {
    if (track !== this.#stallTrack) {
      this.#stallTrack = track;
      this.#stall = null;
    }
    const rtt = sample.transportRttMs ?? state.control.rttMs ?? null;
    const { state: next, ask } = stallStep(this.#stall, sample, rtt);
    this.#stall = next;
    const conn = this.connection;
    if (!ask || !conn || conn.errorPending || conn.framesAtError != null) return;
    let control;
    try {
      control = this.requireControl();
    } catch {
      return; // no control session (a watch-only link): nobody to ask
    }
    state.keyframeAsks += 1;
    quietly(control.call('dr.keyframe', {}));
  }

  // --- stats and pixels ------------------------------------------------------------------------

  /** The stall watch's sample of the shown track, every STALL_SAMPLE_MS. */
  async sampleStall() {
    const { shown } = this;
    if (!shown || this.#stallSampling) return;
    this.#stallSampling = true;
    try {
      const report = await shown.track.getRTCStatsReport();
      const sample = report ? videoSample(report) : null;
      if (sample) this.watchStall(shown.track, sample);
    } catch (error) {
      console.warn('stall sample failed', error);
    } finally {
      this.#stallSampling = false;
    }
  }

  async refresh() {
    if (this.#refreshing) return;
    this.#refreshing = true;
    try {
      const { shown } = this;
      if (shown) {
        const report = await shown.track.getRTCStatsReport();
        report?.forEach((stats) => {
          if (stats.type === 'inbound-rtp' && stats.kind === 'video') {
            state.framesDecoded = stats.framesDecoded ?? 0;
            state.inbound = inboundCounters(stats);
          }
        });
        const sample = report ? videoSample(report) : null;
        if (sample && state.overlay.shown) this.overlayVideo(sample);
        // After a decryption error the picture waits for frames decoded after it: with the
        // runner's frames going through decryption, those decrypted with a key of ours.
        const conn = this.connection;
        if (conn?.errorPending) {
          conn.errorPending = false;
          conn.framesAtError = state.framesDecoded;
        } else if (conn?.framesAtError != null && state.framesDecoded > conn.framesAtError) {
          conn.framesAtError = null;
        }
      }
      const now = performance.now();
      // Progress = frames decoded into a real picture (after a resume the element can sit at 2x2
      // while the new track's decoder counts frames).
      const picture = shown && el.video.videoWidth > 2;
      if (!shown || state.state !== 'connected'
          || (picture && state.framesDecoded !== this.lastProgress.frames)) {
        this.lastProgress = { frames: state.framesDecoded, at: now };
      } else if (now - this.lastProgress.at > STALL_REJOIN_MS
                 && now - this.lastReconnectAt < STALL_AFTER_RESUME_WINDOW_MS
                 && this.credentials && this.rejoinTimer === null) {
        this.lastProgress = { frames: -1, at: now };
        this.reportError('video stalled; joining again');
        this.join(this.credentials, { retrying: true }).catch(() => {});
      }
      // The size of the picture shown: none while it is hidden (trust.js).
      this.updateScreen();
      const showing = shown && state.screen === 'shown';
      state.videoWidth = showing ? el.video.videoWidth : 0;
      state.videoHeight = showing ? el.video.videoHeight : 0;
      const room = this.room;
      if (room) state.e2eeEnabled = room.isE2EEEnabled;
    } catch (error) {
      console.warn('stats failed', error);
    } finally {
      this.#refreshing = false;
    }
    render();
  }
}

const viewer = new Viewer();

const canvas = document.createElement('canvas');
const context = /** @type {CanvasRenderingContext2D} */ (
  canvas.getContext('2d', { willReadFrequently: true }));

/** [[r, g, b], ...] of the current frame at normalized [x, y] points; null before a frame and
 * whenever no picture is shown (state.screen is not 'shown').
 * @param {Array<[number, number]>} points */
function samplePixels(points) {
  const { videoWidth: w, videoHeight: h } = el.video;
  if (state.screen !== 'shown' || !w || !h
      || el.video.readyState < HTMLMediaElement.HAVE_CURRENT_DATA) {
    return null;
  }
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  context.drawImage(el.video, 0, 0, w, h);
  /** @param {number} v @param {number} size */
  const clamp = (v, size) => Math.min(size - 1, Math.max(0, Math.floor(v * size)));
  return points.map(([x, y]) => {
    const [r, g, b] = context.getImageData(clamp(x, w), clamp(y, h), 1, 1).data;
    return [r, g, b];
  });
}

// --- rendering -----------------------------------------------------------------------------------

/** @type {Record<string, string>} */
const LEVELS = {
  connected: 'ok',
  connecting: 'warn',
  reconnecting: 'warn',
  signalReconnecting: 'warn',
  rejoining: 'warn',
  disconnected: 'bad',
  failed: 'bad',
  idle: 'idle',
};

/** @param {HTMLElement} node @param {string} text @param {string} level */
function setChip(node, text, level) {
  node.textContent = text;
  node.dataset.level = level;
}

function render() {
  viewer.updateScreen();
  sound.setTrusted(viewer.soundTrusted());
  setChip(el.connectionState, state.state, LEVELS[state.state] ?? 'idle');
  const live = state.state === 'connected';
  setChip(el.encryptionState, state.e2eeEnabled ? 'on' : 'off',
    state.e2eeEnabled ? 'ok' : live ? 'bad' : 'idle');
  if (!state.publisher) setChip(el.publisherState, 'none', 'idle');
  else if (state.trackEncrypted) setChip(el.publisherState, `${state.publisher} (encrypted)`, 'ok');
  else setChip(el.publisherState, `${state.publisher} (NOT encrypted)`, 'bad');
  el.frames.textContent = String(state.framesDecoded);
  el.videoSize.textContent = state.videoWidth ? `${state.videoWidth}×${state.videoHeight}` : '–';
  setChip(el.errorCount, String(state.encryptionErrors), state.encryptionErrors ? 'bad' : 'idle');
  el.lastError.textContent = state.lastError || 'None.';
  el.lastError.classList.toggle('muted', !state.lastError);
  const showing = state.screen === 'shown';
  el.video.dataset.shown = showing ? 'yes' : 'no';
  el.placeholder.hidden = showing && state.videoWidth > 0;
  const ignored = state.screen === 'waiting' && state.ignoredVideo.length
    ? ` (Not shown, not the host: ${state.ignoredVideo.join(', ')}.)` : '';
  el.placeholder.textContent = (screenMessage(state.screen, state.runner) || 'No screen yet.')
    + ignored;
  const busy = viewer.connection !== null || viewer.rejoinTimer !== null;
  el.connect.disabled = busy;
  el.disconnect.disabled = !busy;
  el.tokenHint.textContent = el.token.value ? 'set' : 'not set';
  el.passphraseHint.textContent = el.passphrase.value ? 'set' : 'not set';
  renderControl();
  renderSound();
}

/** @type {Record<string, [string, string]>} */
const SOUND_SUMMARY = {
  none: ['no sound from the host', 'idle'],
  untrusted: ["host's sound not encrypted with your key: not played", 'bad'],
  blocked: ['sound waits for a click (browser rule)', 'warn'],
  muted: ['muted', 'idle'],
  playing: ['playing', 'ok'],
};

function renderSound() {
  const status = sound.status;
  Object.assign(state.sound, { status, muted: sound.muted, volume: sound.volume });
  Object.assign(state.microphone, { status: microphone.status, lastError: microphone.lastError });
  el.soundPanel.hidden = viewer.connection === null;
  const [summary, level] = SOUND_SUMMARY[status];
  setChip(el.soundState, summary, level);
  el.soundUnblock.hidden = status !== 'blocked';
  el.soundMute.disabled = status === 'none' || status === 'untrusted';
  el.soundMute.textContent = sound.muted ? 'Unmute' : 'Mute';
  el.soundVolume.disabled = el.soundMute.disabled;
  const mic = microphone.status;
  el.microphone.disabled = !state.control.you || mic === 'starting' || mic === 'stopping';
  el.microphone.textContent = `Microphone: ${mic === 'on' ? 'on' : mic === 'failed' ? 'failed' : 'off'}`;
  el.microphone.dataset.level = mic === 'on' ? 'ok' : mic === 'failed' ? 'bad' : 'idle';
  el.microphoneState.textContent = mic === 'failed' ? `Microphone failed: ${viewer.redact(microphone.lastError)}`
    : mic === 'on' ? 'The host hears your microphone.'
      : 'Your microphone is sent only while you have control and switch it on.';
}

/** @returns {[string, string]} */
function controlSummary() {
  const c = state.control;
  if (!viewer.control) return ['no runner yet', 'idle'];
  if (!c.session) return [c.lastError ? 'no control session' : 'opening control session…', 'warn'];
  if (c.viewOnly) return ['runner is view-only', 'idle'];
  if (c.you) return ['you have control', 'ok'];
  return [c.controller ? `view only: ${c.controller}` : 'view only: nobody has control', 'idle'];
}

function renderMonitors() {
  const { monitors, selected } = state.control;
  const key = JSON.stringify(monitors.map((m) => [m.id, m.name, m.width, m.height, m.primary]));
  if (el.monitor.dataset.key !== key) {
    el.monitor.dataset.key = key;
    el.monitor.replaceChildren(...monitors.map((m) => {
      const option = document.createElement('option');
      option.value = m.id;
      const name = m.name && m.name !== m.id ? `${m.name} (${m.id})` : m.id;
      option.textContent = `${name} ${m.width}×${m.height}${m.primary ? ', primary' : ''}`;
      return option;
    }));
  }
  if (selected !== null && el.monitor.value !== selected) el.monitor.value = selected;
}

function renderControl() {
  const c = state.control;
  const live = viewer.connection !== null && [ConnectionState.Connected,
    ConnectionState.Reconnecting, ConnectionState.SignalReconnecting].some((s) => s === state.state);
  el.controlPanel.hidden = !live;
  const [summary, level] = controlSummary();
  setChip(el.controlState, summary, level);
  el.controlState.title = c.lastError;
  el.takeControl.disabled = !c.session || c.viewOnly || c.you;
  el.releaseControl.disabled = !c.session || !c.you;
  renderMonitors();
  el.monitor.disabled = !c.you || c.monitors.length === 0;
  el.keyframe.disabled = !c.session;
  el.pointerLock.disabled = !c.you;
  el.pointerLock.textContent = c.pointerLocked ? 'Pointer locked (Esc)' : 'Lock pointer';
  el.typeSend.disabled = !c.you;
  el.clipboardSet.disabled = !c.you || !CLIPBOARD_TO_HOST.has(c.clipboardMode ?? '');
  el.clipboardGet.disabled = !c.you || !CLIPBOARD_FROM_HOST.has(c.clipboardMode ?? '');
  el.clipboardHost.textContent = c.clipboard ?? '–';
  el.clipboardHost.classList.toggle('muted', c.clipboard === null);
  el.stage.dataset.control = c.you ? 'on' : 'off';
  // Our own pointer is the host's while we control, unless it is locked (then it is drawn).
  pointer.setLocal(c.you && !c.pointerLocked);
  pointer.render(); // the picture may have moved or changed size
  const parts = [];
  if (c.rttMs !== null) parts.push(`ping ${c.rttMs} ms`);
  if (c.stats) {
    const { fps, bitrate, width, height } = c.stats;
    if (typeof fps === 'number') parts.push(`${fps} fps`);
    if (typeof bitrate === 'number') parts.push(`${(bitrate / 1e6).toFixed(2)} Mbit/s`);
    if (width && height) parts.push(`${width}×${height}`);
  }
  if (c.rejected) parts.push(`${c.rejected} rejected`);
  el.controlStats.textContent = parts.length ? parts.join(' · ') : '–';
  el.statsOverlay.hidden = !state.overlay.shown;
  if (state.overlay.shown) el.statsOverlay.textContent = overlayLines(state.overlay).join('\n');
  el.statsToggle.setAttribute('aria-pressed', String(state.overlay.shown));
  let hint = '';
  if (c.session && !c.resizable) hint = 'this host cannot be resized';
  else if (c.fitted) hint = `${c.fitted.width}×${c.fitted.height}, ${c.fitted.dpi} dpi`;
  el.fitHint.textContent = hint;
}

// --- page wiring ---------------------------------------------------------------------------------

const pointer = new PointerView({ video: el.video, overlay: el.pointerOverlay, state: state.pointer });

const input = new InputCapture({
  stage: el.stage,
  video: el.video,
  send: (message, options) => viewer.requireControl().send(message, options),
  isActive: () => viewer.inputAllowed(),
  monitor: () => state.control.selected,
  onError: (error, type) => viewer.controlFailed(`input (${type})`, error),
  onLockChange: (locked) => {
    state.control.pointerLocked = locked;
    render();
  },
  isLocal: isOverlayShortcut,
});

const frameTimer = new FrameTimer(el.video);

const fit = new ScreenFit({
  area: el.stage,
  call: (request) => viewer.controlCall('dr.screen.fit', request),
  allowed: () => state.control.session && state.control.you && state.control.resizable,
  onResult: (result) => {
    const { width, height, dpi } = result;
    state.control.fitted = typeof width === 'number' && typeof height === 'number'
      ? { width, height, dpi: typeof dpi === 'number' ? dpi : 96 } : null;
    render();
  },
  onError: () => {}, // controlCall put it in the error list
});

/** The link's parameters (link.js); secrets from the fragment are used with a warning, secrets
 * in the query refused. The address bar keeps the public parameters only (in the fragment). */
function readLink() {
  const link = parseLink(location.search, location.hash);
  history.replaceState(null, '', `${location.pathname}${link.cleanHash}`);
  const warnings = [];
  /** @param {string[]} names */
  const them = (names) => (names.length > 1 ? 'them' : 'it');
  if (link.secretsInQuery.length) {
    warnings.push(`This link carried the ${link.secretsInQuery.join(' and ')} in its query, which is `
      + `sent to the viewer's web server: ignored. Paste ${them(link.secretsInQuery)} into the form `
      + 'instead.');
  }
  if (link.secretsInFragment.length) {
    warnings.push(`This link carried the ${link.secretsInFragment.join(' and ')}: your browser's `
      + `history keeps ${them(link.secretsInFragment)}, even though the address bar no longer `
      + 'shows it. Use links without secrets and paste the token and the passphrase.');
  }
  el.linkWarning.textContent = warnings.join(' ');
  el.linkWarning.hidden = warnings.length === 0;
  return link;
}

function formValues() {
  return {
    url: el.url.value.trim(),
    token: el.token.value.trim(),
    passphrase: el.passphrase.value,
    keyIndex: el.keyIndex.value.trim(),
    runner: el.runner.value.trim(),
    control: el.wantControl.checked,
  };
}

async function connectFromForm() {
  try {
    await viewer.connect(formValues());
  } catch (error) {
    console.warn('connect failed:', viewer.redact(error?.message ?? error));
  }
}

el.form.addEventListener('submit', (event) => {
  event.preventDefault();
  connectFromForm();
});
el.disconnect.addEventListener('click', () => viewer.disconnect());
el.form.addEventListener('input', render);
el.video.addEventListener('resize', render);
window.addEventListener('resize', render);

// Control buttons: failures are already in the error list (controlCall), so they are dropped here.
/** @param {Promise<unknown>} promise */
const quietly = (promise) => promise.catch(() => {});
el.takeControl.addEventListener('click', () => quietly(viewer.requestControl()));
el.releaseControl.addEventListener('click', () => quietly(viewer.releaseControl()));
el.monitor.addEventListener('change', () => {
  quietly(viewer.selectMonitor(el.monitor.value).finally(render)); // render() shows the real selection
});
el.keyframe.addEventListener('click', () => quietly(viewer.controlCall('dr.keyframe')));
el.statsToggle.addEventListener('click', () => viewer.toggleOverlay());
// In the capture phase, before input.js sees the key (which then keeps it from the host).
window.addEventListener('keydown', (event) => {
  if (!isOverlayShortcut(event)) return;
  event.preventDefault();
  if (!event.repeat) viewer.toggleOverlay();
}, { capture: true });
el.fit.addEventListener('change', () => {
  fit.enabled = el.fit.checked;
  fit.forget();
  if (fit.enabled) fit.fit();
});
el.pointerLock.addEventListener('click', () => {
  input.lockPointer().catch((error) => viewer.controlFailed('pointer lock', error));
});
el.typeForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = el.typeText.value;
  if (!text) return;
  viewer.typeText(text).then(() => {
    el.typeText.value = '';
  }, (error) => viewer.controlFailed('type text', error));
});
el.clipboardSet.addEventListener('click', () => {
  quietly(viewer.controlCall('dr.clipboard.set', { text: el.clipboardText.value }));
});
el.clipboardGet.addEventListener('click', () => {
  quietly(viewer.controlCall('dr.clipboard.get').then((result) => {
    el.clipboardText.value = typeof result.text === 'string' ? result.text : '';
  }));
});
el.soundUnblock.addEventListener('click', () => sound.unblock());
el.soundMute.addEventListener('click', () => sound.setMuted(!sound.muted));
el.soundVolume.addEventListener('input', () => sound.setVolume(Number(el.soundVolume.value)));
el.microphone.addEventListener('click', () => {
  quietly(microphone.status === 'on' ? viewer.stopMicrophone() : viewer.startMicrophone());
});
input.attach();
fit.attach();

const link = readLink();
el.url.value = link.url;
el.token.value = link.token;
el.passphrase.value = link.passphrase;
el.keyIndex.value = link.keyIndex;
el.runner.value = link.runner;
el.wantControl.checked = link.control;

/** The test and tool hook documented at the top of this file. */
const api = {
  state,
  samplePixels,
  /** @param {Parameters<Viewer['connect']>[0]} options */
  connect: (options) => viewer.connect(options),
  disconnect: () => viewer.disconnect(),
  /** @param {string} passphrase @param {number | string} [keyIndex] */
  setKey: (passphrase, keyIndex) => viewer.setKey(passphrase, keyIndex),
  get room() {
    return viewer.room;
  },
  get control() {
    return viewer.control;
  },
  /** @param {Record<string, unknown>} message @param {{reliable?: boolean}} [options] */
  sendInput: (message, options) => viewer.sendInput(message, options),
  /** @param {string} method @param {Record<string, unknown>} [params] */
  call: (method, params) => viewer.controlCall(method, params),
  /** @param {string} text */
  typeText: (text) => viewer.typeText(text),
  /** @param {string} id */
  selectMonitor: (id) => viewer.selectMonitor(id),
  requestControl: () => viewer.requestControl(),
  releaseControl: () => viewer.releaseControl(),
  /** @param {boolean} enabled */
  setFit: (enabled) => {
    el.fit.checked = Boolean(enabled);
    fit.enabled = el.fit.checked;
    fit.forget();
    return fit.enabled ? fit.fit() : Promise.resolve(null);
  },
  toggleOverlay: () => viewer.toggleOverlay(),
  soundPeak: () => sound.peak(),
  soundLevel: () => sound.level(),
  unblockSound: () => sound.unblock(),
  /** @param {boolean} muted */
  setSoundMuted: (muted) => sound.setMuted(muted),
  /** @param {number} volume */
  setVolume: (volume) => sound.setVolume(volume),
  startMicrophone: () => viewer.startMicrophone(),
  stopMicrophone: () => viewer.stopMicrophone(),
};
/** @type {any} */ (window).viewer = api;

setInterval(() => viewer.refresh(), STATS_INTERVAL_MS);
setInterval(() => viewer.sampleStall(), STALL_SAMPLE_MS);
setInterval(() => viewer.pollControl(), CONTROL_STATS_INTERVAL_MS);
render();
if (link.url && link.token && link.passphrase) connectFromForm();
