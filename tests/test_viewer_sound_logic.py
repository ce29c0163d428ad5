"""The viewer's sound decisions (viewer/soundlogic.js), run in Node as the browser runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

SOUNDLOGIC = Path(__file__).resolve().parent.parent / "viewer" / "soundlogic.js"


def js(expression: str) -> object:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is required for this test (scripts/setup.sh names it)", pytrace=False)
    script = (f"import * as sound from {json.dumps(SOUNDLOGIC.as_uri())};\n"
              f"process.stdout.write(JSON.stringify({expression}));\n")
    done = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True,
                          text=True, timeout=30, check=True)
    return json.loads(done.stdout)


PLAYING = {"track": True, "trusted": True, "blocked": False, "muted": False}


def status(**changes: object) -> object:
    return js(f"sound.soundStatus({json.dumps({**PLAYING, **changes})})")


def test_trusted_sound_plays() -> None:
    assert status() == "playing"


def test_no_track_is_none_whatever_else_holds() -> None:
    assert status(track=False, trusted=False, blocked=True) == "none"


def test_sound_not_known_to_be_encrypted_with_our_key_is_untrusted_even_when_blocked() -> None:
    assert status(trusted=False, blocked=True) == "untrusted"


def test_the_autoplay_rule_asks_for_a_click() -> None:
    assert status(blocked=True) == "blocked"


def test_muted_by_the_user_needs_no_click_yet() -> None:
    assert status(blocked=True, muted=True) == "muted"


def test_spectrum_peak_is_the_loudest_bin_but_never_dc() -> None:
    # 8 bins of a 48 kHz analyser: 3 kHz per bin; bin 0 (DC) is ignored however loud.
    assert js("sound.spectrumPeak(new Float32Array([0, -90, -80, -20, -60, -90, -90, -90]), 48000)") == {
        "frequency": 9000, "db": -20}


def test_spectrum_peak_of_digital_silence_reads_far_below_any_threshold() -> None:
    peak = js("sound.spectrumPeak(new Float32Array([-Infinity, -Infinity, -Infinity, -Infinity]), 48000)")
    assert peak == {"frequency": 6000, "db": -180}


def test_the_microphone_keeps_echo_cancellation_and_leaves_the_rest_to_the_host() -> None:
    assert js("sound.MICROPHONE_OPTIONS") == {"echoCancellation": True, "noiseSuppression": False,
                                              "autoGainControl": False, "channelCount": 1}
