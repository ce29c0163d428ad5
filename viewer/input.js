// @ts-check
// Pointer and keyboard capture on the shown screen, turned into docs/protocol.md input messages.
//
// What it follows (lessons of other remote desktops: Selkies, Neko, RustDesk, noVNC, Moonlight):
//   - absolute positions are 0..1 within the picture actually displayed (object-fit letterboxing
//     removed), so both edges are reachable exactly; moves are coalesced to one per animation
//     frame and sent lossy; with pointer lock, relative `rel` moves are summed and saturated;
//   - a button carries its position, so the click lands where aimed even if a lossy move was lost;
//   - the wheel is counted in notches (50 px, 3 lines or 1 page each);
//   - keys carry `code`, `key` and a modifier snapshot; the browser's own handling is prevented;
//   - while anything is held, a `held` heartbeat every 100 ms; a `reset` on window blur, hidden tab,
//     fullscreen change and pointer-lock exit.
// Nothing is sent unless `isActive()` says so (this session has control).
//
// The pure helpers (contentRect, normalizedPosition, wheelNotches, textChunks, ...) touch no DOM
// state beyond their arguments, so Node tests can check them.

import { MAX_INPUT_BODY_BYTES } from './envelope.js';

/** @typedef {{left: number, top: number, width: number, height: number}} Rect client (CSS px) */
/** @typedef {(message: Record<string, unknown>, options: {reliable: boolean}) => Promise<void> | void} Send */

export const BUTTON_NAMES = ['left', 'middle', 'right', 'back', 'forward']; // MouseEvent.button 0..4
const BUTTON_BITS = [1, 4, 2, 8, 16]; // MouseEvent.buttons bit of each name above
export const MODIFIERS = ['Shift', 'Control', 'Alt', 'Meta', 'AltGraph', 'CapsLock'];
export const WHEEL_PIXELS_PER_NOTCH = 50; // WheelEvent.DOM_DELTA_PIXEL
export const WHEEL_LINES_PER_NOTCH = 3; // WheelEvent.DOM_DELTA_LINE
export const WHEEL_PAGES_PER_NOTCH = 1; // WheelEvent.DOM_DELTA_PAGE
export const MAX_WHEEL_NOTCHES = 16;
export const HELD_INTERVAL_MS = 100;
export const MAX_HELD_KEYS = 32;
export const MAX_TEXT_CHARS = 1024;
const REL_MIN = -32768;
const REL_MAX = 32767;

const textEncoder = new TextEncoder();
/** @type {(value: number, low: number, high: number) => number} */
const clamp = (value, low, high) => Math.min(high, Math.max(low, value));

// --- pure helpers --------------------------------------------------------------------------------

/**
 * Where the picture is drawn inside a <video>, in client (CSS px) coordinates:
 * {left, top, width, height}, or null before the video has a size. `box` is the element's
 * getBoundingClientRect(), `style` its computed style (object-fit; object-position is taken to be
 * the default, centred). Borders and padding are removed first.
 * @param {{left: number, top: number, width: number, height: number}} box
 * @param {Pick<CSSStyleDeclaration, 'objectFit' | 'borderLeftWidth' | 'borderTopWidth'
 *   | 'borderRightWidth' | 'borderBottomWidth' | 'paddingLeft' | 'paddingTop' | 'paddingRight'
 *   | 'paddingBottom'>} style
 * @param {number} videoWidth
 * @param {number} videoHeight
 * @returns {Rect | null}
 */
export function contentRect(box, style, videoWidth, videoHeight) {
  if (!videoWidth || !videoHeight) return null;
  /** @param {string} value */
  const px = (value) => parseFloat(value) || 0;
  const insetLeft = px(style.borderLeftWidth) + px(style.paddingLeft);
  const insetTop = px(style.borderTopWidth) + px(style.paddingTop);
  const width = box.width - insetLeft - px(style.borderRightWidth) - px(style.paddingRight);
  const height = box.height - insetTop - px(style.borderBottomWidth) - px(style.paddingBottom);
  if (width <= 0 || height <= 0) return null;
  // The bounded dimension is taken as is, not recomputed through a scale, so its edges are exact.
  const contain = () => (width * videoHeight <= height * videoWidth
    ? [width, (width * videoHeight) / videoWidth]
    : [(height * videoWidth) / videoHeight, height]);
  const cover = () => (width * videoHeight >= height * videoWidth
    ? [width, (width * videoHeight) / videoWidth]
    : [(height * videoWidth) / videoHeight, height]);
  const fits = videoWidth <= width && videoHeight <= height;
  /** @type {Record<string, () => number[]>} */
  const BY_FIT = {
    fill: () => [width, height],
    cover,
    none: () => [videoWidth, videoHeight],
    'scale-down': () => (fits ? [videoWidth, videoHeight] : contain()),
  };
  const [drawnWidth, drawnHeight] = BY_FIT[style.objectFit]?.() ?? contain();
  return {
    left: box.left + insetLeft + (width - drawnWidth) / 2,
    top: box.top + insetTop + (height - drawnHeight) / 2,
    width: drawnWidth,
    height: drawnHeight,
  };
}

/**
 * A client position as 0..1 within `rect` (from contentRect). The pointer's last reachable
 * position inside the picture is one device pixel before its right/bottom edge; that maps to 1,
 * so the runner's `left + round(x * (width - 1))` reaches the last host pixel. Outside the picture
 * (letterbox bars, a captured drag beyond the element) it clamps to the nearest edge.
 * @param {Rect} rect
 * @param {number} clientX
 * @param {number} clientY
 * @param {number} [devicePixelRatio]
 * @returns {{x: number, y: number}}
 */
export function normalizedPosition(rect, clientX, clientY, devicePixelRatio = 1) {
  const device = 1 / (devicePixelRatio > 0 ? devicePixelRatio : 1);
  const spanX = Math.max(rect.width - device, device);
  const spanY = Math.max(rect.height - device, device);
  return {
    x: clamp((clientX - rect.left) / spanX, 0, 1),
    y: clamp((clientY - rect.top) / spanY, 0, 1),
  };
}

/** A WheelEvent's deltas in notches (positive: down / right), unclamped.
 * @param {{deltaX: number, deltaY: number, deltaMode: number}} event */
export function wheelNotches({ deltaX, deltaY, deltaMode }) {
  const per = [WHEEL_PIXELS_PER_NOTCH, WHEEL_LINES_PER_NOTCH, WHEEL_PAGES_PER_NOTCH][deltaMode]
    ?? WHEEL_PIXELS_PER_NOTCH;
  return { dx: (deltaX || 0) / per, dy: (deltaY || 0) / per };
}

/** The modifier names `getModifierState` reports down for this event.
 * @param {{getModifierState?: (name: string) => boolean}} event */
export function modifierSnapshot(event) {
  return MODIFIERS.filter((name) => event.getModifierState?.(name));
}

/** Move `value` towards zero by whole units within int16: [sent, remainder].
 * @param {number} value @returns {[number, number]} */
export function takeRelative(value) {
  const whole = clamp(Math.trunc(value), REL_MIN, REL_MAX);
  return [whole, value - whole];
}

/**
 * Split text into `text` messages the runner accepts: at most 1024 characters (code points, never
 * splitting a surrogate pair) and a JSON body within the 4096-byte input envelope. "\r\n" and "\r"
 * become "\n" (Enter).
 * @param {string} text
 * @returns {string[]}
 */
export function textChunks(text) {
  const chars = Array.from(String(text).replace(/\r\n?/g, '\n'));
  /** @type {string[]} */
  const chunks = [];
  /** @type {string[]} */
  let current = [];
  let bytes = textEncoder.encode(JSON.stringify({ t: 'text', text: '' })).length;
  for (const char of chars) {
    const size = textEncoder.encode(JSON.stringify(char)).length - 2; // as escaped inside JSON
    if (current.length && (current.length >= MAX_TEXT_CHARS || bytes + size > MAX_INPUT_BODY_BYTES)) {
      chunks.push(current.join(''));
      current = [];
      bytes = textEncoder.encode(JSON.stringify({ t: 'text', text: '' })).length;
    }
    current.push(char);
    bytes += size;
  }
  if (current.length) chunks.push(current.join(''));
  return chunks;
}

// --- capture -------------------------------------------------------------------------------------

/**
 * Captures input on `stage` (a focusable element holding `video`) for the controlling session.
 * Nothing is sent unless `isActive()` says so.
 */
export class InputCapture {
  /** @type {Set<string>} codes held */
  keys = new Set();
  /** @type {Set<string>} button names held */
  buttons = new Set();
  locked = false;
  #send;
  #isActive;
  #monitor;
  #onError;
  #onLockChange;
  #isLocal;
  /** @type {Set<string>} codes whose key-down was the viewer's own shortcut: their key-up is too */
  #localKeys = new Set();
  /** @type {{clientX: number, clientY: number} | null} latest position not yet sent as a move */
  #pointer = null;
  #rel = { dx: 0, dy: 0 }; // relative motion not yet sent
  #wheel = { dx: 0, dy: 0 }; // notches not yet sent
  #frame = 0;
  /** @type {ReturnType<typeof setInterval> | 0} */
  #heartbeat = 0;
  /** @type {Array<[EventTarget, string, (event: any) => void, AddEventListenerOptions | undefined]>} */
  #handlers = [];

  /**
   * @param {object} options
   * @param {HTMLElement} options.stage element receiving pointer and keyboard events (needs tabindex)
   * @param {HTMLVideoElement} options.video the <video> showing the runner's picture
   * @param {Send} options.send sends one message; failures are passed to onError
   * @param {() => boolean} options.isActive this session has control now (and the picture is
   *   the runner's)
   * @param {() => string | null} options.monitor id of the monitor the picture shows (for
   *   `mon`), or null
   * @param {(error: any, type: unknown) => void} [options.onError]
   * @param {(locked: boolean) => void} [options.onLockChange]
   * @param {(event: KeyboardEvent) => boolean} [options.isLocal] a key-down that is the viewer's
   *   own shortcut (e.g. the statistics overlay): neither it nor its key-up goes to the host
   */
  constructor({
    stage, video, send, isActive, monitor, onError = () => {}, onLockChange = () => {},
    isLocal = () => false,
  }) {
    this.stage = stage;
    this.video = video;
    this.#send = send;
    this.#isActive = isActive;
    this.#monitor = monitor;
    this.#onError = onError;
    this.#onLockChange = onLockChange;
    this.#isLocal = isLocal;
  }

  /** Start listening. */
  attach() {
    const { stage } = this;
    /**
     * @param {EventTarget} target
     * @param {string} type
     * @param {(event: any) => void} handler
     * @param {AddEventListenerOptions} [options]
     */
    const on = (target, type, handler, options) => {
      target.addEventListener(type, handler, options);
      this.#handlers.push([target, type, handler, options]);
    };
    on(stage, 'pointermove', (e) => this.#pointerMove(e));
    on(stage, 'pointerdown', (e) => this.#pointerButton(e, true));
    on(stage, 'pointerup', (e) => this.#pointerButton(e, false));
    on(stage, 'pointercancel', (e) => this.#pointerButton(e, false));
    // Back/forward buttons navigate on mouseup and a middle click may autoscroll or paste: keep
    // the browser out while controlling. (Not on pointerdown: that would also swallow mouseup.)
    for (const type of ['mousedown', 'mouseup', 'auxclick', 'click', 'dblclick']) {
      on(stage, type, (e) => this.#preventWhileActive(e));
    }
    on(stage, 'contextmenu', (e) => this.#preventWhileActive(e));
    on(stage, 'wheel', (e) => this.#wheelEvent(e), { passive: false });
    on(stage, 'keydown', (e) => this.#key(e, true));
    on(stage, 'keyup', (e) => this.#key(e, false));
    on(stage, 'focusout', () => {
      if (this.keys.size) this.reset(); // their keyups now go elsewhere
    });
    on(window, 'blur', () => this.reset());
    on(document, 'visibilitychange', () => {
      if (document.visibilityState === 'hidden') this.reset();
    });
    on(document, 'fullscreenchange', () => this.reset());
    on(document, 'pointerlockchange', () => this.#lockChange());
  }

  /** Stop listening and forget what is held (no messages). */
  detach() {
    for (const [target, type, handler, options] of this.#handlers) {
      target.removeEventListener(type, handler, options);
    }
    this.#handlers = [];
    this.forget();
    if (this.locked) document.exitPointerLock?.();
  }

  /** Lock the pointer to the stage (call from a click): moves become relative `rel`. */
  async lockPointer() {
    this.stage.focus({ preventScroll: true });
    await this.stage.requestPointerLock();
  }

  unlockPointer() {
    if (document.pointerLockElement === this.stage) document.exitPointerLock();
  }

  /** Release everything: a `reset` to the runner (when controlling) and local state cleared. */
  reset() {
    const active = this.#isActive();
    this.forget();
    if (active) this.#emit({ t: 'reset' }, true);
  }

  /** Clear local state without telling the runner (it released everything itself, e.g. on
   * losing control). */
  forget() {
    this.keys.clear();
    this.buttons.clear();
    this.#pointer = null;
    this.#rel = { dx: 0, dy: 0 };
    this.#wheel = { dx: 0, dy: 0 };
    this.#updateHeartbeat();
  }

  // --- events ------------------------------------------------------------------------------

  /** @param {Event} event */
  #preventWhileActive(event) {
    if (this.#isActive()) event.preventDefault();
  }

  /** @param {PointerEvent} event */
  #pointerMove(event) {
    if (!this.#isActive() || !event.isPrimary) return;
    this.#syncButtons(event); // a second button pressed while one is down arrives as a move
    if (this.locked) {
      this.#rel.dx += event.movementX || 0;
      this.#rel.dy += event.movementY || 0;
    } else {
      this.#pointer = { clientX: event.clientX, clientY: event.clientY };
    }
    this.#schedule();
  }

  /** @param {PointerEvent} event @param {boolean} down */
  #pointerButton(event, down) {
    if (!this.#isActive() || !event.isPrimary) return;
    if (down) {
      this.stage.focus({ preventScroll: true });
      if (!this.locked) {
        try {
          this.stage.setPointerCapture(event.pointerId); // drags beyond the stage keep reporting
        } catch {
          // the pointer is already gone
        }
      }
    }
    this.#syncButtons(event);
  }

  /** Send a button message for every bit of `event.buttons` that changed since last time. */
  /** @param {PointerEvent} event */
  #syncButtons(event) {
    const mask = event.type === 'pointercancel' ? 0 : event.buttons;
    BUTTON_NAMES.forEach((name, index) => {
      const down = (mask & BUTTON_BITS[index]) !== 0;
      if (down === this.buttons.has(name)) return;
      if (down) this.buttons.add(name);
      else this.buttons.delete(name);
      const message = { t: 'button', button: name, down };
      const position = this.locked ? null : this.#position(event.clientX, event.clientY);
      if (position) {
        Object.assign(message, position);
        this.#pointer = null; // the button moves the pointer there first
      }
      this.#emit(message, true);
    });
    this.#updateHeartbeat();
  }

  /** @param {WheelEvent} event */
  #wheelEvent(event) {
    if (!this.#isActive()) return;
    event.preventDefault();
    const { dx, dy } = wheelNotches(event);
    this.#wheel.dx += dx;
    this.#wheel.dy += dy;
    this.#schedule();
  }

  /** @param {KeyboardEvent} event @param {boolean} down */
  #key(event, down) {
    if (!this.#isActive() || event.isComposing) return;
    event.preventDefault();
    event.stopPropagation();
    if (down ? this.#isLocal(event) : this.#localKeys.has(event.code)) {
      if (down) this.#localKeys.add(event.code);
      else this.#localKeys.delete(event.code);
      return;
    }
    if (event.code) {
      if (down) this.keys.add(event.code);
      else this.keys.delete(event.code);
    }
    // Auto-repeat keydowns are sent too: XTEST presses do not repeat on the host by themselves.
    this.#emit({
      t: 'key', code: event.code, key: event.key, down, mods: modifierSnapshot(event),
    }, true);
    this.#updateHeartbeat();
  }

  #lockChange() {
    const locked = document.pointerLockElement === this.stage;
    if (locked === this.locked) return;
    this.locked = locked;
    this.#onLockChange(locked);
    if (!locked) this.reset(); // pointer-lock exit
  }

  // --- sending -----------------------------------------------------------------------------

  /** @param {number} clientX @param {number} clientY */
  #position(clientX, clientY) {
    const mon = this.#monitor();
    if (mon === null || mon === undefined) return null;
    const { video } = this;
    const rect = contentRect(video.getBoundingClientRect(), getComputedStyle(video),
      video.videoWidth, video.videoHeight);
    if (!rect) return null;
    const { x, y } = normalizedPosition(rect, clientX, clientY, window.devicePixelRatio);
    return { mon, x, y };
  }

  #schedule() {
    if (!this.#frame) this.#frame = requestAnimationFrame(() => this.#flush());
  }

  /** Once per animation frame: the latest absolute position, summed relative motion, wheel. */
  #flush() {
    this.#frame = 0;
    if (!this.#isActive()) {
      this.#pointer = null;
      this.#rel = { dx: 0, dy: 0 };
      this.#wheel = { dx: 0, dy: 0 };
      return;
    }
    if (this.#pointer) {
      const position = this.#position(this.#pointer.clientX, this.#pointer.clientY);
      this.#pointer = null;
      if (position) this.#emit({ t: 'move', ...position }, false);
    }
    const [dx, restX] = takeRelative(this.#rel.dx);
    const [dy, restY] = takeRelative(this.#rel.dy);
    this.#rel = { dx: restX, dy: restY };
    if (dx || dy) this.#emit({ t: 'rel', dx, dy }, false);
    if (Math.abs(restX) >= 1 || Math.abs(restY) >= 1) this.#schedule(); // beyond int16: next frame
    const { dx: wx, dy: wy } = this.#wheel;
    this.#wheel = { dx: 0, dy: 0 };
    if (wx || wy) {
      this.#emit({
        t: 'wheel',
        dx: clamp(wx, -MAX_WHEEL_NOTCHES, MAX_WHEEL_NOTCHES),
        dy: clamp(wy, -MAX_WHEEL_NOTCHES, MAX_WHEEL_NOTCHES),
      }, true);
    }
  }

  #updateHeartbeat() {
    const holding = this.keys.size > 0 || this.buttons.size > 0;
    if (holding && !this.#heartbeat) {
      this.#heartbeat = setInterval(() => this.#sendHeld(), HELD_INTERVAL_MS);
    } else if (!holding && this.#heartbeat) {
      clearInterval(this.#heartbeat);
      this.#heartbeat = 0;
    }
  }

  #sendHeld() {
    if (!this.#isActive()) {
      this.forget();
      return;
    }
    this.#emit({
      t: 'held', keys: [...this.keys].slice(0, MAX_HELD_KEYS), buttons: [...this.buttons],
    }, true);
  }

  /** @param {Record<string, unknown>} message @param {boolean} reliable */
  #emit(message, reliable) {
    let sending;
    try {
      sending = this.#send(message, { reliable });
    } catch (error) {
      this.#onError(error, message.t);
      return;
    }
    Promise.resolve(sending).catch((error) => this.#onError(error, message.t));
  }
}
