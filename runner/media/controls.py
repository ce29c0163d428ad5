"""The seam between control and the media pipeline: pure types and the one Protocol.

Control changes or reads the pipeline only through ``MediaControl`` (quality, monitor selection,
keyframes, rates); the pipeline (``runner.media.pipeline.Pipeline``) implements it and is the only
writer of its own state. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from runner.media.screen_size import FitRequest, ScreenSize


@dataclass(frozen=True)
class Region:
    """A rectangle of the X screen in pixels."""

    left: int
    top: int
    width: int
    height: int


@dataclass(frozen=True)
class ScreenMonitor:
    """One monitor as the X server reports it (today: one entry of mss's monitor list, index >= 1)."""

    region: Region
    output: str | None  # RandR output name (mss "output"), None when unknown
    name: str | None  # mss "name", None when unknown
    primary: bool  # mss "is_primary"


@dataclass(frozen=True)
class ScreenLayout:
    union: Region  # mss monitors[0]: the bounding box of all
    monitors: tuple[ScreenMonitor, ...]  # mss monitors[1:], in mss's order (index i+1)


@dataclass(frozen=True)
class QualityRequest:
    """dr.quality.set: None = leave as is."""

    fps: float | None = None  # float, as capture.fps and dr.quality.set's fps are (SEAM.md said int)
    bitrate: int | None = None  # cap in bit/s
    max_width: int | None = None  # 0 = no limit
    max_height: int | None = None


@dataclass(frozen=True)
class Quality:
    """What is applied after a request (clamped by the configuration)."""

    fps: float  # float, as capture.fps is (SEAM.md said int)
    bitrate: int  # the cap in bit/s
    max_width: int  # 0 = no limit
    max_height: int


@dataclass(frozen=True)
class Rates:
    """Rates over the last interval (one copy of the maths, used by the status line and dr.stats)."""

    fps: float
    bitrate: int  # bit/s published
    encode_ms: float | None  # mean encode time per encoded frame, None when nothing was encoded
    # mean host processing time per published frame, from the start of its grab to its hand-off
    # to LiveKit (waits between the stages included), None when no picture was published
    host_ms: float | None = None


@dataclass(frozen=True)
class StreamInfo:
    """What dr.stats reports about the picture."""

    width: int  # encoded size
    height: int
    keyframes: int  # since start
    dropped: int  # since start
    rates: Rates  # over the last second (zeros / None before the first second)


@dataclass(frozen=True)
class CursorShape:
    """The X pointer's image as XFixes gives it (runner.media.cursor).

    ``serial`` is XFixes' cursor serial: a new number for every cursor the server defines, so an
    image seen before is known by its serial alone. ``bgra`` is ``width * height`` pixels, 4 bytes
    each, B G R A with premultiplied alpha (XFixes' ARGB32 words, little-endian). The hotspot
    (``xhot``, ``yhot``) is the pixel of the image that sits at the pointer's position. Width and
    height 0 (no pixels): the X server would not give the image, or it was too large to fetch.
    """

    serial: int
    width: int
    height: int
    xhot: int
    yhot: int
    bgra: bytes


class CursorSink(Protocol):
    """Who hears about the pointer (control's CursorRelay); called on the event loop."""

    def cursor_shape(self, shape: CursorShape) -> None:
        """The pointer's image changed (its XFixes serial did)."""
        ...

    def pointer_moved(self, x: int, y: int) -> None:
        """The pointer is at (x, y) on the X screen now (only called when it moved)."""
        ...


class MediaControl(Protocol):
    """The only way control changes or reads the media pipeline."""

    @property
    def display(self) -> str:
        """The X display name, e.g. ":1"."""
        ...

    @property
    def region(self) -> Region | None:
        """What is being captured now (None before open)."""
        ...

    async def screen_layout(self, *, refresh: bool) -> ScreenLayout:
        """Runs on the capture thread; ``refresh=True`` asks the X server again. Raises
        runner.media.capture.DisplayError when the display does not answer."""
        ...

    async def select_region(self, region: Region) -> tuple[int, int]:
        """Capture this rectangle from the next frame on (IDR); returns the encoded (width, height)."""
        ...

    def request_keyframe(self) -> None: ...

    def ask_keyframe(self) -> None:
        """A viewer asked for an IDR (``dr.keyframe``): held like LiveKit's requests while the last
        IDR can still be on its way, so asks cannot make every picture an IDR."""
        ...

    def set_quality(self, request: QualityRequest) -> Quality:
        """fps clamped to capture.fps; bitrate clamped to encoder.min_bitrate..max_bitrate and the
        current bitrate target lowered to it at once (the pipeline is the only writer of its target)."""
        ...

    def stream_info(self) -> StreamInfo: ...

    async def fit_screen(self, request: FitRequest) -> ScreenSize:
        """Resize the X screen (RandR) to the nearest size it and the encoder take
        (runner.media.screen_size.fit_size); capture and encoder follow from the next frame, an
        IDR. Returns the size applied. Raises runner.media.randr.ResizeError when the server
        cannot be resized. Only for a server the runner owns (``capture.resizable``): the caller
        checks."""
        ...

    async def watch_cursor(self, sink: CursorSink) -> None:
        """Report the pointer's image (when its XFixes serial changes) and position (when it
        moves, at most capture.fps times a second) to ``sink`` until cancelled; returns at once
        when the display has no XFixes."""
        ...
