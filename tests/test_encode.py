"""libx264 encoder and capture helpers: pure logic, no X server."""

from __future__ import annotations

import math

import numpy as np
import pytest

import i420
from runner.bitstream.annexb import h264_nal_types, short_start_code_offsets
from runner.config import EncoderSettings
from runner.media.capture import even_crop
from runner.media.encode import (
    CRF,
    FIRST_IDR_SHARE,
    FIRST_IDR_TRIES,
    FIRST_IDR_VBV_SLACK,
    MOVING_AIM,
    REFINE_CRF,
    REFINE_RATE_SHARE,
    AccessUnit,
    EncoderError,
    EncoderSlot,
    H264Encoder,
    delta_buffer_bits,
    next_moving_crf,
    vbv_buffer_bits,
    vbv_settings,
)

SPS, PPS, IDR, NON_IDR = 7, 8, 5, 1


def picture(width: int, height: int, value: int = 0) -> np.ndarray:
    img = np.zeros((height, width, 4), np.uint8)
    img[..., 0] = value
    img[: height // 2, : width // 2, 1] = 200
    return img


@pytest.fixture
def encoder() -> H264Encoder:
    return H264Encoder(320, 240, fps=30, bitrate=1_000_000)


def test_first_picture_is_an_idr_with_sps_and_pps_in_band(encoder: H264Encoder) -> None:
    au = encoder.encode(picture(320, 240))
    assert au.keyframe
    types = h264_nal_types(au.data)
    assert types[:2] == [SPS, PPS] and IDR in types


def test_next_picture_is_a_delta_frame(encoder: H264Encoder) -> None:
    encoder.encode(picture(320, 240))
    au = encoder.encode(picture(320, 240, 30))
    assert not au.keyframe
    assert NON_IDR in h264_nal_types(au.data) and SPS not in h264_nal_types(au.data)


def test_forced_keyframe_is_an_idr_with_parameter_sets(encoder: H264Encoder) -> None:
    encoder.encode(picture(320, 240))
    encoder.encode(picture(320, 240, 30))
    au = encoder.encode(picture(320, 240, 60), keyframe=True)
    assert au.keyframe
    assert [t for t in h264_nal_types(au.data) if t in (SPS, PPS, IDR)][:3] == [SPS, PPS, IDR]


def test_access_units_use_only_four_byte_start_codes(encoder: H264Encoder) -> None:
    for i in range(5):
        au = encoder.encode(picture(320, 240, 40 * i), keyframe=i == 3)
        assert au.data.startswith(b"\x00\x00\x00\x01")
        # every 00 00 01 is the tail of a 00 00 00 01
        assert all(o > 0 and au.data[o - 1] == 0 for o in short_start_code_offsets(au.data))


def test_no_periodic_keyframes_within_the_safety_interval(encoder: H264Encoder) -> None:
    keyframes = [encoder.encode(picture(320, 240, i)).keyframe for i in range(90)]
    assert keyframes == [True] + [False] * 89


def test_larger_picture_is_scaled_to_the_encoder_size() -> None:
    import av

    enc = H264Encoder(320, 180, fps=30, bitrate=1_000_000)
    big = np.zeros((720, 1280, 4), np.uint8)
    big[:, :640] = (255, 0, 0, 255)  # left half blue (BGRA), right half black
    au = enc.encode(big, keyframe=True)
    (frame,) = av.CodecContext.create("h264", "r").decode(av.Packet(au.data))
    rgb = frame.to_ndarray(format="rgb24")
    assert rgb.shape == (180, 320, 3)
    assert abs(int(rgb[90, 80, 2]) - 255) < 12 and int(rgb[90, 240, 2]) < 12  # the halves land in place


def test_odd_size_encoder_is_refused() -> None:
    with pytest.raises(EncoderError, match="must be positive and even"):
        H264Encoder(321, 240, fps=30, bitrate=1_000_000)


def test_even_crop_drops_the_odd_row_and_column() -> None:
    img = np.arange(5 * 7 * 4, dtype=np.uint32).astype(np.uint8).reshape(5, 7, 4)
    out = even_crop(img)
    assert out.shape == (4, 6, 4)
    assert out.flags["C_CONTIGUOUS"]
    assert np.array_equal(out, img[:4, :6])


def test_even_crop_of_even_picture_is_a_view() -> None:
    img = np.zeros((4, 6, 4), np.uint8)
    assert even_crop(img).base is img or even_crop(img) is img or np.shares_memory(even_crop(img), img)


def test_odd_screen_encodes_after_even_crop() -> None:
    img = even_crop(picture(1921, 1081))
    au = H264Encoder(img.shape[1], img.shape[0], fps=30, bitrate=2_000_000).encode(img)
    assert au.keyframe and (au.width, au.height) == (1920, 1080)


def test_picture_after_a_forced_keyframe_is_a_delta_frame_again(encoder: H264Encoder) -> None:
    # The converted frame is reused between pictures: a forced IDR must not stick to it.
    kinds = [encoder.encode(picture(320, 240, i), keyframe=i == 2).keyframe for i in range(5)]
    assert kinds == [True, False, True, False, False]


def test_libyuv_conversion_matches_swscale_colours() -> None:
    import av

    # Smooth content: on noise the two subsample chroma differently (libyuv averages 2x2 boxes).
    yy, xx = np.mgrid[0:240, 0:320]
    channels = [xx * 255 // 319, yy * 255 // 239, (xx + yy) * 255 // 558, np.full_like(xx, 255)]
    img = np.stack(channels, -1).astype(np.uint8)
    img[:120, :160] = (0, 255, 0, 255)  # pure green in BGRA
    enc = H264Encoder(320, 240, fps=30, bitrate=1_000_000)
    assert enc.converter == "libyuv"
    mine = enc._to_i420(img)
    ref = av.VideoFrame.from_ndarray(img, format="bgra").reformat(format="yuv420p")
    sizes = ((320, 240), (160, 120), (160, 120))
    for plane_mine, plane_ref, (w, h) in zip(mine.planes, ref.planes, sizes, strict=True):
        a = i420.plane_bytes(plane_mine).reshape(h, plane_mine.line_size)[:, :w].astype(int)
        b = i420.plane_bytes(plane_ref).reshape(h, plane_ref.line_size)[:, :w].astype(int)
        diff = np.abs(a - b)
        # Luma within 2 everywhere; chroma too, except along the block's sharp edge, where
        # swscale's filter reaches into neighbouring samples and libyuv averages 2x2 boxes.
        assert diff.max() <= (2 if w == 320 else 12) and diff.mean() < 1.0
    y, u, v = (i420.plane_bytes(p)[0] for p in mine.planes)
    assert (abs(int(y) - 145), abs(int(u) - 54), abs(int(v) - 34)) <= (1, 1, 1)  # BT.601 limited green


def test_read_only_picture_is_converted_too(encoder: H264Encoder) -> None:
    img = picture(320, 240, 90)
    img.flags.writeable = False
    assert encoder.encode(img).keyframe and encoder.converter == "libyuv"


def test_auto_falls_back_to_libx264_and_says_why_each_hardware_encoder_was_passed_over() -> None:
    # This machine has no GPU: each hardware encoder is tried and refused with a reason.
    from runner.media.encode import HARDWARE_CODECS, choose_codec

    codec, passed_over = choose_codec("auto", fps=30, bitrate=2_000_000, max_bitrate=4_000_000)
    assert codec == "libx264"
    assert list(passed_over) == list(HARDWARE_CODECS)
    assert all(reason and "\n" not in reason and len(reason) <= 200 for reason in passed_over.values())
    assert passed_over["h264_nvenc"].startswith("cannot open h264_nvenc at 320x240: ") or \
        passed_over["h264_nvenc"] == "encoder h264_nvenc is not in this FFmpeg build"


def test_a_named_encoder_is_used_as_asked_and_fails_clearly() -> None:
    from runner.media.encode import choose_codec

    assert choose_codec("libx264", fps=30, bitrate=2_000_000, max_bitrate=4_000_000) == ("libx264", {})
    assert choose_codec("h264_vaapi", fps=30, bitrate=2_000_000, max_bitrate=4_000_000) == ("h264_vaapi", {})
    expected = r"^(cannot open h264_vaapi at 320x240: |encoder h264_vaapi is not in this FFmpeg build$)"
    with pytest.raises(EncoderError, match=expected):
        H264Encoder(320, 240, fps=30, bitrate=1_000_000, codec="h264_vaapi")
    with pytest.raises(EncoderError, match="unknown encoder 'vp8'"):
        H264Encoder(320, 240, fps=30, bitrate=1_000_000, codec="vp8")


def test_a_converted_picture_encodes_to_the_same_bytes_as_its_bgra() -> None:
    """The grab's I420 frame (grab_picture) and the BGRA picture take the same path to x264."""
    pictures = [picture(320, 240, 40 * i) for i in range(4)]
    from_bgra = H264Encoder(320, 240, fps=30, bitrate=1_000_000, threads=1)
    from_i420 = H264Encoder(320, 240, fps=30, bitrate=1_000_000, threads=1)
    for i, bgra in enumerate(pictures):
        a = from_bgra.encode(bgra, keyframe=i == 2)
        b = from_i420.encode(i420.from_bgra(bgra), keyframe=i == 2)
        assert (a.data, a.keyframe) == (b.data, b.keyframe)


def test_a_converted_picture_of_another_size_is_scaled_to_the_encoder() -> None:
    import av

    enc = H264Encoder(320, 180, fps=30, bitrate=1_000_000)
    au = enc.encode(i420.from_bgra(picture(1280, 720)))
    decoder = av.CodecContext.create("h264", "r")
    (frame,) = decoder.decode(av.Packet(au.data))
    assert (frame.width, frame.height) == (320, 180)
    rgb = frame.to_ndarray(format="rgb24")
    assert rgb[20, 20, 1] > 150 and rgb[150, 300, 1] < 40  # the green quarter stayed top-left


# --- EncoderSlot: which encoder writes a picture ---------------------------------------------------


def encoder_settings(codec: str = "libx264") -> EncoderSettings:
    return EncoderSettings.model_validate({"codec": codec, "bitrate": 1_000_000, "min_bitrate": 100_000,
                                           "max_bitrate": 2_000_000})


def test_the_slot_reopens_for_another_size_or_rate_with_an_idr_and_keeps_it_otherwise() -> None:
    slot = EncoderSlot(encoder_settings())
    first = slot.encode(picture(320, 240), 320, 240, fps=30, bitrate=1_000_000, keyframe=False)
    opened = slot.encoder
    second = slot.encode(picture(320, 240, 9), 320, 240, fps=30, bitrate=500_000, keyframe=False)
    assert first.keyframe and not second.keyframe  # the first picture of an encoder is an IDR
    assert slot.encoder is opened and opened is not None and opened.bitrate == 500_000  # no reopen
    smaller = slot.encode(picture(320, 240), 160, 120, fps=30, bitrate=500_000, keyframe=False)
    assert slot.encoder is not opened and smaller.keyframe and (smaller.width, smaller.height) == (160, 120)
    slower = slot.encode(picture(320, 240), 160, 120, fps=15, bitrate=500_000, keyframe=False)
    assert slower.keyframe and slot.encoder is not None and slot.encoder.fps == 15


def test_the_slot_repeats_only_at_its_encoder_size() -> None:
    slot = EncoderSlot(encoder_settings())
    assert not slot.can_repeat(320, 240) and slot.repeat() is None  # nothing encoded yet
    slot.encode(picture(320, 240), 320, 240, fps=30, bitrate=1_000_000, keyframe=False)
    assert slot.can_repeat(320, 240) and not slot.can_repeat(160, 120)
    repeat = slot.repeat()
    assert repeat is not None and not repeat.keyframe and len(repeat.data) <= 12


class FailingHardwareEncoder:
    """Stands in for a hardware encoder whose driver stops working after it opened."""

    codec = "h264_nvenc"

    def __init__(self, width: int, height: int, fps: float, bitrate: int) -> None:
        self.width, self.height, self.fps, self.bitrate = width, height, fps, bitrate

    def encode(self, picture: object, *, keyframe: bool = False, at: float | None = None,
               refine: bool = False) -> AccessUnit:
        raise EncoderError("h264_nvenc failed: device lost")


def test_a_failing_hardware_encoder_is_replaced_by_libx264_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real = H264Encoder.configured

    def configured(cfg: EncoderSettings, width: int, height: int, *, fps: float, bitrate: int,
                   codec: str) -> H264Encoder | FailingHardwareEncoder:
        opened.append(codec)
        if codec == "h264_nvenc":
            return FailingHardwareEncoder(width, height, fps, bitrate)
        return real(cfg, width, height, fps=fps, bitrate=bitrate, codec=codec)

    monkeypatch.setattr(H264Encoder, "configured", staticmethod(configured))
    slot = EncoderSlot(encoder_settings("h264_nvenc"))
    first = slot.encode(picture(320, 240), 320, 240, fps=30, bitrate=1_000_000, keyframe=False)
    assert first.keyframe and slot.encoder is not None and slot.encoder.codec == "libx264"
    slot.encode(picture(320, 240), 160, 120, fps=30, bitrate=1_000_000, keyframe=False)  # a new size
    assert opened == ["h264_nvenc", "libx264", "libx264"]  # the codec is chosen once, then libx264


def test_a_failing_libx264_is_an_error() -> None:
    slot = EncoderSlot(encoder_settings())
    with pytest.raises(EncoderError, match=r"^picture size 321x240 must be positive and even$"):
        slot.encode(picture(320, 240), 321, 240, fps=30, bitrate=1_000_000, keyframe=False)


def test_idrs_get_the_keyframe_budget_and_delta_pictures_a_small_buffer_refilled_in_real_time() -> None:
    target, fps = 2_000_000, 30.0
    full = vbv_buffer_bits(target, 1920, 1080)
    # The encoder's first IDR: the 1.5 s budget, refilled to 90 % of it in one picture (x264
    # counts maxrate / fps), in a buffer three times that (x264 lets one picture take about half
    # of its buffer); a later one (a keyframe request) a quarter of a second.
    assert FIRST_IDR_VBV_SLACK == 3
    assert vbv_settings(target, 1920, 1080, fps, keyframe=True, first=True, elapsed_s=None) == \
        (int(0.9 * full * fps), 3 * full)
    assert vbv_settings(target, 1920, 1080, fps, keyframe=True, elapsed_s=5.0) == (int(0.9 * 500_000 * fps), 500_000)
    # A delta picture up to 2.5 frame times after the previous one (the screen moves): 0.25 s of
    # the target, refilled by the time passed, at least one frame time's worth (maxrate = target).
    for elapsed in (None, 0.0, 1 / fps):
        assert vbv_settings(target, 1920, 1080, fps, keyframe=False, elapsed_s=elapsed) == (target, 500_000)
    assert vbv_settings(target, 1920, 1080, fps, keyframe=False, elapsed_s=2 / fps) == (2 * target, 500_000)
    # After a pause: a change on a still screen 0.05 s of the target, a refinement (a picture
    # of the unchanged screen) 0.2 s; refilled by the time passed (a refinement by 0.6 of the
    # target), at most 90 % of the buffer.
    assert delta_buffer_bits(target, 0.1, fps) == 100_000
    assert delta_buffer_bits(target, 0.1, fps, refine=True) == 400_000
    # A change never gets less than CHANGE_VBV_MIN_BITS, however low the target sank.
    assert delta_buffer_bits(300_000, 0.1, fps) == 32_000
    assert delta_buffer_bits(300_000, 0.1, fps, refine=True) == 60_000
    assert vbv_settings(target, 1920, 1080, fps, keyframe=False, elapsed_s=0.09, refine=True) == \
        (int(REFINE_RATE_SHARE * target * 0.09 * fps), 400_000)
    assert REFINE_RATE_SHARE == 0.6
    assert vbv_settings(target, 1920, 1080, fps, keyframe=False, elapsed_s=0.09) == (int(0.9 * 100_000 * fps), 100_000)
    assert vbv_settings(target, 1920, 1080, fps, keyframe=False, elapsed_s=60.0) == (int(0.9 * 100_000 * fps), 100_000)


def test_while_the_screen_moves_the_crf_is_aimed_at_a_share_of_the_target() -> None:
    """A picture's bits against MOVING_AIM of the target over its time, linearly: on the aim the
    CRF stays; twice the aim +2, half of it -1, nothing -2 (so pictures of uneven size settle on
    the aim on average), at most MOVING_STEP_MAX a picture, never below CRF (libx264's own
    target) nor above 51, in quarter steps."""
    target, frame_s = 1_000_000, 1 / 30
    aim = MOVING_AIM * target * frame_s
    assert next_moving_crf(30.0, round(aim), target, frame_s) == 30.0
    assert next_moving_crf(30.0, round(2 * aim), target, frame_s) == 32.0
    assert next_moving_crf(30.0, round(aim / 2), target, frame_s) == 29.0
    assert next_moving_crf(30.0, 0, target, frame_s) == 28.0
    assert next_moving_crf(30.0, round(1.1 * aim), target, frame_s) == 30.25  # +0.2, to a quarter
    assert next_moving_crf(30.0, round(100 * aim), target, frame_s) == 33.0
    assert next_moving_crf(24.0, 0, target, frame_s) == CRF
    assert next_moving_crf(50.5, round(2 * aim), target, frame_s) == 51.0
    # A picture twice the aim and one of nothing leave the CRF where it was: the mean is on it.
    assert next_moving_crf(next_moving_crf(30.0, round(2 * aim), target, frame_s), 0, target, frame_s) == 30.0
    # The time the picture took counts: the same bits over two frame times are on the aim.
    assert next_moving_crf(30.0, round(2 * aim), target, 2 * frame_s) == 30.0


def test_the_first_idr_is_planned_at_the_lowest_crf_that_fits_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    # Sizes as x264 gives them for a 1080p page of text: ln(bytes) about linear in CRF.
    enc = H264Encoder(1920, 1080, fps=30, bitrate=1_000_000)
    budget = FIRST_IDR_SHARE * vbv_buffer_bits(1_000_000, 1920, 1080) / 8
    tried: list[float] = []

    def size(_frame: object, crf: float) -> int:
        tried.append(crf)
        return int(350_000 * math.exp(-0.065 * (crf - 23)))

    monkeypatch.setattr(enc, "_trial_size", size)
    crf = enc._first_idr_crf(None)  # type: ignore[arg-type]
    assert len(tried) <= FIRST_IDR_TRIES and tried[0] == CRF
    assert size(None, crf) <= budget < size(None, crf - 0.25)  # the lowest quarter step that fits
    # A picture that fits at CRF is not planned further; one that never fits gets CRF 51, x264's
    # highest, tried once.
    tried.clear()
    monkeypatch.setattr(enc, "_trial_size", lambda _f, c: tried.append(c) or 1000)
    assert enc._first_idr_crf(None) == CRF and tried == [CRF]  # type: ignore[arg-type]
    tried.clear()
    monkeypatch.setattr(enc, "_trial_size", lambda _f, c: tried.append(c) or 10**9)
    assert enc._first_idr_crf(None) == 51.0 and tried == [CRF, 51.0]  # type: ignore[arg-type]


def test_refinements_are_coded_at_the_refinement_crf_and_changes_at_crf(monkeypatch: pytest.MonkeyPatch) -> None:
    # A picture of an unchanged screen aims higher (REFINE_CRF), so refining does not end early
    # on a page whose first picture was small; libx264 is told only when the CRF changes.
    enc = H264Encoder(320, 240, fps=30, bitrate=1_000_000)
    assert enc._cap is not None
    told: list[float] = []
    real = enc._cap.set_crf
    monkeypatch.setattr(enc._cap, "set_crf", lambda crf: (told.append(crf), real(crf))[1])
    for refine in (False, False, True, True, False, True):
        enc.encode(picture(320, 240), refine=refine)
    assert told == [REFINE_CRF, CRF, REFINE_CRF]  # the first IDR fits at CRF: nothing to tell
    # A forced IDR is a change, whatever the caller says.
    enc.encode(picture(320, 240), keyframe=True, refine=True)
    assert told[-1] == CRF
