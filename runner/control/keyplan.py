"""What a browser key event means on the X server, pure: the plan for a key-down (rules 1-7 of
``runner.control.keyboard``'s docstring) and the host keymap searched by keysym. No I/O: the
injector fetches the keymap and hands it in.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from Xlib import X

from runner.control.keysyms import char_keysyms, keysym, keysym_char
from runner.control.keysyms import keysyms as _keysyms
from runner.control.keytables import (
    ALTGRAPH,
    CAPSLOCK,
    CODE_KEYSYMS,
    CODE_TO_EVDEV,
    KEY_KEYSYMS,
    MODIFIER_CODES,
    MODIFIER_KEY_NAMES,
    SIDES,
    XFREE86_KEYCODES,
    ModifierKey,
)

MODIFIERS = ("Shift", "Control", "Alt", "Meta", "AltGraph", "CapsLock")  # the snapshot names
SHORTCUT_MODIFIERS = frozenset({"Control", "Alt", "Meta"})
LOCK_MODIFIERS = frozenset({"CapsLock"})  # locks: in the snapshot, never "held"

EVDEV_TO_X_OFFSET = 8
XFREE86_SAME_UP_TO = 96  # xfree86 and evdev keycodes agree from 9 to 96

# Core keymap columns: group 1 levels 1, 2 are columns 0, 1; columns 2, 3 are group 2; group 1
# levels 3, 4 (AltGr) are columns 4, 5. Characters are typed from these four.
CHAR_COLUMNS = (0, 1, 4, 5)
SHIFT_COLUMNS = frozenset({1, 5})
LEVEL3_COLUMNS = frozenset({4, 5})


class KeycodeSet(Enum):
    """Which keycodes a server uses: evdev + 8 (Xorg with libinput/evdev, Xvfb) or xfree86."""

    EVDEV = "evdev"
    XFREE86 = "xfree86"


class KeyActionKind(Enum):
    CHAR = "char"            # rule 5: type this character
    SHORTCUT = "shortcut"    # rule 6: Control/Alt/Meta + a letter or digit
    NAMED = "named"          # rule 4: a named key (Enter, F5...)
    MODIFIER = "modifier"    # rule 2
    PHYSICAL = "physical"    # rules 3 and 7: the physical key


class ModifierClass(Enum):
    """What a held modifier keycode does to the level a key types."""

    SHIFT = "shift"
    LEVEL3 = "level3"
    OTHER = "other"  # Control, Alt, Super...


def modifier_key(code: str, key: str) -> ModifierKey | None:
    """The modifier a key event is, by ``key`` (the viewer's layout decides), else by ``code``."""
    if key == "AltGraph":
        return ALTGRAPH
    if key == "CapsLock" or (code == "CapsLock" and key not in MODIFIER_KEY_NAMES):
        return CAPSLOCK
    name = MODIFIER_KEY_NAMES.get(key) or MODIFIER_CODES.get(code)
    if name is None:
        return None
    left, right = SIDES[name]
    return ModifierKey(name, right if code.endswith("Right") else left)



def printable_char(key: str) -> str | None:
    """``key`` as one printable character (NFC-composed), or None if it is not one."""
    if len(key) != 1:
        key = unicodedata.normalize("NFC", key)
        if len(key) != 1:
            return None
    if unicodedata.category(key) in ("Cc", "Cs"):  # control characters, lone surrogates
        return None
    return key



@dataclass(frozen=True)
class KeyAction:
    """What a key-down asks for, before the host keymap is consulted.

    ``keysyms``: candidates, best first (for ``PHYSICAL``, the key's own keysyms, may be empty);
    ``char``: the character for CHAR; ``modifier``: the snapshot name for MODIFIER.
    """

    kind: KeyActionKind
    keysyms: tuple[int, ...] = ()
    char: str | None = None
    modifier: str | None = None


def plan_key_down(code: str, key: str, mods: frozenset[str]) -> KeyAction | None:
    """The rules of the module docstring, steps 1-7; None for a key to ignore ("Dead")."""
    if key == "Dead":
        return None
    modifier = modifier_key(code, key)
    if modifier is not None:
        return KeyAction(KeyActionKind.MODIFIER, modifier.keysyms, modifier=modifier.name)
    if code.startswith("Numpad") and code in CODE_KEYSYMS:
        return KeyAction(KeyActionKind.PHYSICAL, CODE_KEYSYMS[code])
    if key in KEY_KEYSYMS:
        return KeyAction(KeyActionKind.NAMED, KEY_KEYSYMS[key])
    char = printable_char(key)
    if char is not None:
        if mods & SHORTCUT_MODIFIERS and "AltGraph" not in mods:
            if char.isascii() and char.isalnum():
                return KeyAction(KeyActionKind.SHORTCUT, (ord(char.lower()),))
            return KeyAction(KeyActionKind.PHYSICAL, CODE_KEYSYMS.get(code, ()))
        return KeyAction(KeyActionKind.CHAR, char_keysyms(char), char=char)
    return KeyAction(KeyActionKind.PHYSICAL, CODE_KEYSYMS.get(code, ()))



_MODIFIER_CLASSES = {
    **dict.fromkeys(_keysyms("Shift_L", "Shift_R"), ModifierClass.SHIFT),
    **dict.fromkeys(_keysyms("ISO_Level3_Shift"), ModifierClass.LEVEL3),
    **dict.fromkeys(_keysyms("Control_L", "Control_R", "Alt_L", "Alt_R", "Meta_L", "Meta_R",
                             "Super_L", "Super_R", "Hyper_L", "Hyper_R",
                             "Mode_switch"), ModifierClass.OTHER),
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

    def modifier_class(self, keycode: int) -> ModifierClass | None:
        """The class of a modifier keycode, None for locks and other keys."""
        syms = self._syms.get(keycode, ())
        return _MODIFIER_CLASSES.get(syms[0]) if syms else None

    def is_case_pair(self, keycode: int) -> bool:
        """True when levels 1 and 2 are a letter's lower and upper case (Caps Lock affects it)."""
        syms = self._syms.get(keycode, ())
        if len(syms) < 2:
            return False
        lower, upper = (keysym_char(s) for s in syms[:2])
        return bool(lower and upper and lower != upper and lower.upper() == upper)

    @property
    def keycode_set(self) -> KeycodeSet:
        """Told apart by where the Left arrow is (113 or 100)."""
        return KeycodeSet.XFREE86 if self._first_at_column_0(keysym("Left")) == 100 else KeycodeSet.EVDEV

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
        if self.keycode_set is KeycodeSet.XFREE86:
            same = evdev + EVDEV_TO_X_OFFSET <= XFREE86_SAME_UP_TO
            keycode = XFREE86_KEYCODES.get(code, keycode if same else None)
        if keycode is None or not self.min_keycode <= keycode <= self.max_keycode:
            return None
        return keycode

