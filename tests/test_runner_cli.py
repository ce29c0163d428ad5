"""The runner as users start it (``python -m runner`` with env/TOML), on bad input.

Real components: Xvfb for the display, livekit-server for the secrets test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from devstack import free_tcp_port
from realenv import LiveKitServer, Runner, Xvfb

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_") and k != "DISPLAY"}
    env.update(extra)
    return env


def run_runner(env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_no_configuration_exits_2_naming_the_key() -> None:
    result = run_runner(clean_env())
    assert result.returncode == 2
    assert result.stderr == "desktop-runner: configuration error: livekit.url is required\n"


def test_invalid_toml_value_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "runner.toml"
    config.write_text('[livekit]\nurl = "ws://127.0.0.1:1"\napi_key = "k"\napi_secret = "s"\n'
                      '[e2ee]\npassphrase = "p"\n[capture]\nfps = "fast"\n')
    result = run_runner(clean_env(), "--config", str(config))
    assert result.returncode == 2
    assert result.stderr == (
        "desktop-runner: configuration error: capture.fps: "
        "Input should be a valid number, unable to parse string as a number\n"
    )


def test_invalid_environment_value_exits_2_naming_the_key() -> None:
    env = clean_env(RUNNER_LIVEKIT__URL="ws://127.0.0.1:1", RUNNER_LIVEKIT__TOKEN="t",
                    RUNNER_E2EE__PASSPHRASE="p", RUNNER_E2EE__FRAME_ENGINE="browser")
    result = run_runner(env)
    assert result.returncode == 2
    expected = "desktop-runner: configuration error: e2ee.frame_engine: Input should be 'runner' or 'sdk'\n"
    assert result.stderr == expected


# A passphrase of 16+ characters: a shorter one adds a weak_passphrase line to the one line expected.
VALID = dict(RUNNER_LIVEKIT__URL="ws://127.0.0.1:9", RUNNER_LIVEKIT__API_KEY="devkey",
             RUNNER_LIVEKIT__API_SECRET="not-a-real-secret-0123456789abcdef",
             RUNNER_E2EE__PASSPHRASE="a-pass-phrase-xyz", RUNNER_LOG__FORMAT="json")


def test_no_display_is_a_clear_error() -> None:
    result = run_runner(clean_env(**VALID))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert '"event": "display_unavailable"' in lines[0]
    assert '"error": "no X display: DISPLAY is not set (set DISPLAY or capture.display)"' in lines[0]


def test_unreachable_display_is_a_clear_error() -> None:
    result = run_runner(clean_env(**VALID, DISPLAY=":987"))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert '"error": "cannot open X display :987: ' in lines[0]
    assert "Traceback" not in result.stderr


def test_unreachable_livekit_retries_with_capped_backoff(xvfb: Xvfb) -> None:
    closed_port = free_tcp_port()  # nothing listens there
    runner = Runner(
        livekit_url=f"ws://127.0.0.1:{closed_port}", api_key="devkey", api_secret="secret",
        room="r", passphrase="pass-phrase-xyz", display=xvfb.display,
        extra_env={"RUNNER_LIVEKIT__RETRY_INITIAL_S": "0.1", "RUNNER_LIVEKIT__RETRY_MAX_S": "0.4",
                   "RUNNER_LIVEKIT__CONNECT_TIMEOUT_S": "2"},
    )
    try:
        deadline = time.monotonic() + 40
        failures: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(failures) < 6:
            assert runner.returncode is None, "the runner exited instead of retrying"
            failures = [e for e in runner.events() if e.get("event") == "connect_failed"]
            time.sleep(0.2)
        assert [f["attempt"] for f in failures[:6]] == [1, 2, 3, 4, 5, 6]
        delays = [f["retry_in_s"] for f in failures[:6]]
        assert all(d <= 0.4 * 1.2 + 1e-9 for d in delays), delays  # capped at retry_max_s (+jitter)
        assert all(d >= 0.4 * 0.8 - 1e-9 for d in delays[3:]), delays  # and it got there
        assert failures[0]["url"] == f"ws://127.0.0.1:{closed_port}"
        runner.process.send_signal(signal.SIGTERM)
        assert runner.process.wait(timeout=10) == 0
    finally:
        runner.stop()


def test_secrets_never_appear_in_logs(xvfb: Xvfb, tmp_path: Path) -> None:
    api_secret = "api-secret-" + os.urandom(12).hex()
    passphrase = "passphrase-" + os.urandom(12).hex()
    secret_file = tmp_path / "pass"
    secret_file.write_text(passphrase + "\n")
    with LiveKitServer(api_key="leakcheck", api_secret=api_secret) as server:
        runner = Runner(
            livekit_url=server.url, api_key="leakcheck", api_secret=api_secret, room="leak",
            passphrase="", display=xvfb.display,
            extra_env={"RUNNER_E2EE__PASSPHRASE": "", "RUNNER_E2EE__PASSPHRASE_FILE": str(secret_file),
                       "RUNNER_LOG__LEVEL": "debug", "RUNNER_LOG__STATUS_INTERVAL_S": "0.5"},
        )
        try:
            runner.wait_for_event("track_published", timeout=30)
            runner.wait_for_event("status", timeout=10)
            runner.process.send_signal(signal.SIGHUP)  # re-reads the key file: logs a fingerprint only
            time.sleep(1.0)
            runner.process.send_signal(signal.SIGTERM)
            assert runner.process.wait(timeout=10) == 0
        finally:
            runner.stop()
        text = runner.log_path.read_text()
    assert "track_published" in text and "stopped" in text
    assert api_secret not in text
    assert passphrase not in text
    assert "eyJ" not in text  # no JWT (the minted token), whole or in part


def test_passphrase_command_prints_a_strong_random_one_without_configuration() -> None:
    from runner.e2ee.passphrase import passphrase_weakness

    first, second = run_runner(clean_env(), "passphrase"), run_runner(clean_env(), "passphrase")
    assert (first.returncode, first.stderr) == (0, "")
    phrase = first.stdout.strip()
    assert first.stdout == phrase + "\n"
    assert len(phrase) == 32 and all(c.isalnum() or c in "-_" for c in phrase)
    assert passphrase_weakness(phrase) is None
    assert second.stdout.strip() != phrase


@pytest.mark.parametrize(("passphrase", "warned"), [("short-phrase-15c", False), ("short-phrase15c", True)])
def test_a_short_passphrase_is_warned_about_at_start_without_showing_it(xvfb: Xvfb, passphrase: str,
                                                                        warned: bool) -> None:
    closed_port = free_tcp_port()  # the warning comes before any connection
    runner = Runner(livekit_url=f"ws://127.0.0.1:{closed_port}", api_key="devkey", api_secret="secret",
                    room="r", passphrase=passphrase, display=xvfb.display)
    try:
        runner.wait_for_event("starting", timeout=30)
        weak = [e for e in runner.events() if e.get("event") == "weak_passphrase"]
    finally:
        runner.stop()
    if not warned:
        assert weak == []
        return
    assert [(e["level"], e["setting"], e["length"], e["minimum"]) for e in weak] == [
        ("warning", "e2ee.passphrase", 15, 16)]
    assert "`desktop-runner passphrase` prints a strong one" in weak[0]["problem"]
    assert passphrase not in runner.log_path.read_text()
