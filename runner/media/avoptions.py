"""Changing the VBV ceiling of an open PyAV encoder: FFmpeg's ``maxrate`` and ``bufsize``.

The runner's libx264 rate control is a quality target (CRF) capped by LiveKit's bitrate target
through x264's VBV (``runner.media.encode``). The target moves with the receivers' bandwidth
estimate, so the cap must move without reopening the encoder (a new encoder starts with an IDR).
FFmpeg's libx264 wrapper compares ``AVCodecContext.rc_max_rate`` / ``rc_buffer_size`` with x264's
VBV before every frame and reconfigures x264 when they differ; PyAV 18 lets Python set
``bit_rate`` but not these two. So they are written as AVOptions (``av_opt_set``, libavutil, the
copy PyAV loaded) on the AVCodecContext that PyAV holds.

PyAV keeps that pointer in a C field of its ``CodecContext`` object: the first field after the
object header and the Cython method table (``av/codec/context.pxd``). ``RateCap.attach`` reads it
there only after checking that it points at an AVCodecContext (its first field is the AVClass
``avcodec_get_class()`` returns), and checks every write through PyAV's own ``max_bit_rate``
getter; when anything does not hold it returns None and the caller keeps a cap fixed at open.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

import av

# PyObject header (refcount, type) + Cython's vtable pointer; then CodecContext.ptr.
_POINTER_OFFSET = object.__basicsize__ + ctypes.sizeof(ctypes.c_void_p)


def _pyav_library(stem: str) -> ctypes.CDLL | None:
    """The FFmpeg library PyAV itself loaded (bundled in its wheel, else the system's)."""
    bundled = sorted((Path(av.__file__).parent.parent / "av.libs").glob(f"lib{stem}-*.so*"))
    name = str(bundled[0]) if bundled else ctypes.util.find_library(stem)
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


AV_OPT_SEARCH_CHILDREN = 1  # libavutil/opt.h: also the codec's private options (libx264's crf)


class RateCap:
    """Writes ``maxrate`` and ``bufsize`` of one open encoder, and libx264's ``crf``; libx264
    applies them (x264_encoder_reconfig) from the next frame on."""

    def __init__(self, ctx: av.CodecContext, pointer: int, avutil: ctypes.CDLL) -> None:
        self._ctx = ctx  # keeps the AVCodecContext alive as long as this object
        self._pointer = ctypes.c_void_p(pointer)
        self._av_opt_set = avutil.av_opt_set
        self._av_opt_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
        self._av_opt_set.restype = ctypes.c_int
        self._av_opt_get_double = avutil.av_opt_get_double
        self._av_opt_get_double.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                            ctypes.POINTER(ctypes.c_double)]
        self._av_opt_get_double.restype = ctypes.c_int

    @classmethod
    def attach(cls, ctx: av.CodecContext) -> RateCap | None:
        """A RateCap for ``ctx`` (open), or None where this PyAV/FFmpeg cannot be driven so."""
        avcodec, avutil = _pyav_library("avcodec"), _pyav_library("avutil")
        if avcodec is None or avutil is None or type(ctx).__basicsize__ < _POINTER_OFFSET + 8:
            return None
        pointer = ctypes.c_void_p.from_address(id(ctx) + _POINTER_OFFSET).value
        if not pointer or pointer % ctypes.alignment(ctypes.c_void_p):
            return None
        get_class = avcodec.avcodec_get_class
        get_class.restype = ctypes.c_void_p
        if ctypes.c_void_p.from_address(pointer).value != get_class():
            return None
        cap = cls(ctx, pointer, avutil)
        before = ctx.max_bit_rate
        if before is None or not cap._set("maxrate", before):  # a no-op write, read back by PyAV
            return None
        return cap

    def _set(self, name: str, value: float, flags: int = 0) -> bool:
        result: int = self._av_opt_set(self._pointer, name.encode(), str(value).encode(), flags)
        return result == 0

    def set_crf(self, crf: float) -> None:
        """libx264's quality target for the next pictures (FFmpeg compares it with x264's before
        every frame). Raises RuntimeError if FFmpeg refused it or did not keep it."""
        read = ctypes.c_double()
        if not self._set("crf", crf, AV_OPT_SEARCH_CHILDREN) or self._av_opt_get_double(
                self._pointer, b"crf", AV_OPT_SEARCH_CHILDREN, ctypes.byref(read)) != 0 \
                or abs(read.value - crf) > 1e-6:
            raise RuntimeError(f"FFmpeg did not take crf={crf}")

    def set(self, max_bitrate: int, buffer_bits: int) -> None:
        """The new ceiling (bit/s) and VBV buffer (bits). Raises RuntimeError if FFmpeg refused."""
        if not (self._set("bufsize", buffer_bits) and self._set("maxrate", max_bitrate)) \
                or self._ctx.max_bit_rate != max_bitrate:
            raise RuntimeError(f"FFmpeg did not take maxrate={max_bitrate} bufsize={buffer_bits}")
