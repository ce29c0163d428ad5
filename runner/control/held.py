"""Stuck-input safety, pure: which held keys and buttons the viewer still vouches for.

The viewer repeats the set of what it holds (``held``) every 100 ms while anything is held
(docs/protocol.md). Anything not refreshed within the timeout is released (a lost release, a
crashed tab, a dropped network), and anything the viewer no longer lists is released at once.
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


class HeldInputs:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._deadlines: dict[Held, float] = {}

    def __len__(self) -> int:
        return len(self._deadlines)

    def __contains__(self, item: Held) -> bool:
        return item in self._deadlines

    def press(self, item: Held, now: float) -> None:
        self._deadlines[item] = now + self.timeout_s

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
                self._deadlines[h] = now + self.timeout_s
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
