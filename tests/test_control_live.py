"""Remote control against the real LiveKit server and a real X server, with Python viewers.

The runner runs as its own process on Xvfb; viewers are LiveKit Python clients speaking
docs/protocol.md (tests/controlclient.py). What the runner injects is read back from the X server
(pointer position, pressed buttons and keys), never from the runner's own account of it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from livekit import rtc

from controlclient import CallFailed, ControlClient
from devstack import LiveKitServer
from realenv import Runner, Xvfb, mint_token, until
from runner.control import envelope as env
from xrecorder import XRecorder
from xstate import XState

pytestmark = pytest.mark.integration
pytest_plugins = ["xfixtures"]  # xs, recorder

PASSPHRASE = "control tests passphrase"
RUNNER_ID = "desktop-runner"
Join = Callable[..., Awaitable[ControlClient]]  # (identity, passphrase=..., *, e2ee, hello, control)




@pytest.fixture(scope="module")
def screen() -> Iterator[Xvfb]:
    with Xvfb(1280, 720) as x:
        yield x


@pytest.fixture(scope="module")
def runner(livekit_server: LiveKitServer, screen: Xvfb) -> Iterator[Runner]:
    r = Runner(livekit_url=livekit_server.url, api_key=livekit_server.api_key,
               api_secret=livekit_server.api_secret, room="control-live", passphrase=PASSPHRASE,
               display=screen.display, extra_env={"RUNNER_LOG__STATUS_INTERVAL_S": "0",
                                                  "RUNNER_CONTROL__HEARTBEAT_TIMEOUT_S": "1.0"})
    with r:
        r.wait_for_event("track_published", timeout=30)
        yield r
        print("--- runner log ---")
        print(r.log_path.read_text(errors="replace")[-6000:])


@pytest.fixture
def join(livekit_server: LiveKitServer, runner: Runner) -> Iterator[Join]:
    clients: list[ControlClient] = []

    async def make(identity: str, passphrase: str | None = PASSPHRASE, *, e2ee: bool = True,
                   hello: bool = True, control: bool = False) -> ControlClient:
        token = mint_token(livekit_server.api_key, livekit_server.api_secret, "control-live", identity)
        c = await ControlClient.join(livekit_server.url, token, RUNNER_ID, passphrase, e2ee=e2ee)
        clients.append(c)
        if hello:
            await c.hello()
        if control:
            await c.call("dr.control.request")
        return c

    yield make
    _pending_close.extend(clients)


_pending_close: list[ControlClient] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """Clients leave after each test (async teardown: the join fixture itself is sync)."""
    yield
    while _pending_close:
        c = _pending_close.pop()
        if c.session:
            try:
                await c.call("dr.control.release", timeout=2)
            except Exception:
                pass
        await c.close()


async def rejected(c: ControlClient) -> dict[str, int]:
    counts: dict[str, int] = (await c.call("dr.stats"))["input"]["rejected"]
    return counts


async def until_rejected(c: ControlClient, reason: str, count: int, timeout: float = 5.0) -> dict[str, int]:
    """Wait until the runner counts ``count`` drops for ``reason``: the observable proof that the
    messages under test arrived and were dropped (not merely still on their way)."""
    stats = await c.call_until("dr.stats", lambda s: s["input"]["rejected"].get(reason, 0) >= count,
                               timeout=timeout)
    counts: dict[str, int] = stats["input"]["rejected"]
    return counts


async def test_controller_moves_pointer_and_clicks(join: Join, xs: XState) -> None:
    c = await join("ctl-move", control=True)
    await c.send({"t": "move", "mon": "screen", "x": 0.25, "y": 0.75}, reliable=False)
    assert await until(lambda: xs.pointer() == (320, 539)), xs.pointer()
    await c.send({"t": "button", "button": "left", "down": True, "mon": "screen", "x": 1.0, "y": 0.0})
    assert await until(lambda: xs.buttons_down() == {"left"} and xs.pointer() == (1279, 0))
    await c.send({"t": "button", "button": "left", "down": False})
    assert await until(lambda: xs.buttons_down() == set())


async def test_relative_moves_add_up(join: Join, xs: XState) -> None:
    c = await join("ctl-rel", control=True)
    await c.send({"t": "move", "mon": "screen", "x": 0.5, "y": 0.5})
    assert await until(lambda: xs.pointer() == (640, 360))
    for _ in range(10):
        await c.send({"t": "rel", "dx": 7, "dy": -3}, reliable=False)
    assert await until(lambda: xs.pointer() == (710, 330)), xs.pointer()


async def test_unheld_button_is_released_after_the_heartbeat_timeout(join: Join, xs: XState) -> None:
    c = await join("ctl-stuck", control=True)
    await c.send({"t": "button", "button": "right", "down": True})
    assert await until(lambda: xs.buttons_down() == {"right"})
    for _ in range(8):  # heartbeats keep it held past the 1 s timeout
        await c.send({"t": "held", "keys": [], "buttons": ["right"]})
        await asyncio.sleep(0.2)
    assert xs.buttons_down() == {"right"}
    t0 = time.monotonic()
    assert await until(lambda: xs.buttons_down() == set(), timeout=3)  # heartbeats stop
    assert 0.7 < time.monotonic() - t0 < 2.0


async def test_releasing_control_releases_held_buttons(join: Join, xs: XState) -> None:
    c = await join("ctl-release", control=True)
    await c.send({"t": "button", "button": "middle", "down": True})
    assert await until(lambda: xs.buttons_down() == {"middle"})
    assert await c.call("dr.control.release") == {"controller": None, "you": False}
    assert await until(lambda: xs.buttons_down() == set(), timeout=1)


async def test_one_controller_at_a_time(join: Join, xs: XState) -> None:
    first = await join("ctl-first", control=True)
    second = await join("ctl-second")
    with pytest.raises(CallFailed) as caught:
        await second.call("dr.control.request")
    assert caught.value.code == "busy"
    xs.warp(5, 5)
    await second.send({"t": "move", "mon": "screen", "x": 0.5, "y": 0.5})
    assert (await until_rejected(first, "no_control", 1)).get("no_control", 0) >= 1
    assert xs.pointer() == (5, 5)
    push = await second.wait_push(lambda p: p["t"] == "control" and p["controller"] is None, timeout=5) \
        if await first.call("dr.control.release") else None
    assert push == {"t": "control", "controller": None, "you": False}
    assert (await second.call("dr.control.request"))["you"] is True


async def test_plaintext_participant_cannot_move_pointer_or_call(join: Join, xs: XState) -> None:
    """A client without E2EE: its data packets and RPC reach the runner in plaintext."""
    watcher = await join("ctl-watcher", control=True)
    attacker = await join("ctl-plain", None, e2ee=False, hello=False)
    xs.warp(11, 11)
    before = (await rejected(watcher)).get("auth", 0)
    forged = env.seal(b"\x00" * 32, kind=env.KIND_INPUT, key_index=0, session=1, seq=1, sender="ctl-plain",
                      recipient=RUNNER_ID, context=env.DATA_CONTEXT,
                      body=json.dumps({"t": "move", "mon": "screen", "x": 0.5, "y": 0.5}).encode())
    await attacker.raw_send(forged)
    await attacker.raw_send(json.dumps({"t": "move", "mon": "screen", "x": 0.5, "y": 0.5}).encode())
    with pytest.raises(rtc.RpcError):  # 401 unauthenticated, or no answer the attacker can read
        await attacker.raw_call("dr.hello", base64.b64encode(b"\x01\x03" + bytes(60)).decode())
    assert (await until_rejected(watcher, "auth", before + 3)).get("auth", 0) >= before + 3
    assert xs.pointer() == (11, 11)


async def test_participant_without_the_key_cannot_move_pointer(join: Join, xs: XState) -> None:
    """E2EE on with a wrong passphrase: the runner's SDK cannot even decrypt its packets."""
    await join("ctl-watcher2", control=True)
    stranger = await join("ctl-nokey", "not the passphrase", hello=False)
    xs.warp(13, 13)
    body = {"t": "move", "mon": "screen", "x": 0.9, "y": 0.9}
    await stranger.raw_send(stranger.seal(env.KIND_INPUT, env.DATA_CONTEXT, body, session=1))
    with pytest.raises(rtc.RpcError) as caught:  # the hello itself never reaches the runner: no answer
        await stranger.hello()
    assert caught.value.code in (rtc.RpcError.ErrorCode.RESPONSE_TIMEOUT, rtc.RpcError.ErrorCode.CONNECTION_TIMEOUT)
    # The runner's SDK cannot decrypt the stranger's packets, so nothing arrives to be counted;
    # the hello's timeout (seconds after the move was sent on the same ordered channel) is the wait.
    assert xs.pointer() == (13, 13)


async def test_replayed_and_unknown_session_messages_are_dropped(join: Join, xs: XState) -> None:
    c = await join("ctl-replay", control=True)
    move_a = c.seal(env.KIND_INPUT, env.DATA_CONTEXT, {"t": "move", "mon": "screen", "x": 0.0, "y": 0.0})
    await c.raw_send(move_a)
    assert await until(lambda: xs.pointer() == (0, 0))
    await c.send({"t": "move", "mon": "screen", "x": 1.0, "y": 1.0})
    assert await until(lambda: xs.pointer() == (1279, 719))
    before = await rejected(c)
    await c.raw_send(move_a)  # replay
    stale = env.seal(c.key, kind=env.KIND_INPUT, key_index=0, session=c.session ^ 1, seq=10_000,
                     sender=c.identity, recipient=RUNNER_ID, context=env.DATA_CONTEXT,
                     body=b'{"t":"move","mon":"screen","x":0.5,"y":0.5}')
    await c.raw_send(stale)
    # "unknown_session" once LiveKit has announced us to the runner, "auth" before (no sender yet)
    def dropped(r: dict[str, int]) -> int:
        return r.get("unknown_session", 0) + r.get("auth", 0)

    deadline = time.monotonic() + 5
    while (((after := await rejected(c)).get("replay", 0) <= before.get("replay", 0)
            or dropped(after) <= dropped(before)) and time.monotonic() < deadline):
        await asyncio.sleep(0.05)  # both drops counted: both packets arrived
    assert xs.pointer() == (1279, 719)
    assert after.get("replay", 0) == before.get("replay", 0) + 1
    assert dropped(after) == dropped(before) + 1


async def test_monitor_list_and_unknown_monitor(join: Join, xs: XState) -> None:
    c = await join("ctl-monitors", control=True)
    listed = await c.call("dr.monitors.list")
    assert listed == {"monitors": [{"id": "screen", "name": "screen", "x": 0, "y": 0, "width": 1280,
                                    "height": 720, "primary": True, "scale": 1.0}], "selected": "screen"}
    with pytest.raises(CallFailed) as caught:
        await c.call("dr.monitors.select", {"id": "HDMI-9"})
    assert caught.value.code == "unknown_monitor"
    xs.warp(17, 17)
    before = (await rejected(c)).get("unknown_monitor", 0)
    await c.send({"t": "move", "mon": "HDMI-9", "x": 0.5, "y": 0.5})
    assert (await until_rejected(c, "unknown_monitor", before + 1)).get("unknown_monitor", 0) == before + 1
    assert xs.pointer() == (17, 17)


async def test_rpc_basics(join: Join) -> None:
    c = await join("ctl-rpc")
    assert (await c.call("dr.ping", {"t": 42}))["t"] == 42
    assert await c.call("dr.keyframe") == {}
    with pytest.raises(CallFailed) as caught:
        await c.call("dr.quality.set", {"fps": 10})
    assert caught.value.code == "no_control"
    with pytest.raises(CallFailed) as caught:
        await c.call("dr.ping", {"t": "soon"})
    assert caught.value.code == "bad_request"
    with pytest.raises(CallFailed) as caught:
        await c.call("dr.clipboard.get")
    assert caught.value.code in ("no_control",)


def _rss_kb(pid: int | None) -> int:
    assert pid is not None, "the runner is not running"
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_hostile_flood_through_livekit_neither_crashes_nor_injects(join: Join, xs: XState,
                                                                        runner: Runner) -> None:
    """Thousands of forged, replayed, malformed and oversized packets through the real server."""
    import random

    watcher = await join("ctl-flood-watch")
    attacker = await join("ctl-flood", control=True)  # a key holder's session: replays of its messages
    valid = attacker.seal(env.KIND_INPUT, env.DATA_CONTEXT, {"t": "move", "mon": "screen", "x": 0.5, "y": 0.5})
    await attacker.raw_send(valid)
    assert await until(lambda: xs.pointer() == (640, 360))
    xs.warp(21, 21)
    rng = random.Random(7)
    move = b'{"t":"move","mon":"screen","x":0.9,"y":0.9}'
    rss_before = _rss_kb(runner.pid)
    sent = 0
    for i in range(3000):
        kind = i % 5
        if kind == 0:
            payload = rng.randbytes(rng.randrange(0, 4096))
        elif kind == 1:
            payload = valid  # replay
        elif kind == 2:
            payload = env.seal(rng.randbytes(32), kind=1, key_index=0, session=attacker.session, seq=10**6 + i,
                               sender=attacker.identity, recipient=RUNNER_ID, context=env.DATA_CONTEXT, body=move)
        elif kind == 3:
            payload = env.seal(attacker.key, kind=1, key_index=0, session=attacker.session, seq=10**6 + i,
                               sender="someone-else", recipient=RUNNER_ID, context=env.DATA_CONTEXT, body=move)
        else:
            payload = rng.randbytes(5000)  # over the 4096-byte limit
        await attacker.raw_send(payload, reliable=bool(i % 2))
        sent += 1
        if i % 100 == 99:
            await asyncio.sleep(0.05)  # stay near the per-sender rate limit, so most reach the crypto
    stats = await watcher.call_until(  # still answering, and the flood has arrived and been dropped
        "dr.stats", lambda s: sum(s["input"]["rejected"].values()) >= sent * 0.9)
    assert xs.pointer() == (21, 21)
    assert runner.returncode is None
    rejected_total = sum(stats["input"]["rejected"].values())
    assert rejected_total >= sent * 0.9, stats["input"]  # lossy ones may be lost on the way
    growth_kb = _rss_kb(runner.pid) - rss_before
    print(f"runner RSS growth over {sent} hostile packets: {growth_kb} kB; rejected: {stats['input']['rejected']}")
    assert growth_kb < 20_000


@pytest.fixture(scope="module")
def clip_runner(livekit_server: LiveKitServer) -> Iterator[tuple[Runner, Xvfb]]:
    with Xvfb(640, 480) as x:
        r = Runner(livekit_url=livekit_server.url, api_key=livekit_server.api_key,
                   api_secret=livekit_server.api_secret, room="control-clip", passphrase=PASSPHRASE,
                   display=x.display, extra_env={"RUNNER_LOG__STATUS_INTERVAL_S": "0",
                                                 "RUNNER_CLIPBOARD__MODE": "both"})
        with r:
            r.wait_for_event("track_published", timeout=30)
            yield r, x


async def test_clipboard_both_ways_checked_with_xclip(livekit_server: LiveKitServer,
                                                      clip_runner: tuple[Runner, Xvfb]) -> None:
    import subprocess

    _runner, x = clip_runner
    token = mint_token(livekit_server.api_key, livekit_server.api_secret, "control-clip", "clip-viewer")
    c = await ControlClient.join(livekit_server.url, token, RUNNER_ID, PASSPHRASE)
    _pending_close.append(c)
    await c.hello()
    with pytest.raises(CallFailed) as caught:
        await c.call("dr.clipboard.set", {"text": "no control yet"})
    assert caught.value.code == "no_control"
    await c.call("dr.control.request")
    assert await c.call("dr.clipboard.set", {"text": "vom Betrachter: Grüße ✓"}) == {}
    out = subprocess.run(["xclip", "-selection", "clipboard", "-o"], env={"DISPLAY": x.display},
                         capture_output=True, text=True, timeout=5)
    assert out.stdout == "vom Betrachter: Grüße ✓"
    subprocess.run(["xclip", "-selection", "clipboard", "-i"], input="from the host 🖥", text=True,
                   env={"DISPLAY": x.display}, timeout=5, check=True)
    push = await c.wait_push(lambda p: p["t"] == "clipboard", timeout=5)
    assert push == {"t": "clipboard", "text": "from the host 🖥"}
    assert await c.call("dr.clipboard.get") == {"text": "from the host 🖥"}
    with pytest.raises(CallFailed) as caught:
        await c.call("dr.clipboard.set", {"text": "x" * 65537})
    assert caught.value.code == "bad_request"


async def _typed(rec: XRecorder, text: str, timeout: float = 5.0) -> str:
    await until(lambda: rec.typed_text() == text, timeout)
    return rec.typed_text()


async def test_keys_from_a_german_viewer_type_the_intended_characters(join: Join, recorder: XRecorder,
                                                                      xs: XState) -> None:
    """The host is US; the viewer's layout (German) decides: AltGr+Q is @, Shift+2 is "."""
    c = await join("ctl-keys", control=True)
    events = [
        ("ShiftLeft", "Shift", True, ["Shift"]), ("KeyH", "H", True, ["Shift"]), ("KeyH", "H", False, ["Shift"]),
        ("ShiftLeft", "Shift", False, []),
        ("KeyI", "i", True, []), ("KeyI", "i", False, []),
        ("AltRight", "AltGraph", True, ["AltGraph"]), ("KeyQ", "@", True, ["AltGraph"]),
        ("KeyQ", "@", False, ["AltGraph"]), ("AltRight", "AltGraph", False, []),
        ("ShiftLeft", "Shift", True, ["Shift"]), ("Digit2", "\"", True, ["Shift"]), ("Digit2", "\"", False, ["Shift"]),
        ("ShiftLeft", "Shift", False, []),
        ("KeyY", "z", True, []), ("KeyY", "z", False, []),  # QWERTZ: the key at Y types z
        ("Enter", "Enter", True, []), ("Enter", "Enter", False, []),
    ]
    for code, key, down, mods in events:
        await c.send({"t": "key", "code": code, "key": key, "down": down, "mods": mods})
    assert await _typed(recorder, 'Hi@"z\n') == 'Hi@"z\n'
    assert await until(lambda: xs.keycodes_down() == set())


async def test_text_command_types_unicode(join: Join, recorder: XRecorder) -> None:
    c = await join("ctl-text", control=True)
    await c.send({"t": "text", "text": "Grüße, 世界! €5\n"})
    assert await _typed(recorder, "Grüße, 世界! €5\n") == "Grüße, 世界! €5\n"


async def test_a_key_held_without_heartbeat_is_released(join: Join, xs: XState) -> None:
    c = await join("ctl-key-stuck", control=True)
    await c.send({"t": "key", "code": "KeyA", "key": "a", "down": True, "mods": []})
    a = xs.keycode("a")
    assert await until(lambda: a in xs.keycodes_down())
    assert await until(lambda: a not in xs.keycodes_down(), timeout=3)  # 1 s timeout in this runner


async def test_leaving_the_room_releases_held_keys(join: Join, xs: XState) -> None:
    c = await join("ctl-key-leave", control=True)
    await asyncio.sleep(3.0)  # LiveKit announces us to the runner by now, so our leaving is seen
    shift = xs.keycode("Shift_L")
    for _ in range(3):
        await c.send({"t": "key", "code": "ShiftLeft", "key": "Shift", "down": True, "mods": ["Shift"]})
        await c.send({"t": "held", "keys": ["ShiftLeft"], "buttons": []})
    assert await until(lambda: shift in xs.keycodes_down())
    c.session = 0  # no release call at teardown
    await c.room.disconnect()
    assert await until(lambda: shift not in xs.keycodes_down(), timeout=3)


async def test_huge_rpc_payloads_are_refused_before_they_are_buffered(join: Join, runner: Runner) -> None:
    """Issue 17, item 4: RPC payloads ride a data stream that the SDK buffers whole before any
    handler sees it (unbounded: +82 MB resident for 16 MB). The runner bounds the stream to the
    protocol's 128 KiB, so the SDK refuses it while it arrives."""
    watcher = await join("ctl-flood-watch")
    attacker = await join("ctl-flood-rpc", None, e2ee=False, hello=False)
    rss_before = _rss_kb(runner.pid)
    for _ in range(2):
        with pytest.raises(rtc.RpcError):
            await attacker.raw_call("dr.stats", "A" * (16 << 20), timeout=20)
    growth_mb = (_rss_kb(runner.pid) - rss_before) / 1024
    print(f"runner RSS growth after two 16 MB RPC payloads: {growth_mb:.1f} MB")
    assert growth_mb < 16
    assert (await watcher.call("dr.ping", {"t": 1}))["t"] == 1  # still serving
