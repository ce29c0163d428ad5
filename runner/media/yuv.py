"""libyuv through ctypes: BGRA -> I420 and I420 scaling straight between our own buffers.

The system's libyuv (Debian/Ubuntu package ``libyuv0``) converts a 1080p BGRA picture in about
0.2 ms, reading it where it lies (the X server's shared-memory image) and writing into the
planes of the frame libx264 encodes: no copy on either side. The LiveKit SDK ships libyuv
too, but only behind its FFI (a copy in, a new buffer out: about 1 ms more per 1080p frame), so
that is the fallback when the system library is missing (``runner.media.encode``).

Both functions use BT.601 limited range, the matrix the encoder's VUI declares.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache

import av

LIBRARY = "libyuv.so.0"
FILTER_BOX = 3  # libyuv FilterMode kFilterBox: area averaging when shrinking, for text


class YuvError(RuntimeError):
    """libyuv rejected a conversion (bad size or stride)."""


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The loaded libyuv, or None when it is not installed (callers fall back)."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("yuv") or LIBRARY)
        convert, scale = lib.ARGBToI420, lib.I420Scale
    except (OSError, AttributeError):
        return None
    p, i = ctypes.c_void_p, ctypes.c_int
    convert.argtypes = [p, i, p, i, p, i, p, i, i, i]
    convert.restype = i
    scale.argtypes = [p, i, p, i, p, i, i, i, p, i, p, i, p, i, i, i, i]
    scale.restype = i
    return lib


def _planes(frame: av.VideoFrame, x: int = 0, y: int = 0) -> list[int]:
    """(pointer, stride) of the Y, U, V planes of an I420 frame, from pixel (x, y) (even)."""
    out: list[int] = []
    for index, plane in enumerate(frame.planes):
        shift = 1 if index else 0
        out += [plane.buffer_ptr + (y >> shift) * plane.line_size + (x >> shift), plane.line_size]
    return out


def bgra_to_i420(src: int, stride: int, width: int, height: int, dst: av.VideoFrame, x: int = 0, y: int = 0) -> None:
    """Convert ``width`` x ``height`` BGRA pixels at address ``src`` (``stride`` bytes per row)
    into ``dst`` (yuv420p) with their top-left corner at (x, y); sizes and x, y even."""
    lib = library()
    assert lib is not None, "bgra_to_i420 called without libyuv"
    if lib.ARGBToI420(src, stride, *_planes(dst, x, y), width, height) != 0:
        raise YuvError(f"ARGBToI420 rejected a {width}x{height} picture (stride {stride})")


def scale_i420(src: av.VideoFrame, dst: av.VideoFrame) -> av.VideoFrame:
    """Scale one yuv420p frame into another of a different size (box filter); returns dst."""
    lib = library()
    assert lib is not None, "scale_i420 called without libyuv"
    if lib.I420Scale(*_planes(src), src.width, src.height, *_planes(dst), dst.width, dst.height, FILTER_BOX) != 0:
        raise YuvError(f"I420Scale rejected {src.width}x{src.height} -> {dst.width}x{dst.height}")
    return dst
