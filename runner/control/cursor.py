"""Cursor pushes (docs/protocol.md, "The pointer"): the pointer's image and position for viewers
that draw the pointer themselves (``capture.cursor = "viewer"``).

The formats are pure functions (``cursor_body``, ``png_rgba``); ``PointerGate`` decides when a
position may go out (clock passed in); ``CursorRelay`` is the sink runner.media.cursor reports to,
and pushes through a function it is given (the Pusher's), so it is tested without LiveKit.

Bounds, whatever the X server hands over: an image is at most ``MAX_SIDE`` pixels a side (a larger
cursor is scaled down, hotspot with it) and its PNG at most ``MAX_PNG_BYTES`` (else its pixels are
halved until it fits; the size it is drawn at stays), so a sealed cursor push stays under
``MAX_PUSH_BYTES``, well inside what every LiveKit client accepts as one data packet.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from runner.control.sessions import Session
from runner.media.controls import CursorShape, Region

MAX_SIDE = 128  # Chrome and Firefox ignore CSS cursor images larger than 128 px
MAX_PNG_BYTES = 9000  # base64: 12000 characters
MAX_PUSH_BYTES = 12_400  # the sealed envelope of the largest cursor push (tests check it)
SENT_PER_SESSION = 32  # serials a session is known to hold; viewers keep at least 64
ENCODED_KEPT = 32  # encoded images kept by serial (a pointer going back and forth costs nothing)
KNOWN_SESSIONS_KEPT = 256  # above this, what ended sessions held is forgotten (4 x MAX_SESSIONS)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_RGBA = 6  # colour type: truecolour with alpha
PNG_DEPTH = 8
PNG_FILTER_NONE = 0

Push = Callable[[Session, Mapping[str, object], bool], None]
"""push(session, body, reliable): seal and send one push (runner.control.pushes.Pusher.push)."""


# --- formats ---------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_rgba(width: int, height: int, rgba: bytes) -> bytes:
    """A PNG of ``width`` x ``height`` RGBA pixels (8 bits each, straight alpha, rows top down)."""
    if width < 1 or height < 1 or len(rgba) != width * height * 4:
        raise ValueError("rgba must hold width * height * 4 bytes")
    stride = width * 4
    raw = b"".join(bytes([PNG_FILTER_NONE]) + rgba[y * stride:(y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, PNG_DEPTH, PNG_RGBA, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")


def straight_rgba(bgra: bytes) -> np.ndarray:
    """XFixes pixels (B G R A, premultiplied alpha) as RGBA with straight alpha, shape (n, 4)."""
    px = np.frombuffer(bgra, np.uint8).reshape(-1, 4).astype(np.uint32)
    alpha = px[:, 3:4]
    colour = np.where(alpha > 0, np.minimum(255, (px[:, 2::-1] * 255 + alpha // 2) // np.maximum(alpha, 1)), 0)
    return np.concatenate([colour, alpha], axis=1).astype(np.uint8)


def resample(rgba: np.ndarray, width: int, height: int, new_width: int, new_height: int) -> np.ndarray:
    """Nearest-neighbour scaling of (width * height, 4) pixels to (new_width * new_height, 4)."""
    image = rgba.reshape(height, width, 4)
    rows = (np.arange(new_height) * height) // new_height
    cols = (np.arange(new_width) * width) // new_width
    return np.ascontiguousarray(image[rows][:, cols]).reshape(-1, 4)


def cursor_body(shape: CursorShape) -> dict[str, object]:
    """The full `cursor` push for a shape (docs/protocol.md, "The pointer")."""
    base: dict[str, object] = {"t": "cursor", "serial": shape.serial}
    w, h = shape.width, shape.height
    if w < 1 or h < 1 or len(shape.bgra) != w * h * 4:
        return {**base, "unknown": True}  # the X server would not say: the viewer's own pointer
    rgba = straight_rgba(shape.bgra)
    if not rgba[:, 3].any():
        return {**base, "hidden": True}
    xhot, yhot = shape.xhot, shape.yhot
    if max(w, h) > MAX_SIDE:  # drawn smaller than on the host, but drawn
        scale = MAX_SIDE / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        rgba = resample(rgba, w, h, nw, nh)
        xhot, yhot = int(xhot * scale), int(yhot * scale)
        w, h = nw, nh
    xhot, yhot = min(max(xhot, 0), w - 1), min(max(yhot, 0), h - 1)
    pw, ph, pixels = w, h, rgba
    png = png_rgba(pw, ph, pixels.tobytes())
    while len(png) > MAX_PNG_BYTES:  # only noise-like images get here
        if pw == 1 and ph == 1:
            return {**base, "unknown": True}
        pw, ph = max(1, (pw + 1) // 2), max(1, (ph + 1) // 2)
        pixels = resample(rgba, w, h, pw, ph)
        png = png_rgba(pw, ph, pixels.tobytes())
    return {**base, "w": w, "h": h, "xhot": xhot, "yhot": yhot, "png": base64.b64encode(png).decode()}


def pointer_body(x: int, y: int, region: Region) -> dict[str, object]:
    """The `pointer` push: (x, y) on the X screen, relative to the picture's region."""
    return {"t": "pointer", "x": x - region.left, "y": y - region.top, "w": region.width, "h": region.height}


# --- decisions -------------------------------------------------------------------------------


class PointerGate:
    """At most one position per ``interval_s``, only when it changed, and the last one always:
    a position that arrives too soon is held and sent when the interval is over."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._sent: tuple[int, int] | None = None
        self._held: tuple[int, int] | None = None
        self._next_at = float("-inf")

    def offer(self, position: tuple[int, int], now: float) -> tuple[int, int] | None:
        """The position to send now, or None (unchanged, or held until ``wait()``)."""
        self._held = position if position != self._sent else None
        return self.due(now)

    def due(self, now: float) -> tuple[int, int] | None:
        """The held position, if its time has come."""
        if self._held is None or now < self._next_at:
            return None
        position, self._held = self._held, None
        self._sent, self._next_at = position, now + self.interval_s
        return position

    def wait(self, now: float) -> float | None:
        """Seconds until the held position may go, or None when nothing is held."""
        return None if self._held is None else max(0.0, self._next_at - now)

    def forget(self) -> None:
        """Send the next position whatever it is (a new viewer, a new region)."""
        self._sent = None


class CursorRelay:
    """runner.media.controls.CursorSink: pushes the pointer's image (reliable, by serial) and
    position (lossy, rate-bounded) to every session."""

    def __init__(self, push: Push, sessions: Callable[[], Iterable[Session]],
                 region: Callable[[], Region | None], rate: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._push = push
        self._sessions = sessions
        self._region = region
        self._clock = clock
        self._gate = PointerGate(1.0 / rate)
        self._encoded: OrderedDict[int, dict[str, object]] = OrderedDict()
        self._known: dict[int, OrderedDict[int, None]] = {}  # session id -> serials it holds, LRU first
        self._serial: int | None = None
        self._position: tuple[int, int] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.pushed_positions = 0  # counters, for tests and stats
        self.pushed_images = 0

    # --- CursorSink ---------------------------------------------------------------------------
    def cursor_shape(self, shape: CursorShape) -> None:
        if shape.serial not in self._encoded:
            self._encoded[shape.serial] = cursor_body(shape)
            while len(self._encoded) > ENCODED_KEPT:
                self._encoded.popitem(last=False)
        self._encoded.move_to_end(shape.serial)
        self._serial = shape.serial
        for session in self._forget_gone():
            self._send_shape(session)

    def pointer_moved(self, x: int, y: int) -> None:
        self._position = (x, y)
        self._offer()

    # --- sessions -----------------------------------------------------------------------------
    def welcome(self, session: Session) -> None:
        """A new session: send it the current image and position."""
        if len(self._known) > KNOWN_SESSIONS_KEPT:  # replayed hellos make sessions that go unused
            self._forget_gone()
        if self._serial is not None:
            self._send_shape(session)
        region = self._region()
        if self._position is not None and region is not None:  # reliable: a still pointer sends no more
            self._push(session, pointer_body(*self._position, region), True)
            self.pushed_positions += 1

    def region_changed(self) -> None:
        """The picture shows another region: positions relative to it change even if the pointer
        did not move."""
        self._gate.forget()
        if self._position is not None:
            self._offer()

    # --- internals ----------------------------------------------------------------------------
    def _forget_gone(self) -> list[Session]:
        """Drop what ended sessions held; the live sessions."""
        live = list(self._sessions())
        for gone in self._known.keys() - {s.id for s in live}:
            del self._known[gone]
        return live

    def _send_shape(self, session: Session) -> None:
        serial = self._serial
        assert serial is not None
        known = self._known.setdefault(session.id, OrderedDict())
        if serial in known:
            known.move_to_end(serial)
            body: Mapping[str, object] = {"t": "cursor", "serial": serial}
        else:
            body = self._encoded[serial]
            known[serial] = None
            while len(known) > SENT_PER_SESSION:
                known.popitem(last=False)
        self._push(session, body, True)
        self.pushed_images += 1

    def _offer(self) -> None:
        assert self._position is not None
        position = self._gate.offer(self._position, self._clock())
        self._send_position(position)
        self._arm()

    def _flush(self) -> None:
        self._timer = None
        self._send_position(self._gate.due(self._clock()))
        self._arm()

    def _arm(self) -> None:
        wait = self._gate.wait(self._clock())
        if wait is not None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(wait, self._flush)

    def _send_position(self, position: tuple[int, int] | None) -> None:
        region = self._region()
        if position is None or region is None:
            return
        body = pointer_body(*position, region)
        for session in self._sessions():
            self._push(session, body, False)
        self.pushed_positions += 1
