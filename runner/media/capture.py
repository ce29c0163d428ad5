"""Screen capture with mss.

A ``ScreenGrabber`` owns one mss connection to the X server. mss keeps per-thread X state, so
every call on one grabber must come from the same thread: the pipeline runs it on a dedicated
single-thread executor, never on the event loop.

Two ways out: ``grab()`` returns a BGRA copy (tests, ``check``, and any server without MIT-SHM);
``grab_picture()``, the pipeline's, converts the X server's shared-memory image straight into an
I420 frame for the encoder with libyuv (``runner.media.yuv``), with no BGRA copy at all (at 1080p60
that copy and mss's pure-Python pointer drawing cost about 1.5 ms per frame). The pointer, when
it is drawn into the picture (``capture.cursor = "picture"``), is drawn by this module in both
cases (XFixes), the same way; by default viewers draw it (runner.media.cursor).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import av
import mss
import numpy as np

from runner.logs import get_logger
from runner.media import mss_private, yuv

log = get_logger(__name__)

# mss's default X11 backend (XShmGetImage over XCB) fails on some servers (TigerVNC's Xvnc:
# "drawable's visual not found"); the Xlib backend works there.
BACKENDS = ("default", "xlib")
BYTES_PER_PIXEL = 4  # mss hands out BGRA


class DisplayError(RuntimeError):
    """The X display cannot be opened or grabbed; the message says which display and why."""


@dataclass(frozen=True)
class CapturedFrame:
    """A picture of even width and height, as the H.264 encoder needs: either ``pixels``, BGRA
    of shape (height, width, 4), or ``picture``, an I420 frame already converted (then
    ``release()`` once it is encoded or dropped, so the grabber can fill it again); or neither,
    with ``repeat``: the last picture again.
    ``captured_at`` is ``time.monotonic()`` seconds.
    """

    pixels: np.ndarray | None
    captured_at: float
    grab_s: float = 0.0  # how long the grab took
    picture: av.VideoFrame | None = None
    convert_s: float = 0.0  # BGRA -> I420 done by the grab (grab_picture), not in grab_s
    repeat: bool = False  # no picture: the screen did not change, show the last one again
    refine: bool = False  # a picture of a screen that did not change, taken to improve the last one
    _release: Callable[[av.VideoFrame], None] | None = None

    @classmethod
    def again(cls) -> CapturedFrame:
        """The screen did not change: the encoder shows its last picture again (runner.media.h264)."""
        return cls(pixels=None, captured_at=time.monotonic(), repeat=True)

    @property
    def width(self) -> int:
        return self.picture.width if self.picture is not None else int(self.pixels.shape[1])  # type: ignore[union-attr]

    @property
    def height(self) -> int:
        return self.picture.height if self.picture is not None else int(self.pixels.shape[0])  # type: ignore[union-attr]

    def release(self) -> None:
        """The picture is no longer needed: the grabber may fill it again. Call it exactly once
        (the pipeline does, when the frame is encoded or replaced)."""
        if self.picture is not None and self._release is not None:
            self._release(self.picture)


class PicturePool:
    """I420 frames for ``grab_picture``, reused: a fresh 3 MB buffer per 1080p frame costs
    page faults every time. At most three are in use at once (being filled, waiting in the
    pipeline's mailbox, being encoded); when none is free a new one is made."""

    def __init__(self) -> None:
        self._free: deque[av.VideoFrame] = deque()  # append/pop are atomic: any thread may give

    def take(self, width: int, height: int) -> av.VideoFrame:
        while self._free:
            frame = self._free.pop()
            if (frame.width, frame.height) == (width, height):
                return frame
        return av.VideoFrame(width, height, "yuv420p")

    def give(self, frame: av.VideoFrame) -> None:
        if len(self._free) < 3:
            self._free.append(frame)


def even_crop(bgra: np.ndarray) -> np.ndarray:
    """Crop a (h, w, 4) picture to even dimensions (4:2:0 chroma needs them).

    Dropping the last row is free; dropping the last column needs a contiguous copy.
    """
    h, w = bgra.shape[:2]
    out = bgra[: h & ~1, : w & ~1]
    if w & 1:
        out = np.ascontiguousarray(out)
    return out


def resolve_display(display: str | None) -> str:
    """The X display to use: the setting, else $DISPLAY; DisplayError when there is none."""
    chosen = display or os.environ.get("DISPLAY")
    if not chosen:
        raise DisplayError("no X display: DISPLAY is not set (set DISPLAY or capture.display)")
    return chosen


def blend_cursor(pixels: np.ndarray, image: np.ndarray, cx: int, cy: int, left: int, top: int) -> None:
    """Blend a pointer ``image`` (h, w, 4 BGRA, straight alpha) whose top-left is (cx, cy) on the
    X screen into ``pixels`` (BGRA, top-left at (left, top)), where they overlap."""
    ph, pw = pixels.shape[:2]
    ch, cw = image.shape[:2]
    x0, y0 = max(cx - left, 0), max(cy - top, 0)
    x1, y1 = min(cx - left + cw, pw), min(cy - top + ch, ph)
    if x1 <= x0 or y1 <= y0:
        return
    src = image[y0 - (cy - top):y1 - (cy - top), x0 - (cx - left):x1 - (cx - left)]
    alpha = src[:, :, 3:4].astype(np.uint16)
    dst = pixels[y0:y1, x0:x1, :3]
    dst[...] = (src[:, :, :3] * alpha + dst * (255 - alpha) + 127) // 255


class ScreenGrabber:
    """Grabs one monitor of one X display. Not thread-safe: use from a single thread."""

    def __init__(self, display: str | None, monitor: int, *, cursor: bool = False) -> None:
        self._display_setting = display
        self.display = display or os.environ.get("DISPLAY", "")
        self.monitor_index = monitor
        self.cursor = cursor
        # A region chosen at run time (a monitor picked by a viewer); kept across reconnects.
        self._chosen: dict[str, int] | None = None
        self._sct: mss.MSS | None = None
        self._region: dict[str, int] | None = None
        self._size: tuple[int, int] | None = None
        self.backend: str | None = None
        self._pool = PicturePool()
        self.screen_size: tuple[int, int] | None = None  # the whole X screen at the last open()
        self._cursor_broken = False  # XFixes failed once: grab without the pointer from then on
        self._cursor_seen = False  # XFixes gave an image on this connection: later failures pass
        self._shm: mss_private.SharedImage | None = None  # the zero-copy grab's image (open() decides)

    def open(self) -> None:
        """Connect to the display and check the monitor; raise DisplayError on failure."""
        self.close()
        self.display = resolve_display(self._display_setting)
        self._cursor_broken = False  # a new server (or the same one back) may draw it again
        self._cursor_seen = False
        errors: list[str] = []
        for backend in BACKENDS:
            try:
                # The pointer is drawn here (draw_cursor), not by mss: mss blends it pixel by
                # pixel in Python, and grab_picture has no BGRA copy for it to draw into.
                sct = mss.MSS(display=self.display, backend=backend, with_cursor=False)
            except Exception as exc:  # mss raises ScreenShotError, ctypes errors, OSError
                errors.append(f"{backend}: {exc}")
                continue
            try:
                monitors = sct.monitors
                if self._chosen is not None:
                    region = self._fit(self._chosen, monitors[0])
                elif self.monitor_index >= len(monitors):
                    sct.close()
                    raise DisplayError(
                        f"capture.monitor {self.monitor_index} does not exist on display "
                        f"{self.display} (it has {len(monitors) - 1} monitor(s): 1..{len(monitors) - 1}, 0 = all)"
                    )
                else:
                    region = dict(monitors[self.monitor_index])
                sct.grab(region)  # proves this backend can read this server's visuals
            except DisplayError:
                raise
            except Exception as exc:
                errors.append(f"{backend}: {exc}")
                sct.close()
                continue
            self._sct, self._region, self.backend = sct, region, backend
            self._size = region["width"] & ~1, region["height"] & ~1
            self.screen_size = monitors[0]["width"], monitors[0]["height"]
            self._shm = mss_private.shared_image(sct) if yuv.library() is not None else None
            if backend != BACKENDS[0]:
                log.warning("capture_backend_fallback", backend=backend, reasons=errors)
            return
        raise DisplayError(f"cannot open X display {self.display}: {'; '.join(errors)}")

    def raw_monitors(self, *, refresh: bool = False) -> list[dict[str, object]]:
        """mss's monitor list (index 0 = all combined; left, top, width, height, and on RandR
        servers output, name, is_primary); ``refresh`` asks the X server again."""
        if self._sct is None:
            raise DisplayError("grabber is not open")
        if refresh:
            mss_private.forget_monitors(self._sct)
        try:
            return [dict(m) for m in self._sct.monitors]
        except Exception as exc:
            raise DisplayError(f"cannot list monitors on display {self.display}: {exc}") from exc

    @property
    def region(self) -> dict[str, int] | None:
        """The X screen rectangle being grabbed (left, top, width, height)."""
        return dict(self._region) if self._region is not None else None

    def select(self, left: int, top: int, width: int, height: int) -> None:
        """Grab this rectangle from now on (a monitor a viewer picked); kept across reconnects."""
        if self._sct is None:
            raise DisplayError("grabber is not open")
        region = self._fit({"left": left, "top": top, "width": width, "height": height}, self._sct.monitors[0])
        self._chosen = self._region = region
        self._size = region["width"] & ~1, region["height"] & ~1

    @staticmethod
    def _fit(region: dict[str, int], screen: dict[str, int]) -> dict[str, int]:
        """Clip a rectangle to the screen, so a monitor that shrank or vanished still grabs."""
        left = min(max(region["left"], screen["left"]), screen["left"] + screen["width"] - 2)
        top = min(max(region["top"], screen["top"]), screen["top"] + screen["height"] - 2)
        width = max(2, min(region["width"], screen["left"] + screen["width"] - left))
        height = max(2, min(region["height"], screen["top"] + screen["height"] - top))
        return {"left": left, "top": top, "width": width, "height": height}

    @property
    def size(self) -> tuple[int, int]:
        """The even (width, height) ``grab`` returns, or returned while the display was last open.

        Kept across ``close()``, so a reconnect while the display is away still knows a size.
        """
        if self._size is None:
            raise DisplayError("grabber was never opened")
        return self._size

    def grab(self) -> CapturedFrame:
        """A BGRA copy of the region, the pointer drawn in."""
        if self._sct is None or self._region is None:
            raise DisplayError("grabber is not open")
        started = time.perf_counter()
        try:
            shot = self._sct.grab(self._region)
        except Exception as exc:
            raise DisplayError(f"grab failed on display {self.display}: {exc}") from exc
        captured_at = time.monotonic()
        w, h = shot.size
        pixels = np.frombuffer(shot.raw, dtype=np.uint8).reshape(h, w, BYTES_PER_PIXEL)  # writable: a bytearray
        if self.cursor:
            self._draw_cursor(pixels, self._region["left"], self._region["top"])
        return CapturedFrame(pixels=even_crop(pixels), captured_at=captured_at, grab_s=time.perf_counter() - started)

    @property
    def zero_copy(self) -> bool:
        """Whether ``grab_picture`` converts from shared memory (else it falls back to ``grab``);
        decided at ``open()``, whose test grab tells whether MIT-SHM works."""
        return self._shm is not None

    def grab_picture(self) -> CapturedFrame:
        """The region as an I420 frame, converted from the X server's shared-memory image with
        no copy in between, the pointer drawn in; ``grab()`` when that is not possible (no
        MIT-SHM, no libyuv). ``release()`` the frame when done with it."""
        if self._sct is None or self._region is None:
            raise DisplayError("grabber is not open")
        shm_image = self._shm
        if shm_image is None:
            return self.grab()
        region = self._region
        w, h = region["width"], region["height"]
        started = time.perf_counter()
        if w * h * BYTES_PER_PIXEL > shm_image.size:
            raise DisplayError(f"display {self.display} grew beyond the shared-memory buffer; reopening")
        try:
            shm_image.fill(region["left"], region["top"], w, h)
        except Exception as exc:
            raise DisplayError(f"grab failed on display {self.display}: {exc}") from exc
        captured_at = time.monotonic()
        grabbed = time.perf_counter()
        width, height = w & ~1, h & ~1
        picture = self._pool.take(width, height)
        # A view of the shared memory for this call only: mss cannot close its buffer while a
        # view exists, and the next grab overwrites it anyway.
        shm = np.frombuffer(shm_image.buffer, np.uint8, count=w * h * BYTES_PER_PIXEL).reshape(h, w, BYTES_PER_PIXEL)
        try:
            yuv.bgra_to_i420(shm.ctypes.data, w * BYTES_PER_PIXEL, width, height, picture)
            if self.cursor:
                self._draw_cursor_i420(shm, picture, region["left"], region["top"])
        finally:
            del shm
        return CapturedFrame(pixels=None, picture=picture, captured_at=captured_at, grab_s=grabbed - started,
                             convert_s=time.perf_counter() - grabbed, _release=self._pool.give)

    def _cursor(self) -> tuple[np.ndarray, int, int] | None:
        """The pointer's image (h, w, 4 BGRA, straight alpha) and its top-left on the X screen."""
        if self._cursor_broken or self._sct is None:
            return None
        try:
            shot = mss_private.cursor_image(self._sct)
        except Exception as exc:  # no XFixes, or a server that refuses: grab without the pointer
            if self._cursor_seen:
                # XFixes works, but the server refuses this cursor's image (BadAccess: its creator
                # has gone, e.g. `xsetroot -cursor_name`, and this connection is older): no
                # pointer while it is shown; the next cursor is drawn again.
                return None
            self._cursor_broken = True
            log.warning("cursor_unavailable", display=self.display, reason=f"{type(exc).__name__}: {exc}")
            return None
        self._cursor_seen = True
        if shot is None:
            return None
        cw, ch = shot.size
        left, top = shot.pos
        return np.frombuffer(shot.raw, np.uint8).reshape(ch, cw, BYTES_PER_PIXEL), left, top

    def _draw_cursor(self, pixels: np.ndarray, left: int, top: int) -> None:
        """Blend the pointer into ``pixels`` (a BGRA picture whose top-left is (left, top) on
        the X screen)."""
        cursor = self._cursor()
        if cursor is not None:
            blend_cursor(pixels, *cursor, left, top)

    def _draw_cursor_i420(self, shm: np.ndarray, picture: av.VideoFrame, left: int, top: int) -> None:
        """Draw the pointer into a converted picture: the even-aligned patch under it is copied
        from the screen (a few kB), blended, and converted over the same spot."""
        cursor = self._cursor()
        if cursor is None:
            return
        image, cx, cy = cursor
        ch, cw = image.shape[:2]
        x0, y0 = max(cx - left, 0) & ~1, max(cy - top, 0) & ~1
        x1, y1 = min(cx - left + cw, picture.width), min(cy - top + ch, picture.height)
        x1, y1 = min(x1 + (x1 & 1), picture.width), min(y1 + (y1 & 1), picture.height)
        if x1 <= x0 or y1 <= y0:
            return  # the pointer is outside this region
        patch = np.array(shm[y0:y1, x0:x1])
        blend_cursor(patch, image, cx, cy, left + x0, top + y0)
        yuv.bgra_to_i420(patch.ctypes.data, patch.strides[0], x1 - x0, y1 - y0, picture, x0, y0)

    def close(self) -> None:
        if self._sct is not None:
            try:
                self._sct.close()
            except Exception as exc:  # closing a connection to a dead X server raises; it is gone
                log.debug("capture_close_failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                self._sct = None
                self._region = None
                self._shm = None
