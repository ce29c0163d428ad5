"""Keyboard injection over XTEST: the browser's KeyboardEvents become key presses on the X server.

Why not pynput's keyboard Controller: on Xorg it sends character keys with XSendEvent, whose
synthetic events xterm and many applications ignore, and uses XTEST only for
``KeyCode.from_vk``. Every event here is an XTEST fake input, indistinguishable from a keyboard.
A ``KeyboardInjector`` owns its own Xlib connection and must be used from one thread (the runner's
injection thread).

What ``key(code, key, down, mods)`` does (our decisions)
--------------------------------------------------------
``code`` is KeyboardEvent.code (the physical key), ``key`` is KeyboardEvent.key (what the viewer's
layout made of it) and ``mods`` the modifiers the browser reports down at this event
(getModifierState, names in ``MODIFIERS``).

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
     its X keysym (``KEY_KEYSYMS``), else the physical key.
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

import importlib.util
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from Xlib import XK, X
from Xlib import display as xdisplay
from Xlib import error as xerror
from Xlib.ext import xtest

for _group in ("xkb", "xf86", "korean", "latin2", "latin3", "latin4", "greek", "cyrillic"):
    XK.load_keysym_group(_group)

MODIFIERS = ("Shift", "Control", "Alt", "Meta", "AltGraph", "CapsLock")  # the snapshot names
SHORTCUT_MODIFIERS = frozenset({"Control", "Alt", "Meta"})
LOCK_MODIFIERS = frozenset({"CapsLock"})  # locks: in the snapshot, never "held"

EVDEV_TO_X_OFFSET = 8
XFREE86_SAME_UP_TO = 96  # xfree86 and evdev keycodes agree from 9 to 96
BORROW_LIMIT = 32
BORROW_REUSE_DELAY_S = 0.05
UNICODE_KEYSYM_BASE = 0x0100_0000
MAX_CODE_LENGTH = 64  # longer code or key strings are nothing a browser sends
MAX_KEY_LENGTH = 64

# Core keymap columns: group 1 levels 1, 2 are columns 0, 1; columns 2, 3 are group 2; group 1
# levels 3, 4 (AltGr) are columns 4, 5. Characters are typed from these four.
CHAR_COLUMNS = (0, 1, 4, 5)
SHIFT_COLUMNS = frozenset({1, 5})
LEVEL3_COLUMNS = frozenset({4, 5})

EVDEV = "evdev"
XFREE86 = "xfree86"


class KeyboardError(RuntimeError):
    """The keyboard injector cannot start; the message says which display and why."""


def keysym(name: str) -> int:
    """The X keysym called ``name`` (X's spelling: "Return", "XF86AudioMute"); KeyError if none."""
    value = XK.string_to_keysym(name.replace("XF86", "XF86_", 1) if name.startswith("XF86")
                                else name)
    if value == X.NoSymbol:
        raise KeyError(f"unknown keysym name {name!r}")
    return value


def _keysyms(*names: str) -> tuple[int, ...]:
    return tuple(keysym(n) for n in names)


# --- tables ---------------------------------------------------------------------------------------

# KeyboardEvent.code -> Linux evdev scancode (input-event-codes.h), every code of the UI Events
# code list that a Linux keyboard can produce (https://www.w3.org/TR/uievents-code/), plus the
# older names browsers still send (OSLeft, VolumeUp...). Values as Chromium's dom_code_data.inc.
CODE_TO_EVDEV: dict[str, int] = {
    # writing system keys
    "Backquote": 41, "Backslash": 43, "BracketLeft": 26, "BracketRight": 27, "Comma": 51,
    "Digit1": 2, "Digit2": 3, "Digit3": 4, "Digit4": 5, "Digit5": 6, "Digit6": 7, "Digit7": 8,
    "Digit8": 9, "Digit9": 10, "Digit0": 11, "Equal": 13, "IntlBackslash": 86, "IntlRo": 89,
    "IntlYen": 124, "Minus": 12, "Period": 52, "Quote": 40, "Semicolon": 39, "Slash": 53,
    "KeyA": 30, "KeyB": 48, "KeyC": 46, "KeyD": 32, "KeyE": 18, "KeyF": 33, "KeyG": 34,
    "KeyH": 35, "KeyI": 23, "KeyJ": 36, "KeyK": 37, "KeyL": 38, "KeyM": 50, "KeyN": 49,
    "KeyO": 24, "KeyP": 25, "KeyQ": 16, "KeyR": 19, "KeyS": 31, "KeyT": 20, "KeyU": 22,
    "KeyV": 47, "KeyW": 17, "KeyX": 45, "KeyY": 21, "KeyZ": 44,
    # functional keys
    "AltLeft": 56, "AltRight": 100, "Backspace": 14, "CapsLock": 58, "ContextMenu": 127,
    "ControlLeft": 29, "ControlRight": 97, "Enter": 28, "MetaLeft": 125, "MetaRight": 126,
    "OSLeft": 125, "OSRight": 126, "ShiftLeft": 42, "ShiftRight": 54, "Space": 57, "Tab": 15,
    "Convert": 92, "KanaMode": 93, "Lang1": 122, "Lang2": 123, "Lang3": 90, "Lang4": 91,
    "Lang5": 85, "NonConvert": 94, "Hiragana": 91, "Katakana": 90,
    # control pad and arrows
    "Delete": 111, "End": 107, "Help": 138, "Home": 102, "Insert": 110, "PageDown": 109,
    "PageUp": 104, "ArrowDown": 108, "ArrowLeft": 105, "ArrowRight": 106, "ArrowUp": 103,
    # numpad
    "NumLock": 69, "Numpad0": 82, "Numpad1": 79, "Numpad2": 80, "Numpad3": 81, "Numpad4": 75,
    "Numpad5": 76, "Numpad6": 77, "Numpad7": 71, "Numpad8": 72, "Numpad9": 73, "NumpadAdd": 78,
    "NumpadComma": 121, "NumpadDecimal": 83, "NumpadDivide": 98, "NumpadEnter": 96,
    "NumpadEqual": 117, "NumpadMultiply": 55, "NumpadParenLeft": 179, "NumpadParenRight": 180,
    "NumpadSubtract": 74,
    # function keys
    "Escape": 1, "F1": 59, "F2": 60, "F3": 61, "F4": 62, "F5": 63, "F6": 64, "F7": 65, "F8": 66,
    "F9": 67, "F10": 68, "F11": 87, "F12": 88,
    **{f"F{n}": 183 + n - 13 for n in range(13, 25)},
    "PrintScreen": 99, "ScrollLock": 70, "Pause": 119,
    # media and browser keys
    "BrowserBack": 158, "BrowserFavorites": 156, "BrowserForward": 159, "BrowserHome": 172,
    "BrowserRefresh": 173, "BrowserSearch": 217, "BrowserStop": 128, "Eject": 161,
    "LaunchApp1": 144, "LaunchApp2": 140, "LaunchMail": 155, "MediaPlayPause": 164,
    "MediaSelect": 171, "MediaStop": 166, "MediaTrackNext": 163, "MediaTrackPrevious": 165,
    "MediaPlay": 200, "MediaPause": 201, "MediaRecord": 167, "MediaRewind": 168,
    "MediaFastForward": 208, "Power": 116, "Sleep": 142, "WakeUp": 143,
    "AudioVolumeDown": 114, "AudioVolumeMute": 113, "AudioVolumeUp": 115,
    "VolumeDown": 114, "VolumeMute": 113, "VolumeUp": 115,
    "BrightnessDown": 224, "BrightnessUp": 225,
    # legacy editing keys
    "Again": 129, "Copy": 133, "Cut": 137, "Find": 136, "Open": 134, "Paste": 135, "Props": 130,
    "Select": 132, "Undo": 131,
}

# X keycodes on servers with xfree86 keycodes (Xorg without input drivers, rules "base") where
# they differ from evdev + 8; keycodes up to 96 are the same in both.
XFREE86_KEYCODES: dict[str, int] = {
    "ControlRight": 109, "AltRight": 113, "MetaLeft": 115, "MetaRight": 116, "OSLeft": 115,
    "OSRight": 116, "ContextMenu": 117, "PrintScreen": 111, "Pause": 110, "Insert": 106,
    "Home": 97, "PageUp": 99, "Delete": 107, "End": 103, "PageDown": 105, "ArrowUp": 98,
    "ArrowLeft": 100, "ArrowDown": 104, "ArrowRight": 102, "NumpadDivide": 112,
    "NumpadEnter": 108, "NumpadEqual": 126, "NumpadComma": 123, "F13": 118, "F14": 119,
    "F15": 120, "F16": 121, "F17": 122, "KanaMode": 208, "IntlRo": 211, "Convert": 129,
    "NonConvert": 131, "IntlYen": 133,
}

# KeyboardEvent.code -> keysyms of keys that type no character, best first: the physical key
# found by what it is, on any keycode set. Numpad keys list both levels (KP_Home, KP_7).
CODE_KEYSYMS: dict[str, tuple[int, ...]] = {
    "Escape": _keysyms("Escape"), "Backspace": _keysyms("BackSpace"), "Tab": _keysyms("Tab"),
    "Enter": _keysyms("Return"), "Space": _keysyms("space"), "CapsLock": _keysyms("Caps_Lock"),
    "ShiftLeft": _keysyms("Shift_L"), "ShiftRight": _keysyms("Shift_R"),
    "ControlLeft": _keysyms("Control_L"), "ControlRight": _keysyms("Control_R"),
    "AltLeft": _keysyms("Alt_L"), "AltRight": _keysyms("Alt_R", "ISO_Level3_Shift"),
    "MetaLeft": _keysyms("Super_L"), "MetaRight": _keysyms("Super_R"),
    "OSLeft": _keysyms("Super_L"), "OSRight": _keysyms("Super_R"),
    "ContextMenu": _keysyms("Menu"), "PrintScreen": _keysyms("Print"),
    "ScrollLock": _keysyms("Scroll_Lock"), "Pause": _keysyms("Pause"),
    "Insert": _keysyms("Insert"), "Delete": _keysyms("Delete"), "Home": _keysyms("Home"),
    "End": _keysyms("End"), "PageUp": _keysyms("Prior"), "PageDown": _keysyms("Next"),
    "ArrowLeft": _keysyms("Left"), "ArrowRight": _keysyms("Right"), "ArrowUp": _keysyms("Up"),
    "ArrowDown": _keysyms("Down"), "Help": _keysyms("Help"),
    **{f"F{n}": _keysyms(f"F{n}") for n in range(1, 25)},
    "NumLock": _keysyms("Num_Lock"),
    "Numpad0": _keysyms("KP_Insert", "KP_0"), "Numpad1": _keysyms("KP_End", "KP_1"),
    "Numpad2": _keysyms("KP_Down", "KP_2"), "Numpad3": _keysyms("KP_Next", "KP_3"),
    "Numpad4": _keysyms("KP_Left", "KP_4"), "Numpad5": _keysyms("KP_Begin", "KP_5"),
    "Numpad6": _keysyms("KP_Right", "KP_6"), "Numpad7": _keysyms("KP_Home", "KP_7"),
    "Numpad8": _keysyms("KP_Up", "KP_8"), "Numpad9": _keysyms("KP_Prior", "KP_9"),
    "NumpadDecimal": _keysyms("KP_Delete", "KP_Decimal"), "NumpadAdd": _keysyms("KP_Add"),
    "NumpadSubtract": _keysyms("KP_Subtract"), "NumpadMultiply": _keysyms("KP_Multiply"),
    "NumpadDivide": _keysyms("KP_Divide"), "NumpadEnter": _keysyms("KP_Enter"),
    "NumpadEqual": _keysyms("KP_Equal"), "NumpadComma": _keysyms("KP_Separator"),
    "Convert": _keysyms("Henkan"), "NonConvert": _keysyms("Muhenkan"),
    "KanaMode": _keysyms("Hiragana_Katakana"), "Lang1": _keysyms("Hangul"),
    "Lang2": _keysyms("Hangul_Hanja"), "Lang3": _keysyms("Katakana"),
    "Lang4": _keysyms("Hiragana"), "Lang5": _keysyms("Zenkaku_Hankaku"),
    "Katakana": _keysyms("Katakana"), "Hiragana": _keysyms("Hiragana"),
    "AudioVolumeMute": _keysyms("XF86AudioMute"), "VolumeMute": _keysyms("XF86AudioMute"),
    "AudioVolumeDown": _keysyms("XF86AudioLowerVolume"),
    "VolumeDown": _keysyms("XF86AudioLowerVolume"),
    "AudioVolumeUp": _keysyms("XF86AudioRaiseVolume"),
    "VolumeUp": _keysyms("XF86AudioRaiseVolume"),
    "MediaPlayPause": _keysyms("XF86AudioPlay"), "MediaPlay": _keysyms("XF86AudioPlay"),
    "MediaPause": _keysyms("XF86AudioPause"), "MediaStop": _keysyms("XF86AudioStop"),
    "MediaTrackNext": _keysyms("XF86AudioNext"), "MediaTrackPrevious": _keysyms("XF86AudioPrev"),
    "MediaRecord": _keysyms("XF86AudioRecord"), "MediaRewind": _keysyms("XF86AudioRewind"),
    "MediaFastForward": _keysyms("XF86AudioForward"),
    "BrowserBack": _keysyms("XF86Back"), "BrowserForward": _keysyms("XF86Forward"),
    "BrowserRefresh": _keysyms("XF86Reload"), "BrowserStop": _keysyms("XF86Stop"),
    "BrowserSearch": _keysyms("XF86Search"), "BrowserFavorites": _keysyms("XF86Favorites"),
    "BrowserHome": _keysyms("XF86HomePage"), "LaunchMail": _keysyms("XF86Mail"),
    "LaunchApp1": _keysyms("XF86Explorer"), "LaunchApp2": _keysyms("XF86Calculator"),
    "Eject": _keysyms("XF86Eject"), "Power": _keysyms("XF86PowerOff"),
    "Sleep": _keysyms("XF86Sleep"), "WakeUp": _keysyms("XF86WakeUp"),
    "BrightnessDown": _keysyms("XF86MonBrightnessDown"),
    "BrightnessUp": _keysyms("XF86MonBrightnessUp"),
    "Again": _keysyms("Redo"), "Undo": _keysyms("Undo"), "Find": _keysyms("Find"),
    "Select": _keysyms("Select"), "Copy": _keysyms("XF86Copy"), "Cut": _keysyms("XF86Cut"),
    "Paste": _keysyms("XF86Paste"), "Open": _keysyms("XF86Open"),
}

# KeyboardEvent.key names of keys that type no character -> X keysyms, best first.
KEY_KEYSYMS: dict[str, tuple[int, ...]] = {
    "Enter": _keysyms("Return"), "Tab": _keysyms("Tab"), "Backspace": _keysyms("BackSpace"),
    "Escape": _keysyms("Escape"), "Esc": _keysyms("Escape"), "Delete": _keysyms("Delete"),
    "Del": _keysyms("Delete"), "Insert": _keysyms("Insert"), "Home": _keysyms("Home"),
    "End": _keysyms("End"), "PageUp": _keysyms("Prior"), "PageDown": _keysyms("Next"),
    "ArrowLeft": _keysyms("Left"), "ArrowRight": _keysyms("Right"), "ArrowUp": _keysyms("Up"),
    "ArrowDown": _keysyms("Down"), "Left": _keysyms("Left"), "Right": _keysyms("Right"),
    "Up": _keysyms("Up"), "Down": _keysyms("Down"),
    **{f"F{n}": _keysyms(f"F{n}") for n in range(1, 25)},
    "PrintScreen": _keysyms("Print"), "Pause": _keysyms("Pause"),
    "ContextMenu": _keysyms("Menu"), "Apps": _keysyms("Menu"), "NumLock": _keysyms("Num_Lock"),
    "ScrollLock": _keysyms("Scroll_Lock"), "Scroll": _keysyms("Scroll_Lock"),
    "Clear": _keysyms("Clear"), "Help": _keysyms("Help"), "Undo": _keysyms("Undo"),
    "Redo": _keysyms("Redo"), "Find": _keysyms("Find"), "Select": _keysyms("Select"),
    "Cancel": _keysyms("Cancel"), "Execute": _keysyms("Execute"),
    "Copy": _keysyms("XF86Copy"), "Cut": _keysyms("XF86Cut"), "Paste": _keysyms("XF86Paste"),
    "Open": _keysyms("XF86Open"), "Close": _keysyms("XF86Close"), "Save": _keysyms("XF86Save"),
    "Convert": _keysyms("Henkan"), "NonConvert": _keysyms("Muhenkan"),
    "Hiragana": _keysyms("Hiragana"), "Katakana": _keysyms("Katakana"),
    "HiraganaKatakana": _keysyms("Hiragana_Katakana"), "Zenkaku": _keysyms("Zenkaku"),
    "Hankaku": _keysyms("Hankaku"), "ZenkakuHankaku": _keysyms("Zenkaku_Hankaku"),
    "Romaji": _keysyms("Romaji"), "KanjiMode": _keysyms("Kanji"),
    "HangulMode": _keysyms("Hangul"), "HanjaMode": _keysyms("Hangul_Hanja"),
    "Eisu": _keysyms("Eisu_toggle"),
    "AudioVolumeMute": _keysyms("XF86AudioMute"),
    "AudioVolumeDown": _keysyms("XF86AudioLowerVolume"),
    "AudioVolumeUp": _keysyms("XF86AudioRaiseVolume"),
    "MediaPlayPause": _keysyms("XF86AudioPlay"), "MediaPlay": _keysyms("XF86AudioPlay"),
    "MediaPause": _keysyms("XF86AudioPause"), "MediaStop": _keysyms("XF86AudioStop"),
    "MediaTrackNext": _keysyms("XF86AudioNext"), "MediaTrackPrevious": _keysyms("XF86AudioPrev"),
    "MediaRecord": _keysyms("XF86AudioRecord"), "MediaRewind": _keysyms("XF86AudioRewind"),
    "MediaFastForward": _keysyms("XF86AudioForward"),
    "BrowserBack": _keysyms("XF86Back"), "BrowserForward": _keysyms("XF86Forward"),
    "BrowserRefresh": _keysyms("XF86Reload"), "BrowserStop": _keysyms("XF86Stop"),
    "BrowserSearch": _keysyms("XF86Search"), "BrowserFavorites": _keysyms("XF86Favorites"),
    "BrowserHome": _keysyms("XF86HomePage"), "LaunchMail": _keysyms("XF86Mail"),
    "LaunchApplication1": _keysyms("XF86MyComputer"),
    "LaunchApplication2": _keysyms("XF86Calculator"),
    "LaunchCalculator": _keysyms("XF86Calculator"),
    "Eject": _keysyms("XF86Eject"), "Power": _keysyms("XF86PowerOff"),
    "PowerOff": _keysyms("XF86PowerOff"), "Standby": _keysyms("XF86Sleep"),
    "WakeUp": _keysyms("XF86WakeUp"), "BrightnessDown": _keysyms("XF86MonBrightnessDown"),
    "BrightnessUp": _keysyms("XF86MonBrightnessUp"),
}


@dataclass(frozen=True)
class ModifierKey:
    """A modifier key: its snapshot name and the host keysyms that can press it, best first."""

    name: str
    keysyms: tuple[int, ...]


_SIDES = {
    "Shift": (_keysyms("Shift_L", "Shift_R"), _keysyms("Shift_R", "Shift_L")),
    "Control": (_keysyms("Control_L", "Control_R"), _keysyms("Control_R", "Control_L")),
    "Alt": (_keysyms("Alt_L", "Alt_R", "Meta_L"), _keysyms("Alt_R", "Alt_L", "Meta_R")),
    "Meta": (_keysyms("Super_L", "Super_R", "Meta_L"), _keysyms("Super_R", "Super_L", "Meta_R")),
}
_ALTGRAPH = ModifierKey("AltGraph", _keysyms("ISO_Level3_Shift", "Mode_switch"))
_CAPSLOCK = ModifierKey("CapsLock", _keysyms("Caps_Lock"))
# KeyboardEvent.key -> modifier; "OS"/"Super"/"Win" are what older browsers call Meta.
MODIFIER_KEY_NAMES = {"Shift": "Shift", "Control": "Control", "Alt": "Alt", "Meta": "Meta",
                      "OS": "Meta", "Super": "Meta", "Win": "Meta"}
MODIFIER_CODES = {
    "ShiftLeft": "Shift", "ShiftRight": "Shift", "ControlLeft": "Control",
    "ControlRight": "Control", "AltLeft": "Alt", "AltRight": "Alt", "MetaLeft": "Meta",
    "MetaRight": "Meta", "OSLeft": "Meta", "OSRight": "Meta",
}


def modifier_key(code: str, key: str) -> ModifierKey | None:
    """The modifier a key event is, by ``key`` (the viewer's layout decides), else by ``code``."""
    if key == "AltGraph":
        return _ALTGRAPH
    if key == "CapsLock" or (code == "CapsLock" and key not in MODIFIER_KEY_NAMES):
        return _CAPSLOCK
    name = MODIFIER_KEY_NAMES.get(key) or MODIFIER_CODES.get(code)
    if name is None:
        return None
    left, right = _SIDES[name]
    return ModifierKey(name, right if code.endswith("Right") else left)


# --- characters -----------------------------------------------------------------------------------


def _legacy_char_keysyms() -> dict[str, tuple[int, ...]]:
    """character -> its named (pre-Unicode) keysyms, from pynput's keysymdef table.

    Loaded from its file: importing ``pynput`` needs a display. Dead keys are left out (pynput
    lists them with their combining character) and so are keypad keysyms.
    """
    spec = importlib.util.find_spec("pynput")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / "_util" / "xorg_keysyms.py"
    module_spec = importlib.util.spec_from_file_location("_keyboard_pynput_keysyms", path)
    if module_spec is None or module_spec.loader is None:
        return {}
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    table: dict[str, set[int]] = {}
    for name, (value, char) in module.SYMBOLS.items():
        if char and not name.startswith(("dead_", "KP_")) and value < UNICODE_KEYSYM_BASE:
            table.setdefault(char, set()).add(value)
    return {char: tuple(sorted(values)) for char, values in table.items()}


LEGACY_CHAR_KEYSYMS = _legacy_char_keysyms()
TEXT_CONTROLS = {"\n": keysym("Return"), "\t": keysym("Tab")}


def printable_char(key: str) -> str | None:
    """``key`` as one printable character (NFC-composed), or None if it is not one."""
    if len(key) != 1:
        key = unicodedata.normalize("NFC", key)
        if len(key) != 1:
            return None
    if unicodedata.category(key) in ("Cc", "Cs"):  # control characters, lone surrogates
        return None
    return key


def char_keysyms(char: str) -> tuple[int, ...]:
    """Keysyms that type ``char``, the one to borrow a keycode with first.

    Latin-1 keysyms equal the code point; others are the named keysym when X has one (EuroSign
    for "€", Cyrillic_zhe for "ж") and the Unicode keysym 0x01000000 + code point.
    """
    point = ord(char)
    if 0x20 <= point <= 0x7E or 0xA0 <= point <= 0xFF:
        return (point,)
    unicode_keysym = UNICODE_KEYSYM_BASE + point
    return (*LEGACY_CHAR_KEYSYMS.get(char, ()), unicode_keysym)


# --- what a key-down asks for ---------------------------------------------------------------------

CHAR = "char"
SHORTCUT = "shortcut"
NAMED = "named"
MODIFIER = "modifier"
PHYSICAL = "physical"


@dataclass(frozen=True)
class KeyAction:
    """What a key-down asks for, before the host keymap is consulted.

    ``keysyms``: candidates, best first (for PHYSICAL, the key's own keysyms, may be empty);
    ``char``: the character for CHAR; ``modifier``: the snapshot name for MODIFIER.
    """

    kind: str
    keysyms: tuple[int, ...] = ()
    char: str | None = None
    modifier: str | None = None


def plan_key_down(code: str, key: str, mods: frozenset[str]) -> KeyAction | None:
    """The rules of the module docstring, steps 1-7; None for a key to ignore ("Dead")."""
    if key == "Dead":
        return None
    modifier = modifier_key(code, key)
    if modifier is not None:
        return KeyAction(MODIFIER, modifier.keysyms, modifier=modifier.name)
    if code.startswith("Numpad") and code in CODE_KEYSYMS:
        return KeyAction(PHYSICAL, CODE_KEYSYMS[code])
    if key in KEY_KEYSYMS:
        return KeyAction(NAMED, KEY_KEYSYMS[key])
    char = printable_char(key)
    if char is not None:
        if mods & SHORTCUT_MODIFIERS and "AltGraph" not in mods:
            if char.isascii() and char.isalnum():
                return KeyAction(SHORTCUT, (ord(char.lower()),))
            return KeyAction(PHYSICAL, CODE_KEYSYMS.get(code, ()))
        return KeyAction(CHAR, char_keysyms(char), char=char)
    return KeyAction(PHYSICAL, CODE_KEYSYMS.get(code, ()))


# --- the host keymap, pure ------------------------------------------------------------------------

SHIFT_CLASS = "shift"
LEVEL3_CLASS = "level3"
OTHER_CLASS = "other"
_MODIFIER_CLASSES = {
    **dict.fromkeys(_keysyms("Shift_L", "Shift_R"), SHIFT_CLASS),
    **dict.fromkeys(_keysyms("ISO_Level3_Shift"), LEVEL3_CLASS),
    **dict.fromkeys(_keysyms("Control_L", "Control_R", "Alt_L", "Alt_R", "Meta_L", "Meta_R",
                             "Super_L", "Super_R", "Hyper_L", "Hyper_R",
                             "Mode_switch"), OTHER_CLASS),
}


def _column_rank(column: int) -> int:
    return CHAR_COLUMNS.index(column) if column in CHAR_COLUMNS else column + len(CHAR_COLUMNS)


class HostKeymap:
    """The X server's core keyboard mapping, searchable by keysym. No I/O: the injector fetches
    the mapping and calls ``set_keysyms`` when it changes."""

    def __init__(self, min_keycode: int, mapping: Iterable[Iterable[int]],
                 modifier_keycodes: Iterable[int]) -> None:
        self.min_keycode = min_keycode
        self._syms: dict[int, tuple[int, ...]] = {}
        self._index: dict[int, list[tuple[int, int, int]]] = {}  # keysym -> (rank, keycode, col)
        self.width = 0
        for offset, syms in enumerate(mapping):
            self.set_keysyms(min_keycode + offset, syms)
        self.max_keycode = max(self._syms, default=min_keycode)
        self.modifier_keycodes = frozenset(k for k in modifier_keycodes if k)

    def set_keysyms(self, keycode: int, syms: Iterable[int]) -> None:
        new = tuple(syms)
        self.width = max(self.width, len(new))
        for sym in set(self._syms.get(keycode, ())):
            entries = self._index.get(sym, [])
            entries[:] = [e for e in entries if e[1] != keycode]
        self._syms[keycode] = new
        for column, sym in enumerate(new):
            if sym != X.NoSymbol:
                entries = self._index.setdefault(sym, [])
                entries.append((_column_rank(column), keycode, column))
                entries.sort()

    def set_modifier_keycodes(self, keycodes: Iterable[int]) -> None:
        self.modifier_keycodes = frozenset(k for k in keycodes if k)

    def keysyms(self, keycode: int) -> tuple[int, ...]:
        return self._syms.get(keycode, ())

    def find_keycode(self, keysyms: Iterable[int]) -> int | None:
        """The keycode of the first keysym that is on any keycode (lowest column, then keycode)."""
        for sym in keysyms:
            entries = self._index.get(sym)
            if entries:
                return entries[0][1]
        return None

    def find_char(self, keysyms: Iterable[int]) -> tuple[int, int] | None:
        """(keycode, column) typing one of ``keysyms`` from levels 1-4 of the first group, the
        fewest modifiers first; levels 3-4 only when the keymap has ISO_Level3_Shift."""
        usable = CHAR_COLUMNS if self.level3_keycode is not None else CHAR_COLUMNS[:2]
        best: tuple[int, int, int] | None = None
        for sym in keysyms:
            for rank, keycode, column in self._index.get(sym, ()):
                if column in usable and (best is None or (rank, keycode) < best[:2]):
                    best = (rank, keycode, column)
        return (best[1], best[2]) if best else None

    @property
    def shift_keycode(self) -> int | None:
        return self._first_at_column_0(keysym("Shift_L")) or self._first_at_column_0(
            keysym("Shift_R"))

    @property
    def level3_keycode(self) -> int | None:
        return self._first_at_column_0(keysym("ISO_Level3_Shift"))

    def _first_at_column_0(self, sym: int) -> int | None:
        return next((kc for _, kc, col in self._index.get(sym, ()) if col == 0), None)

    def modifier_class(self, keycode: int) -> str | None:
        """SHIFT_CLASS, LEVEL3_CLASS, OTHER_CLASS (Control, Alt, Super...) or None (locks, keys)."""
        syms = self._syms.get(keycode, ())
        return _MODIFIER_CLASSES.get(syms[0]) if syms else None

    def is_case_pair(self, keycode: int) -> bool:
        """True when levels 1 and 2 are a letter's lower and upper case (Caps Lock affects it)."""
        syms = self._syms.get(keycode, ())
        if len(syms) < 2:
            return False
        lower, upper = (_keysym_char(s) for s in syms[:2])
        return bool(lower and upper and lower != upper and lower.upper() == upper)

    @property
    def keycode_set(self) -> str:
        """EVDEV or XFREE86, told apart by where the Left arrow is (113 or 100)."""
        return XFREE86 if self._first_at_column_0(keysym("Left")) == 100 else EVDEV

    def spare_keycodes(self) -> list[int]:
        """Keycodes with no symbols that are no modifier: free to borrow."""
        return [kc for kc, syms in sorted(self._syms.items())
                if not any(syms) and kc not in self.modifier_keycodes]

    def physical_keycode(self, code: str) -> int | None:
        """The keycode of the physical key ``code`` (see the module docstring), or None."""
        found = self.find_keycode(CODE_KEYSYMS.get(code, ()))
        if found is not None:
            return found
        evdev = CODE_TO_EVDEV.get(code)
        if evdev is None:
            return None
        keycode: int | None = evdev + EVDEV_TO_X_OFFSET
        if self.keycode_set == XFREE86:
            keycode = XFREE86_KEYCODES.get(
                code, keycode if keycode <= XFREE86_SAME_UP_TO else None)
        if keycode is None or not self.min_keycode <= keycode <= self.max_keycode:
            return None
        return keycode


_CHAR_BY_KEYSYM = {sym: char for char, syms in LEGACY_CHAR_KEYSYMS.items() for sym in syms}


def _keysym_char(sym: int) -> str | None:
    if 0x20 <= sym <= 0x7E or 0xA0 <= sym <= 0xFF:
        return chr(sym)
    if sym > UNICODE_KEYSYM_BASE:
        return chr(sym - UNICODE_KEYSYM_BASE) if sym - UNICODE_KEYSYM_BASE <= 0x10FFFF else None
    return _CHAR_BY_KEYSYM.get(sym)


# --- the injector ---------------------------------------------------------------------------------


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

    def type_text(self, text: str) -> int:
        """Type ``text`` character by character (press and release); the number typed."""
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
        if action.kind == CHAR:
            assert action.char is not None
            found = self._char_keycode(action.char)
            if found is not None:
                keycode, column = found
                self._type_at(keycode, column, self._host_caps_lock, release=False)
                self._held[code] = _Held(keycode, None)
                return True
            keycode = self._keymap.physical_keycode(code)
        elif action.kind == MODIFIER:
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
            keycode = found[0]
            if keycode in self._borrowed:
                self._borrowed.move_to_end(keycode)
            return found
        keycode = self._borrow(syms[0])
        return (keycode, 0) if keycode is not None else None

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
            if kind == SHIFT_CLASS and need_shift:
                have_shift = True
            elif kind == LEVEL3_CLASS and need_level3:
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
        if spare and len(self._borrowed) < BORROW_LIMIT:
            keycode = spare[0]
        else:
            keycode = next((kc for kc in self._borrowed if kc not in held), None)
            if keycode is None:
                return None
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
