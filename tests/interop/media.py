"""Real encoded media for the interop suite, made with PyAV: libx264, libx265, libvpx, libopus."""

from __future__ import annotations

from fractions import Fraction
from typing import cast

import av
import numpy as np
from av.video.codeccontext import VideoCodecContext

WIDTH, HEIGHT = 320, 240
FRAME_COUNT = 6
FORCED_KEYFRAME = 3


def desktop_picture(width: int, height: int, tick: int) -> np.ndarray:
    """RGB picture that compresses like a desktop: gradient wallpaper, a window, text, a cursor."""
    rows, cols = np.mgrid[0:height, 0:width]
    picture = np.empty((height, width, 3), np.uint8)
    picture[..., 0] = cols * 255 // width
    picture[..., 1] = rows * 255 // height
    picture[..., 2] = 128
    picture[30 : height - 30, 20 : width - 20] = 235  # window
    glyphs = np.random.default_rng(7).integers(0, 2, size=((height - 80) // 12, (width - 60) // 7))
    for line, row in enumerate(glyphs):
        for column, ink in enumerate(row):
            if ink:
                top, left = 50 + line * 12, 30 + column * 7
                picture[top : top + 8, left : left + 4] = 25
    cursor = (15 + 9 * tick) % (width - 20)
    picture[40:56, cursor : cursor + 10] = 0
    return picture


def encode_video(codec_name: str, options: dict[str, str], *, count: int = FRAME_COUNT,
                 forced_keyframe: int | None = FORCED_KEYFRAME) -> list[tuple[bytes, bool]]:
    """(encoded frame, is key frame) for ``count`` desktop pictures, one forced key frame."""
    # A video encoder by name; PyAV's stubs type only literal codec names precisely.
    context = cast(VideoCodecContext, av.CodecContext.create(codec_name, "w"))
    context.width, context.height = WIDTH, HEIGHT
    context.pix_fmt = "yuv420p"
    context.time_base = Fraction(1, 30)
    context.framerate = Fraction(30)
    context.options = options
    encoded: list[tuple[bytes, bool]] = []
    for tick in range(count):
        frame = av.VideoFrame.from_ndarray(desktop_picture(WIDTH, HEIGHT, tick), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = tick
        if tick == forced_keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        encoded += [(bytes(packet), packet.is_keyframe) for packet in context.encode(frame)]
    encoded += [(bytes(packet), packet.is_keyframe) for packet in context.encode(None)]
    return encoded


def x264_units() -> list[tuple[bytes, bool]]:
    """libx264 access units as the runner encodes them: baseline, zero latency, 4 slices.

    x264 writes SPS/PPS with 4-byte start codes and SEI/slices with 3-byte ones; the first IDR
    carries x264's version SEI.
    """
    return encode_video(
        "libx264",
        {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": "baseline",
            "forced-idr": "1",
            "threads": "1",
            "x264-params": "slices=4:keyint=250",
        },
    )


def x265_units() -> list[tuple[bytes, bool]]:
    """libx265 access units: VPS/SPS/PPS/SEI + IDR, then trailing pictures."""
    return encode_video(
        "libx265",
        {"preset": "ultrafast", "tune": "zerolatency", "x265-params": "log-level=error"},
    )


def vp8_frames() -> list[tuple[bytes, bool]]:
    """libvpx VP8 frames, real-time settings."""
    return encode_video("libvpx", {"deadline": "realtime", "cpu-used": "8"})


def vp9_frames() -> list[tuple[bytes, bool]]:
    """libvpx VP9 frames, real-time settings."""
    return encode_video("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8"})


def opus_packets() -> list[bytes]:
    """20 ms libopus packets of a 440 Hz tone (48 kHz stereo)."""
    context = av.CodecContext.create("libopus", "w")
    context.sample_rate = 48_000
    context.layout = "stereo"
    context.format = "s16"
    context.bit_rate = 64_000
    samples_per_frame = 960
    packets: list[bytes] = []
    for index in range(5):
        t = (np.arange(samples_per_frame) + index * samples_per_frame) / 48_000
        tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]).T.reshape(1, -1), format="s16",
                                           layout="stereo")
        frame.sample_rate = 48_000
        frame.pts = index * samples_per_frame
        packets += [bytes(packet) for packet in context.encode(frame)]
    packets += [bytes(packet) for packet in context.encode(None)]
    return [packet for packet in packets if packet]
