"""The RPC methods of docs/protocol.md after authentication: which parameters each takes, which
need control, and what each does. ``call`` dispatches a validated request; a ``Refused`` becomes
the sealed error answer the caller sees."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from runner.config import Settings
from runner.control import messages as msg
from runner.control.host_clipboard import HostClipboard
from runner.control.inject import Injector
from runner.control.monitors import Monitors
from runner.control.pointer import UnknownMonitor
from runner.control.policy import ControlPolicy, Refused
from runner.control.ratelimit import Rejections
from runner.control.sessions import Session
from runner.logs import get_logger
from runner.media.controls import MediaControl, QualityRequest
from runner.media.randr import ResizeError
from runner.media.screen_size import FitRequest

log = get_logger(__name__)

# method -> (parameters, needs control)
METHODS: dict[str, tuple[type[msg.RpcParams], bool]] = {
    "dr.ping": (msg.PingParams, False),
    "dr.monitors.list": (msg.NoParams, False),
    "dr.monitors.select": (msg.SelectMonitorParams, True),
    "dr.keyframe": (msg.NoParams, False),
    "dr.quality.set": (msg.QualityParams, True),
    "dr.screen.fit": (msg.FitParams, True),
    "dr.stats": (msg.NoParams, False),
    "dr.clipboard.get": (msg.NoParams, True),
    "dr.clipboard.set": (msg.ClipboardSetParams, True),
    "dr.control.request": (msg.NoParams, False),
    "dr.control.release": (msg.NoParams, False),
}

Result = dict[str, object]


def percentiles_ms(samples: Iterable[float]) -> dict[str, float] | None:
    """p50/p95 in ms of the recent receive-to-injected latencies, or None before any input."""
    values = sorted(samples)
    if not values:
        return None

    def pick(q: float) -> float:
        return round(1000 * values[min(len(values) - 1, int(q * len(values)))], 3)

    return {"p50": pick(0.5), "p95": pick(0.95), "n": len(values)}


@dataclass
class InputCounters:
    """What dr.stats reports about input."""

    rejections: Rejections
    accepted: int = 0


class Methods:
    def __init__(self, settings: Callable[[], Settings], media: MediaControl, injector: Injector,
                 monitors: Monitors, clipboard: HostClipboard, policy: ControlPolicy, counters: InputCounters,
                 set_controller: Callable[[Session | None, str], None]) -> None:
        self._settings = settings
        self._media = media
        self._injector = injector
        self._monitors = monitors
        self._clipboard = clipboard
        self._policy = policy
        self._counters = counters
        self._set_controller = set_controller

    async def call(self, session: Session, method: str, body: bytes) -> Result:
        """Validate ``body`` for ``method`` and run it; SchemaError or Refused say why not."""
        params_model, needs_control = METHODS[method]
        params = msg.parse_params(params_model, body)
        if needs_control and self._policy.controller is not session:
            raise Refused("no_control", "request control first (dr.control.request)")
        match method, params:
            case "dr.ping", msg.PingParams(t=t):
                return {"t": t, "runner_ms": int(time.time() * 1000)}
            case "dr.monitors.list", _:
                return {"monitors": self._monitors.wire(), "selected": self._monitors.selected}
            case "dr.monitors.select", msg.SelectMonitorParams(id=monitor_id):
                return await self._select(session, monitor_id)
            case "dr.keyframe", _:
                self._media.ask_keyframe()
                return {}
            case "dr.quality.set", msg.QualityParams() as q:
                return self._quality(session, q)
            case "dr.screen.fit", msg.FitParams() as f:
                return await self._fit(session, f)
            case "dr.stats", _:
                return self._stats()
            case "dr.clipboard.get", _:
                return {"text": await self._clipboard.get()}
            case "dr.clipboard.set", msg.ClipboardSetParams(text=text):
                await self._clipboard.set(text)
                return {}
            case "dr.control.request", _:
                self._policy.check_request(session)
                self._set_controller(session, "requested")
                return {"controller": session.identity, "you": True}
            case "dr.control.release", _:
                if self._policy.controller is session:
                    self._set_controller(None, "released")
                c = self._policy.controller
                return {"controller": c.identity if c else None, "you": False}
        raise AssertionError(f"no handler for {method}")  # METHODS and this match list the same names

    async def _select(self, session: Session, monitor_id: str) -> Result:
        try:
            m, width, height = await self._monitors.select(monitor_id)
        except UnknownMonitor:
            raise Refused("unknown_monitor", "no monitor with that id (dr.monitors.list)") from None
        log.info("monitor_selected", monitor=m.id, width=width, height=height, by=session.identity)
        return {"selected": m.id, "width": width, "height": height}

    def _quality(self, session: Session, p: msg.QualityParams) -> Result:
        q = self._media.set_quality(QualityRequest(fps=p.fps, bitrate=p.bitrate, max_width=p.max_width,
                                                   max_height=p.max_height))
        log.info("quality_set", fps=q.fps, bitrate=q.bitrate, max_size=(q.max_width, q.max_height),
                 by=session.identity)
        return {"fps": q.fps, "bitrate": q.bitrate, "max_width": q.max_width, "max_height": q.max_height}

    async def _fit(self, session: Session, p: msg.FitParams) -> Result:
        if not self._settings().capture.resizable:
            raise Refused("forbidden", "this runner does not own its X server (capture.resizable is off)")
        try:
            applied = await self._media.fit_screen(FitRequest(p.width, p.height, p.scale))
        except ResizeError as exc:
            raise Refused("unavailable", str(exc)) from None
        await self._monitors.refresh()  # pointer bounds, the selected monitor, the monitors push
        log.info("screen_fit", asked=(p.width, p.height, p.scale), width=applied.width, height=applied.height,
                 dpi=applied.dpi, by=session.identity)
        return {"width": applied.width, "height": applied.height, "dpi": applied.dpi}

    def _stats(self) -> Result:
        info = self._media.stream_info()
        return {
            "fps": info.rates.fps,
            "bitrate": info.rates.bitrate,
            "encode_ms": info.rates.encode_ms,
            "host_ms": info.rates.host_ms,
            "width": info.width,
            "height": info.height,
            "keyframes": info.keyframes,
            "dropped": info.dropped,
            "input": {
                "accepted": self._counters.accepted,
                "rejected": dict(self._counters.rejections.counts),
                "dropped": self._injector.dropped,
                "inject_ms": percentiles_ms(self._injector.latencies_s),
            },
        }
