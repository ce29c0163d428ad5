// @ts-check
// Fit the host's screen to this window (dr.screen.fit, docs/protocol.md "RPC methods").
//
// A runner that owns its X server (capture.resizable; its dr.hello says `resizable: true`)
// resizes its screen to the size the controlling viewer asks for, so the picture is shown one
// host pixel per device pixel, neither scaled down nor blurred. The viewer asks on taking
// control, whenever its picture area changes size (debounced: a window being dragged larger
// asks once it stops), and when the toggle is switched on; never twice in a row for the same
// size. The runner rounds and bounds the size (even, 320x240 up to its largest screen and 4096
// per side) and answers with what it applied.

/** Quiet time after the last size change before asking (a window drag sends dozens). */
export const FIT_DEBOUNCE_MS = 300;
/** dr.screen.fit's parameter bounds (runner/control/messages.py FitParams). */
export const MAX_REQUEST_SIDE = 16384;
export const MIN_SCALE = 0.1;
export const MAX_SCALE = 10;

/** @typedef {{width: number, height: number, scale: number}} FitRequest */

/**
 * The request for a picture area of `cssWidth` x `cssHeight` CSS pixels at `devicePixelRatio`:
 * its size in device pixels (whole pixels, never more than the area holds) and the ratio, each
 * within dr.screen.fit's bounds. Pure.
 * @param {number} cssWidth
 * @param {number} cssHeight
 * @param {number} devicePixelRatio
 * @returns {FitRequest | null} null for an area with no size (hidden, not laid out)
 */
export function fitRequest(cssWidth, cssHeight, devicePixelRatio) {
  const scale = Number.isFinite(devicePixelRatio) && devicePixelRatio > 0
    ? Math.min(Math.max(devicePixelRatio, MIN_SCALE), MAX_SCALE) : 1;
  // A hair of tolerance: 980 CSS px at 1.1 is 1078.0000000000002 device px, not 1078 and a bit.
  const width = Math.floor(cssWidth * scale + 1e-6);
  const height = Math.floor(cssHeight * scale + 1e-6);
  if (!(width >= 1 && height >= 1)) return null;
  return {
    width: Math.min(width, MAX_REQUEST_SIDE),
    height: Math.min(height, MAX_REQUEST_SIDE),
    scale,
  };
}

/**
 * Watches the picture area and asks the runner to fit it.
 */
export class ScreenFit {
  enabled = true; // the toggle
  /** @type {string} the last request sent (JSON), so the same size is not asked twice */
  #sent = '';
  /** @type {ReturnType<typeof setTimeout> | null} */
  #timer = null;
  /** @type {ResizeObserver | null} */
  #observer = null;
  #area;
  #call;
  #allowed;
  #onResult;
  #onError;
  #delayMs;

  /**
   * @param {object} options
   * @param {HTMLElement} options.area the element the picture is shown in
   * @param {(request: FitRequest) => Promise<Record<string, any>>} options.call dr.screen.fit
   * @param {() => boolean} options.allowed this viewer may ask now (it has control, the runner
   *   is resizable)
   * @param {(result: Record<string, any>, request: FitRequest) => void} options.onResult
   * @param {(error: any) => void} options.onError
   * @param {number} [options.delayMs]
   */
  constructor({ area, call, allowed, onResult, onError, delayMs = FIT_DEBOUNCE_MS }) {
    this.#area = area;
    this.#call = call;
    this.#allowed = allowed;
    this.#onResult = onResult;
    this.#onError = onError;
    this.#delayMs = delayMs;
  }

  /** Follow the area's size (and the device pixel ratio: a move to another monitor or a zoom). */
  attach() {
    this.#observer = new ResizeObserver(() => this.schedule());
    this.#observer.observe(this.#area);
    window.addEventListener('resize', () => this.schedule());
  }

  /** A new session or a new controller: the next fit asks even for the size asked before. */
  forget() {
    this.#sent = '';
  }

  /** Ask after FIT_DEBOUNCE_MS of quiet. */
  schedule() {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.fit();
    }, this.#delayMs);
  }

  /** Ask now, if enabled and allowed and the size is not the one asked for last. */
  async fit() {
    if (!this.enabled || !this.#allowed()) return null;
    const box = this.#area.getBoundingClientRect();
    const request = fitRequest(box.width, box.height, window.devicePixelRatio);
    const key = JSON.stringify(request);
    if (!request || key === this.#sent) return null;
    this.#sent = key;
    try {
      const result = await this.#call(request);
      this.#onResult(result, request);
      return result;
    } catch (error) {
      this.#sent = ''; // try again on the next change
      this.#onError(error);
      return null;
    }
  }
}
