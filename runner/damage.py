"""Has the screen changed? XDamage on the root window, plus the pointer when it is drawn.

A still desktop should cost next to nothing: without this the runner grabs, converts and
encodes every tick whatever happens (about 40 % of a core at 1080p30 here). The X server reports
damage (any drawing) through the DAMAGE extension; the pointer is not drawn into the screen by X,
so when the picture includes it (``capture.cursor``) its position is compared too. Used from the
capture thread only (its own X connection). Any doubt (no DAMAGE extension, a lost connection)
answers "changed", so the worst case is today's behaviour, never a frozen picture.
"""

from __future__ import annotations

from Xlib import display as xdisplay
from Xlib.ext import damage

from runner.logs import get_logger

log = get_logger(__name__)


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
            d.sync()
            self._d = d
        except Exception as exc:  # no display, refused: we simply cannot tell
            log.warning("damage_unavailable", display=display, reason=f"{type(exc).__name__}: {exc}")
            self._d = None

    @property
    def active(self) -> bool:
        return self._d is not None

    def changed(self) -> bool:
        """True if anything was drawn (or the drawn pointer moved) since the last call."""
        d = self._d
        if d is None:
            return True
        try:
            # One round trip first: it flushes and reads every event the server sent so far.
            pointer = self._root.query_pointer()
            damaged = False
            while d.pending_events():
                if d.next_event().type == self._notify:
                    damaged = True
            if damaged:
                d.damage_subtract(self._damage)  # re-arm: NonEmpty reports once until subtracted
            if self._cursor and (pointer.root_x, pointer.root_y) != self._pointer:
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
