"""Layout following: the X server's monitors as the protocol lists them, the selected one, and
capture kept on the selected monitor when the layout changes (polled every LAYOUT_POLL_S).

The pipeline is reached only through ``MediaControl`` (runner/media/controls.py).
"""

from __future__ import annotations

from collections.abc import Callable

from runner.control.inject import Injector
from runner.control.pointer import Layout, MonitorInfo, UnknownMonitor, layout_from_screen
from runner.logs import get_logger
from runner.media.controls import MediaControl

log = get_logger(__name__)

LAYOUT_POLL_S = 2.0


class Monitors:
    def __init__(self, media: MediaControl, injector: Injector, *, initial_index: Callable[[], int],
                 inject_bounds: Callable[[], bool], announce: Callable[[dict[str, object]], None]) -> None:
        self._media = media
        self._injector = injector
        self._initial_index = initial_index  # capture.monitor: which one is selected at start
        self._inject_bounds = inject_bounds  # whether to tell the injector (no X input when control is off)
        self._announce = announce
        self.layout = Layout([])
        self.selected: str | None = None

    def wire(self) -> list[dict[str, object]]:
        return [m.wire() for m in self.layout.monitors]

    def body(self) -> dict[str, object]:
        """The ``monitors`` push."""
        return {"t": "monitors", "monitors": self.wire(), "selected": self.selected}

    async def refresh(self, *, initial: bool = False) -> None:
        try:
            screen = await self._media.screen_layout(refresh=not initial)
        except Exception as exc:  # DisplayError, display away: keep the last layout; capture reports the loss
            log.debug("layout_unavailable", error=f"{type(exc).__name__}: {exc}")
            return
        layout = layout_from_screen(screen)
        if layout == self.layout and not initial:
            return
        self.layout = layout
        bounds = layout.bounds()
        if self._inject_bounds():
            self._injector.submit(lambda b: setattr(b, "bounds", bounds))
        if initial:
            current = layout.by_index(self._initial_index())
            self.selected = current.id if current else None
        elif self.selected is not None:
            await self._follow()
        log.info("monitors", monitors=self.wire(), selected=self.selected)
        self._announce(self.body())

    async def _follow(self) -> None:
        """The selected monitor moved, resized or vanished: capture its new rectangle, or the primary."""
        try:
            chosen = self.layout.get(self.selected or "")
        except UnknownMonitor:
            primary = next((m for m in self.layout.monitors if m.primary), None)
            if primary is None:
                return
            chosen = primary
        self.selected = chosen.id
        if self._media.region != chosen.region:
            await self._media.select_region(chosen.region)

    async def select(self, monitor_id: str) -> tuple[MonitorInfo, int, int]:
        """Capture the monitor ``monitor_id`` (UnknownMonitor if none); (it, encoded width, height)."""
        m = self.layout.get(monitor_id)
        width, height = await self._media.select_region(m.region)
        self.selected = m.id
        self._announce(self.body())
        return m, width, height
