// Reference viewer: joins a LiveKit room with a shared E2EE passphrase, decrypts the runner's
// screen share and shows it.
//
// For tests and tools it exposes window.viewer:
//   window.viewer.state            live object, refreshed every STATS_INTERVAL_MS (see `state`)
//   window.viewer.samplePixels(pts) [[r, g, b], ...] at normalized [x, y] points of the current
//                                   video frame, or null before the first frame
//   window.viewer.connect({url, token, passphrase, keyIndex}), window.viewer.disconnect()
//                                   (both async; keyIndex defaults to 0)
//   window.viewer.setKey(passphrase, keyIndex)  (async) add or replace the key at keyIndex
//                                   (0..15) without reconnecting, e.g. after the publisher rotated
//                                   to a new key index; kept if the viewer joins the room again
//
// Link parameters (query or fragment; the fragment is never sent to a server): url, token,
// passphrase and keyIndex (the key index of the passphrase, default 0).
//
// The token and passphrase are never logged or shown; they are removed from the address bar once
// read, and redacted from any error text before it is displayed.
import {
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
};

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

function showFirstVideo() {
  if (shown || !room) return;
  for (const participant of room.remoteParticipants.values()) {
    for (const publication of participant.videoTrackPublications.values()) {
      if (publication.track) {
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
}

// --- connection --------------------------------------------------------------------------------

/** Join a room; a fresh session, so the error count starts again at 0 and the only key is
 * `passphrase` at `keyIndex` (default 0). */
async function connect({ url, token, passphrase, keyIndex = 0 }) {
  Object.assign(state, { encryptionErrors: 0, lastError: '' });
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
  });
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
  render();
}

function wire(thisRoom, credentials, session) {
  const current = () => room === thisRoom;
  thisRoom
    .on(RoomEvent.ConnectionStateChanged, (connectionState) => {
      if (current()) state.state = connectionState;
      render();
    })
    .on(RoomEvent.Disconnected, (reason) => {
      if (!current() || !session.joined) return; // a failed join is handled in join()
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
        showFirstVideo();
      }
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
}

// --- page wiring -------------------------------------------------------------------------------

/** url, token, passphrase and keyIndex from the query and the fragment (the fragment wins:
 * browsers never send it to a server). */
function readLinkParameters() {
  const query = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));
  const pick = (name) => fragment.get(name) ?? query.get(name) ?? '';
  const params = {
    url: pick('url'),
    token: pick('token'),
    passphrase: pick('passphrase'),
    keyIndex: pick('keyIndex') || '0',
  };
  // Keep only the server URL in the address bar, so secrets stay out of history and screenshots.
  const keep = params.url ? `?${new URLSearchParams({ url: params.url })}` : '';
  history.replaceState(null, '', `${location.pathname}${keep}`);
  return params;
}

function formValues() {
  return {
    url: el.url.value.trim(),
    token: el.token.value.trim(),
    passphrase: el.passphrase.value,
    keyIndex: el.keyIndex.value.trim(),
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

const link = readLinkParameters();
el.url.value = link.url;
el.token.value = link.token;
el.passphrase.value = link.passphrase;
el.keyIndex.value = link.keyIndex;

window.viewer = {
  state,
  samplePixels,
  connect,
  disconnect,
  setKey,
  get room() {
    return room;
  },
};

setInterval(refresh, STATS_INTERVAL_MS);
render();
if (link.url && link.token && link.passphrase) connectFromForm();
