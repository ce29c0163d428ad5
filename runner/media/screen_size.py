"""What screen size and DPI a fit-to-window request becomes, pure (numbers in, numbers out).

A viewer asks for the size of its picture area in device pixels and its device pixel ratio
(``dr.screen.fit``); the runner applies the nearest size that the encoder and the X server take:
even on both sides (4:2:0 chroma, and the grabber crops odd sizes anyway), at least
``MIN_WIDTH`` x ``MIN_HEIGHT``, at most the X server's largest screen (Xvfb: the size it was
started with) and ``MAX_SIDE`` on either side. A request beyond the largest size is scaled down
whole, keeping its aspect ratio, so the picture still fills the window; one below the smallest
is raised side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_WIDTH = 320
MIN_HEIGHT = 240
# Chromium decodes H.264 up to level 5.1's 4096 x 2304; libx264 at more than that per frame
# would not keep up anyway on the machines this runs on.
MAX_SIDE = 4096
BASE_DPI = 96.0  # X's and the web's 1.0: a CSS pixel at devicePixelRatio 1
MIN_SCALE = 0.5
MAX_SCALE = 4.0
MM_PER_INCH = 25.4


@dataclass(frozen=True)
class FitRequest:
    """dr.screen.fit's parameters: the viewer's picture area in device pixels (CSS pixels times
    ``scale``) and its device pixel ratio (``window.devicePixelRatio``)."""

    width: int
    height: int
    scale: float = 1.0


@dataclass(frozen=True)
class ScreenSize:
    """A size the X server is set to: pixels, and the dots per inch its millimetres give."""

    width: int
    height: int
    dpi: int

    @property
    def millimetres(self) -> tuple[int, int]:
        """The physical size RandR is told, so that X reports ``dpi`` (at least 1 mm)."""
        return (max(1, round(self.width * MM_PER_INCH / self.dpi)),
                max(1, round(self.height * MM_PER_INCH / self.dpi)))


def even_down(value: int) -> int:
    return value & ~1


def dpi_for(scale: float) -> int:
    """96 dpi per device pixel ratio of 1, the ratio bounded to MIN_SCALE..MAX_SCALE."""
    if not math.isfinite(scale):
        scale = 1.0
    return round(BASE_DPI * min(max(scale, MIN_SCALE), MAX_SCALE))


def fit_size(request: FitRequest, *, max_width: int, max_height: int) -> ScreenSize:
    """The screen size applied for ``request`` on a server whose largest screen is
    ``max_width`` x ``max_height`` (RandR's screen size range)."""
    cap_w = even_down(min(max_width, MAX_SIDE))
    cap_h = even_down(min(max_height, MAX_SIDE))
    width, height = even_down(max(request.width, 2)), even_down(max(request.height, 2))
    if width > cap_w or height > cap_h:
        shrink = min(cap_w / width, cap_h / height)
        width, height = math.floor(width * shrink), math.floor(height * shrink)
    width = min(max(even_down(width), MIN_WIDTH), cap_w)
    height = min(max(even_down(height), MIN_HEIGHT), cap_h)
    return ScreenSize(width, height, dpi_for(request.scale))
