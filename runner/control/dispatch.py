"""Input dispatch: an authorized input message becomes injection operations, in order.

Keeps what the controller holds (held.py) and the wheel's fractional notches; positions become X
pixels on the named monitor (pointer.py). Nothing here touches X: operations are queued on the
injector's thread (inject.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from runner.control import messages as msg
from runner.control.held import Held, HeldInputs, HeldKind
from runner.control.inject import Injector, XBackend
from runner.control.pointer import Layout, WheelAccumulator
from runner.logs import get_logger

log = get_logger(__name__)


class InputDispatcher:
    def __init__(self, injector: Injector, layout: Callable[[], Layout], heartbeat_timeout_s: float) -> None:
        self.injector = injector
        self._layout = layout
        self.held = HeldInputs(heartbeat_timeout_s)
        self._wheel = WheelAccumulator()

    def dispatch(self, m: msg.InputMessage) -> None:
        """Queue what ``m`` asks for; UnknownMonitor when it names a monitor we do not have."""
        now = time.monotonic()
        submit = self.injector.submit
        match m:
            case msg.Move(mon=mon, x=x, y=y):
                px, py = self._layout().to_pixels(mon, x, y)
                submit(lambda b: b.move_to(px, py), move=True)
            case msg.Rel(dx=rel_x, dy=rel_y):
                submit(lambda b: b.move_by(rel_x, rel_y))
            case msg.ButtonMsg(button=button, down=down, mon=mon, x=x, y=y):
                if mon is not None and x is not None and y is not None:
                    px, py = self._layout().to_pixels(mon, x, y)  # land the click where aimed
                    submit(lambda b: b.move_to(px, py))
                self._track(Held(HeldKind.BUTTON, button), down, now)
                submit(lambda b: b.button(button, down))
            case msg.Wheel(dx=dx, dy=dy):
                sx, sy = self._wheel.add(dx, dy)
                if sx or sy:
                    submit(lambda b: b.wheel(sx, sy))
            case msg.Key(code=code, key=key, down=down, mods=mods):
                self._track(Held(HeldKind.KEY, code), down, now)
                snapshot = frozenset(mods)
                submit(lambda b: b.keyboard.key(code, key, down, snapshot))
            case msg.Text(text=text):
                stop = self.injector.stale(self.injector.epoch)
                submit(lambda b: b.keyboard.type_text(text, stop=stop))
            case msg.HeldMsg(keys=keys, buttons=buttons):
                for item in self.held.heartbeat(keys, buttons, now):
                    self.release(item)
            case msg.Reset():
                self.release_all()

    def _track(self, item: Held, down: bool, now: float) -> None:
        if down:
            self.held.press(item, now)
        else:
            self.held.release(item)

    def release(self, item: Held) -> None:
        name = item.name
        op: Callable[[XBackend], object]
        match item.kind:
            case HeldKind.KEY:
                op = lambda b: b.keyboard.release(name)  # noqa: E731
            case HeldKind.BUTTON:
                op = lambda b: b.button(name, False)  # noqa: E731
        self.injector.submit_release(op)

    def release_all(self) -> None:
        """Forget everything held, drop every queued input and release it all on the host (reset,
        control changed hands, key rotated, view-only): nothing from before runs afterwards."""
        self.held.clear()
        self._wheel.reset()
        self.injector.revoke()

    def release_after_queued(self) -> None:
        """Forget everything held and release it on the host once what is queued has run (the
        session lost step: what came in order still happens, nothing held outlives it)."""
        self.held.clear()
        self._wheel.reset()
        self.injector.submit_release(lambda b: b.release_all(), first=False)

    def expire(self, now: float) -> None:
        """Release what the viewer stopped vouching for (heartbeat timeout)."""
        for item in self.held.expired(now):
            log.info("input_released", reason="heartbeat_expired", kind=item.kind)
            self.release(item)
