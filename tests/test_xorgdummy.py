"""scripts/xorgdummy.py: a real Xorg with the dummy driver shows several monitors and switches
keyboard layouts, checked with the clients that use it (mss, xdotool, setxkbmap, xmodmap)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import mss
import pytest

import xorgdummy
from devstack import ComponentError

pytestmark = pytest.mark.integration

TWO_MONITORS = [(1280, 720, 0, 0), (1024, 768, 1280, 0)]


def start(*args: object, **kwargs: object) -> xorgdummy.XorgDummy:
    """An XorgDummy, or a test failure naming what is missing (tests never skip)."""
    try:
        return xorgdummy.XorgDummy(*args, **kwargs)  # type: ignore[arg-type]
    except (ComponentError, FileNotFoundError) as exc:
        problem = str(exc)
    pytest.fail(f"Xorg with the dummy driver is required for this test: {problem}", pytrace=False)


@pytest.fixture(scope="module")
def dummy() -> Iterator[xorgdummy.XorgDummy]:
    with start(monitors=TWO_MONITORS) as server:
        yield server


def mss_monitors(display: str) -> list[tuple[int, int, int, int]]:
    """mss's monitors (without the all-in-one entry 0) as (width, height, left, top)."""
    with mss.MSS(display=display) as sct:
        return [(m["width"], m["height"], m["left"], m["top"]) for m in sct.monitors[1:]]


def run(display: str, *argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=10,
                          env={**os.environ, "DISPLAY": display}).stdout


def test_mss_lists_exactly_the_two_monitors(dummy: xorgdummy.XorgDummy) -> None:
    assert mss_monitors(dummy.display) == [(1280, 720, 0, 0), (1024, 768, 1280, 0)]


def test_env_names_the_display(dummy: xorgdummy.XorgDummy) -> None:
    assert dummy.display.startswith(":")
    assert dummy.env() == {"DISPLAY": dummy.display}


def test_xdotool_moves_the_pointer_onto_the_second_monitor(dummy: xorgdummy.XorgDummy) -> None:
    run(dummy.display, "xdotool", "mousemove", "1800", "500")

    location = run(dummy.display, "xdotool", "getmouselocation").split()

    assert location[:2] == ["x:1800", "y:500"]


def test_set_layout_relayouts_at_runtime() -> None:
    with start(monitors=TWO_MONITORS) as server:
        server.set_layout([(1366, 768, 0, 0), (800, 600, 1366, 100), (640, 480, 0, 768)])

        assert mss_monitors(server.display) == [
            (1366, 768, 0, 0), (800, 600, 1366, 100), (640, 480, 0, 768)]

        server.set_layout([(1920, 1080, 0, 0)])

        assert mss_monitors(server.display) == [(1920, 1080, 0, 0)]


def test_setxkbmap_de_makes_keycode_29_a_z() -> None:
    with start(monitors=[(1024, 768, 0, 0)]) as server:
        assert "keycode  29 = y Y" in run(server.display, "xmodmap", "-pke")

        run(server.display, "setxkbmap", "-display", server.display, "de")

        assert "keycode  29 = z Z" in run(server.display, "xmodmap", "-pke")


def test_keymap_has_evdev_keycodes_like_xorg_with_libinput(dummy: xorgdummy.XorgDummy) -> None:
    keymap = run(dummy.display, "xmodmap", "-pke")

    assert "keycode 113 = Left" in keymap
    assert "keycode 108 = Alt_R" in keymap


def test_without_rules_the_server_keeps_its_xfree86_keycodes() -> None:
    with start(monitors=[(1024, 768, 0, 0)], xkb_rules=None) as server:
        assert "keycode 100 = Left" in run(server.display, "xmodmap", "-pke")


def test_a_failing_xorg_is_reported_with_its_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xorgdummy, "XORG_CONF",
                        xorgdummy.XORG_CONF.replace('Driver "dummy"', 'Driver "nosuchdriver"'))

    with pytest.raises(ComponentError) as failure:
        xorgdummy.XorgDummy()

    message = str(failure.value)
    assert "Xorg.log" in message
    assert "nosuchdriver" in message


def test_a_layout_needs_sizes_and_positions() -> None:
    with pytest.raises(ValueError, match="positive size"):
        xorgdummy.check_monitors([(0, 720, 0, 0)])
    with pytest.raises(ValueError, match="at least one"):
        xorgdummy.check_monitors([])


def test_cvt_modeline_keeps_an_odd_width() -> None:
    args = xorgdummy.cvt_modeline("cvt", 1366, 768, "1366x768_60")

    assert args[0] == "1366x768_60"
    assert args[2] == "1366"  # cvt itself says 1368
    assert args[6] == "768"
