"""The viewer's pure decisions, run in Node as the browser runs them: what a link may carry
(viewer/link.js), when a picture may be shown (viewer/trust.js), what size to ask the host's
screen to fit (viewer/fit.js) and the statistics overlay's figures (viewer/overlay.js); cursor.js's
are in test_viewer_cursor.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

VIEWER = Path(__file__).resolve().parent.parent / "viewer"


def js(expression: str) -> object:
    """The JSON value of ``expression``, evaluated in Node with link.js, trust.js and cursor.js
    imported (as ``link``, ``trust``, ``cursor``)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is required for this test (scripts/setup.sh names it)", pytrace=False)
    script = (f"import * as link from {json.dumps((VIEWER / 'link.js').as_uri())};\n"
              f"import * as trust from {json.dumps((VIEWER / 'trust.js').as_uri())};\n"
              f"import * as fit from {json.dumps((VIEWER / 'fit.js').as_uri())};\n"
              f"import * as overlay from {json.dumps((VIEWER / 'overlay.js').as_uri())};\n"
              f"import * as cursor from {json.dumps((VIEWER / 'cursor.js').as_uri())};\n"
              f"process.stdout.write(JSON.stringify({expression}));\n")
    done = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True,
                          text=True, timeout=30, check=True)
    return json.loads(done.stdout)


def test_a_link_without_secrets_is_read_and_kept_as_it_is() -> None:
    assert js("link.parseLink('', '#url=ws%3A%2F%2F127.0.0.1%3A7880&runner=host-1&control=0')") == {
        "url": "ws://127.0.0.1:7880", "token": "", "passphrase": "", "keyIndex": "0",
        "runner": "host-1", "control": False, "secretsInFragment": [], "secretsInQuery": [],
        "cleanHash": "#url=ws%3A%2F%2F127.0.0.1%3A7880&runner=host-1&control=0",
    }


def test_secrets_in_the_fragment_are_used_and_named_but_not_kept() -> None:
    parsed = js("link.parseLink('', '#url=ws%3A%2F%2Fh&token=T0K&passphrase=p+w&keyIndex=3')")
    assert (parsed["token"], parsed["passphrase"], parsed["keyIndex"]) == ("T0K", "p w", "3")
    assert parsed["secretsInFragment"] == ["token", "passphrase"]
    assert parsed["cleanHash"] == "#url=ws%3A%2F%2Fh&keyIndex=3"


def test_secrets_in_the_query_are_refused() -> None:
    parsed = js("link.parseLink('?url=ws%3A%2F%2Fh&token=T0K&passphrase=pw', '')")
    assert (parsed["url"], parsed["token"], parsed["passphrase"]) == ("ws://h", "", "")
    assert parsed["secretsInQuery"] == ["token", "passphrase"]
    assert parsed["cleanHash"] == "#url=ws%3A%2F%2Fh"


GOOD = {"connected": True, "track": True, "announcedEncrypted": True, "decrypting": True,
        "failing": False, "otherRunner": False}


def verdict(**changes: object) -> object:
    return js(f"trust.screenVerdict({json.dumps({**GOOD, **changes})})")


def test_the_runners_encrypted_decrypting_track_is_shown() -> None:
    assert verdict() == "shown"


@pytest.mark.parametrize(("changes", "expected"), [
    ({"connected": False}, "idle"),
    ({"track": False}, "waiting"),
    ({"announcedEncrypted": False}, "unencrypted"),
    ({"decrypting": False}, "unencrypted"),  # the E2EE worker passes its frames through
    ({"decrypting": None}, "unencrypted"),  # the worker has not said yet
    ({"failing": True}, "undecryptable"),
    ({"otherRunner": True}, "not-runner"),
    ({"otherRunner": True, "track": False}, "not-runner"),
])
def test_anything_less_shows_no_picture(changes: dict, expected: str) -> None:
    assert verdict(**changes) == expected


# --- fit to window (fit.js) -----------------------------------------------------------------------


def test_fit_asks_for_the_picture_area_in_whole_device_pixels() -> None:
    assert js("fit.fitRequest(980, 760, 1)") == {"width": 980, "height": 760, "scale": 1}
    assert js("fit.fitRequest(980.6, 759.5, 1.25)") == {"width": 1225, "height": 949, "scale": 1.25}
    # 980 * 1.1 is 1078.0000000000002 in floating point: still 1078, not a pixel more than there is.
    assert js("fit.fitRequest(980, 700, 1.1)") == {"width": 1078, "height": 770, "scale": 1.1}


def test_fit_requests_stay_within_the_parameter_bounds() -> None:
    assert js("fit.fitRequest(20000, 9000, 2)") == {"width": 16384, "height": 16384, "scale": 2}
    assert js("fit.fitRequest(800, 600, 50)")["scale"] == 10
    assert js("fit.fitRequest(800, 600, 0)") == {"width": 800, "height": 600, "scale": 1}
    assert js("fit.fitRequest(800, 600, NaN)")["scale"] == 1
    assert js("[fit.fitRequest(0, 600, 1), fit.fitRequest(800, 0.4, 1)]") == [None, None]


# --- the statistics overlay (overlay.js) ----------------------------------------------------------

SAMPLE_BEFORE = ("{at: 1000, framesDecoded: 100, framesDropped: 1, bytesReceived: 50000, totalDecodeTime: 0.2,"
                 " jitterBufferDelay: 1.0, jitterBufferEmittedCount: 100, transportRttMs: null}")
SAMPLE_AFTER = ("{at: 3000, framesDecoded: 160, framesDropped: 3, bytesReceived: 550000, totalDecodeTime: 0.38,"
                " jitterBufferDelay: 1.9, jitterBufferEmittedCount: 160, transportRttMs: 2.345}")


def test_overlay_figures_are_rates_and_means_over_the_interval() -> None:
    assert js(f"overlay.videoFigures({SAMPLE_BEFORE}, {SAMPLE_AFTER})") == {
        "fps": 30, "bitrate": 2_000_000, "decodeMs": 3, "jitterMs": 15, "framesDropped": 3,
        "transportRttMs": 2.3,
    }


def test_overlay_without_new_frames_has_no_per_frame_times() -> None:
    assert js(f"overlay.videoFigures({SAMPLE_BEFORE}, {{...{SAMPLE_BEFORE}, at: 2000}})") == {
        "fps": 0, "bitrate": 0, "decodeMs": None, "jitterMs": None, "framesDropped": 1, "transportRttMs": None,
    }


def test_overlay_sample_reads_the_video_report_and_the_nominated_pair() -> None:
    report = ("new Map(Object.entries({"
              "a: {type: 'inbound-rtp', kind: 'audio', framesDecoded: 9},"
              "v: {type: 'inbound-rtp', kind: 'video', timestamp: 5, framesDecoded: 7, framesDropped: 1,"
              "    bytesReceived: 10, packetsReceived: 12, totalDecodeTime: 0.1, jitterBufferDelay: 0.2,"
              "    jitterBufferEmittedCount: 7},"
              "p: {type: 'candidate-pair', nominated: true, state: 'succeeded', currentRoundTripTime: 0.004},"
              "q: {type: 'candidate-pair', nominated: false, state: 'succeeded', currentRoundTripTime: 0.5}}))")
    assert js(f"overlay.videoSample({report})") == {
        "at": 5, "framesDecoded": 7, "framesDropped": 1, "bytesReceived": 10, "packetsReceived": 12,
        "totalDecodeTime": 0.1,
        "jitterBufferDelay": 0.2, "jitterBufferEmittedCount": 7, "transportRttMs": 4,
    }
    assert js("overlay.videoSample(new Map())") is None


def test_overlay_shortcut_is_ctrl_alt_shift_s_only() -> None:
    assert js("[{ctrlKey: true, altKey: true, shiftKey: true, code: 'KeyS'},"
              " {ctrlKey: true, altKey: true, shiftKey: false, code: 'KeyS'},"
              " {ctrlKey: true, altKey: true, shiftKey: true, metaKey: true, code: 'KeyS'},"
              " {ctrlKey: true, altKey: true, shiftKey: true, code: 'KeyD'}].map(overlay.isOverlayShortcut)") == [
        True, False, False, False]


def test_overlay_lines_show_a_dash_for_what_is_not_measured() -> None:
    lines = js("overlay.overlayLines({...overlay.noFigures(), shown: true, hostMs: 6.1, bitrate: 2500000})")
    assert lines[0] == "Host processing: 6.1 ms per frame"
    assert lines[3] == "Decode: – per frame"
    assert lines[-1] == "Bitrate: 2.5 Mbit/s"


# --- the stall watch (overlay.js stallStep) --------------------------------------------------------
def stall_run(samples: list[tuple[float, int, int]], rtt: float | None = None) -> list[bool]:
    """Feed (at ms, framesDecoded, packetsReceived) samples through stallStep; which ones ask."""
    return js(f"""(() => {{
      let state = null; const asks = [];
      for (const [at, framesDecoded, packetsReceived] of {json.dumps(samples)}) {{
        const step = overlay.stallStep(state, {{at, framesDecoded, packetsReceived}}, {json.dumps(rtt)});
        state = step.state; asks.push(step.ask);
      }}
      return asks;
    }})()""")


def test_packets_without_a_decode_ask_for_a_keyframe_once_a_second() -> None:
    # frames decode until 1000 ms; from 1250 packets come but nothing decodes
    samples = [(0, 10, 50), (250, 11, 55), (1000, 12, 60), (1250, 12, 64), (1500, 12, 70),
               (1650, 12, 75), (1750, 12, 76), (2000, 12, 80), (2500, 12, 90), (2750, 12, 95), (3000, 12, 99)]
    assert stall_run(samples) == [False, False, False, False, False, True, False, False, False, True, False]


def test_a_still_screen_and_a_slow_decode_never_ask() -> None:
    # one skip picture a second, each decoded within a poll or two; nothing in between
    still = [(t * 250, 10 + t // 4 + (1 if t % 4 >= 2 else 0), 50 + t // 4 + (1 if t % 4 >= 1 else 0))
             for t in range(40)]
    assert stall_run(still) == [False] * 40
    # before the first decode (a wrong key, a join in progress) nothing is asked either
    assert stall_run([(t * 250, 0, 10 * t) for t in range(20)]) == [False] * 20


def test_a_long_round_trip_gives_nack_its_chance_first() -> None:
    # packets without a decode from 250 ms: 3 x 250 ms of round trip is waited for, not 400
    samples = [(0, 5, 10), (250, 5, 12), (650, 5, 14), (900, 5, 16), (1000, 5, 17)]
    assert stall_run(samples, rtt=250) == [False, False, False, False, True]
    assert stall_run(samples, rtt=None) == [False, False, True, False, False]


def test_progress_ends_the_stall() -> None:
    samples = [(0, 5, 10), (250, 5, 12), (500, 6, 14), (750, 6, 16), (1000, 7, 18), (1250, 7, 20)]
    assert stall_run(samples) == [False] * 6
