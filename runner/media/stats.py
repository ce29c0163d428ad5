"""The pipeline's counters, the rates derived from them, and the status line.

One copy of the rate maths (``rates_between``): the status line and ``dr.stats`` (through
``runner.media.controls.StreamInfo``) both report it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from runner.logs import get_logger
from runner.media.controls import Rates

log = get_logger(__name__)

MIN_INTERVAL_S = 1e-6  # a zero-length interval reads as this, not as a division by zero


@dataclass(frozen=True)
class FrameTimes:
    """Where one published frame's time went, in seconds (for metrics histograms)."""

    capture_s: float
    convert_s: float
    encode_s: float  # libx264 only, without the conversion
    encrypt_s: float
    handoff_s: float = 0.0  # EncodedVideoSource.capture_frame: into the SDK's send path


@dataclass
class Stats:
    """Counters since start, written by the pipeline only; rates are taken between snapshots."""

    captured: int = 0
    unchanged: int = 0  # ticks skipped because nothing changed on screen
    repeated: int = 0  # still-screen refreshes sent as skip pictures
    published: int = 0
    rejected: int = 0
    dropped: int = 0
    keyframes: int = 0
    keyframe_requests: int = 0
    bytes_published: int = 0
    encode_s: float = 0.0
    encoded: int = 0
    host_s: float = 0.0  # grab start to hand-off, summed over host_frames
    host_frames: int = 0  # published frames that are pictures (not skip pictures)
    bitrate_target: int = 0
    last_published_at: float = 0.0  # time.monotonic() of the last frame LiveKit accepted; 0: none

    def snapshot(self) -> Stats:
        return dataclasses.replace(self)


NO_RATES = Rates(fps=0.0, bitrate=0, encode_ms=None)
"""What is reported before the first interval has passed."""


def rates_between(before: Stats, after: Stats, seconds: float) -> Rates:
    """Published frames per second, published bit/s, mean encode and host times between two snapshots."""
    dt = max(seconds, MIN_INTERVAL_S)
    encoded = after.encoded - before.encoded
    hosted = after.host_frames - before.host_frames
    return Rates(
        fps=round((after.published - before.published) / dt, 1),
        bitrate=int(8 * (after.bytes_published - before.bytes_published) / dt),
        encode_ms=round(1000 * (after.encode_s - before.encode_s) / encoded, 2) if encoded else None,
        host_ms=round(1000 * (after.host_s - before.host_s) / hosted, 2) if hosted else None,
    )


@dataclass(frozen=True)
class Interval:
    """Counters at both ends of an interval and the rates over it."""

    before: Stats
    after: Stats
    rates: Rates


class RateMeter:
    """Rates over consecutive intervals: ``update(now, stats)`` closes one and starts the next."""

    def __init__(self, now: float, stats: Stats) -> None:
        self._at, self._before = now, stats.snapshot()
        self.rates = NO_RATES  # of the last interval closed

    def update(self, now: float, stats: Stats) -> Interval:
        after = stats.snapshot()
        interval = Interval(self._before, after, rates_between(self._before, after, now - self._at))
        self._at, self._before, self.rates = now, after, interval.rates
        return interval


def log_status(interval: Interval, *, connected: bool, subscribers: int) -> None:
    """One status line: what a person watching the logs wants to know about the last interval."""
    before, after, rates = interval.before, interval.after, interval.rates
    log.info(
        "status",
        connected=connected,
        fps=rates.fps,
        encode_ms=rates.encode_ms,
        bitrate=rates.bitrate,
        bitrate_target=after.bitrate_target,
        keyframes=after.keyframes - before.keyframes,
        keyframe_requests=after.keyframe_requests - before.keyframe_requests,
        dropped=after.dropped - before.dropped,
        unchanged=after.unchanged - before.unchanged,
        repeated=after.repeated - before.repeated,
        rejected=after.rejected - before.rejected,
        subscribers=subscribers,
    )
