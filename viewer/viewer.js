// Reference viewer: joins a LiveKit room with a shared E2EE passphrase, decrypts the runner's
// screen share and shows it.
//
// For tests and tools it exposes window.viewer:
//   window.viewer.state            live object, refreshed every STATS_INTERVAL_MS (see `state`)
//   window.viewer.samplePixels(pts) [[r, g, b], ...] at normalized [x, y] points of the current
//                                   video frame, or null before the first frame
//   window.viewer.connect({url, token, passphrase, keyIndex, control, runner}),
//   window.viewer.disconnect()      (both async; keyIndex defaults to 0; control (default true):
//                                   request control once the control session is open; runner:
//                                   the runner's identity, default the participant whose screen
//                                   is shown)
//   window.viewer.setKey(passphrase, keyIndex)  (async) add or replace the key at keyIndex
//                                   (0..15) without reconnecting, e.g. after the publisher rotated
//                                   to a new key index; kept if the viewer joins the room again.
//                                   Also rekeys the control session (a new dr.hello with the new
//                                   key; the old session is kept if the runner does not take it)
//
// Remote control (docs/protocol.md; control.js, input.js):
//   window.viewer.control           the live ControlSession, or null
//   window.viewer.state.control     {session, you, controller, monitors, selected, viewOnly,
//                                   clipboardMode, lastError, clipboard, rejected, runner,
//                                   rttMs, stats, pointerLocked} (see `state`)
//   window.viewer.sendInput(message, {reliable = true})  seal and send one input message (async)
//   window.viewer.call(method, params)  sealed RPC; resolves to the result, or rejects with an
//                                   Error whose .code is the runner's error code
//   window.viewer.typeText(text), .selectMonitor(id), .requestControl(), .releaseControl()
//                                   (async)
//
// Link parameters (query or fragment; the fragment is never sent to a server): url, token,
// passphrase, keyIndex (the key index of the passphrase, default 0), runner (identity) and
// control (0: do not request control on connect).
//
// The token and passphrase are never logged or shown; they are removed from the address bar once
// read, and redacted from any error text before it is displayed. Clipboard text is never put into
// an error message or a log line.
import { ControlSession } from '/control.js';
import { InputCapture, textChunks } from '/input.js';
import {
  ConnectionState,
  DisconnectReason,
  ExternalE2EEKeyProvider,
  LogLevel,
  Room,
  RoomEvent,
  Track,
  createKeyMaterialFromString,
  isE2EESupported,
  setLogLevel,
} from '/vendor/livekit-client.esm.mjs';

const E2EE_WORKER_URL = new URL('/vendor/livekit-client.e2ee.worker.mjs', location.href);
const STATS_INTERVAL_MS = 250;
const CONTROL_STATS_INTERVAL_MS = 2000; // dr.ping and dr.stats
const CONTROL_CLIENT = 'desktop-runner reference viewer';
const CLIPBOARD_TO_HOST = new Set(['to-host', 'both']);
const CLIPBOARD_FROM_HOST = new Set(['from-host', 'both']);
const REJOIN_DELAY_MS = 2000;
const MAX_LISTED_ERRORS = 50;
// livekit-client's key ring size (KEY_PROVIDER_DEFAULTS.keyringSize). A received frame picks its
// key by the index it carries, without wrapping, so only 0..KEY_RING_SIZE-1 are usable.
const KEY_RING_SIZE = 16;
// Disconnects after which joining again cannot help (or is not wanted).
const FINAL_DISCONNECT_REASONS = new Set([
  DisconnectReason.CLIENT_INITIATED,
  DisconnectReason.DUPLICATE_IDENTITY,
  DisconnectReason.PARTICIPANT_REMOVED,
  DisconnectReason.USER_REJECTED,
]);

/** What the page shows, and what tests read. Mutated in place; never replaced. */
const state = {
  // 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'signalReconnecting' | 'disconnected'
  // | 'rejoining' (waiting to join again after an unexpected disconnect) | 'failed'
  state: 'idle',
  e2eeEnabled: false, // our side of the room has E2EE switched on
  encryptionErrors: 0, // RoomEvent.EncryptionError count (livekit-client throttles: <= 1/s, 5/min)
  lastError: '', // the latest error of any kind, secrets redacted
  framesDecoded: 0, // inbound-rtp framesDecoded of the shown video track
  videoWidth: 0,
  videoHeight: 0,
  publisher: '', // identity of the participant whose video is shown
  trackEncrypted: false, // the shown track is announced as end-to-end encrypted by its publisher
  control: null, // remote control, see controlState()
};

/** Remote control as the page shows it (state.control, reset in place for every new session). */
function controlState() {
  return {
    runner: '', // identity the control session talks to
    session: false, // a control session is open (dr.hello answered)
    you: false, // this session has control: input is sent
    controller: null, // identity in control, or null
    monitors: [], // the runner's monitor objects (id, name, x, y, width, height, primary, scale)
    selected: null, // id of the monitor shown (and that pointer positions refer to)
    viewOnly: false, // the runner refuses all input (control.view_only)
    clipboardMode: null, // the runner's clipboard.mode: off | to-host | from-host | both
    lastError: '', // the latest control error, secrets and clipboard text never included
    clipboard: null, // text of the last `clipboard` push
    rejected: 0, // runner packets on our topic that failed to open or were stale
    rttMs: null, // dr.ping round trip
    stats: null, // the last dr.stats result
    pointerLocked: false,
  };
}
state.control = controlState();

const el = {
  form: document.getElementById('connect-form'),
  url: document.getElementById('url'),
  token: document.getElementById('token'),
  passphrase: document.getElementById('passphrase'),
  keyIndex: document.getElementById('key-index'),
  tokenHint: document.getElementById('token-hint'),
  passphraseHint: document.getElementById('passphrase-hint'),
  connect: document.getElementById('connect'),
  disconnect: document.getElementById('disconnect'),
  video: document.getElementById('screen'),
  placeholder: document.getElementById('placeholder'),
  connectionState: document.getElementById('connection-state'),
  encryptionState: document.getElementById('encryption-state'),
  publisherState: document.getElementById('publisher-state'),
  frames: document.getElementById('frames'),
  videoSize: document.getElementById('video-size'),
  errorCount: document.getElementById('error-count'),
  lastError: document.getElementById('last-error'),
  errors: document.getElementById('errors'),
  runner: document.getElementById('runner'),
  wantControl: document.getElementById('want-control'),
  stage: document.getElementById('stage'),
  controlPanel: document.getElementById('control-panel'),
  controlState: document.getElementById('control-state'),
  takeControl: document.getElementById('take-control'),
  releaseControl: document.getElementById('release-control'),
  monitor: document.getElementById('monitor'),
  keyframe: document.getElementById('keyframe'),
  pointerLock: document.getElementById('pointer-lock'),
  typeForm: document.getElementById('type-form'),
  typeText: document.getElementById('type-text'),
  typeSend: document.getElementById('type-send'),
  clipboardText: document.getElementById('clipboard-text'),
  clipboardSet: document.getElementById('clipboard-set'),
  clipboardGet: document.getElementById('clipboard-get'),
  clipboardHost: document.getElementById('clipboard-host'),
  controlStats: document.getElementById('control-stats'),
};

let room = null;
let worker = null; // the E2EE worker of `room`: livekit-client leaves terminating it to its owner
let keyProvider = null; // the key provider of `room`
// Keys of the current session, key index -> passphrase, in the order they were set: the one from
// connect() plus any setKey(). A rejoin installs them all again.
let sessionKeys = new Map();
let shown = null; // { track, publication, participant } whose video is attached
let secrets = []; // token and passphrases of the current session, for redaction only
let rejoinTimer = null;
let currentCredentials = null;
let lastProgress = { frames: -1, at: 0 };
// After livekit-client resumed a connection (or the viewer joined again), the shown track can stay
// black for good (seen after a 30 s network freeze while the runner had reconnected afresh): within a
// minute of such a resume, a picture that stops for 3 s makes the viewer join again. Outside that window a stall is left
// alone (a missing key also stops the picture; joining again would not help there).
const STALL_REJOIN_MS = 3000;
const STALL_AFTER_RESUME_WINDOW_MS = 60000;
let lastReconnectAt = -Infinity;
let control = null; // the ControlSession of `room`, once the runner is known and present
let controlOptions = { runner: '' }; // from connect(): an explicit runner identity
let wantControl = true; // request control whenever a control session opens
let reportedControlError = ''; // the last control error put into the error list (no repeats)

setLogLevel(LogLevel.warn);

// --- errors ------------------------------------------------------------------------------------

function redact(text) {
  let out = String(text);
  for (const secret of secrets) {
    if (secret) out = out.split(secret).join('[redacted]');
  }
  return out;
}

function reportError(message, { encryption = false } = {}) {
  const text = redact(message);
  state.lastError = text;
  if (encryption) state.encryptionErrors += 1;
  const item = document.createElement('li');
  const time = document.createElement('time');
  time.textContent = new Date().toLocaleTimeString();
  item.append(time, ' ', encryption ? 'decryption: ' : '', text);
  el.errors.prepend(item);
  while (el.errors.children.length > MAX_LISTED_ERRORS) el.errors.lastElementChild.remove();
  render();
}

// --- the shown track ---------------------------------------------------------------------------

function show(track, publication, participant) {
  shown = { track, publication, participant };
  track.attach(el.video);
  state.publisher = participant.identity;
  state.trackEncrypted = publication.isEncrypted;
  state.framesDecoded = 0;
  startControl();
  render();
}

function unshow() {
  if (!shown) return;
  shown.track.detach(el.video);
  shown = null;
  Object.assign(state, {
    publisher: '', trackEncrypted: false, framesDecoded: 0, videoWidth: 0, videoHeight: 0,
  });
  render();
}

/** Show the first subscribed video track other than `except`. */
function showFirstVideo(except = null) {
  if (shown || !room) return;
  for (const participant of room.remoteParticipants.values()) {
    for (const publication of participant.videoTrackPublications.values()) {
      if (publication.track && publication.track !== except) {
        show(publication.track, publication, participant);
        return;
      }
    }
  }
}

// --- keys --------------------------------------------------------------------------------------

function checkKeyIndex(value) {
  const index = Number(value); // '' (an empty form field) is 0 too
  if (!Number.isInteger(index) || index < 0 || index >= KEY_RING_SIZE) {
    throw new RangeError(`key index must be a whole number from 0 to ${KEY_RING_SIZE - 1}`);
  }
  return index;
}

/**
 * Put the key for `passphrase` at `keyIndex` into `provider`.
 *
 * ExternalE2EEKeyProvider.setKey(passphrase) always uses index 0. A publisher that rotates keys
 * encrypts at other indexes, so we do what setKey does (PBKDF2 key material, exactly as
 * createKeyMaterialFromString builds it for setKey) and hand it to the provider's own
 * BaseKeyProvider.onSetEncryptionKey(key, participantIdentity, keyIndex), with no identity: a
 * shared key. That method is `protected` only in TypeScript; it stores the key (so a later join
 * sends it to the worker again) and emits SetKey, which a connected room forwards to its E2EE
 * worker at once.
 */
async function addPassphraseKey(provider, passphrase, keyIndex) {
  const material = await createKeyMaterialFromString(passphrase);
  provider.onSetEncryptionKey(material, undefined, keyIndex);
}

/** Add or replace the key at `keyIndex` for this session, without reconnecting. */
async function setKey(passphrase, keyIndex = 0) {
  const index = checkKeyIndex(keyIndex);
  if (typeof passphrase !== 'string' || !passphrase) throw new TypeError('passphrase is empty');
  if (!keyProvider && rejoinTimer === null) throw new Error('not connected');
  secrets.push(passphrase);
  sessionKeys.delete(index); // re-insert, so it counts as the latest key set
  sessionKeys.set(index, passphrase);
  if (keyProvider) await addPassphraseKey(keyProvider, passphrase, index);
  if (control) {
    // A failure to rekey control is reported, not thrown: the picture's key is in place.
    try {
      await control.setKey(passphrase, index);
    } catch (error) {
      controlFailed('control rekey', error);
    }
  }
}

// --- connection --------------------------------------------------------------------------------

/** Join a room; a fresh session, so the error count starts again at 0 and the only key is
 * `passphrase` at `keyIndex` (default 0). `control` (default true): request control once the
 * control session is open; `runner`: the runner's identity (default: whoever shares the screen). */
async function connect({
  url, token, passphrase, keyIndex = 0, control: takeControl = true, runner = '',
}) {
  Object.assign(state, { encryptionErrors: 0, lastError: '' });
  controlOptions = { runner: String(runner ?? '').trim() };
  wantControl = takeControl !== false && takeControl !== '0' && takeControl !== 0;
  let index;
  try {
    index = checkKeyIndex(keyIndex);
  } catch (error) {
    state.state = 'failed';
    reportError(error.message);
    throw error;
  }
  sessionKeys = new Map([[index, passphrase]]);
  await join({ url, token });
}

/**
 * One attempt to join. A first attempt that fails ends in state 'failed'; once joined, an
 * unexpected disconnect starts rejoin attempts (`retrying`) every REJOIN_DELAY_MS until one
 * succeeds or the user disconnects.
 */
async function join(credentials, { retrying = false } = {}) {
  const { url, token } = credentials;
  if (retrying) lastReconnectAt = performance.now(); // a rejoin counts as a resume for stall checks
  await disconnect();
  if (!isE2EESupported()) {
    throw new Error('this browser cannot decrypt LiveKit E2EE (no encoded transform support)');
  }
  secrets = [token, ...sessionKeys.values()];
  const thisKeyProvider = new ExternalE2EEKeyProvider();
  keyProvider = thisKeyProvider; // from now on setKey() also adds to this provider
  // The live map, not a copy: a setKey() meanwhile re-inserts its key at the end, so it is
  // visited after any older key at the same index.
  for (const [index, passphrase] of sessionKeys) {
    await addPassphraseKey(thisKeyProvider, passphrase, index);
  }
  const thisWorker = new Worker(E2EE_WORKER_URL, { type: 'module' });
  const thisRoom = new Room({
    adaptiveStream: false,
    dynacast: false,
    encryption: { keyProvider: thisKeyProvider, worker: thisWorker },
    reconnectPolicy: { nextRetryDelayInMs: (ctx) => (ctx.retryCount < 60 ? 1000 : null) },
  });
  currentCredentials = credentials;
  room = thisRoom;
  worker = thisWorker;
  const session = { joined: false };
  wire(thisRoom, credentials, session);
  state.state = 'connecting';
  render();
  try {
    await thisRoom.connect(url, token, { autoSubscribe: true });
    await thisRoom.setE2EEEnabled(true);
  } catch (error) {
    if (room === thisRoom) {
      room = worker = keyProvider = null;
      release(thisRoom, thisWorker);
      reportError(`connect failed: ${error?.message ?? error}`);
      if (retrying) scheduleRejoin(credentials);
      else state.state = 'failed';
      render();
    }
    throw error;
  }
  session.joined = true;
  showFirstVideo();
  startControl();
  render();
}

function wire(thisRoom, credentials, session) {
  const current = () => room === thisRoom;
  thisRoom
    .on(RoomEvent.ConnectionStateChanged, (connectionState) => {
      if (current() && connectionState === 'connected'
          && ['reconnecting', 'signalReconnecting'].includes(state.state)) {
        lastReconnectAt = performance.now();
      }
      if (current()) state.state = connectionState;
      render();
    })
    .on(RoomEvent.Disconnected, (reason) => {
      if (!current() || !session.joined) return; // a failed join is handled in join()
      stopControl();
      unshow();
      state.e2eeEnabled = false;
      if (reason !== undefined && FINAL_DISCONNECT_REASONS.has(reason)) {
        state.state = 'disconnected';
        if (reason !== DisconnectReason.CLIENT_INITIATED) {
          reportError(`disconnected: ${DisconnectReason[reason]}`);
        }
      } else {
        const why = DisconnectReason[reason] ?? 'connection lost';
        reportError(`disconnected: ${why}; joining again`);
        scheduleRejoin(credentials);
      }
      render();
    })
    .on(RoomEvent.TrackSubscribed, (track, publication, participant) => {
      if (current() && track.kind === Track.Kind.Video && !shown) {
        show(track, publication, participant);
      }
    })
    .on(RoomEvent.TrackUnsubscribed, (track) => {
      if (current() && shown?.track === track) {
        unshow();
        // livekit-client emits this while the publication still holds `track` (it is removed
        // just after): without the exception the stopped track was attached again, and the
        // publisher's track republished after a resume (a new SID) was then never shown.
        showFirstVideo(track);
      }
    })
    .on(RoomEvent.ParticipantConnected, () => {
      if (current()) startControl(); // an explicit runner may join after us
    })
    .on(RoomEvent.TrackSubscriptionFailed, (trackSid, participant, reason) => {
      if (!current()) return;
      reportError(`could not subscribe to ${participant?.identity}: ${reason ?? trackSid}`);
    })
    .on(RoomEvent.EncryptionError, (error, participant) => {
      if (!current()) return;
      const who = participant?.identity ? `${participant.identity}: ` : '';
      reportError(`${who}${error?.message ?? error}`, { encryption: true });
    })
    .on(RoomEvent.ParticipantEncryptionStatusChanged, (enabled, participant) => {
      if (!current()) return;
      if (participant === thisRoom.localParticipant) state.e2eeEnabled = enabled;
      if (shown && participant === shown.participant) {
        state.trackEncrypted = shown.publication.isEncrypted;
      }
      render();
    });
}

function scheduleRejoin(credentials) {
  clearTimeout(rejoinTimer);
  state.state = 'rejoining';
  rejoinTimer = setTimeout(() => {
    rejoinTimer = null;
    // A failure is reported, and the next attempt scheduled, by join() itself.
    join(credentials, { retrying: true }).catch(() => {});
  }, REJOIN_DELAY_MS);
}

async function disconnect() {
  clearTimeout(rejoinTimer);
  rejoinTimer = null;
  const [oldRoom, oldWorker] = [room, worker];
  stopControl();
  room = worker = keyProvider = null;
  unshow();
  await release(oldRoom, oldWorker);
  Object.assign(state, { state: oldRoom ? 'disconnected' : state.state, e2eeEnabled: false });
  render();
}

async function release(oldRoom, oldWorker) {
  try {
    await oldRoom?.disconnect();
  } finally {
    oldWorker?.terminate();
  }
}

// --- remote control ----------------------------------------------------------------------------

const input = new InputCapture({
  stage: el.stage,
  video: el.video,
  send: (message, options) => control.send(message, options),
  isActive: () => Boolean(control && shown && state.control.session && state.control.you),
  monitor: () => state.control.selected,
  onError: (error, type) => controlFailed(`input (${type})`, error),
  onLockChange: (locked) => {
    state.control.pointerLocked = locked;
    render();
  },
});

function controlRunner() {
  return controlOptions.runner || state.publisher;
}

/** Open a control session with the runner once it is known and in the room (again after a
 * rejoin, or when another participant's screen is shown). */
function startControl() {
  const runner = controlRunner();
  if (!room || room.state !== ConnectionState.Connected || !runner) return;
  if (control && control.room === room && control.runner === runner) return;
  if (!room.remoteParticipants.has(runner)) return; // ParticipantConnected calls us again
  stopControl();
  const keys = [...sessionKeys]; // [keyIndex, passphrase], the latest last
  const [keyIndex, passphrase] = keys[keys.length - 1];
  const older = keys.length > 1 ? keys[keys.length - 2] : null;
  const session = new ControlSession(room, runner, passphrase, keyIndex, {
    client: CONTROL_CLIENT,
    previous: older ? { keyIndex: older[0], passphrase: older[1] } : undefined,
  });
  control = session;
  state.control.runner = runner;
  wireControl(session);
  session.open().catch((error) => {
    if (control === session) controlFailed('dr.hello', error);
  });
  render();
}

function stopControl() {
  input.forget();
  input.unlockPointer();
  control?.close();
  control = null;
  Object.assign(state.control, controlState());
  reportedControlError = '';
}

function wireControl(session) {
  const mine = () => control === session;
  session.on('session', (hello) => {
    if (!mine()) return;
    const had = state.control.you;
    Object.assign(state.control, {
      session: true,
      you: false, // control belongs to a session; a new one has none yet
      controller: hello.controller ?? null,
      viewOnly: hello.view_only === true,
      clipboardMode: typeof hello.clipboard === 'string' ? hello.clipboard : null,
      lastError: '',
    });
    if (had) input.forget();
    setMonitors(hello.monitors, hello.selected);
    reportedControlError = '';
    render();
    const local = room?.localParticipant.identity;
    const free = hello.controller == null || hello.controller === local;
    if (wantControl && !state.control.viewOnly && free) {
      requestControl().catch(() => {}); // reported by controlCall
    }
  });
  session.on('closed', () => {
    if (!mine()) return;
    Object.assign(state.control, { session: false, you: false });
    input.forget();
    render();
  });
  session.on('rejected', () => {
    if (!mine()) return;
    state.control.rejected = session.rejected;
    render();
  });
  session.on('error', (error) => {
    if (mine()) controlFailed('control session', error);
  });
  session.onPush('monitors', (message) => {
    if (!mine()) return;
    setMonitors(message.monitors, message.selected);
    render();
  });
  session.onPush('control', (message) => {
    if (mine()) setController(message.controller, message.you);
  });
  session.onPush('clipboard', (message) => {
    if (!mine() || typeof message.text !== 'string') return;
    state.control.clipboard = message.text;
    render();
  });
}

function setMonitors(monitors, selected) {
  if (Array.isArray(monitors)) {
    state.control.monitors = monitors.filter((m) => m && typeof m.id === 'string');
  }
  if (typeof selected === 'string' || selected === null) state.control.selected = selected;
}

function setController(controller, you) {
  const had = state.control.you;
  state.control.controller = typeof controller === 'string' ? controller : null;
  state.control.you = you === true;
  if (had && !state.control.you) input.forget(); // the runner released what we held
  render();
}

/** Record a control failure; the error list gets each distinct message once in a row. */
function controlFailed(what, error) {
  const code = error?.code ? ` (${error.code})` : '';
  // Clipboard errors carry only their code: a runner's message might quote the text.
  const detail = /clipboard/.test(what) ? 'failed' : (error?.message ?? String(error));
  const text = redact(`${what}: ${detail}${code}`);
  state.control.lastError = text;
  if (text !== reportedControlError) {
    reportedControlError = text;
    reportError(`control: ${text}`);
  } else {
    render();
  }
}

function requireControl() {
  if (!control) {
    const error = new Error('no control session (not connected, or no runner yet)');
    error.code = 'no_session';
    throw error;
  }
  return control;
}

/** A sealed RPC call; failures are recorded and rethrown (Error with .code). */
async function controlCall(method, params = {}) {
  try {
    return await requireControl().call(method, params);
  } catch (error) {
    controlFailed(method, error);
    throw error;
  }
}

async function sendInput(message, { reliable = true } = {}) {
  return requireControl().send(message, { reliable });
}

async function typeText(text) {
  const session = requireControl();
  for (const chunk of textChunks(text)) await session.send({ t: 'text', text: chunk });
}

async function selectMonitor(id) {
  const result = await controlCall('dr.monitors.select', { id });
  state.control.selected = typeof result.selected === 'string' ? result.selected : id;
  render();
  return result;
}

async function requestControl() {
  wantControl = true;
  const result = await controlCall('dr.control.request');
  setController(result.controller, result.you);
  return result;
}

async function releaseControl() {
  wantControl = false;
  const result = await controlCall('dr.control.release');
  setController(result.controller, result.you);
  return result;
}

let pollingControl = false;

/** dr.ping round trip and dr.stats, every CONTROL_STATS_INTERVAL_MS; also what re-opens a
 * session the runner forgot (call() says hello again on `no_session`). */
async function pollControl() {
  const session = control;
  if (!session || pollingControl || room?.state !== ConnectionState.Connected
      || !room.remoteParticipants.has(session.runner)) return;
  pollingControl = true;
  try {
    const started = performance.now();
    await session.call('dr.ping', { t: Date.now() });
    const rtt = Math.round(performance.now() - started);
    const stats = await session.call('dr.stats');
    if (control === session) Object.assign(state.control, { rttMs: rtt, stats });
  } catch (error) {
    if (control === session) controlFailed('stats', error);
  } finally {
    pollingControl = false;
    render();
  }
}

// --- stats and pixels --------------------------------------------------------------------------

let refreshing = false;

async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    if (shown) {
      const report = await shown.track.getRTCStatsReport();
      report?.forEach((stats) => {
        if (stats.type === 'inbound-rtp' && stats.kind === 'video') {
          state.framesDecoded = stats.framesDecoded ?? 0;
        }
      });
    }
    const now = performance.now();
    // Progress = frames decoded into a real picture (after a resume the element can sit at 2x2
    // while the new track's decoder counts frames).
    const picture = shown && el.video.videoWidth > 2;
    if (!shown || state.state !== 'connected' || (picture && state.framesDecoded !== lastProgress.frames)) {
      lastProgress = { frames: state.framesDecoded, at: now };
    } else if (now - lastProgress.at > STALL_REJOIN_MS && now - lastReconnectAt < STALL_AFTER_RESUME_WINDOW_MS
               && currentCredentials && rejoinTimer === null) {
      lastProgress = { frames: -1, at: now };
      reportError('video stalled; joining again');
      join(currentCredentials, { retrying: true }).catch(() => {});
    }
    state.videoWidth = shown ? el.video.videoWidth : 0;
    state.videoHeight = shown ? el.video.videoHeight : 0;
    if (room) state.e2eeEnabled = room.isE2EEEnabled;
  } catch (error) {
    console.warn('stats failed', error);
  } finally {
    refreshing = false;
  }
  render();
}

const canvas = document.createElement('canvas');
const context = canvas.getContext('2d', { willReadFrequently: true });

/** [[r, g, b], ...] of the current frame at normalized [x, y] points; null before a frame. */
function samplePixels(points) {
  const { videoWidth: w, videoHeight: h } = el.video;
  if (!shown || !w || !h || el.video.readyState < HTMLMediaElement.HAVE_CURRENT_DATA) return null;
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  context.drawImage(el.video, 0, 0, w, h);
  const clamp = (v, size) => Math.min(size - 1, Math.max(0, Math.floor(v * size)));
  return points.map(([x, y]) => {
    const [r, g, b] = context.getImageData(clamp(x, w), clamp(y, h), 1, 1).data;
    return [r, g, b];
  });
}

// --- rendering ---------------------------------------------------------------------------------

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

function setChip(node, text, level) {
  node.textContent = text;
  node.dataset.level = level;
}

function render() {
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
  el.placeholder.hidden = Boolean(shown && state.videoWidth);
  el.placeholder.textContent = shown && state.encryptionErrors && !state.framesDecoded
    ? 'The screen cannot be decrypted: check the passphrase.'
    : 'No screen yet.';
  const busy = room !== null || rejoinTimer !== null;
  el.connect.disabled = busy;
  el.disconnect.disabled = !busy;
  el.tokenHint.textContent = el.token.value ? 'set' : 'not set';
  el.passphraseHint.textContent = el.passphrase.value ? 'set' : 'not set';
  renderControl();
}

function controlSummary() {
  const c = state.control;
  if (!control) return ['no runner yet', 'idle'];
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
  const live = room !== null && [ConnectionState.Connected, ConnectionState.Reconnecting,
    ConnectionState.SignalReconnecting].includes(state.state);
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
  el.clipboardSet.disabled = !c.you || !CLIPBOARD_TO_HOST.has(c.clipboardMode);
  el.clipboardGet.disabled = !c.you || !CLIPBOARD_FROM_HOST.has(c.clipboardMode);
  el.clipboardHost.textContent = c.clipboard ?? '–';
  el.clipboardHost.classList.toggle('muted', c.clipboard === null);
  el.stage.dataset.control = c.you ? 'on' : 'off';
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
}

// --- page wiring -------------------------------------------------------------------------------

/** url, token, passphrase, keyIndex, runner and control from the query and the fragment (the
 * fragment wins: browsers never send it to a server). */
function readLinkParameters() {
  const query = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));
  const pick = (name) => fragment.get(name) ?? query.get(name) ?? '';
  const params = {
    url: pick('url'),
    token: pick('token'),
    passphrase: pick('passphrase'),
    keyIndex: pick('keyIndex') || '0',
    runner: pick('runner'),
    control: pick('control') !== '0',
  };
  // Keep only what is not secret in the address bar, so secrets stay out of history and
  // screenshots.
  const kept = new URLSearchParams();
  if (params.url) kept.set('url', params.url);
  if (params.runner) kept.set('runner', params.runner);
  if (!params.control) kept.set('control', '0');
  const keep = kept.toString() ? `?${kept}` : '';
  history.replaceState(null, '', `${location.pathname}${keep}`);
  return params;
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
    await connect(formValues());
  } catch (error) {
    console.warn('connect failed:', redact(error?.message ?? error));
  }
}

el.form.addEventListener('submit', (event) => {
  event.preventDefault();
  connectFromForm();
});
el.disconnect.addEventListener('click', () => disconnect());
el.form.addEventListener('input', render);
el.video.addEventListener('resize', render);

// Control buttons: failures are already in the error list (controlCall), so they are dropped here.
const quietly = (promise) => promise.catch(() => {});
el.takeControl.addEventListener('click', () => quietly(requestControl()));
el.releaseControl.addEventListener('click', () => quietly(releaseControl()));
el.monitor.addEventListener('change', () => {
  quietly(selectMonitor(el.monitor.value).finally(render)); // render() shows the real selection
});
el.keyframe.addEventListener('click', () => quietly(controlCall('dr.keyframe')));
el.pointerLock.addEventListener('click', () => {
  input.lockPointer().catch((error) => controlFailed('pointer lock', error));
});
el.typeForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = el.typeText.value;
  if (!text) return;
  typeText(text).then(() => {
    el.typeText.value = '';
  }, (error) => controlFailed('type text', error));
});
el.clipboardSet.addEventListener('click', () => {
  quietly(controlCall('dr.clipboard.set', { text: el.clipboardText.value }));
});
el.clipboardGet.addEventListener('click', () => {
  quietly(controlCall('dr.clipboard.get').then((result) => {
    el.clipboardText.value = typeof result.text === 'string' ? result.text : '';
  }));
});
input.attach();

const link = readLinkParameters();
el.url.value = link.url;
el.token.value = link.token;
el.passphrase.value = link.passphrase;
el.keyIndex.value = link.keyIndex;
el.runner.value = link.runner;
el.wantControl.checked = link.control;

window.viewer = {
  state,
  samplePixels,
  connect,
  disconnect,
  setKey,
  get room() {
    return room;
  },
  get control() {
    return control;
  },
  sendInput,
  call: controlCall,
  typeText,
  selectMonitor,
  requestControl,
  releaseControl,
};

setInterval(refresh, STATS_INTERVAL_MS);
setInterval(pollControl, CONTROL_STATS_INTERVAL_MS);
render();
if (link.url && link.token && link.passphrase) connectFromForm();
