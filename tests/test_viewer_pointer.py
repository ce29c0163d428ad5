"""The host's pointer drawn by the viewer (capture.cursor = "viewer"), end to end: Xvfb, the runner,
livekit-server, the reference viewer in headless Chromium. A cursor defined on the X side becomes
the controller's CSS cursor (image size and hotspot as XFixes reports them, scaled to the picture);
a hidden X cursor becomes `cursor: none`; a watcher's overlay follows an X-side pointer move; the
picture carries the pointer only in `picture` mode (pixels under it read from the decoded frame)."""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from Xlib import display as xdisplay

from realenv import (
    Runner,
    Xvfb,
    color_close,
    mint_token,
    paint,
    sample_pixels,
    viewer_state,
    wait_for_picture,
    wait_for_viewer,
)

pytestmark = pytest.mark.integration

PASSPHRASE = "pointer passphrase"
WIDTH, HEIGHT = 640, 480
BACKGROUND = (128, 128, 128)
BACKGROUND_2 = (96, 96, 96)
XC_CROSSHAIR = 34  # X cursor font glyph (X11/cursorfont.h)
XC_FLEUR = 52
DATA_URL = r'url\("(data:image/png;base64,[A-Za-z0-9+/=]+)"\)'
CSS_CURSOR = re.compile(rf"^{DATA_URL} (\d+) (\d+), auto$")
HIDPI_CSS_CURSOR = re.compile(rf"^image-set\({DATA_URL} 2(?:x|dppx)\) (\d+) (\d+), auto$")  # Chrome says dppx
POSITION_TOLERANCE_PX = 2.0


class XCursors:
    """Cursors defined on the root window by a client that stays connected (the X server refuses
    XFixes images of cursors whose creator has gone), and what XFixes says about them."""

    def __init__(self, display: str) -> None:
        self.d = xdisplay.Display(display)
        self.d.xfixes_query_version()
        self.root = self.d.screen().root
        self._font = self.d.open_font("cursor")

    def glyph(self, glyph: int) -> dict[str, int]:
        cursor = self._font.create_glyph_cursor(self._font, glyph, glyph + 1, (0, 0, 0), (65535, 65535, 65535))
        return self._use(cursor)

    def huge(self, side: int) -> dict[str, int]:
        """A ``side`` x ``side`` cursor, a 4-pixel checkerboard (far past what browsers show)."""
        bits = self.root.create_pixmap(side, side, 1)
        gc = bits.create_gc(foreground=0)
        bits.fill_rectangle(gc, 0, 0, side, side)
        gc.change(foreground=1)
        squares = [(x, y, 4, 4) for y in range(0, side, 4) for x in range((y // 4) % 2 * 4, side, 8)]
        bits.poly_fill_rectangle(gc, squares)
        mask = self.root.create_pixmap(side, side, 1)
        mask_gc = mask.create_gc(foreground=1)
        mask.fill_rectangle(mask_gc, 0, 0, side, side)
        return self._use(bits.create_cursor(mask, (0, 0, 0), (65535, 65535, 65535), side - 1, side // 2))

    def transparent(self) -> dict[str, int]:
        bits = self.root.create_pixmap(8, 8, 1)
        gc = bits.create_gc(foreground=0)
        bits.fill_rectangle(gc, 0, 0, 8, 8)
        return self._use(bits.create_cursor(bits, (0, 0, 0), (0, 0, 0), 0, 0))

    def _use(self, cursor: Any) -> dict[str, int]:
        self.root.change_attributes(cursor=cursor)
        self.d.sync()
        image = self.d.xfixes_get_cursor_image(self.root)
        return {"serial": image.cursor_serial, "w": image.width, "h": image.height, "xhot": image.xhot,
                "yhot": image.yhot, "pixels": list(image.cursor_image)}

    def close(self) -> None:
        self.d.close()


class _XcursorImage(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint), ("size", ctypes.c_uint), ("width", ctypes.c_uint),
                ("height", ctypes.c_uint), ("xhot", ctypes.c_uint), ("yhot", ctypes.c_uint),
                ("delay", ctypes.c_uint), ("pixels", ctypes.POINTER(ctypes.c_uint32))]


class _XcursorImages(ctypes.Structure):
    _fields_ = [("nimage", ctypes.c_int), ("images", ctypes.POINTER(ctypes.POINTER(_XcursorImage))),
                ("name", ctypes.c_char_p)]


class AnimatedCursor:
    """An animated root-window cursor (libXcursor: one Render cursor per frame), its client kept
    connected while it is in use. Frames are solid ARGB squares shown ``delay_ms`` each."""

    def __init__(self, display: str, colours: list[int], side: int = 16, delay_ms: int = 120) -> None:
        x11 = ctypes.CDLL("libX11.so.6")
        xcursor = ctypes.CDLL("libXcursor.so.1")
        x11.XOpenDisplay.restype = ctypes.c_void_p
        x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
        x11.XDefaultRootWindow.restype = ctypes.c_ulong
        x11.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        x11.XDefineCursor.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
        x11.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
        x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
        xcursor.XcursorImagesCreate.restype = ctypes.POINTER(_XcursorImages)
        xcursor.XcursorImageCreate.restype = ctypes.POINTER(_XcursorImage)
        xcursor.XcursorImagesLoadCursor.restype = ctypes.c_ulong
        xcursor.XcursorImagesLoadCursor.argtypes = [ctypes.c_void_p, ctypes.POINTER(_XcursorImages)]
        xcursor.XcursorImagesDestroy.argtypes = [ctypes.POINTER(_XcursorImages)]
        self._x11 = x11
        self._dpy = x11.XOpenDisplay(display.encode())
        assert self._dpy, f"cannot open {display}"
        images = xcursor.XcursorImagesCreate(len(colours))
        for i, argb in enumerate(colours):
            image = xcursor.XcursorImageCreate(side, side)
            image.contents.xhot, image.contents.yhot, image.contents.delay = 1, 2, delay_ms
            for p in range(side * side):
                image.contents.pixels[p] = argb
            images.contents.images[i] = image
            images.contents.nimage = i + 1
        cursor = xcursor.XcursorImagesLoadCursor(self._dpy, images)
        xcursor.XcursorImagesDestroy(images)
        x11.XDefineCursor(self._dpy, x11.XDefaultRootWindow(self._dpy), cursor)
        x11.XSync(self._dpy, 0)

    def close(self) -> None:
        self._x11.XCloseDisplay(self._dpy)


@pytest.fixture
def screen() -> Iterator[Xvfb]:
    with Xvfb(WIDTH, HEIGHT) as x:
        paint(x.display, BACKGROUND)
        yield x


def runner_for(livekit_server: Any, room: str, display: str, mode: str) -> Runner:
    return Runner.joining(livekit_server, room=room, passphrase=PASSPHRASE, display=display,
                          extra_env={"RUNNER_CAPTURE__CURSOR": mode, "RUNNER_LOG__STATUS_INTERVAL_S": "0"})


async def connect(page: Any, viewer_url: str, livekit_server: Any, room: str, identity: str, *,
                  control: bool) -> None:
    token = mint_token(livekit_server.api_key, livekit_server.api_secret, room, identity)
    await page.goto(viewer_url)
    await page.wait_for_function("() => window.viewer !== undefined", timeout=10_000)
    await page.evaluate("(o) => window.viewer.connect(o)", {"url": livekit_server.url, "token": token,
                                                          "passphrase": PASSPHRASE, "control": control})


async def picture_geometry(page: Any) -> dict[str, float]:
    """The picture as drawn: its left, top (page px) and CSS px per host pixel."""
    geometry: dict[str, float] = await page.evaluate("""() => {
        const v = document.getElementById('screen');
        const r = v.getBoundingClientRect();
        const s = Math.min(r.width / v.videoWidth, r.height / v.videoHeight);
        return {left: r.left + (r.width - v.videoWidth * s) / 2,
                top: r.top + (r.height - v.videoHeight * s) / 2, scale: s, dpr: window.devicePixelRatio};
    }""")
    return geometry


async def css_cursor(page: Any) -> str:
    cursor: str = await page.evaluate("() => getComputedStyle(document.getElementById('screen')).cursor")
    return cursor


async def image_size(page: Any, url: str) -> list[int]:
    size: list[int] = await page.evaluate("""async (url) => {
        const image = new Image(); image.src = url; await image.decode();
        return [image.naturalWidth, image.naturalHeight];
    }""", url)
    return size


def xdotool(display: str, *args: str) -> None:
    subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display}, check=True, timeout=10)


async def test_the_controllers_css_cursor_is_the_x_cursor_and_a_watchers_overlay_follows_the_pointer(
        livekit_server, viewer_server, browser, room_name, screen) -> None:
    cursors = XCursors(screen.display)
    runner = runner_for(livekit_server, room_name, screen.display, "viewer")
    controller_context = await browser.new_context(viewport={"width": 1000, "height": 700})
    watcher_context = await browser.new_context(viewport={"width": 1000, "height": 700}, device_scale_factor=2)
    try:
        with runner:
            runner.wait_for_event("track_published", timeout=30)
            controller = await controller_context.new_page()
            watcher = await watcher_context.new_page()
            await connect(controller, viewer_server.url, livekit_server, room_name, "controller", control=True)
            await wait_for_viewer(controller, lambda s: s["framesDecoded"] > 0 and s["control"]["you"]
                                  and s["pointer"]["enabled"], timeout=30, what="picture, control, pointer pushes")

            # 1. An X cursor change becomes the controller's CSS cursor, scaled to the picture.
            crosshair = cursors.glyph(XC_CROSSHAIR)
            await wait_for_viewer(controller, lambda s: s["pointer"]["serial"] == crosshair["serial"]
                                  and s["pointer"]["local"], timeout=10, what="the crosshair's serial")
            g = await picture_geometry(controller)
            match = CSS_CURSOR.match(await css_cursor(controller))
            assert match, await css_cursor(controller)
            url, hot_x, hot_y = match.group(1), int(match.group(2)), int(match.group(3))
            css_w, css_h = round(crosshair["w"] * g["scale"]), round(crosshair["h"] * g["scale"])
            assert (hot_x, hot_y) == (round(crosshair["xhot"] * g["scale"]), round(crosshair["yhot"] * g["scale"]))
            assert await image_size(controller, url) == [css_w, css_h]  # device pixel ratio 1

            # 2. An animated or changed cursor follows its serial; a hidden one is `cursor: none`.
            fleur = cursors.glyph(XC_FLEUR)
            await wait_for_viewer(controller, lambda s: s["pointer"]["serial"] == fleur["serial"],
                                  timeout=10, what="the fleur's serial")
            fleur_match = CSS_CURSOR.match(await css_cursor(controller))
            assert fleur_match and fleur_match.group(1) != url
            # A cursor far larger than browsers show (400 px) reaches the viewer bounded: at most
            # 128 px a side, its hotspot scaled with it.
            huge = cursors.huge(400)
            await wait_for_viewer(controller, lambda s: s["pointer"]["serial"] == huge["serial"],
                                  timeout=10, what="the huge cursor's serial")
            huge_match = CSS_CURSOR.match(await css_cursor(controller))
            assert huge_match, await css_cursor(controller)
            s = min(g["scale"], 1.0)  # the runner sends it at 128 px, hotspot (399, 200) * 128 / 400
            assert await image_size(controller, huge_match.group(1)) == [round(128 * s)] * 2
            assert (int(huge_match.group(2)), int(huge_match.group(3))) == (round(127 * s), round(64 * s))
            # An animated cursor: its frames are cursors of their own, so the serial cycles, and
            # each frame's image is sent once, then named by its serial.
            animated = AnimatedCursor(screen.display, [0xFFFF0000, 0xFF0000FF, 0xFF00FF00])
            try:
                before = (await viewer_state(controller))["pointer"]["images"]
                seen: set[int] = set()
                for _ in range(40):  # about 2 s: five rounds of three frames at 120 ms
                    seen.add((await viewer_state(controller))["pointer"]["serial"])
                    await asyncio.sleep(0.05)
                state = await viewer_state(controller)
                assert len(seen - {huge["serial"]}) >= 3, seen  # the viewer followed the frames
                assert state["pointer"]["images"] - before == 3, state["pointer"]  # each image once
                assert CSS_CURSOR.match(await css_cursor(controller))
            finally:
                animated.close()
            hidden = cursors.transparent()
            await wait_for_viewer(controller, lambda s: s["pointer"]["serial"] == hidden["serial"],
                                  timeout=10, what="the hidden cursor's serial")
            assert await css_cursor(controller) == "none"
            again = cursors.glyph(XC_CROSSHAIR)  # a new serial for the same look: a full image again
            await wait_for_viewer(controller, lambda s: s["pointer"]["serial"] == again["serial"]
                                  and s["pointer"]["css"] != "none", timeout=10, what="the cursor back")

            # 3. A watcher (HiDPI, device pixel ratio 2) draws the pushed position; it follows an
            # X-side pointer move.
            await connect(watcher, viewer_server.url, livekit_server, room_name, "watcher", control=False)
            await wait_for_viewer(watcher, lambda s: s["framesDecoded"] > 0 and s["pointer"]["overlay"],
                                  timeout=30, what="the watcher's picture and pointer overlay")
            assert await css_cursor(watcher) == "auto"  # not the watcher's own pointer
            for x, y in [(400, 300), (123, 77)]:
                xdotool(screen.display, "mousemove", str(x), str(y))
                state = await wait_for_viewer(
                    watcher, lambda s, x=x, y=y: (s["pointer"]["position"] or {}).get("x") == x
                    and s["pointer"]["position"]["y"] == y and s["pointer"]["overlay"],
                    timeout=10, what=f"the pointer at {x},{y}")
                assert state["pointer"]["position"] == {"x": x, "y": y, "w": WIDTH, "h": HEIGHT}
                wg = await picture_geometry(watcher)
                box = await watcher.evaluate("() => { const r = document.getElementById('pointer-overlay')"
                                             ".getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; }")
                hot = (round(again["xhot"] * wg["scale"]), round(again["yhot"] * wg["scale"]))
                expected = (wg["left"] + x * wg["scale"], wg["top"] + y * wg["scale"])
                assert abs(box[0] + hot[0] - expected[0]) <= POSITION_TOLERANCE_PX, (box, expected)
                assert abs(box[1] + hot[1] - expected[1]) <= POSITION_TOLERANCE_PX, (box, expected)
                assert (round(box[2]), round(box[3])) == (round(again["w"] * wg["scale"]),
                                                          round(again["h"] * wg["scale"]))
            canvas = await watcher.evaluate("() => { const c = document.getElementById('pointer-overlay');"
                                            " return [c.width, c.height]; }")
            assert canvas == [round(again["w"] * wg["scale"]) * 2, round(again["h"] * wg["scale"]) * 2]  # HiDPI

            # 4. Under pointer lock the browser hides the controller's pointer: the viewer draws the
            # pushed position instead of a CSS cursor.
            await controller.click("#pointer-lock")
            state = await wait_for_viewer(controller, lambda s: s["control"]["pointerLocked"]
                                          and s["pointer"]["overlay"], timeout=10, what="pointer lock and the overlay")
            assert state["pointer"]["local"] is False and await css_cursor(controller) == "auto"

            # 5. The HiDPI page takes control: its CSS cursor is drawn at twice the pixels.
            await controller.evaluate("() => window.viewer.releaseControl()")
            await watcher.evaluate("() => window.viewer.requestControl()")
            await wait_for_viewer(watcher, lambda s: s["pointer"]["local"], timeout=10, what="HiDPI control")
            hidpi = HIDPI_CSS_CURSOR.match(await css_cursor(watcher))
            assert hidpi, await css_cursor(watcher)
            css_size = [round(again["w"] * wg["scale"]), round(again["h"] * wg["scale"])]
            assert await image_size(watcher, hidpi.group(1)) == [2 * css_size[0], 2 * css_size[1]]
            assert (int(hidpi.group(2)), int(hidpi.group(3))) == hot
    finally:
        await controller_context.close()
        await watcher_context.close()
        cursors.close()


def pointer_points(cursor: dict[str, int], x: int, y: int) -> list[tuple[float, float]]:
    """Normalized picture points under the opaque, dark pixels of ``cursor`` when its hotspot is at
    (x, y): where a drawn pointer differs most from the grey background."""
    points = []
    for i, pixel in enumerate(cursor["pixels"]):
        alpha, luma = pixel >> 24, max((pixel >> 16) & 255, (pixel >> 8) & 255, pixel & 255)
        if alpha == 255 and luma < 40:
            px, py = x - cursor["xhot"] + i % cursor["w"], y - cursor["yhot"] + i // cursor["w"]
            points.append(((px + 0.5) / WIDTH, (py + 0.5) / HEIGHT))
    return points


@pytest.mark.parametrize("mode", ["viewer", "picture"])
async def test_the_picture_carries_the_pointer_only_in_picture_mode(
        livekit_server, viewer_server, page, room_name, screen, mode) -> None:
    cursors = XCursors(screen.display)
    try:
        with runner_for(livekit_server, room_name, screen.display, mode) as runner:
            runner.wait_for_event("track_published", timeout=30)
            await connect(page, viewer_server.url, livekit_server, room_name, "viewer", control=False)
            await wait_for_viewer(page, lambda s: s["framesDecoded"] > 0, timeout=30, what="the picture")
            crosshair = cursors.glyph(XC_CROSSHAIR)
            xdotool(screen.display, "mousemove", "320", "240")
            paint(screen.display, BACKGROUND_2)  # a fresh frame, taken with the pointer in place
            await wait_for_picture(page, [BACKGROUND_2], points=[(0.1, 0.1)], timeout=15, what="the new background")
            await asyncio.sleep(0.5)  # the trailing frame (a change is followed by one more)
            points = pointer_points(crosshair, 320, 240)
            assert len(points) >= 8
            samples = await sample_pixels(page, points)
            assert samples is not None
            differing = [s for s in samples if not color_close(s, BACKGROUND_2)]
            if mode == "viewer":
                assert differing == [], samples
            else:
                assert len(differing) >= len(samples) // 2, samples
    finally:
        cursors.close()
