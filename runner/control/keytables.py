"""Keyboard tables, pure data: browser KeyboardEvent codes and key names to Linux scancodes and
X keysyms, and the modifier keys. The rules that use them are in ``keyplan``; the XTEST
injector in ``keyboard``.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.control.keysyms import keysym
from runner.control.keysyms import keysyms as _keysyms

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

# Names that are both a KeyboardEvent.code and a KeyboardEvent.key of a key that types no
# character (the UI Events lists share them), -> X keysyms, best first.
_NAMED_KEYSYMS: dict[str, tuple[int, ...]] = {
    "Escape": _keysyms("Escape"), "Backspace": _keysyms("BackSpace"), "Tab": _keysyms("Tab"),
    "Enter": _keysyms("Return"), "ContextMenu": _keysyms("Menu"), "PrintScreen": _keysyms("Print"),
    "ScrollLock": _keysyms("Scroll_Lock"), "Pause": _keysyms("Pause"), "Insert": _keysyms("Insert"),
    "Delete": _keysyms("Delete"), "Home": _keysyms("Home"), "End": _keysyms("End"),
    "PageUp": _keysyms("Prior"), "PageDown": _keysyms("Next"), "ArrowLeft": _keysyms("Left"),
    "ArrowRight": _keysyms("Right"), "ArrowUp": _keysyms("Up"), "ArrowDown": _keysyms("Down"),
    "Help": _keysyms("Help"),
    **{f"F{n}": _keysyms(f"F{n}") for n in range(1, 25)},
    "NumLock": _keysyms("Num_Lock"), "Convert": _keysyms("Henkan"), "NonConvert": _keysyms("Muhenkan"),
    "Katakana": _keysyms("Katakana"), "Hiragana": _keysyms("Hiragana"),
    "AudioVolumeMute": _keysyms("XF86AudioMute"), "AudioVolumeDown": _keysyms("XF86AudioLowerVolume"),
    "AudioVolumeUp": _keysyms("XF86AudioRaiseVolume"), "MediaPlayPause": _keysyms("XF86AudioPlay"),
    "MediaPlay": _keysyms("XF86AudioPlay"), "MediaPause": _keysyms("XF86AudioPause"),
    "MediaStop": _keysyms("XF86AudioStop"), "MediaTrackNext": _keysyms("XF86AudioNext"),
    "MediaTrackPrevious": _keysyms("XF86AudioPrev"), "MediaRecord": _keysyms("XF86AudioRecord"),
    "MediaRewind": _keysyms("XF86AudioRewind"), "MediaFastForward": _keysyms("XF86AudioForward"),
    "BrowserBack": _keysyms("XF86Back"), "BrowserForward": _keysyms("XF86Forward"),
    "BrowserRefresh": _keysyms("XF86Reload"), "BrowserStop": _keysyms("XF86Stop"),
    "BrowserSearch": _keysyms("XF86Search"), "BrowserFavorites": _keysyms("XF86Favorites"),
    "BrowserHome": _keysyms("XF86HomePage"), "LaunchMail": _keysyms("XF86Mail"),
    "Eject": _keysyms("XF86Eject"), "Power": _keysyms("XF86PowerOff"), "WakeUp": _keysyms("XF86WakeUp"),
    "BrightnessDown": _keysyms("XF86MonBrightnessDown"), "BrightnessUp": _keysyms("XF86MonBrightnessUp"),
    "Undo": _keysyms("Undo"), "Find": _keysyms("Find"), "Select": _keysyms("Select"),
    "Copy": _keysyms("XF86Copy"), "Cut": _keysyms("XF86Cut"), "Paste": _keysyms("XF86Paste"),
    "Open": _keysyms("XF86Open"),
}

# KeyboardEvent.code -> keysyms of keys that type no character, best first: the physical key
# found by what it is, on any keycode set. Numpad keys list both levels (KP_Home, KP_7).
CODE_KEYSYMS: dict[str, tuple[int, ...]] = {
    **_NAMED_KEYSYMS,
    "Space": _keysyms("space"), "CapsLock": _keysyms("Caps_Lock"), "ShiftLeft": _keysyms("Shift_L"),
    "ShiftRight": _keysyms("Shift_R"), "ControlLeft": _keysyms("Control_L"),
    "ControlRight": _keysyms("Control_R"), "AltLeft": _keysyms("Alt_L"),
    "AltRight": _keysyms("Alt_R", "ISO_Level3_Shift"), "MetaLeft": _keysyms("Super_L"),
    "MetaRight": _keysyms("Super_R"), "OSLeft": _keysyms("Super_L"), "OSRight": _keysyms("Super_R"),
    "Numpad0": _keysyms("KP_Insert", "KP_0"), "Numpad1": _keysyms("KP_End", "KP_1"),
    "Numpad2": _keysyms("KP_Down", "KP_2"), "Numpad3": _keysyms("KP_Next", "KP_3"),
    "Numpad4": _keysyms("KP_Left", "KP_4"), "Numpad5": _keysyms("KP_Begin", "KP_5"),
    "Numpad6": _keysyms("KP_Right", "KP_6"), "Numpad7": _keysyms("KP_Home", "KP_7"),
    "Numpad8": _keysyms("KP_Up", "KP_8"), "Numpad9": _keysyms("KP_Prior", "KP_9"),
    "NumpadDecimal": _keysyms("KP_Delete", "KP_Decimal"), "NumpadAdd": _keysyms("KP_Add"),
    "NumpadSubtract": _keysyms("KP_Subtract"), "NumpadMultiply": _keysyms("KP_Multiply"),
    "NumpadDivide": _keysyms("KP_Divide"), "NumpadEnter": _keysyms("KP_Enter"),
    "NumpadEqual": _keysyms("KP_Equal"), "NumpadComma": _keysyms("KP_Separator"),
    "KanaMode": _keysyms("Hiragana_Katakana"), "Lang1": _keysyms("Hangul"),
    "Lang2": _keysyms("Hangul_Hanja"), "Lang3": _keysyms("Katakana"), "Lang4": _keysyms("Hiragana"),
    "Lang5": _keysyms("Zenkaku_Hankaku"), "VolumeMute": _keysyms("XF86AudioMute"),
    "VolumeDown": _keysyms("XF86AudioLowerVolume"), "VolumeUp": _keysyms("XF86AudioRaiseVolume"),
    "LaunchApp1": _keysyms("XF86Explorer"), "LaunchApp2": _keysyms("XF86Calculator"),
    "Sleep": _keysyms("XF86Sleep"), "Again": _keysyms("Redo"),
}

# KeyboardEvent.key names of keys that type no character -> X keysyms, best first.
KEY_KEYSYMS: dict[str, tuple[int, ...]] = {
    **_NAMED_KEYSYMS,
    "Esc": _keysyms("Escape"), "Del": _keysyms("Delete"), "Left": _keysyms("Left"),
    "Right": _keysyms("Right"), "Up": _keysyms("Up"), "Down": _keysyms("Down"), "Apps": _keysyms("Menu"),
    "Scroll": _keysyms("Scroll_Lock"), "Clear": _keysyms("Clear"), "Redo": _keysyms("Redo"),
    "Cancel": _keysyms("Cancel"), "Execute": _keysyms("Execute"), "Close": _keysyms("XF86Close"),
    "Save": _keysyms("XF86Save"), "HiraganaKatakana": _keysyms("Hiragana_Katakana"),
    "Zenkaku": _keysyms("Zenkaku"), "Hankaku": _keysyms("Hankaku"),
    "ZenkakuHankaku": _keysyms("Zenkaku_Hankaku"), "Romaji": _keysyms("Romaji"),
    "KanjiMode": _keysyms("Kanji"), "HangulMode": _keysyms("Hangul"), "HanjaMode": _keysyms("Hangul_Hanja"),
    "Eisu": _keysyms("Eisu_toggle"), "LaunchApplication1": _keysyms("XF86MyComputer"),
    "LaunchApplication2": _keysyms("XF86Calculator"), "LaunchCalculator": _keysyms("XF86Calculator"),
    "PowerOff": _keysyms("XF86PowerOff"), "Standby": _keysyms("XF86Sleep"),
}


TEXT_CONTROLS = {"\n": keysym("Return"), "\t": keysym("Tab")}  # what type_text types for these


@dataclass(frozen=True)
class ModifierKey:
    """A modifier key: its snapshot name and the host keysyms that can press it, best first."""

    name: str
    keysyms: tuple[int, ...]


SIDES = {
    "Shift": (_keysyms("Shift_L", "Shift_R"), _keysyms("Shift_R", "Shift_L")),
    "Control": (_keysyms("Control_L", "Control_R"), _keysyms("Control_R", "Control_L")),
    "Alt": (_keysyms("Alt_L", "Alt_R", "Meta_L"), _keysyms("Alt_R", "Alt_L", "Meta_R")),
    "Meta": (_keysyms("Super_L", "Super_R", "Meta_L"), _keysyms("Super_R", "Super_L", "Meta_R")),
}
ALTGRAPH = ModifierKey("AltGraph", _keysyms("ISO_Level3_Shift", "Mode_switch"))
CAPSLOCK = ModifierKey("CapsLock", _keysyms("Caps_Lock"))
# KeyboardEvent.key -> modifier; "OS"/"Super"/"Win" are what older browsers call Meta.
MODIFIER_KEY_NAMES = {"Shift": "Shift", "Control": "Control", "Alt": "Alt", "Meta": "Meta",
                      "OS": "Meta", "Super": "Meta", "Win": "Meta"}
MODIFIER_CODES = {
    "ShiftLeft": "Shift", "ShiftRight": "Shift", "ControlLeft": "Control",
    "ControlRight": "Control", "AltLeft": "Alt", "AltRight": "Alt", "MetaLeft": "Meta",
    "MetaRight": "Meta", "OSLeft": "Meta", "OSRight": "Meta",
}

