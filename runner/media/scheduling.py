"""When the pipeline sends which frame: keyframes, still-screen refreshes, trailing frames, bitrate.

Pure decisions with the clock passed in (``now``: ``time.monotonic()`` seconds), like
``runner.notify.WatchdogGate``; the pipeline feeds them events and asks them questions, so they
are tested with literal times, without threads or sleeps.
"""

from __future__ import annotations

from enum import Enum

# A requested IDR is sent again this much later (see FrameSchedule.take_keyframe).
KEYFRAME_ECHO_S = 0.3
# After an IDR, receivers' further requests wait until it had time to arrive: its airtime at
# the bitrate target (capped at KEYFRAME_HOLD_MAX_S) plus KEYFRAME_HOLD_S. Measured on a 1 Mbit/s,
# 40 ms, 1 %-loss path (tests/netpath.py) with every request answered at once: requests came with
# nearly every frame, every frame was an IDR (6-11 Mbit/s sent into 1 Mbit/s), the queue overflowed,
# its losses asked for more IDRs, and LiveKit's estimate sank to the encoder's floor.
KEYFRAME_HOLD_S = 0.2
KEYFRAME_HOLD_MAX_S = 2.0
# A still screen is sent again this often by default (a tiny delta frame), so the track never
# looks dead (capture.idle_refresh_s). Shorter bounds how long Chrome, on a LiveKit server without
# the playout-delay setting, holds a change before showing it (README, Known limitations).
IDLE_REFRESH_S = 1.0
# While waiting on a still screen, LiveKit's keyframe requests are collected this often.
IDLE_POLL_S = 0.1
# After a change on an otherwise still screen, one more frame follows this much later. The
# change reaches Chrome within milliseconds (bench/photon_trace.py: packet capture on loopback),
# but on a LiveKit server without room.playout_delay 0/0 Chrome's smoothness algorithm often
# holds it, and with no later frame until the next refresh (up to IDLE_REFRESH_S). A trailing
# frame shortens that: 50 trials after 2 s still, 15-16 late (over 150 ms) with it, 29
# without (README, Known limitations). With playout delay 0/0 it costs one tiny frame.
TRAILING_FRAME_S = 0.05
# After a change or an IDR, a still screen is encoded again every REFINE_INTERVAL_S (real pictures,
# not skip pictures) until the encoder has nothing left to add (a picture of at most REFINED_BYTES:
# libx264's all-skip picture of an unchanged screen is 25-28 bytes, coded at a quantiser of at most
# REFINED_MAX_QP) or REFINE_MAX_S passed.
# Measured on a 2 Mbit/s path (bench/bench_network.py) with the rate capped at LiveKit's target: a
# new page of text came in one picture squeezed under the cap, IDRs after losses came grey, and they
# stayed so (text 6-18 dB PSNR for 10 s), as only skip pictures followed. On 1 Mbit/s, 40 ms, 1 %,
# refining while pictures were above 1200 bytes still left 7-17 dB; refining for the whole 3 s
# brought the pages to 31-37 dB.
REFINE_INTERVAL_S = 0.1
# For this long after a change, every tick sends at least a skip picture (about 11 bytes, no
# encode; where the encoder can write one). A packet lost from a change is only asked for again
# when later packets show the gap: livekit-server 1.13.5 detects a loss when a later packet of
# the stream arrives and sends the NACK for it on the first packet arriving at least 20 ms after
# that (mediatransportutil's NACK queue runs on arrivals, not on a timer), and Chrome likewise
# notices a loss only at the next packet. On a still screen after a change the next packets were
# the trailing frame (50 ms) and the first refinement (100 ms later), so a lost packet waited that
# long. With a packet every tick the repair starts within a tick or two (2 Mbit/s, 40 ms, 1 %,
# 3 runs: input-to-photon p95 282 -> 206 ms, every page legible within 1 s).
NACK_CLOCK_S = 0.15
REFINE_MAX_S = 3.0
REFINED_BYTES = 100
# A small picture proves nothing at a coarse quantiser: with the VBV buffer drained by changes in
# quick succession, libx264 coded the picture after a change at QP 51, every macroblock skipped
# (26 bytes), while its picture of the change, at QP 36, had lost the colour of one slice (grey
# where green was painted). Refining ended there, and the grey stayed until the next change or IDR
# (tests/test_browser_e2e.py: 1 change in 10-50 after a still screen, 2-6 s). Unchanged screens
# at the quality target come at QP 18-26 (CRF 23).
REFINED_MAX_QP = 30
# Follow the receivers' bitrate target only when it moved by more than this fraction, so the
# encoder is not reconfigured on every wobble of the estimate.
BITRATE_HYSTERESIS = 0.15


class Grab(Enum):
    """What a capture tick produces."""

    NOTHING = "nothing"  # the screen did not change and nothing is due
    REPEAT = "repeat"  # the last picture again, written by the encoder as a skip picture
    PICTURE = "picture"  # a real grab


class FrameSchedule:
    """Keyframe, refresh and trailing-frame decisions of one pipeline.

    ``echo_keyframes``: echo each requested IDR once (the runner's frame engine only, see
    ``take_keyframe``). ``refresh_s``: how often a still screen is sent again. A new schedule
    owes a keyframe: every stream starts with an IDR.
    """

    def __init__(self, *, echo_keyframes: bool, refresh_s: float = IDLE_REFRESH_S) -> None:
        self._echo_keyframes = echo_keyframes
        self._refresh_s = refresh_s
        self._force = True
        self._requested = False  # LiveKit asked (PLI/FIR, a new subscriber)
        self._echo_at: float | None = None
        self._trailing_at: float | None = None  # see TRAILING_FRAME_S
        self._hold_until = 0.0  # requests and echoes wait until then (see KEYFRAME_HOLD_S)
        self._refine_until: float | None = None  # see REFINE_INTERVAL_S
        self._refine_next_at = 0.0
        self._clock_until = 0.0  # see NACK_CLOCK_S

    # --- events ----------------------------------------------------------------------------
    def force_keyframe(self) -> None:
        """The next frame is an IDR, without echo: start, republish, display back, key rotation,
        another region or size."""
        self._force = True

    def keyframe_requested(self) -> None:
        """A receiver asked for an IDR (collected from LiveKit's feedback)."""
        self._requested = True

    def keyframe_sent(self, now: float, airtime_s: float) -> None:
        """An IDR left at ``now``; it takes ``airtime_s`` on the wire at the bitrate target.
        Requests until it can have arrived are answered after that, by one IDR."""
        self._hold_until = now + KEYFRAME_HOLD_S + min(max(airtime_s, 0.0), KEYFRAME_HOLD_MAX_S)

    def grabbed(self, now: float, *, changed: bool, repeat: bool = False) -> None:
        """A picture was grabbed at ``now`` (``repeat``: a skip picture): a change schedules a
        trailing frame and NACK_CLOCK_S of skip pictures; the trailing frame itself, once due, is
        this one. The next refinement is REFINE_INTERVAL_S after the last real picture."""
        if changed:
            self._trailing_at = now + TRAILING_FRAME_S
            self._refine_until = now + REFINE_MAX_S
            self._clock_until = now + NACK_CLOCK_S
        elif self.trailing_due(now):
            self._trailing_at = None
        if not repeat:
            self._refine_next_at = now + REFINE_INTERVAL_S

    def picture_encoded(self, size_bytes: int, qp: int | None = None) -> None:
        """A real picture (no skip picture) came out of the encoder with this size and quantiser
        (None: the encoder does not say): a small one at a fine enough quantiser means the encoder
        had nothing left to improve, so refining ends."""
        if size_bytes <= REFINED_BYTES and (qp is None or qp <= REFINED_MAX_QP):
            self._refine_until = None

    # --- questions -------------------------------------------------------------------------
    def needs_keyframe(self, now: float) -> bool:
        """Whether the next frame must be an IDR (forced, requested or an echo due, and not held
        back by the last IDR still on its way)."""
        if self._force:
            return True
        if now < self._hold_until:
            return False
        echo_due = self._echo_at is not None and now >= self._echo_at
        return self._requested or echo_due

    def refine_due(self, now: float) -> bool:
        """Whether a still screen should be encoded again now, so the encoder can improve what it
        squeezed under the bitrate cap (REFINE_INTERVAL_S)."""
        return self._refine_until is not None and self._refine_next_at <= now < self._refine_until

    def trailing_due(self, now: float) -> bool:
        return self._trailing_at is not None and now >= self._trailing_at

    def clock_due(self, now: float) -> bool:
        """Whether the NACK clock ticks now (a change less than NACK_CLOCK_S ago)."""
        return now < self._clock_until

    def must_grab(self, now: float, last_published_at: float) -> bool:
        """Whether this tick needs a picture even if nothing changed on screen: an IDR is due,
        the screen was last sent ``refresh_s`` ago, a trailing frame or a refinement is due, or
        a change was less than NACK_CLOCK_S ago (a skip picture where the encoder can write one:
        ``grab``)."""
        stale = now - last_published_at >= self._refresh_s
        return self.needs_keyframe(now) or stale or self.trailing_due(now) or self.refine_due(now) \
            or self.clock_due(now)

    def grab(self, now: float, *, changed: bool, must: bool, can_repeat: bool) -> Grab:
        """What to produce on a tick when changes are tracked: nothing on a still screen with
        nothing due; the refresh of a still screen and the NACK clock's ticks as repeats when
        the encoder can write one (``can_repeat``) and no IDR, trailing frame or refinement is
        due; a real picture otherwise.

        A trailing frame stays a real one. Measured (bench input-to-photon, 30 trials a side,
        twice): with skip pictures as trailing frames too, p50 rose from 35-39 to 46-53 ms; why
        is not known (Chromium's frame-size based jitter estimate is a suspect).
        """
        if changed:
            return Grab.PICTURE
        if not must:
            return Grab.NOTHING
        due = self.trailing_due(now) or self.needs_keyframe(now) or self.refine_due(now)
        if can_repeat and not due:
            return Grab.REPEAT
        if not due and self.clock_due(now):
            # The NACK clock with an encoder that cannot write skip pictures: not worth a real
            # encode every tick, so it stops here; left running, must_grab would stay true and
            # the capture loop would ask again at once, spinning until the clock ran out.
            self._clock_until = 0.0
            return Grab.NOTHING
        return Grab.PICTURE

    def idle_wait(self, now: float, last_published_at: float | None = None) -> float:
        """Seconds a still screen may wait for a change before the next look at LiveKit's
        feedback (IDLE_POLL_S), shorter when a trailing frame, a refinement or (given
        ``last_published_at``) the refresh falls due sooner."""
        wait = IDLE_POLL_S
        if self._trailing_at is not None:
            wait = min(wait, self._trailing_at - now)
        if self._refine_until is not None and now < self._refine_until:
            wait = min(wait, self._refine_next_at - now)
        if last_published_at is not None:
            wait = min(wait, last_published_at + self._refresh_s - now)
        return max(0.0, wait)

    # --- the decision that consumes state ------------------------------------------------------
    def take_keyframe(self, now: float) -> bool:
        """Whether the picture being encoded now must be an IDR; consumes forced and requested ones.

        Forced ones (start, republish, display back, key rotation) and requested ones (PLI/FIR,
        new subscribers) are sent at once. Each requested one is echoed once KEYFRAME_ECHO_S
        later: right after a viewer joins, Chrome sometimes decodes the first IDR and then drops
        the following delta frames ("has no GoP"), freezing until it asks again 3 s later. A
        second IDR shortly after ends that freeze (measured: 1 join in 4 froze for 3.5 s without
        the echo, none in 30 with it). An IDR costs a few hundred kB at 1080p, on joins and losses
        only. Not with the sdk engine: Chrome drops half of the SDK-encrypted IDRs (docs/e2ee.md),
        each dropped one freezes the picture, so more IDRs there means more freezes.

        After an IDR (``keyframe_sent``) requests and echoes are held, not dropped, until it can
        have arrived (KEYFRAME_HOLD_S); then one IDR answers all of them.
        """
        if not self._force and now < self._hold_until:
            return False
        requested, self._requested = self._requested, False
        echo = self._echo_at is not None and now >= self._echo_at
        if requested and self._echo_keyframes:
            self._echo_at = now + KEYFRAME_ECHO_S
        elif echo:
            self._echo_at = None
        keyframe = self._force or requested or echo
        self._force = False
        if keyframe:  # an IDR squeezed under the cap is refined like a change, from the next interval on
            self._refine_until = now + REFINE_MAX_S
            self._refine_next_at = now + REFINE_INTERVAL_S
        return keyframe


def follow_target(current: int, target: int, *, floor: int, cap: int) -> int:
    """The bitrate to encode at, given the receivers' estimate ``target``: clamped to
    ``floor..cap``, and ``current`` kept unless it moved by more than BITRATE_HYSTERESIS."""
    target = min(max(target, floor), cap)
    if abs(target - current) > BITRATE_HYSTERESIS * current:
        return target
    return current
