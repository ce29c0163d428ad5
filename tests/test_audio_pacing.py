"""The audio path's pure parts: frame slicing, the bounded backlog, outage reporting, the audio
server's address and client command lines, and which microphone the runner subscribes to."""

from __future__ import annotations

import pytest

from runner.audio import pulse
from runner.audio.format import DESKTOP, MICROPHONE
from runner.audio.microphone import MicPublication, virtual_source_modules, wanted_microphone
from runner.audio.pacing import Backlog, FrameSlicer, LagGuard, Outage


def test_formats_are_10_ms_of_48_khz_s16() -> None:
    assert (DESKTOP.frame_bytes, MICROPHONE.frame_bytes) == (1920, 960)
    assert DESKTOP.bytes_per_second == 192_000


def test_slicer_cuts_whole_frames_and_keeps_the_rest_for_later() -> None:
    slicer = FrameSlicer(4)
    assert slicer.push(b"abcdefghij") == [b"abcd", b"efgh"]
    assert slicer.push(b"k") == []
    assert slicer.push(b"lmnop") == [b"ijkl", b"mnop"]


def test_slicer_reset_drops_a_partial_frame_of_an_ended_stream() -> None:
    slicer = FrameSlicer(4)
    slicer.push(b"ab")
    slicer.reset()
    assert slicer.push(b"cdef") == [b"cdef"]


def test_slicer_rejects_an_empty_frame_size() -> None:
    with pytest.raises(ValueError, match="frame_bytes must be positive"):
        FrameSlicer(0)


def test_backlog_drops_the_oldest_frames_beyond_its_bound() -> None:
    backlog = Backlog(2)
    assert [backlog.put(b"1"), backlog.put(b"2"), backlog.put(b"3")] == [0, 0, 1]
    assert (backlog.take(), backlog.take(), backlog.take()) == (b"2", b"3", None)
    assert backlog.dropped == 1


def test_an_outage_is_reported_once_and_retried_with_a_capped_doubling_delay() -> None:
    outage = Outage(initial_s=0.5, cap_s=2.0)
    assert [outage.failed(now) for now in (10.0, 10.5, 11.5, 13.5, 15.5)] == [
        (True, 0.5), (False, 1.0), (False, 2.0), (False, 2.0), (False, 2.0)]


def test_sound_flowing_again_ends_the_outage_once_with_its_length() -> None:
    outage = Outage()
    outage.failed(100.0)
    assert outage.flowing(103.25) == 3.25
    assert outage.flowing(104.0) is None
    assert outage.failed(200.0) == (True, 0.5)  # a new outage is reported again, from the start


def test_flowing_without_an_outage_says_nothing() -> None:
    assert Outage().flowing(1.0) is None


def test_server_is_the_setting_then_pulse_server_then_the_session_socket() -> None:
    assert pulse.resolve_server("tcp:host:4713", {"PULSE_SERVER": "unix:/x"}, 1000) == "tcp:host:4713"
    assert pulse.resolve_server(None, {"PULSE_SERVER": "unix:/x"}, 1000) == "unix:/x"
    assert pulse.resolve_server(None, {"XDG_RUNTIME_DIR": "/run/user/7"}, 1000) == "unix:/run/user/7/pulse/native"
    assert pulse.resolve_server(None, {}, 1000) == "unix:/run/user/1000/pulse/native"


def test_only_local_servers_have_a_socket_to_look_for() -> None:
    assert str(pulse.socket_path("unix:/run/user/7/pulse/native")) == "/run/user/7/pulse/native"
    assert pulse.socket_path("tcp:10.0.0.2:4713") is None


def test_a_missing_socket_is_unavailable_with_the_address_in_the_reason(tmp_path) -> None:
    with pytest.raises(pulse.PulseUnavailable, match="no audio server at unix:"):
        pulse.check_present(f"unix:{tmp_path}/native", "pactl")


def test_record_and_playback_command_lines_name_the_server_and_the_format() -> None:
    assert pulse.record_argv("unix:/s", "@DEFAULT_MONITOR@", DESKTOP, 10) == [
        "parec", "--server=unix:/s", "--device=@DEFAULT_MONITOR@", "--raw", "--format=s16le", "--rate=48000",
        "--channels=2", "--latency-msec=10", "--client-name=desktop-runner", "--stream-name=desktop audio"]
    assert pulse.playback_argv("unix:/s", "mic_sink", MICROPHONE, 30)[:8] == [
        "pacat", "--playback", "--server=unix:/s", "--device=mic_sink", "--raw", "--format=s16le",
        "--rate=48000", "--channels=1"]


def test_short_listing_names() -> None:
    assert pulse.short_names("0\tdesktop\tmodule-null-sink.c\ts16le 2ch 48000Hz\tIDLE\n1\tmic_sink\tx\n") == [
        "desktop", "mic_sink"]


def test_the_virtual_microphone_is_a_null_sink_and_a_source_remapped_from_its_monitor() -> None:
    sink, remap = virtual_source_modules("desktop_runner_mic")
    assert sink[:2] == ["module-null-sink", "sink_name=desktop_runner_mic_sink"]
    assert remap[:3] == ["module-remap-source", "master=desktop_runner_mic_sink.monitor",
                         "source_name=desktop_runner_mic"]


MIC_ALICE = MicPublication("alice", "TR_a", microphone=True, encrypted=True)
MIC_BOB = MicPublication("bob", "TR_b", microphone=True, encrypted=True)


def test_only_the_controllers_microphone_is_wanted() -> None:
    assert wanted_microphone("bob", [MIC_ALICE, MIC_BOB]) == "TR_b"


def test_nobody_in_control_means_no_microphone() -> None:
    assert wanted_microphone(None, [MIC_ALICE, MIC_BOB]) is None


def test_an_unencrypted_microphone_is_never_wanted_even_from_the_controller() -> None:
    assert wanted_microphone("alice", [MicPublication("alice", "TR_a", microphone=True, encrypted=False)]) is None


def test_the_controllers_other_audio_is_not_a_microphone() -> None:
    assert wanted_microphone("alice", [MicPublication("alice", "TR_s", microphone=False, encrypted=True)]) is None


def test_lag_guard_measures_how_far_reading_trails_the_audio_clock() -> None:
    guard = LagGuard(frame_s=0.01, max_lag_s=0.25)
    assert guard.lag(100.0, 1) == 0.0  # the first read sets the baseline
    assert guard.lag(100.1, 10) == pytest.approx(0.0)  # 100 ms of sound in 100 ms
    assert guard.lag(100.4, 10) == pytest.approx(0.2)  # then 100 ms of sound in 300 ms
    assert guard.behind(100.5, 0) is True  # 0.3 s behind: restart


def test_lag_guard_rebaselines_when_the_audio_runs_ahead_of_our_clock() -> None:
    guard = LagGuard(frame_s=0.01, max_lag_s=0.25)
    guard.lag(0.0, 1)
    assert guard.lag(0.1, 20) == 0.0  # a burst of 200 ms in 100 ms (startup): the baseline moves
    assert guard.lag(0.2, 10) == pytest.approx(0.0)


def test_lag_guard_reset_starts_a_new_stream() -> None:
    guard = LagGuard(frame_s=0.01, max_lag_s=0.25)
    guard.lag(0.0, 1)
    guard.lag(1.0, 0)
    guard.reset()
    assert guard.lag(5.0, 1) == 0.0
