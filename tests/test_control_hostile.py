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
