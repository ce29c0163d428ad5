"""Read input state back from the X server (not from our own calls): pointer, buttons, keys."""

from __future__ import annotations

import time
from collections.abc import Callable

from Xlib import X
from Xlib import display as xdisplay

BUTTON_MASKS = {"left": X.Button1Mask, "middle": X.Button2Mask, "right": X.Button3Mask}


class XState:
    def __init__(self, display: str) -> None:
        self._d = xdisplay.Display(display)
        self._root = self._d.screen().root

    def pointer(self) -> tuple[int, int]:
        p = self._root.query_pointer()
        return p.root_x, p.root_y

    def buttons_down(self) -> set[str]:
        mask = self._root.query_pointer().mask
        return {name for name, bit in BUTTON_MASKS.items() if mask & bit}

    def keycodes_down(self) -> set[int]:
        bits = self._d.query_keymap()
        return {i * 8 + b for i, byte in enumerate(bits) for b in range(8) if byte & (1 << b)}

    def keycode(self, keysym_name: str) -> int:
        from Xlib import XK

        keycode: int = self._d.keysym_to_keycode(XK.string_to_keysym(keysym_name))
        return keycode

    def warp(self, x: int, y: int) -> None:
        self._root.warp_pointer(x, y)
        self._d.sync()

    def close(self) -> None:
        self._d.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
