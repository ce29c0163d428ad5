// @ts-check
// One join of a LiveKit room: the Room, its E2EE worker and key provider, the video track shown and
// the control session with the runner. The page (viewer.js) makes a new Connection for every join
// (a rejoin too) and closes the old one; a closed Connection's events are ignored, so nothing of an
// earlier room can reach the page.

import {
  ExternalE2EEKeyProvider,
  Room,
  createKeyMaterialFromString,
  isE2EESupported,
} from 'livekit-client';

import { ControlSession } from './control.js';

/** @typedef {import('livekit-client').RemoteTrack} RemoteTrack */
/** @typedef {import('livekit-client').RemoteTrackPublication} RemoteTrackPublication */
/** @typedef {import('livekit-client').RemoteParticipant} RemoteParticipant */
/** @typedef {{url: string, token: string}} Credentials where to join, and the access token */
/**
 * @typedef {object} Shown the video track attached to the page's <video>
 * @property {RemoteTrack} track
 * @property {RemoteTrackPublication} publication
 * @property {RemoteParticipant} participant
 */

const E2EE_WORKER_URL = new URL('./vendor/livekit-client.e2ee.worker.mjs', import.meta.url);
// livekit-client's key ring size (KEY_PROVIDER_DEFAULTS.keyringSize). A received frame picks its
// key by the index it carries, without wrapping, so only 0..KEY_RING_SIZE-1 are usable.
export const KEY_RING_SIZE = 16;
// After an unexpected drop, livekit-client tries to resume every second for a minute.
const RESUME_ATTEMPTS = 60;
const RESUME_DELAY_MS = 1000;

/** A key index from a form field or an API call; RangeError unless 0..15.
 * @param {unknown} value
 * @returns {number} */
export function checkKeyIndex(value) {
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
 * @param {ExternalE2EEKeyProvider} provider
 * @param {string} passphrase
 * @param {number} keyIndex
 */
async function addPassphraseKey(provider, passphrase, keyIndex) {
  const material = await createKeyMaterialFromString(passphrase);
  /** @type {any} */ (provider).onSetEncryptionKey(material, undefined, keyIndex);
}

export class Connection {
  /** @type {Shown | null} */
  shown = null;
  /** @type {ControlSession | null} */
  control = null;
  joined = false; // connect() succeeded
  closed = false; // close() was called: ignore every event from now on
  // Evidence for trust.js's screenVerdict, gathered from this room's events:
  /** @type {Map<string, boolean>} identity -> its frames go through the E2EE worker's decryption */
  decrypting = new Map();
  errorPending = false; // a decryption error for the runner, not yet matched to a frame count
  /** @type {number | null} the shown track's framesDecoded when the last error was seen */
  framesAtError = null;
  confirmed = false; // the runner's dr.hello answer named the runner we expect
  otherRunner = false; // ... or named another one

  /**
   * @param {Credentials} credentials
   * @param {ExternalE2EEKeyProvider} keyProvider holding the session's keys already
   */
  constructor(credentials, keyProvider) {
    this.credentials = credentials;
    this.keyProvider = keyProvider;
    // livekit-client leaves terminating the worker to its owner: close() does.
    this.worker = new Worker(E2EE_WORKER_URL, { type: 'module' });
    this.room = new Room({
      adaptiveStream: false,
      dynacast: false,
      encryption: { keyProvider, worker: this.worker },
      reconnectPolicy: {
        nextRetryDelayInMs: (ctx) => (ctx.retryCount < RESUME_ATTEMPTS ? RESUME_DELAY_MS : null),
      },
    });
  }

  /**
   * A connection whose key provider holds `keys` (key index -> passphrase), in their order: a
   * later key at the same index wins. Throws when this browser cannot decrypt LiveKit E2EE.
   * @param {Credentials} credentials
   * @param {Map<number, string>} keys
   */
  static async create(credentials, keys) {
    if (!isE2EESupported()) {
      throw new Error('this browser cannot decrypt LiveKit E2EE (no encoded transform support)');
    }
    const provider = new ExternalE2EEKeyProvider();
    for (const [index, passphrase] of keys) await addPassphraseKey(provider, passphrase, index);
    return new Connection(credentials, provider);
  }

  /** Join the room with E2EE on. */
  async open() {
    await this.room.connect(this.credentials.url, this.credentials.token, { autoSubscribe: true });
    await this.room.setE2EEEnabled(true);
    this.joined = true;
  }

  /** Add or replace the key at `keyIndex`; a connected room's worker gets it at once.
   * @param {string} passphrase @param {number} keyIndex */
  addKey(passphrase, keyIndex) {
    return addPassphraseKey(this.keyProvider, passphrase, keyIndex);
  }

  /**
   * Start a control session with `runner` (closing another one).
   * @param {string} runner
   * @param {Map<number, string>} keys key index -> passphrase, the latest last
   * @param {string} client
   */
  openControl(runner, keys, client) {
    this.closeControl();
    const entries = [...keys];
    const [keyIndex, passphrase] = entries[entries.length - 1];
    const older = entries.length > 1 ? entries[entries.length - 2] : null;
    this.control = new ControlSession(this.room, runner, passphrase, keyIndex, {
      client,
      previous: older ? { keyIndex: older[0], passphrase: older[1] } : undefined,
    });
    return this.control;
  }

  closeControl() {
    this.control?.close();
    this.control = null;
  }

  /** Leave the room and stop the worker; events after this are ignored by their handlers. */
  async close() {
    this.closed = true;
    this.closeControl();
    try {
      await this.room.disconnect();
    } finally {
      this.worker.terminate();
    }
  }
}
