"""MediaControl over today's ``runner.session.Pipeline``: a temporary adapter so the control branch
runs before the media branch's pipeline implements runner/media/controls.py itself. Delete it (and
its one use in service.py) when that pipeline is merged: it implements the same Protocol.
"""

from __future__ import annotations

import time

from runner.config import Settings
from runner.media.controls import (
    Quality,
    QualityRequest,
    Rates,
    Region,
    ScreenLayout,
    ScreenMonitor,
    StreamInfo,
)
from runner.session import Pipeline, Stats


def _region(m: dict[str, int]) -> Region:
    return Region(m["left"], m["top"], m["width"], m["height"])


def screen_layout_from_mss(monitors: list[dict[str, object]]) -> ScreenLayout:
    """mss's monitor list (index 0 = the union) as a ScreenLayout."""
    def monitor(m: dict[str, object]) -> ScreenMonitor:
        output, name = m.get("output"), m.get("name")
        return ScreenMonitor(_region(m),  # type: ignore[arg-type]  # mss values: int, str, bool
                             output if isinstance(output, str) and output else None,
                             name if isinstance(name, str) else None, bool(m.get("is_primary", False)))

    return ScreenLayout(_region(monitors[0]), tuple(monitor(m) for m in monitors[1:]))  # type: ignore[arg-type]


class PipelineMedia:
    def __init__(self, pipeline: Pipeline, settings: Settings) -> None:
        self._pl = pipeline
        self._settings = settings
        self._snapshot: tuple[float, Stats] = (time.monotonic(), pipeline.stats.snapshot())
        self._rates = Rates(0.0, 0, None)

    @property
    def display(self) -> str:
        return self._pl.grabber.display

    @property
    def region(self) -> Region | None:
        r = self._pl.grabber.region
        return _region(r) if r is not None else None

    async def screen_layout(self, *, refresh: bool) -> ScreenLayout:
        grabber = self._pl.grabber
        raw = await self._pl.run_in_capture_thread(lambda: grabber.raw_monitors(refresh=refresh))
        return screen_layout_from_mss(raw)  # type: ignore[arg-type]

    async def select_region(self, region: Region) -> tuple[int, int]:
        return await self._pl.select_region(region.left, region.top, region.width, region.height)

    def request_keyframe(self) -> None:
        self._pl.request_keyframe()

    def set_quality(self, request: QualityRequest) -> Quality:
        pl, enc = self._pl, self._settings.encoder
        if request.fps is not None:
            pl.fps = min(request.fps, self._settings.capture.fps)
        if request.bitrate is not None:
            pl.bitrate_cap = min(max(request.bitrate, enc.min_bitrate), enc.max_bitrate)
            pl.stats.bitrate_target = min(pl.stats.bitrate_target, pl.bitrate_cap)
        w, h = pl.max_size
        pl.max_size = (request.max_width if request.max_width is not None else w,
                       request.max_height if request.max_height is not None else h)
        return Quality(int(pl.fps), pl.bitrate_cap, pl.max_size[0], pl.max_size[1])

    def stream_info(self) -> StreamInfo:
        now = time.monotonic()
        t0, before = self._snapshot
        if now - t0 >= 1.0:  # the rates over the last second or more
            stats = self._pl.stats.snapshot()
            dt = now - t0
            encoded = stats.encoded - before.encoded
            self._rates = Rates(
                round((stats.published - before.published) / dt, 1),
                int(8 * (stats.bytes_published - before.bytes_published) / dt),
                round(1000 * (stats.encode_s - before.encode_s) / encoded, 2) if encoded else None)
            self._snapshot = (now, stats)
        s = self._pl.stats
        width, height = self._pl.output_size(*self._pl.grabber.size)
        return StreamInfo(width, height, s.keyframes, s.dropped, self._rates)
