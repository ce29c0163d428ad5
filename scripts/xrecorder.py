"""A tiny X client that records the input the X server delivers to it, as JSON lines.

Tests use it to prove injected input from the X side instead of trusting the injector's own calls:
``python scripts/xrecorder.py --display :N [--geometry WxH+X+Y]`` maps an override-redirect window
(default: covering the whole root window), takes the input focus (and takes it back if it is lost;
no window manager runs in tests) and prints one JSON object per line, flushed:

- ``{"type": "ready", "window": id}`` once the window is mapped and focused;
- ``{"type": "key_press" | "key_release", "keycode", "keysym", "keysym_name", "char", "state",
  "synthetic"}``;
- ``{"type": "button_press" | "button_release", "button", "x_root", "y_root", "state",
  "synthetic"}``;
- ``{"type": "motion", "x_root", "y_root", "state"}``.

``keysym`` is resolved from the keycode and the event's modifier ``state`` the way XKB's standard
key types do for the first group: Shift picks the second level, the modifier that carries
ISO_Level3_Shift (AltGr, normally Mod5) the third and fourth, Caps Lock flips the case of
letter keys and Num Lock the keypad. ``char`` is the character that keysym types (Return and
KP_Enter give "\\n", Tab "\\t"), or null for keys that type nothing (modifiers, arrows, dead keys).
``synthetic`` is true for events sent with XSendEvent, which many applications (xterm) ignore;
XTEST input is never synthetic.

``XRecorder`` runs the script as a subprocess for a test and collects its events. Importable as
``xrecorder`` with ``scripts/`` on ``sys.path``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from Xlib import XK, X
from Xlib import display as xdisplay
from Xlib import error as xerror
from Xlib.ext import xtest

from devstack import ComponentError, _log_hint, _ManagedProcess
from runner.control.keysyms import keysym_char, keysym_name

READY_TIMEOUT_S = 10.0
MARKER = "F12"  # settle()'s marker key: on every keymap, and nothing under test presses it
WAIT_TIMEOUT_S = 5.0
EVENT_MASK = (X.KeyPressMask | X.KeyReleaseMask | X.ButtonPressMask | X.ButtonReleaseMask
              | X.PointerMotionMask | X.FocusChangeMask | X.StructureNotifyMask)
GEOMETRY_RE = re.compile(r"^(\d+)x(\d+)\+(-?\d+)\+(-?\d+)$")

KEYPAD_KEYSYMS = range(0xFF80, 0xFFBE)  # KP_Space .. KP_Equal
# Keysyms that type text without being characters in the keysym tables.
TEXT_KEYSYMS = {
    XK.XK_Return: "\n", XK.XK_KP_Enter: "\n", XK.XK_Tab: "\t", XK.XK_KP_Tab: "\t",
    XK.XK_KP_Space: " ", XK.XK_KP_Equal: "=", XK.XK_KP_Multiply: "*", XK.XK_KP_Add: "+",
    XK.XK_KP_Separator: ",", XK.XK_KP_Subtract: "-", XK.XK_KP_Decimal: ".", XK.XK_KP_Divide: "/",
    **{XK.XK_KP_0 + d: str(d) for d in range(10)},
}


# --- keysyms --------------------------------------------------------------------------------------


def keysym_to_char(keysym: int) -> str | None:
    """The character a keysym types, or None."""
    if keysym in TEXT_KEYSYMS:
        return TEXT_KEYSYMS[keysym]
    return keysym_char(keysym)


def _is_case_pair(lower: int, upper: int) -> bool:
    low, up = keysym_to_char(lower), keysym_to_char(upper)
    return bool(low and up and low != up and low.upper() == up)


class Keymap:
    """The server's core keyboard mapping and the modifiers that select levels, kept current by
    ``refresh()`` on MappingNotify."""

    def __init__(self, conn: xdisplay.Display) -> None:
        self._conn = conn
        self.refresh()

    def refresh(self) -> None:
        info = self._conn.display.info
        self._first = info.min_keycode
        self._codes = [list(syms) for syms in self._conn.get_keyboard_mapping(
            info.min_keycode, info.max_keycode - info.min_keycode + 1)]
        modifiers = self._conn.get_modifier_mapping()
        self.level3_mask = self._mask_of(modifiers, XK.XK_ISO_Level3_Shift) or X.Mod5Mask
        self.numlock_mask = self._mask_of(modifiers, XK.XK_Num_Lock) or X.Mod2Mask

    def _mask_of(self, modifiers: Any, keysym: int) -> int:
        for index, keycodes in enumerate(modifiers):
            if any(keycode and keysym in self.keysyms(keycode) for keycode in keycodes):
                return 1 << index
        return 0

    def keysyms(self, keycode: int) -> list[int]:
        index = keycode - self._first
        return self._codes[index] if 0 <= index < len(self._codes) else []

    def keysym(self, keycode: int, state: int) -> int:
        syms = self.keysyms(keycode) + [X.NoSymbol] * 6
        lower, upper = syms[0], syms[1]
        if state & self.level3_mask and (syms[4] or syms[5]):
            lower, upper = syms[4], syms[5]
        if upper == X.NoSymbol:  # a one-level key
            upper = lower
        second = bool(state & X.ShiftMask)
        if state & X.LockMask and _is_case_pair(lower, upper):
            second = not second
        if lower in KEYPAD_KEYSYMS or upper in KEYPAD_KEYSYMS:
            second = bool(state & X.ShiftMask) != bool(state & self.numlock_mask)
        return int(upper if second else lower)


# --- the recording client -------------------------------------------------------------------------


def parse_geometry(text: str) -> tuple[int, int, int, int]:
    """``"WxH+X+Y"`` -> (width, height, x, y)."""
    match = GEOMETRY_RE.match(text)
    if not match:
        raise ValueError(f"geometry {text!r} is not WxH+X+Y")
    width, height, x, y = (int(g) for g in match.groups())
    if width <= 0 or height <= 0:
        raise ValueError(f"geometry {text!r} needs a positive size")
    return width, height, x, y


def _emit(out: TextIO, record: dict[str, Any]) -> None:
    out.write(json.dumps(record) + "\n")  # ASCII escapes: safe for any keysym's character
    out.flush()


def record(display: str, geometry: tuple[int, int, int, int] | None, out: TextIO) -> int:
    """Map the window, take the focus, print events until the X connection closes."""
    conn = xdisplay.Display(display)
    screen = conn.screen()
    width, height, x, y = geometry or (screen.width_in_pixels, screen.height_in_pixels, 0, 0)
    window = screen.root.create_window(
        x, y, width, height, 0, screen.root_depth, X.InputOutput, X.CopyFromParent,
        background_pixel=screen.black_pixel, override_redirect=True, event_mask=EVENT_MASK)
    window.map()
    keymap = Keymap(conn)
    mapped = focused = announced = False
    try:
        while True:
            if mapped and not focused:
                window.set_input_focus(X.RevertToParent, X.CurrentTime)
                conn.sync()
                focused = conn.get_input_focus().focus == window
                if focused and not announced:
                    _emit(out, {"type": "ready", "window": window.id})
                    announced = True
                elif not focused:
                    time.sleep(0.01)
                    continue
            ev = conn.next_event()
            if ev.type == X.MapNotify and ev.window == window:
                mapped = True
            elif ev.type == X.FocusOut and ev.window == window and ev.detail not in (
                    X.NotifyInferior, X.NotifyPointer):
                focused = False  # taken away: take it back before the next event
            elif ev.type == X.MappingNotify:
                conn.refresh_keyboard_mapping(ev)
                keymap.refresh()
            elif ev.type in (X.KeyPress, X.KeyRelease):
                keysym = keymap.keysym(ev.detail, ev.state)
                _emit(out, {"type": "key_press" if ev.type == X.KeyPress else "key_release",
                            "keycode": ev.detail, "keysym": keysym,
                            "keysym_name": keysym_name(keysym), "char": keysym_to_char(keysym),
                            "state": ev.state, "synthetic": bool(ev.send_event)})
            elif ev.type in (X.ButtonPress, X.ButtonRelease):
                _emit(out, {"type": "button_press" if ev.type == X.ButtonPress
                            else "button_release", "button": ev.detail, "x_root": ev.root_x,
                            "y_root": ev.root_y, "state": ev.state,
                            "synthetic": bool(ev.send_event)})
            elif ev.type == X.MotionNotify:
                _emit(out, {"type": "motion", "x_root": ev.root_x, "y_root": ev.root_y,
                            "state": ev.state})
    except (xerror.ConnectionClosedError, BrokenPipeError):
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--display", required=True, help="X display, e.g. :1")
    parser.add_argument("--geometry", type=parse_geometry, default=None,
                        help="window WxH+X+Y (default: the whole root window)")
    args = parser.parse_args(argv)
    return record(args.display, args.geometry, sys.stdout)


# --- test helper ----------------------------------------------------------------------------------


Event = dict[str, Any]


class XRecorder(_ManagedProcess):
    """Runs this script on ``display`` and collects its events; stop() ends it (idempotent).

    ``events()`` excludes the ready line. Its stderr goes to ``.log_path``.
    """

    name = "xrecorder"

    def __init__(self, display: str, geometry: str | None = None, *,
                 python: str = sys.executable) -> None:
        super().__init__()
        self.display = display
        argv = [python, str(Path(__file__).resolve()), "--display", display]
        if geometry is not None:
            parse_geometry(geometry)  # fail here, not in the child
            argv += ["--geometry", geometry]
        self.window: int | None = None  # the recording window's X id, once ready
        self._events: list[Event] = []
        self._ready = False
        self._ended = False
        self._changed = threading.Condition()
        proc = self._spawn(argv, stdout=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True,
                                        name="xrecorder-reader")
        self._reader.start()

    def _read(self, stdout: Any) -> None:
        for line in stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self._changed:
                if event.get("type") == "ready":
                    self.window = event.get("window")
                    self._ready = True
                else:
                    self._events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Block until the window is mapped and focused; ComponentError if it never is."""
        with self._changed:
            self._changed.wait_for(lambda: self._ready or self._ended, timeout)
            if self._ready:
                return
        what = "exited" if self._ended else f"not ready after {timeout:.0f} s"
        raise ComponentError(f"xrecorder on {self.display}: {what}" + _log_hint(self.log_path))

    def events(self) -> list[Event]:
        """Every event recorded so far, oldest first (a copy)."""
        with self._changed:
            return list(self._events)

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float = WAIT_TIMEOUT_S, *,
                 since: int = 0) -> Event:
        """The first event at index ``since`` or later that satisfies ``predicate``, waiting up
        to ``timeout`` seconds for it; TimeoutError (listing what came) when none does."""
        found: list[Event] = []

        def match() -> bool:
            found[:] = [e for e in self._events[since:] if predicate(e)][:1]
            return bool(found) or self._ended

        with self._changed:
            self._changed.wait_for(match, timeout)
            if found:
                return found[0]
            seen = self._events[since:]
        raise TimeoutError(f"no matching event after {timeout} s; recorded: {seen[-20:]}")

    def settle(self, timeout: float = WAIT_TIMEOUT_S) -> None:
        """Return once every input event the X server generated before this call is recorded.

        A marker key (``MARKER``) is tapped through XTEST from a connection of our own after a
        round trip; the server queues its events after everything it processed before, so once
        the marker's release is recorded, so is all that came before. The marker's events are
        then removed. Callers that inject from another connection sync it first (a round trip),
        so their requests are processed before the marker's."""
        d = xdisplay.Display(self.display)
        try:
            keycode = d.keysym_to_keycode(XK.string_to_keysym(MARKER))
            xtest.fake_input(d, X.KeyPress, keycode)
            xtest.fake_input(d, X.KeyRelease, keycode)
            d.sync()
        finally:
            d.close()
        self.wait_for(lambda e: e["type"] == "key_release" and e["keysym_name"] == MARKER, timeout)
        with self._changed:
            self._events = [e for e in self._events if e.get("keysym_name") != MARKER]

    def typed_text(self) -> str:
        """The characters of all key presses, joined."""
        return "".join(e["char"] for e in self.events()
                       if e["type"] == "key_press" and e.get("char"))

    def stop(self) -> None:
        super().stop()
        if self._proc is not None and self._proc.stdout is not None:
            self._reader.join(timeout=2)
            self._proc.stdout.close()


if __name__ == "__main__":
    sys.exit(main())
