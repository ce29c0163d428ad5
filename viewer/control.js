// The desktop-runner control protocol, viewer side (docs/protocol.md is the specification).
//
// Two layers:
//   - the envelope: pure functions over bytes (deriveControlKey, seal, open, ReplayWindow, base64),
//     WebCrypto only, so they run unchanged in Node 20+ and are checked against
//     tests/vectors/control_envelope.json by tests/interop/control_envelope.mjs;
//   - ControlSession: the protocol over a livekit-client Room (dr.hello, sealed RPC calls, sealed
//     input data packets, sealed pushes), re-opening its session when the runner forgets it.
//
// This module imports nothing: the livekit-client Room is handed in, and its events are named by
// their string values (RoomEvent.DataReceived is 'dataReceived', and so on).
//
// Nothing here logs or puts into an error message a passphrase, a key or a message body.

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

export const PROTOCOL_VERSION = 2;
export const ENVELOPE_VERSION = 1;
export const KIND_INPUT = 1; // viewer -> runner, data packet
export const KIND_PUSH = 2; // runner -> viewer, data packet
export const KIND_RPC_REQUEST = 3;
export const KIND_RPC_RESPONSE = 4;
const KINDS = new Set([KIND_INPUT, KIND_PUSH, KIND_RPC_REQUEST, KIND_RPC_RESPONSE]);

/** Topic of input and push data packets, and the AAD context of kinds 1 and 2. */
export const DATA_TOPIC = 'desktop-runner/v1';

export const HEADER_BYTES = 32;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const MIN_ENVELOPE_BYTES = HEADER_BYTES + TAG_BYTES;
export const MAX_KEY_INDEX = 15;
export const REPLAY_WINDOW = 64;
export const MAX_INPUT_ENVELOPE_BYTES = 4096;
export const HELLO_NONCE_BYTES = 16;
// Reliable input kinds carry `o`, their number in the session's reliable input (1, 2, 3, ...
// with no gap); the runner injects them only in that order (docs/protocol.md, "Order").
export const ORDERED_KINDS = new Set(['button', 'wheel', 'key', 'text', 'held', 'reset']);
// Input bodies are padded with spaces to the first of these that fits, so the envelope's length
// does not tell the server which key was pressed (4048: the 4096-byte envelope less header and tag).
export const INPUT_PAD_SIZES = [256, 1024, MAX_INPUT_ENVELOPE_BYTES - 32 - 16];

const MAX_U64 = (1n << 64n) - 1n;
const WINDOW_MASK = (1n << BigInt(REPLAY_WINDOW)) - 1n;
const MAX_LP_BYTES = 0xffff; // lp() carries a 2-byte length
const PBKDF2_SALT = textEncoder.encode('desktop-runner/control');
const PBKDF2_ITERATIONS = 100000;
const HKDF_INFO = textEncoder.encode('desktop-runner/control/v1 aes-256-gcm');
const KEY_BITS = 256;

// livekit-client clamps RPC response timeouts to at least 8 s.
const RPC_RESPONSE_TIMEOUT_MS = 8000;
// Keys a ControlSession tries when it opens a session, newest first: the latest setKey() and the
// one before it, so a viewer given the next key before the runner rotates keeps working.
const KEPT_KEYS = 2;
// Sessions we left (rekey, reopen) that the runner may still push to until it evicts them.
const KEPT_RETIRED_SESSIONS = 8;
// Plain (unsealed) LiveKit RPC errors the runner answers with. docs/protocol.md calls the
// unauthenticated one "1401"; the runner may use another number, so the message decides.
const PLAIN_ERROR_CODES = new Set(['unauthenticated', 'no_session']);
// livekit-client's own RPC error codes (RpcError.ErrorCode), mapped to our error codes.
const LIVEKIT_RPC_ERRORS = new Map([
  [1400, 'unsupported'], // UNSUPPORTED_METHOD: the participant serves no such method
  [1401, 'unreachable'], // RECIPIENT_NOT_FOUND
  [1402, 'too_large'], // REQUEST_PAYLOAD_TOO_LARGE
  [1403, 'unsupported'], // UNSUPPORTED_SERVER
  [1404, 'unsupported'], // UNSUPPORTED_VERSION
  [1501, 'timeout'], // CONNECTION_TIMEOUT
  [1502, 'timeout'], // RESPONSE_TIMEOUT
  [1503, 'unreachable'], // RECIPIENT_DISCONNECTED
  [1504, 'too_large'], // RESPONSE_PAYLOAD_TOO_LARGE
  [1505, 'unreachable'], // SEND_FAILED
]);

// --- errors --------------------------------------------------------------------------------------

/** A control failure. `code` is one of docs/protocol.md's error codes when the runner said so
 * (`no_session`, `no_control`, `forbidden`, `busy`, ...), else one of ours: `auth` (an envelope
 * did not verify), `replay`, `unauthenticated` (the runner could not open our request: wrong key or
 * key index), `unsupported`, `unreachable`, `timeout`, `too_large`, `rpc` (another LiveKit RPC
 * error, see `rpcCode`), `bad_response`, `protocol`, `size`, `closed`. The message never holds
 * secrets or message contents. */
export class ControlError extends Error {
  constructor(code, message, { rpcCode } = {}) {
    super(message);
    this.name = 'ControlError';
    this.code = code;
    if (rpcCode !== undefined) this.rpcCode = rpcCode;
  }
}

// --- bytes ---------------------------------------------------------------------------------------

function asBytes(data, name) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError(`${name} must be a Uint8Array`);
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i += 1) diff |= a[i] ^ b[i];
  return diff === 0;
}

export function randomBytes(length) {
  return globalThis.crypto.getRandomValues(new Uint8Array(length));
}

/** Standard base64 with padding (what RPC payloads carry). */
export function toBase64(bytes) {
  const data = asBytes(bytes, 'bytes');
  let binary = '';
  for (let i = 0; i < data.length; i += 0x8000) {
    binary += String.fromCharCode(...data.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Decode standard base64 with padding; anything else throws ControlError('auth'). */
export function fromBase64(text) {
  if (typeof text !== 'string' || text.length % 4 !== 0
      || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw new ControlError('auth', 'payload is not standard base64');
  }
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) out[i] = binary.charCodeAt(i);
  return out;
}

/** JSON -> UTF-8 bytes. */
export function encodeJson(value) {
  return textEncoder.encode(JSON.stringify(value));
}

/** `body` (UTF-8 JSON bytes) padded with spaces to an INPUT_PAD_SIZES size; null if too long. */
export function padInputBody(body) {
  const size = INPUT_PAD_SIZES.find((n) => body.length <= n);
  if (size === undefined) return null;
  const padded = new Uint8Array(size).fill(0x20);
  padded.set(body);
  return padded;
}

function decodeJsonObject(bytes) {
  let value;
  try {
    value = JSON.parse(textDecoder.decode(bytes));
  } catch {
    return null;
  }
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : null;
}

// --- keys ----------------------------------------------------------------------------------------

/**
 * The control key of a room passphrase: PBKDF2-HMAC-SHA256 (salt "desktop-runner/control",
 * 100000 iterations, 32 bytes), then HKDF-SHA256 (empty salt, info "desktop-runner/control/v1
 * aes-256-gcm") to an AES-GCM-256 CryptoKey. Not extractable unless asked (tests compare bytes).
 */
export async function deriveControlKey(passphrase, { extractable = false } = {}) {
  const password = typeof passphrase === 'string' ? textEncoder.encode(passphrase)
    : asBytes(passphrase, 'passphrase');
  const { subtle } = globalThis.crypto;
  const pbkdf2 = await subtle.importKey('raw', password, 'PBKDF2', false, ['deriveBits']);
  const ikm = await subtle.deriveBits(
    { name: 'PBKDF2', salt: PBKDF2_SALT, iterations: PBKDF2_ITERATIONS, hash: 'SHA-256' },
    pbkdf2,
    KEY_BITS,
  );
  const hkdf = await subtle.importKey('raw', ikm, 'HKDF', false, ['deriveKey']);
  return subtle.deriveKey(
    { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: HKDF_INFO },
    hkdf,
    { name: 'AES-GCM', length: KEY_BITS },
    extractable,
    ['encrypt', 'decrypt'],
  );
}

/** An AES-GCM-256 CryptoKey from 32 raw key bytes (for test vectors given as key_hex). */
export async function importControlKey(raw, { extractable = false } = {}) {
  const bytes = asBytes(raw, 'raw key');
  if (bytes.length !== KEY_BITS / 8) throw new RangeError('a control key is 32 bytes');
  return globalThis.crypto.subtle.importKey('raw', bytes, { name: 'AES-GCM' }, extractable,
    ['encrypt', 'decrypt']);
}

// --- envelope ------------------------------------------------------------------------------------

/** A 64-bit unsigned field as BigInt (accepts BigInt, a safe integer Number or decimal string). */
function toU64(value, name, min = 0n) {
  let big;
  if (typeof value === 'bigint') big = value;
  else if (typeof value === 'number' && Number.isSafeInteger(value)) big = BigInt(value);
  else if (typeof value === 'string' && /^[0-9]+$/.test(value)) big = BigInt(value);
  else throw new TypeError(`${name} must be a BigInt`);
  if (big < min || big > MAX_U64) throw new RangeError(`${name} is out of range`);
  return big;
}

/** lp(s) = 2-byte big-endian length || UTF-8 bytes of s. */
function lengthPrefixed(text, name) {
  if (typeof text !== 'string') throw new TypeError(`${name} must be a string`);
  const raw = textEncoder.encode(text);
  if (raw.length > MAX_LP_BYTES) throw new RangeError(`${name} is longer than ${MAX_LP_BYTES} bytes`);
  const out = new Uint8Array(2 + raw.length);
  out[0] = raw.length >> 8;
  out[1] = raw.length & 0xff;
  out.set(raw, 2);
  return out;
}

function additionalData(header, { sender, recipient, context }) {
  return concat([
    header,
    lengthPrefixed(sender, 'sender'),
    lengthPrefixed(recipient, 'recipient'),
    lengthPrefixed(context, 'context'),
  ]);
}

/** The 32-byte clear header. */
function packHeader(kind, keyIndex, session, seq, nonce) {
  const header = new Uint8Array(HEADER_BYTES);
  const view = new DataView(header.buffer);
  header[0] = ENVELOPE_VERSION;
  header[1] = kind;
  header[2] = keyIndex;
  header[3] = 0; // reserved
  view.setBigUint64(4, session);
  view.setBigUint64(12, seq);
  header.set(nonce, 20);
  return header;
}

/**
 * The clear header of an envelope, unauthenticated: {kind, keyIndex, session, seq, nonce}. Throws
 * ControlError('auth') when it cannot be one of ours.
 */
export function parseHeader(envelope) {
  const bytes = asBytes(envelope, 'envelope');
  if (bytes.length < MIN_ENVELOPE_BYTES) {
    throw new ControlError('auth', `envelope of ${bytes.length} bytes is shorter than ${MIN_ENVELOPE_BYTES}`);
  }
  if (bytes[0] !== ENVELOPE_VERSION) {
    throw new ControlError('auth', `envelope version ${bytes[0]}, expected ${ENVELOPE_VERSION}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  const seq = view.getBigUint64(12);
  if (!KINDS.has(bytes[1]) || bytes[3] !== 0 || seq === 0n) {
    throw new ControlError('auth', 'malformed envelope header');
  }
  return {
    kind: bytes[1],
    keyIndex: bytes[2],
    session: view.getBigUint64(4),
    seq,
    nonce: bytes.slice(20, HEADER_BYTES),
  };
}

/**
 * Seal `body` (Uint8Array, normally UTF-8 JSON) into an envelope (Uint8Array). `session` and `seq`
 * are BigInt; `nonce` (12 bytes) is for test vectors only and is random otherwise.
 */
export async function seal(key, {
  kind, keyIndex, session, seq, sender, recipient, context, body, nonce,
}) {
  if (!KINDS.has(kind)) throw new RangeError(`unknown envelope kind ${kind}`);
  if (!Number.isInteger(keyIndex) || keyIndex < 0 || keyIndex > MAX_KEY_INDEX) {
    throw new RangeError(`key index must be a whole number from 0 to ${MAX_KEY_INDEX}`);
  }
  const sessionId = toU64(session, 'session');
  const sequence = toU64(seq, 'seq', 1n);
  const iv = nonce === undefined ? randomBytes(NONCE_BYTES) : asBytes(nonce, 'nonce');
  if (iv.length !== NONCE_BYTES) throw new RangeError(`nonce must be ${NONCE_BYTES} bytes`);
  const plaintext = asBytes(body, 'body');
  const header = packHeader(kind, keyIndex, sessionId, sequence, iv);
  const sealed = await globalThis.crypto.subtle.encrypt(
    { name: 'AES-GCM', iv, additionalData: additionalData(header, { sender, recipient, context }) },
    key,
    plaintext,
  );
  return concat([header, new Uint8Array(sealed)]);
}

/**
 * Authenticate and decrypt an envelope sealed by `sender` for `recipient` under `context`.
 * Returns {kind, keyIndex, session, seq, nonce, body}; throws ControlError('auth') for anything
 * that does not verify. Freshness (the replay window) is the caller's business.
 */
export async function open(key, envelope, { sender, recipient, context }) {
  const bytes = asBytes(envelope, 'envelope');
  const header = parseHeader(bytes);
  const aad = additionalData(bytes.subarray(0, HEADER_BYTES), { sender, recipient, context });
  let plaintext;
  try {
    plaintext = await globalThis.crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: header.nonce, additionalData: aad },
      key,
      bytes.subarray(HEADER_BYTES),
    );
  } catch {
    throw new ControlError('auth',
      'envelope does not verify (wrong key, sender, recipient or context)');
  }
  return { ...header, body: new Uint8Array(plaintext) };
}

/**
 * One session's anti-replay window over the peer's sequence numbers (the IPsec/DTLS scheme, as
 * runner.control.envelope.ReplayWindow): the highest number seen and the 64 numbers ending at it.
 * A number already seen, or 64 or more below the highest, is stale. `check` does not record;
 * `accept` records, so call it only for envelopes that verified.
 */
export class ReplayWindow {
  constructor() {
    this.highest = 0n;
    this.seen = 0n; // bit i set: highest - i was seen
  }

  check(seq) {
    const n = toU64(seq, 'seq');
    if (n > this.highest) return true;
    const offset = this.highest - n;
    return offset < BigInt(REPLAY_WINDOW) && ((this.seen >> offset) & 1n) === 0n;
  }

  accept(seq) {
    const n = toU64(seq, 'seq');
    if (!this.check(n)) return false;
    if (n > this.highest) {
      const shift = n - this.highest;
      this.seen = shift < BigInt(REPLAY_WINDOW) ? ((this.seen << shift) | 1n) & WINDOW_MASK : 1n;
      this.highest = n;
    } else {
      this.seen |= 1n << (this.highest - n);
    }
    return true;
  }
}

/** The AAD context of the response to request number `seq` of `method`, e.g. "dr.stats#17". */
export function responseContext(method, seq) {
  return `${method}#${seq}`;
}

// --- the session over a LiveKit room -------------------------------------------------------------

function transportError(method, error) {
  const message = typeof error?.message === 'string' ? error.message : String(error);
  if (PLAIN_ERROR_CODES.has(message)) {
    const hint = message === 'no_session' ? 'the runner has no session for us'
      : 'the runner could not authenticate the request (passphrase or key index differ)';
    return new ControlError(message, `${method}: ${hint}`, { rpcCode: error?.code });
  }
  const rpcCode = typeof error?.code === 'number' ? error.code : undefined;
  const code = LIVEKIT_RPC_ERRORS.get(rpcCode) ?? 'rpc';
  return new ControlError(code, `${method}: ${message}`, { rpcCode });
}

/**
 * The control protocol with one runner over a connected livekit-client Room.
 *
 *   const control = new ControlSession(room, runnerIdentity, passphrase, keyIndex);
 *   const hello = await control.open();           // dr.hello result
 *   await control.call('dr.control.request');     // -> result, or throws ControlError (.code)
 *   await control.send({t: 'key', ...}, {reliable: true});
 *   control.onPush('monitors', (message) => ...);
 *   control.on('session', (hello) => ...);  control.on('closed', (reason) => ...);
 *
 * The session is opened again (a new dr.hello) when a call reports `no_session` and on setKey().
 * After the room reconnects, or the runner rejoins, a dr.ping finds out whether the runner still
 * knows the session (and so re-opens it only when it does not). Input sent while no session is
 * open throws ControlError('no_session'): stale input is never queued.
 */
export class ControlSession {
  /**
   * @param room a connected livekit-client Room
   * @param runnerIdentity the runner's participant identity
   * @param passphrase the room's E2EE passphrase (only its derived key is kept)
   * @param keyIndex the E2EE key index of that passphrase, 0..15; the runner accepts only its own
   * @param options.client a short name sent in dr.hello
   * @param options.responseTimeout RPC response timeout in ms (livekit-client uses at least 8000)
   * @param options.previous an older {passphrase, keyIndex} to fall back on when opening a session
   */
  constructor(room, runnerIdentity, passphrase, keyIndex = 0, {
    client = 'desktop-runner viewer', responseTimeout = RPC_RESPONSE_TIMEOUT_MS, previous,
  } = {}) {
    if (typeof runnerIdentity !== 'string' || !runnerIdentity) {
      throw new TypeError('runner identity is empty');
    }
    this.room = room;
    this.runner = runnerIdentity;
    this.client = client;
    this.responseTimeout = responseTimeout;
    this.closed = false;
    this.rejected = 0; // runner data packets on our topic that failed to open or were stale
    this._keys = []; // [{keyIndex, key: Promise<CryptoKey>}], newest first
    if (previous) this._addKey(previous.passphrase, previous.keyIndex);
    this._addKey(passphrase, keyIndex);
    this._session = null; // {id, key, keyIndex, seq, window, hello, ordinal}
    this._retired = []; // ids of sessions we left; their pushes are dropped without counting
    this._hello = null; // the pending dr.hello of _ready()
    this._opening = new Set(); // every dr.hello in flight (_ready's and setKey's)
    this._generation = 0; // bumped whenever a newer session must win over pending hellos
    this._inbox = Promise.resolve(); // pushes are handled one at a time, in arrival order
    this._outbox = Promise.resolve(); // input is published in sequence-number order
    this._pushHandlers = new Map();
    this._eventHandlers = new Map();
    // After our reconnect or the runner's return, the session may or may not have survived (the
    // runner keeps sessions over its own reconnects, not over a restart or our leaving): probe.
    this._listeners = [
      ['dataReceived', (...args) => this._onData(...args)],
      ['reconnected', () => this._probe()],
      ['participantConnected', (participant) => {
        if (participant?.identity === this.runner) this._probe();
      }],
    ];
    for (const [event, handler] of this._listeners) room.on(event, handler);
  }

  /** The open session's id (BigInt) or null. */
  get sessionId() {
    return this._session?.id ?? null;
  }

  /** The key index of the open session, or of the newest key. */
  get keyIndex() {
    return this._session?.keyIndex ?? this._keys[0].keyIndex;
  }

  /** The dr.hello result of the open session, or null. */
  get hello() {
    return this._session?.hello ?? null;
  }

  /** Open a session unless one is open; resolves to its dr.hello result. */
  async open() {
    return (await this._ready()).hello;
  }

  /** Stop listening to the room and forget the session (the runner ends it when we leave). */
  close() {
    if (this.closed) return;
    this._drop(this._session, 'closed');
    this.closed = true;
    this._generation += 1;
    for (const [event, handler] of this._listeners) this.room.off(event, handler);
    this._pushHandlers.clear();
  }

  /** Forget the session and open a new one (a new dr.hello). */
  reopen(reason = 'reopen') {
    if (this.closed) return Promise.reject(new ControlError('closed', 'control session closed'));
    this._generation += 1;
    this._hello = null;
    this._drop(this._session, reason);
    const opening = this._ready();
    opening.catch((error) => this._emit('error', error));
    return opening;
  }

  /**
   * Use a new passphrase/key index: derive its key and open a session with it. Resolves to true
   * when the runner accepted the new key; to false when it does not know it yet (it still uses the
   * old one, whose session is kept; the new key is tried first whenever a session is opened).
   */
  async setKey(passphrase, keyIndex) {
    if (this.closed) throw new ControlError('closed', 'control session closed');
    const entry = this._addKey(passphrase, keyIndex);
    await entry.key; // a derivation failure throws here
    const generation = ++this._generation;
    this._hello = null;
    try {
      const session = await this._helloWith(entry);
      if (this.closed || generation !== this._generation) {
        this._retire(session);
        return false;
      }
      this._install(session);
      return true;
    } catch (error) {
      if (error.code !== 'unauthenticated') throw error;
      // The runner still uses another key: keep the session we have; without one, try the others.
      if (!this._session && !this.closed) this._ready().catch(() => {});
      return false;
    }
  }

  /** Call an RPC method; resolves to its result or throws ControlError with the runner's code. */
  async call(method, params = {}) {
    for (let attempt = 0; ; attempt += 1) {
      const session = await this._ready();
      try {
        return await this._callIn(session, method, params);
      } catch (error) {
        // The runner forgot the session (restart, our rejoin, eviction) or changed its key.
        const stale = error.code === 'no_session' || error.code === 'unauthenticated';
        if (!stale || attempt > 0 || this.closed) throw error;
        this._drop(session, error.code);
      }
    }
  }

  /**
   * Seal an input message (kind 1) and publish it to the runner on DATA_TOPIC. Resolves when
   * livekit-client took it. Throws ControlError('no_session') without a session, ('size') when
   * the envelope would exceed the runner's 4096-byte limit.
   */
  send(message, { reliable = true } = {}) {
    const session = this._session;
    if (this.closed || !session) {
      return Promise.reject(new ControlError('no_session', 'no control session'));
    }
    let body;
    let sender;
    const ordered = ORDERED_KINDS.has(message.t);
    try {
      body = encodeJson(ordered ? { ...message, o: session.ordinal + 1 } : message);
      sender = this._localIdentity();
    } catch (error) {
      return Promise.reject(error);
    }
    const padded = padInputBody(body);
    if (padded === null) {
      return Promise.reject(new ControlError('size',
        `input message of ${body.length} bytes exceeds the ${MAX_INPUT_ENVELOPE_BYTES}-byte envelope`));
    }
    if (ordered) {
      session.ordinal += 1; // taken only by a message that is sent
      reliable = true; // a lost one would stop all input until the resync
    }
    body = padded;
    const sealing = seal(session.key, {
      kind: KIND_INPUT,
      keyIndex: session.keyIndex,
      session: session.id,
      seq: this._nextSeq(session),
      sender,
      recipient: this.runner,
      context: DATA_TOPIC,
      body,
    });
    // Sealing runs in parallel; publishing waits its turn, so packets leave in sequence order.
    const publishing = this._outbox.then(async () => {
      const bytes = await sealing;
      await this.room.localParticipant.publishData(bytes, {
        reliable, topic: DATA_TOPIC, destinationIdentities: [this.runner],
      });
    });
    this._outbox = publishing.catch(() => {});
    return publishing;
  }

  /** Listen to pushes of type `type` (`monitors`, `control`, `clipboard`; '*' for all).
   * The handler gets the parsed message. Returns a function that removes the handler. */
  onPush(type, handler) {
    return this._subscribe(this._pushHandlers, type, handler);
  }

  /** Lifecycle events: 'session' (dr.hello result of a newly opened session), 'closed'
   * (reason), 'rejected' (reason: a runner packet was dropped), 'error' (a failed reopen). */
  on(event, handler) {
    return this._subscribe(this._eventHandlers, event, handler);
  }

  // --- internals ---------------------------------------------------------------------------

  _subscribe(map, name, handler) {
    if (!map.has(name)) map.set(name, new Set());
    map.get(name).add(handler);
    return () => map.get(name)?.delete(handler);
  }

  _emit(event, detail) {
    for (const handler of [...(this._eventHandlers.get(event) ?? [])]) {
      try {
        handler(detail);
      } catch (error) {
        console.warn(`control ${event} handler failed:`, error?.message ?? error);
      }
    }
  }

  _addKey(passphrase, keyIndex) {
    if (!Number.isInteger(keyIndex) || keyIndex < 0 || keyIndex > MAX_KEY_INDEX) {
      throw new RangeError(`key index must be a whole number from 0 to ${MAX_KEY_INDEX}`);
    }
    if (typeof passphrase !== 'string' || !passphrase) throw new TypeError('passphrase is empty');
    const entry = { keyIndex, key: deriveControlKey(passphrase) };
    entry.key.catch(() => {}); // awaited where used
    // Not deduplicated by index: a new passphrase at the same index, set before the runner
    // rotates, must not lose the one the runner still uses.
    this._keys = [entry, ...this._keys].slice(0, KEPT_KEYS);
    return entry;
  }

  _localIdentity() {
    const identity = this.room.localParticipant?.identity;
    if (!identity) throw new ControlError('closed', 'not connected to a room');
    return identity;
  }

  _nextSeq(session) {
    session.seq += 1n;
    return session.seq;
  }

  /** The open session, or a pending/new dr.hello's. */
  _ready() {
    if (this.closed) return Promise.reject(new ControlError('closed', 'control session closed'));
    if (this._session) return Promise.resolve(this._session);
    if (!this._hello) {
      const generation = this._generation;
      const hello = (async () => {
        try {
          const session = await this._openWithAnyKey();
          if (this.closed) throw new ControlError('closed', 'control session closed');
          if (generation !== this._generation) { // superseded: follow the newer one
            this._retire(session);
            return this._ready();
          }
          this._install(session);
          return session;
        } finally {
          if (this._hello === hello) this._hello = null;
        }
      })();
      this._hello = hello;
    }
    return this._hello;
  }

  _install(session) {
    const previous = this._session;
    this._session = session;
    if (previous && previous !== session) {
      this._retire(previous);
      this._emit('closed', 'replaced');
    }
    this._emit('session', session.hello);
  }

  _drop(session, reason) {
    if (!session || this._session !== session) return;
    this._session = null;
    this._retire(session);
    this._emit('closed', reason);
  }

  _retire(session) {
    this._retired = [session.id, ...this._retired].slice(0, KEPT_RETIRED_SESSIONS);
  }

  async _openWithAnyKey() {
    let lastError = null;
    for (const entry of [...this._keys]) {
      try {
        return await this._helloWith(entry);
      } catch (error) {
        lastError = error;
        if (error.code !== 'unauthenticated') throw error;
      }
    }
    throw lastError;
  }

  /** dr.hello with one key: a new session, verified (nonce echo, context, session id). */
  _helloWith(entry) {
    const hello = this._helloUntracked(entry);
    this._opening.add(hello);
    const forget = () => this._opening.delete(hello);
    hello.then(forget, forget);
    return hello;
  }

  async _helloUntracked(entry) {
    const key = await entry.key;
    const nonce = randomBytes(HELLO_NONCE_BYTES);
    // Session 0 and our first number; the session continues from it (2, 3, ...), which suits a
    // runner that starts its window afresh as well as one that counts the hello in it.
    const pending = { id: 0n, key, keyIndex: entry.keyIndex, seq: 0n, window: null };
    const { header, response } = await this._rpc(pending, 'dr.hello', {
      nonce: toBase64(nonce), client: this.client,
    });
    const result = this._result('dr.hello', response);
    let echoed = null;
    try {
      echoed = fromBase64(result.nonce);
    } catch {
      // checked below
    }
    if (!echoed || !equalBytes(echoed, nonce)) {
      throw new ControlError('auth', 'dr.hello: the answer does not echo our nonce (replayed?)');
    }
    if (typeof result.session !== 'string' || !/^[0-9a-f]{16}$/i.test(result.session)
        || BigInt(`0x${result.session}`) !== header.session || header.session === 0n) {
      throw new ControlError('bad_response', 'dr.hello: session id does not match the envelope');
    }
    if (result.protocol !== PROTOCOL_VERSION) {
      throw new ControlError('protocol',
        `dr.hello: runner speaks control protocol ${result.protocol}, this viewer ${PROTOCOL_VERSION}`);
    }
    const window = new ReplayWindow();
    window.accept(header.seq);
    return {
      id: header.session, key, keyIndex: entry.keyIndex, seq: pending.seq, window, hello: result,
      ordinal: 0,
    };
  }

  async _callIn(session, method, params) {
    const { header, response } = await this._rpc(session, method, params);
    if (header.session !== session.id) {
      // A runner that no longer knows the session may seal its `no_session` answer with session
      // 0; the context still binds it to this very request.
      if (header.session === 0n && response.ok === false && response.error?.code === 'no_session') {
        throw new ControlError('no_session', `${method}: the runner has no session for us`);
      }
      throw new ControlError('auth', `${method}: the answer belongs to another session`);
    }
    if (!session.window.accept(header.seq)) {
      throw new ControlError('replay', `${method}: the answer was replayed`);
    }
    return this._result(method, response);
  }

  /** Seal a request in `session`, call, open the answer; {header, response}. */
  async _rpc(session, method, params) {
    const local = this._localIdentity();
    const seq = this._nextSeq(session);
    const request = await seal(session.key, {
      kind: KIND_RPC_REQUEST,
      keyIndex: session.keyIndex,
      session: session.id,
      seq,
      sender: local,
      recipient: this.runner,
      context: method,
      body: encodeJson(params ?? {}),
    });
    let answer;
    try {
      answer = await this.room.localParticipant.performRpc({
        destinationIdentity: this.runner,
        method,
        payload: toBase64(request),
        responseTimeout: this.responseTimeout,
      });
    } catch (error) {
      throw transportError(method, error);
    }
    let opened;
    try {
      opened = await open(session.key, fromBase64(answer), {
        sender: this.runner, recipient: local, context: responseContext(method, seq),
      });
    } catch {
      throw new ControlError('auth', `${method}: the runner's answer does not verify`);
    }
    if (opened.kind !== KIND_RPC_RESPONSE) {
      throw new ControlError('auth', `${method}: the answer is not an RPC response`);
    }
    const response = decodeJsonObject(opened.body);
    if (!response) throw new ControlError('bad_response', `${method}: the answer is not a JSON object`);
    return { header: opened, response };
  }

  _result(method, response) {
    if (response.ok === true) {
      const { result } = response;
      return result !== null && typeof result === 'object' ? result : {};
    }
    const code = typeof response.error?.code === 'string' ? response.error.code : 'internal';
    const detail = typeof response.error?.message === 'string' ? response.error.message : code;
    throw new ControlError(code, `${method}: ${detail}`);
  }

  /** Does the runner still know our session? call() opens a new one on `no_session`. */
  _probe() {
    if (this.closed) return;
    const probing = this._session ? this.call('dr.ping', { t: 0 }) : this._ready();
    probing.catch((error) => this._emit('error', error));
  }

  _onData(payload, participant, _kind, topic, _encryptionType, participantIdentity) {
    if (this.closed || topic !== DATA_TOPIC) return;
    const sender = participant?.identity ?? participantIdentity;
    if (sender !== this.runner) return;
    const bytes = new Uint8Array(payload); // a copy: livekit-client may reuse its buffer
    this._inbox = this._inbox.then(() => this._receive(bytes)).catch((error) => {
      console.warn('control push handling failed:', error?.message ?? error);
    });
  }

  async _receive(bytes) {
    // A push right after our dr.hello belongs to the session that hello is opening.
    if (this._opening.size) await Promise.allSettled([...this._opening]);
    if (this._hello) await this._hello.catch(() => {});
    const session = this._session;
    let header;
    try {
      header = parseHeader(bytes);
    } catch {
      return this._reject('auth');
    }
    // The runner keeps a session we left until it evicts it, and keeps pushing to it: not an
    // attack, so not counted. (Only a counter depends on this unauthenticated peek.)
    if (this._retired.includes(header.session) && header.session !== session?.id) return undefined;
    if (!session) return this._reject('unknown_session');
    let opened;
    try {
      opened = await open(session.key, bytes, {
        sender: this.runner, recipient: this._localIdentity(), context: DATA_TOPIC,
      });
    } catch {
      return this._reject('auth');
    }
    if (opened.kind !== KIND_PUSH) return this._reject('auth');
    if (opened.session !== session.id) return this._reject('unknown_session');
    if (!session.window.accept(opened.seq)) return this._reject('replay');
    const message = decodeJsonObject(opened.body);
    if (!message || typeof message.t !== 'string') return this._reject('schema');
    if (this._session !== session) return undefined; // replaced meanwhile: no longer ours
    if (message.t === 'resync') {
      // The runner saw a gap in our reliable input (the server dropped or reordered some): it
      // injects none until a reset, which releases everything and puts us back in step.
      this.send({ t: 'reset' }).catch((error) => this._emit('error', error));
    }
    for (const type of [message.t, '*']) {
      for (const handler of [...(this._pushHandlers.get(type) ?? [])]) {
        try {
          handler(message);
        } catch (error) {
          console.warn(`control push handler (${message.t}) failed:`, error?.message ?? error);
        }
      }
    }
    return undefined;
  }

  _reject(reason) {
    this.rejected += 1;
    this._emit('rejected', reason);
  }
}
