"""Capture on a real Xvfb: the mouse pointer drawn into the picture, region selection."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

import i420
from realenv import paint
from runner.media.capture import ScreenGrabber
from xstate import XState

if TYPE_CHECKING:
    from collections.abc import Callable

    from realenv import Xvfb

pytestmark = pytest.mark.integration


def lit(pixels: np.ndarray) -> np.ndarray:
    """(row, column) of every pixel that is not black."""
    return np.argwhere(pixels[:, :, :3].max(axis=2) > 0)


def assert_pointer_around(drawn: np.ndarray, x: int, y: int, slack: int = 0) -> None:
    """The (row, column) points ``drawn`` form a pointer-sized box (under 32 px) around (x, y),
    give or take ``slack`` pixels (a chroma block at the picture's edge)."""
    (top, left), (bottom, right) = drawn.min(axis=0), drawn.max(axis=0)
    assert top <= y + slack and y <= bottom + slack and left <= x + slack and x <= right + slack
    assert bottom - top < 32 and right - left < 32


@pytest.mark.parametrize("cursor", [True, False])
def test_pointer_is_drawn_where_it_is_only_with_cursor_on(xvfb_factory: Callable[..., Xvfb], cursor: bool) -> None:
    x = xvfb_factory(320, 240)
    paint(x.display, (0, 0, 0))
    xs = XState(x.display)
    xs.warp(100, 60)
    g = ScreenGrabber(x.display, 1, cursor=cursor)
    g.open()
    try:
        pixels = g.grab().pixels
        assert pixels is not None
        drawn = lit(pixels)
    finally:
        g.close()
        xs.close()
    if not cursor:
        assert len(drawn) == 0
        return
    assert len(drawn) > 20  # Xvfb's default cursor, around its hot spot
    assert_pointer_around(drawn, 100, 60)


def test_selected_region_is_grabbed_and_clipped_to_the_screen(xvfb_factory: Callable[..., Xvfb]) -> None:
    x = xvfb_factory(320, 240)
    g = ScreenGrabber(x.display, 1)
    g.open()
    try:
        g.select(100, 50, 120, 80)
        assert g.region == {"left": 100, "top": 50, "width": 120, "height": 80}
        grabbed = g.grab().pixels
        assert grabbed is not None and grabbed.shape == (80, 120, 4)
        g.select(300, 200, 100, 100)  # hangs over the right and bottom edges
        assert g.region == {"left": 300, "top": 200, "width": 20, "height": 40}
        g.open()  # a reconnect keeps the chosen region
        assert g.region == {"left": 300, "top": 200, "width": 20, "height": 40}
    finally:
        g.close()


def test_change_watch_reports_drawing_and_pointer_moves_once(xvfb_factory: Callable[..., Xvfb]) -> None:
    import time

    from runner.media.damage import ChangeWatch

    x = xvfb_factory(320, 240)
    xs = XState(x.display)
    watch = ChangeWatch(x.display, cursor=True)
    try:
        assert watch.active
        watch.changed()  # the first call learns the pointer position
        assert watch.changed() is False
        paint(x.display, (10, 20, 30))
        time.sleep(0.05)
        assert watch.changed() is True
        assert watch.changed() is False  # reported once, then re-armed
        xs.warp(7, 9)
        assert watch.changed() is True
        assert watch.changed() is False
        without_cursor = ChangeWatch(x.display, cursor=False)
        without_cursor.changed()
        xs.warp(50, 50)
        assert without_cursor.changed() is False  # the pointer is not in the picture
        without_cursor.close()
    finally:
        watch.close()
        xs.close()


def test_change_watch_says_changed_when_it_cannot_tell() -> None:
    from runner.media.damage import ChangeWatch

    watch = ChangeWatch(":4093", cursor=True)  # no such display
    assert not watch.active and watch.changed() is True


def test_change_watch_fd_wakes_on_drawing_and_pointer_moves_only(xvfb_factory: Callable[..., Xvfb]) -> None:
    import select

    from Xlib import X
    from Xlib import display as xdisplay
    from Xlib.ext import xtest

    from runner.media.damage import ChangeWatch

    x = xvfb_factory(320, 240)
    xs = XState(x.display)
    watch = ChangeWatch(x.display, cursor=True)
    try:
        fd = watch.wait_fd()
        assert fd is not None  # XInput 2 reports pointer motion, so a still screen needs no polling
        watch.changed()
        assert select.select([fd], [], [], 0.3)[0] == []  # still: nothing to read
        # A device move, as the runner's injector (XTEST) and a local mouse make; an application's
        # XWarpPointer makes no raw event and is seen at the next idle refresh instead.
        mover = xdisplay.Display(x.display)
        xtest.fake_input(mover, X.MotionNotify, x=40, y=30)
        mover.sync()
        mover.close()
        assert select.select([fd], [], [], 2.0)[0] == [fd]
        assert watch.changed() is True
        assert select.select([fd], [], [], 0.3)[0] == []
        paint(x.display, (200, 10, 10))
        assert select.select([fd], [], [], 2.0)[0] == [fd]
        assert watch.changed() is True and watch.changed() is False
    finally:
        watch.close()
        xs.close()


@pytest.mark.parametrize("pointer", [(100, 60), (0, 0), (318, 238)])
def test_zero_copy_picture_equals_the_converted_copy_pointer_included(
        xvfb_factory: Callable[..., Xvfb], pointer: tuple[int, int]
) -> None:
    """grab_picture (shared memory -> I420, pointer patched in) gives exactly the picture that
    grab() + the same conversion gives, also with the pointer at the edges."""
    x = xvfb_factory(320, 240)
    paint(x.display, (30, 140, 220))
    xs = XState(x.display)
    xs.warp(*pointer)
    g = ScreenGrabber(x.display, 1, cursor=True)
    g.open()
    try:
        assert g.zero_copy
        fast = g.grab_picture()
        copy = g.grab()
    finally:
        g.close()
        xs.close()
    assert fast.pixels is None and (fast.width, fast.height) == (320, 240)
    assert fast.picture is not None and copy.pixels is not None
    expected = i420.from_bgra(copy.pixels)
    for got, want in zip(i420.planes(fast.picture), i420.planes(expected), strict=False):
        assert np.array_equal(got, want)
    y = i420.planes(fast.picture)[0]
    background = np.bincount(y.ravel()).argmax()
    drawn = np.argwhere(y != background)  # the pointer, around its hot spot
    assert len(drawn) > 10
    assert_pointer_around(drawn, min(pointer[0], 319), min(pointer[1], 239), slack=1)


def test_zero_copy_picture_has_even_size_of_an_odd_region(xvfb_factory: Callable[..., Xvfb]) -> None:
    x = xvfb_factory(320, 240)
    g = ScreenGrabber(x.display, 1)
    g.open()
    try:
        g.select(10, 10, 101, 51)
        frame = g.grab_picture()
    finally:
        g.close()
    assert (frame.width, frame.height) == (100, 50)


def test_released_pictures_are_reused_and_held_ones_never(xvfb_factory: Callable[..., Xvfb]) -> None:
    x = xvfb_factory(320, 240)
    g = ScreenGrabber(x.display, 1)
    g.open()
    try:
        first = g.grab_picture()
        second = g.grab_picture()  # first is still held: a different frame
        assert second.picture is not first.picture
        first.release()
        third = g.grab_picture()
        assert third.picture is first.picture
        g.select(0, 0, 160, 120)
        second.release()  # a frame of the old size is not handed out for the new size
        fourth = g.grab_picture()
        assert fourth.picture is not second.picture and (fourth.width, fourth.height) == (160, 120)
    finally:
        g.close()


def test_without_libyuv_the_pipeline_grab_falls_back_to_a_bgra_copy(
        xvfb_factory: Callable[..., Xvfb], monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.media import yuv

    x = xvfb_factory(320, 240)
    monkeypatch.setattr(yuv, "library", lambda: None)
    g = ScreenGrabber(x.display, 1)
    g.open()
    try:
        assert not g.zero_copy
        frame = g.grab_picture()
    finally:
        g.close()
    assert frame.picture is None and frame.pixels is not None and frame.pixels.shape == (240, 320, 4)
    frame.release()  # nothing to give back; must not fail


def test_mss_private_parts_are_where_the_adapter_expects(xvfb_factory: Callable[..., Xvfb]) -> None:
    """runner.media.mss_private reads mss internals by name; a new mss that moves them must fail
    here, loudly, not degrade the capture path quietly (a None shared image means a copy per frame)."""
    import mss

    from runner.media import mss_private

    assert mss.__version__ == mss_private.MSS_CHECKED_VERSION, (
        f"mss {mss.__version__}: check runner/media/mss_private.py against it, then update MSS_CHECKED_VERSION")
    x = xvfb_factory(320, 240)
    paint(x.display, (0, 0, 255))
    xs = XState(x.display)
    xs.warp(100, 60)
    sct = mss.MSS(display=x.display, with_cursor=False)
    try:
        sct.grab(sct.monitors[1])  # the first grab tells mss whether MIT-SHM works
        image = mss_private.shared_image(sct)
        assert image is not None, "Xvfb offers MIT-SHM: the adapter must find mss's shared-memory image"
        assert image.size == 320 * 240 * 4
        image.fill(10, 20, 4, 2)
        public = bytes(sct.grab({"left": 10, "top": 20, "width": 4, "height": 2}).raw)  # a copy of the same
        assert bytes(image.buffer[:32]) == public and public[:4] == bytes([255, 0, 0, 0])  # blue, BGRA
        cursor = mss_private.cursor_image(sct)
        assert cursor is not None and cursor.size.width > 0
        assert cursor.pos.left <= 100 < cursor.pos.left + cursor.size.width
        first = sct.monitors
        mss_private.forget_monitors(sct)
        assert sct.monitors is not first and sct.monitors == first  # asked again, same answer
    finally:
        sct.close()
        xs.close()
