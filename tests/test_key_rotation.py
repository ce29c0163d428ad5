"""Key indexes and key rotation, end to end: runner -> livekit-server -> Chromium viewer.

``e2ee.key_index`` selects the key index frames are encrypted at. A new passphrase in the key file
plus SIGHUP rotates the running runner to that key at the next index. A viewer that holds only the
old key stops showing the screen; once given the new key at the new index
(``window.viewer.setKey``) it decrypts again, without reconnecting. Both frame engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import pytest

from realenv import (
    QUADRANTS,
    SCREEN_POINTS,
    Runner,
    color_close,
    mint_token,
    paint,
    quadrant_colours,
    sample_pixels,
    viewer_link,
    viewer_state,
    wait_for_picture,
    wait_for_viewer,
)

if TYPE_CHECKING:
    from playwright.async_api import Page

    from realenv import LiveKitServer, ViewerServer, Xvfb

pytestmark = pytest.mark.integration

PASSPHRASE_A = "rotation test, first passphrase"
PASSPHRASE_B = "rotation test, second passphrase"
STARTUP_TIMEOUT_S = 25
# After the new key is set, Chrome decodes again from the next IDR it can parse; it asks for one
# itself about every 3 s. The runner engine's IDRs always parse (about 2.3 s to recover). With the
# sdk engine each IDR has a 1 in 2 chance of being dropped by Chrome before decryption (see
# docs/e2ee.md, "Choosing IVs for H.264 receivers in Chrome"), so recovery takes 2.3 + 3k s;
# 25 s leaves it 7 more tries (all failing: < 1 %).
RECOVERY_TIMEOUT_S = 25
# How long we watch that nothing is shown under a key the viewer does not have.
WRONG_KEY_WATCH_S = 3
# How long we watch, after recovering, that no decryption errors come back.
QUIET_WATCH_S = 3
# The viewer's state is refreshed every 250 ms (and can lag the picture); time to catch up.
STATE_LAG_S = 0.6
# Frames under the old key that may still arrive late (retransmitted) while we watch.
LATE_FRAMES = 1
AFTER_ROTATION = (200, 30, 30)
AFTER_NEW_KEY = (30, 30, 200)


@pytest.fixture(params=["runner", "sdk"])
def frame_engine(request: pytest.FixtureRequest) -> str:
    engine: str = request.param
    return engine


@contextlib.contextmanager
def running(livekit_server: LiveKitServer, xvfb: Xvfb, room: str, frame_engine: str, *, passphrase: str = "",
            extra_env: dict[str, str] | None = None) -> Iterator[Runner]:
    """A runner for the test; its log is printed at the end (pytest shows it on failure), and it
    must stop cleanly."""
    runner = Runner.joining(
        livekit_server, room=room, passphrase=passphrase, display=xvfb.display,
        extra_env={"RUNNER_E2EE__FRAME_ENGINE": frame_engine, "RUNNER_LOG__STATUS_INTERVAL_S": "2",
                   **(extra_env or {})},
    )
    with runner:
        try:
            yield runner
        finally:
            print("--- runner log ---")
            print(runner.log_path.read_text(errors="replace")[-6000:])
    assert runner.returncode == 0, "runner did not stop cleanly"


async def open_viewer_at(page: Page, viewer_url: str, livekit_server: LiveKitServer, room: str, passphrase: str,
                         key_index: int) -> None:
    """Load the viewer with a link that connects on load, its key at ``key_index``."""
    token = mint_token(livekit_server.api_key, livekit_server.api_secret, room, "viewer")
    link = viewer_link(viewer_url, livekit_server.url, token, passphrase)  # passphrase in #fragment
    await page.goto(f"{link}&{urlencode({'keyIndex': key_index})}")
    await page.wait_for_function("() => window.viewer !== undefined", timeout=10_000)


def quadrants() -> list[tuple[int, int, int]]:
    return quadrant_colours()


def solid(colour: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    return [colour] * len(SCREEN_POINTS)


async def test_rotating_to_a_new_passphrase_on_sighup(
        livekit_server: LiveKitServer, xvfb: Xvfb, room_name: str, frame_engine: str, page: Page,
        viewer_server: ViewerServer, tmp_path: Path
) -> None:
    key_file = tmp_path / "passphrase"
    key_file.write_text(PASSPHRASE_A + "\n")
    paint(xvfb.display, QUADRANTS)
    # Passphrase from the file only (an empty RUNNER_E2EE__PASSPHRASE means unset).
    with running(livekit_server, xvfb, room_name, frame_engine,
                 extra_env={"RUNNER_E2EE__PASSPHRASE_FILE": str(key_file)}) as runner:
        published = runner.wait_for_event("track_published", timeout=STARTUP_TIMEOUT_S)
        assert (published["frame_engine"], published["key_index"]) == (frame_engine, 0)

        # 1. Passphrase A at index 0 on both sides: the picture.
        await open_viewer_at(page, viewer_server.url, livekit_server, room_name, PASSPHRASE_A, 0)
        await wait_for_picture(page, quadrants(), timeout=STARTUP_TIMEOUT_S, what="the quadrants")
        before = await wait_for_viewer(page, lambda s: s["framesDecoded"] > 0, timeout=5,
                                       what="decoded frames counted")
        assert before["encryptionErrors"] == 0, before["lastError"]

        # 2. Rotate: passphrase B in the file, SIGHUP. Same configured index, so the runner moves
        #    to the next one. A new colour afterwards tells new frames from old ones.
        key_file.write_text(PASSPHRASE_B + "\n")
        runner.process.send_signal(signal.SIGHUP)
        rotated = runner.wait_for_event("e2ee_key_rotated", timeout=10)
        assert rotated["key_index"] == 1
        paint(xvfb.display, AFTER_ROTATION)

        # 3. The viewer holds only A: decoding stops and the new colour never shows. Each frame at
        #    index 1 that reaches the decryptor is reported (at most once a second) as a missing
        #    key. With the sdk engine Chrome may drop the IDR that starts them before decryption
        #    (docs/e2ee.md), and then no error is reported: the frames just stop.
        await asyncio.sleep(STATE_LAG_S)
        frozen = await viewer_state(page)
        deadline = time.monotonic() + WRONG_KEY_WATCH_S
        while time.monotonic() < deadline:
            pixels = await sample_pixels(page, SCREEN_POINTS)
            if pixels:
                matches = sum(color_close(p, AFTER_ROTATION) for p in pixels)
                assert matches < 3, f"a frame under the new key was shown without it: {pixels}"
            await asyncio.sleep(0.1)
        stalled = await viewer_state(page)
        assert stalled["framesDecoded"] <= frozen["framesDecoded"] + LATE_FRAMES, (frozen, stalled)
        assert stalled["state"] == "connected"
        if frame_engine == "runner":  # its IDRs always reach the decryptor
            assert stalled["encryptionErrors"] > 0
        if stalled["encryptionErrors"]:
            assert "missing key at index 1" in stalled["lastError"], stalled["lastError"]

        # 4. Give the viewer B at index 1, without reconnecting: decoding resumes.
        await page.evaluate("([p, i]) => window.viewer.setKey(p, i)", [PASSPHRASE_B, 1])
        waited = await wait_for_picture(page, solid(AFTER_ROTATION), timeout=RECOVERY_TIMEOUT_S,
                                        what="the colour painted after the rotation")
        print(f"{frame_engine}: picture back {waited:.2f} s after setKey")
        paint(xvfb.display, AFTER_NEW_KEY)
        await wait_for_picture(page, solid(AFTER_NEW_KEY), timeout=5,
                               what="the colour painted after the new key")
        recovered = await wait_for_viewer(
            page, lambda s: s["framesDecoded"] > stalled["framesDecoded"], timeout=5,
            what="decoded frames counted again")
        assert recovered["state"] == "connected"

        # 5. And it stays healthy: frames keep coming, no new decryption errors.
        await asyncio.sleep(QUIET_WATCH_S)
        final = await wait_for_viewer(
            page, lambda s: s["framesDecoded"] > recovered["framesDecoded"], timeout=5,
            what="more decoded frames")
        assert final["encryptionErrors"] == recovered["encryptionErrors"], final["lastError"]
        # Neither passphrase leaks into the runner's log or onto the page.
        text = await page.evaluate("() => document.body.innerText + location.href")
        log = runner.log_path.read_text(errors="replace")
        for secret in (PASSPHRASE_A, PASSPHRASE_B):
            assert secret not in text and secret not in log


async def test_a_configured_key_index_is_used_end_to_end(
        livekit_server: LiveKitServer, xvfb: Xvfb, room_name: str, frame_engine: str, page: Page,
        viewer_server: ViewerServer
) -> None:
    paint(xvfb.display, QUADRANTS)
    with running(livekit_server, xvfb, room_name, frame_engine, passphrase=PASSPHRASE_A,
                 extra_env={"RUNNER_E2EE__KEY_INDEX": "3"}) as runner:
        published = runner.wait_for_event("track_published", timeout=STARTUP_TIMEOUT_S)
        assert (published["frame_engine"], published["key_index"]) == (frame_engine, 3)
        # The viewer holds a key at index 3 only, so every frame it shows was encrypted at 3.
        await open_viewer_at(page, viewer_server.url, livekit_server, room_name, PASSPHRASE_A, 3)
        await wait_for_picture(page, quadrants(), timeout=STARTUP_TIMEOUT_S, what="the quadrants")
        first = await wait_for_viewer(page, lambda s: s["framesDecoded"] > 0, timeout=5,
                                      what="decoded frames counted")
        later = await wait_for_viewer(
            page, lambda s: s["framesDecoded"] >= first["framesDecoded"] + 20,
            timeout=STARTUP_TIMEOUT_S, what="20 more decoded frames")
        assert later["state"] == "connected"
        assert later["trackEncrypted"] is True
        assert later["encryptionErrors"] == 0, later["lastError"]


@pytest.mark.filterwarnings("ignore:The HMAC key is 6 bytes long")  # --dev's "secret"
async def test_a_reconnect_after_rotation_keeps_the_rotated_key(
        livekit_server: LiveKitServer, xvfb: Xvfb, room_name: str, frame_engine: str, page: Page,
        viewer_server: ViewerServer, tmp_path: Path
) -> None:
    """The SDK gets the rotated key on every later connection too, not the start-up one."""
    from livekit import api

    key_file = tmp_path / "passphrase"
    key_file.write_text(PASSPHRASE_A + "\n")
    paint(xvfb.display, QUADRANTS)
    with running(livekit_server, xvfb, room_name, frame_engine,
                 extra_env={"RUNNER_E2EE__PASSPHRASE_FILE": str(key_file),
                            "RUNNER_LIVEKIT__RETRY_INITIAL_S": "0.2"}) as runner:
        runner.wait_for_event("track_published", timeout=STARTUP_TIMEOUT_S)
        key_file.write_text(PASSPHRASE_B + "\n")
        runner.process.send_signal(signal.SIGHUP)
        assert runner.wait_for_event("e2ee_key_rotated", timeout=10)["key_index"] == 1

        lk = api.LiveKitAPI(livekit_server.http_url, livekit_server.api_key, livekit_server.api_secret)
        try:
            await lk.room.remove_participant(
                api.RoomParticipantIdentity(room=room_name, identity="desktop-runner"))
        finally:
            await lk.aclose()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while len(published := [e for e in runner.events() if e.get("event") == "track_published"]) < 2:
            assert time.monotonic() < deadline, "the runner did not publish again after removal"
            await asyncio.sleep(0.2)
        assert published[1]["key_index"] == 1

        await open_viewer_at(page, viewer_server.url, livekit_server, room_name, PASSPHRASE_B, 1)
        await wait_for_picture(page, quadrants(), timeout=RECOVERY_TIMEOUT_S,
                               what="the picture under the rotated key after a reconnect")
