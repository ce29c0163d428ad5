"""Stand-ins for unit tests of control logic: a MediaControl that records what control asks of
the pipeline, a screen layout from literal monitor rectangles, an injector that records."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from runner.control.inject import XBackend
from runner.media.controls import (
    CursorSink,
    Quality,
    QualityRequest,
    Rates,
    Region,
    ScreenLayout,
    ScreenMonitor,
    StreamInfo,
)
from runner.media.screen_size import FitRequest, ScreenSize, fit_size


def screen(union: tuple[int, int, int, int], *monitors: tuple[int, int, int, int, str | None, bool]) -> ScreenLayout:
    """``screen((l, t, w, h), (l, t, w, h, output, primary), ...)``."""
    return ScreenLayout(Region(*union), tuple(ScreenMonitor(Region(left, t, w, h), out, None, primary)
                                              for left, t, w, h, out, primary in monitors))


class FakeMedia:
    """MediaControl for pure logic: one screen, quality echoed back, selections recorded."""

    def __init__(self, layout: ScreenLayout, display: str = ":99") -> None:
        self.layout = layout
        self._display = display
        self._region: Region | None = layout.monitors[0].region if layout.monitors else None
        self.keyframes = 0
        self.keyframe_asks = 0
        self.fits: list[FitRequest] = []
        self.max_size = (1920, 1080)  # the largest screen fit_screen may set
        self.fit_error: Exception | None = None  # raised by fit_screen when set

    @property
    def display(self) -> str:
        return self._display

    @property
    def region(self) -> Region | None:
        return self._region

    async def screen_layout(self, *, refresh: bool) -> ScreenLayout:
        return self.layout

    async def select_region(self, region: Region) -> tuple[int, int]:
        self._region = region
        return region.width & ~1, region.height & ~1

    def request_keyframe(self) -> None:
        self.keyframes += 1

    def ask_keyframe(self) -> None:
        self.keyframe_asks += 1

    def set_quality(self, request: QualityRequest) -> Quality:
        return Quality(request.fps or 30, request.bitrate or 4_000_000, request.max_width or 0, request.max_height or 0)

    def stream_info(self) -> StreamInfo:
        r = self._region or Region(0, 0, 0, 0)
        return StreamInfo(r.width, r.height, 0, 0, Rates(0.0, 0, None))

    async def fit_screen(self, request: FitRequest) -> ScreenSize:
        """Records the request; the screen becomes one monitor of the fitted size."""
        self.fits.append(request)
        if self.fit_error is not None:
            raise self.fit_error
        size = fit_size(request, max_width=self.max_size[0], max_height=self.max_size[1])
        self.layout = screen((0, 0, size.width, size.height), (0, 0, size.width, size.height, "screen", True))
        return size

    async def watch_cursor(self, sink: CursorSink) -> None:
        self.cursor_sink = sink  # a test reports the pointer through it
        await asyncio.Event().wait()


class RecordingInjector:
    """Records submitted operations instead of running them on X."""

    def __init__(self) -> None:
        self.ops: list[Callable[[XBackend], object]] = []
        self.dropped = 0
        self.latencies_s: list[float] = []

    def submit(self, fn: Callable[[XBackend], object], *, move: bool = False) -> bool:
        self.ops.append(fn)
        return True
