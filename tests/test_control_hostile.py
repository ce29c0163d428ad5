"""The runner against a hostile LiveKit server (issue 17): packets delivered the way the SDK
delivers them, reordered, dropped, duplicated, delayed, relabelled or replayed by the server,
with what reaches the keyboard and mouse read back from X. Harness: tests/hostile.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from devstack import Xvfb
from hostile import HostileStack, settings
from xstate import XState

pytestmark = pytest.mark.integration


@pytest.fixture
def screen(xvfb_factory: Callable[..., Xvfb]) -> Xvfb:
    return xvfb_factory(1280, 720)


@pytest.fixture
async def stack(screen: Xvfb) -> AsyncIterator[HostileStack]:
    async with HostileStack(settings(heartbeat_timeout_s=30), screen.display) as s:
        yield s


@pytest.fixture
def xs(screen: Xvfb) -> XState:
    x = XState(screen.display)
    yield x
    x.close()


async def test_replayed_hellos_do_not_evict_the_live_session(stack: HostileStack, xs: XState) -> None:
    """Item 3: the server replays the controller's dr.hello; the controller keeps its session."""
    alice = stack.viewer("alice")
    await stack.hello(alice)
    await stack.call(alice, "dr.control.request")
    for _ in range(10):
        await stack.rpc("dr.hello", alice.hellos[0], "alice")  # answered, but alice never sees it
    xs.warp(3, 3)
    stack.deliver(alice.input({"t": "move", "mon": "screen", "x": 1.0, "y": 1.0}))
    await stack.settle()
    assert xs.pointer() == (1279, 719)
    assert stack.server.policy.controller is not None and stack.server.policy.controller.identity == "alice"


class RecordingRoom:
    """What ``attach`` touches of an rtc.Room, recording the order of registrations."""

    def __init__(self, remote: tuple[str, ...] = ()) -> None:
        self.registered: list[str] = []
        self.handlers: dict[str, object] = {}
        self.remote_participants = {identity: object() for identity in remote}
        self.local_participant = self

    identity = "desktop-runner"

    def on(self, event: str, handler: object) -> None:
        self.handlers[event] = handler

    def register_rpc_method(self, method: str, handler: object) -> None:
        self.registered.append(method)


def test_hello_is_registered_after_every_other_method() -> None:
    """Item 12: a viewer calls dr.hello as soon as the runner is in the room and every method right
    after; registering hello last means an answered hello implies every method is there."""
    from controlfakes import FakeMedia, RecordingInjector
    from controlfakes import screen as layout
    from runner.control.rpc import METHODS
    from runner.control.server import ControlServer

    server = ControlServer(settings(), FakeMedia(layout((0, 0, 8, 8), (0, 0, 8, 8, "s", True))),
                           RecordingInjector())  # type: ignore[arg-type]
    room = RecordingRoom()
    server.attach(room)  # type: ignore[arg-type]
    assert room.registered[-1] == "dr.hello"
    assert sorted(room.registered[:-1]) == sorted(METHODS)
