"""Keyboard injection over XTEST: the browser's KeyboardEvents become key presses on the X server.

Why not pynput's keyboard Controller: on Xorg it sends character keys with XSendEvent, whose
synthetic events xterm and many applications ignore, and uses XTEST only for
``KeyCode.from_vk``. Every event here is an XTEST fake input, indistinguishable from a keyboard.
A ``KeyboardInjector`` owns its own Xlib connection and must be used from one thread (the runner's
injection thread). The mouse stays with pynput (runner/control/inject.py): its XTEST path is right.

This module is the X side only. The rules below are decided by pure code in ``keyplan`` (the plan
for a key-down, the host keymap search) from the tables in ``keytables``; keysym names and
characters come from ``keysyms``.

What ``key(code, key, down, mods)`` does (our decisions)
--------------------------------------------------------
``code`` is KeyboardEvent.code (the physical key), ``key`` is KeyboardEvent.key (what the viewer's
layout made of it) and ``mods`` the modifiers the browser reports down at this event
(getModifierState, names in ``keyplan.MODIFIERS``).

- Modifier drift, on every event: each modifier key we hold whose modifier the snapshot says is
  up is released (a key-up got lost, the viewer lost focus). Caps Lock is a lock, not held state.
- Key-up releases the keycode that the key-down of the same ``code`` pressed, even if modifiers or
  the keymap changed in between. A key-up for a code we do not hold is ignored (False).
- A key-down for a code we already hold (browser auto-repeat) presses that keycode again, with no
  new bookkeeping. Measured on Xvfb and Xorg 21.1: the server drops a press for a key that is
  already down, and repeats held XTEST keys itself (660 ms delay, 25/s by default), so the
  browser's repeats change nothing there and the server's own repeat is what applications see.
- Otherwise a key-down is, in this order:
  1. ``"Dead"``: ignored (False); the browser delivers the composed character with the next key.
  2. A modifier key (Shift, Control, Alt, Meta, AltGraph, CapsLock; by ``key``, else by ``code``):
     the host keycode of that modifier's keysym, the side (Left/Right) from ``code``; AltGraph is
     ISO_Level3_Shift.
  3. A numpad key, by ``code``: the host keycode of its keypad keysyms (KP_7/KP_Home), so the
     host's Num Lock decides digit or navigation, as on a real keypad.
  4. A named key (Enter, Tab, ArrowLeft, F5, PrintScreen, AudioVolumeUp...): the host keycode of
     its X keysym (``keytables.KEY_KEYSYMS``), else the physical key.
  5. A printable character (``key`` is one character after NFC normalization, not a control
     character) with neither Control, Alt nor Meta in ``mods`` - or with AltGraph in ``mods``,
     since Windows reports Control and Alt alongside AltGr - is typed as that character, so the
     viewer's layout decides the character whatever the host's layout is. Its keysym (the named
     keysym, e.g. EuroSign, or 0x01000000 + code point) is looked up among the first four levels
     of the host's first group; the host's Shift and ISO_Level3_Shift are made exactly what that
     level needs (held modifiers it does not need are released first, Control/Alt/Meta
     included; missing ones are pressed), with the host's Caps Lock compensated on letter keys;
     the key is pressed and the viewer's modifiers are restored. A keysym that is on no keycode
     is put on a borrowed spare keycode (see below). No spare left: the physical key.
  6. A shortcut (Control, Alt or Meta without AltGraph): an ASCII letter or digit presses the host
     keycode of that lower-case keysym, so Ctrl+Z is Control+z on the host whatever either layout
     is; anything else presses the physical key.
  7. Anything else (``"Unidentified"``, ``"Process"``, names we do not know): the physical key.
  Nothing found: False, nothing injected.
- The physical key: a non-character key is first looked up by its keysym (``CODE_KEYSYMS``), which
  is right on any keymap. Otherwise ``CODE_TO_EVDEV`` gives the Linux evdev scancode and the X
  keycode is evdev + 8 on servers with evdev keycodes (Xorg with libinput or evdev, Xvfb); an
  Xorg without input drivers has xfree86 keycodes, equal up to 96, the others in
  ``XFREE86_KEYCODES``. Which set a server has is told by where its Left arrow is.

Borrowed keycodes: a keysym missing from the host keymap is mapped onto a spare keycode (one with
no symbols that is no modifier) with ChangeKeyboardMapping, as pynput and xdotool do, and stays
there for reuse. At most ``BORROW_LIMIT`` are borrowed; beyond that the least recently used one
that is not held is remapped, but never within ``BORROW_REUSE_DELAY_S`` of its last use: clients
look the keymap up when they process an event, not when it was sent, so remapping a keycode too
soon after its key event can turn that event into the new character. ``close()`` gives them back.

``type_text(text)`` types each character as press and release with the arrangement of rule 5
("\\n" is Return, "\\t" Tab, other control characters are skipped), one flush per character.

Errors: bad strings from the network never raise: ``key`` returns False, ``type_text`` 0. The
constructor raises ``KeyboardError`` when the display cannot be opened or lacks XTEST. Once open, an
X server that went away surfaces from ``key``, ``type_text``, ``release`` and ``release_all`` as
``Xlib.error.ConnectionClosedError`` (or ``OSError``); the caller drops the injector and makes a new
one. ``close()`` never raises; it waits for the server (a round trip) before disconnecting,
because Xorg can drop XTEST input a client sent just before it disconnected (seen under load),
which would leave keys down on the host.

Limitations: characters come from the first group of the host keymap (host layouts switched to a
second group type from the first); a held character key that the server auto-repeats repeats
with the viewer's modifiers, not the arrangement used for its first press; keycodes a crashed
injector borrowed stay mapped until the keymap is reloaded.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from Xlib import X
from Xlib import display as xdisplay
from Xlib import error as xerror
from Xlib.ext import xtest

from runner.control.keyplan import (
    LEVEL3_COLUMNS,
    LOCK_MODIFIERS,
    SHIFT_COLUMNS,
    HostKeymap,
    KeyAction,
    KeyActionKind,
    ModifierClass,
    plan_key_down,
    printable_char,
)
from runner.control.keysyms import char_keysyms
from runner.control.keytables import TEXT_CONTROLS

BORROW_LIMIT = 32
BORROW_REUSE_DELAY_S = 0.05
MAX_CODE_LENGTH = 64  # longer code or key strings are nothing a browser sends
MAX_KEY_LENGTH = 64


class KeyboardError(RuntimeError):
    """The keyboard injector cannot start; the message says which display and why."""


@dataclass(frozen=True)
class _Held:
    keycode: int
    modifier: str | None  # snapshot name for modifier keys (drift), None for other keys


class KeyboardInjector:
    """XTEST keyboard for one X display; see the module docstring. One thread only."""

    def __init__(self, display: str) -> None:
        try:
            conn = xdisplay.Display(display)
        except (xerror.DisplayError, OSError) as exc:
            raise KeyboardError(f"cannot open X display {display!r} for keyboard input: "
                                f"{exc}") from exc
        if not conn.has_extension("XTEST"):
            conn.close()
            raise KeyboardError(f"X display {display!r} has no XTEST extension, which keyboard "
                                "input needs (start the server without -extension XTEST)")
        self.display = display
        self._conn: xdisplay.Display | None = conn
        self._root = conn.screen().root
        info = conn.display.info
        self._keymap = HostKeymap(
            info.min_keycode,
            conn.get_keyboard_mapping(info.min_keycode, info.max_keycode - info.min_keycode + 1),
            (kc for kcs in conn.get_modifier_mapping() for kc in kcs))
        self._held: dict[str, _Held] = {}
        self._borrowed: OrderedDict[int, int] = OrderedDict()  # keycode -> keysym, LRU first
        self._used_at: dict[int, float] = {}  # borrowed keycode -> monotonic time of last event

    # --- public API ----------------------------------------------------------------------------

    @property
    def held(self) -> frozenset[str]:
        """The codes we currently hold down."""
        return frozenset(self._held)

    def key(self, code: str, key: str, down: bool, mods: frozenset[str]) -> bool:
        """Inject one browser key event; True if something was injected (module docstring)."""
        if (not isinstance(code, str) or not isinstance(key, str)
                or len(code) > MAX_CODE_LENGTH or len(key) > MAX_KEY_LENGTH):
            return False
        try:
            snapshot = frozenset(m for m in mods if isinstance(m, str))
        except TypeError:
            snapshot = frozenset()
        self._process_pending_events()
        drifted = self._release_drifted(snapshot, except_code=code)
        if not down:
            held = self._held.pop(code, None)
            if held is None:
                self._flush_if(drifted)
                return False
            self._fake(X.KeyRelease, held.keycode)
            self._flush()
            if held.keycode in self._borrowed:
                self._used_at[held.keycode] = time.monotonic()
            return True
        if code in self._held:  # browser auto-repeat: see the module docstring
            self._fake(X.KeyPress, self._held[code].keycode)
            self._flush()
            return True
        action = plan_key_down(code, key, snapshot)
        injected = action is not None and self._key_down(code, action)
        self._flush_if(drifted and not injected)
        return injected

    def type_text(self, text: str, stop: Callable[[], bool] | None = None) -> int:
        """Type ``text`` character by character (press and release); the number typed. ``stop``
        is asked before each character: True ends the text there (control was revoked)."""
        if not isinstance(text, str):
            return 0
        self._process_pending_events()
        lock: list[bool] = []  # the host's Caps Lock, asked once per call when a letter needs it

        def lock_on() -> bool:
            if not lock:
                lock.append(self._host_caps_lock())
            return lock[0]

        typed = 0
        for char in text:
            if stop is not None and stop():
                break
            if char in TEXT_CONTROLS:
                keycode = self._keymap.find_keycode((TEXT_CONTROLS[char],))
                if keycode is None:
                    continue
                self._arrange_and_send(False, False, [(X.KeyPress, keycode),
                                                      (X.KeyRelease, keycode)])
                typed += 1
                continue
            if printable_char(char) is None:
                continue
            found = self._char_keycode(char)
            if found is None:
                continue
            self._type_at(*found, lock_on, release=True)
            typed += 1
        return typed

    def sync(self) -> None:
        """Wait until the X server has processed everything sent so far (a round trip)."""
        self._connection().sync()

    def release(self, code: str) -> None:
        """Release one held key (the heartbeat expired for it); nothing if we do not hold it."""
        if not isinstance(code, str):
            return
        held = self._held.pop(code, None)
        if held is not None:
            self._fake(X.KeyRelease, held.keycode)
            self._flush()

    def release_all(self) -> None:
        """Release every key and modifier we hold, most recently pressed first."""
        if not self._held:
            return
        done: set[int] = set()
        for held in reversed(list(self._held.values())):
            if held.keycode not in done:
                self._fake(X.KeyRelease, held.keycode)
                done.add(held.keycode)
        self._held.clear()
        self._flush()

    def close(self) -> None:
        """Release what we hold, give borrowed keycodes back, disconnect. Never raises."""
        conn = self._conn
        if conn is None:
            return
        try:
            self.release_all()
            empty = (X.NoSymbol,) * max(self._keymap.width, 1)
            for keycode in self._borrowed:
                conn.change_keyboard_mapping(keycode, [empty])
            self._borrowed.clear()
            # A round trip, not a flush: Xorg can drop XTEST input that a client sent just
            # before closing its connection (seen under load), which would leave keys down.
            conn.sync()
        except Exception:  # the display is gone: nothing left to release
            pass
        finally:
            self._conn = None
            try:
                conn.close()
            except Exception:
                pass

    # --- key-down ------------------------------------------------------------------------------

    def _key_down(self, code: str, action: KeyAction) -> bool:
        keycode: int | None
        if action.kind is KeyActionKind.CHAR:
            assert action.char is not None
            found = self._char_keycode(action.char)
            if found is not None:
                keycode, column = found
                self._type_at(keycode, column, self._host_caps_lock, release=False)
                self._held[code] = _Held(keycode, None)
                return True
            keycode = self._keymap.physical_keycode(code)
        elif action.kind is KeyActionKind.MODIFIER:
            keycode = self._keymap.find_keycode(action.keysyms)
            if keycode is None:
                keycode = self._keymap.physical_keycode(code)
        else:  # NAMED, SHORTCUT, PHYSICAL
            keycode = self._keymap.find_keycode(action.keysyms)
            if keycode is None:
                keycode = self._keymap.physical_keycode(code)
        if keycode is None:
            return False
        self._fake(X.KeyPress, keycode)
        self._flush()
        modifier = action.modifier if action.modifier not in LOCK_MODIFIERS else None
        self._held[code] = _Held(keycode, modifier)
        return True

    def _char_keycode(self, char: str) -> tuple[int, int] | None:
        """(keycode, column) that types ``char`` on the host, borrowing a keycode if needed."""
        syms = char_keysyms(char)
        found = self._keymap.find_char(syms)
        if found is not None:
            if found[0] in self._borrowed:
                self._borrowed.move_to_end(found[0])
            return found
        borrowed = self._borrow(syms[0])
        return (borrowed, 0) if borrowed is not None else None

    def _type_at(self, keycode: int, column: int, lock_on: Callable[[], bool], *,
                 release: bool) -> None:
        need_shift = column in SHIFT_COLUMNS
        if column in (0, 1) and self._keymap.is_case_pair(keycode) and lock_on():
            need_shift = not need_shift  # Caps Lock already selects the other case
        events = [(X.KeyPress, keycode)] + ([(X.KeyRelease, keycode)] if release else [])
        self._arrange_and_send(need_shift, column in LEVEL3_COLUMNS, events)
        if keycode in self._borrowed:
            self._used_at[keycode] = time.monotonic()

    def _arrange_and_send(self, need_shift: bool, need_level3: bool,
                          events: list[tuple[int, int]]) -> None:
        """Send ``events`` with the host's Shift and level-3 exactly as asked and no other
        modifier we hold, then restore the modifiers we hold; one flush."""
        lifted: list[int] = []
        have_shift = have_level3 = False
        for keycode in dict.fromkeys(h.keycode for h in self._held.values()):
            kind = self._keymap.modifier_class(keycode)
            if kind is None:
                continue
            if kind is ModifierClass.SHIFT and need_shift:
                have_shift = True
            elif kind is ModifierClass.LEVEL3 and need_level3:
                have_level3 = True
            else:
                self._fake(X.KeyRelease, keycode)
                lifted.append(keycode)
        added = [kc for kc, needed in ((self._keymap.shift_keycode, need_shift and not have_shift),
                                       (self._keymap.level3_keycode,
                                        need_level3 and not have_level3))
                 if needed and kc is not None]
        for keycode in added:
            self._fake(X.KeyPress, keycode)
        for event_type, keycode in events:
            self._fake(event_type, keycode)
        for keycode in reversed(added):
            self._fake(X.KeyRelease, keycode)
        for keycode in lifted:
            self._fake(X.KeyPress, keycode)
        self._flush()

    # --- borrowed keycodes ----------------------------------------------------------------------

    def _borrow(self, sym: int) -> int | None:
        """Map ``sym`` onto a spare keycode (or the least recently used borrowed one)."""
        held = {h.keycode for h in self._held.values()}
        spare = [kc for kc in self._keymap.spare_keycodes() if kc not in held]
        keycode: int
        if spare and len(self._borrowed) < BORROW_LIMIT:
            keycode = spare[0]
        else:
            reusable = next((kc for kc in self._borrowed if kc not in held), None)
            if reusable is None:
                return None
            keycode = reusable
            wait = self._used_at.get(keycode, 0.0) + BORROW_REUSE_DELAY_S - time.monotonic()
            if wait > 0:
                self._flush()
                time.sleep(wait)
            del self._borrowed[keycode]
        conn = self._connection()
        width = max(self._keymap.width, 2)
        failed = xerror.CatchError()
        conn.change_keyboard_mapping(keycode, [(sym,) * width], onerror=failed)
        conn.sync()
        if failed.get_error() is not None:
            return None
        # What XKB makes of it (one symbol on every level of two groups); the MappingNotify
        # that follows brings the server's exact version.
        self._keymap.set_keysyms(keycode, (sym,) * min(width, 4) + (X.NoSymbol,) * (width - 4))
        self._borrowed[keycode] = sym
        self._used_at[keycode] = time.monotonic()
        return keycode

    # --- X plumbing ------------------------------------------------------------------------------

    def _connection(self) -> xdisplay.Display:
        if self._conn is None:
            raise xerror.ConnectionClosedError("client")
        return self._conn

    def _fake(self, event_type: int, keycode: int) -> None:
        xtest.fake_input(self._connection(), event_type, keycode)

    def _flush(self) -> None:
        self._connection().flush()

    def _flush_if(self, condition: bool) -> None:
        if condition:
            self._flush()

    def _host_caps_lock(self) -> bool:
        return bool(self._root.query_pointer().mask & X.LockMask)

    def _release_drifted(self, snapshot: frozenset[str], *, except_code: str) -> bool:
        drifted = [code for code, held in self._held.items()
                   if held.modifier is not None and held.modifier not in snapshot
                   and code != except_code]
        for code in drifted:
            self._fake(X.KeyRelease, self._held.pop(code).keycode)
        return bool(drifted)

    def _process_pending_events(self) -> None:
        """Apply keymap changes (MappingNotify) that arrived since the last call."""
        conn = self._connection()
        while conn.pending_events():
            event = conn.next_event()
            if event.type != X.MappingNotify:
                continue
            if event.request == X.MappingKeyboard:
                first, count = event.first_keycode, event.count
                for offset, syms in enumerate(conn.get_keyboard_mapping(first, count)):
                    self._keymap.set_keysyms(first + offset, syms)
                for keycode, sym in list(self._borrowed.items()):
                    if sym not in self._keymap.keysyms(keycode)[:1]:
                        del self._borrowed[keycode]  # someone reloaded the keymap over it
            elif event.request == X.MappingModifier:
                self._keymap.set_modifier_keycodes(
                    kc for kcs in conn.get_modifier_mapping() for kc in kcs)
