"""The NACK watch (runner/nackwatch.py): counter sequences as the publisher's outbound-rtp gave them
on bench_network's lossy links, read every 100 ms next to the relays' packet traces."""

from __future__ import annotations

import asyncio
import time
from itertools import accumulate

import numpy as np
import pytest
from livekit import rtc

from devstack import LiveKitServer, mint_token
from runner import publish
from runner.config import load_settings
from runner.media.encode import H264Encoder
from runner.nackwatch import (
    NACK_WATCH_POLL_S,
    REPORT_WATCH_FIRST_S,
    REPORT_WATCH_SILENCE_S,
    NackWatch,
    ReportWatch,
)
from runner.publish import Publisher, SdkKey

PASSPHRASE = "nack watch test passphrase"


def feed(watch: NackWatch, deltas: list[tuple[int, int]], *, start: float = 0.0,
         base: tuple[int, int] = (10, 10), rtt_s: float | None = None) -> list[tuple[int, int] | None]:
    """Counters rising by ``deltas`` (NACKs, sent again) per poll, after a first reading."""
    watch.update(start, *base, rtt_s)
    nacks = accumulate((d[0] for d in deltas), initial=base[0])
    resent = accumulate((d[1] for d in deltas), initial=base[1])
    readings = list(zip(nacks, resent, strict=True))[1:]
    return [watch.update(start + (i + 1) * NACK_WATCH_POLL_S, n, r, rtt_s) for i, (n, r) in enumerate(readings)]


def test_nacks_for_a_lost_padding_packet_ask_for_a_keyframe_once() -> None:
    # 2 Mbit/s, 40 ms, 1 %: a padding packet lost, and a video packet lost (sent again) 80 ms later.
    out = feed(NackWatch(), [(1, 0), (2, 0), (2, 1), (1, 0), (0, 0), (0, 0)])
    assert out == [None, (3, 0), None, None, None, None]
    # 2 Mbit/s, 80 ms, 2 %: NACKs for a lost padding packet, none answered.
    assert feed(NackWatch(), [(1, 0), (1, 0), (1, 0), (2, 0), (1, 0)]) == [None, None, (3, 0), None, None]


def test_nacks_answered_by_packets_sent_again_are_no_hole() -> None:
    # 2 Mbit/s, 80 ms, 2 %: a burst of lost video packets, each sent again at its first NACK and
    # re-NACKed within the round trip: 18 NACKs in 0.5 s, 12 packets sent again.
    out = feed(NackWatch(), [(1, 1), (1, 0), (2, 1), (0, 0), (1, 0), (3, 2), (6, 4), (4, 3), (4, 3), (3, 3),
                             (4, 5), (3, 2), (3, 2)])
    assert out == [None] * 13


def test_a_few_unanswered_nacks_are_no_hole() -> None:
    # Two NACKs unanswered (a packet sent again and lost again is NACKed twice, answered once).
    assert feed(NackWatch(), [(1, 0), (1, 0), (0, 0), (0, 0), (0, 0), (0, 0)]) == [None] * 6
    # Three, but answered: one sent again of three is more than a quarter.
    assert feed(NackWatch(), [(1, 1), (1, 0), (1, 0), (0, 0)]) == [None] * 4


def test_only_the_window_counts() -> None:
    # Unanswered NACKs spread thin (one every 0.2 s) are no hole.
    assert feed(NackWatch(), [(1, 0), (0, 0)] * 6) == [None] * 12


def test_after_a_keyframe_the_holes_it_closes_are_not_asked_for_again() -> None:
    # A probe burst lost four padding packets (2 Mbit/s, 80 ms, 2 %: a round trip of 85 ms to
    # LiveKit): their 20 tries came over half a second; once the first four asked for a keyframe,
    # the rest ask for nothing ...
    burst = [(2, 0), (2, 0), (4, 0), (4, 0), (3, 0), (2, 0), (1, 0), (1, 0), (0, 0), (0, 0)]
    assert feed(NackWatch(), burst, rtt_s=0.085) == [None, (4, 0)] + [None] * 8
    # ... and a new hole after the quiet time (6 round trips: 0.51 s) is asked for.
    out = feed(NackWatch(), [(2, 0), (2, 0)] + [(3, 0)] * 5 + [(1, 0)] * 4, rtt_s=0.085)
    assert out == [None, (4, 0)] + [None] * 5 + [None, None, (3, 0), None]
    # Without a round trip known, the quiet time is 0.3 s.
    out = feed(NackWatch(), [(2, 0), (2, 0), (3, 0), (3, 0)] + [(1, 0)] * 4)
    assert out == [None, (4, 0), None, None, None, None, (3, 0), None]


def test_the_window_grows_with_the_round_trip() -> None:
    # LiveKit's tries at a round trip of 150 ms: 0.02, 0.17, 0.36, 0.59 and 0.88 s after the
    # gap, read every 0.1 s: never three within 0.3 s, three within 0.6 s (4 round trips).
    tries = [(1, 0), (1, 0), (0, 0), (1, 0), (0, 0), (1, 0), (0, 0), (0, 0), (1, 0)]
    assert feed(NackWatch(), tries) == [None] * 9
    watch = NackWatch()
    watch.update(0.0, 10, 10, 0.15)
    out = [watch.update((i + 1) * NACK_WATCH_POLL_S, 10 + n, 10, 0.15)
           for i, n in enumerate(accumulate(d[0] for d in tries))]
    assert out[:3] == [None] * 3 and out[3] == (3, 0)
    assert watch.window(0.15) == 4 * 0.15 and watch.window(0.02) == 0.3


def test_counters_that_go_down_start_the_watch_again() -> None:
    # A republished track counts from zero: the drop is no delta, and the old deltas are gone.
    watch = NackWatch()
    assert feed(watch, [(1, 0), (1, 0)]) == [None, None]
    assert watch.update(0.3, 0, 0) is None
    assert watch.update(0.4, 1, 0) is None  # 1 NACK since the restart, not 3
    assert watch.update(0.5, 3, 0) == (3, 0)


def test_video_sent_without_a_report_for_the_silence_means_it_goes_nowhere() -> None:
    watch = ReportWatch()
    assert watch.update(0.0, 10, 100, 7) is None
    # Reports about once a second while frames go out: fine however long.
    assert all(watch.update(float(t), 10 + t, 100 + 30 * t, 7 + t) is None for t in range(1, 30))
    # Then frames go out (a still screen: one a second) and no report comes back.
    silence = round(REPORT_WATCH_SILENCE_S)
    out = [watch.update(29.0 + t, 39 + t, 970 + t, 36) for t in range(1, silence + 2)]
    assert out[:silence - 1] == [None] * (silence - 1)
    assert out[silence - 1] == (REPORT_WATCH_SILENCE_S, silence, silence) and out[silence] is None


def test_frames_that_leave_no_packet_for_the_silence_go_nowhere() -> None:
    # Reports may keep their count (no packet, no report), frames are handed over, nothing leaves.
    watch = ReportWatch()
    assert watch.update(0.0, 100, 500, 30) is None
    silence = round(REPORT_WATCH_SILENCE_S)
    out = [watch.update(float(t), 100 + t, 500, 30) for t in range(1, silence + 1)]
    assert out[:-1] == [None] * (silence - 1) and out[-1] == (REPORT_WATCH_SILENCE_S, 0, silence)


def test_a_track_never_reported_on_goes_unreported_sooner() -> None:
    # A join or the SDK's republish: the first report comes 1-2 s after the first packets.
    watch = ReportWatch()
    assert watch.update(0.0, 0, 0, 0) is None
    assert watch.update(REPORT_WATCH_FIRST_S - 1, 5, 50, 0) is None
    assert watch.update(REPORT_WATCH_FIRST_S, 6, 60, 0) == (REPORT_WATCH_FIRST_S, 60, 6)
    # Reported on once, the long silence applies.
    watch = ReportWatch()
    watch.update(0.0, 0, 0, 0)
    assert watch.update(1.5, 2, 40, 1) is None
    assert watch.update(1.5 + REPORT_WATCH_FIRST_S, 8, 200, 1) is None
    assert watch.update(1.5 + REPORT_WATCH_SILENCE_S, 22, 600, 1) == (REPORT_WATCH_SILENCE_S, 560, 20)


def test_no_report_while_nothing_is_pushed_is_no_silence() -> None:
    watch = ReportWatch()
    watch.update(0.0, 20, 50, 3)
    assert [watch.update(float(t), 22, 52, 3) for t in range(1, 30)] == [None] * 29  # 2 frames in 29 s


def test_a_republished_track_starts_the_count_again() -> None:
    watch = ReportWatch()
    watch.update(0.0, 10, 500, 20)
    assert watch.update(REPORT_WATCH_SILENCE_S - 1, 29, 600, 20) is None
    t = REPORT_WATCH_SILENCE_S
    assert watch.update(t, 30, 3, 0) is None  # counters from zero: a new track, not yet reported on
    assert watch.update(t + REPORT_WATCH_FIRST_S - 1, 35, 40, 0) is None
    assert watch.update(t + REPORT_WATCH_FIRST_S, 36, 50, 0) == (REPORT_WATCH_FIRST_S, 47, 6)


# --- against a real LiveKit server --------------------------------------------------------------


@pytest.mark.integration
async def test_the_publisher_watches_its_video_counters_from_the_sdk_while_someone_is_there(
        livekit_server: LiveKitServer, room_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The watch runs on the SDK's real stats: while another participant is in the room it is fed
    the video's counters (none NACKed on loopback), before that nothing is read; the watch stops
    with the publisher."""
    readings: list[tuple[int, int, float | None]] = []

    class Recorded(NackWatch):
        def update(self, at: float, nacks: int, resent: int, rtt_s: float | None = None) -> tuple[int, int] | None:
            readings.append((nacks, resent, rtt_s))
            return super().update(at, nacks, resent, rtt_s)

    reports: list[tuple[int, int]] = []

    class RecordedReports(ReportWatch):
        def update(self, at: float, pushed: int, sent: int, received: int) -> tuple[float, int, int] | None:
            reports.append((sent, received))
            return super().update(at, pushed, sent, received)

    monkeypatch.setattr(publish, "NackWatch", Recorded)
    monkeypatch.setattr(publish, "ReportWatch", RecordedReports)
    settings = load_settings(None, {
        "livekit": {"url": livekit_server.url, "api_key": livekit_server.api_key,
                    "api_secret": livekit_server.api_secret, "room": room_name},
        "e2ee": {"passphrase": PASSPHRASE},
    })
    publisher = await Publisher.connect(settings, 320, 240, SdkKey(PASSPHRASE.encode(), 0))
    viewer = rtc.Room()
    try:
        encoder = H264Encoder(320, 240, fps=30, bitrate=500_000)
        picture = np.zeros((240, 320, 4), np.uint8)

        async def send(frames: int) -> None:
            for i in range(frames):
                picture[:, :, 1] = 8 * (i % 30)
                au = encoder.encode(picture, keyframe=i == 0)
                publisher.push(au.data, keyframe=au.keyframe, width=320, height=240,
                               timestamp_us=publisher.next_timestamp_us(time.monotonic()))
                await asyncio.sleep(1 / 30)

        await send(30)
        assert readings == []  # alone in the room: nothing read
        await viewer.connect(livekit_server.url,
                             mint_token(livekit_server.api_key, livekit_server.api_secret, room_name, "viewer"),
                             rtc.RoomOptions(auto_subscribe=False))
        for _ in range(10):  # LiveKit announces a participant after 1-3 s
            if publisher.room.remote_participants:
                break
            await send(30)
        assert publisher.room.remote_participants
        await send(30)
        assert len(readings) >= 3, readings
        assert all(r[:2] == (0, 0) for r in readings), readings
        # LiveKit reports on the video it receives (what the report watch relies on).
        await send(60)
        assert reports[-1][0] > reports[0][0] and reports[-1][1] > reports[0][1], reports
        assert not publisher.disconnected.is_set()
        task = publisher._stats_task
        assert task is not None and not task.done()
    finally:
        await viewer.disconnect()
        await publisher.close()
    assert task.done()
