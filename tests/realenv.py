"""Helpers for tests that cross real components: the browser viewer and an SDK publisher.

Process helpers (LiveKit server, Xvfb, the viewer page server, tokens) live in
``scripts/devstack.py`` and are re-exported here, so tests import one module.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

REPO_ROOT = Path(__file__).resolve().parent.parent

from devstack import (  # noqa: E402
    QUADRANTS,
    TMPDIR_ENV,
    ComponentError,
    LiveKitServer,
    Quadrants,
    Runner,
    ViewerServer,
    Xvfb,
    mint_token,
    paint,
    parse_color,
    viewer_address,
    viewer_link,
)

__all__ = [
    "CHROMIUM_ARGS",
    "CHROMIUM_PATH",
    "COLOR_TOLERANCE",
    "QUADRANTS",
    "SCREEN_POINTS",
    "TMPDIR_ENV",
    "ComponentError",
    "LiveKitServer",
    "Quadrants",
    "Runner",
    "SdkScreenPublisher",
    "ViewerServer",
    "Xvfb",
    "color_close",
    "mint_token",
    "paint",
    "parse_color",
    "quadrant_colours",
    "sample_pixels",
    "until",
    "video_point",
    "viewer_address",
    "viewer_link",
    "viewer_state",
    "wait_for_picture",
    "wait_for_viewer",
]

Rgb = tuple[int, int, int]

CHROMIUM_PATH = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
# Root in a container needs --no-sandbox; the rest keeps Chromium off the (closed) network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
]

# Per-channel difference allowed between a painted colour and the decoded video (YUV 4:2:0
# round trip plus lossy coding).
COLOR_TOLERANCE = 40
VIEWER_POLL_S = 0.1


def color_close(actual: Rgb | list[int] | None, expected: Rgb,
                tolerance: int = COLOR_TOLERANCE) -> bool:
    """True when every channel of ``actual`` is within ``tolerance`` of ``expected``."""
    return actual is not None and all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` every 20 ms without blocking the event loop; its last value after
    ``timeout`` seconds (for checks read back from the X server)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


# --- the viewer page ---------------------------------------------------------------------------


async def viewer_state(page: Any) -> dict:
    """A copy of ``window.viewer.state`` (see viewer/viewer.js for the fields)."""
    return await page.evaluate("() => ({ ...window.viewer.state })")


async def sample_pixels(page: Any, points: list[tuple[float, float]]) -> list[list[int]] | None:
    """``window.viewer.samplePixels(points)``: [[r, g, b], ...] or None before the first frame."""
    return await page.evaluate("(points) => window.viewer.samplePixels(points)",
                               [list(p) for p in points])


async def wait_for_viewer(page: Any, condition: Callable[[dict], bool], *, timeout: float,
                          what: str) -> dict:
    """Poll the viewer state until ``condition(state)`` holds; fail with the last state if not."""
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        state = await viewer_state(page)
        if condition(state):
            return state
        await asyncio.sleep(VIEWER_POLL_S)
    raise AssertionError(f"viewer: {what} not reached within {timeout:.0f} s; last state {state}")



# Where tests sample the viewer's picture: the centres of the four quadrants and two corners.
SCREEN_POINTS = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75), (0.05, 0.05), (0.95, 0.95)]


async def video_point(page: Any, fx: float, fy: float) -> tuple[float, float]:
    """Page coordinates of the picture point (fx, fy), 0..1, inside the letterboxed video."""
    point: tuple[float, float] = await page.evaluate("""([fx, fy]) => {
        const v = document.getElementById('screen');
        const r = v.getBoundingClientRect();
        const s = Math.min(r.width / v.videoWidth, r.height / v.videoHeight);
        const w = v.videoWidth * s, h = v.videoHeight * s;
        const left = r.left + (r.width - w) / 2, top = r.top + (r.height - h) / 2;
        return [left + fx * (w - 1), top + fy * (h - 1)];
    }""", [fx, fy])
    return point


def quadrant_colours(points: list[tuple[float, float]] = SCREEN_POINTS) -> list[Rgb]:
    """The colours ``QUADRANTS`` shows at ``points``."""
    return [QUADRANTS.at(x, y) for x, y in points]


async def wait_for_picture(page: Any, expected: list, *, timeout: float, what: str = "the picture",
                           tolerance: int = COLOR_TOLERANCE,
                           points: list[tuple[float, float]] = SCREEN_POINTS) -> float:
    """Seconds until every sample at ``points`` is within ``tolerance`` of ``expected``; fails
    with the last samples and viewer state if that does not happen within ``timeout``."""
    started = time.monotonic()
    pixels = None
    while time.monotonic() - started < timeout:
        pixels = await sample_pixels(page, points)
        if pixels and all(color_close(p, e, tolerance) for p, e in zip(pixels, expected, strict=True)):
            return time.monotonic() - started
        await asyncio.sleep(0.03)
    state = await viewer_state(page)
    raise AssertionError(f"viewer never showed {what} {expected} within {timeout} s; "
                         f"last samples {pixels}; state {state}")

# --- a publisher made with the LiveKit Python SDK ----------------------------------------------


class SdkScreenPublisher:
    """Joins a room with the LiveKit SDK and publishes a solid-colour screen share, E2EE on
    (``passphrase=None``: E2EE off, the frames go out in clear).

    A reference publisher that is not our runner: if the viewer shows its picture, the viewer, the
    server and the E2EE settings are right; unencrypted, it is a fake screen the viewer must never
    show. ``color`` may be changed while it runs.
    """

    def __init__(self, url: str, token: str, passphrase: str | None, color: Rgb, *,
                 size: tuple[int, int] = (640, 360), fps: float = 15.0,
                 codec: str = "H264") -> None:
        self.url, self._token, self._passphrase = url, token, passphrase
        self.color = color
        self.width, self.height = size
        self.fps = fps
        self.codec = codec
        self.room = None
        self._frames_task: asyncio.Task | None = None
        self.frames_sent = 0

    async def __aenter__(self) -> Self:
        from livekit import rtc

        options = rtc.RoomOptions()
        if self._passphrase is not None:
            options = rtc.RoomOptions(encryption=rtc.E2EEOptions(
                key_provider_options=rtc.KeyProviderOptions(shared_key=self._passphrase.encode())))
        self.room = rtc.Room()
        await self.room.connect(self.url, self._token, options)
        self._source = rtc.VideoSource(self.width, self.height, is_screencast=True)
        track = rtc.LocalVideoTrack.create_video_track("screen", self._source)
        # MAINTAIN_RESOLUTION: a busy machine must not make the encoder scale the picture down.
        publish = rtc.TrackPublishOptions(
            source=rtc.TrackSource.SOURCE_SCREENSHARE,
            video_codec=getattr(rtc.VideoCodec, self.codec),
            simulcast=False,
            degradation_preference=rtc.DegradationPreference.MAINTAIN_RESOLUTION,
        )
        await self.room.local_participant.publish_track(track, publish)
        self._frames_task = asyncio.create_task(self._push_frames())
        return self

    async def _push_frames(self) -> None:
        from livekit import rtc

        interval = 1.0 / self.fps
        painted, frame = None, None
        while True:
            if painted != self.color:
                painted = self.color
                pixels = bytes((*painted, 255)) * (self.width * self.height)
                frame = rtc.VideoFrame(self.width, self.height, rtc.VideoBufferType.RGBA, pixels)
            self._source.capture_frame(frame)
            self.frames_sent += 1
            await asyncio.sleep(interval)

    async def __aexit__(self, *exc: object) -> None:
        if self._frames_task is not None:
            self._frames_task.cancel()
            try:
                await self._frames_task
            except asyncio.CancelledError:
                pass
        if self.room is not None:
            await self.room.disconnect()
