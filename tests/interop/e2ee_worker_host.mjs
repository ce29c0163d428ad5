// Runs livekit-client's shipped E2EE worker (dist/livekit-client.e2ee.worker.mjs) inside Node and
// lets a test drive it over stdin/stdout, one JSON object per line.
//
// The worker is loaded unmodified. This file only plays the parts a browser would play:
//   - the dedicated-worker global (self, postMessage, onmessage),
//   - RTCEncodedVideoFrame / RTCEncodedAudioFrame objects (data, type, timestamp, getMetadata()),
//   - the encoded-stream pair a sender/receiver transfers to the worker ('encode' / 'decode'),
//   - the main thread's key provider (raw key material imported as a PBKDF2 or HKDF CryptoKey),
//   - RTCEngine's data path around 'encryptDataRequest' / 'decryptDataRequest'.
//
// Request:  {"id": 1, "op": "<name>", ...arguments}
// Response: {"id": 1, "ok": true, "result": ...}
//        or {"id": 1, "ok": false, "error": "...", "logs": [...]}
// Bytes travel as base64 strings.

import { createInterface } from 'node:readline';
import { DataPacket, EncryptedPacket, EncryptedPacketPayload } from '@livekit/protocol';

const WORKER_URL = new URL(
  '../../node_modules/livekit-client/dist/livekit-client.e2ee.worker.mjs',
  import.meta.url,
).href;
const FRAME_TIMEOUT_MS = 10000;
const MESSAGE_TIMEOUT_MS = 10000;
const KEPT_LOGS = 40;
// DataPacket cases livekit-client sends in clear even with data channel encryption on.
const CLEAR_DATA_CASES = new Set([
  'sipDtmf',
  'metrics',
  'speaker',
  'transcription',
  'encryptedPacket',
]);

// ---- the dedicated-worker global ------------------------------------------------------------

class FakeEncodedVideoFrame {
  constructor(data, type, timestamp, metadata) {
    this.data = data;
    this.type = type; // the worker tells video from audio by the presence of `type`
    this.timestamp = timestamp;
    this.metadata = metadata;
  }

  getMetadata() {
    return this.metadata;
  }
}

class FakeEncodedAudioFrame {
  constructor(data, timestamp, metadata) {
    this.data = data;
    this.timestamp = timestamp;
    this.metadata = metadata;
  }

  getMetadata() {
    return this.metadata;
  }
}

globalThis.self = globalThis;
globalThis.RTCEncodedVideoFrame = FakeEncodedVideoFrame;
globalThis.RTCEncodedAudioFrame = FakeEncodedAudioFrame;
// The worker module assigns `onmessage`; in strict mode it must already exist as a global.
globalThis.onmessage = null;

const waiters = [];
let recentLogs = [];

globalThis.postMessage = (message) => {
  if (message.kind === 'log') {
    const { level, msg, context } = message.data;
    if (level === 'warn' || level === 'error') {
      remember(`${level}: ${msg} ${safeJson(context)}`);
    }
  } else if (message.kind === 'error') {
    remember(`error message: ${message.data.error?.message ?? message.data.error}`);
  }
  for (const waiter of [...waiters]) {
    if (waiter.match(message)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      clearTimeout(waiter.timer);
      waiter.resolve(message);
    }
  }
};

function remember(line) {
  recentLogs.push(line);
  if (recentLogs.length > KEPT_LOGS) recentLogs = recentLogs.slice(-KEPT_LOGS);
}

function safeJson(value) {
  try {
    return JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? v.toString() : v)) ?? '';
  } catch {
    return String(value);
  }
}

function waitForMessage(match, what) {
  return new Promise((resolve, reject) => {
    const waiter = { match, resolve };
    waiter.timer = setTimeout(() => {
      waiters.splice(waiters.indexOf(waiter), 1);
      reject(new Error(`timed out waiting for ${what}`));
    }, MESSAGE_TIMEOUT_MS);
    waiters.push(waiter);
  });
}

// ---- one worker instance per configuration --------------------------------------------------

let instance = 0;
let deliver = null; // the worker's onmessage handler
let tracks = new Map();
let syncCount = 0;
let sharedKey = true;
const nativeRandom = Math.random;

function post(message) {
  if (!deliver) throw new Error('worker not loaded: send {"op": "reset"} first');
  deliver({ data: message });
}

// The worker handles messages one at a time; 'enable' is echoed back once handled.
async function sync() {
  const participantIdentity = `__sync__${++syncCount}`;
  const echoed = waitForMessage(
    (m) => m.kind === 'enable' && m.data.participantIdentity === participantIdentity,
    'the worker to drain its message queue',
  );
  post({ kind: 'enable', data: { participantIdentity, enabled: true } });
  await echoed;
}

const ops = {
  // Fresh worker module (fresh global state), then 'init' with the key provider options.
  // Defaults are ExternalE2EEKeyProvider's: shared key, no auto-ratchet, wrong keys never invalid.
  async reset(args) {
    Math.random = nativeRandom;
    tracks = new Map();
    recentLogs = [];
    sharedKey = args.sharedKey ?? true;
    globalThis.onmessage = null;
    await import(`${WORKER_URL}?instance=${++instance}`);
    deliver = globalThis.onmessage;
    const ack = waitForMessage((m) => m.kind === 'initAck', 'initAck');
    post({
      kind: 'init',
      data: {
        loglevel: args.loglevel ?? 'warn',
        keyProviderOptions: {
          sharedKey,
          ratchetSalt: args.ratchetSalt ?? 'LKFrameEncryptionKey',
          ratchetWindowSize: args.ratchetWindowSize ?? 0,
          failureTolerance: args.failureTolerance ?? -1,
          keyringSize: args.keyringSize ?? 16,
          keySize: args.keySize ?? 128,
        },
      },
    });
    await ack;
    return { instance };
  },

  // What ExternalE2EEKeyProvider.setKey does on the main thread: import the material as a
  // PBKDF2 (string passphrase) or HKDF (ArrayBuffer) key and hand it to the worker.
  async setKey({ participant, material, kdf = 'pbkdf2', keyIndex }) {
    const key = await crypto.subtle.importKey(
      'raw',
      fromBase64(material),
      kdf === 'hkdf' ? 'HKDF' : 'PBKDF2',
      false,
      ['deriveBits', 'deriveKey'],
    );
    post({
      kind: 'setKey',
      data: {
        participantIdentity: participant,
        isPublisher: false,
        key,
        keyIndex,
        updateCurrentKeyIndex: true,
      },
    });
    await sync();
    return {};
  },

  async enable({ participant, enabled = true }) {
    const echoed = waitForMessage(
      (m) => m.kind === 'enable' && m.data.participantIdentity === participant,
      'enable echo',
    );
    post({ kind: 'enable', data: { participantIdentity: participant, enabled } });
    await echoed;
    return {};
  },

  // Ratchet a participant key (needs sharedKey=false: only per-participant key handlers
  // announce the new chain key). Returns the chain key the worker published.
  async ratchet({ participant, keyIndex }) {
    if (sharedKey) throw new Error('ratchet reports its result only with sharedKey=false');
    const ratcheted = waitForMessage(
      (m) => m.kind === 'ratchetKey' && m.data.participantIdentity === participant,
      'ratchetKey',
    );
    post({ kind: 'ratchetRequest', data: { participantIdentity: participant, keyIndex } });
    const message = await ratcheted;
    return {
      chainKey: toBase64(new Uint8Array(message.data.ratchetResult.chainKey)),
      keyIndex: message.data.keyIndex,
    };
  },

  // Make Math.random() return a constant, so FrameCryptor's per-SSRC send counter starts at
  // a known value and its IVs (SSRC | timestamp | timestamp - count) are predictable.
  async pinRandom({ value }) {
    Math.random = value === null || value === undefined ? nativeRandom : () => value;
    return {};
  },

  encode: (args) => transformFrames('encode', args),
  decode: (args) => transformFrames('decode', args),

  // RTCEngine.sendDataPacket with data channel encryption on.
  async encryptData({ participant, packet }) {
    const dataPacket = DataPacket.fromBinary(fromBase64(packet));
    if (dataPacket.value?.case === undefined || CLEAR_DATA_CASES.has(dataPacket.value.case)) {
      return { packet: toBase64(dataPacket.toBinary()), encrypted: false };
    }
    const payload = new EncryptedPacketPayload({ value: dataPacket.value }).toBinary();
    const uuid = crypto.randomUUID();
    const response = waitForMessage(
      (m) => (m.kind === 'encryptDataResponse' || m.kind === 'error') && m.data.uuid === uuid,
      'encryptDataResponse',
    );
    post({ kind: 'encryptDataRequest', data: { uuid, payload, participantIdentity: participant } });
    const message = await response;
    if (message.kind === 'error') throw message.data.error;
    dataPacket.value = {
      case: 'encryptedPacket',
      value: new EncryptedPacket({
        encryptedValue: message.data.payload,
        iv: message.data.iv,
        keyIndex: message.data.keyIndex,
      }),
    };
    return { packet: toBase64(dataPacket.toBinary()), encrypted: true };
  },

  // RTCEngine.handleDataMessage for an encrypted packet: decrypt in the worker, then rebuild a
  // DataPacket from the payload and the sender fields of the clear envelope.
  async decryptData({ packet }) {
    const dataPacket = DataPacket.fromBinary(fromBase64(packet));
    if (dataPacket.value?.case !== 'encryptedPacket') {
      return { packet: toBase64(dataPacket.toBinary()), encrypted: false };
    }
    const encrypted = dataPacket.value.value;
    const uuid = crypto.randomUUID();
    const response = waitForMessage(
      (m) => (m.kind === 'decryptDataResponse' || m.kind === 'error') && m.data.uuid === uuid,
      'decryptDataResponse',
    );
    post({
      kind: 'decryptDataRequest',
      data: {
        uuid,
        payload: encrypted.encryptedValue,
        iv: encrypted.iv,
        participantIdentity: dataPacket.participantIdentity,
        keyIndex: encrypted.keyIndex,
      },
    });
    const message = await response;
    if (message.kind === 'error') {
      return { error: String(message.data.error?.message ?? message.data.error) };
    }
    const payload = EncryptedPacketPayload.fromBinary(message.data.payload);
    const decrypted = new DataPacket({
      value: payload.value,
      participantIdentity: dataPacket.participantIdentity,
      participantSid: dataPacket.participantSid,
    });
    return { packet: toBase64(decrypted.toBinary()), encrypted: true };
  },
};

// ---- encoded streams --------------------------------------------------------------------------

// One sender or receiver: a readable we feed frames into, a writable that collects what the
// worker's transform lets through, handed to the worker like a browser transfers them.
function openTrack(operation, participant, trackId, codec) {
  const name = `${operation}:${participant}:${trackId}`;
  let track = tracks.get(name);
  if (track) return track;
  track = { outputs: [], notify: null };
  const readable = new ReadableStream({
    start(controller) {
      track.controller = controller;
    },
  });
  const writable = new WritableStream({
    write(frame) {
      track.outputs.push(frame);
      track.notify?.();
    },
  });
  post({
    kind: operation,
    data: {
      participantIdentity: participant,
      trackId: name, // track ids must not collide between 'encode' and 'decode' cryptors
      readableStream: readable,
      writableStream: writable,
      codec,
      hasPacketTrailer: false,
    },
  });
  tracks.set(name, track);
  return track;
}

function makeFrame(spec, bytes) {
  const metadata = {
    synchronizationSource: spec.ssrc ?? 1234,
    payloadType: spec.payloadType ?? 96,
  };
  if (spec.mimeType) metadata.mimeType = spec.mimeType;
  const timestamp = spec.timestamp ?? 0;
  if (spec.kind === 'audio') {
    return new FakeEncodedAudioFrame(bytes.buffer, timestamp, metadata);
  }
  return new FakeEncodedVideoFrame(bytes.buffer, spec.type ?? 'delta', timestamp, metadata);
}

// Each frame is followed by an empty marker frame, which both transforms pass through untouched:
// when the marker comes out, whatever came out before it is the result (nothing = dropped).
async function transformFrames(
  operation,
  { participant, trackId = 'track', codec, frames, timeoutMs = FRAME_TIMEOUT_MS },
) {
  const track = openTrack(operation, participant, trackId, codec);
  await sync();
  const results = [];
  for (const spec of frames) {
    const frame = makeFrame(spec, fromBase64(spec.data));
    const marker = makeFrame(spec, new Uint8Array(0));
    track.outputs = [];
    const logsBefore = recentLogs.length;
    const markerSeen = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${operation} stalled`)), timeoutMs);
      track.notify = () => {
        if (track.outputs.includes(marker)) {
          clearTimeout(timer);
          resolve();
        }
      };
    });
    track.controller.enqueue(frame);
    track.controller.enqueue(marker);
    await markerSeen;
    const produced = track.outputs.filter((f) => f !== marker);
    results.push({
      data: produced.length ? toBase64(new Uint8Array(produced[0].data)) : null,
      logs: recentLogs.slice(logsBefore),
    });
  }
  return { frames: results };
}

// ---- plumbing ---------------------------------------------------------------------------------

function fromBase64(text) {
  return new Uint8Array(Buffer.from(text ?? '', 'base64'));
}

function toBase64(bytes) {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

function reply(message) {
  process.stdout.write(`${safeJson(message)}\n`);
}

process.on('unhandledRejection', (reason) => {
  remember(`unhandled rejection: ${reason?.stack ?? reason}`);
});

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let request;
  try {
    request = JSON.parse(line);
    const op = ops[request.op];
    if (!op) throw new Error(`unknown op ${request.op}`);
    const result = await op(request);
    reply({ id: request.id, ok: true, result });
  } catch (error) {
    reply({
      id: request?.id ?? null,
      ok: false,
      error: String(error?.stack ?? error),
      logs: recentLogs.slice(-10),
    });
  }
}
