// Runs the viewer's control envelope (viewer/envelope.js), session (viewer/control.js) and input
// helpers (viewer/input.js) in Node, unmodified, for tests/interop/test_control_envelope_js.py.
//
//   node tests/interop/control_envelope.mjs            check tests/vectors/control_envelope.json
//                                                      and print a summary (exit 1 on a mismatch)
//   node tests/interop/control_envelope.mjs --serve    JSON lines on stdin/stdout:
//     request  {"id": 1, "op": "<name>", ...arguments}
//     response {"id": 1, "ok": true, "result": ...}  or  {"id": 1, "ok": false, "error": "..."}
//     event    {"event": "<name>", ...}  (from the session_* ops, see FakeRoom)
//
// Bytes travel as hex (RPC payloads as the base64 strings they are); 64-bit session and sequence
// numbers as decimal strings. Requests are handled concurrently: a session_call waits for the
// test to answer its "rpc" event with an rpc_reply, playing the runner.

import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';

import { ControlSession } from '../../viewer/control.js';
import {
  ReplayWindow,
  deriveControlKey,
  fromBase64,
  importControlKey,
  open,
  seal,
  toBase64,
} from '../../viewer/envelope.js';
import {
  contentRect,
  normalizedPosition,
  textChunks,
  wheelNotches,
} from '../../viewer/input.js';

const VECTORS_URL = new URL('../vectors/control_envelope.json', import.meta.url);
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

const toHex = (bytes) => Buffer.from(bytes).toString('hex');
const fromHex = (hex) => new Uint8Array(Buffer.from(hex, 'hex'));

async function keyFor({ key_hex: keyHex, passphrase }) {
  return keyHex !== undefined ? importControlKey(fromHex(keyHex)) : deriveControlKey(passphrase);
}

function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

/** An error like livekit-client's RpcError: a numeric code and a message. */
class FakeRpcError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/**
 * Just the part of a livekit-client Room that ControlSession uses. performRpc emits
 * {"event": "rpc", rid, method, payload, destination} and waits for an rpc_reply; publishData
 * emits {"event": "data", payload_hex, reliable, topic, destinations}.
 */
class FakeRoom {
  constructor(localIdentity, remoteIdentities) {
    this.state = 'connected';
    this.remoteParticipants = new Map(remoteIdentities.map((identity) => [identity, { identity }]));
    this._handlers = new Map();
    this._rpcs = new Map();
    this._nextRid = 1;
    this.localParticipant = {
      identity: localIdentity,
      performRpc: ({ destinationIdentity, method, payload }) => new Promise((resolve, reject) => {
        const rid = this._nextRid;
        this._nextRid += 1;
        this._rpcs.set(rid, { resolve, reject });
        emit({ event: 'rpc', rid, method, payload, destination: destinationIdentity });
      }),
      publishData: async (bytes, { reliable, topic, destinationIdentities }) => {
        emit({
          event: 'data', payload_hex: toHex(bytes), reliable, topic, destinations: destinationIdentities,
        });
      },
    };
  }

  on(event, handler) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(handler);
    return this;
  }

  off(event, handler) {
    this._handlers.get(event)?.delete(handler);
    return this;
  }

  fire(event, ...args) {
    for (const handler of [...(this._handlers.get(event) ?? [])]) handler(...args);
  }

  reply({ rid, payload, error_code: code, error_message: message }) {
    const pending = this._rpcs.get(rid);
    if (!pending) throw new Error(`no pending rpc ${rid}`);
    this._rpcs.delete(rid);
    if (code !== undefined) pending.reject(new FakeRpcError(code, message));
    else pending.resolve(payload);
  }
}

let room = null;
let session = null;

function failure(error) {
  return { ok: false, code: error.code ?? null, message: String(error?.message ?? error) };
}

const OPS = {
  /** {passphrase} -> the derived key, hex (exported from an extractable CryptoKey). */
  async derive({ passphrase }) {
    const key = await deriveControlKey(passphrase, { extractable: true });
    return toHex(new Uint8Array(await globalThis.crypto.subtle.exportKey('raw', key)));
  },

  /** {key_hex | passphrase, kind, key_index, session, seq, sender, recipient, context,
   * body_utf8, nonce_hex?} -> envelope hex (a random nonce without nonce_hex). */
  async seal(args) {
    const sealed = await seal(await keyFor(args), {
      kind: args.kind,
      keyIndex: args.key_index,
      session: BigInt(args.session),
      seq: BigInt(args.seq),
      sender: args.sender,
      recipient: args.recipient,
      context: args.context,
      body: textEncoder.encode(args.body_utf8),
      nonce: args.nonce_hex === undefined ? undefined : fromHex(args.nonce_hex),
    });
    return toHex(sealed);
  },

  /** {key_hex | passphrase, envelope_hex, sender, recipient, context} -> the opened fields, or
   * {opened: false, code, error}. */
  async open(args) {
    try {
      const opened = await open(await keyFor(args), fromHex(args.envelope_hex), {
        sender: args.sender, recipient: args.recipient, context: args.context,
      });
      return {
        opened: true,
        kind: opened.kind,
        key_index: opened.keyIndex,
        session: opened.session.toString(),
        seq: opened.seq.toString(),
        nonce_hex: toHex(opened.nonce),
        body_utf8: textDecoder.decode(opened.body),
      };
    } catch (error) {
      return { opened: false, code: error.code ?? null, error: String(error?.message ?? error) };
    }
  },

  /** {steps: [["accept" | "check", seq], ...]} -> [bool, ...] from one fresh ReplayWindow. */
  async replay({ steps }) {
    const window = new ReplayWindow();
    return steps.map(([what, seq]) => window[what](BigInt(seq)));
  },

  /** {box, style, video: [w, h], points: [[clientX, clientY], ...], dpr} -> [[x, y], ...]. */
  async normalize({ box, style, video, points, dpr = 1 }) {
    const rect = contentRect(box, style, video[0], video[1]);
    if (!rect) return null;
    return points.map(([cx, cy]) => {
      const { x, y } = normalizedPosition(rect, cx, cy, dpr);
      return [x, y];
    });
  },

  async wheel(event) {
    return wheelNotches(event);
  },

  async textChunks({ text }) {
    return textChunks(text);
  },

  async base64({ hex, text }) {
    return hex !== undefined ? toBase64(fromHex(hex)) : toHex(fromBase64(text));
  },

  // --- a ControlSession over FakeRoom ------------------------------------------------------

  /** {local, runner, passphrase, key_index, previous?: {passphrase, key_index}} */
  async session_start(args) {
    session?.close();
    room = new FakeRoom(args.local, [args.runner]);
    const previous = args.previous
      ? { passphrase: args.previous.passphrase, keyIndex: args.previous.key_index } : undefined;
    session = new ControlSession(room, args.runner, args.passphrase, args.key_index, {
      client: 'interop test', previous,
    });
    session.on('session', (hello) => emit({ event: 'session', hello }));
    session.on('closed', (reason) => emit({ event: 'closed', reason }));
    session.on('rejected', (reason) => emit({ event: 'rejected', reason }));
    session.onPush('*', (message) => emit({ event: 'push', message }));
    return null;
  },

  async session_open() {
    try {
      return { ok: true, result: await session.open() };
    } catch (error) {
      return failure(error);
    }
  },

  async session_call({ method, params }) {
    try {
      return { ok: true, result: await session.call(method, params) };
    } catch (error) {
      return failure(error);
    }
  },

  async session_send({ message, reliable }) {
    try {
      await session.send(message, { reliable });
      return { ok: true };
    } catch (error) {
      return failure(error);
    }
  },

  async session_set_key({ passphrase, key_index: keyIndex }) {
    try {
      return { ok: true, result: await session.setKey(passphrase, keyIndex) };
    } catch (error) {
      return failure(error);
    }
  },

  /** A data packet from `sender` reaches the room; resolves once the session handled it. */
  async session_deliver({ payload_hex: hex, sender, topic }) {
    room.fire('dataReceived', fromHex(hex), { identity: sender }, 0, topic);
    await session.whenIdle();
    return { rejected: session.rejected };
  },

  /** {name: 'participantConnected' | 'participantDisconnected' | 'reconnected', identity?} */
  async session_room_event({ name, identity }) {
    room.fire(name, identity === undefined ? undefined : { identity });
    return null;
  },

  async session_state() {
    return {
      session: session.sessionId === null ? null : session.sessionId.toString(),
      key_index: session.keyIndex,
      rejected: session.rejected,
    };
  },

  /** Answer a pending "rpc" event. Not replied to (the test does not wait for it). */
  async rpc_reply(args) {
    room.reply(args);
    return undefined;
  },
};

/** The published vectors, checked here the same way the pytest suite does (for humans). */
async function selfCheck() {
  const { vectors, bad } = JSON.parse(await readFile(VECTORS_URL, 'utf8'));
  let failures = 0;
  const report = (ok, what) => {
    if (!ok) failures += 1;
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  };
  for (const v of vectors) {
    report(await OPS.derive(v) === v.key_hex, `${v.name}: derived key`);
    report(await OPS.seal(v) === v.envelope_hex, `${v.name}: sealed byte for byte`);
    const opened = await OPS.open({ ...v, key_hex: v.key_hex });
    report(opened.opened && opened.body_utf8 === v.body_utf8 && opened.session === v.session
      && opened.seq === v.seq && opened.kind === v.kind && opened.key_index === v.key_index,
    `${v.name}: opens`);
  }
  for (const b of bad) report(!(await OPS.open(b)).opened, `bad "${b.name}": refused`);
  console.log(failures ? `${failures} failed` : 'all vectors pass');
  return failures ? 1 : 0;
}

async function handle(line) {
  let id = null;
  let reply;
  try {
    const request = JSON.parse(line);
    ({ id } = request);
    const op = OPS[request.op];
    if (!op) throw new Error(`unknown op ${request.op}`);
    const result = await op(request);
    if (result === undefined) return;
    reply = { id, ok: true, result };
  } catch (error) {
    reply = { id, ok: false, error: String(error?.stack ?? error) };
  }
  emit(reply);
}

async function serve() {
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim()) handle(line); // concurrently: a call may wait for a later rpc_reply
  }
}

if (process.argv.includes('--serve')) {
  await serve();
} else {
  process.exitCode = await selfCheck();
}
