// @ts-check
// The statistics overlay (like Moonlight's): where a frame's time goes, over the last second.
//
//   host       the runner's processing per frame, grab start to hand-off to LiveKit
//              (dr.stats host_ms, a mean over the runner's last second)
//   network    dr.ping's round trip (viewer -> server -> runner and back, sealed RPC) and the
//              transport's (the ICE candidate pair's currentRoundTripTime: viewer <-> server)
//   jitter     mean time a frame waited in the jitter buffer (inbound-rtp jitterBufferDelay /
//              jitterBufferEmittedCount)
//   decode     mean decode time per frame (inbound-rtp totalDecodeTime / framesDecoded)
//   render     mean time from a frame handed to the compositor to its expected display
//              (requestVideoFrameCallback: expectedDisplayTime - presentationTime, taken as 0
//              where headless Chromium reports the display a fraction of a ms before it)
//   frames     decoded frames per second and frames dropped (this viewer: inbound-rtp
//              framesDropped; the host: frames replaced before they were encoded), the
//              runner's published frame rate, and the bit rate received
//
// Toggled by its button and by Ctrl+Alt+Shift+S (as in Moonlight), which never reaches the host.

/** The interval the rates are taken over. */
export const OVERLAY_INTERVAL_MS = 1000;

/** Ctrl+Alt+Shift+S: the overlay's toggle. @param {{ctrlKey: boolean, altKey: boolean,
 * shiftKey: boolean, metaKey?: boolean, code: string}} event */
export function isOverlayShortcut(event) {
  return event.ctrlKey && event.altKey && event.shiftKey && !event.metaKey && event.code === 'KeyS';
}

/**
 * The counters of one inbound-rtp video report (and the candidate pair's round trip) that the
 * figures are taken from.
 * @typedef {object} VideoSample
 * @property {number} at ms (the report's timestamp)
 * @property {number} framesDecoded
 * @property {number} framesDropped
 * @property {number} bytesReceived
 * @property {number} packetsReceived
 * @property {number} totalDecodeTime s
 * @property {number} jitterBufferDelay s
 * @property {number} jitterBufferEmittedCount
 * @property {number | null} transportRttMs
 */

/**
 * What the overlay shows from the browser's own statistics.
 * @typedef {object} VideoFigures
 * @property {number} fps decoded frames per second
 * @property {number} bitrate bit/s received
 * @property {number | null} decodeMs mean per frame; null when nothing was decoded
 * @property {number | null} jitterMs mean per frame; null when nothing left the buffer
 * @property {number} framesDropped since the track started
 * @property {number | null} transportRttMs
 */

/** @param {number} value @param {number} digits */
const round = (value, digits) => Math.round(value * 10 ** digits) / 10 ** digits;

/**
 * A VideoSample from an RTCStatsReport (RTCRtpReceiver.getStats), or null without video.
 * @param {RTCStatsReport | Map<string, any>} report
 * @returns {VideoSample | null}
 */
export function videoSample(report) {
  /** @type {any} */
  let inbound = null;
  /** @type {number | null} */
  let rtt = null;
  report.forEach((stats) => {
    if (stats.type === 'inbound-rtp' && stats.kind === 'video') inbound = stats;
    if (stats.type === 'candidate-pair' && stats.nominated && stats.state === 'succeeded'
        && typeof stats.currentRoundTripTime === 'number') {
      rtt = stats.currentRoundTripTime * 1000;
    }
  });
  if (!inbound) return null;
  return {
    at: inbound.timestamp ?? performance.now(),
    framesDecoded: inbound.framesDecoded ?? 0,
    framesDropped: inbound.framesDropped ?? 0,
    bytesReceived: inbound.bytesReceived ?? 0,
    packetsReceived: inbound.packetsReceived ?? 0,
    totalDecodeTime: inbound.totalDecodeTime ?? 0,
    jitterBufferDelay: inbound.jitterBufferDelay ?? 0,
    jitterBufferEmittedCount: inbound.jitterBufferEmittedCount ?? 0,
    transportRttMs: rtt,
  };
}

/**
 * The figures between two samples of the same track. Pure.
 * @param {VideoSample} before
 * @param {VideoSample} after
 * @returns {VideoFigures}
 */
export function videoFigures(before, after) {
  const seconds = Math.max(after.at - before.at, 1) / 1000;
  const decoded = after.framesDecoded - before.framesDecoded;
  const emitted = after.jitterBufferEmittedCount - before.jitterBufferEmittedCount;
  return {
    fps: round(Math.max(decoded, 0) / seconds, 1),
    bitrate: Math.round((8 * Math.max(after.bytesReceived - before.bytesReceived, 0)) / seconds),
    decodeMs: decoded > 0
      ? round((1000 * (after.totalDecodeTime - before.totalDecodeTime)) / decoded, 2) : null,
    jitterMs: emitted > 0
      ? round((1000 * (after.jitterBufferDelay - before.jitterBufferDelay)) / emitted, 2) : null,
    framesDropped: after.framesDropped,
    transportRttMs: after.transportRttMs === null ? null : round(after.transportRttMs, 1),
  };
}

/**
 * Render times per frame from requestVideoFrameCallback, while started.
 */
export class FrameTimer {
  /** @type {number[]} expectedDisplayTime - presentationTime, ms, since the last take() */
  #renderMs = [];
  #handle = 0;
  #running = false;
  #video;

  /** @param {HTMLVideoElement} video */
  constructor(video) {
    this.#video = video;
  }

  start() {
    if (this.#running || !('requestVideoFrameCallback' in this.#video)) return;
    this.#running = true;
    /** @type {VideoFrameRequestCallback} */
    const onFrame = (_now, metadata) => {
      if (!this.#running) return;
      const render = metadata.expectedDisplayTime - metadata.presentationTime;
      if (Number.isFinite(render) && this.#renderMs.length < 1000) this.#renderMs.push(Math.max(render, 0));
      this.#handle = this.#video.requestVideoFrameCallback(onFrame);
    };
    this.#handle = this.#video.requestVideoFrameCallback(onFrame);
  }

  stop() {
    this.#running = false;
    this.#video.cancelVideoFrameCallback?.(this.#handle);
    this.#renderMs = [];
  }

  /** Mean render time of the frames since the last call, or null if none was shown. */
  take() {
    const times = this.#renderMs;
    this.#renderMs = [];
    if (!times.length) return null;
    return round(times.reduce((a, b) => a + b, 0) / times.length, 2);
  }
}

/**
 * Everything the overlay shows (window.viewer.state.overlay).
 * @typedef {object} OverlayFigures
 * @property {boolean} shown
 * @property {number | null} hostMs
 * @property {number | null} hostFps
 * @property {number | null} hostDropped
 * @property {number | null} rttMs
 * @property {number | null} transportRttMs
 * @property {number | null} jitterMs
 * @property {number | null} decodeMs
 * @property {number | null} renderMs
 * @property {number | null} fps
 * @property {number | null} bitrate
 * @property {number | null} framesDropped
 */

/** @returns {OverlayFigures} */
export function noFigures() {
  return {
    shown: false,
    hostMs: null,
    hostFps: null,
    hostDropped: null,
    rttMs: null,
    transportRttMs: null,
    jitterMs: null,
    decodeMs: null,
    renderMs: null,
    fps: null,
    bitrate: null,
    framesDropped: null,
  };
}

/** @param {number | null} value @param {string} unit */
const show = (value, unit = '') => (value === null ? '–' : `${value}${unit}`);

/**
 * The overlay's lines. Pure.
 * @param {OverlayFigures} f
 * @returns {string[]}
 */
export function overlayLines(f) {
  const mbit = f.bitrate === null ? null : round(f.bitrate / 1e6, 2);
  return [
    `Host processing: ${show(f.hostMs, ' ms')} per frame`,
    `Network round trip: ${show(f.rttMs, ' ms')} (to the host), ${show(f.transportRttMs, ' ms')} (to the server)`,
    `Jitter buffer: ${show(f.jitterMs, ' ms')}`,
    `Decode: ${show(f.decodeMs, ' ms')} per frame`,
    `Render: ${show(f.renderMs, ' ms')} per frame`,
    `Frames: ${show(f.fps, ' fps')} shown, host ${show(f.hostFps, ' fps')}`,
    `Dropped: ${show(f.framesDropped)} here, ${show(f.hostDropped)} on the host`,
    `Bitrate: ${show(mbit, ' Mbit/s')}`,
  ];
}

// A decoder waiting on a lost packet: Chrome asks for a keyframe only after its 3 s no-frame
// timeout once NACKs gave up (bench/bench_network.py: 3.3 and 6.4 s freezes on a 2 Mbit/s, 40 ms,
// 1 % link). The viewer asks the runner (dr.keyframe) when packets keep arriving but nothing is
// decoded for STALL_MIN_MS or three round trips, whichever is longer (NACK's own chance), at most
// every KEYFRAME_ASK_INTERVAL_MS. A still screen sends nothing, so it never looks stalled; the
// stall is timed from the first packet that arrived without a decode after it.
export const STALL_MIN_MS = 400;
export const KEYFRAME_ASK_INTERVAL_MS = 1000;

/**
 * @typedef {object} StallState
 * @property {number} frames framesDecoded at the last progress
 * @property {number} packets packetsReceived then
 * @property {number | null} pendingSince when packets first came without a decode, or null
 * @property {number} askedAt when a keyframe was last asked for
 */

/**
 * One step of the stall watch over a new sample of the shown track. Pure.
 * @param {StallState | null} prev null for a first sample (or another track)
 * @param {{at: number, framesDecoded: number, packetsReceived: number}} sample
 * @param {number | null} rttMs the round trip, if known
 * @returns {{state: StallState, ask: boolean}}
 */
export function stallStep(prev, sample, rttMs) {
  const askedAt = prev ? prev.askedAt : -Infinity;
  if (!prev || sample.framesDecoded !== prev.frames || sample.framesDecoded === 0) {
    return { state: { frames: sample.framesDecoded, packets: sample.packetsReceived, pendingSince: null, askedAt },
             ask: false };
  }
  if (sample.packetsReceived <= prev.packets) return { state: prev, ask: false };
  const pendingSince = prev.pendingSince ?? sample.at;
  const wait = Math.max(STALL_MIN_MS, 3 * (rttMs ?? 0));
  const ask = sample.at - pendingSince >= wait && sample.at - askedAt >= KEYFRAME_ASK_INTERVAL_MS;
  return { state: { ...prev, pendingSince, askedAt: ask ? sample.at : askedAt }, ask };
}
