"""The screen fits the viewer's window (dr.screen.fit), and the statistics overlay, with the
reference viewer in headless Chromium, the real LiveKit server, the runner and Xvfb.

Sizes are read back from the X server (a fresh connection reports the screen as it is now) and
from the browser (the decoded picture's size); the overlay's figures from the page."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from realenv import LiveKitServer, Runner, Xvfb, mint_token, paint, wait_for_viewer
from runner.media.screen_size import FitRequest, fit_size
from xrecorder import XRecorder

pytestmark = pytest.mark.integration

PASSPHRASE = "fit to window passphrase"
LARGEST = (2560, 1600)  # the Xvfb's framebuffer: the largest screen a fit can set
DEVICE_SCALE = 1.25  # a HiDPI viewer: 1.25 device pixels per CSS pixel, 120 dpi
QUIET_ENV = {"RUNNER_LOG__STATUS_INTERVAL_S": "0"}


def x_screen(display: str) -> dict[str, Any]:
    """The X screen now: pixels, millimetres and the Xft.dpi resource (a new connection: the
    screen sizes of an open one are those of when it connected)."""
    from Xlib import Xatom
    from Xlib import display as xdisplay

    d = xdisplay.Display(display)
    try:
        s = d.screen()
        resources = s.root.get_full_property(d.get_atom("RESOURCE_MANAGER"), Xatom.STRING)
        text = resources.value.decode() if resources is not None else ""
        xft = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Xft.dpi:")),
                   None)
        return {"size": (s.width_in_pixels, s.height_in_pixels), "mm": (s.width_in_mms, s.height_in_mms),
                "xft_dpi": xft}
    finally:
        d.close()


async def expected_fit(page: Any) -> tuple[int, int]:
    """What the runner should apply for the viewer's picture area now."""
    width, height, ratio = await page.evaluate("""() => {
        const r = document.getElementById('stage').getBoundingClientRect();
        return [r.width, r.height, window.devicePixelRatio];
    }""")
    request = FitRequest(math.floor(width * ratio + 1e-6), math.floor(height * ratio + 1e-6), ratio)
    size = fit_size(request, max_width=LARGEST[0], max_height=LARGEST[1])
    return size.width, size.height


async def wait_for_x_size(display: str, size: tuple[int, int], timeout: float = 15.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    screen = await asyncio.to_thread(x_screen, display)
    while screen["size"] != size and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        screen = await asyncio.to_thread(x_screen, display)
    assert screen["size"] == size, f"X screen is {screen['size']}, not {size}"
    return screen


@pytest.fixture(scope="module")
def own_screen() -> Iterator[Xvfb]:
    with Xvfb(*LARGEST) as screen:
        yield screen


@pytest.fixture(scope="module")
def resizable_runner(livekit_server: LiveKitServer, own_screen: Xvfb) -> Iterator[tuple[Runner, str]]:
    room = "fit-resizable"
    with Runner.joining(livekit_server, room=room, passphrase=PASSPHRASE, display=own_screen.display,
                        extra_env={**QUIET_ENV, "RUNNER_CAPTURE__RESIZABLE": "true"}) as runner:
        runner.wait_for_event("track_published", timeout=30)
        yield runner, room
        print(runner.log_path.read_text(errors="replace")[-4000:])


async def connect(browser: Any, open_viewer: Any, livekit_server: LiveKitServer, room: str, *,
                  viewport: dict[str, int], scale: float = 1.0) -> Any:
    context = await browser.new_context(viewport=viewport, device_scale_factor=scale)
    page = await context.new_page()
    token = mint_token(livekit_server.api_key, livekit_server.api_secret, room, "fit-viewer")
    await open_viewer(page, livekit_server.url, token, PASSPHRASE)
    await wait_for_viewer(page, lambda s: s["framesDecoded"] > 0 and s["control"]["you"], timeout=30,
                          what="picture and control")
    return page


async def test_the_screen_fits_the_window_at_two_sizes(browser, open_viewer, livekit_server, own_screen,
                                                       resizable_runner) -> None:
    runner, room = resizable_runner
    page = await connect(browser, open_viewer, livekit_server, room, viewport={"width": 1280, "height": 800},
                         scale=DEVICE_SCALE)
    try:
        state = await wait_for_viewer(page, lambda s: s["control"]["resizable"], timeout=5, what="resizable")
        sizes = []
        for viewport in ({"width": 1280, "height": 800}, {"width": 1000, "height": 640}):
            await page.set_viewport_size(viewport)
            want = await expected_fit(page)
            screen = await wait_for_x_size(own_screen.display, want)
            state = await wait_for_viewer(page, lambda s, w=want: (s["videoWidth"], s["videoHeight"]) == w,
                                          timeout=15, what=f"a {want} picture")
            assert state["control"]["fitted"] == {"width": want[0], "height": want[1], "dpi": 120}
            # 120 dpi for a device pixel ratio of 1.25: in the screen's millimetres and Xft.dpi.
            assert round(25.4 * want[0] / screen["mm"][0]) == 120, screen
            assert screen["xft_dpi"] == "120"
            sizes.append(want)
        print("fitted sizes", sizes)
        assert len(set(sizes)) == 2 and all(w < LARGEST[0] and h < LARGEST[1] for w, h in sizes), sizes
        fits = [e for e in runner.events() if e.get("event") == "screen_resized" and e.get("reason") == "dr.screen.fit"]
        assert fits and fits[-1]["screen"] == list(want)
        assert state["control"]["lastError"] == ""
    finally:
        await page.context.close()


def keep_changing(display: str, stop: threading.Event) -> None:
    """Paint the screen another colour every 100 ms until ``stop``: frames to measure."""
    colours = ["#203040", "#405060"]
    i = 0
    while not stop.wait(0.1):
        paint(display, colours[i % 2])
        i += 1


async def test_statistics_overlay_shows_plausible_figures_and_its_keys_stay_local(
        browser, open_viewer, livekit_server, own_screen, resizable_runner) -> None:
    _, room = resizable_runner
    page = await connect(browser, open_viewer, livekit_server, room, viewport={"width": 1280, "height": 800})
    stop = threading.Event()
    painter = threading.Thread(target=keep_changing, args=(own_screen.display, stop), daemon=True)
    try:
        await page.set_viewport_size({"width": 1100, "height": 700})
        # A small recording window in a corner takes the keyboard focus; the rest of the root
        # window (painted) stays visible.
        with XRecorder(own_screen.display, "64x64+0+0") as rec:
            rec.wait_ready()
            painter.start()
            await page.focus("#stage")
            await page.keyboard.press("Control+Alt+Shift+KeyS")
            await page.keyboard.press("KeyX")  # forwarded, unlike the overlay's S
            await asyncio.to_thread(rec.wait_for, lambda e: e["type"] == "key_press" and e.get("char") == "x", 10)
            state = await wait_for_viewer(
                page, lambda s: s["overlay"]["fps"] is not None and s["overlay"]["hostMs"] is not None
                and s["overlay"]["fps"] > 0, timeout=20, what="overlay figures")
            pressed = {e["keysym_name"] for e in rec.events() if e["type"] == "key_press"}
        assert {"Control_L", "Alt_L", "Shift_L", "x"} <= pressed, pressed
        assert not pressed & {"s", "S"}, pressed
        figures = state["overlay"]
        print("overlay figures", figures)
        assert figures["shown"] is True
        assert 0 < figures["hostMs"] < 1000, figures
        assert 0 < figures["fps"] <= 120, figures
        assert 0 < figures["bitrate"] < 100_000_000, figures
        assert 0 <= figures["decodeMs"] < 1000, figures
        assert 0 <= figures["jitterMs"] < 5000, figures
        assert 0 < figures["rttMs"] < 5000, figures
        assert figures["transportRttMs"] is None or 0 <= figures["transportRttMs"] < 5000, figures
        assert 0 <= figures["renderMs"] < 1000, figures
        assert isinstance(figures["framesDropped"], int) and figures["framesDropped"] >= 0, figures
        assert isinstance(figures["hostDropped"], int) and figures["hostDropped"] >= 0, figures
        assert 0 < figures["hostFps"] <= 120, figures
        text = await page.inner_text("#stats-overlay")
        assert await page.is_visible("#stats-overlay")
        assert text.startswith("Host processing: ") and "Host processing: –" not in text, text
        # The button hides it again.
        await page.click("#stats-toggle")
        assert await page.is_hidden("#stats-overlay")
    finally:
        stop.set()
        if painter.is_alive():
            painter.join(5)
        await page.context.close()


# --- a display the runner does not own ------------------------------------------------------------


async def test_a_display_the_runner_does_not_own_is_never_resized(browser, open_viewer, livekit_server,
                                                                  xvfb_factory, room_name) -> None:
    screen = xvfb_factory(1280, 720)
    with Runner.joining(livekit_server, room=room_name, passphrase=PASSPHRASE, display=screen.display,
                        extra_env=QUIET_ENV) as runner:
        runner.wait_for_event("track_published", timeout=30)
        page = await connect(browser, open_viewer, livekit_server, room_name,
                             viewport={"width": 1000, "height": 640})
        try:
            state = await wait_for_viewer(page, lambda s: s["control"]["session"], timeout=5, what="session")
            assert state["control"]["resizable"] is False
            assert await page.inner_text("#fit-hint") == "this host cannot be resized"
            error = await page.evaluate("""() => window.viewer.call('dr.screen.fit', {width: 800, height: 600})
                .then(() => null, (e) => e.code)""")
            assert error == "forbidden"
            await asyncio.sleep(1)  # anything the refusal might have set off has had time to act
            assert (await asyncio.to_thread(x_screen, screen.display))["size"] == (1280, 720)
            state = await wait_for_viewer(page, lambda s: s["videoWidth"] > 0, timeout=5, what="picture")
            assert (state["videoWidth"], state["videoHeight"]) == (1280, 720)
            assert state["control"]["fitted"] is None
        finally:
            await page.context.close()
