"""runner.media.scheduling: keyframe, refresh, trailing-frame and bitrate decisions, with literal times.

No threads, no sleeps: every decision takes ``now`` and the tests pass it.
"""

from __future__ import annotations

import pytest

from runner.media.scheduling import (
    IDLE_POLL_S,
    IDLE_REFRESH_S,
    KEYFRAME_ECHO_S,
    KEYFRAME_HOLD_MAX_S,
    KEYFRAME_HOLD_S,
    NACK_CLOCK_S,
    REFINE_INTERVAL_S,
    REFINE_MAX_S,
    REFINED_BYTES,
    REFINED_MAX_QP,
    TRAILING_FRAME_S,
    FrameSchedule,
    Grab,
    follow_target,
)


def started(*, echo: bool = True, at: float = 100.0) -> FrameSchedule:
    """A schedule whose start-up IDR went out at ``at``, small enough to need no refining."""
    schedule = FrameSchedule(echo_keyframes=echo)
    assert schedule.take_keyframe(at) is True
    schedule.picture_encoded(REFINED_BYTES)
    return schedule


def decisions(schedule: FrameSchedule, steps: list[tuple[bool, float]]) -> list[bool]:
    """take_keyframe at each time, after a receiver's request where the step says so."""
    out = []
    for requested, now in steps:
        if requested:
            schedule.keyframe_requested()
        out.append(schedule.take_keyframe(now))
    return out


# --- keyframes ---------------------------------------------------------------------------------
def test_first_picture_is_a_keyframe() -> None:
    schedule = FrameSchedule(echo_keyframes=True)
    assert schedule.needs_keyframe(100.0) is True
    assert schedule.take_keyframe(100.0) is True
    assert schedule.take_keyframe(100.1) is False


def test_requested_keyframe_is_sent_at_once_and_echoed_once() -> None:
    steps = [(True, 101.0), (False, 101.1), (False, 101.29), (False, 101.3), (False, 101.4), (False, 102.0)]
    assert decisions(started(), steps) == [True, False, False, True, False, False]


def test_requests_in_a_row_push_the_echo_back() -> None:
    steps = [(True, 101.0), (True, 101.2), (False, 101.3), (False, 101.5), (False, 101.6)]
    assert decisions(started(), steps) == [True, True, False, True, False]


def test_forced_keyframe_is_sent_without_echo() -> None:
    schedule = started()
    schedule.force_keyframe()
    assert [schedule.take_keyframe(t) for t in (101.0, 101.3, 101.6)] == [True, False, False]


def test_no_echo_with_the_sdk_engine() -> None:
    steps = [(True, 101.0), (False, 101.3), (False, 101.6)]
    assert decisions(started(echo=False), steps) == [True, False, False]


def test_an_echo_due_counts_as_a_needed_keyframe() -> None:
    schedule = started()
    schedule.keyframe_requested()
    assert schedule.needs_keyframe(101.0) is True  # the request itself
    schedule.take_keyframe(101.0)
    assert schedule.needs_keyframe(101.0 + KEYFRAME_ECHO_S / 2) is False
    assert schedule.needs_keyframe(101.0 + KEYFRAME_ECHO_S) is True


# --- idle refresh and trailing frames ------------------------------------------------------------
def test_a_still_screen_is_refreshed_once_a_second() -> None:
    schedule = started()
    assert schedule.must_grab(100.5, last_published_at=100.0) is False
    assert schedule.must_grab(100.0 + IDLE_REFRESH_S, last_published_at=100.0) is True


def test_a_due_keyframe_makes_a_tick_grab() -> None:
    schedule = started()
    schedule.force_keyframe()
    assert schedule.must_grab(100.1, last_published_at=100.0) is True


def test_a_change_is_followed_by_one_trailing_frame() -> None:
    schedule = started()
    schedule.grabbed(100.0, changed=True)
    schedule.picture_encoded(REFINED_BYTES)  # a small change: nothing to refine after it
    before = 100.0 + TRAILING_FRAME_S / 2
    assert schedule.trailing_due(before) is False
    # Before it only the NACK clock ticks: a skip picture, not a real one.
    assert schedule.grab(before, changed=False, must=schedule.must_grab(before, last_published_at=100.0),
                         can_repeat=True) is Grab.REPEAT
    due = 100.0 + TRAILING_FRAME_S
    assert schedule.trailing_due(due) is True
    assert schedule.must_grab(due, last_published_at=100.0) is True
    schedule.grabbed(due, changed=False)  # this was it
    assert schedule.trailing_due(due + 0.5) is False
    assert schedule.must_grab(due + 0.5, last_published_at=due) is False


def test_a_picture_before_the_trailing_frame_is_due_keeps_it_pending() -> None:
    schedule = started()
    schedule.grabbed(100.0, changed=True)
    schedule.grabbed(100.01, changed=False)  # a refresh that happened to come first
    assert schedule.trailing_due(100.0 + TRAILING_FRAME_S) is True


def test_a_shorter_refresh_interval_is_kept_to() -> None:
    """capture.idle_refresh_s: 0.1 s sends a still screen ten times a second."""
    schedule = FrameSchedule(echo_keyframes=True, refresh_s=0.1)
    schedule.take_keyframe(100.0)
    assert schedule.must_grab(100.09, last_published_at=100.0) is False
    assert schedule.must_grab(100.11, last_published_at=100.0) is True
    # The still screen's wait ends when the refresh falls due, not at the next feedback poll.
    assert schedule.idle_wait(100.03, last_published_at=100.0) == pytest.approx(0.07)


def test_the_idle_wait_is_the_feedback_poll_while_the_refresh_is_far() -> None:
    schedule = started()
    assert schedule.idle_wait(100.2, last_published_at=100.0) == IDLE_POLL_S
    assert schedule.idle_wait(100.95, last_published_at=100.0) == pytest.approx(IDLE_REFRESH_S - 0.95)


def test_the_idle_wait_ends_when_the_trailing_frame_is_due() -> None:
    schedule = started()
    assert schedule.idle_wait(100.0) == IDLE_POLL_S
    schedule.grabbed(100.0, changed=True)
    assert schedule.idle_wait(100.02) == pytest.approx(TRAILING_FRAME_S - 0.02)
    assert schedule.idle_wait(101.0) == 0.0


# --- what a tick produces ----------------------------------------------------------------------------
@pytest.mark.parametrize(("changed", "must", "can_repeat", "keyframe_due", "trailing_due", "expected"), [
    (False, False, True, False, False, Grab.NOTHING),   # still, nothing due: no frame at all
    (False, True, True, False, False, Grab.REPEAT),     # still, the refresh is due: a skip picture
    (False, True, False, False, False, Grab.PICTURE),   # ... unless the encoder cannot write one
    (False, True, True, True, False, Grab.PICTURE),     # an IDR is due: a real picture
    (False, True, True, False, True, Grab.PICTURE),     # a trailing frame stays real (latency)
    (True, False, True, False, False, Grab.PICTURE),    # the screen changed
    (True, True, True, False, False, Grab.PICTURE),
])
def test_still_screen_refreshes_are_skip_pictures_when_possible(
        changed: bool, must: bool, can_repeat: bool, keyframe_due: bool, trailing_due: bool,
        expected: Grab) -> None:
    schedule = started()
    if keyframe_due:
        schedule.force_keyframe()
    if trailing_due:
        schedule.grabbed(101.0 - TRAILING_FRAME_S - 0.01, changed=True)
    assert schedule.grab(101.0, changed=changed, must=must, can_repeat=can_repeat) is expected


def test_after_a_change_every_tick_sends_at_least_a_skip_picture_for_nack_clock_s() -> None:
    """Losses in a change are seen (and NACKed by livekit-server) only when later packets arrive:
    for NACK_CLOCK_S after a change each 30 fps tick sends a skip picture where nothing else is due."""
    schedule = started()
    schedule.grabbed(100.0, changed=True)
    schedule.picture_encoded(REFINED_BYTES)  # nothing to refine: only the trailing frame and the clock
    ticks = [100.0 + k / 30 for k in range(1, 8)]
    produced = []
    for now in ticks:
        must = schedule.must_grab(now, last_published_at=100.0)
        grab = schedule.grab(now, changed=False, must=must, can_repeat=True)
        produced.append(grab)
        if grab is not Grab.NOTHING:
            schedule.grabbed(now, changed=False, repeat=grab is Grab.REPEAT)
    # 33 ms: a skip picture; 67 ms: the trailing frame (due at 50 ms); 100, 133 ms: skip
    # pictures; from 150 ms on nothing (a still screen sends nothing until its refresh).
    assert NACK_CLOCK_S == 0.15 and TRAILING_FRAME_S == 0.05
    assert produced == [Grab.REPEAT, Grab.PICTURE, Grab.REPEAT, Grab.REPEAT, Grab.NOTHING, Grab.NOTHING,
                        Grab.NOTHING]


def test_the_nack_clock_costs_no_encode_where_the_encoder_cannot_repeat() -> None:
    schedule = started()
    schedule.grabbed(100.0, changed=True)
    schedule.picture_encoded(REFINED_BYTES)
    now = 100.02
    assert schedule.must_grab(now, last_published_at=100.0) is True
    assert schedule.grab(now, changed=False, must=True, can_repeat=False) is Grab.NOTHING
    # The clock stops, so the capture loop waits for a change instead of asking every moment.
    assert schedule.must_grab(now, last_published_at=100.0) is False
    # A trailing frame still comes as a real picture.
    assert schedule.grab(100.06, changed=False, must=True, can_repeat=False) is Grab.PICTURE


# --- bitrate ----------------------------------------------------------------------------------------
def test_bitrate_follows_a_target_inside_the_bounds() -> None:
    assert follow_target(4_000_000, 6_000_000, floor=1_000_000, cap=8_000_000) == 6_000_000


def test_bitrate_target_is_clamped_to_the_bounds() -> None:
    assert follow_target(4_000_000, 50_000_000, floor=1_000_000, cap=8_000_000) == 8_000_000
    assert follow_target(8_000_000, 10_000, floor=1_000_000, cap=8_000_000) == 1_000_000


def test_small_target_changes_are_ignored() -> None:
    assert follow_target(4_000_000, 4_400_000, floor=1_000_000, cap=8_000_000) == 4_000_000  # +10 %


# --- keyframes on a constrained link -----------------------------------------------------------
def test_requests_while_an_idr_is_on_its_way_wait_for_it_and_get_one_idr() -> None:
    """An IDR of 0.5 s airtime left at 101.0: requests until 101.7 (hold + airtime) are held,
    then answered by one IDR; a request after that is answered at once."""
    schedule = started(echo=False)
    schedule.keyframe_requested()
    assert schedule.take_keyframe(101.0) is True
    schedule.keyframe_sent(101.0, airtime_s=0.5)
    steps = [(True, 101.1), (True, 101.4), (False, 101.69), (False, 101.7), (False, 101.8), (True, 102.5)]
    assert decisions(schedule, steps) == [False, False, False, True, False, True]


def test_a_held_request_is_not_a_reason_to_grab() -> None:
    schedule = started(echo=False)
    schedule.keyframe_sent(100.0, airtime_s=0.0)
    schedule.keyframe_requested()
    assert schedule.needs_keyframe(100.1) is False
    assert schedule.must_grab(100.1, last_published_at=100.05) is False
    assert schedule.needs_keyframe(100.0 + KEYFRAME_HOLD_S) is True


def test_the_hold_after_an_idr_is_capped() -> None:
    schedule = started(echo=False)
    schedule.keyframe_sent(100.0, airtime_s=60.0)
    schedule.keyframe_requested()
    assert schedule.take_keyframe(100.0 + KEYFRAME_HOLD_S + KEYFRAME_HOLD_MAX_S - 0.01) is False
    assert schedule.take_keyframe(100.0 + KEYFRAME_HOLD_S + KEYFRAME_HOLD_MAX_S) is True


def test_a_forced_keyframe_is_never_held() -> None:
    schedule = started()
    schedule.keyframe_sent(100.0, airtime_s=1.0)
    schedule.force_keyframe()
    assert schedule.needs_keyframe(100.1) is True
    assert schedule.take_keyframe(100.1) is True


def test_an_echo_waits_for_the_hold_too() -> None:
    schedule = started()
    schedule.keyframe_requested()
    assert schedule.take_keyframe(101.0) is True
    schedule.keyframe_sent(101.0, airtime_s=0.4)  # held until 101.6; the echo was due at 101.3
    assert [schedule.take_keyframe(t) for t in (101.3, 101.55, 101.65, 101.7)] == [False, False, True, False]


# --- refining what was squeezed under the bitrate cap --------------------------------------------
def test_a_change_is_refined_until_the_encoder_has_nothing_left() -> None:
    """A change at 100.0 (and its trailing frame): the still screen is encoded again every
    REFINE_INTERVAL_S as real pictures, until a picture comes out small."""
    schedule = started(at=99.0)
    schedule.grabbed(100.0, changed=True)
    schedule.picture_encoded(40_000)
    assert schedule.must_grab(100.05, last_published_at=100.0) is True  # the trailing frame
    schedule.grabbed(100.05, changed=False)
    schedule.picture_encoded(30_000)
    # A tick of the NACK clock in between: a skip picture, which does not postpone refining.
    assert schedule.grab(100.1, changed=False, must=schedule.must_grab(100.1, last_published_at=100.05),
                         can_repeat=True) is Grab.REPEAT
    schedule.grabbed(100.1, changed=False, repeat=True)
    assert schedule.must_grab(100.15, last_published_at=100.1) is True
    assert schedule.grab(100.15, changed=False, must=True, can_repeat=True) is Grab.PICTURE
    schedule.grabbed(100.15, changed=False)
    schedule.picture_encoded(REFINED_BYTES)  # nothing left to improve
    assert schedule.must_grab(100.3, last_published_at=100.15) is False
    assert schedule.grab(101.2, changed=False, must=True, can_repeat=True) is Grab.REPEAT


def test_a_small_picture_at_a_coarse_quantiser_does_not_end_refining() -> None:
    """libx264 starved by its VBV buffer skips every macroblock at QP 51 (26 bytes) although the
    picture before lost colour: that is no proof of nothing left, refining goes on; the same size
    at the quality target, or from an encoder that names no quantiser, ends it."""
    schedule = started(at=99.0)
    schedule.grabbed(100.0, changed=True)
    schedule.picture_encoded(4_117, qp=36)
    schedule.grabbed(100.05, changed=False)
    schedule.picture_encoded(26, qp=51)
    assert schedule.refine_due(100.15) is True
    schedule.grabbed(100.15, changed=False)
    schedule.picture_encoded(26, qp=REFINED_MAX_QP + 1)
    assert schedule.refine_due(100.25) is True
    schedule.grabbed(100.25, changed=False)
    schedule.picture_encoded(2_000, qp=24)
    assert schedule.refine_due(100.35) is True
    schedule.grabbed(100.35, changed=False)
    schedule.picture_encoded(26, qp=REFINED_MAX_QP)
    assert schedule.refine_due(100.45) is False
    other = started(at=99.0)
    other.grabbed(100.0, changed=True)
    other.picture_encoded(REFINED_BYTES, qp=None)
    assert other.refine_due(100.1) is False


def test_refining_stops_after_its_time_even_if_pictures_stay_big() -> None:
    schedule = started(at=99.0)
    schedule.grabbed(100.0, changed=True)
    now = 100.0
    while now < 100.0 + REFINE_MAX_S - REFINE_INTERVAL_S:
        now += REFINE_INTERVAL_S
        assert schedule.refine_due(now), now
        schedule.grabbed(now, changed=False)
        schedule.picture_encoded(20_000)
    assert schedule.refine_due(100.0 + REFINE_MAX_S + 0.01) is False


def test_an_idr_is_refined_like_a_change() -> None:
    schedule = started(at=99.0)
    schedule.keyframe_requested()
    assert schedule.take_keyframe(100.0) is True
    schedule.grabbed(100.0, changed=False)
    schedule.picture_encoded(60_000)
    assert schedule.refine_due(100.0 + REFINE_INTERVAL_S) is True
    assert schedule.idle_wait(100.05) == pytest.approx(REFINE_INTERVAL_S - 0.05)
