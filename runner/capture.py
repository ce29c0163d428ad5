"""Screen capture with mss.

A ``ScreenGrabber`` owns one mss connection to the X server. mss keeps per-thread X state, so
every call on one grabber must come from the same thread: the pipeline runs it on a dedicated
single-thread executor, never on the event loop.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import mss
import numpy as np

from runner.logs import get_logger

log = get_logger(__name__)

# mss's default X11 backend (XShmGetImage over XCB) fails on some servers (TigerVNC's Xvnc:
# "drawable's visual not found"); the Xlib backend works there.
BACKENDS = ("default", "xlib")
BYTES_PER_PIXEL = 4  # mss hands out BGRA


class DisplayError(RuntimeError):
    """The X display cannot be opened or grabbed; the message says which display and why."""


@dataclass(frozen=True)
class CapturedFrame:
    """A BGRA picture of even width and height, as the H.264 encoder needs.

    ``pixels`` has shape (height, width, 4); ``captured_at`` is ``time.monotonic()`` seconds.
    """

    pixels: np.ndarray
    captured_at: float
    grab_s: float = 0.0  # how long the grab took

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


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

    def open(self) -> None:
        """Connect to the display and check the monitor; raise DisplayError on failure."""
        self.close()
        self.display = resolve_display(self._display_setting)
        errors: list[str] = []
        for backend in BACKENDS:
            try:
                sct = mss.MSS(display=self.display, backend=backend, with_cursor=self.cursor)
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
            if backend != BACKENDS[0]:
                log.warning("capture_backend_fallback", backend=backend, reasons=errors)
            return
        raise DisplayError(f"cannot open X display {self.display}: {'; '.join(errors)}")

    def raw_monitors(self, *, refresh: bool = False) -> list[dict[str, int]]:
        """mss's monitor list (index 0 = all combined); ``refresh`` asks the X server again."""
        if self._sct is None:
            raise DisplayError("grabber is not open")
        if refresh:
            self._sct._monitors = None  # mss caches the list for the life of the connection
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
        if self._sct is None or self._region is None:
            raise DisplayError("grabber is not open")
        started = time.perf_counter()
        try:
            shot = self._sct.grab(self._region)
        except Exception as exc:
            raise DisplayError(f"grab failed on display {self.display}: {exc}") from exc
        captured_at = time.monotonic()
        w, h = shot.size
        pixels = np.frombuffer(shot.raw, dtype=np.uint8).reshape(h, w, BYTES_PER_PIXEL)
        return CapturedFrame(pixels=even_crop(pixels), captured_at=captured_at, grab_s=time.perf_counter() - started)

    def close(self) -> None:
        if self._sct is not None:
            try:
                self._sct.close()
            except Exception as exc:  # closing a connection to a dead X server raises; it is gone
                log.debug("capture_close_failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                self._sct = None
                self._region = None
