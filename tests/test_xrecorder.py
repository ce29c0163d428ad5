"""scripts/xrecorder.py: what the X server delivers to a focused window, as JSON lines.

Driven by independent input sources (xdotool, raw XTEST and XSendEvent from python-xlib) so the
recorder is proven before it is used to prove our own injector.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator

import pytest
from Xlib import XK, X
from Xlib import display as xdisplay
from Xlib.ext import xtest
from Xlib.protocol import event as xevent

import xorgdummy
import xrecorder
from devstack import ComponentError, Xvfb
from runner.control.keysyms import keysym_name
from xrecorder import Event, XRecorder

integration = pytest.mark.integration
ISO_LEVEL3_SHIFT = 0xFE03
KEYCODE_Q = 24  # evdev KEY_Q + 8


def xdotool(display: str, *args: str) -> None:
    subprocess.run(["xdotool", *args], check=True, timeout=10,
                   env={**os.environ, "DISPLAY": display})


def is_press(name: str) -> Callable[[Event], bool]:
    return lambda e: e["type"] == "key_press" and e["keysym_name"] == name


@pytest.fixture(scope="module")
def screen() -> Iterator[Xvfb]:
    try:
        server = Xvfb(1280, 720)
    except ComponentError as exc:
        pytest.fail(f"Xvfb is required for this test: {exc}", pytrace=False)
    with server:
        yield server


@pytest.fixture
def recorder(screen: Xvfb) -> Iterator[XRecorder]:
    with XRecorder(screen.display) as rec:
        rec.wait_ready()
        yield rec


@integration
def test_xdotool_type_is_recorded_as_typed_text(screen: Xvfb, recorder: XRecorder) -> None:
    xdotool(screen.display, "type", "Hello")

    recorder.wait_for(lambda e: e["type"] == "key_release" and e["char"] == "o")
    presses = [e for e in recorder.events() if e["type"] == "key_press"]
    assert recorder.typed_text() == "Hello"
    assert [e["keysym_name"] for e in presses if e["char"]] == ["H", "e", "l", "l", "o"]
    assert presses[0]["keysym_name"] == "Shift_L"
    assert not any(e["synthetic"] for e in presses)


@integration
def test_xdotool_click_is_recorded_with_button_and_position(screen: Xvfb,
                                                            recorder: XRecorder) -> None:
    xdotool(screen.display, "mousemove", "300", "200", "click", "3")

    release = recorder.wait_for(lambda e: e["type"] == "button_release")
    press = recorder.wait_for(lambda e: e["type"] == "button_press")
    assert (press["button"], press["x_root"], press["y_root"]) == (3, 300, 200)
    assert (release["button"], release["x_root"], release["y_root"]) == (3, 300, 200)


@integration
def test_pointer_motion_is_recorded(screen: Xvfb, recorder: XRecorder) -> None:
    xdotool(screen.display, "mousemove", "10", "20")
    xdotool(screen.display, "mousemove", "640", "360")

    motion = recorder.wait_for(lambda e: e["type"] == "motion" and e["x_root"] == 640)
    assert motion["y_root"] == 360


@integration
def test_a_window_with_geometry_reports_root_coordinates(screen: Xvfb) -> None:
    with XRecorder(screen.display, geometry="200x100+50+60") as rec:
        rec.wait_ready()
        xdotool(screen.display, "mousemove", "100", "100", "click", "1")

        press = rec.wait_for(lambda e: e["type"] == "button_press")

    assert (press["button"], press["x_root"], press["y_root"]) == (1, 100, 100)


@integration
def test_xsendevent_keys_are_flagged_synthetic(screen: Xvfb, recorder: XRecorder) -> None:
    conn = xdisplay.Display(screen.display)
    try:
        window = conn.create_resource_object("window", recorder.window)
        keycode = conn.keysym_to_keycode(XK.XK_a)
        fake = xevent.KeyPress(time=X.CurrentTime, root=conn.screen().root, window=window,
                               same_screen=1, child=X.NONE, root_x=0, root_y=0, event_x=0,
                               event_y=0, state=0, detail=keycode)
        window.send_event(fake, propagate=True)
        conn.flush()

        event = recorder.wait_for(is_press("a"))
    finally:
        conn.close()

    assert event["synthetic"] is True


@integration
def test_altgr_q_on_a_german_keymap_is_at() -> None:
    try:
        server = xorgdummy.XorgDummy(monitors=[(1024, 768, 0, 0)], xkb_layout="de")
    except ComponentError as exc:
        pytest.fail(f"Xorg with the dummy driver is required for this test: {exc}", pytrace=False)
    with server, XRecorder(server.display) as rec:
        rec.wait_ready()
        conn = xdisplay.Display(server.display)
        level3, q = conn.keysym_to_keycode(ISO_LEVEL3_SHIFT), KEYCODE_Q
        for event_type, keycode in ((X.KeyPress, level3), (X.KeyPress, q), (X.KeyRelease, q),
                                    (X.KeyRelease, level3), (X.KeyPress, q), (X.KeyRelease, q)):
            xtest.fake_input(conn, event_type, keycode)
        conn.sync()  # Xorg may drop input a client sent right before disconnecting
        conn.close()

        rec.wait_for(lambda e: e["type"] == "key_release" and e["keysym_name"] == "q")

        assert rec.typed_text() == "@q"


def test_geometry_parses() -> None:
    assert xrecorder.parse_geometry("200x100+50+60") == (200, 100, 50, 60)
    with pytest.raises(ValueError, match="is not WxH"):
        xrecorder.parse_geometry("200x100")


@pytest.mark.parametrize(("keysym", "char"), [
    (0x61, "a"), (0xE9, "é"), (0x20AC, "€"), (0x6D6, "ж"), (0x1004E16, "世"),
    (0xFF0D, "\n"), (0xFF09, "\t"), (0xFFB7, "7"),
    (0xFE51, None),  # dead_acute types nothing by itself
    (0xFFE1, None),  # Shift_L
    (0xFF51, None),  # Left
])
def test_keysym_to_char(keysym: int, char: str | None) -> None:
    assert xrecorder.keysym_to_char(keysym) == char


def test_keysym_names_are_x_names() -> None:
    assert [keysym_name(k) for k in (0x40, 0x20AC, 0xFF55, 0xFE03, 0x1004E16)] == [
        "at", "EuroSign", "Prior", "ISO_Level3_Shift", "U4E16"]
