"""H.264 encoding with PyAV: libx264, or a hardware encoder (NVENC, Quick Sync, VAAPI) where one
works (``encoder.codec = auto`` tries them first), tuned for interactive latency.

Constrained Baseline (the one H.264 format LiveKit's pre-encoded path negotiates; High is an
opt-in, ``encoder.profile``), ``zerolatency`` (no B-frames, no lookahead: one picture in, one
access unit out), no periodic keyframes except a long safety interval, and an IDR with in-band
SPS/PPS whenever the caller asks.

libx264's rate control is tuned for screen content (measured in bench/bench_quality.py): a
quality target (CRF) capped by LiveKit's bitrate target through x264's VBV, the cap moved with
the target while the encoder runs (``runner.media.avoptions``); the first IDR gets the keyframe
budget, full, so it arrives legible (``vbv_buffer_bits``), at one quantiser planned by trial
encodes (``H264Encoder._first_idr_crf``), later pictures small buffers refilled
in real time (``vbv_settings``); while the screen moves the CRF is aimed below the cap
(``next_moving_crf``), so the VBV rarely acts; intra 4x4 prediction on, adaptive quantization and
deblocking off.

Every access unit leaves here with 4-byte start codes, the form the receiving browser rebuilds from RTP (the E2EE
header authenticates those bytes).

Not thread-safe: the pipeline calls one encoder from one executor thread.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, cast

import av
import numpy as np
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType
from livekit import rtc

from runner.bitstream.annexb import normalize_start_codes
from runner.logs import get_logger
from runner.media import yuv
from runner.media.avoptions import RateCap
from runner.media.h264 import SkipFrames, sps_profile_level_id

if TYPE_CHECKING:
    from runner.config import EncoderSettings

log = get_logger(__name__)

PTS_CLOCK_HZ = 90_000  # RTP's video clock; any fixed rate works for libx264's rate control
# The VBV buffer is the keyframe budget: it starts full (vbv-init=1), so the first IDR may spend
# it at once, and the next frames pay it back. An IDR of a 1080p desktop needs 100-200 kB before
# 12 px text reads cleanly (bench/bench_quality.py: 129 kB -> 32 dB, 231 kB -> 43 dB); a quarter
# of a second of a 1 Mbit/s target (the earlier setting) left it 30 kB and 19-25 dB of blocky
# text for seconds after every join and keyframe request. So: 1.5 s of the target, and at low
# targets at least 0.6 bit per pixel (156 kB at 1080p, what OpenH264 spends on the same IDR in
# the SDK's path), but never more than 5 s of the target (a burst queues that long on a link
# that slow).
VBV_BUFFER_S = 1.5
KEYFRAME_BITS_PER_PIXEL = 0.6
VBV_BUFFER_MAX_S = 5.0


def vbv_buffer_bits(target: int, width: int, height: int) -> int:
    """The VBV buffer (bits) for a target (bit/s) at a picture size: see VBV_BUFFER_S."""
    floor = KEYFRAME_BITS_PER_PIXEL * width * height
    return int(min(max(target * VBV_BUFFER_S, floor), target * VBV_BUFFER_MAX_S))


# Pictures after the first IDR get much smaller buffers: what one picture may borrow ahead of the
# link. With the IDR's 1.5 s a new page of text came as one delta picture of up to 1.5 s of the
# target, queued that long on the wire, and overflowed the link's queue (input-to-photon p95 2.8 s
# on 2 Mbit/s, 40 ms, 1 %, bench/bench_network.py). Measured there and offline (bench_quality):
# - DELTA_VBV_S while the screen moves (a picture within PAUSE_FRAMES frame times of the previous
#   one): 0.1-0.15 s took the scrolling terminal at 1 Mbit/s from 33 to 26 dB, 0.25 s kept it;
# - CHANGE_VBV_S for the first picture after a pause (a change on a still screen): it goes out
#   within a few frame times, blurry, and refinement (runner.media.scheduling) brings the text up
#   within the cap (0.25 s: input-to-photon p50 290-310 ms; 0.1 s: 171-180 ms; 0.05 s: 136-144
#   ms on 2 Mbit/s, 40 ms, 1 %);
# - REFINE_VBV_S for the refinements (REFINE_INTERVAL_S apart), refilled by REFINE_RATE_SHARE of
#   the target: with 0.05 s they got half the link; with 0.1 s at the full refill x264 spent only
#   ~60 % of the target (it keeps a picture within the buffer's fill, and a buffer one refill deep
#   is never full), a 1080p page at 1.4 Mbit/s 2.5-2.9 s to 36 dB; 0.2 s at the full refill spent
#   all of it and queued in front of the next change when LiveKit's target neared the link
#   (input-to-photon p95 506 ms on 2 Mbit/s, 40 ms, 1 %). 0.2 s at 0.6 spends what 0.1 s spent,
#   placed where the page needs it: every page legible within 2 s on that link (was 90 of 96),
#   at the cost of bigger refinement pictures and more drops at a shallow bottleneck (README,
#   "Behaviour on real links", which has the figures and the variants tried);
# - RESENT_IDR_VBV_S for every IDR after the encoder's first (keyframe requests after losses):
#   a 1.5 s IDR through a link with 100 ms of queue lost a hundred packets and froze the picture
#   for 3.2-3.6 s; a small one is refined like a change.
DELTA_VBV_S = 0.25
CHANGE_VBV_S = 0.05
# ... but never less than this: LiveKit's estimate sinks while a screen is still (4 -> 0.32
# Mbit/s in 7 s on loopback, tests/test_browser_e2e.py), and with 0.05 s of 0.32 Mbit/s (2 kB)
# a 720p change of colour was shown right only after 0.86-1.03 s there (one CI run; likely the
# squeezed picture, not traced); this is what 0.1 s gave there. From a target of
# 0.64 Mbit/s up (every link of bench_network.py) it changes nothing.
CHANGE_VBV_MIN_BITS = 32_000
REFINE_VBV_S = 0.2
REFINE_RATE_SHARE = 0.6
RESENT_IDR_VBV_S = 0.25
PAUSE_FRAMES = 2.5
# x264 refills its VBV by maxrate / fps per picture (it runs at a constant frame rate), but the
# pipeline encodes only when something changed or is due: 0.1 s apart while refining, seconds
# apart on a still screen. The refill of each picture is the target times the real time since the
# previous one, written as maxrate; at most this share of the buffer, as x264 switches to its
# one-frame VBV model when one picture's refill nears the buffer size.
VBV_REFILL_MAX = 0.9


def paused(elapsed_s: float | None, fps: float) -> bool:
    """Whether a picture ``elapsed_s`` after the previous one (None: one frame time) comes after
    a pause (more than PAUSE_FRAMES frame times), not while the screen moves."""
    return elapsed_s is not None and elapsed_s > PAUSE_FRAMES / fps


def delta_buffer_bits(target: int, elapsed_s: float | None, fps: float, *, refine: bool = False) -> int:
    """The VBV buffer (bits) of a delta picture ``elapsed_s`` after the previous one (None: one
    frame time): DELTA_VBV_S of the target while the screen moves; after a pause CHANGE_VBV_S
    (at least CHANGE_VBV_MIN_BITS), or REFINE_VBV_S for a picture of the unchanged screen
    (``refine``)."""
    if not paused(elapsed_s, fps):
        return int(target * DELTA_VBV_S)
    if refine:
        return int(target * REFINE_VBV_S)
    return max(int(target * CHANGE_VBV_S), CHANGE_VBV_MIN_BITS)


def next_moving_crf(crf: float, picture_bits: int, target: int, elapsed_s: float) -> float:
    """The CRF for the next picture while the screen moves, after a picture of ``picture_bits``
    that took ``elapsed_s`` of a ``target`` (bit/s): moved by MOVING_GAIN of the picture's
    relative excess over MOVING_AIM of the target (bits / aim - 1, in CRF steps of
    MOVING_SIZE_PER_QP), at most MOVING_STEP_MAX, in quarter steps (what libx264 keeps exactly),
    within [CRF, 51]. The correction is linear in the bits, so the CRF settles where the pictures'
    arithmetic mean is on the aim (a correction in ln(bits) settles on their geometric mean, and
    pictures of uneven size then spend more than the aim)."""
    aim = MOVING_AIM * target * elapsed_s
    step = max(-MOVING_STEP_MAX, min(MOVING_STEP_MAX, MOVING_GAIN * (picture_bits / aim - 1) / MOVING_SIZE_PER_QP))
    return min(51.0, max(float(CRF), round((crf + step) * 4) / 4))


def first_idr_buffer_bits(target: int, width: int, height: int) -> int:
    """The VBV buffer (bits) the encoder opens with, for its first IDR: see FIRST_IDR_VBV_SLACK."""
    return vbv_buffer_bits(target, width, height) * FIRST_IDR_VBV_SLACK


def vbv_settings(target: int, width: int, height: int, fps: float, *, keyframe: bool, first: bool = False,
                 elapsed_s: float | None, refine: bool = False) -> tuple[int, int]:
    """(maxrate bit/s, bufsize bits) for the next picture: the encoder's ``first`` IDR gets the
    keyframe budget (``vbv_buffer_bits``) refilled, in a buffer FIRST_IDR_VBV_SLACK times that
    (``first_idr_buffer_bits``); later IDRs RESENT_IDR_VBV_S of the target, refilled; a delta
    picture ``delta_buffer_bits`` (``refine``: see there), refilled by the target over
    ``elapsed_s`` since the previous picture (None or less than a frame time: one frame time), a
    refinement after a pause by REFINE_RATE_SHARE of the target."""
    if keyframe:
        budget = vbv_buffer_bits(target, width, height) if first else int(target * RESENT_IDR_VBV_S)
        refill = VBV_REFILL_MAX * budget
        buffer = budget * FIRST_IDR_VBV_SLACK if first else budget
    else:
        buffer = delta_buffer_bits(target, elapsed_s, fps, refine=refine)
        elapsed = max(1.0 / fps, elapsed_s or 0.0)
        share = REFINE_RATE_SHARE if refine and paused(elapsed_s, fps) else 1.0
        refill = min(share * target * elapsed, VBV_REFILL_MAX * buffer)
    return max(target, int(refill * fps)), buffer


# The quality libx264 aims at while the target allows it (x264's constant rate factor). A still
# or slowly changing desktop then costs what its changes cost instead of the whole target
# (ABR spent every bit of the target refining unchanged pictures); lower is sharper and dearer.
CRF = 23
# libx264 for screen content, on top of `ultrafast`, each measured (1080p clips of
# tests/screen_quality.py at 1-4 Mbit/s): intra 4x4 prediction for the fine edges of text
# (ultrafast allows only 16x16; +0.2-0.5 dB); adaptive quantization stays off (aq-mode 1 took
# 1-6 dB off text at equal CRF: it moves bits from busy blocks, which text is, to flat ones);
# the deblocking filter stays off too (-0.3 to +0.4 dB of text for about 1 ms more per 1080p
# frame of video, where the CPU budget against the SDK path is already spent). Psychovisual RD
# needs subme >= 6 and trellis, which ultrafast does not run. Baseline keeps CAVLC, one
# reference frame and POC type 2, which the skip pictures of runner.media.h264 need.
X264_SCREEN = "partitions=i4x4:aq-mode=0:vbv-init=1.0"
# High profile (encoder.profile = "high"): CABAC and 8x8 transforms, 2-8 % fewer bits for the
# same keyframe and +0.5-6 dB on text at the same target up to 1 Mbit/s. CABAC rules out the
# skip pictures (they are written in CAVLC): a still screen's refresh is then a real encode.
X264_HIGH = "partitions=i4x4,i8x8:8x8dct=1:cabac=1"
PROFILES = ("baseline", "high")
# The encoder's first IDR (a viewer's first picture) is planned: x264's VBV, which knows
# nothing of the picture yet, chose a quantiser for a 1080p page of text that overshot the
# keyframe budget, then raised it row by row to fit, so the picture came out uneven (terminal at
# 1 Mbit/s: rows from 41 down to 28.5 dB, text 32.2 dB from 152 kB; the same bytes at one
# quantiser give 36.5 dB). Before it, throwaway encoders with the same settings (x264 is
# deterministic) encode the picture at CRF values, without a VBV, until one fits
# FIRST_IDR_SHARE of the buffer; the encoder then codes its IDR at that CRF and goes back to
# CRF. Each try costs an encoder opened and one intra picture (about 15 ms at 1080p on one core).
FIRST_IDR_TRIES = 4
# x264's VBV lets a picture take at most about half of what the buffer holds (the rest is kept
# for the pictures after it, as its guess of the picture's size is only a guess): the encoder
# opens with a buffer this many times the keyframe budget, full, so that the planned IDR is coded
# at one quantiser (with twice the budget one band of rows still came out 2 dB down); the pictures
# after it get their own buffers (vbv_settings), and x264 holds the fill to each picture's buffer
# (a page of text right after a 1 Mbit/s IDR: 17 kB, under the 0.25 s buffer's 31).
FIRST_IDR_VBV_SLACK = 3
FIRST_IDR_SHARE = VBV_REFILL_MAX
# ln(bytes) of an intra picture per quantiser step (1080p text: 0.05-0.08), for the next try.
INTRA_SIZE_PER_QP = 0.06
# Pictures of an unchanged screen (refinements, runner.media.scheduling) aim higher: refining ends
# when libx264 has nothing left to add at its quantiser, and at CRF 23 that point came with a page
# of text at 32-33 dB when its first picture had been small (bench_network, 0.05 s first
# pictures); still under the cap, so a refinement never takes more of the link than a change.
REFINE_CRF = 18
# While the screen moves (pictures PAUSE_FRAMES frame times apart or closer: scrolling, dragging,
# video), the encoder aims its CRF so that pictures come out at MOVING_AIM of the target, and
# x264's VBV, unchanged, stays a safety net that rarely has to act. Measured (bench_quality's
# clips, 1080p, after the first second): with CRF 23 held under the cap by the VBV alone, a
# scrolling terminal at 1 Mbit/s came out at 33.6 dB of text, the newest line at 17-27 dB: without
# lookahead x264's VBV raises the quantiser whenever its buffer is under half full, and per row,
# so each new line was squeezed at the bottom and paid for again at a finer quantiser as it
# scrolled up (terminal-random at one CRF, 32, with the VBV out of the way: 33.9 dB for 1.02
# Mbit/s, against 28.2 with the VBV holding CRF 23). With the first version of this control
# (below) the terminal got 35.8-37.0 dB at 0.98 Mbit/s, and 25.0-25.8 against 21.5 at 0.5
# Mbit/s; level where the cap is not reached; where it only just binds (video at 1 Mbit/s,
# terminal-random at 2) 12 % of the target was left unused, -0.5 to -0.9 dB. The CRF moves by
# MOVING_GAIN of the correction each picture (a delta picture's bits change by about
# MOVING_SIZE_PER_QP, 5 %, per CRF step), at most MOVING_STEP_MAX, and never below CRF: a
# faster control (0.5) swung the quantiser with every picture's size, and the lines coded coarse
# were paid for again. The correction is linear in the picture's bits
# (bits / aim - 1), so the CRF settles where the pictures' mean is on the aim. The first version
# corrected by ln(bits / aim) at an aim of 0.85: that settles on the geometric mean, and with
# pictures of uneven size (a terminal: a new line or not) the seconds came out at 0.91-1.01 of
# the target, the VBV acting again (a CI run failed the 1 Mbit/s terminal test on a second at
# 1.009). Linear at 0.9, three runs of 150 pictures each (1080p, text after the first second;
# ln correction in brackets): terminal at 1 Mbit/s seconds at 0.88-0.95 of the target (0.90-1.01),
# text 36.0 dB (35.8-36.8); at 0.5 Mbit/s 24.7-24.8 (24.3-24.6); terminal-random at 0.5 Mbit/s
# 21.9-22.0 (21.1-21.5); video at 1 Mbit/s 44.5-44.7 (44.4-44.5); terminal-random at 2 level.
MOVING_AIM = 0.9
MOVING_GAIN = 0.1
MOVING_SIZE_PER_QP = 0.05
MOVING_STEP_MAX = 3.0
# The quantizer never goes below this (a still screen is already indistinguishable at 18).
QP_MIN = 18
# The VBV buffer under a ceiling fixed at encoder.max_bitrate (hardware encoders, ABR fallback):
# a burst never queues much more than this on the wire.
FIXED_VBV_BUFFER_S = 0.25
BGRA_BYTES = 4
PROBE_SIZE = (320, 240)  # the test picture hardware encoders must encode before auto picks them


class EncoderError(RuntimeError):
    """libx264 could not be opened or failed on a frame."""


@dataclass(frozen=True)
class _OpenSettings:
    preset: str
    threads: int
    slices: int
    keyframe_interval_s: float
    max_bitrate: int


@dataclass(frozen=True)
class AccessUnit:
    """One encoded picture: Annex B with 4-byte start codes, SPS/PPS in band on keyframes."""

    data: bytes
    keyframe: bool
    width: int
    height: int
    encode_s: float  # colour conversion + encoding, seconds
    convert_s: float = 0.0  # the BGRA -> I420 (and scaling) part of encode_s
    qp: int | None = None  # the picture's quantiser (libx264, from its first slice header)


HARDWARE_CODECS = ("h264_nvenc", "h264_qsv", "h264_vaapi")
CODECS = ("libx264", *HARDWARE_CODECS)
# The BT.601 limited-range matrix libyuv and swscale convert with, for encoders that take it as
# AVCodecContext options (libx264 gets it in x264-params below). Without it browsers assume
# BT.709 and shift colours (pure green shows as 0,216,2).
BT601_VUI = {"color_primaries": "smpte170m", "color_trc": "smpte170m", "colorspace": "smpte170m",
             "color_range": "tv"}


def _codec_options(codec: str, *, preset: str, slices: int, bitrate: int, max_bitrate: int,
                   size: tuple[int, int], profile: str = "baseline",
                   capped_crf: bool = True, crf: float = CRF, cap: bool = True) -> tuple[dict[str, str], str]:
    """(AVOptions, input pixel format) for one encoder, all set for one-in-one-out latency,
    no B-frames, IDRs on request with SPS/PPS in band.

    libx264 with ``capped_crf``: CRF under a VBV cap at ``bitrate`` (moved later through
    ``RateCap``); without (a PyAV whose context cannot be reached): ABR at ``bitrate`` under a
    fixed VBV ceiling at ``max_bitrate``, as hardware encoders run. ``cap=False`` (libx264 with
    ``capped_crf``): CRF ``crf`` alone, the first IDR's tries."""
    if profile not in PROFILES:
        raise EncoderError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    # PyAV cannot change the VBV ceiling of an open hardware encoder (only bit_rate, which the
    # encoders pick up by reconfiguring), so their ceiling is the configured maximum.
    vbv = {"maxrate": str(max_bitrate), "bufsize": str(int(max_bitrate * FIXED_VBV_BUFFER_S))}
    if codec == "libx264":
        capped = {"maxrate": str(bitrate), "bufsize": str(first_idr_buffer_bits(bitrate, *size))} if cap else {}
        rate = {"crf": str(crf), **capped} if capped_crf else vbv
        tools = X264_SCREEN + (":" + X264_HIGH if profile == "high" else "")
        return {
            "preset": preset,
            "tune": "zerolatency",
            "profile": profile,
            "forced-idr": "1",
            **rate,
            "x264-params": (
                f"qpmin={QP_MIN}:scenecut=0:slices={slices}:bframes=0:repeat-headers=1:aud=0:{tools}"
                ":colorprim=smpte170m:transfer=smpte170m:colormatrix=smpte170m"
            ),
        }, "yuv420p"
    if codec == "h264_nvenc":
        # p1 + ultra-low-latency tune, no lookahead, no frame delay: a packet per picture.
        return {"preset": "p1", "tune": "ull", "zerolatency": "1", "delay": "0", "rc": "vbr", "bf": "0",
                "profile": "baseline", "forced-idr": "1", "qmin": str(QP_MIN), **vbv, **BT601_VUI}, "yuv420p"
    if codec == "h264_qsv":
        return {"preset": "veryfast", "async_depth": "1", "look_ahead": "0", "low_delay_brc": "1", "bf": "0",
                "profile": "baseline", "forced_idr": "1", **vbv, **BT601_VUI}, "nv12"
    if codec == "h264_vaapi":
        # VAAPI takes only frames in GPU surfaces (hw_frames_ctx), which PyAV cannot upload to;
        # it is tried (and reported) so that a PyAV that can do it is picked up.
        return {"profile": "constrained_baseline", "bf": "0", **vbv, **BT601_VUI}, "vaapi"
    raise EncoderError(f"unknown encoder {codec!r}; choose one of {', '.join(CODECS)} or auto")


def choose_codec(setting: str, *, fps: float, bitrate: int, max_bitrate: int) -> tuple[str, dict[str, str]]:
    """The encoder to use for ``encoder.codec``, and why each better one was passed over.

    ``auto`` tries the hardware encoders in order (each must open and turn a test picture into
    one IDR access unit with SPS/PPS), else libx264. A named encoder is used as is (EncoderError
    if it does not work: the operator asked for it).
    """
    if setting != "auto":
        return setting, {}
    reasons: dict[str, str] = {}
    picture = np.zeros((PROBE_SIZE[1], PROBE_SIZE[0], BGRA_BYTES), np.uint8)
    for codec in HARDWARE_CODECS:
        try:
            enc = H264Encoder(*PROBE_SIZE, fps=fps, bitrate=bitrate, max_bitrate=max_bitrate, codec=codec)
            au = enc.encode(picture, keyframe=True)
            enc.close()
            if not au.keyframe or not au.data.startswith(b"\x00\x00\x00\x01"):
                raise EncoderError("the test picture did not come out as an IDR access unit")
        except Exception as exc:  # drivers fail in many ways; any failure means "not this one"
            reasons[codec] = str(exc).splitlines()[0][:200]
            continue
        return codec, reasons
    return "libx264", reasons


class H264Encoder:
    """libx264 for one picture size; make a new one when the size changes."""

    def __init__(
        self,
        width: int,
        height: int,
        *,
        fps: float,
        bitrate: int,
        preset: str = "ultrafast",
        threads: int = 0,
        slices: int = 1,
        keyframe_interval_s: float = 300.0,
        max_bitrate: int | None = None,
        codec: str = "libx264",
        profile: str = "baseline",
    ) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise EncoderError(f"picture size {width}x{height} must be positive and even")
        self.width, self.height = width, height
        self.bitrate = bitrate
        self.fps = fps
        self._pts = 0
        self._pts_step = max(1, round(PTS_CLOCK_HZ / fps))
        self.codec = codec
        self.profile = profile if codec == "libx264" else "baseline"
        self._settings = _OpenSettings(preset, threads, slices, keyframe_interval_s, max_bitrate or bitrate)
        self._ctx, self._pix_fmt = self._open(capped_crf=True)
        # The cap follows the target (libx264 only); where PyAV's context cannot be reached, ABR.
        self._cap = RateCap.attach(self._ctx) if codec == "libx264" else None
        if codec == "libx264" and self._cap is None:
            log.warning("encoder_rate_cap_fixed", reason="cannot reach the codec context of this PyAV",
                        rate_control="abr")
            self._ctx, self._pix_fmt = self._open(capped_crf=False)
        self.rate_control = "crf+vbv" if self._cap is not None else ("abr" if codec == "libx264" else "vbr")
        # The VBV last written (maxrate, bufsize) and when the last picture was encoded (the
        # caller's clock): see vbv_settings.
        self._vbv = (self.bitrate, first_idr_buffer_bits(self.bitrate, width, height))
        self._last_at: float | None = None
        self._crf = float(CRF)  # what libx264 holds (RateCap.set_crf)
        self._moving_crf = float(CRF)  # for pictures while the screen moves: see MOVING_AIM
        self._bgra: av.VideoFrame | None = None
        self._bgra_view: np.ndarray | None = None
        self._i420 = av.VideoFrame(width, height, "yuv420p")
        self._i420_views = [
            np.frombuffer(plane, np.uint8).reshape(h, plane.line_size)[:, :w]  # type: ignore[call-overload]
            for plane, (w, h) in zip(self._i420.planes,
                                     ((width, height), (width // 2, height // 2), (width // 2, height // 2)),
                                     strict=True)
        ]
        self.converter = "libyuv"  # swscale when libyuv is not available or the picture is scaled
        # "Show the last picture again" without encoding it (runner.media.h264); libx264 only, the
        # encoder whose stream it has been checked against.
        self._skips = SkipFrames() if codec == "libx264" else None

    def _open(self, *, capped_crf: bool, trial_crf: float | None = None) -> tuple[VideoCodecContext, str]:
        """The encoder; with ``trial_crf``, one at that CRF without a VBV (``_first_idr_crf``)."""
        codec, st = self.codec, self._settings
        options, pix_fmt = _codec_options(codec, preset=st.preset, slices=st.slices, bitrate=self.bitrate,
                                          max_bitrate=st.max_bitrate, size=(self.width, self.height),
                                          profile=self.profile, capped_crf=capped_crf,
                                          crf=CRF if trial_crf is None else trial_crf,
                                          cap=trial_crf is None)
        try:
            # A video encoder by name; PyAV's stubs type only literal codec names precisely.
            ctx = cast(VideoCodecContext, av.CodecContext.create(codec, "w"))
        except (av.FFmpegError, ValueError) as exc:  # not built into PyAV's FFmpeg
            raise EncoderError(f"encoder {codec} is not in this FFmpeg build") from exc
        ctx.width, ctx.height = self.width, self.height
        ctx.pix_fmt = pix_fmt
        ctx.time_base = Fraction(1, PTS_CLOCK_HZ)
        ctx.framerate = Fraction(round(self.fps * 1000), 1000)
        ctx.bit_rate = self.bitrate
        ctx.max_b_frames = 0
        ctx.gop_size = max(1, round(st.keyframe_interval_s * self.fps))
        if codec == "libx264":
            ctx.thread_count = st.threads
            # Sliced threads keep one-in-one-out; frame threads would add a frame of delay each.
            ctx.thread_type = "SLICE"
        ctx.options = options
        try:
            ctx.open()
        except av.FFmpegError as exc:
            # PyAV's message repeats every option; the reason is enough.
            raise EncoderError(f"cannot open {codec} at {self.width}x{self.height}: {exc.strerror or exc}") from exc
        return ctx, pix_fmt

    @classmethod
    def configured(cls, cfg: EncoderSettings, width: int, height: int, *, fps: float, bitrate: int,
                   codec: str) -> H264Encoder:
        """An encoder with the ``[encoder]`` settings (the runner's and ``check``'s)."""
        return cls(width, height, fps=fps, bitrate=bitrate, preset=cfg.preset, threads=cfg.threads,
                   slices=cfg.slices, keyframe_interval_s=cfg.keyframe_interval_s,
                   max_bitrate=cfg.max_bitrate, codec=codec, profile=cfg.profile)

    def _bgra_frame(self, bgra: np.ndarray) -> av.VideoFrame:
        """The picture in a reused BGRA frame.

        ``VideoFrame.from_ndarray`` allocates a fresh 8 MB frame per 1080p picture and costs
        5-9 ms here (page faults on the new buffer); copying into one kept frame costs 0.2-0.3 ms.
        Safe to reuse: only the converted frame goes on to the encoder.
        """
        h, w = bgra.shape[:2]
        frame = self._bgra
        if frame is None or (frame.width, frame.height) != (w, h):
            frame = self._bgra = av.VideoFrame(w, h, "bgra")
            plane = frame.planes[0]
            # PyAV's stubs do not declare the buffer protocol its planes implement.
            rows = np.frombuffer(plane, np.uint8).reshape(h, plane.line_size)  # type: ignore[call-overload]
            self._bgra_view = rows[:, : w * BGRA_BYTES].reshape(h, w, BGRA_BYTES)
        assert self._bgra_view is not None  # made with the frame
        np.copyto(self._bgra_view, bgra)
        return frame

    def _libyuv_i420(self, bgra: np.ndarray) -> av.VideoFrame | None:
        """BGRA -> I420 with libyuv into the kept frame: the system's (``runner.media.yuv``), else
        the copy the LiveKit SDK ships, behind its FFI (a copy in and out, about 1 ms more at
        1080p). About 4x faster than swscale's BGRA -> YUV420P with the same BT.601
        limited-range matrix (channels agree within 1). None if libyuv cannot be used."""
        if not bgra.flags.c_contiguous:
            bgra = np.ascontiguousarray(bgra)
        if yuv.library() is not None:
            yuv.bgra_to_i420(bgra.ctypes.data, bgra.strides[0], self.width, self.height, self._i420)
            return self._i420
        if not bgra.flags.writeable:
            bgra = np.array(bgra)  # the SDK takes a writable buffer
        try:
            i420 = rtc.VideoFrame(self.width, self.height, rtc.VideoBufferType.BGRA,
                                  bgra.data.cast("B")).convert(rtc.VideoBufferType.I420)
        except Exception as exc:  # an SDK without the conversion: swscale from now on
            self.converter = f"swscale (libyuv failed: {type(exc).__name__}: {exc})"
            return None
        data = np.frombuffer(i420.data, np.uint8)
        y_size, c_size = self.width * self.height, (self.width // 2) * (self.height // 2)
        y, u, v = self._i420_views
        np.copyto(y, data[:y_size].reshape(y.shape))
        np.copyto(u, data[y_size:y_size + c_size].reshape(u.shape))
        np.copyto(v, data[y_size + c_size:y_size + 2 * c_size].reshape(v.shape))
        return self._i420

    def _to_i420(self, picture: np.ndarray | av.VideoFrame) -> av.VideoFrame:
        if isinstance(picture, av.VideoFrame):  # converted by the grab (yuv420p)
            if (picture.width, picture.height) != (self.width, self.height):
                picture = (yuv.scale_i420(picture, self._i420) if yuv.library() is not None
                           else picture.reformat(width=self.width, height=self.height))
            return picture if self._pix_fmt == "yuv420p" else picture.reformat(format=self._pix_fmt)
        h, w = picture.shape[:2]
        if (w, h) == (self.width, self.height) and self.converter == "libyuv":
            frame = self._libyuv_i420(picture)
            if frame is not None:
                return frame if self._pix_fmt == "yuv420p" else frame.reformat(format=self._pix_fmt)
        # Scaled (a maximum picture size), or no libyuv: swscale converts and scales in one pass.
        return self._bgra_frame(picture).reformat(width=self.width, height=self.height, format=self._pix_fmt)

    def set_bitrate(self, bitrate: int) -> None:
        """Change the target; libx264 reconfigures itself on the next frame, no new IDR (with
        CRF the target is the VBV ceiling, with ABR the average)."""
        self.bitrate = bitrate
        self._ctx.bit_rate = bitrate
        if self._cap is None:
            return
        # With CRF the target is the VBV ceiling (vbv_settings), written before the next picture;
        # written now too, so that a refused value fails here.
        self._vbv = vbv_settings(bitrate, self.width, self.height, self.fps, keyframe=False, elapsed_s=None)
        try:
            self._cap.set(*self._vbv)
        except RuntimeError as exc:
            raise EncoderError(str(exc)) from exc

    def _apply_vbv(self, keyframe: bool, elapsed: float | None, refine: bool, *, first: bool) -> None:
        """``first``: the encoder's first picture, an IDR whether asked or not (so are x264's
        periodic ones, every encoder.keyframe_interval_s: those get a delta picture's buffer, and
        are refined after). ``elapsed``: seconds since the previous picture (None: unknown)."""
        if self._cap is None:
            return
        vbv = vbv_settings(self.bitrate, self.width, self.height, self.fps, keyframe=keyframe or first,
                           first=first, elapsed_s=elapsed, refine=refine)
        if vbv != self._vbv:
            try:
                self._cap.set(*vbv)
            except RuntimeError as exc:
                raise EncoderError(str(exc)) from exc
            self._vbv = vbv

    def _trial_size(self, frame: av.VideoFrame, crf: float) -> int:
        """Bytes of ``frame`` as the first IDR of a fresh encoder at ``crf``, without a VBV."""
        ctx, _ = self._open(capped_crf=True, trial_crf=crf)
        return sum(packet.size for packet in ctx.encode(frame))

    def _first_idr_crf(self, frame: av.VideoFrame) -> float:
        """The CRF at which ``frame``, as this encoder's first IDR, fits FIRST_IDR_SHARE of its
        keyframe buffer: CRF when it already does, else the lowest of FIRST_IDR_TRIES tries that
        fits (each aimed by the sizes seen so far, ln(bytes) linear in CRF), else the highest tried
        (the VBV then does the rest)."""
        budget = FIRST_IDR_SHARE * vbv_buffer_bits(self.bitrate, self.width, self.height) / 8
        tried = {float(CRF): self._trial_size(frame, CRF)}
        while tried[float(CRF)] > budget and len(tried) < FIRST_IDR_TRIES:
            fit = [c for c, n in tried.items() if n <= budget]
            big = max(c for c, n in tried.items() if n > budget)
            near = min(fit) if fit else max(tried)  # the two tries that bracket the budget best
            slope = INTRA_SIZE_PER_QP if near == big else math.log(tried[big] / tried[near]) / (near - big)
            crf = big + math.log(tried[big] / budget) / max(slope, 0.01)
            crf = min(51.0, math.ceil(crf * 4) / 4)  # x264 takes fractions; quarter steps
            if (fit and crf >= min(fit) - 0.25) or crf in tried:
                break  # nothing left between the largest that is too big and the smallest that fits
            tried[crf] = self._trial_size(frame, crf)
        fit = [c for c, n in tried.items() if n <= budget]
        return min(fit) if fit else max(tried)

    def encode(self, picture: np.ndarray | av.VideoFrame, *, keyframe: bool = False,
               at: float | None = None, refine: bool = False) -> AccessUnit:
        """Encode one picture: (height, width, 4) BGRA, or a yuv420p frame (the grab converted
        it; libx264 copies it in, so the caller may refill it once this returns). ``keyframe``
        forces an IDR. ``refine``: the screen did not change since the last picture, which is
        encoded again to improve it (runner.media.scheduling), at REFINE_CRF. ``at``: when the
        picture was taken (seconds, any clock the caller keeps using), so the VBV refills by the
        real time between pictures (``vbv_settings``); without it every picture counts one frame
        time.

        A picture of another size is scaled to the encoder's size on the way (libyuv, or
        swscale in the same pass as the colour conversion): that is how a maximum picture size
        is applied.
        """
        started = time.perf_counter()
        # Convert (and scale) explicitly, so the conversion's share is measured on its own.
        frame = self._to_i420(picture)
        converted = time.perf_counter()
        frame.pts = self._pts
        self._pts += self._pts_step
        # The I420 frame is reused: say every time whether this one must be an IDR.
        frame.pict_type = PictureType.I if keyframe else PictureType.NONE
        first = frame.pts == 0
        elapsed = None if at is None or self._last_at is None else at - self._last_at
        self._last_at = at
        moving = not (first or keyframe or refine or paused(elapsed, self.fps))
        self._apply_vbv(keyframe, elapsed, refine, first=first)
        try:
            if self._cap is not None:
                if first:
                    crf = self._first_idr_crf(frame)
                elif moving:
                    crf = self._moving_crf
                else:
                    crf = REFINE_CRF if refine and not keyframe else CRF
                if crf != self._crf:
                    self._cap.set_crf(crf)
                    self._crf = crf
            packets = self._ctx.encode(frame)
        except av.FFmpegError as exc:
            raise EncoderError(f"{self.codec} failed: {exc}") from exc
        except RuntimeError as exc:  # FFmpeg refused the CRF
            raise EncoderError(str(exc)) from exc
        if len(packets) != 1:
            # zerolatency (libx264) / zero delay (hardware) means one packet per picture; anything
            # else is a configuration bug, or a hardware encoder that buffers (not usable here).
            raise EncoderError(f"{self.codec} returned {len(packets)} packets for one picture")
        packet = packets[0]
        if moving and self._cap is not None and not packet.is_keyframe:  # x264's periodic IDRs are no guide
            self._moving_crf = next_moving_crf(self._moving_crf, 8 * packet.size, self.bitrate,
                                               max(elapsed or 0.0, 1.0 / self.fps))
        data = normalize_start_codes(bytes(packet))
        if self._skips is not None:
            try:
                data = self._skips.follow(data)
            except ValueError:  # cannot renumber after repeats: restart the stream with an IDR
                self._skips = SkipFrames()
                return self.encode(picture, keyframe=True, at=at)
        return AccessUnit(
            data=data,
            keyframe=bool(packet.is_keyframe),
            width=self.width,
            height=self.height,
            encode_s=time.perf_counter() - started,
            convert_s=converted - started,
            qp=self._skips.qp if self._skips is not None else None,
        )

    @property
    def can_repeat(self) -> bool:
        """Whether ``repeat()`` can show the last picture again (after a first picture, for a
        stream runner.media.h264 can describe)."""
        skips = self._skips
        return skips is not None and skips.info is not None and skips.info.skippable

    def repeat(self) -> AccessUnit | None:
        """The last picture again, as a delta frame of about 10 bytes, without encoding it;
        None when this stream cannot take one (``can_repeat``)."""
        started = time.perf_counter()
        data = self._skips.skip() if self._skips is not None else None
        if data is None:
            return None
        return AccessUnit(data=data, keyframe=False, width=self.width, height=self.height,
                          encode_s=time.perf_counter() - started)

    def close(self) -> None:
        self._ctx = None  # type: ignore[assignment]


class EncoderSlot:
    """The pipeline's current encoder, on the encode thread: (re)opened for each picture size and
    frame rate, the codec chosen once (``encoder.codec``), and libx264 from the first failure of
    a hardware encoder on."""

    def __init__(self, cfg: EncoderSettings) -> None:
        self._cfg = cfg
        self._codec: str | None = None  # chosen by the first encoder opened (encoder.codec = auto)
        self.encoder: H264Encoder | None = None

    def can_repeat(self, width: int, height: int) -> bool:
        """Whether ``repeat()`` would show the last picture again at this encoded size. Read from
        the capture thread: a stale answer only costs a real frame."""
        enc = self.encoder
        return enc is not None and enc.can_repeat and (enc.width, enc.height) == (width, height)

    def repeat(self) -> AccessUnit | None:
        """The last picture again (a skip picture), or None when it cannot be written."""
        return self.encoder.repeat() if self.encoder is not None else None

    def encode(self, picture: np.ndarray | av.VideoFrame, width: int, height: int, *, fps: float,
               bitrate: int, keyframe: bool, at: float | None = None, refine: bool = False) -> AccessUnit:
        """Encode at (width, height); another size or frame rate opens a new encoder (an IDR).
        ``at``, ``refine``: see H264Encoder.encode."""
        enc = self.encoder
        opened = enc is None or (enc.width, enc.height, enc.fps) != (width, height, fps)
        if enc is None or opened:
            enc = self.encoder = self._open(width, height, fps, bitrate)
            keyframe = True
        elif enc.bitrate != bitrate:
            enc.set_bitrate(bitrate)
        try:
            au = enc.encode(picture, keyframe=keyframe, at=at, refine=refine)
            if opened:
                # What the stream really is (the SPS sent), for operators and the browser tests.
                log.info("encoder_opened", codec=enc.codec, width=width, height=height, fps=fps,
                         profile=enc.profile, profile_level_id=sps_profile_level_id(au.data),
                         rate_control=enc.rate_control, repeats=enc.can_repeat)
            return au
        except EncoderError as exc:
            if enc.codec == "libx264":
                raise
            # A hardware encoder that stops working (driver reset, GPU gone): libx264 from now on.
            log.error("encoder_failed", codec=enc.codec, error=str(exc), fallback="libx264")
            self._codec = "libx264"
            enc = self.encoder = self._open(width, height, fps, bitrate)
            return enc.encode(picture, keyframe=True, at=at)

    def _open(self, width: int, height: int, fps: float, bitrate: int) -> H264Encoder:
        cfg = self._cfg
        if self._codec is None:
            self._codec, passed_over = choose_codec(cfg.codec, fps=fps, bitrate=bitrate,
                                                    max_bitrate=cfg.max_bitrate)
            log.info("encoder_selected", codec=self._codec, setting=cfg.codec, passed_over=passed_over)
        return H264Encoder.configured(cfg, width, height, fps=fps, bitrate=bitrate, codec=self._codec)
