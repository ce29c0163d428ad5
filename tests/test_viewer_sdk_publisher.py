"""The viewer against a publisher made with the LiveKit Python SDK, not with our runner.

Proves the viewer page, the LiveKit server setup and the shared-passphrase E2EE settings work end to
end on their own, so a runner test that fails points at the runner.
"""

from __future__ import annotations

import asyncio

import pytest

from realenv import (
    SdkScreenPublisher,
    color_close,
    mint_token,
    sample_pixels,
    viewer_state,
    wait_for_viewer,
)

pytestmark = pytest.mark.integration

PASSPHRASE = "correct horse battery staple"
PUBLISHER = "sdk-publisher"  # the viewer shows only this identity's video: it is the "runner" here
MAGENTA = (220, 40, 160)
TEAL = (20, 170, 150)
SAMPLE_POINTS = [(0.1, 0.1), (0.9, 0.1), (0.5, 0.5), (0.1, 0.9), (0.9, 0.9)]
CONNECT_TIMEOUT_S = 15
PICTURE_TIMEOUT_S = 15
WRONG_KEY_WATCH_S = 5


def tokens(livekit_server, room: str) -> tuple[str, str]:
    """(publisher token, viewer token) for ``room``."""
    key, secret = livekit_server.api_key, livekit_server.api_secret
    return (mint_token(key, secret, room, PUBLISHER, publish=True),
            mint_token(key, secret, room, "viewer"))


async def wait_for_colour(page, colour, *, timeout: float) -> list[list[int]]:
    """Sampled pixels once every sample point shows ``colour``; fails with the last samples."""
    deadline = asyncio.get_running_loop().time() + timeout
    pixels = None
    while asyncio.get_running_loop().time() < deadline:
        pixels = await sample_pixels(page, SAMPLE_POINTS)
        if pixels and all(color_close(p, colour) for p in pixels):
            return pixels
        await asyncio.sleep(0.1)
    raise AssertionError(f"viewer never showed {colour}; last samples {pixels}")


async def test_viewer_decrypts_and_shows_the_publishers_colour(
        livekit_server, room_name, page, open_viewer):
    publisher_token, viewer_token = tokens(livekit_server, room_name)
    async with SdkScreenPublisher(livekit_server.url, publisher_token, PASSPHRASE, MAGENTA):
        await open_viewer(page, livekit_server.url, viewer_token, PASSPHRASE, runner=PUBLISHER)

        first = await wait_for_viewer(
            page, lambda s: s["framesDecoded"] > 0, timeout=PICTURE_TIMEOUT_S,
            what="first decoded frame")
        await wait_for_colour(page, MAGENTA, timeout=PICTURE_TIMEOUT_S)
        later = await wait_for_viewer(
            page, lambda s: s["framesDecoded"] >= first["framesDecoded"] + 10, timeout=10,
            what="10 more decoded frames")

    assert later["state"] == "connected"
    assert later["e2eeEnabled"] is True
    assert later["trackEncrypted"] is True
    assert later["publisher"] == "sdk-publisher"
    assert (later["videoWidth"], later["videoHeight"]) == (640, 360)
    assert later["encryptionErrors"] == 0, later["lastError"]


async def test_viewer_follows_a_colour_change(livekit_server, room_name, page, open_viewer):
    publisher_token, viewer_token = tokens(livekit_server, room_name)
    async with SdkScreenPublisher(livekit_server.url, publisher_token, PASSPHRASE,
                                  MAGENTA) as publisher:
        await open_viewer(page, livekit_url=livekit_server.url, token=viewer_token,
                          passphrase=PASSPHRASE, runner=PUBLISHER)
        await wait_for_colour(page, MAGENTA, timeout=PICTURE_TIMEOUT_S)

        publisher.color = TEAL

        await wait_for_colour(page, TEAL, timeout=5)


async def test_viewer_with_a_wrong_passphrase_reports_errors_and_shows_no_picture(
        livekit_server, room_name, page, open_viewer):
    publisher_token, viewer_token = tokens(livekit_server, room_name)
    async with SdkScreenPublisher(livekit_server.url, publisher_token, PASSPHRASE, MAGENTA):
        await open_viewer(page, livekit_server.url, viewer_token, "not the passphrase", runner=PUBLISHER)

        state = await wait_for_viewer(
            page, lambda s: s["encryptionErrors"] > 0, timeout=PICTURE_TIMEOUT_S,
            what="a reported decryption error")
        assert state["state"] == "connected"
        assert state["lastError"]

        # Watch for a while: not one sample may ever show the publisher's colour.
        loop = asyncio.get_running_loop()
        end = loop.time() + WRONG_KEY_WATCH_S
        while loop.time() < end:
            pixels = await sample_pixels(page, SAMPLE_POINTS)
            assert not (pixels and any(color_close(p, MAGENTA) for p in pixels)), pixels
            await asyncio.sleep(0.2)
        final = await viewer_state(page)

    assert final["framesDecoded"] == 0
    assert final["screen"] == "undecryptable"


async def test_viewer_keeps_token_and_passphrase_out_of_the_address_bar_and_the_page(
        livekit_server, room_name, page, open_viewer):
    _, viewer_token = tokens(livekit_server, room_name)
    await open_viewer(page, livekit_server.url, viewer_token, PASSPHRASE, runner=PUBLISHER)
    await wait_for_viewer(page, lambda s: s["state"] == "connected", timeout=CONNECT_TIMEOUT_S,
                          what="connected")

    shown_text = await page.inner_text("body")
    assert viewer_token not in page.url
    assert "passphrase" not in page.url
    assert viewer_token not in shown_text
    assert PASSPHRASE not in shown_text
