"""The pointer read from a real Xvfb: runner.media.cursor's watch (image only when the XFixes serial
changes, position only when it moved), a cursor the server will not give, the picture mode's
grabber after such a cursor, and the watch following an X server that restarts."""

from __future__ import annotations

import asyncio
import os
import subprocess
from typing import TYPE_CHECKING

import numpy as np
import pytest
from Xlib import display as xdisplay

from realenv import Xvfb, paint, until
from runner.media.capture import ScreenGrabber
from runner.media.controls import CursorShape
from runner.media.cursor import CursorWatch, follow_cursor
from xstate import XState

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.integration

XC_CROSSHAIR = 34


def define_cursor(conn: xdisplay.Display, glyph: int) -> None:
    """Set the root window's cursor from ``conn``, which stays connected (so it stays readable)."""
    font = conn.open_font("cursor")
    conn.screen().root.change_attributes(
        cursor=font.create_glyph_cursor(font, glyph, glyph + 1, (0, 0, 0), (65535, 65535, 65535)))
    conn.sync()


def test_the_image_is_fetched_when_the_serial_changes_and_the_position_when_it_moved(
        xvfb_factory: Callable[..., Xvfb]) -> None:
    x = xvfb_factory(320, 240)
    xs, definer = XState(x.display), xdisplay.Display(x.display)
    definer.xfixes_query_version()
    watch = CursorWatch(x.display)
    try:
        xs.warp(100, 60)
        first, position, _ = watch.poll()
        assert first is not None and first.width * first.height * 4 == len(first.bgra) > 0
        assert position == (100, 60)
        assert watch.poll()[:2] == (None, None)  # nothing changed: no image, no position
        define_cursor(definer, XC_CROSSHAIR)
        xs.warp(101, 60)
        shape, position, _ = watch.poll()
        assert shape is not None and shape.serial != first.serial and position == (101, 60)
        image = definer.xfixes_get_cursor_image(definer.screen().root)
        assert (shape.serial, shape.width, shape.height, shape.xhot, shape.yhot) == (
            image.cursor_serial, image.width, image.height, image.xhot, image.yhot)
        assert watch.poll()[:2] == (None, None)
    finally:
        watch.close()
        definer.close()
        xs.close()


def test_a_cursor_the_server_refuses_is_reported_without_an_image(xvfb_factory: Callable[..., Xvfb]) -> None:
    x = xvfb_factory(320, 240)
    watch = CursorWatch(x.display)
    try:
        watch.poll()
        # xsetroot sets a cursor and exits; the server then refuses its image to older clients.
        subprocess.run(["xsetroot", "-cursor_name", "watch"], env={**os.environ, "DISPLAY": x.display},
                       check=True, timeout=10)
        shape, _, _ = watch.poll()
        assert shape is not None and (shape.width, shape.height, shape.bgra) == (0, 0, b"")
    finally:
        watch.close()


def test_in_picture_mode_a_refused_cursor_hides_the_pointer_only_while_it_is_shown(
        xvfb_factory: Callable[..., Xvfb]) -> None:
    x = xvfb_factory(320, 240)
    paint(x.display, (0, 0, 0))
    xs, definer = XState(x.display), xdisplay.Display(x.display)
    xs.warp(100, 60)
    g = ScreenGrabber(x.display, 1, cursor=True)
    g.open()

    def lit() -> int:
        pixels = g.grab().pixels
        assert pixels is not None
        return int(np.count_nonzero(pixels[:, :, :3].max(axis=2)))

    try:
        assert lit() > 20
        subprocess.run(["xsetroot", "-cursor_name", "watch"], env={**os.environ, "DISPLAY": x.display},
                       check=True, timeout=10)
        assert lit() == 0  # refused: no pointer, but the grabber has not given up on XFixes
        define_cursor(definer, XC_CROSSHAIR)
        assert lit() > 20
    finally:
        g.close()
        definer.close()
        xs.close()


class Sink:
    def __init__(self) -> None:
        self.shapes: list[int] = []
        self.positions: list[tuple[int, int]] = []

    def cursor_shape(self, shape: CursorShape) -> None:
        self.shapes.append(shape.serial)

    def pointer_moved(self, x: int, y: int) -> None:
        self.positions.append((x, y))


async def test_the_pointer_is_followed_again_when_the_x_server_comes_back() -> None:
    screen = Xvfb(320, 240)
    replacement = None
    sink = Sink()
    task = asyncio.get_running_loop().create_task(follow_cursor(screen.display, sink, lambda: 1 / 30))
    try:
        assert await until(lambda: sink.positions == [(160, 120)] and len(sink.shapes) == 1)
        number = screen.display.lstrip(":")
        screen.kill()
        await asyncio.sleep(1.5)  # the watch notices, and its first reopen fails
        replacement = Xvfb(320, 240, display=number)
        xs = XState(replacement.display)
        xs.warp(10, 20)
        xs.close()
        assert await until(lambda: sink.positions[-1:] == [(10, 20)] and len(sink.shapes) == 2, timeout=10)
        assert not task.done()
    finally:
        task.cancel()
        screen.stop()
        if replacement is not None:
            replacement.stop()
