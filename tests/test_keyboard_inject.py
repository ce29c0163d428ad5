"""runner/control/keyboard.py: browser key events become XTEST key presses.

Pure parts (tables, the plan for a key-down, the host keymap search) with literal inputs; the
injector itself checked from the X side with scripts/xrecorder.py, on Xvfb (US keymap) and on
Xorg with the dummy driver switched to a German keymap.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator, Mapping

import pytest
from Xlib import X
from Xlib import display as xdisplay

import xorgdummy
from devstack import ComponentError, Xvfb
from runner.control import keyboard as kbd
from runner.control import keyplan, keytables
from runner.control.keyboard import KeyboardError, KeyboardInjector
from runner.control.keyplan import HostKeymap, KeyActionKind
from runner.control.keysyms import char_keysyms, keysym
from xrecorder import Event, XRecorder

integration = pytest.mark.integration
NONE: frozenset[str] = frozenset()


# --- pure: tables ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "evdev"), [
    ("KeyA", 30), ("KeyZ", 44), ("Digit1", 2), ("Digit0", 11), ("Backquote", 41),
    ("IntlBackslash", 86), ("IntlRo", 89), ("IntlYen", 124), ("Enter", 28), ("Space", 57),
    ("ShiftLeft", 42), ("AltRight", 100), ("MetaLeft", 125), ("ContextMenu", 127),
    ("ArrowLeft", 105), ("ArrowUp", 103), ("PageDown", 109), ("Delete", 111),
    ("NumpadEnter", 96), ("Numpad7", 71), ("NumpadDivide", 98), ("F1", 59), ("F12", 88),
    ("F13", 183), ("F24", 194), ("PrintScreen", 99), ("Pause", 119),
    ("AudioVolumeUp", 115), ("BrowserBack", 158),
])
def test_code_to_evdev(code: str, evdev: int) -> None:
    assert keytables.CODE_TO_EVDEV[code] == evdev


@pytest.mark.parametrize(("key", "name"), [
    ("Enter", "Return"), ("Tab", "Tab"), ("Backspace", "BackSpace"), ("Escape", "Escape"),
    ("ArrowLeft", "Left"), ("PageUp", "Prior"), ("PageDown", "Next"), ("F5", "F5"),
    ("F24", "F24"), ("PrintScreen", "Print"), ("ContextMenu", "Menu"),
    ("ScrollLock", "Scroll_Lock"), ("AudioVolumeUp", "XF86AudioRaiseVolume"),
])
def test_key_name_to_keysym(key: str, name: str) -> None:
    assert keytables.KEY_KEYSYMS[key][0] == keysym(name)


@pytest.mark.parametrize(("char", "keysyms"), [
    ("a", (0x61,)), ("Z", (0x5A,)), (" ", (0x20,)), ("é", (0xE9,)), ("ß", (0xDF,)),
    ("€", (0x20AC, 0x010020AC)),       # EuroSign first, then its Unicode keysym
    ("ж", (0x06D6, 0x01000436)),       # Cyrillic_zhe
    ("λ", (0x07EB, 0x010003BB)),       # Greek_lambda
    ("世", (0x01004E16,)), ("😀", (0x0101F600,)),
])
def test_char_to_keysyms(char: str, keysyms: tuple[int, ...]) -> None:
    assert char_keysyms(char) == keysyms


@pytest.mark.parametrize(("key", "char"), [
    ("a", "a"), (" ", " "), ("e\u0301", "é"), ("Enter", None), ("\x07", None),
    ("\ud800", None), ("", None), ("ab", None),
])
def test_printable_char(key: str, char: str | None) -> None:
    assert keyplan.printable_char(key) == char


# --- pure: what a key-down asks for ---------------------------------------------------------------


@pytest.mark.parametrize(("code", "key", "mods", "kind", "first_keysym"), [
    ("KeyA", "a", NONE, KeyActionKind.CHAR, 0x61),
    ("KeyY", "z", NONE, KeyActionKind.CHAR, 0x7A),                                    # German viewer
    ("KeyQ", "@", frozenset({"AltGraph"}), KeyActionKind.CHAR, 0x40),
    ("KeyQ", "@", frozenset({"Control", "Alt", "AltGraph"}), KeyActionKind.CHAR, 0x40),  # Windows AltGr
    ("KeyY", "z", frozenset({"Control"}), KeyActionKind.SHORTCUT, 0x7A),
    ("KeyA", "A", frozenset({"Control", "Shift"}), KeyActionKind.SHORTCUT, 0x61),
    ("Digit2", "2", frozenset({"Alt"}), KeyActionKind.SHORTCUT, 0x32),
    ("KeyC", "с", frozenset({"Control"}), KeyActionKind.PHYSICAL, None),              # Cyrillic viewer
    ("Enter", "Enter", NONE, KeyActionKind.NAMED, keysym("Return")),
    ("ArrowLeft", "ArrowLeft", frozenset({"Shift"}), KeyActionKind.NAMED, keysym("Left")),
    ("Numpad1", "1", NONE, KeyActionKind.PHYSICAL, keysym("KP_End")),
    ("NumpadEnter", "Enter", NONE, KeyActionKind.PHYSICAL, keysym("KP_Enter")),
    ("ShiftRight", "Shift", frozenset({"Shift"}), KeyActionKind.MODIFIER, keysym("Shift_R")),
    ("AltRight", "AltGraph", frozenset({"AltGraph"}), KeyActionKind.MODIFIER, keysym("ISO_Level3_Shift")),
    ("AltRight", "Alt", frozenset({"Alt"}), KeyActionKind.MODIFIER, keysym("Alt_R")),
    ("CapsLock", "CapsLock", NONE, KeyActionKind.MODIFIER, keysym("Caps_Lock")),
    ("CapsLock", "Control", frozenset({"Control"}), KeyActionKind.MODIFIER, keysym("Control_L")),  # remapped
    ("KeyA", "Unidentified", NONE, KeyActionKind.PHYSICAL, None),
    ("Home", "Process", NONE, KeyActionKind.PHYSICAL, keysym("Home")),
])
def test_plan_key_down(code: str, key: str, mods: frozenset[str], kind: KeyActionKind,
                       first_keysym: int | None) -> None:
    action = keyplan.plan_key_down(code, key, mods)

    assert action is not None
    assert action.kind == kind
    assert (action.keysyms[0] if action.keysyms else None) == first_keysym


def test_dead_keys_are_ignored() -> None:
    assert keyplan.plan_key_down("BracketLeft", "Dead", NONE) is None


# --- pure: the host keymap ------------------------------------------------------------------------


def keymap(keys: Mapping[int, Iterable[str]], modifier_keycodes: Iterable[int] = ()) -> HostKeymap:
    """A keymap for keycodes 8..255 with ``keys`` (keycode -> keysym names), 7 columns."""
    rows = []
    for keycode in range(8, 256):
        syms = [keysym(n) if n else X.NoSymbol for n in keys.get(keycode, ())]
        rows.append(syms + [X.NoSymbol] * (7 - len(syms)))
    return HostKeymap(8, rows, modifier_keycodes)


US_LIKE = {38: ("a", "A", "a", "A"), 50: ("Shift_L",), 92: ("ISO_Level3_Shift",),
           113: ("Left",), 51: ("backslash", "bar"), 94: ("less", "greater", "", "", "bar"),
           24: ("q", "Q", "q", "Q", "at", "Greek_OMEGA")}


def test_find_char_prefers_the_fewest_modifiers() -> None:
    assert keymap(US_LIKE).find_char([keysym("bar")]) == (51, 1)


def test_find_char_uses_the_altgr_level_when_iso_level3_shift_exists() -> None:
    assert keymap(US_LIKE).find_char([keysym("at")]) == (24, 4)
    without_level3 = {k: v for k, v in US_LIKE.items() if k != 92}
    assert keymap(without_level3).find_char([keysym("at")]) is None


def test_spare_keycodes_have_no_symbols_and_are_no_modifiers() -> None:
    spare = keymap(US_LIKE, modifier_keycodes=[8, 50]).spare_keycodes()

    assert 8 not in spare and 50 not in spare and 38 not in spare
    assert 9 in spare and 255 in spare


def test_a_letter_key_is_a_case_pair() -> None:
    host = keymap(US_LIKE)

    assert host.is_case_pair(38)
    assert not host.is_case_pair(51)


def test_physical_keys_on_evdev_keycodes() -> None:
    host = keymap(US_LIKE)

    assert host.keycode_set == keyplan.KeycodeSet.EVDEV
    assert host.physical_keycode("KeyA") == 38
    assert host.physical_keycode("IntlRo") == 97
    assert host.physical_keycode("ArrowLeft") == 113
    assert host.physical_keycode("NoSuchCode") is None


def test_physical_keys_on_xfree86_keycodes() -> None:
    host = keymap({38: ("a", "A"), 100: ("Left",)})  # an Xorg without input drivers

    assert host.keycode_set == keyplan.KeycodeSet.XFREE86
    assert host.physical_keycode("KeyA") == 38
    assert host.physical_keycode("ArrowLeft") == 100
    assert host.physical_keycode("ArrowRight") == 102  # not in this keymap: by table
    assert host.physical_keycode("IntlRo") == 211


# --- X servers and the rig ------------------------------------------------------------------------


def fail_without(component: str, exc: Exception) -> None:
    pytest.fail(f"{component} is required for this test: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def us_screen() -> Iterator[Xvfb]:
    try:
        server = Xvfb(1024, 768)
    except ComponentError as exc:
        fail_without("Xvfb", exc)
    with server:
        yield server


@pytest.fixture(scope="module")
def german_screen() -> Iterator[xorgdummy.XorgDummy]:
    try:
        server = xorgdummy.XorgDummy(monitors=[(1024, 768, 0, 0)], xkb_layout="de")
    except ComponentError as exc:
        fail_without("Xorg with the dummy driver", exc)
    with server:
        yield server


class Rig:
    """An injector and a recorder on one display; ``down``/``up``/``tap`` take modifier names."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.recorder = XRecorder(display)
        self.recorder.wait_ready()
        self.kb = KeyboardInjector(display)

    def down(self, code: str, key: str, *mods: str) -> bool:
        return self.kb.key(code, key, True, frozenset(mods))

    def up(self, code: str, key: str, *mods: str) -> bool:
        return self.kb.key(code, key, False, frozenset(mods))

    def tap(self, code: str, key: str, *mods: str) -> None:
        assert self.down(code, key, *mods)
        assert self.up(code, key, *mods)

    def settle(self) -> None:
        """Return once the recorder has every event of what was injected so far."""
        self.kb.sync()  # the server has processed our requests
        self.recorder.settle()

    def keys(self, until: str) -> list[tuple[str, str]]:
        """("+"/"-", keysym name) of every key event, once a release of ``until`` came."""
        self.recorder.wait_for(lambda e: e["type"] == "key_release" and e["keysym_name"] == until)
        self.settle()
        return [("+" if e["type"] == "key_press" else "-", e["keysym_name"])
                for e in self.recorder.events() if e["type"].startswith("key_")]

    def presses(self) -> list[Event]:
        return [e for e in self.recorder.events() if e["type"] == "key_press"]

    def close(self) -> None:
        self.kb.close()
        self.recorder.stop()


@pytest.fixture
def us(us_screen: Xvfb) -> Iterator[Rig]:
    rig = Rig(us_screen.display)
    yield rig
    rig.close()


@pytest.fixture
def de(german_screen: xorgdummy.XorgDummy) -> Iterator[Rig]:
    rig = Rig(german_screen.display)
    yield rig
    rig.close()


def keycodes_down(display: str) -> set[int]:
    conn = xdisplay.Display(display)
    try:
        bits = conn.query_keymap()
    finally:
        conn.close()
    return {i * 8 + b for i, byte in enumerate(bits) for b in range(8) if byte & (1 << b)}


# --- on Xvfb, US keymap ---------------------------------------------------------------------------


@integration
def test_physical_codes_are_evdev_plus_8_on_xvfb(us_screen: Xvfb) -> None:
    # Where the US keymap puts another keysym on the physical key (inet(evdev) maps F13-F24 to
    # XF86 launch keys, KEY_STOP to Cancel...), the evdev number is still right; skip those.
    other_keysym = {f"F{n}" for n in range(13, 25)} | {
        "NumpadComma", "Lang5", "BrowserStop", "Select"}
    conn = xdisplay.Display(us_screen.display)
    try:
        mapping = conn.get_keyboard_mapping(8, 248)
    finally:
        conn.close()
    wrong = {code: [hex(s) for s in mapping[keytables.CODE_TO_EVDEV[code]][:2]]
             for code, syms in keytables.CODE_KEYSYMS.items() if code not in other_keysym
             and not set(syms) & set(mapping[keytables.CODE_TO_EVDEV[code]])}

    assert wrong == {}


@integration
def test_a_is_typed_with_xtest(us: Rig) -> None:
    us.tap("KeyA", "a")

    assert us.keys(until="a") == [("+", "a"), ("-", "a")]
    assert not any(e["synthetic"] for e in us.presses())


@integration
def test_capital_a_with_the_viewers_shift_held(us: Rig) -> None:
    us.down("ShiftLeft", "Shift", "Shift")
    us.tap("KeyA", "A", "Shift")
    us.up("ShiftLeft", "Shift")

    assert us.keys(until="Shift_L") == [("+", "Shift_L"), ("+", "A"), ("-", "A"), ("-", "Shift_L")]
    assert us.recorder.typed_text() == "A"


@integration
def test_capital_a_without_shift_held_gets_shift_for_the_character(us: Rig) -> None:
    us.tap("KeyA", "A")

    assert us.keys(until="a") == [("+", "Shift_L"), ("+", "A"), ("-", "Shift_L"), ("-", "a")]
    assert us.recorder.typed_text() == "A"


@integration
def test_enter_and_arrow_left_are_their_keysyms(us: Rig) -> None:
    us.tap("Enter", "Enter")
    us.tap("ArrowLeft", "ArrowLeft")

    assert us.keys(until="Left") == [("+", "Return"), ("-", "Return"), ("+", "Left"),
                                     ("-", "Left")]


@integration
def test_e_acute_and_euro_are_typed_on_borrowed_keycodes(us: Rig) -> None:
    us.tap("Quote", "é")
    us.tap("KeyE", "€", "AltGraph")

    keys = us.keys(until="EuroSign")
    assert keys == [("+", "eacute"), ("-", "eacute"), ("+", "EuroSign"), ("-", "EuroSign")]
    assert us.recorder.typed_text() == "é€"
    borrowed = {e["keycode"] for e in us.presses()}
    assert not borrowed & {keytables.CODE_TO_EVDEV["Quote"] + 8, keytables.CODE_TO_EVDEV["KeyE"] + 8}


@integration
def test_ctrl_c_is_a_shortcut(us: Rig) -> None:
    us.down("ControlLeft", "Control", "Control")
    us.tap("KeyC", "c", "Control")
    us.up("ControlLeft", "Control")

    assert us.keys(until="Control_L") == [("+", "Control_L"), ("+", "c"), ("-", "c"),
                                          ("-", "Control_L")]
    c = next(e for e in us.presses() if e["keysym_name"] == "c")
    assert c["state"] & X.ControlMask


@integration
def test_ctrl_c_from_a_cyrillic_layout_uses_the_physical_key(us: Rig) -> None:
    us.down("ControlLeft", "Control", "Control")
    us.tap("KeyC", "с", "Control")
    us.up("ControlLeft", "Control")

    assert ("+", "c") in us.keys(until="Control_L")


@integration
def test_type_text_types_exactly(us: Rig) -> None:
    assert us.kb.type_text("Grüße, 世界!\n") == 11

    us.keys(until="Return")
    assert us.recorder.typed_text() == "Grüße, 世界!\n"


@integration
def test_more_characters_than_spare_keycodes_are_all_typed(us: Rig) -> None:
    text = "".join(chr(0x4E00 + i) for i in range(kbd.BORROW_LIMIT + 8))  # none on a US keymap

    assert us.kb.type_text(text) == len(text)

    us.keys(until=f"U{ord(text[-1]):04X}")
    assert us.recorder.typed_text() == text


@integration
def test_close_releases_what_it_holds(us_screen: Xvfb) -> None:
    kb = KeyboardInjector(us_screen.display)
    kb.key("ShiftLeft", "Shift", True, frozenset({"Shift"}))
    kb.key("KeyA", "A", True, frozenset({"Shift"}))
    kb.close()

    assert keycodes_down(us_screen.display) == set()


@integration
def test_close_gives_borrowed_keycodes_back(us_screen: Xvfb) -> None:
    kb = KeyboardInjector(us_screen.display)
    kb.type_text("ø")
    kb.close()

    conn = xdisplay.Display(us_screen.display)
    try:
        on_keymap = any(keysym("oslash") in syms for syms in conn.get_keyboard_mapping(8, 248))
    finally:
        conn.close()
    assert not on_keymap


@integration
def test_type_text_skips_control_characters(us: Rig) -> None:
    assert us.kb.type_text("a\x07\tb") == 3

    us.keys(until="b")
    assert us.recorder.typed_text() == "a\tb"


@integration
def test_release_all_releases_everything_held(us: Rig) -> None:
    us.down("Quote", "é")  # a borrowed keycode held down
    us.down("ShiftLeft", "Shift", "Shift")
    us.down("ControlLeft", "Control", "Shift", "Control")
    us.down("KeyX", "X", "Shift", "Control")
    assert us.kb.held == {"ShiftLeft", "ControlLeft", "KeyX", "Quote"}

    us.kb.release_all()

    assert us.kb.held == frozenset()
    keys = us.keys(until="eacute")
    released = {name for sign, name in keys if sign == "-"}
    assert {"Shift_L", "Control_L", "eacute"} <= released and released & {"x", "X"}
    assert keycodes_down(us.display) == set()


@integration
def test_key_up_releases_the_keycode_the_key_down_pressed(us: Rig) -> None:
    us.down("ShiftLeft", "Shift", "Shift")
    us.down("Digit2", "@", "Shift")
    us.up("ShiftLeft", "Shift")
    us.up("Digit2", "2")  # the modifiers changed; the key is still the one pressed

    us.keys(until="2")
    at = next(e for e in us.presses() if e["keysym_name"] == "at")
    release = us.recorder.wait_for(lambda e: e["type"] == "key_release" and e["keysym_name"] == "2")
    assert release["keycode"] == at["keycode"]
    assert us.kb.held == frozenset()


@integration
def test_modifiers_the_snapshot_says_are_up_are_released(us: Rig) -> None:
    us.down("ShiftLeft", "Shift", "Shift")
    us.tap("KeyA", "a")  # the Shift key-up was lost

    assert us.keys(until="a") == [("+", "Shift_L"), ("-", "Shift_L"), ("+", "a"), ("-", "a")]
    assert us.kb.held == frozenset()


@integration
def test_a_key_up_for_a_key_we_do_not_hold_is_ignored(us: Rig) -> None:
    assert not us.up("KeyQ", "q")
    us.tap("KeyA", "a")

    assert us.keys(until="a") == [("+", "a"), ("-", "a")]


@integration
def test_auto_repeat_keeps_one_held_key(us: Rig) -> None:
    assert us.down("KeyA", "a")
    assert us.down("KeyA", "a")
    assert us.kb.held == {"KeyA"}

    assert us.up("KeyA", "a")

    assert us.keys(until="a")[-1] == ("-", "a")
    assert us.kb.held == frozenset()
    assert keycodes_down(us.display) == set()


@integration
def test_dead_keys_inject_nothing(us: Rig) -> None:
    assert not us.down("BracketLeft", "Dead")
    us.tap("KeyA", "a")

    assert us.keys(until="a") == [("+", "a"), ("-", "a")]


@integration
@pytest.mark.parametrize(("code", "key", "down", "mods"), [
    (None, "a", True, NONE), ("KeyA", None, True, NONE), ("KeyA", 7, True, NONE),
    ("X" * 1000, "a", True, NONE), ("KeyA", "x" * 1000, True, NONE),
    ("NoSuchCode", "Unidentified", True, NONE), ("NoSuchCode", "\ud800", True, NONE),
    ("NoSuchCode", "a", False, NONE),
])
def test_bad_strings_inject_nothing_and_never_raise(us: Rig, code: object, key: object,
                                                    down: bool, mods: frozenset[str]) -> None:
    assert us.kb.key(code, key, down, mods) is False  # type: ignore[arg-type]


@integration
def test_odd_modifier_snapshots_never_raise(us: Rig) -> None:
    assert us.kb.key("KeyA", "a", True, None) is True  # type: ignore[arg-type]
    assert us.kb.key("KeyA", "a", False, frozenset({3, "Bogus"})) is True  # type: ignore[arg-type]
    assert us.kb.type_text(None) == 0  # type: ignore[arg-type]


@integration
def test_host_caps_lock_does_not_change_the_character() -> None:
    try:
        screen = Xvfb(640, 480)
    except ComponentError as exc:
        fail_without("Xvfb", exc)
    with screen:
        rig = Rig(screen.display)
        try:
            rig.tap("CapsLock", "CapsLock", "CapsLock")
            rig.tap("KeyA", "A", "CapsLock")
            rig.tap("KeyB", "b", "CapsLock")  # the viewer's Caps Lock and the host's disagree
            rig.tap("Quote", "é", "CapsLock")

            rig.keys(until="eacute")
            assert rig.recorder.typed_text() == "Abé"
        finally:
            rig.close()


def test_an_unreachable_display_is_a_keyboard_error() -> None:
    with pytest.raises(KeyboardError, match=":4242"):
        KeyboardInjector(":4242")


@integration
def test_the_injector_follows_a_layout_change_on_the_host() -> None:
    try:
        server = xorgdummy.XorgDummy(monitors=[(1024, 768, 0, 0)])
    except ComponentError as exc:
        fail_without("Xorg with the dummy driver", exc)
    with server:
        rig = Rig(server.display)
        try:
            rig.tap("KeyZ", "z")
            rig.keys(until="z")
            subprocess.run(["setxkbmap", "-display", server.display, "de"], check=True, timeout=10)
            rig.tap("KeyY", "z")
            rig.settle()
        finally:
            rig.close()
    assert [e["keycode"] for e in rig.presses()] == [52, 29]


# --- on Xorg with a German keymap -----------------------------------------------------------------


@integration
def test_german_viewer_z_on_a_german_host(de: Rig) -> None:
    de.tap("KeyY", "z")

    assert de.keys(until="z") == [("+", "z"), ("-", "z")]
    assert de.presses()[0]["keycode"] == 29


@integration
def test_altgr_q_is_at_on_a_german_host(de: Rig) -> None:
    de.down("AltRight", "AltGraph", "AltGraph")
    de.tap("KeyQ", "@", "AltGraph")
    de.up("AltRight", "AltGraph")

    assert de.keys(until="ISO_Level3_Shift") == [
        ("+", "ISO_Level3_Shift"), ("+", "at"), ("-", "at"), ("-", "ISO_Level3_Shift")]
    assert de.recorder.typed_text() == "@"


@integration
def test_windows_altgr_reports_control_and_alt_too(de: Rig) -> None:
    altgr = ("Control", "Alt", "AltGraph")
    de.down("ControlLeft", "Control", "Control")
    de.down("AltRight", "AltGraph", *altgr)
    de.tap("KeyQ", "@", *altgr)
    de.up("AltRight", "AltGraph", "Control")
    de.up("ControlLeft", "Control")

    de.keys(until="Control_L")
    at = next(e for e in de.presses() if e["keysym_name"] == "at")
    assert de.recorder.typed_text() == "@"
    assert not at["state"] & X.ControlMask


@integration
def test_us_viewer_y_types_y_on_a_german_host(de: Rig) -> None:
    de.tap("KeyY", "y")

    assert de.keys(until="y") == [("+", "y"), ("-", "y")]
    assert de.presses()[0]["keycode"] == 52  # where y is on a German keyboard


@integration
def test_brace_uses_the_altgr_level_on_a_german_host(de: Rig) -> None:
    de.down("ShiftLeft", "Shift", "Shift")
    de.tap("BracketLeft", "{", "Shift")  # a US viewer's Shift+[
    de.up("ShiftLeft", "Shift")

    keys = de.keys(until="Shift_L")
    assert keys[:4] == [("+", "Shift_L"), ("-", "Shift_L"), ("+", "ISO_Level3_Shift"),
                        ("+", "braceleft")]
    brace = next(e for e in de.presses() if e["keysym_name"] == "braceleft")
    assert brace["state"] & X.Mod5Mask and not brace["state"] & X.ShiftMask
    assert de.recorder.typed_text() == "{"


@integration
def test_ctrl_z_from_a_german_viewer_is_control_z_on_the_host(de: Rig) -> None:
    de.down("ControlLeft", "Control", "Control")
    de.tap("KeyY", "z", "Control")
    de.up("ControlLeft", "Control")

    de.keys(until="Control_L")
    z = next(e for e in de.presses() if e["keysym_name"] == "z")
    assert z["keycode"] == 29 and z["state"] & X.ControlMask
