"""Remote control from the reference viewer in headless Chromium, through the real LiveKit server,
on a real two-monitor X server (Xorg, dummy driver). Clicks and typing in the viewer are checked
on the X side (pointer position, recorded button and key events), monitor switching by the picture
size the browser decodes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from realenv import Runner, mint_token, video_point, wait_for_viewer
from xorgdummy import XorgDummy
from xrecorder import XRecorder
from xstate import XState

pytestmark = pytest.mark.integration

PASSPHRASE = "browser control passphrase"
ROOM = "browser-control"
POSITION_TOLERANCE_PX = 3  # CSS pixels of the scaled-down picture are about 1.3 screen pixels


@pytest.fixture(scope="module")
def desk() -> Iterator[XorgDummy]:
    with XorgDummy([(1280, 720, 0, 0), (1024, 768, 1280, 0)]) as x:
        yield x


@pytest.fixture(scope="module")
def runner(livekit_server, desk) -> Iterator[Runner]:
    r = Runner(livekit_url=livekit_server.url, api_key=livekit_server.api_key,
               api_secret=livekit_server.api_secret, room=ROOM, passphrase=PASSPHRASE,
               display=desk.display, extra_env={"RUNNER_LOG__STATUS_INTERVAL_S": "0"})
    with r:
        r.wait_for_event("track_published", timeout=30)
        yield r
        print(r.log_path.read_text(errors="replace")[-4000:])



def near(actual: tuple[int, int], expected: tuple[int, int]) -> bool:
    return all(abs(a - e) <= POSITION_TOLERANCE_PX for a, e in zip(actual, expected, strict=True))


async def test_viewer_clicks_types_and_switches_monitor(livekit_server, runner, desk, page, open_viewer) -> None:
    token = mint_token(livekit_server.api_key, livekit_server.api_secret, ROOM, "browser-viewer")
    await open_viewer(page, livekit_server.url, token, PASSPHRASE)
    await wait_for_viewer(page, lambda s: s["framesDecoded"] > 0 and (s.get("control") or {}).get("you"),
                          timeout=20, what="picture and control")
    state = await wait_for_viewer(page, lambda s: len(s["control"]["monitors"]) == 3, timeout=5, what="monitors")
    assert [m["id"] for m in state["control"]["monitors"]] == ["DUMMY0", "DUMMY1", "all"]
    assert state["control"]["selected"] == "DUMMY0"
    xs = XState(desk.display)
    with XRecorder(desk.display) as rec:
        rec.wait_ready()
        # 1. A click in the viewer lands where it was aimed on the first monitor.
        x, y = await video_point(page, 0.25, 0.5)
        await page.mouse.click(x, y)
        press = await asyncio.to_thread(rec.wait_for, lambda e: e["type"] == "button_release", 5)
        assert near((press["x_root"], press["y_root"]), (320, 360)), press
        assert near(xs.pointer(), (320, 360))
        # 2. Typing in the viewer reaches the X screen, shifted characters and Enter included.
        await page.focus("#stage")
        await page.keyboard.type("Hello, World! 42")
        await page.keyboard.press("Enter")
        await asyncio.to_thread(rec.wait_for, lambda e: e["type"] == "key_press" and e.get("char") == "\n", 5)
        assert rec.typed_text() == "Hello, World! 42\n"
        # 3. The monitor list in the page selects the second monitor; the picture follows.
        await page.select_option("#monitor", "DUMMY1")
        state = await wait_for_viewer(page, lambda s: (s["videoWidth"], s["videoHeight"]) == (1024, 768),
                                      timeout=10, what="the second monitor's picture size")
        assert state["control"]["selected"] == "DUMMY1"
        x, y = await video_point(page, 0.5, 0.5)
        await page.mouse.move(x, y)
        assert await asyncio.to_thread(_wait_near, xs, (1280 + 512, 384)), xs.pointer()
    xs.close()
    errors = await page.evaluate("() => window.viewer.state.control.lastError")
    assert errors in (None, "")


def _wait_near(xs: XState, expected: tuple[int, int], timeout: float = 5.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if near(xs.pointer(), expected):
            return True
        time.sleep(0.02)
    return False
