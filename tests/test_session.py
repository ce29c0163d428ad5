"""Pipeline decisions that need no X server or LiveKit: the MediaControl seam, bitrate state,
timestamps, the service's supervisor and token. The keyframe/refresh/trailing decisions are
tested on their own in test_scheduling.py."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from runner.config import load_settings
from runner.media.controls import Quality, QualityRequest, Rates, Region, ScreenMonitor, StreamInfo
from runner.media.pipeline import Pipeline, layout_from_mss
from runner.media.scheduling import REFINED_BYTES, TRAILING_FRAME_S
from runner.media.stats import NO_RATES, RateMeter, Stats, rates_between
from runner.publish import MIN_TIMESTAMP_STEP_US, RESTARTED, Publisher


class FakeGrabber:
    """What the pipeline reads of a grabber when nothing is grabbed."""

    size = (1280, 720)
    display = ":99"
    region: dict[str, int] | None = None

    def __init__(self) -> None:
        self.grabs = 0

    def grab_picture(self) -> Any:
        from runner.media.capture import CapturedFrame

        self.grabs += 1
        return CapturedFrame(pixels=None, captured_at=0.0)

    def close(self) -> None:
        pass


def make_pipeline(monkeypatch: pytest.MonkeyPatch, **sections: dict[str, Any]) -> Pipeline:
    """A pipeline over a FakeGrabber with these settings sections on top of a minimal configuration."""
    monkeypatch.delenv("RUNNER_CONFIG_FILE", raising=False)
    overrides: dict[str, Any] = {"livekit": {"url": "ws://127.0.0.1:1", "token": "t"}, "e2ee": {"passphrase": "p"}}
    for name, values in sections.items():
        overrides[name] = {**overrides.get(name, {}), **values}
    return Pipeline(load_settings(None, overrides), grabber=FakeGrabber(),  # type: ignore[arg-type]
                    seal=lambda data, keyframe: data)


@pytest.fixture
def pipeline(monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    p = make_pipeline(monkeypatch, encoder={"bitrate": 4_000_000, "min_bitrate": 1_000_000,
                                            "max_bitrate": 8_000_000}, capture={"fps": 30})
    yield p
    p.close()


def test_bitrate_starts_at_the_configured_value(pipeline: Pipeline) -> None:
    assert pipeline.stats.bitrate_target == 4_000_000


def test_bitrate_follows_the_receivers_within_the_cap(pipeline: Pipeline) -> None:
    pipeline._publisher = SimpleNamespace(  # type: ignore[assignment]
        take_feedback=lambda: SimpleNamespace(keyframe=False, target_bitrate=50_000_000, republished=False))
    pipeline._poll_feedback()
    assert pipeline.stats.bitrate_target == 8_000_000


def test_quality_is_clamped_by_the_configuration(pipeline: Pipeline) -> None:
    assert pipeline.set_quality(QualityRequest(fps=60, bitrate=100)) == Quality(
        fps=30, bitrate=1_000_000, max_width=0, max_height=0)
    assert pipeline.fps == 30
    assert pipeline.stats.bitrate_target == 1_000_000  # lowered to the new cap at once


def test_quality_leaves_what_is_not_asked_for(pipeline: Pipeline) -> None:
    pipeline.set_quality(QualityRequest(fps=10, bitrate=2_000_000, max_width=640))
    assert pipeline.set_quality(QualityRequest(max_height=360)) == Quality(
        fps=10, bitrate=2_000_000, max_width=640, max_height=360)
    assert pipeline.stats.bitrate_target == 2_000_000


def test_a_higher_cap_does_not_raise_the_target(pipeline: Pipeline) -> None:
    pipeline.set_quality(QualityRequest(bitrate=2_000_000))
    pipeline.set_quality(QualityRequest(bitrate=6_000_000))
    assert pipeline.stats.bitrate_target == 2_000_000


def test_stream_info_reports_the_encoded_size_and_counters(pipeline: Pipeline) -> None:
    pipeline.set_quality(QualityRequest(max_width=640))
    assert pipeline.stream_info() == StreamInfo(width=640, height=360, keyframes=0, dropped=0, rates=NO_RATES)


def test_region_and_display_come_from_the_grabber(pipeline: Pipeline) -> None:
    assert pipeline.display == ":99"
    assert pipeline.region is None
    pipeline._grabber.region = {"left": 10, "top": 20, "width": 300, "height": 200}  # type: ignore[misc]
    assert pipeline.region == Region(10, 20, 300, 200)


def test_screen_layout_from_mss_monitors() -> None:
    layout = layout_from_mss([
        {"left": 0, "top": 0, "width": 3200, "height": 1080},
        {"left": 0, "top": 0, "width": 1920, "height": 1080, "output": "DP-1", "name": "Dell", "is_primary": True},
        {"left": 1920, "top": 0, "width": 1280, "height": 1024, "output": ""},
    ])
    assert layout.union == Region(0, 0, 3200, 1080)
    assert layout.monitors == (ScreenMonitor(Region(0, 0, 1920, 1080), output="DP-1", name="Dell", primary=True),
                               ScreenMonitor(Region(1920, 0, 1280, 1024), output=None, name=None, primary=False))


def test_rates_between_two_snapshots() -> None:
    before = Stats(published=10, bytes_published=1000, encode_s=0.5, encoded=10)
    after = Stats(published=40, bytes_published=126_000, encode_s=0.8, encoded=40)
    assert rates_between(before, after, 1.0) == Rates(fps=30.0, bitrate=1_000_000, encode_ms=10.0)
    assert rates_between(after, after, 1.0) == Rates(fps=0.0, bitrate=0, encode_ms=None)


def test_host_time_is_the_mean_per_published_picture_over_the_interval() -> None:
    before = Stats(published=10, host_s=0.2, host_frames=10)
    after = Stats(published=40, host_s=0.5, host_frames=30)  # 10 of the 30 published were skip pictures
    assert rates_between(before, after, 1.0).host_ms == 15.0
    assert rates_between(after, after, 1.0).host_ms is None  # nothing published: no figure, not 0


def test_rate_meter_reports_the_last_interval() -> None:
    stats = Stats()
    meter = RateMeter(100.0, stats)
    assert meter.rates == NO_RATES
    stats.published, stats.bytes_published = 30, 250_000
    interval = meter.update(102.0, stats)
    assert interval.rates == Rates(fps=15.0, bitrate=1_000_000, encode_ms=None)
    assert (interval.before.published, interval.after.published) == (0, 30)
    assert meter.update(103.0, stats).rates == Rates(fps=0.0, bitrate=0, encode_ms=None)


def test_timestamps_rise_by_at_least_a_millisecond() -> None:
    publisher = Publisher.__new__(Publisher)  # only the timestamp logic, no room
    publisher._last_ts_us = 0
    stamps = [publisher.next_timestamp_us(t) for t in (10.0, 10.0, 10.0005, 9.0, 10.5)]
    assert stamps == [10_000_000, 10_001_000, 10_002_000, 10_003_000, 10_500_000]
    assert all(b - a >= MIN_TIMESTAMP_STEP_US for a, b in itertools.pairwise(stamps))


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
                             can_publish_data=True, can_publish_sources=["screen_share", "screen_share_audio"])
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
    p = make_pipeline(monkeypatch, e2ee={"frame_engine": engine}, capture={"skip_unchanged": configured})
    try:
        assert p.skip_unchanged is effective
    finally:
        p.close()


class FakeWatch:
    def __init__(self, changed: bool) -> None:
        self.answer = changed

    def changed(self) -> bool:
        return self.answer

    def close(self) -> None:
        pass


class FakeEncoder:
    width, height, can_repeat = 1280, 720, True


def test_a_still_screen_refresh_is_a_repeat(pipeline: Pipeline) -> None:
    pipeline._watch = FakeWatch(False)  # type: ignore[assignment]
    pipeline._encoders.encoder = FakeEncoder()  # type: ignore[assignment]
    pipeline._schedule.take_keyframe(0.0)  # the start-up IDR is out
    frame, changed = pipeline._grab_if_changed(True)
    assert frame is not None and frame.repeat is True
    assert changed is False


def test_no_skip_picture_for_an_encoder_of_another_size(pipeline: Pipeline) -> None:
    pipeline._watch = FakeWatch(False)  # type: ignore[assignment]
    pipeline._encoders.encoder = FakeEncoder()  # type: ignore[assignment]
    pipeline._schedule.take_keyframe(0.0)
    pipeline.set_quality(QualityRequest(max_width=640))  # a smaller picture: the encoder is replaced
    frame, _ = pipeline._grab_if_changed(True)
    assert frame is not None and frame.repeat is False
    assert frame.refine is True  # the screen did not change: encoded to improve the last picture


def test_a_changed_screen_is_grabbed_as_a_change_not_a_refinement(pipeline: Pipeline) -> None:
    pipeline._watch = FakeWatch(True)  # type: ignore[assignment]
    pipeline._encoders.encoder = FakeEncoder()  # type: ignore[assignment]
    pipeline._schedule.take_keyframe(0.0)
    frame, changed = pipeline._grab_if_changed(False)
    assert frame is not None and changed is True
    assert (frame.repeat, frame.refine) == (False, False)


def test_the_nack_clock_does_not_keep_grabbing_where_the_encoder_cannot_repeat(
        pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """High profile or a hardware encoder writes no skip pictures: the ticks after a change produce
    nothing, and the capture loop must then wait for a change, not ask again at once until the
    clock runs out."""
    import runner.media.pipeline as pipeline_module

    now = [100.0]
    monkeypatch.setattr(pipeline_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    encoder = FakeEncoder()
    encoder.can_repeat = False
    pipeline._encoders.encoder = encoder  # type: ignore[assignment]
    pipeline._watch = FakeWatch(True)  # type: ignore[assignment]
    schedule = pipeline._schedule
    schedule.take_keyframe(99.0)
    frame, changed = pipeline._grab_if_changed(False)
    assert frame is not None and changed is True
    schedule.grabbed(100.0, changed=True)
    schedule.picture_encoded(REFINED_BYTES)  # nothing to refine
    pipeline._watch.answer = False
    now[0] = 100.02  # before the trailing frame, inside NACK_CLOCK_S
    assert schedule.must_grab(now[0], last_published_at=100.0) is True
    assert pipeline._grab_if_changed(True) == (None, False)
    assert schedule.must_grab(now[0], last_published_at=100.0) is False
    now[0] = 100.0 + TRAILING_FRAME_S  # the trailing frame still comes, as a real picture
    frame, _ = pipeline._grab_if_changed(schedule.must_grab(now[0], last_published_at=100.0))
    assert frame is not None and frame.repeat is False


class FakeRoom:
    """The event registry of an rtc.Room, nothing else."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def on(self, event: str, handler: Any = None) -> Any:
        self.handlers[event] = handler
        return handler


def test_a_participant_joining_counts_as_a_keyframe_request_once() -> None:
    """After the SDK's full reconnect LiveKit's request for a new subscriber was seen never to
    arrive: a join asks for one itself (held like LiveKit's requests by FrameSchedule)."""
    room = FakeRoom()
    requested = [False]

    def source_feedback() -> SimpleNamespace:
        asked, requested[0] = requested[0], False
        return SimpleNamespace(keyframe_requested=asked, rate_control=None)

    source = SimpleNamespace(take_feedback=source_feedback)
    publisher = Publisher(room, source, "TR_video", frame_engine="runner", key_index=0)  # type: ignore[arg-type]
    assert publisher.take_feedback().keyframe is False
    room.handlers["participant_connected"](SimpleNamespace(identity="viewer"))
    assert publisher.take_feedback().keyframe is True
    assert publisher.take_feedback().keyframe is False
    requested[0] = True  # LiveKit's own request still comes through
    assert publisher.take_feedback().keyframe is True


def test_after_the_sdks_full_reconnect_the_runner_joins_afresh_not_after_a_resume() -> None:
    """A resume (``reconnected`` alone) keeps the connection; a full reconnect (the video
    republished, then ``reconnected``) ends it with RESTARTED, so the service joins afresh; the
    audio track's republish alone does not."""
    cryptors: list[SimpleNamespace] = []

    def make(room: FakeRoom) -> Publisher:
        room.local_participant = SimpleNamespace(identity="desktop-runner")  # type: ignore[attr-defined]
        room.e2ee_manager = SimpleNamespace(frame_cryptors=lambda: cryptors)  # type: ignore[attr-defined]
        source = SimpleNamespace(take_feedback=lambda: SimpleNamespace(keyframe_requested=False, rate_control=None))
        return Publisher(room, source, "TR_video", frame_engine="runner", key_index=0)  # type: ignore[arg-type]

    room = FakeRoom()
    publisher = make(room)
    room.handlers["reconnecting"]()
    room.handlers["reconnected"]()
    assert not publisher.disconnected.is_set() and publisher.live

    room = FakeRoom()
    publisher = make(room)
    publisher.audio_sid = "TR_audio"
    publisher._configure_audio_cryptor = lambda index: None  # type: ignore[method-assign]
    room.handlers["reconnecting"]()
    room.handlers["local_track_republished"](SimpleNamespace(sid="TR_audio2"), "TR_audio")
    room.handlers["reconnected"]()
    assert not publisher.disconnected.is_set()

    room = FakeRoom()
    publisher = make(room)
    cryptors[:] = [SimpleNamespace(track_sid="TR_video2", participant_identity="desktop-runner",
                                   set_enabled=lambda on: switched.append(on))]
    switched: list[bool] = []
    room.handlers["reconnecting"]()
    room.handlers["local_track_republished"](SimpleNamespace(sid="TR_video2"), "TR_video")
    assert switched == [False] and not publisher.disconnected.is_set()  # the new cryptor off at once
    assert publisher.take_feedback().republished is True
    room.handlers["reconnected"]()
    assert publisher.disconnected.is_set() and publisher.disconnect_reason == RESTARTED == "SDK_RESTARTED"


def test_the_status_line_reports_the_interval() -> None:
    import io
    import json

    from runner.logs import setup_logging
    from runner.media.stats import Interval, log_status

    out = io.StringIO()
    setup_logging("info", "json", out)
    before = Stats(published=10, bytes_published=1000, encode_s=0.5, encoded=10, keyframes=1, dropped=2)
    after = Stats(published=40, bytes_published=126_000, encode_s=0.8, encoded=40, keyframes=3, dropped=2,
                  unchanged=5, repeated=4, bitrate_target=2_000_000)
    log_status(Interval(before, after, rates_between(before, after, 1.0)), connected=True, subscribers=2)
    line = json.loads(out.getvalue().splitlines()[-1])
    del line["timestamp"], line["logger"], line["level"]
    assert line == {"event": "status", "connected": True, "fps": 30.0, "encode_ms": 10.0, "bitrate": 1_000_000,
                    "bitrate_target": 2_000_000, "keyframes": 2, "keyframe_requests": 0, "dropped": 0,
                    "unchanged": 5, "repeated": 4, "rejected": 0, "subscribers": 2}
