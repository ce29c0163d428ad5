"""`desktop-runner check` against the real parts: PASS lines when everything is there, one clear
FAIL line per missing part, exit status 0/1, no secret in the output."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from devstack import REPO_ROOT, free_tcp_port

if TYPE_CHECKING:
    from realenv import LiveKitServer, Xvfb

pytestmark = pytest.mark.integration

SECRET_PASSPHRASE = "check-passphrase-must-not-show"


def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_") and k != "DISPLAY"}
    return subprocess.run([sys.executable, "-m", "runner", "check"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60, env={**base, "RUNNER_E2EE__PASSPHRASE": SECRET_PASSPHRASE, **env})


def lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]


def test_everything_passes_against_real_parts(livekit_server: LiveKitServer, xvfb: Xvfb) -> None:
    result = check({"DISPLAY": xvfb.display, "RUNNER_LIVEKIT__URL": livekit_server.url,
                    "RUNNER_LIVEKIT__API_KEY": livekit_server.api_key,
                    "RUNNER_LIVEKIT__API_SECRET": livekit_server.api_secret})
    got = lines(result)
    assert [line.split(":")[0] for line in got] == [
        "PASS configuration", "PASS display", "PASS encoder", "PASS e2ee", "PASS livekit",
    ], result.stdout + result.stderr
    assert f"{xvfb.display}, monitor 1: 1280x720" in got[1]
    assert got[1].endswith("; pointer: pushed to viewers (XFixes)"), got[1]
    assert "API key devkey accepted" in got[4]
    assert result.returncode == 0
    assert SECRET_PASSPHRASE not in result.stdout + result.stderr


def test_each_missing_part_is_one_fail_line_and_exit_1(livekit_server: LiveKitServer) -> None:
    result = check({"RUNNER_LIVEKIT__URL": livekit_server.url, "RUNNER_LIVEKIT__API_KEY": livekit_server.api_key,
                    "RUNNER_LIVEKIT__API_SECRET": "wrong-secret-value-0123456789abcdef"})
    got = lines(result)
    assert got[1] == "FAIL display: no X display: DISPLAY is not set (set DISPLAY or capture.display)"
    assert got[4].startswith("FAIL livekit: the API key was not accepted")
    assert "wrong-secret-value" not in result.stdout + result.stderr
    assert result.returncode == 1


def test_unreachable_server_fails_with_the_address(xvfb: Xvfb) -> None:
    port = free_tcp_port()
    result = check({"DISPLAY": xvfb.display, "RUNNER_LIVEKIT__URL": f"ws://127.0.0.1:{port}",
                    "RUNNER_LIVEKIT__API_KEY": "k", "RUNNER_LIVEKIT__API_SECRET": "s" * 32})
    got = lines(result)
    assert got[4].startswith(f"FAIL livekit: cannot reach http://127.0.0.1:{port}: ")
    assert result.returncode == 1


def test_expired_token_fails(xvfb: Xvfb, livekit_server: LiveKitServer) -> None:
    import datetime

    from livekit import api

    token = (api.AccessToken("devkey", "secret-that-is-long-enough-for-pyjwt-0123").with_identity("x")
             .with_ttl(datetime.timedelta(seconds=-10)).to_jwt())
    result = check({"DISPLAY": xvfb.display, "RUNNER_LIVEKIT__URL": livekit_server.url, "RUNNER_LIVEKIT__TOKEN": token})
    got = lines(result)
    assert got[4].startswith("FAIL livekit: livekit.token expired")
    assert token not in result.stdout + result.stderr
