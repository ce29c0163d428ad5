"""The screen over a slow, delayed, lossy path (tests/netpath.py): it decodes, follows changes,
recovers from a burst of loss, and the runner's bitrate follows LiveKit's estimate under the link.

The runner and Chromium each run in a network namespace this test creates and reach the
livekit-server on the host across their own veth pair, shaped by tbf (1 Mbit/s each way, 100 ms
of queue), and for media through a UDP relay per leg: 40 ms one way and 1 % loss end to end
(seeded). The relays' and tbf's counters show that the media really took that path.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import realenv
from netpath import ImpairedPath, LegRunner, LegViewerServer, Link, chromium_in
from realenv import (
    CHROMIUM_ARGS,
    QUADRANTS,
    SCREEN_POINTS,
    Quadrants,
    mint_token,
    paint,
    viewer_address,
    wait_for_viewer,
)

pytestmark = pytest.mark.integration

PASSPHRASE = "a passphrase for the slow link"
LINK = Link(rate_bps=1_000_000, delay_ms=40, loss=0.01, seed=15)
STARTUP_TIMEOUT_S = 60
# Generous: a loaded 2-core machine; the figures are printed, the bounds only catch "never".
CHANGE_TIMEOUT_S = 20
RECOVERY_TIMEOUT_S = 20
BLACKOUT_S = 1.5
TOLERANCE = 24  # lossy coding at 1 Mbit/s; the patterns differ by >= 200 in some channel
MEDIA_BYTES = 20_000  # at least this much video crossed each leg (solid colours code small)


@pytest.fixture
def path():
    with ImpairedPath(LINK) as impaired:
        yield impaired


@pytest.fixture
async def page(path):
    """The reference viewer in headless Chromium inside the browser's namespace, its page served there."""
    from playwright.async_api import async_playwright

    with LegViewerServer(path.browser_leg) as vs, chromium_in(path.browser_leg) as chromium:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                page.viewer_url = vs.url
                yield page
            finally:
                await browser.close()


async def test_the_picture_decodes_follows_changes_and_recovers_over_a_slow_lossy_link(
        path, xvfb, room_name, page):
    paint(xvfb.display, QUADRANTS)
    lk = path.server
    runner = LegRunner(path.runner_leg, lk, room=room_name, passphrase=PASSPHRASE, display=xvfb.display,
                       extra_env={"RUNNER_LOG__STATUS_INTERVAL_S": "1"})
    with runner:
        runner.wait_for_event("track_published", timeout=STARTUP_TIMEOUT_S)
        await page.goto(viewer_address(page.viewer_url, lk.url_from(path.browser_leg)))
        await page.wait_for_function("() => window.viewer !== undefined", timeout=10_000)
        await page.fill("#token", mint_token(lk.api_key, lk.api_secret, room_name, "viewer"))
        await page.fill("#passphrase", PASSPHRASE)
        await page.click("#connect")
        first = await realenv.wait_for_picture(page, [QUADRANTS.at(x, y) for x, y in SCREEN_POINTS],
                                               timeout=STARTUP_TIMEOUT_S, tolerance=TOLERANCE,
                                               what="the first picture")

        # A change shows.
        changed = Quadrants((250, 250, 0), (0, 0, 0), (120, 0, 200), (10, 200, 90))
        paint(xvfb.display, changed)
        change = await realenv.wait_for_picture(page, [changed.at(x, y) for x, y in SCREEN_POINTS],
                                                timeout=CHANGE_TIMEOUT_S, tolerance=TOLERANCE, what="the change")

        # A burst of loss: every packet both ways is dropped while the screen changes; afterwards
        # the viewer gets the new picture (NACKs cannot repair 1.5 s: a keyframe request must be
        # answered) and stays connected.
        requests_before = sum(e.get("keyframe_requests", 0) for e in runner.events() if e.get("event") == "status")
        path.blackout(BLACKOUT_S)
        after_burst = Quadrants((255, 255, 255), (0, 0, 255), (255, 0, 0), (0, 255, 0))
        paint(xvfb.display, after_burst)
        await asyncio.sleep(BLACKOUT_S)
        burst_ended = time.monotonic()
        recovery = await realenv.wait_for_picture(page, [after_burst.at(x, y) for x, y in SCREEN_POINTS],
                                                  timeout=RECOVERY_TIMEOUT_S, tolerance=TOLERANCE,
                                                  what="the picture after the loss burst")
        recovered_at = time.monotonic()
        state = await wait_for_viewer(page, lambda s: True, timeout=1, what="state")
        await asyncio.sleep(2.5)  # one more status line with the answered request
        counters = path.counters()
        statuses = [e for e in runner.events() if e.get("event") == "status"]

    print(f"link {LINK.label()}: first picture {first:.2f} s, change {change:.2f} s, "
          f"after a {BLACKOUT_S} s blackout {recovered_at - burst_ended:.2f} s; recovery {recovery:.2f} s")
    print(f"counters: {counters}")
    print("status: " + " | ".join(f"{s['bitrate']}/{s['bitrate_target']} k{s['keyframes']} r{s['keyframe_requests']}"
                                  for s in statuses))
    assert state["state"] == "connected" and state["encryptionErrors"] == 0, state

    # The burst asked for a keyframe, and one was sent.
    assert sum(s.get("keyframe_requests", 0) for s in statuses) > requests_before
    assert sum(s.get("keyframes", 0) for s in statuses) >= 2  # the first one and at least one more

    # The encoder's target came down under the link (it starts at 4 Mbit/s): LiveKit's estimate
    # was followed.
    targets = [s["bitrate_target"] for s in statuses]
    assert targets[0] > LINK.rate_bps and max(targets[-3:]) <= LINK.rate_bps, targets

    # The media crossed both legs' relays and tbf queues: up from the runner, down to the browser.
    runner_leg, browser_leg = counters["runner"], counters["browser"]
    assert runner_leg["relay"]["up"]["bytes"] > MEDIA_BYTES, runner_leg
    assert runner_leg["tbf"]["from_ns"]["bytes"] > MEDIA_BYTES, runner_leg
    assert browser_leg["relay"]["down"]["bytes"] > MEDIA_BYTES, browser_leg
    assert browser_leg["tbf"]["to_ns"]["bytes"] > MEDIA_BYTES, browser_leg
    for leg in (runner_leg, browser_leg):
        assert leg["tbf"]["to_ns"]["kind"] == leg["tbf"]["from_ns"]["kind"] == "tbf"
    # Loss was applied on the video's way (the blackout alone drops on every leg and direction).
    assert runner_leg["relay"]["up"]["dropped"] > 0 and browser_leg["relay"]["down"]["dropped"] > 0
    assert runner.returncode == 0


async def test_video_that_never_reaches_livekit_makes_the_runner_join_afresh(xvfb, room_name):
    """The runner's RTP and RTCP to LiveKit dropped while ICE and DTLS go on, so that both ends
    think the connection alive and the SDK notices nothing (as after its own full reconnect, when
    the republished video was seen to go nowhere): with a participant in the room, no receiver
    report on the video for REPORT_WATCH_SILENCE_S makes the runner leave and join afresh. (A
    whole-path blackout is LiveKit's to notice: it drops the participant after 15 s, and the SDK
    resumes.)"""
    from livekit import rtc

    from runner.nackwatch import REPORT_WATCH_SILENCE_S
    from runner.publish import UNREPORTED

    # Over before the new connection's first report is due (REPORT_WATCH_FIRST_S after it).
    dropped_s = REPORT_WATCH_SILENCE_S + 2
    paint(xvfb.display, QUADRANTS)
    with ImpairedPath(Link(rate_bps=None)) as impaired:
        lk = impaired.server
        runner = LegRunner(impaired.runner_leg, lk, room=room_name, passphrase=PASSPHRASE, display=xvfb.display)
        with runner:
            runner.wait_for_event("track_published", timeout=STARTUP_TIMEOUT_S)
            viewer = rtc.Room()
            await viewer.connect(lk.url, mint_token(lk.api_key, lk.api_secret, room_name, "viewer"),
                                 rtc.RoomOptions(auto_subscribe=False))
            try:
                await asyncio.sleep(5)  # announced to the runner (1-3 s), reports flowing
                assert not [e for e in runner.events() if e.get("event") == "livekit_media_unreported"]
                impaired.relays["runner"].drop_media_up(dropped_s)
                await asyncio.sleep(dropped_s + 5)
                events = list(runner.events())
            finally:
                await viewer.disconnect()
    names = [e.get("event") for e in events]
    (unreported,) = [e for e in events if e.get("event") == "livekit_media_unreported"]
    assert REPORT_WATCH_SILENCE_S <= unreported["silent_s"] < REPORT_WATCH_SILENCE_S + 2, unreported
    assert unreported["packets"] >= 5, unreported  # a still screen: a picture a second
    assert [e["reason"] for e in events if e.get("event") == "livekit_disconnected"] == [UNREPORTED]
    assert names.count("track_published") == 2 and names.count("starting") == 1, names
    assert "livekit_reconnecting" not in names  # the SDK itself noticed nothing
    assert runner.returncode == 0
