"""The viewer shows only the runner's screen, and only while it is encrypted with our key.

Anyone with a token that may publish (or the LiveKit server itself) can put a video track into the
room. A fake desktop shown in place of the runner's would make the user click and type into the
real host while looking at something else. Here a second participant publishes an unencrypted
solid-colour "screen" with the LiveKit Python SDK; the viewer must never show its colour: not
before the runner arrives, not next to it, not after the runner's track is gone, and not when the
fake takes the runner's identity.
"""

from __future__ import annotations

import asyncio

import pytest

from realenv import (
    QUADRANTS,
    SCREEN_POINTS,
    Runner,
    SdkScreenPublisher,
    color_close,
    mint_token,
    paint,
    quadrant_colours,
    sample_pixels,
    viewer_state,
    wait_for_picture,
    wait_for_viewer,
)

pytestmark = pytest.mark.integration

PASSPHRASE = "the runner's passphrase, trust test"
RUNNER_IDENTITY = "desktop-runner"  # the runner's default livekit.identity, the viewer's default
FAKE = (230, 140, 20)  # far from every quadrant colour in at least one channel
STARTUP_TIMEOUT_S = 30
WATCH_S = 4
# A runner stopped with SIGTERM leaves the room at once (test_control_policy); the bound is loose
# for a loaded machine.
LEAVE_TIMEOUT_S = 15


async def subscribed_video(page, identity: str, *, timeout: float = 15) -> None:
    """Wait until the viewer's room has subscribed to a video track of ``identity``."""
    await page.wait_for_function(
        """(identity) => {
             const p = window.viewer.room?.remoteParticipants.get(identity);
             return [...(p?.videoTrackPublications.values() ?? [])].some((pub) => pub.track);
           }""", arg=identity, timeout=timeout * 1000)


async def never_shows(page, colour, seconds: float, what: str) -> None:
    """Sample the picture for ``seconds``: not one sample may be ``colour``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        pixels = await sample_pixels(page, SCREEN_POINTS)
        assert not (pixels and any(color_close(p, colour) for p in pixels)), \
            f"{what}: the fake screen {colour} was shown: {pixels}; state {await viewer_state(page)}"
        await asyncio.sleep(0.1)


async def test_viewer_never_shows_a_second_participants_unencrypted_screen(
        livekit_server, room_name, xvfb, page, open_viewer):
    key, secret = livekit_server.api_key, livekit_server.api_secret
    viewer_token = mint_token(key, secret, room_name, "viewer")
    paint(xvfb.display, QUADRANTS)
    async with SdkScreenPublisher(livekit_server.url,
                                  mint_token(key, secret, room_name, "intruder", publish=True),
                                  None, FAKE):
        # 1. Only the fake is in the room: the viewer waits for the host and shows nothing.
        await open_viewer(page, livekit_server.url, viewer_token, PASSPHRASE)
        await subscribed_video(page, "intruder")
        await never_shows(page, FAKE, WATCH_S, "before the runner joined")
        state = await viewer_state(page)
        assert state["screen"] == "waiting", state
        assert state["runner"] == RUNNER_IDENTITY
        assert "intruder" in state["ignoredVideo"]

        # 2. The runner joins: its picture is shown, the fake never.
        runner = Runner(livekit_url=livekit_server.url, api_key=key, api_secret=secret,
                        room=room_name, passphrase=PASSPHRASE, display=xvfb.display)
        with runner:
            runner.wait_for_event("track_published", timeout=STARTUP_TIMEOUT_S)
            await wait_for_picture(page, quadrant_colours(), timeout=STARTUP_TIMEOUT_S,
                                   what="the runner's quadrants")
            state = await wait_for_viewer(page, lambda s: s["control"]["session"], timeout=10,
                                          what="a control session with the runner")
            assert state["screen"] == "shown" and state["publisher"] == RUNNER_IDENTITY
            await never_shows(page, FAKE, 1, "while the runner is shown")
        print("--- runner log ---")
        print(runner.log_path.read_text(errors="replace")[-3000:])

        # 3. The runner left (its track unpublished): no fallback to the fake, ever.
        stopped = asyncio.get_running_loop().time()
        while (await viewer_state(page))["screen"] != "waiting":
            assert asyncio.get_running_loop().time() - stopped < LEAVE_TIMEOUT_S, \
                "the viewer never noticed that the runner left"
            await never_shows(page, FAKE, 0.5, "while the runner was leaving")
        print(f"the viewer saw the runner leave {asyncio.get_running_loop().time() - stopped:.1f} s "
              "after it stopped")
        await never_shows(page, FAKE, WATCH_S, "after the runner's track was unpublished")
        state = await viewer_state(page)
        assert state["screen"] == "waiting" and state["publisher"] == ""
        assert "waiting for the host" in await page.inner_text("#placeholder")


async def test_viewer_never_shows_an_unencrypted_screen_under_the_runners_identity(
        livekit_server, room_name, page, open_viewer):
    key, secret = livekit_server.api_key, livekit_server.api_secret
    async with SdkScreenPublisher(livekit_server.url,
                                  mint_token(key, secret, room_name, RUNNER_IDENTITY, publish=True),
                                  None, FAKE):
        await open_viewer(page, livekit_server.url, mint_token(key, secret, room_name, "viewer"),
                          PASSPHRASE)
        await subscribed_video(page, RUNNER_IDENTITY)
        await never_shows(page, FAKE, WATCH_S, "a fake under the runner's identity")
        state = await viewer_state(page)
        assert state["screen"] == "unencrypted", state
        assert state["trackEncrypted"] is False
        assert (state["videoWidth"], state["videoHeight"]) == (0, 0)  # no picture, not even its size
        assert state["control"]["you"] is False
        assert "not encrypted" in await page.inner_text("#placeholder")
