// @ts-check
// The host's pointer drawn by the viewer (docs/protocol.md, "The pointer"): with the runner's
// capture.cursor = "viewer" the picture carries no pointer; the runner pushes the pointer's image
// (`cursor`, reliable, by XFixes serial) and position (`pointer`, lossy, at most the capture rate).
//
// - The controller sees the image as its own CSS cursor over the picture (`cursor: url(...) x y,
//   auto`), so the pointer moves at the display's rate, not when a frame comes back. The image is
//   scaled to the picture's scale and drawn at the device's pixel ratio (image-set on HiDPI).
// - Watchers, and the controller under pointer lock (relative mode: the browser hides its own
//   pointer), see the image drawn at the pushed position, over the picture.
// - A hidden host pointer (a transparent image) is `cursor: none` and no overlay.
//
// The pure parts (parseCursor, parsePointer, cursorGeometry, cursorCss) are exported for tests.
// Pushes are sealed by the runner, but still bounded here: no PNG declaring more than MAX_SIDE
// pixels a side, or longer than MAX_PNG_CHARS of base64, is decoded, and at most CACHED_SHAPES
// images are kept.

import { contentRect } from './input.js';

export const MAX_SIDE = 256; // the runner sends at most 128 (docs/protocol.md)
export const MAX_PNG_CHARS = 16384; // base64 of the runner's 9000-byte PNG bound, with room
export const MAX_CSS_CURSOR = 128; // Chrome and Firefox ignore larger CSS cursor images
export const CACHED_SHAPES = 64; // >= the 32 serials the runner assumes a session holds
const CACHED_CSS = 16;
const MAX_SERIAL = 2 ** 32 - 1;
const MAX_COORDINATE = 2 ** 31;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * @typedef {{serial: number, kind: 'image', w: number, h: number, xhot: number, yhot: number,
 *   png: string} | {serial: number, kind: 'hidden' | 'unknown' | 'ref'}} CursorMessage
 * @typedef {{x: number, y: number, w: number, h: number}} PointerMessage
 * @typedef {{serial: number, kind: 'image' | 'hidden' | 'unknown', w: number, h: number,
 *   xhot: number, yhot: number, image: HTMLImageElement | null}} Shape
 */

/** @param {unknown} v @param {number} min @param {number} max */
const intIn = (v, min, max) => Number.isInteger(v) && /** @type {number} */ (v) >= min
  && /** @type {number} */ (v) <= max;

/** The width and height a base64 PNG declares (its IHDR), or null when it is no PNG: read before
 * decoding, so an image that would decode to more than MAX_SIDE pixels a side is never decoded.
 * @param {string} base64 @returns {[number, number] | null} */
export function pngSize(base64) {
  let head;
  try {
    head = atob(base64.slice(0, 32)); // 24 bytes: signature, IHDR length and type, width, height
  } catch {
    return null;
  }
  if (head.length < 24 || !head.startsWith('\x89PNG\r\n\x1a\n') || head.slice(12, 16) !== 'IHDR') return null;
  /** @param {number} at */
  const u32 = (at) => ((head.charCodeAt(at) << 24) >>> 0) + (head.charCodeAt(at + 1) << 16)
    + (head.charCodeAt(at + 2) << 8) + head.charCodeAt(at + 3);
  return [u32(16), u32(20)];
}

/** A `cursor` push, checked; null when it is malformed or out of bounds.
 * @param {Record<string, any>} m @returns {CursorMessage | null} */
export function parseCursor(m) {
  const { serial } = m;
  if (!intIn(serial, 0, MAX_SERIAL)) return null;
  if (m.hidden === true) return { serial, kind: 'hidden' };
  if (m.unknown === true) return { serial, kind: 'unknown' };
  if (m.png === undefined && m.w === undefined) return { serial, kind: 'ref' };
  const { w, h, xhot, yhot, png } = m;
  if (!intIn(w, 1, MAX_SIDE) || !intIn(h, 1, MAX_SIDE) || !intIn(xhot, 0, w - 1)
      || !intIn(yhot, 0, h - 1) || typeof png !== 'string' || png.length > MAX_PNG_CHARS
      || !BASE64.test(png)) {
    return null;
  }
  const size = pngSize(png);
  if (!size || !intIn(size[0], 1, MAX_SIDE) || !intIn(size[1], 1, MAX_SIDE)) return null;
  return { serial, kind: 'image', w, h, xhot, yhot, png };
}

/** A `pointer` push, checked; null when malformed.
 * @param {Record<string, any>} m @returns {PointerMessage | null} */
export function parsePointer(m) {
  const { x, y, w, h } = m;
  if (!intIn(x, -MAX_COORDINATE, MAX_COORDINATE) || !intIn(y, -MAX_COORDINATE, MAX_COORDINATE)
      || !intIn(w, 1, 65535) || !intIn(h, 1, 65535)) return null;
  return { x, y, w, h };
}

/**
 * The size a host cursor of `w` x `h` pixels (hotspot `xhot`, `yhot`) is shown at: `scale` CSS px
 * per host pixel (the picture's), at most MAX_CSS_CURSOR CSS px a side; `pixelWidth` and
 * `pixelHeight` are the image's size in device pixels (`devicePixelRatio`).
 * @param {{w: number, h: number, xhot: number, yhot: number}} shape
 * @param {number} scale @param {number} devicePixelRatio
 */
export function cursorGeometry({ w, h, xhot, yhot }, scale, devicePixelRatio) {
  const s = Math.min(scale > 0 ? scale : 1, MAX_CSS_CURSOR / Math.max(w, h));
  const dpr = devicePixelRatio > 0 ? devicePixelRatio : 1;
  const cssWidth = Math.max(1, Math.round(w * s));
  const cssHeight = Math.max(1, Math.round(h * s));
  return {
    cssWidth,
    cssHeight,
    hotX: Math.min(cssWidth - 1, Math.round(xhot * s)),
    hotY: Math.min(cssHeight - 1, Math.round(yhot * s)),
    pixelWidth: Math.max(1, Math.round(cssWidth * dpr)),
    pixelHeight: Math.max(1, Math.round(cssHeight * dpr)),
  };
}

/** The CSS `cursor` value for an image URL whose pixels are `devicePixelRatio` per CSS px; the
 * hotspot is in CSS px.
 * @param {string} url @param {number} hotX @param {number} hotY @param {number} devicePixelRatio */
export function cursorCss(url, hotX, hotY, devicePixelRatio) {
  const image = devicePixelRatio === 1 ? `url("${url}")` : `image-set(url("${url}") ${devicePixelRatio}x)`;
  return `${image} ${hotX} ${hotY}, auto`;
}

/** What the page shows of the host's pointer (window.viewer.state.pointer). */
export function pointerState() {
  return {
    enabled: false, // the runner pushes the pointer (dr.hello `cursor` is "viewer")
    /** @type {number | null} serial of the image in use */
    serial: null,
    /** @type {'' | 'image' | 'hidden' | 'unknown'} */
    kind: '',
    local: false, // shown as our CSS cursor (we control, pointer not locked)
    css: '', // the CSS cursor value set on the picture
    /** @type {{x: number, y: number, w: number, h: number} | null} last pushed position */
    position: null,
    overlay: false, // the image is drawn over the picture at `position`
    images: 0, // cursor images decoded
    positions: 0, // pointer pushes taken
  };
}

/** The host's pointer over one <video>; see the module comment. */
export class PointerView {
  /** @type {Map<number, Shape>} serial -> decoded image, least recently used first */
  #shapes = new Map();
  /** @type {Map<string, string>} `${serial} ${w}x${h} ${dpr}` -> CSS cursor value */
  #css = new Map();
  #generation = 0; // reset() makes pending decodes stale
  #latest = 0; // numbers shape() calls: a slow decode must not replace a newer cursor
  #local = false;

  /**
   * @param {object} options
   * @param {HTMLVideoElement} options.video the picture
   * @param {HTMLCanvasElement} options.overlay absolutely positioned at the top left of the
   *   picture's parent (its containing block), pointer-events: none
   * @param {ReturnType<typeof pointerState>} [options.state] the object to keep the state in
   */
  constructor({ video, overlay, state = pointerState() }) {
    this.video = video;
    this.overlay = overlay;
    this.state = state;
  }

  /** Forget everything (a new control session, or none). @param {boolean} enabled */
  reset(enabled) {
    this.#generation += 1;
    this.#shapes.clear();
    this.#css.clear();
    Object.assign(this.state, pointerState(), { enabled });
    this.render();
  }

  /** A `cursor` push. @param {Record<string, any>} message */
  async shape(message) {
    const parsed = parseCursor(message);
    if (!parsed || !this.state.enabled) return;
    const generation = this.#generation;
    let shape = this.#shapes.get(parsed.serial);
    if (parsed.kind === 'ref' && !shape) return; // never sent to us: keep what we show
    const call = ++this.#latest;
    if (parsed.kind === 'image') {
      const image = new Image();
      image.src = `data:image/png;base64,${parsed.png}`;
      try {
        await image.decode();
      } catch {
        return;
      }
      if (generation !== this.#generation) return;
      shape = { ...parsed, image };
      this.state.images += 1;
    } else if (parsed.kind !== 'ref') {
      shape = { serial: parsed.serial, kind: parsed.kind, w: 0, h: 0, xhot: 0, yhot: 0, image: null };
    }
    if (!shape) return;
    this.#shapes.delete(parsed.serial);
    this.#shapes.set(parsed.serial, shape);
    while (this.#shapes.size > CACHED_SHAPES) this.#shapes.delete(this.#shapes.keys().next().value ?? 0);
    if (call !== this.#latest) return; // a newer cursor came while this one decoded
    this.state.serial = parsed.serial;
    this.state.kind = shape.kind;
    this.render();
  }

  /** A `pointer` push. @param {Record<string, any>} message */
  pointer(message) {
    const parsed = parsePointer(message);
    if (!parsed || !this.state.enabled) return;
    this.state.position = parsed;
    this.state.positions += 1;
    this.render();
  }

  /** Whether our own pointer stands for the host's (we control and the pointer is not locked).
   * @param {boolean} local */
  setLocal(local) {
    if (local === this.#local) return;
    this.#local = local;
    this.render();
  }

  /** Show the current image and position for the picture's current size. */
  render() {
    const { state, video } = this;
    const shape = state.serial === null ? undefined : this.#shapes.get(state.serial);
    const rect = contentRect(video.getBoundingClientRect(), getComputedStyle(video),
      video.videoWidth, video.videoHeight);
    state.local = state.enabled && this.#local;
    let css = '';
    let overlay = false;
    const shown = video.dataset.shown !== 'no'; // trust.js decides whether the picture shows
    if (state.enabled && shown && shape && rect) {
      const scale = rect.width / (state.position?.w || video.videoWidth);
      if (state.local) {
        css = shape.kind === 'hidden' ? 'none' : shape.image ? this.#cssFor(shape, scale) : '';
      } else if (shape.image && state.position) {
        overlay = this.#draw(shape, scale, rect);
      }
    }
    if (state.css !== css) {
      state.css = css;
      video.style.cursor = css;
    }
    state.overlay = overlay;
    this.overlay.hidden = !overlay;
  }

  /** @param {Shape} shape @param {number} scale */
  #cssFor(shape, scale) {
    const dpr = window.devicePixelRatio || 1;
    const g = cursorGeometry(shape, scale, dpr);
    const key = `${shape.serial} ${g.pixelWidth}x${g.pixelHeight} ${dpr}`;
    let css = this.#css.get(key);
    if (css === undefined) {
      const canvas = document.createElement('canvas');
      canvas.width = g.pixelWidth;
      canvas.height = g.pixelHeight;
      const context = canvas.getContext('2d');
      if (!context || !shape.image) return '';
      context.drawImage(shape.image, 0, 0, g.pixelWidth, g.pixelHeight);
      css = cursorCss(canvas.toDataURL('image/png'), g.hotX, g.hotY, dpr);
      this.#css.set(key, css);
      while (this.#css.size > CACHED_CSS) this.#css.delete(this.#css.keys().next().value ?? '');
    }
    return css;
  }

  /** Draw the image at the pushed position; false when the position is off the picture.
   * @param {Shape} shape @param {number} scale @param {{left: number, top: number, width: number,
   *   height: number}} rect */
  #draw(shape, scale, rect) {
    const position = this.state.position;
    if (!position || !shape.image || position.x < 0 || position.y < 0 || position.x >= position.w
        || position.y >= position.h) return false;
    const dpr = window.devicePixelRatio || 1;
    const g = cursorGeometry(shape, scale, dpr);
    const { overlay } = this;
    if (overlay.width !== g.pixelWidth || overlay.height !== g.pixelHeight
        || overlay.dataset.serial !== String(shape.serial)) {
      overlay.width = g.pixelWidth;
      overlay.height = g.pixelHeight;
      overlay.dataset.serial = String(shape.serial);
      overlay.getContext('2d')?.drawImage(shape.image, 0, 0, g.pixelWidth, g.pixelHeight);
    }
    const parent = overlay.parentElement?.getBoundingClientRect() ?? { left: 0, top: 0 };
    overlay.style.width = `${g.cssWidth}px`;
    overlay.style.height = `${g.cssHeight}px`;
    // The hotspot sits where the host's pointer is, in the picture as drawn.
    const x = rect.left - parent.left + position.x * scale - g.hotX;
    const y = rect.top - parent.top + position.y * scale - g.hotY;
    overlay.style.transform = `translate(${x.toFixed(1)}px, ${y.toFixed(1)}px)`;
    return true;
  }
}
