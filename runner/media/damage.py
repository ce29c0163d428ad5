"""Has the screen changed? XDamage on the root window, plus the pointer when it is drawn.

A still desktop should cost next to nothing: without this the runner grabs, converts and
encodes every tick whatever happens (about 40 % of a core at 1080p30 here). The X server reports
damage (any drawing) through the DAMAGE extension; the pointer is not drawn into the screen by X,
so when the picture includes it (``capture.cursor = "picture"``) its position is compared too. Used from the
capture thread only (its own X connection). Any doubt (no DAMAGE extension, a lost connection)
answers "changed", so the worst case is today's behaviour, never a frozen picture.
"""

from __future__ import annotations

from typing import Any

from Xlib import display as xdisplay
from Xlib.ext import damage, xinput

from runner.logs import get_logger

log = get_logger(__name__)


def select_raw_motion(d: xdisplay.Display, root: Any) -> bool:
    """Ask for XInput 2 raw pointer motion on ``root``; False where the X server cannot give it
    (then pointer moves are seen only by polling)."""
    if not d.has_extension("XInputExtension"):
        return False
    try:
        d.xinput_query_version()
        root.xinput_select_events([(xinput.AllMasterDevices, xinput.RawMotionMask)])
    except Exception as exc:
        log.debug("pointer_motion_events_unavailable", reason=f"{type(exc).__name__}: {exc}")
        return False
    return True


class ChangeWatch:
    def __init__(self, display: str, *, cursor: bool) -> None:
        self._cursor = cursor
        self._pointer: tuple[int, int] | None = None
        self._d: xdisplay.Display | None = None
        try:
            d = xdisplay.Display(display)
            if not d.has_extension("DAMAGE"):
                d.close()
                log.warning("damage_unavailable", display=display, reason="no DAMAGE extension")
                return
            d.damage_query_version()
            self._root = d.screen().root
            self._damage = self._root.damage_create(damage.DamageReportNonEmpty)
            self._notify = d.extension_event.DamageNotify
            # The pointer makes no damage; XInput 2 raw motion events say when it moved, so a
            # still screen can be waited on without polling it (wait_fd). Devices and XTEST (the
            # runner's own injection) make raw events; an application's XWarpPointer does not,
            # and is seen at the next idle refresh (IDLE_REFRESH_S) instead.
            self._motion_events = cursor and select_raw_motion(d, self._root)
            d.sync()
            self._d = d
        except Exception as exc:  # no display, refused: we simply cannot tell
            log.warning("damage_unavailable", display=display, reason=f"{type(exc).__name__}: {exc}")
            self._d = None

    @property
    def active(self) -> bool:
        return self._d is not None

    def wait_fd(self) -> int | None:
        """The X connection's descriptor, readable when the server reports damage, for waiting
        on a still screen without polling; None when a change cannot be seen that way (no
        DAMAGE, or the pointer is drawn and XInput 2 cannot report its moves: then it is polled)."""
        if self._d is None or (self._cursor and not self._motion_events):
            return None
        fd: int = self._d.fileno()
        return fd

    def changed(self) -> bool:
        """True if anything was drawn (or the drawn pointer moved) since the last call."""
        d = self._d
        if d is None:
            return True
        try:
            # pending_events() reads whatever the server sent so far without a round trip; the
            # pointer, when it is drawn into the picture, needs one (X reports no damage for it).
            pointer = self._root.query_pointer() if self._cursor else None
            damaged = False
            while d.pending_events():
                if d.next_event().type == self._notify:
                    damaged = True
            if damaged:
                d.damage_subtract(self._damage)  # re-arm: NonEmpty reports once until subtracted
                d.flush()
            if pointer is not None and (pointer.root_x, pointer.root_y) != self._pointer:
                self._pointer = (pointer.root_x, pointer.root_y)
                damaged = True
            return damaged
        except Exception as exc:  # the X server went away: capture will notice and recover
            log.debug("damage_lost", error=f"{type(exc).__name__}: {exc}")
            self.close()
            return True

    def close(self) -> None:
        d, self._d = self._d, None
        if d is not None:
            try:
                d.close()
            except Exception:
                pass
