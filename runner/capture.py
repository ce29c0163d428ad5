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
class Monitor:
    """One monitor as mss reports it; ``index`` is mss's (0 = all monitors combined)."""

    index: int
    left: int
    top: int
    width: int
    height: int
    primary: bool


@dataclass(frozen=True)
class CapturedFrame:
    """A BGRA picture of even width and height, as the H.264 encoder needs.

    ``pixels`` has shape (height, width, 4); ``captured_at`` is ``time.monotonic()`` seconds.
    """

    pixels: np.ndarray
    captured_at: float

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

    def __init__(self, display: str | None, monitor: int) -> None:
        self._display_setting = display
        self.display = display or os.environ.get("DISPLAY", "")
        self.monitor_index = monitor
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
                sct = mss.MSS(display=self.display, backend=backend)
            except Exception as exc:  # mss raises ScreenShotError, ctypes errors, OSError
                errors.append(f"{backend}: {exc}")
                continue
            try:
                monitors = sct.monitors
                if self.monitor_index >= len(monitors):
                    sct.close()
                    raise DisplayError(
                        f"capture.monitor {self.monitor_index} does not exist on display "
                        f"{self.display} (it has {len(monitors) - 1} monitor(s): 1..{len(monitors) - 1}, 0 = all)"
                    )
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

    def monitors(self) -> list[Monitor]:
        if self._sct is None:
            raise DisplayError("grabber is not open")
        return [
            Monitor(
                index=i,
                left=m["left"],
                top=m["top"],
                width=m["width"],
                height=m["height"],
                primary=bool(m.get("is_primary", False)),
            )
            for i, m in enumerate(self._sct.monitors)
        ]

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
        try:
            shot = self._sct.grab(self._region)
        except Exception as exc:
            raise DisplayError(f"grab failed on display {self.display}: {exc}") from exc
        captured_at = time.monotonic()
        w, h = shot.size
        pixels = np.frombuffer(shot.raw, dtype=np.uint8).reshape(h, w, BYTES_PER_PIXEL)
        return CapturedFrame(pixels=even_crop(pixels), captured_at=captured_at)

    def close(self) -> None:
        if self._sct is not None:
            try:
                self._sct.close()
            except Exception as exc:  # closing a connection to a dead X server raises; it is gone
                log.debug("capture_close_failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                self._sct = None
                self._region = None
