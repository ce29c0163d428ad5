"""I420 (yuv420p) helpers for tests: a BGRA picture converted the runner's way, and the planes of
a frame as arrays without row padding."""

from __future__ import annotations

import av
import numpy as np
from av.video.plane import VideoPlane

from runner.media import yuv


def from_bgra(bgra: np.ndarray) -> av.VideoFrame:
    """``bgra`` (h, w, 4) converted with libyuv, as ``ScreenGrabber.grab_picture`` converts."""
    h, w = bgra.shape[:2]
    frame = av.VideoFrame(w, h, "yuv420p")
    yuv.bgra_to_i420(bgra.ctypes.data, bgra.strides[0], w, h, frame)
    return frame


def plane_bytes(plane: VideoPlane) -> np.ndarray:
    """The plane's memory as a flat, writable uint8 array, row padding included (no copy)."""
    # PyAV's stubs do not declare the buffer protocol its planes implement.
    view: np.ndarray = np.frombuffer(plane, np.uint8)  # type: ignore[call-overload]
    return view


def planes(frame: av.VideoFrame) -> list[np.ndarray]:
    """Y, U, V of ``frame``, each (rows, columns), copied out of PyAV's padded rows."""
    out = []
    for i, plane in enumerate(frame.planes):
        w, h = (frame.width, frame.height) if i == 0 else (frame.width // 2, frame.height // 2)
        out.append(plane_bytes(plane).reshape(-1, plane.line_size)[:h, :w].copy())
    return out
