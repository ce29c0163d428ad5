"""runner.media.h264: skip pictures written into libx264's stream (pure logic, PyAV's decoder)."""

from __future__ import annotations

from collections.abc import Collection
from fractions import Fraction

import av
import numpy as np
import pytest

from runner.bitstream.annexb import h264_nal_type, is_h264_slice, iter_nalu_indices
from runner.bitstream.bits import BitReader, BitWriter
from runner.bitstream.escaping import unescape_rbsp as unescape
from runner.media.encode import H264Encoder
from runner.media.h264 import SkipFrames, sps_profile_level_id

IDR = 5


def picture(width: int, height: int, step: int) -> np.ndarray:
    """A picture that moves with ``step``: every frame differs."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.zeros((height, width, 4), np.uint8)
    img[..., 0] = ((x + 3 * step) % 256).astype(np.uint8)
    img[..., 1] = ((y * 2 + step) % 256).astype(np.uint8)
    img[..., 2] = (step * 37 % 256)
    return img


def decode(stream: list[bytes]) -> list[np.ndarray]:
    decoder = av.CodecContext.create("h264", "r")
    out = []
    for data in stream:
        out += [f.to_ndarray(format="gray") for f in decoder.decode(av.Packet(data))]
    return out


def with_skips(width: int, height: int, frames: int, *, skip_after: Collection[int], idr_at: Collection[int] = (),
               threads: int = 0) -> tuple[list[bytes], list[bytes], list[bool]]:
    """(libx264's stream, the same with skip pictures inserted, which of those are skips)."""
    enc = H264Encoder(width, height, fps=30, bitrate=1_000_000, threads=threads)
    plain = [enc.encode(picture(width, height, i), keyframe=i in idr_at).data for i in range(frames)]
    skips = SkipFrames()
    stream: list[bytes] = []
    is_skip: list[bool] = []
    for i, au in enumerate(plain):
        stream.append(skips.follow(au))
        is_skip.append(False)
        if i in skip_after:
            for _ in range(1 + i % 3):  # one to three in a row
                skip = skips.skip()
                assert skip is not None
                stream.append(skip)
                is_skip.append(True)
    return plain, stream, is_skip


def slice_headers(au: bytes) -> list[tuple[int, int, int]]:
    """(nal_ref_idc, nal_type, frame_num) of every slice; libx264 streams: log2_max_frame_num 4."""
    out = []
    for index in iter_nalu_indices(au):
        nal_type = h264_nal_type(au[index])
        if is_h264_slice(nal_type):
            r = BitReader(unescape(au[index + 1:index + 24]))
            r.ue(), r.ue(), r.ue()
            out.append((au[index] >> 5 & 3, nal_type, r.u(4)))
    return out


@pytest.mark.parametrize("size", [(320, 240), (1920, 1080)])  # 1080p: three slices per picture
def test_skip_pictures_show_the_last_picture_and_leave_the_rest_exactly_as_it_was(size: tuple[int, int]) -> None:
    plain, stream, is_skip = with_skips(*size, 60, skip_after={1, 2, 7, 20, 21, 40, 59}, idr_at={30})
    decoded, reference = decode(stream), decode(plain)
    assert len(decoded) == len(stream) and len(reference) == len(plain)
    assert sum(is_skip) == 16
    real = iter(reference)
    previous: np.ndarray | None = None
    for frame, skip in zip(decoded, is_skip, strict=False):
        expected = previous if skip else next(real)
        assert expected is not None and np.array_equal(frame, expected)
        previous = frame


def test_skip_pictures_are_about_ten_bytes() -> None:
    _, stream, is_skip = with_skips(1920, 1080, 3, skip_after={2})
    assert all(len(au) <= 12 for au, skip in zip(stream, is_skip, strict=False) if skip)


def test_frame_numbers_follow_the_rules_for_reference_pictures() -> None:
    """H.264 7.4.3 without gaps: an IDR is 0, every later reference picture is the previous one
    + 1 (mod 16 here), and all slices of a picture agree; checked over two wraps and an IDR."""
    _, stream, _ = with_skips(640, 360, 50, skip_after={0, 3, 4, 5, 17, 33, 34}, idr_at={25}, threads=3)
    previous: int | None = None
    for au in stream:
        headers = slice_headers(au)
        assert len({h[2] for h in headers}) == 1 and len({h[:2] for h in headers}) == 1
        ref_idc, nal_type, frame_num = headers[0]
        assert ref_idc != 0  # every picture, skips included, is a reference picture
        assert nal_type == IDR or previous is not None  # the stream starts with an IDR
        expected = 0 if nal_type == IDR or previous is None else (previous + 1) % 16
        assert frame_num == expected
        previous = frame_num


def test_streams_that_cannot_take_a_skip_picture_get_none() -> None:
    # preset medium: three reference frames; a skip picture would shift libx264's reference list
    enc = H264Encoder(320, 240, fps=30, bitrate=1_000_000, preset="medium")
    enc.encode(picture(320, 240, 0))
    assert not enc.can_repeat and enc.repeat() is None
    fresh = H264Encoder(320, 240, fps=30, bitrate=1_000_000)
    assert not fresh.can_repeat and fresh.repeat() is None  # nothing to repeat yet
    fresh.encode(picture(320, 240, 0))
    assert fresh.can_repeat and fresh.repeat() is not None


def test_an_access_unit_that_cannot_be_renumbered_after_skips_is_refused() -> None:
    enc = H264Encoder(320, 240, fps=30, bitrate=1_000_000)
    w = BitWriter()
    for value in (0, 5, 30):  # first_mb_in_slice, slice_type, pic_parameter_set_id
        w.ue(value)
    w.u(8, 0xFF)
    alien = b"\x00\x00\x00\x01\x41" + w.rbsp()  # a P slice of a PPS (id 30) never seen
    skips = SkipFrames()
    skips.follow(enc.encode(picture(320, 240, 0)).data)
    assert skips.follow(alien) == alien  # no skips yet: passed on, skips off
    assert skips.skip() is None
    skips = SkipFrames()
    skips.follow(enc.encode(picture(320, 240, 1), keyframe=True).data)
    assert skips.skip() is not None
    with pytest.raises(ValueError, match="renumber"):
        skips.follow(alien)


def test_the_encoder_restarts_with_an_idr_when_renumbering_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    enc = H264Encoder(320, 240, fps=30, bitrate=1_000_000)
    enc.encode(picture(320, 240, 0))
    assert enc.repeat() is not None
    failing = enc._skips

    def refuse(au: bytes) -> bytes:
        raise ValueError("cannot renumber an access unit after skip pictures")

    monkeypatch.setattr(failing, "follow", refuse)
    au = enc.encode(picture(320, 240, 1))
    assert au.keyframe and enc._skips is not failing
    assert decode([au.data])  # a whole IDR, decodable on its own


@pytest.mark.parametrize("value", [0, 1, 2, 3, 7, 8, 254, 255, 8160, 65535])
def test_exp_golomb_round_trip(value: int) -> None:
    w = BitWriter()
    w.ue(value)
    w.se(value)
    w.se(-value)
    w.u(5, 19)
    r = BitReader(w.rbsp())
    assert (r.ue(), r.se(), r.se(), r.u(5), r.u(1)) == (value, value, -value, 19, 1)


def test_sps_profile_level_id_reads_the_three_bytes_sdp_names() -> None:
    au = b"\x00\x00\x00\x01\x09\xf0" + b"\x00\x00\x00\x01\x67\x42\xc0\x28\xda" + b"\x00\x00\x01\x68\xce\x3c\x80"
    assert sps_profile_level_id(au) == "42c028"
    assert sps_profile_level_id(b"\x00\x00\x00\x01\x41\x9a\x00") is None


@pytest.mark.parametrize("profile", ["baseline", "high"])
def test_the_quantiser_of_each_picture_is_read_from_its_slice_header(profile: str) -> None:
    """libx264 at a constant quantiser, CAVLC (Baseline) and CABAC (High): every picture the
    skip-picture follower sees, IDR or P, is read at exactly that QP, also after skip pictures."""
    for qp in (18, 36, 51):
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = 320, 240, "yuv420p"
        ctx.time_base = Fraction(1, 30)
        cabac = 1 if profile == "high" else 0
        params = f"qp={qp}:ipratio=1:bframes=0:ref=1:weightp=0:cabac={cabac}:scenecut=0"
        ctx.options = {"profile": profile, "x264-params": params, "tune": "zerolatency"}
        skips = SkipFrames()
        seen = []
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(picture(320, 240, i), format="bgra").reformat(format="yuv420p")
            frame.pts = i
            for packet in ctx.encode(frame):
                skips.follow(bytes(packet))
                seen.append(skips.qp)
            if profile == "baseline" and i == 1:
                assert skips.skip() is not None and skips.qp == qp  # a skip picture does not reset it
        assert seen == [qp] * 4, (profile, qp, seen)


def test_the_quantiser_is_none_for_what_the_reader_does_not_follow() -> None:
    skips = SkipFrames()
    assert skips.qp is None
    enc = H264Encoder(320, 240, fps=30, bitrate=1_000_000)
    skips.follow(enc.encode(picture(320, 240, 0)).data)
    assert isinstance(skips.qp, int)
    skips.follow(b"\x00\x00\x00\x01\x09\xf0")  # an access unit delimiter only: no slice
    assert skips.qp is None
