"""runner.media.yuv: the system libyuv through ctypes, against the LiveKit SDK's own libyuv."""

from __future__ import annotations

import av
import numpy as np
import pytest
from livekit import rtc

from i420 import plane_bytes, planes
from runner.media import yuv


@pytest.fixture(autouse=True)
def _libyuv_installed() -> None:
    """A missing libyuv fails these tests instead of skipping them (setup.sh installs it)."""
    if yuv.library() is None:
        pytest.fail("libyuv0 is required for these tests (scripts/setup.sh installs it)", pytrace=False)


def photo(width: int, height: int, seed: int = 3) -> np.ndarray:
    """BGRA with gradients and noise: every chroma block differs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 4), np.uint8)
    img[..., 0] = (x * 255 // max(1, width - 1)).astype(np.uint8)
    img[..., 1] = (y * 255 // max(1, height - 1)).astype(np.uint8)
    img[..., 2] = rng.integers(0, 256, (height, width), np.uint8)
    img[..., 3] = 255
    return img


def test_library_is_the_system_libyuv_with_both_functions() -> None:
    lib = yuv.library()
    assert lib is not None and lib.ARGBToI420 and lib.I420Scale


def test_conversion_matches_the_sdk_libyuv() -> None:
    """Same matrix: luma identical, chroma within 1 (the two libyuv versions round averages
    of 2x2 blocks differently)."""
    bgra = photo(320, 180)
    ours = av.VideoFrame(320, 180, "yuv420p")
    yuv.bgra_to_i420(bgra.ctypes.data, bgra.strides[0], 320, 180, ours)
    sdk = np.frombuffer(rtc.VideoFrame(320, 180, rtc.VideoBufferType.BGRA, bgra.data.cast("B"))
                        .convert(rtc.VideoBufferType.I420).data, np.uint8)
    y, u, v = planes(ours)
    assert np.array_equal(y.ravel(), sdk[:320 * 180])
    for ours_plane, theirs in ((u, sdk[320 * 180:320 * 180 + 160 * 90]), (v, sdk[320 * 180 + 160 * 90:])):
        assert np.abs(ours_plane.ravel().astype(int) - theirs).max() <= 1


def test_conversion_at_an_offset_writes_only_that_rectangle() -> None:
    frame = av.VideoFrame(64, 48, "yuv420p")
    for plane in frame.planes:
        plane_bytes(plane)[:] = 7
    white = np.full((10, 12, 4), 255, np.uint8)
    yuv.bgra_to_i420(white.ctypes.data, white.strides[0], 12, 10, frame, x=20, y=8)
    y, u, v = planes(frame)
    assert (y[8:18, 20:32] == 235).all()  # BT.601 limited-range white
    assert (u[4:9, 10:16] == 128).all() and (v[4:9, 10:16] == 128).all()
    y[8:18, 20:32] = 7
    u[4:9, 10:16] = v[4:9, 10:16] = 7
    assert (y == 7).all() and (u == 7).all() and (v == 7).all()


def test_scaling_keeps_a_flat_colour_and_makes_the_target_size() -> None:
    src = av.VideoFrame(1280, 720, "yuv420p")
    for value, plane in zip((81, 90, 240), src.planes, strict=False):  # pure red in BT.601 limited range
        plane_bytes(plane)[:] = value
    dst = yuv.scale_i420(src, av.VideoFrame(640, 360, "yuv420p"))
    y, u, v = planes(dst)
    assert (dst.width, dst.height) == (640, 360)
    assert (y == 81).all() and (u == 90).all() and (v == 240).all()
