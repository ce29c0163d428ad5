"""Pointer arithmetic, pure: monitor layouts, normalized positions, wheel notches, relative moves.

Positions arrive normalized 0..1 within a named monitor (docs/protocol.md) and become X screen
pixels with that monitor's offset and size, so any layout (side by side, stacked, offset, mixed
sizes) is hit exactly, edges included. A monitor id the runner does not know is refused, not
guessed at offset 0 (Selkies learned that one).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from runner.media.controls import Region, ScreenLayout

ALL_MONITORS_ID = "all"
WHEEL_CLAMP_NOTCHES = 16.0
INT16_MIN, INT16_MAX = -32768, 32767


@dataclass(frozen=True)
class MonitorInfo:
    """One monitor in X screen pixels; ``index`` is mss's (0 = all monitors combined)."""

    id: str
    name: str
    x: int
    y: int
    width: int
    height: int
    primary: bool
    index: int
    scale: float = 1.0  # X11 has no per-monitor scale

    @property
    def region(self) -> Region:
        return Region(self.x, self.y, self.width, self.height)

    def wire(self) -> dict[str, object]:
        out = asdict(self)
        del out["index"]
        return out


class UnknownMonitor(LookupError):
    pass


class Layout:
    """The monitors of one X screen, by id."""

    def __init__(self, monitors: list[MonitorInfo]) -> None:
        self.monitors = list(monitors)
        self._by_id = {m.id: m for m in monitors}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layout) and self.monitors == other.monitors

    def get(self, monitor_id: str) -> MonitorInfo:
        try:
            return self._by_id[monitor_id]
        except KeyError:
            raise UnknownMonitor(monitor_id) from None

    def by_index(self, index: int) -> MonitorInfo | None:
        return next((m for m in self.monitors if m.index == index), None)

    def to_pixels(self, monitor_id: str, x: float, y: float) -> tuple[int, int]:
        """(0, 0) is the monitor's top-left pixel, (1, 1) its bottom-right pixel."""
        m = self.get(monitor_id)
        x = min(max(x, 0.0), 1.0)
        y = min(max(y, 0.0), 1.0)
        return m.x + round(x * (m.width - 1)), m.y + round(y * (m.height - 1))

    def bounds(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of all monitors, right/bottom inclusive."""
        left = min(m.x for m in self.monitors)
        top = min(m.y for m in self.monitors)
        right = max(m.x + m.width - 1 for m in self.monitors)
        bottom = max(m.y + m.height - 1 for m in self.monitors)
        return left, top, right, bottom


def layout_from_screen(screen: ScreenLayout) -> Layout:
    """Build a Layout from the monitors the X server reports (index i+1 = ``screen.monitors[i]``).

    A monitor's id is its RandR output name, else ``monitor-<index>``; the union of all is the
    ``all`` monitor, listed whenever there is not exactly one monitor.
    """
    physical: list[MonitorInfo] = []
    for index, m in enumerate(screen.monitors, start=1):
        mid = m.output or f"monitor-{index}"
        if any(p.id == mid for p in physical):
            mid = f"{mid}-{index}"
        r = m.region
        physical.append(MonitorInfo(mid, m.name if m.name is not None else mid, r.left, r.top, r.width, r.height,
                                    m.primary, index))
    if physical and not any(p.primary for p in physical):
        first = physical[0]  # X servers without a primary output: the first one is
        physical[0] = MonitorInfo(first.id, first.name, first.x, first.y, first.width, first.height,
                                  True, first.index)
    result = list(physical)
    if len(physical) != 1:
        union = screen.union
        result.append(MonitorInfo(ALL_MONITORS_ID, "All monitors", union.left, union.top,
                                  union.width, union.height, False, 0))
    return Layout(result)


class WheelAccumulator:
    """Fractional wheel notches in, whole X wheel steps out (noVNC/Selkies: never too fast)."""

    def __init__(self) -> None:
        self._x = 0.0
        self._y = 0.0

    def add(self, dx: float, dy: float) -> tuple[int, int]:
        """Steps to send now; positive dy = down, positive dx = right. Leftovers carry over."""
        self._x += _clamp(dx, WHEEL_CLAMP_NOTCHES)
        self._y += _clamp(dy, WHEEL_CLAMP_NOTCHES)
        sx, sy = math.trunc(self._x), math.trunc(self._y)
        self._x -= sx
        self._y -= sy
        return sx, sy

    def reset(self) -> None:
        self._x = self._y = 0.0


def _clamp(value: float, limit: float) -> float:
    if not math.isfinite(value):
        return 0.0
    return min(max(value, -limit), limit)


def saturate_int16(value: int) -> int:
    return min(max(value, INT16_MIN), INT16_MAX)


def clamp_to_bounds(x: int, y: int, bounds: tuple[int, int, int, int]) -> tuple[int, int]:
    left, top, right, bottom = bounds
    return min(max(x, left), right), min(max(y, top), bottom)
