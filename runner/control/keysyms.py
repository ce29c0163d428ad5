"""X keysyms by name and by character, pure: python-xlib's ``Xlib.XK`` for the names it knows,
X.org's keysymdef.h (``keysym_table``, generated) for the characters and the names it lacks.

One copy for the keyboard injector and the test recorder (scripts/xrecorder.py).
"""

from __future__ import annotations

import importlib

import Xlib.keysymdef
from Xlib import XK, X

from runner.control.keysym_table import CHARS, EXTRA_NAMES

UNICODE_KEYSYM_BASE = 0x0100_0000
UNICODE_MAX = 0x10FFFF

for _group in Xlib.keysymdef.__all__:
    XK.load_keysym_group(_group)


def keysym(name: str) -> int:
    """The X keysym called ``name`` (X's spelling: "Return", "XF86AudioMute"); KeyError if none."""
    value = XK.string_to_keysym(name.replace("XF86", "XF86_", 1) if name.startswith("XF86") else name)
    if value == X.NoSymbol:
        value = EXTRA_NAMES.get(name, X.NoSymbol)
    if value == X.NoSymbol:
        raise KeyError(f"unknown keysym name {name!r}")
    return int(value)


def keysyms(*names: str) -> tuple[int, ...]:
    return tuple(keysym(n) for n in names)


def _names() -> dict[int, str]:
    """keysym -> its name: the first one python-xlib's keysymdef modules define (the name
    XKeysymToString gives), else X.org's."""
    names: dict[int, str] = {}
    for group in Xlib.keysymdef.__all__:
        module = importlib.import_module(f"Xlib.keysymdef.{group}")
        for name, value in vars(module).items():
            if name.startswith("XK_") and isinstance(value, int):
                names.setdefault(value, name[3:].replace("XF86_", "XF86", 1))
    for name, value in EXTRA_NAMES.items():
        names.setdefault(value, name)
    return names


_NAMES = _names()
# character -> its named (pre-Unicode) keysyms, keypad keysyms left out (they type digits
# only with Num Lock; the injector presses keypad keys by their physical key).
_KEYPAD = range(0xFF80, 0xFFBE)
LEGACY_CHAR_KEYSYMS: dict[str, tuple[int, ...]] = {}
for _sym, _char in sorted(CHARS.items()):
    if _sym not in _KEYPAD:
        LEGACY_CHAR_KEYSYMS[_char] = (*LEGACY_CHAR_KEYSYMS.get(_char, ()), _sym)


def keysym_name(sym: int) -> str:
    """The keysym's name ("at", "EuroSign"), "U20AC" style for unnamed Unicode keysyms."""
    if sym in _NAMES:
        return _NAMES[sym]
    if sym >= UNICODE_KEYSYM_BASE:
        return f"U{sym - UNICODE_KEYSYM_BASE:04X}"
    return f"0x{sym:x}"


def keysym_char(sym: int) -> str | None:
    """The character a keysym types (Latin-1, Unicode or legacy keysyms), or None."""
    if 0x20 <= sym <= 0x7E or 0xA0 <= sym <= 0xFF:
        return chr(sym)
    if UNICODE_KEYSYM_BASE + 0x20 <= sym <= UNICODE_KEYSYM_BASE + UNICODE_MAX:
        return chr(sym - UNICODE_KEYSYM_BASE)
    return CHARS.get(sym)


def char_keysyms(char: str) -> tuple[int, ...]:
    """Keysyms that type ``char``, the one to borrow a keycode with first.

    Latin-1 keysyms equal the code point; others are the named keysym when X has one (EuroSign
    for "€", Cyrillic_zhe for "ж") and the Unicode keysym 0x01000000 + code point.
    """
    point = ord(char)
    if 0x20 <= point <= 0x7E or 0xA0 <= point <= 0xFF:
        return (point,)
    return (*LEGACY_CHAR_KEYSYMS.get(char, ()), UNICODE_KEYSYM_BASE + point)
