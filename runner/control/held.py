"""Stuck-input safety, pure: which held keys and buttons the viewer still vouches for.

The viewer repeats the set of what it holds (``held``) every 100 ms while anything is held
(docs/protocol.md). Anything not refreshed within the timeout is released (a lost release, a
crashed tab, a dropped network), and anything the viewer no longer lists is released at once.

Keys have a shorter bound than buttons, ``KEY_HOLD_S``: the X server auto-repeats a key held
through XTEST (after 660 ms, then 25 times a second, by default; 35 presses in 2 s measured on
Xvfb), so a key-up the network lost would type on by itself. Released within 0.5 s, it is
pressed once. Five heartbeats must be lost in a row for a key the viewer does hold to be
released early; a browser's own key repeats (every ~33 ms) also refresh it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class HeldKind(StrEnum):
    BUTTON = "button"  # a button name
    KEY = "key"        # a KeyboardEvent.code


@dataclass(frozen=True, order=True)
class Held:
    kind: HeldKind
    name: str


KEY_HOLD_S = 0.5  # below X's default autorepeat delay (660 ms)


class HeldInputs:
    def __init__(self, timeout_s: float, key_hold_s: float = KEY_HOLD_S) -> None:
        self.timeout_s = timeout_s  # control.heartbeat_timeout_s
        self.key_hold_s = key_hold_s
        self._deadlines: dict[Held, float] = {}

    def _timeout(self, item: Held) -> float:
        return min(self.timeout_s, self.key_hold_s) if item.kind is HeldKind.KEY else self.timeout_s

    def __len__(self) -> int:
        return len(self._deadlines)

    def __contains__(self, item: Held) -> bool:
        return item in self._deadlines

    def press(self, item: Held, now: float) -> None:
        self._deadlines[item] = now + self._timeout(item)

    def release(self, item: Held) -> None:
        self._deadlines.pop(item, None)

    def heartbeat(self, keys: Iterable[str], buttons: Iterable[str], now: float) -> list[Held]:
        """Refresh what is listed; return (and forget) what we hold that the viewer does not."""
        listed = {Held(HeldKind.KEY, k) for k in keys} | {Held(HeldKind.BUTTON, b) for b in buttons}
        dropped = sorted(h for h in self._deadlines if h not in listed)
        for h in dropped:
            del self._deadlines[h]
        for h in listed:
            if h in self._deadlines:
                self._deadlines[h] = now + self._timeout(h)
        return dropped

    def expired(self, now: float) -> list[Held]:
        """Return (and forget) everything not refreshed in time."""
        gone = sorted(h for h, deadline in self._deadlines.items() if deadline <= now)
        for h in gone:
            del self._deadlines[h]
        return gone

    def clear(self) -> list[Held]:
        everything = sorted(self._deadlines)
        self._deadlines.clear()
        return everything
