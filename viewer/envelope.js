// @ts-check
// The control envelope (docs/protocol.md, "Envelope"): pure functions over bytes — key derivation,
// seal, open, the replay window, base64 and JSON helpers. WebCrypto only, so this module runs
// unchanged in Node 20+ and is checked against tests/vectors/control_envelope.json by
// tests/interop/control_envelope.mjs.
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
/** The runner drops input envelopes (kind 1) larger than this. */
export const MAX_INPUT_ENVELOPE_BYTES = 4096;
/** What that leaves for the JSON body of one input message (4048 bytes). */
export const MAX_INPUT_BODY_BYTES = MAX_INPUT_ENVELOPE_BYTES - HEADER_BYTES - TAG_BYTES;
export const HELLO_NONCE_BYTES = 16;
// Reliable input kinds carry `o`, their number in the session's reliable input (1, 2, 3, ...
// with no gap); the runner injects them only in that order (docs/protocol.md, "Order").
export const ORDERED_KINDS = new Set(['button', 'wheel', 'key', 'text', 'held', 'reset']);
// Input bodies are padded with spaces to the first of these that fits, so the envelope's length
// does not tell the server which key was pressed (the last: the whole 4096-byte envelope's body).
export const INPUT_PAD_SIZES = [256, 1024, MAX_INPUT_BODY_BYTES];

const MAX_U64 = (1n << 64n) - 1n;
const WINDOW_MASK = (1n << BigInt(REPLAY_WINDOW)) - 1n;
const MAX_LP_BYTES = 0xffff; // lp() carries a 2-byte length
const PBKDF2_SALT = textEncoder.encode('desktop-runner/control');
const PBKDF2_ITERATIONS = 100000;
const HKDF_INFO = textEncoder.encode('desktop-runner/control/v1 aes-256-gcm');
const KEY_BITS = 256;

/**
 * @typedef {object} Header the 32-byte clear header of an envelope
 * @property {number} kind KIND_*
 * @property {number} keyIndex 0..15
 * @property {bigint} session
 * @property {bigint} seq
 * @property {Uint8Array<ArrayBuffer>} nonce 12 bytes
 */
/** @typedef {Header & {body: Uint8Array}} Opened an envelope that verified, with its plaintext */
/**
 * @typedef {object} Binding who sealed an envelope for whom, and for what (the AAD after the header)
 * @property {string} sender participant identity
 * @property {string} recipient participant identity
 * @property {string} context DATA_TOPIC, the RPC method, or responseContext(method, seq)
 */

// --- errors --------------------------------------------------------------------------------------

/** A control failure. `code` is one of docs/protocol.md's error codes when the runner said so
 * (`no_session`, `no_control`, `forbidden`, `busy`, ...), else one of ours: `auth` (an envelope
 * did not verify), `replay`, `unauthenticated` (the runner could not open our request: wrong key or
 * key index), `unsupported`, `unreachable`, `timeout`, `too_large`, `rpc` (another LiveKit RPC
 * error, see `rpcCode`), `bad_response`, `protocol`, `size`, `closed`. The message never holds
 * secrets or message contents. */
export class ControlError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{rpcCode?: number}} [options]
   */
  constructor(code, message, { rpcCode } = {}) {
    super(message);
    this.name = 'ControlError';
    this.code = code;
    /** @type {number | undefined} livekit-client's RpcError code, when the transport failed */
    this.rpcCode = undefined;
    if (rpcCode !== undefined) this.rpcCode = rpcCode;
  }
}

// --- bytes ---------------------------------------------------------------------------------------

/**
 * The bytes of a Uint8Array, ArrayBuffer or other view, without a copy. (Typed as over an
 * ArrayBuffer, which WebCrypto wants; nothing here is ever given a SharedArrayBuffer.)
 * @param {unknown} data
 * @param {string} name
 * @returns {Uint8Array<ArrayBuffer>}
 */
function asBytes(data, name) {
  /** @type {Uint8Array} */
  let bytes;
  if (data instanceof Uint8Array) bytes = data;
  else if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
  else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  else throw new TypeError(`${name} must be a Uint8Array`);
  return /** @type {Uint8Array<ArrayBuffer>} */ (bytes);
}

/** @param {Uint8Array[]} parts @returns {Uint8Array<ArrayBuffer>} */
function concat(parts) {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Constant-time comparison. @param {Uint8Array} a @param {Uint8Array} b */
export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i += 1) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** @param {number} length */
export function randomBytes(length) {
  return globalThis.crypto.getRandomValues(new Uint8Array(length));
}

/** Standard base64 with padding (what RPC payloads carry). @param {Uint8Array} bytes */
export function toBase64(bytes) {
  const data = asBytes(bytes, 'bytes');
  let binary = '';
  for (let i = 0; i < data.length; i += 0x8000) {
    binary += String.fromCharCode(...data.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Decode standard base64 with padding; anything else throws ControlError('auth').
 * @param {unknown} text */
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

/** JSON -> UTF-8 bytes. @param {unknown} value */
export function encodeJson(value) {
  return textEncoder.encode(JSON.stringify(value));
}

/**
 * `body` (UTF-8 JSON bytes) padded with spaces to an INPUT_PAD_SIZES size; null if too long.
 * @param {Uint8Array} body
 * @returns {Uint8Array | null}
 */
export function padInputBody(body) {
  const size = INPUT_PAD_SIZES.find((n) => body.length <= n);
  if (size === undefined) return null;
  const padded = new Uint8Array(size).fill(0x20);
  padded.set(body);
  return padded;
}

/** UTF-8 JSON -> a plain object, or null for anything else (invalid UTF-8 or JSON, an array...).
 * @param {Uint8Array} bytes
 * @returns {Record<string, any> | null} */
export function decodeJsonObject(bytes) {
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
 * @param {string | Uint8Array} passphrase
 * @param {{extractable?: boolean}} [options]
 * @returns {Promise<CryptoKey>}
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

/** An AES-GCM-256 CryptoKey from 32 raw key bytes (for test vectors given as key_hex).
 * @param {Uint8Array} raw
 * @param {{extractable?: boolean}} [options]
 * @returns {Promise<CryptoKey>} */
export async function importControlKey(raw, { extractable = false } = {}) {
  const bytes = asBytes(raw, 'raw key');
  if (bytes.length !== KEY_BITS / 8) throw new RangeError('a control key is 32 bytes');
  return globalThis.crypto.subtle.importKey('raw', bytes, { name: 'AES-GCM' }, extractable,
    ['encrypt', 'decrypt']);
}

// --- envelope ------------------------------------------------------------------------------------

/** A 64-bit unsigned field as BigInt (accepts BigInt, a safe integer Number or decimal string).
 * @param {unknown} value
 * @param {string} name
 * @param {bigint} [min]
 * @returns {bigint} */
export function toU64(value, name, min = 0n) {
  let big;
  if (typeof value === 'bigint') big = value;
  else if (typeof value === 'number' && Number.isSafeInteger(value)) big = BigInt(value);
  else if (typeof value === 'string' && /^[0-9]+$/.test(value)) big = BigInt(value);
  else throw new TypeError(`${name} must be a BigInt`);
  if (big < min || big > MAX_U64) throw new RangeError(`${name} is out of range`);
  return big;
}

/** lp(s) = 2-byte big-endian length (in bytes, not characters) || UTF-8 bytes of s.
 * @param {unknown} text
 * @param {string} name */
export function lp(text, name) {
  if (typeof text !== 'string') throw new TypeError(`${name} must be a string`);
  const raw = textEncoder.encode(text);
  if (raw.length > MAX_LP_BYTES) throw new RangeError(`${name} is longer than ${MAX_LP_BYTES} bytes`);
  const out = new Uint8Array(2 + raw.length);
  out[0] = raw.length >> 8;
  out[1] = raw.length & 0xff;
  out.set(raw, 2);
  return out;
}

/** @param {Uint8Array} header @param {Binding} binding */
function additionalData(header, { sender, recipient, context }) {
  return concat([header, lp(sender, 'sender'), lp(recipient, 'recipient'), lp(context, 'context')]);
}

/** The 32-byte clear header.
 * @param {number} kind @param {number} keyIndex @param {bigint} session @param {bigint} seq
 * @param {Uint8Array} nonce */
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
 * The clear header of an envelope, unauthenticated. Throws ControlError('auth') when it cannot be
 * one of ours.
 * @param {Uint8Array} envelope
 * @returns {Header}
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
 * @typedef {object} SealFields
 * @property {number} kind
 * @property {number} keyIndex
 * @property {bigint | number | string} session
 * @property {bigint | number | string} seq
 * @property {Uint8Array} body normally UTF-8 JSON
 * @property {Uint8Array} [nonce] 12 bytes, for test vectors only; random otherwise
 */

/**
 * Seal `body` into an envelope.
 * @param {CryptoKey} key
 * @param {SealFields & Binding} fields
 * @returns {Promise<Uint8Array<ArrayBuffer>>}
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
 * Throws ControlError('auth') for anything that does not verify. Freshness (the replay window)
 * is the caller's business.
 * @param {CryptoKey} key
 * @param {Uint8Array} envelope
 * @param {Binding} binding
 * @returns {Promise<Opened>}
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

  /** @param {bigint | number | string} seq */
  check(seq) {
    const n = toU64(seq, 'seq');
    if (n > this.highest) return true;
    const offset = this.highest - n;
    return offset < BigInt(REPLAY_WINDOW) && ((this.seen >> offset) & 1n) === 0n;
  }

  /** @param {bigint | number | string} seq */
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

/** The AAD context of the response to request number `seq` of `method`, e.g. "dr.stats#17".
 * @param {string} method @param {bigint | number} seq */
export function responseContext(method, seq) {
  return `${method}#${seq}`;
}
