"""Several monitors (Xorg with the dummy driver, two RandR outputs side by side): the monitor list,
pointer positions on each monitor read back from the X server, switching the captured monitor
without a reconnect, and a layout change at run time pushed to viewers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from controlclient import ControlClient
from devstack import LiveKitServer
from realenv import Runner, mint_token, until
from xorgdummy import XorgDummy
from xstate import XState

pytestmark = pytest.mark.integration

PASSPHRASE = "monitor tests passphrase"
ROOM = "control-monitors"




@pytest.fixture(scope="module")
def desk() -> Iterator[XorgDummy]:
    with XorgDummy([(1280, 720, 0, 0), (1024, 768, 1280, 0)]) as x:
        yield x


@pytest.fixture(scope="module")
def runner(livekit_server: LiveKitServer, desk: XorgDummy) -> Iterator[Runner]:
    r = Runner(livekit_url=livekit_server.url, api_key=livekit_server.api_key,
               api_secret=livekit_server.api_secret, room=ROOM, passphrase=PASSPHRASE,
               display=desk.display, extra_env={"RUNNER_LOG__STATUS_INTERVAL_S": "0"})
    with r:
        r.wait_for_event("track_published", timeout=30)
        yield r
        print(r.log_path.read_text(errors="replace")[-5000:])


@pytest.fixture
async def viewer(livekit_server: LiveKitServer, runner: Runner) -> AsyncIterator[ControlClient]:
    token = mint_token(livekit_server.api_key, livekit_server.api_secret, ROOM, "monitor-viewer")
    c = await ControlClient.join(livekit_server.url, token, "desktop-runner", PASSPHRASE)
    await c.hello()
    await c.call("dr.control.request")
    yield c
    await c.close()


async def test_two_monitors_and_their_union_are_listed(viewer: ControlClient) -> None:
    listed = await viewer.call("dr.monitors.list")
    assert [(m["id"], m["x"], m["y"], m["width"], m["height"], m["primary"]) for m in listed["monitors"]] == [
        ("DUMMY0", 0, 0, 1280, 720, True),
        ("DUMMY1", 1280, 0, 1024, 768, False),
        ("all", 0, 0, 2304, 768, False),
    ]
    assert listed["selected"] == "DUMMY0"


def pointer_at(xs: XState, want: tuple[int, int]) -> Callable[[], bool]:
    return lambda: xs.pointer() == want


async def test_pointer_lands_on_the_named_monitor(viewer: ControlClient, desk: XorgDummy) -> None:
    xs = XState(desk.display)
    try:
        for mon, x, y, expected in [("DUMMY1", 0.0, 0.0, (1280, 0)), ("DUMMY1", 1.0, 1.0, (2303, 767)),
                                    ("DUMMY0", 1.0, 1.0, (1279, 719)), ("DUMMY1", 0.5, 0.25, (1792, 192))]:
            await viewer.send({"t": "move", "mon": mon, "x": x, "y": y})
            assert await until(pointer_at(xs, expected)), (mon, x, y, xs.pointer())
    finally:
        xs.close()


async def test_selecting_a_monitor_switches_capture_without_reconnect(viewer: ControlClient, runner: Runner) -> None:
    published = sum(1 for e in runner.events() if e.get("event") == "track_published")
    keyframes = (await viewer.call("dr.stats"))["keyframes"]
    assert await viewer.call("dr.monitors.select", {"id": "DUMMY1"}) == {
        "selected": "DUMMY1", "width": 1024, "height": 768}
    push = await viewer.wait_push(lambda p: p["t"] == "monitors" and p["selected"] == "DUMMY1")
    assert [m["id"] for m in push["monitors"]] == ["DUMMY0", "DUMMY1", "all"]
    stats = await viewer.call_until("dr.stats", lambda s: (s["width"], s["height"]) == (1024, 768)
                                    and s["keyframes"] > keyframes)
    assert (stats["width"], stats["height"]) == (1024, 768)
    assert stats["keyframes"] > keyframes  # the new size starts with an IDR (a still screen sends ~1 fps)
    assert await viewer.call("dr.monitors.select", {"id": "all"}) == {"selected": "all", "width": 2304, "height": 768}
    assert await viewer.call("dr.monitors.select", {"id": "DUMMY0"}) == {
        "selected": "DUMMY0", "width": 1280, "height": 720}
    assert sum(1 for e in runner.events() if e.get("event") == "track_published") == published  # same track


async def test_layout_change_is_pushed_and_followed(viewer: ControlClient, desk: XorgDummy) -> None:
    await viewer.call("dr.monitors.select", {"id": "DUMMY1"})
    desk.set_layout([(1280, 720, 0, 0), (800, 600, 1280, 100)])
    try:
        push = await viewer.wait_push(
            lambda p: p["t"] == "monitors" and any(m["id"] == "DUMMY1" and m["width"] == 800 for m in p["monitors"]),
            timeout=6)
        assert push["selected"] == "DUMMY1"
        assert next(m for m in push["monitors"] if m["id"] == "DUMMY1")["y"] == 100
        stats = await viewer.call_until("dr.stats", lambda s: (s["width"], s["height"]) == (800, 600))
        assert (stats["width"], stats["height"]) == (800, 600)
    finally:
        desk.set_layout([(1280, 720, 0, 0), (1024, 768, 1280, 0)])
        await viewer.call("dr.monitors.select", {"id": "DUMMY0"})
