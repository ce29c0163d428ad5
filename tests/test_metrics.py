"""Prometheus metrics and /healthz: unit checks of the health rule and the tiny HTTP endpoint, and
the real runner scraped while it publishes through a real LiveKit server (and after losing it)."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.error
import urllib.request

import pytest

from realenv import LiveKitServer, Runner, Xvfb
from runner.metrics import Health, Metrics, MetricValues, frame_health

PASSPHRASE = "metrics passphrase"


def test_health_needs_a_connection_and_a_recent_frame() -> None:
    assert frame_health(0.0, connected=True, now=100.0) == Health(False, "no frame published yet")
    assert frame_health(99.5, connected=False, now=100.0) == Health(False, "not connected to LiveKit")
    assert frame_health(97.0, connected=True, now=100.0) == Health(False, "no frame published for 3.0 s")
    assert frame_health(99.9, connected=True, now=100.0).ok


def _values() -> MetricValues:
    return MetricValues(captured=3, encoded=2, published=2, keyframes=1, keyframe_requests=0, bytes=10,
                        dropped=1, rejected=0, reconnects=0, input_accepted=5,
                        input_rejected={"auth": 7, "replay": 1}, connected=True, bitrate_target=4_000_000,
                        fps=30.0, key_index=2, viewers=1, last_frame_age=0.01, frame_engine="runner")


async def _get(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


async def test_endpoint_serves_metrics_health_and_nothing_else() -> None:
    m = Metrics(_values, lambda: Health(False, "no frame published yet"))
    await m.start("127.0.0.1", 0)
    assert m.port is not None
    task = asyncio.create_task(m.serve())
    try:
        body = await _get(m.port, b"GET /metrics HTTP/1.0\r\n\r\n")
        assert body.startswith(b"HTTP/1.0 200 OK")
        text = body.decode()
        assert 'desktop_runner_input_rejected_total{reason="auth"} 7.0' in text
        assert "desktop_runner_frames_published_total 2.0" in text
        assert 'desktop_runner_e2ee_info{frame_engine="runner"} 1.0' in text
        assert "desktop_runner_e2ee_key_index 2.0" in text
        assert "keyfp" not in text  # a key fingerprint on an open endpoint is a guessing oracle
        assert (await _get(m.port, b"GET /healthz HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.0 503")
        assert (await _get(m.port, b"POST /metrics HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.0 405")
        assert (await _get(m.port, b"GET /etc/passwd HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.0 404")
        assert await _get(m.port, b"X" * 5000 + b"\r\n") == b""  # an oversized request line: dropped
    finally:
        task.cancel()


def _scrape(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


@pytest.mark.integration
def test_runner_metrics_and_health_follow_the_frame_path() -> None:
    from devstack import free_tcp_port

    port = free_tcp_port()
    with LiveKitServer() as lk, Xvfb(640, 480) as x:
        runner = Runner.joining(lk, room="metrics", passphrase=PASSPHRASE, display=x.display,
                                extra_env={"RUNNER_METRICS__ADDRESS": f"127.0.0.1:{port}",
                                           "RUNNER_LOG__STATUS_INTERVAL_S": "0",
                                           # every tick encoded, so the counters move on a still screen
                                           "RUNNER_CAPTURE__SKIP_UNCHANGED": "false"})
        with runner:
            runner.wait_for_event("track_published", timeout=30)
            time.sleep(1.5)
            status, health = _scrape(port, "/healthz")
            assert status == 200 and health.startswith("ok: last frame"), health
            _, text = _scrape(port, "/metrics")
            published = _metric(text, "desktop_runner_frames_published_total")
            assert published > 20
            assert _metric(text, "desktop_runner_connected") == 1
            assert _metric(text, "desktop_runner_encode_seconds_count") == published
            assert _metric(text, "desktop_runner_capture_seconds_count") == published
            assert 0 < _metric(text, "desktop_runner_encrypt_seconds_sum") / published < 0.005
            assert _metric(text, "desktop_runner_handoff_seconds_count") == published
            assert 'desktop_runner_e2ee_info{frame_engine="runner"} 1.0' in text
            assert "keyfp" not in text  # no key fingerprint on the unauthenticated endpoint
            assert _docker_healthcheck(port) == 0
            lk.kill()  # frames stop being published: unhealthy
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and _scrape(port, "/healthz")[0] == 200:
                time.sleep(0.2)
            status, health = _scrape(port, "/healthz")
            assert status == 503, health
            assert _docker_healthcheck(port) == 1


def _docker_healthcheck(port: int) -> int:
    """Run the Dockerfile's HEALTHCHECK command (its exec-form JSON) against this runner."""
    import json
    import subprocess
    import sys

    from devstack import REPO_ROOT

    text = (REPO_ROOT / "Dockerfile").read_text()
    m = re.search(r"^HEALTHCHECK [^\n]*\\\n\s+CMD (\[[^\n]*\])$", text, re.M)
    assert m, "no HEALTHCHECK ... CMD [...] in the Dockerfile"
    argv = json.loads(m.group(1))
    argv = [sys.executable] + [a.replace("127.0.0.1:9464", f"127.0.0.1:{port}") for a in argv[1:]]
    return subprocess.run(argv, timeout=10).returncode
