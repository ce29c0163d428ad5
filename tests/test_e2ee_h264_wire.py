"""H.264 slice header fields that libwebrtc parses before decrypting stay intact on the wire.

Chrome's SPS/PPS tracker reads pic_parameter_set_id from the encrypted frame; for an x264 IDR
that field lies past LiveKit's clear bytes, so encrypt_frame picks an IV under which it reads
the same (see runner.e2ee.frame._h264_parsed_bits_past_clear). Without that, half of all IDRs
are dropped by the browser.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from runner import e2ee
from runner.bitstream.annexb import normalize_start_codes
from runner.e2ee.frame import clear_header_length

KEY = e2ee.derive_key("wire-bits")
TRIALS = 200


def slice_header_fields(frame: bytes) -> tuple[int, int, int]:
    """(first_mb_in_slice, slice_type, pic_parameter_set_id) of the first slice, as a receiver
    reads them from the bytes on the wire, encrypted or not."""
    clear, _ = clear_header_length(frame, codec="h264")
    bits = "".join(f"{b:08b}" for b in frame[clear - 1 : clear + 7])
    values, pos = [], 0
    for _ in range(3):
        zeros = len(bits[pos:]) - len(bits[pos:].lstrip("0"))
        values.append(int(bits[pos + zeros : pos + 2 * zeros + 1], 2) - 1)
        pos += 2 * zeros + 1
    return values[0], values[1], values[2]


@pytest.fixture(scope="module")
def x264_units() -> list[tuple[bytes, bool]]:
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 320, 240, "yuv420p"
    ctx.time_base = Fraction(1, 90_000)
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline"}
    ctx.open()
    units = []
    for i in range(3):
        frame = av.VideoFrame.from_ndarray(np.full((240, 320, 3), 40 * i, np.uint8), format="rgb24")
        frame.pts = i * 3000
        units += [(normalize_start_codes(bytes(p)), bool(p.is_keyframe)) for p in ctx.encode(frame)]
    return units


def test_x264_idr_puts_the_pps_id_past_the_clear_byte(x264_units: list[tuple[bytes, bool]]) -> None:
    idr, keyframe = x264_units[0]
    assert keyframe
    assert slice_header_fields(idr) == (0, 7, 0)  # 1 + 7 bits, then the pps id in ciphertext


def test_encrypted_idr_keeps_its_slice_header_fields_on_the_wire(x264_units: list[tuple[bytes, bool]]) -> None:
    idr, _ = x264_units[0]
    for _ in range(TRIALS):
        wire = e2ee.encrypt_frame(idr, KEY, codec="h264", keyframe=True)
        assert slice_header_fields(wire) == (0, 7, 0)
        assert e2ee.decrypt_frame(wire, KEY, codec="h264", keyframe=True) == idr


def test_encrypted_delta_keeps_its_slice_header_fields_on_the_wire(x264_units: list[tuple[bytes, bool]]) -> None:
    delta, keyframe = x264_units[1]
    assert not keyframe
    for _ in range(TRIALS):
        wire = e2ee.encrypt_frame(delta, KEY, codec="h264")
        assert slice_header_fields(wire) == (0, 5, 0)


def test_ivs_still_differ_between_frames(x264_units: list[tuple[bytes, bool]]) -> None:
    idr, _ = x264_units[0]
    ivs = {e2ee.encrypt_frame(idr, KEY, codec="h264", keyframe=True)[-14:-2] for _ in range(TRIALS)}
    assert len(ivs) == TRIALS
