"""Pipeline decisions that need no X server or LiveKit: bitrate following, timestamps."""

from __future__ import annotations

import pytest

from runner.config import load_settings
from runner.media.pipeline import Pipeline
from runner.publish import MIN_TIMESTAMP_STEP_US, Publisher


@pytest.fixture
def pipeline(monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    for name in ("RUNNER_CONFIG_FILE",):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(None, {
        "livekit": {"url": "ws://127.0.0.1:1", "token": "t"},
        "e2ee": {"passphrase": "p"},
        "encoder": {"bitrate": 4_000_000, "min_bitrate": 1_000_000, "max_bitrate": 8_000_000},
    })
    p = Pipeline(settings, grabber=None, seal=lambda data, keyframe: data)  # type: ignore[arg-type]
    yield p
    p._capture_pool.shutdown()
    p._encode_pool.shutdown()


def test_bitrate_starts_at_the_configured_value(pipeline: Pipeline) -> None:
    assert pipeline.stats.bitrate_target == 4_000_000


def test_bitrate_follows_a_target_inside_the_bounds(pipeline: Pipeline) -> None:
    pipeline._follow_target(6_000_000)
    assert pipeline.stats.bitrate_target == 6_000_000


def test_bitrate_target_is_clamped_to_the_bounds(pipeline: Pipeline) -> None:
    pipeline._follow_target(50_000_000)
    assert pipeline.stats.bitrate_target == 8_000_000
    pipeline._follow_target(10_000)
    assert pipeline.stats.bitrate_target == 1_000_000


def test_small_target_changes_are_ignored(pipeline: Pipeline) -> None:
    pipeline._follow_target(4_400_000)  # +10 %: inside the hysteresis band
    assert pipeline.stats.bitrate_target == 4_000_000


def test_timestamps_rise_by_at_least_a_millisecond() -> None:
    publisher = Publisher.__new__(Publisher)  # only the timestamp logic, no room
    publisher._last_ts_us = 0
    stamps = [publisher.next_timestamp_us(t) for t in (10.0, 10.0, 10.0005, 9.0, 10.5)]
    assert stamps == [10_000_000, 10_001_000, 10_002_000, 10_003_000, 10_500_000]
    assert all(b - a >= MIN_TIMESTAMP_STEP_US for a, b in zip(stamps, stamps[1:]))


def test_first_picture_is_a_keyframe(pipeline: Pipeline) -> None:
    assert pipeline._wants_keyframe(False, 100.0) is True
    assert pipeline._wants_keyframe(False, 100.1) is False


def test_requested_keyframe_is_sent_at_once_and_echoed_once(pipeline: Pipeline) -> None:
    pipeline._wants_keyframe(False, 100.0)  # the start-up IDR
    decisions = [pipeline._wants_keyframe(requested, t) for requested, t in [
        (True, 101.0), (False, 101.1), (False, 101.29), (False, 101.3), (False, 101.4), (False, 102.0)]]
    assert decisions == [True, False, False, True, False, False]


def test_requests_in_a_row_push_the_echo_back(pipeline: Pipeline) -> None:
    pipeline._wants_keyframe(False, 100.0)
    decisions = [pipeline._wants_keyframe(requested, t) for requested, t in [
        (True, 101.0), (True, 101.2), (False, 101.3), (False, 101.5), (False, 101.6)]]
    assert decisions == [True, True, False, True, False]


def test_forced_keyframe_is_sent_without_echo(pipeline: Pipeline) -> None:
    pipeline._wants_keyframe(False, 100.0)
    pipeline.request_keyframe()
    assert [pipeline._wants_keyframe(False, t) for t in (101.0, 101.3, 101.6)] == [True, False, False]


def test_no_echo_with_the_sdk_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(None, {"livekit": {"url": "ws://127.0.0.1:1", "token": "t"},
                                    "e2ee": {"passphrase": "p", "frame_engine": "sdk"}})
    p = Pipeline(settings, grabber=None, seal=lambda data, keyframe: data)  # type: ignore[arg-type]
    try:
        p._wants_keyframe(False, 100.0)
        assert [p._wants_keyframe(r, t) for r, t in [(True, 101.0), (False, 101.3), (False, 101.6)]] == [
            True, False, False]
    finally:
        p._capture_pool.shutdown()
        p._encode_pool.shutdown()


async def test_supervised_task_is_restarted_then_given_up() -> None:
    from runner.service import supervise

    runs: list[int] = []

    async def crashy() -> None:
        runs.append(len(runs))
        raise RuntimeError(f"crash {len(runs)}")

    with pytest.raises(RuntimeError, match="crash 3"):
        await supervise("crashy", crashy, initial_s=0.001, cap_s=0.002, max_crashes=3)
    assert runs == [0, 1, 2]


async def test_supervised_task_that_recovers_keeps_running() -> None:
    from runner.service import supervise

    runs: list[int] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise OSError("transient")

    await supervise("flaky", flaky, initial_s=0.001, cap_s=0.002, max_crashes=5)
    assert len(runs) == 3


def test_runner_token_has_the_claims_livekit_api_would_write(monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime

    import jwt
    from livekit import api

    from runner.publish import mint_token

    monkeypatch.delenv("RUNNER_CONFIG_FILE", raising=False)
    secret = "s" * 32
    settings = load_settings(None, {
        "livekit": {"url": "ws://127.0.0.1:1", "api_key": "key", "api_secret": secret, "room": "desk",
                    "identity": "runner-1", "name": "Office PC", "token_ttl_s": 600},
        "e2ee": {"passphrase": "p"},
    })
    ours = jwt.decode(mint_token(settings), secret, algorithms=["HS256"])
    grants = api.VideoGrants(room_join=True, room="desk", can_publish=True, can_subscribe=True,
                             can_publish_data=True, can_publish_sources=["screen_share"])
    theirs = jwt.decode(api.AccessToken("key", secret).with_identity("runner-1").with_name("Office PC")
                        .with_grants(grants).with_ttl(datetime.timedelta(seconds=600)).to_jwt(),
                        secret, algorithms=["HS256"])
    for claims in (ours, theirs):
        assert claims.pop("exp") - claims.pop("nbf") == 600
    assert ours == theirs
    assert api.TokenVerifier("key", secret).verify(mint_token(settings)).identity == "runner-1"


@pytest.mark.parametrize(("engine", "configured", "effective"), [
    ("runner", True, True), ("runner", False, False), ("sdk", True, False)])
def test_still_ticks_are_skipped_only_with_the_runner_engine(
        monkeypatch: pytest.MonkeyPatch, engine: str, configured: bool, effective: bool) -> None:
    monkeypatch.delenv("RUNNER_CONFIG_FILE", raising=False)
    settings = load_settings(None, {"livekit": {"url": "ws://127.0.0.1:1", "token": "t"},
                                    "e2ee": {"passphrase": "p", "frame_engine": engine},
                                    "capture": {"skip_unchanged": configured}})
    p = Pipeline(settings, grabber=None, seal=lambda data, keyframe: data)  # type: ignore[arg-type]
    try:
        assert p.skip_unchanged is effective
    finally:
        p._capture_pool.shutdown()
        p._encode_pool.shutdown()


class FakeWatch:
    def __init__(self, changed: bool) -> None:
        self.answer = changed

    def changed(self) -> bool:
        return self.answer


class FakeGrabber:
    size = (1280, 720)

    def __init__(self) -> None:
        self.grabs = 0

    def grab_picture(self):
        from runner.media.capture import CapturedFrame

        self.grabs += 1
        return CapturedFrame(pixels=None, captured_at=0.0)


class FakeEncoder:
    width, height = 1280, 720

    def __init__(self, can_repeat: bool) -> None:
        self.can_repeat = can_repeat


@pytest.mark.parametrize(("changed", "must", "can_repeat", "keyframe_due", "trailing_due", "expected"), [
    (False, False, True, False, False, None),       # still, nothing due: no frame at all
    (False, True, True, False, False, "repeat"),    # still, the refresh is due: a skip picture
    (False, True, False, False, False, "grab"),     # ... unless the encoder cannot write one
    (False, True, True, True, False, "grab"),       # an IDR is due: a real picture
    (False, True, True, False, True, "grab"),       # a trailing frame stays real (latency)
    (True, False, True, False, False, "grab"),      # the screen changed
    (True, True, True, False, False, "grab"),
])
def test_still_screen_refreshes_are_skip_pictures_when_possible(
        pipeline: Pipeline, changed: bool, must: bool, can_repeat: bool, keyframe_due: bool,
        trailing_due: bool, expected: str | None) -> None:
    import time

    grabber = FakeGrabber()
    pipeline.grabber = grabber  # type: ignore[assignment]
    pipeline._watch = FakeWatch(changed)
    pipeline._encoder = FakeEncoder(can_repeat)  # type: ignore[assignment]
    pipeline._force_keyframe = keyframe_due
    pipeline._trailing_at = time.monotonic() - 0.01 if trailing_due else None
    frame = pipeline._grab_if_changed(must)
    got = None if frame is None else "repeat" if frame.repeat else "grab"
    assert got == expected
    assert grabber.grabs == (expected == "grab")
    assert pipeline._grab_changed is changed  # a change schedules a trailing frame


def test_no_skip_picture_for_an_encoder_of_another_size(pipeline: Pipeline) -> None:
    pipeline.grabber = FakeGrabber()  # type: ignore[assignment]
    pipeline._watch = FakeWatch(False)
    pipeline._encoder = FakeEncoder(True)  # type: ignore[assignment]
    pipeline._force_keyframe = False
    pipeline.max_size = (640, 0)  # a viewer asked for a smaller picture: the encoder is replaced
    assert pipeline._grab_if_changed(True).repeat is False
