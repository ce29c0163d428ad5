// @ts-check
// The desktop-runner control protocol over a livekit-client Room, viewer side (docs/protocol.md is
// the specification): ControlSession says dr.hello to the runner, makes sealed RPC calls, sends
// sealed input data packets and opens sealed pushes, re-opening its session when the runner forgets
// it. The envelope itself (pure functions over bytes) is envelope.js.
//
// This module imports nothing from livekit-client: the Room is handed in, and its events are named
// by their string values (RoomEvent.DataReceived is 'dataReceived', and so on).
//
// Nothing here logs or puts into an error message a passphrase, a key or a message body.

import {
  ControlError,
  DATA_TOPIC,
  HELLO_NONCE_BYTES,
  KIND_INPUT,
  KIND_PUSH,
  KIND_RPC_REQUEST,
  KIND_RPC_RESPONSE,
  MAX_INPUT_ENVELOPE_BYTES,
  MAX_KEY_INDEX,
  ORDERED_KINDS,
  PROTOCOL_VERSION,
  ReplayWindow,
  decodeJsonObject,
  deriveControlKey,
  encodeJson,
  equalBytes,
  fromBase64,
  open,
  padInputBody,
  parseHeader,
  randomBytes,
  responseContext,
  seal,
  toBase64,
} from './envelope.js';

export { ControlError } from './envelope.js';

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

// --- the session over a LiveKit room -------------------------------------------------------------

/** A LiveKit RPC failure as a ControlError. @param {string} method @param {any} error */
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

/** @typedef {import('livekit-client').Room} Room */
/** @typedef {import('livekit-client').RemoteParticipant} RemoteParticipant */
/** @typedef {{keyIndex: number, key: Promise<CryptoKey>}} KeyEntry */
/**
 * @typedef {object} Session an open control session
 * @property {bigint} id
 * @property {CryptoKey} key
 * @property {number} keyIndex
 * @property {bigint} seq our last sequence number in it
 * @property {number} ordinal the `o` of our last reliable input message (docs/protocol.md, "Order")
 * @property {ReplayWindow | null} window the runner's sequence numbers (null while saying hello)
 * @property {Record<string, any>} [hello] the dr.hello result
 */

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
  /** @type {KeyEntry[]} newest first */
  #keys = [];
  /** @type {Session | null} */
  #session = null;
  /** @type {bigint[]} ids of sessions we left; their pushes are dropped without counting */
  #retired = [];
  /** @type {Promise<Session> | null} the pending dr.hello of #ready() */
  #hello = null;
  /** @type {Set<Promise<Session>>} every dr.hello in flight (#ready's and setKey's) */
  #opening = new Set();
  #generation = 0; // bumped whenever a newer session must win over pending hellos
  /** @type {Promise<unknown>} pushes are handled one at a time, in arrival order */
  #inbox = Promise.resolve();
  /** @type {Promise<unknown>} input is published in sequence-number order */
  #outbox = Promise.resolve();
  /** @type {Map<string, Set<(message: Record<string, any>) => void>>} */
  #pushHandlers = new Map();
  /** @type {Map<string, Set<(detail: any) => void>>} */
  #eventHandlers = new Map();
  /** @type {Array<[string, (...args: any[]) => void]>} */
  #listeners;

  /**
   * @param {Room} room a connected livekit-client Room
   * @param {string} runnerIdentity the runner's participant identity
   * @param {string} passphrase the room's E2EE passphrase (only its derived key is kept)
   * @param {number} [keyIndex] the E2EE key index of that passphrase, 0..15; the runner accepts
   *   only its own
   * @param {object} [options]
   * @param {string} [options.client] a short name sent in dr.hello
   * @param {number} [options.responseTimeout] RPC response timeout in ms (livekit-client uses at
   *   least 8000)
   * @param {{passphrase: string, keyIndex: number}} [options.previous] an older key to fall back on
   *   when opening a session
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
    if (previous) this.#addKey(previous.passphrase, previous.keyIndex);
    this.#addKey(passphrase, keyIndex);
    // After our reconnect or the runner's return, the session may or may not have survived (the
    // runner keeps sessions over its own reconnects, not over a restart or our leaving): probe.
    this.#listeners = [
      ['dataReceived', (payload, participant, _kind, topic, _encryptionType, participantIdentity) => {
        this.#onData(payload, participant?.identity ?? participantIdentity, topic);
      }],
      ['reconnected', () => this.#probe()],
      ['participantConnected', (participant) => {
        if (participant?.identity === this.runner) this.#probe();
      }],
    ];
    const events = /** @type {any} */ (room); // event names as strings: see the module comment
    for (const [event, handler] of this.#listeners) events.on(event, handler);
  }

  /** The open session's id (BigInt) or null. */
  get sessionId() {
    return this.#session?.id ?? null;
  }

  /** The key index of the open session, or of the newest key. */
  get keyIndex() {
    return this.#session?.keyIndex ?? this.#keys[0].keyIndex;
  }

  /** The dr.hello result of the open session, or null. */
  get hello() {
    return this.#session?.hello ?? null;
  }

  /** Resolves once every data packet received so far has been handled (pushes are handled one
   * at a time, in arrival order). */
  async whenIdle() {
    await this.#inbox;
  }

  /** Open a session unless one is open; resolves to its dr.hello result. */
  async open() {
    return (await this.#ready()).hello;
  }

  /** Stop listening to the room and forget the session (the runner ends it when we leave). */
  close() {
    if (this.closed) return;
    this.#drop(this.#session, 'closed');
    this.closed = true;
    this.#generation += 1;
    const events = /** @type {any} */ (this.room);
    for (const [event, handler] of this.#listeners) events.off(event, handler);
    this.#pushHandlers.clear();
  }

  /** Forget the session and open a new one (a new dr.hello). */
  reopen(reason = 'reopen') {
    if (this.closed) return Promise.reject(new ControlError('closed', 'control session closed'));
    this.#generation += 1;
    this.#hello = null;
    this.#drop(this.#session, reason);
    const opening = this.#ready();
    opening.catch((error) => this.#emit('error', error));
    return opening;
  }

  /**
   * Use a new passphrase/key index: derive its key and open a session with it. Resolves to true
   * when the runner accepted the new key; to false when it does not know it yet (it still uses the
   * old one, whose session is kept; the new key is tried first whenever a session is opened).
   * @param {string} passphrase
   * @param {number} keyIndex
   * @returns {Promise<boolean>}
   */
  async setKey(passphrase, keyIndex) {
    if (this.closed) throw new ControlError('closed', 'control session closed');
    const entry = this.#addKey(passphrase, keyIndex);
    await entry.key; // a derivation failure throws here
    const generation = ++this.#generation;
    this.#hello = null;
    try {
      const session = await this.#helloWith(entry);
      if (this.closed || generation !== this.#generation) {
        this.#retire(session);
        return false;
      }
      this.#install(session);
      return true;
    } catch (error) {
      if (error.code !== 'unauthenticated') throw error;
      // The runner still uses another key: keep the session we have; without one, try the others.
      if (!this.#session && !this.closed) this.#ready().catch(() => {});
      return false;
    }
  }

  /** Call an RPC method; resolves to its result or throws ControlError with the runner's code.
   * @param {string} method
   * @param {Record<string, unknown>} [params]
   * @returns {Promise<Record<string, any>>} */
  async call(method, params = {}) {
    for (let attempt = 0; ; attempt += 1) {
      const session = await this.#ready();
      try {
        return await this.#callIn(session, method, params);
      } catch (error) {
        // The runner forgot the session (restart, our rejoin, eviction) or changed its key.
        const stale = error.code === 'no_session' || error.code === 'unauthenticated';
        if (!stale || attempt > 0 || this.closed) throw error;
        this.#drop(session, error.code);
      }
    }
  }

  /**
   * Seal an input message (kind 1) and publish it to the runner on DATA_TOPIC. Resolves when
   * livekit-client took it. Throws ControlError('no_session') without a session, ('size') when
   * the envelope would exceed the runner's 4096-byte limit.
   * @param {Record<string, unknown>} message
   * @param {{reliable?: boolean}} [options]
   * @returns {Promise<void>}
   */
  send(message, { reliable = true } = {}) {
    const session = this.#session;
    if (this.closed || !session) {
      return Promise.reject(new ControlError('no_session', 'no control session'));
    }
    let body;
    let sender;
    const ordered = ORDERED_KINDS.has(String(message.t));
    try {
      body = encodeJson(ordered ? { ...message, o: session.ordinal + 1 } : message);
      sender = this.#localIdentity();
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
      seq: this.#nextSeq(session),
      sender,
      recipient: this.runner,
      context: DATA_TOPIC,
      body,
    });
    // Sealing runs in parallel; publishing waits its turn, so packets leave in sequence order.
    const publishing = this.#outbox.then(async () => {
      const bytes = await sealing;
      await this.room.localParticipant.publishData(bytes, {
        reliable, topic: DATA_TOPIC, destinationIdentities: [this.runner],
      });
    });
    this.#outbox = publishing.catch(() => {});
    return publishing;
  }

  /** Listen to pushes of type `type` (`monitors`, `control`, `clipboard`; '*' for all).
   * The handler gets the parsed message. Returns a function that removes the handler.
   * @param {string} type
   * @param {(message: Record<string, any>) => void} handler */
  onPush(type, handler) {
    return this.#subscribe(this.#pushHandlers, type, handler);
  }

  /** Lifecycle events: 'session' (dr.hello result of a newly opened session), 'closed'
   * (reason), 'rejected' (reason: a runner packet was dropped), 'error' (a failed reopen).
   * @param {'session' | 'closed' | 'rejected' | 'error'} event
   * @param {(detail: any) => void} handler */
  on(event, handler) {
    return this.#subscribe(this.#eventHandlers, event, handler);
  }

  // --- internals ---------------------------------------------------------------------------

  /**
   * @template T
   * @param {Map<string, Set<T>>} map
   * @param {string} name
   * @param {T} handler
   */
  #subscribe(map, name, handler) {
    let handlers = map.get(name);
    if (!handlers) map.set(name, handlers = new Set());
    handlers.add(handler);
    return () => map.get(name)?.delete(handler);
  }

  /** @param {string} event @param {unknown} detail */
  #emit(event, detail) {
    for (const handler of [...(this.#eventHandlers.get(event) ?? [])]) {
      try {
        handler(detail);
      } catch (error) {
        console.warn(`control ${event} handler failed:`, error?.message ?? error);
      }
    }
  }

  /** @param {string} passphrase @param {number} keyIndex @returns {KeyEntry} */
  #addKey(passphrase, keyIndex) {
    if (!Number.isInteger(keyIndex) || keyIndex < 0 || keyIndex > MAX_KEY_INDEX) {
      throw new RangeError(`key index must be a whole number from 0 to ${MAX_KEY_INDEX}`);
    }
    if (typeof passphrase !== 'string' || !passphrase) throw new TypeError('passphrase is empty');
    const entry = { keyIndex, key: deriveControlKey(passphrase) };
    entry.key.catch(() => {}); // awaited where used
    // Not deduplicated by index: a new passphrase at the same index, set before the runner
    // rotates, must not lose the one the runner still uses.
    this.#keys = [entry, ...this.#keys].slice(0, KEPT_KEYS);
    return entry;
  }

  #localIdentity() {
    const identity = this.room.localParticipant?.identity;
    if (!identity) throw new ControlError('closed', 'not connected to a room');
    return identity;
  }

  /** @param {Session} session */
  #nextSeq(session) {
    session.seq += 1n;
    return session.seq;
  }

  /** The open session, or a pending/new dr.hello's.
   * @returns {Promise<Session>} */
  #ready() {
    if (this.closed) return Promise.reject(new ControlError('closed', 'control session closed'));
    if (this.#session) return Promise.resolve(this.#session);
    if (!this.#hello) {
      const generation = this.#generation;
      /** @returns {Promise<Session>} */
      const opening = async () => {
        try {
          const session = await this.#openWithAnyKey();
          if (this.closed) throw new ControlError('closed', 'control session closed');
          if (generation !== this.#generation) { // superseded: follow the newer one
            this.#retire(session);
            return this.#ready();
          }
          this.#install(session);
          return session;
        } finally {
          if (this.#hello === hello) this.#hello = null;
        }
      };
      const hello = opening();
      this.#hello = hello;
    }
    return this.#hello;
  }

  /** @param {Session} session */
  #install(session) {
    const previous = this.#session;
    this.#session = session;
    if (previous && previous !== session) {
      this.#retire(previous);
      this.#emit('closed', 'replaced');
    }
    this.#emit('session', session.hello);
  }

  /** @param {Session | null} session @param {string} reason */
  #drop(session, reason) {
    if (!session || this.#session !== session) return;
    this.#session = null;
    this.#retire(session);
    this.#emit('closed', reason);
  }

  /** @param {Session} session */
  #retire(session) {
    this.#retired = [session.id, ...this.#retired].slice(0, KEPT_RETIRED_SESSIONS);
  }

  /** @returns {Promise<Session>} */
  async #openWithAnyKey() {
    let lastError = null;
    for (const entry of [...this.#keys]) {
      try {
        return await this.#helloWith(entry);
      } catch (error) {
        lastError = error;
        if (error.code !== 'unauthenticated') throw error;
      }
    }
    throw lastError;
  }

  /** dr.hello with one key: a new session, verified (nonce echo, context, session id). */
  /** @param {KeyEntry} entry @returns {Promise<Session>} */
  #helloWith(entry) {
    const hello = this.#helloUntracked(entry);
    this.#opening.add(hello);
    const forget = () => this.#opening.delete(hello);
    hello.then(forget, forget);
    return hello;
  }

  /** @param {KeyEntry} entry @returns {Promise<Session>} */
  async #helloUntracked(entry) {
    const key = await entry.key;
    const nonce = randomBytes(HELLO_NONCE_BYTES);
    // Session 0 and our first number; the session continues from it (2, 3, ...), which suits a
    // runner that starts its window afresh as well as one that counts the hello in it.
    /** @type {Session} */
    const pending = { id: 0n, key, keyIndex: entry.keyIndex, seq: 0n, window: null, ordinal: 0 };
    const { header, response } = await this.#rpc(pending, 'dr.hello', {
      nonce: toBase64(nonce), client: this.client,
    });
    const result = this.#result('dr.hello', response);
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

  /** @param {Session} session @param {string} method @param {Record<string, unknown>} params */
  async #callIn(session, method, params) {
    const { header, response } = await this.#rpc(session, method, params);
    if (header.session !== session.id) {
      // A runner that no longer knows the session may seal its `no_session` answer with session
      // 0; the context still binds it to this very request.
      if (header.session === 0n && response.ok === false && response.error?.code === 'no_session') {
        throw new ControlError('no_session', `${method}: the runner has no session for us`);
      }
      throw new ControlError('auth', `${method}: the answer belongs to another session`);
    }
    if (!session.window?.accept(header.seq)) {
      throw new ControlError('replay', `${method}: the answer was replayed`);
    }
    return this.#result(method, response);
  }

  /** Seal a request in `session`, call, open the answer; {header, response}. */
  /** @param {Session} session @param {string} method @param {Record<string, unknown>} params
   * @returns {Promise<{header: import('./envelope.js').Opened, response: Record<string, any>}>} */
  async #rpc(session, method, params) {
    const local = this.#localIdentity();
    const seq = this.#nextSeq(session);
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

  /** @param {string} method @param {Record<string, any>} response @returns {Record<string, any>} */
  #result(method, response) {
    if (response.ok === true) {
      const { result } = response;
      return result !== null && typeof result === 'object' ? result : {};
    }
    const code = typeof response.error?.code === 'string' ? response.error.code : 'internal';
    const detail = typeof response.error?.message === 'string' ? response.error.message : code;
    throw new ControlError(code, `${method}: ${detail}`);
  }

  /** Does the runner still know our session? call() opens a new one on `no_session`. */
  #probe() {
    if (this.closed) return;
    const probing = this.#session ? this.call('dr.ping', { t: 0 }) : this.#ready();
    probing.catch((error) => this.#emit('error', error));
  }

  /**
   * @param {Uint8Array} payload
   * @param {string | undefined} sender participant identity
   * @param {string | undefined} topic
   */
  #onData(payload, sender, topic) {
    if (this.closed || topic !== DATA_TOPIC) return;
    if (sender !== this.runner) return;
    const bytes = new Uint8Array(payload); // a copy: livekit-client may reuse its buffer
    this.#inbox = this.#inbox.then(() => this.#receive(bytes)).catch((error) => {
      console.warn('control push handling failed:', error?.message ?? error);
    });
  }

  /** @param {Uint8Array} bytes */
  async #receive(bytes) {
    // A push right after our dr.hello belongs to the session that hello is opening.
    if (this.#opening.size) await Promise.allSettled([...this.#opening]);
    if (this.#hello) await this.#hello.catch(() => {});
    const session = this.#session;
    let header;
    try {
      header = parseHeader(bytes);
    } catch {
      return this.#reject('auth');
    }
    // The runner keeps a session we left until it evicts it, and keeps pushing to it: not an
    // attack, so not counted. (Only a counter depends on this unauthenticated peek.)
    if (this.#retired.includes(header.session) && header.session !== session?.id) return undefined;
    if (!session) return this.#reject('unknown_session');
    let opened;
    try {
      opened = await open(session.key, bytes, {
        sender: this.runner, recipient: this.#localIdentity(), context: DATA_TOPIC,
      });
    } catch {
      return this.#reject('auth');
    }
    if (opened.kind !== KIND_PUSH) return this.#reject('auth');
    if (opened.session !== session.id) return this.#reject('unknown_session');
    if (!session.window?.accept(opened.seq)) return this.#reject('replay');
    const message = decodeJsonObject(opened.body);
    if (!message || typeof message.t !== 'string') return this.#reject('schema');
    if (this.#session !== session) return undefined; // replaced meanwhile: no longer ours
    if (message.t === 'resync') {
      // The runner saw a gap in our reliable input (the server dropped or reordered some): it
      // injects none until a reset, which releases everything and puts us back in step.
      this.send({ t: 'reset' }).catch((error) => this.#emit('error', error));
    }
    for (const type of [message.t, '*']) {
      for (const handler of [...(this.#pushHandlers.get(type) ?? [])]) {
        try {
          handler(message);
        } catch (error) {
          console.warn(`control push handler (${message.t}) failed:`, error?.message ?? error);
        }
      }
    }
    return undefined;
  }

  /** @param {string} reason */
  #reject(reason) {
    this.rejected += 1;
    this.#emit('rejected', reason);
  }
}
