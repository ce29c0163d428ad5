"""Control policy and shutdown, each with its own runner: allowed identities, view-only, and
held input released when the runner stops."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from livekit import rtc

from controlclient import CallFailed, ControlClient
from devstack import LiveKitServer
from realenv import Runner, Xvfb, mint_token, until
from xstate import XState

pytestmark = pytest.mark.integration

PASSPHRASE = "policy tests passphrase"
Start = Callable[..., tuple[Runner, Xvfb]]  # (**RUNNER_* environment) -> a runner on its own Xvfb
MakeViewer = Callable[[str], Awaitable[ControlClient]]


@pytest.fixture
def start(livekit_server: LiveKitServer, room_name: str) -> Iterator[Start]:
    made: list[tuple[Runner, Xvfb]] = []

    def make(**env: str) -> tuple[Runner, Xvfb]:
        x = Xvfb(640, 480)
        r = Runner(livekit_url=livekit_server.url, api_key=livekit_server.api_key,
                   api_secret=livekit_server.api_secret, room=room_name, passphrase=PASSPHRASE,
                   display=x.display, extra_env={"RUNNER_LOG__STATUS_INTERVAL_S": "0", **env})
        made.append((r, x))
        r.wait_for_event("track_published", timeout=30)
        return r, x

    yield make
    for r, x in made:
        r.stop()
        x.stop()


@pytest.fixture
def viewer(livekit_server: LiveKitServer, room_name: str) -> MakeViewer:
    clients: list[ControlClient] = []

    async def make(identity: str) -> ControlClient:
        token = mint_token(livekit_server.api_key, livekit_server.api_secret, room_name, identity)
        c = await ControlClient.join(livekit_server.url, token, "desktop-runner", PASSPHRASE)
        clients.append(c)
        await c.hello()
        return c

    return make


async def test_only_allowed_identities_may_take_control(start: Start, viewer: MakeViewer) -> None:
    start(RUNNER_CONTROL__ALLOWED_IDENTITIES='["boss"]')
    intruder = await viewer("intruder")
    with pytest.raises(CallFailed) as caught:
        await intruder.call("dr.control.request")
    assert caught.value.code == "forbidden"
    boss = await viewer("boss")
    assert await boss.call("dr.control.request") == {"controller": "boss", "you": True}
    await intruder.close()
    await boss.close()


async def test_view_only_runner_refuses_control_and_input(start: Start, viewer: MakeViewer) -> None:
    _, x = start(RUNNER_CONTROL__VIEW_ONLY="true")
    xs = XState(x.display)
    xs.warp(3, 3)
    c = await viewer("watcher")
    hello_again = await c.hello()
    assert hello_again["view_only"] is True
    with pytest.raises(CallFailed) as caught:
        await c.call("dr.control.request")
    assert caught.value.code == "forbidden"
    await c.send({"t": "move", "mon": "screen", "x": 0.5, "y": 0.5})
    stats = await c.call_until("dr.stats", lambda s: s["input"]["rejected"] == {"view_only": 1})
    assert stats["input"]["rejected"] == {"view_only": 1}
    assert xs.pointer() == (3, 3)
    xs.close()
    await c.close()


async def test_stopping_the_runner_releases_held_keys_and_buttons(start: Start, viewer: MakeViewer) -> None:
    runner, x = start(RUNNER_CONTROL__HEARTBEAT_TIMEOUT_S="30")
    xs = XState(x.display)
    c = await viewer("holder")
    await c.call("dr.control.request")
    await c.send({"t": "key", "code": "ControlLeft", "key": "Control", "down": True, "mods": ["Control"]})
    await c.send({"t": "button", "button": "left", "down": True})
    ctrl = xs.keycode("Control_L")
    assert await until(lambda: ctrl in xs.keycodes_down() and xs.buttons_down() == {"left"})
    t0 = time.monotonic()
    runner._signal(signal.SIGTERM)
    proc = runner._proc
    assert proc is not None
    assert await asyncio.to_thread(proc.wait, 5) == 0
    stop_s = time.monotonic() - t0
    print(f"SIGTERM to exit 0 with a viewer connected: {stop_s:.2f} s")
    assert stop_s < 3.0  # the bound
    assert ctrl not in xs.keycodes_down() and xs.buttons_down() == set()
    xs.close()
    await c.close()


async def test_key_rotation_ends_old_sessions_and_new_key_holders_take_over(
        start: Start, livekit_server: LiveKitServer, room_name: str, tmp_path: Path) -> None:
    key_file = tmp_path / "passphrase"
    key_file.write_text("first passphrase\n")
    runner, x = start(RUNNER_E2EE__PASSPHRASE="", RUNNER_E2EE__PASSPHRASE_FILE=str(key_file),
                      RUNNER_CONTROL__HEARTBEAT_TIMEOUT_S="30")
    xs = XState(x.display)
    token = mint_token(livekit_server.api_key, livekit_server.api_secret, room_name, "old-holder")
    old = await ControlClient.join(livekit_server.url, token, "desktop-runner", "first passphrase")
    await old.hello()
    await old.call("dr.control.request")
    await old.send({"t": "button", "button": "left", "down": True})
    assert await until(lambda: xs.buttons_down() == {"left"})

    key_file.write_text("second passphrase\n")
    runner._signal(signal.SIGHUP)
    rotated = await asyncio.to_thread(runner.wait_for_event, "e2ee_key_rotated", 10)
    assert rotated["key_index"] == 1
    assert await until(lambda: xs.buttons_down() == set(), timeout=3)  # the old controller's input released

    xs.warp(7, 7)
    await old.send({"t": "move", "mon": "screen", "x": 0.5, "y": 0.5})
    with pytest.raises(rtc.RpcError):  # 401 no_session/unauthenticated: its session ended with the key
        await old.call("dr.ping", {"t": 1}, timeout=3)
    token = mint_token(livekit_server.api_key, livekit_server.api_secret, room_name, "new-holder")
    new = await ControlClient.join(livekit_server.url, token, "desktop-runner", "second passphrase", key_index=1)
    hello = await new.hello()
    assert hello["controller"] is None
    assert (await new.call("dr.control.request"))["you"] is True
    # the old holder's move and ping both arrived and were dropped (the old key index is refused)
    stats = await new.call_until("dr.stats", lambda s: s["input"]["rejected"].get("auth", 0) >= 2)
    assert stats["input"]["rejected"].get("auth", 0) >= 2
    assert xs.pointer() == (7, 7)
    xs.close()
    await old.close()
    await new.close()


async def test_a_stopped_runner_leaves_the_room_at_once(start: Start, viewer: MakeViewer) -> None:
    """SIGTERM closes the LiveKit connection: viewers see the runner leave at once, not when the
    server times it out (about 20 s; the connection was left open before)."""
    runner, _ = start()
    c = await viewer("watcher")
    left = asyncio.Event()
    c.room.on("participant_disconnected",
              lambda p: left.set() if p.identity == "desktop-runner" else None)
    runner._signal(signal.SIGTERM)
    proc = runner._proc
    assert proc is not None
    assert await asyncio.to_thread(proc.wait, 5) == 0
    await asyncio.wait_for(left.wait(), timeout=5.0)
    await c.close()
