"""CPU per published frame of the runner in the container against the same run on the host.

    .venv/bin/python docker/cpu_per_frame.py [--seconds 60] [--image desktop-runner:test]

One Xvfb (1920x1080) on this machine shows bench/scenes.py's ``video`` scene (every frame
changes); livekit-server runs on loopback. The runner publishes it at 30 fps encoding every tick
(``capture.skip_unchanged = false``), first on the host (``python -m runner`` from this
checkout's venv), then in the image in host-X mode (the same X server through the mounted
socket, ``--network host``). For each: a warm-up, then over ``--seconds`` the CPU time of the
runner process (all threads, from /proc/PID/stat; the container's runner is PID 1 in it, seen
from the host) and the frames it published (its /metrics). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests")]

from devstack import LiveKitServer, Runner, Xvfb, free_tcp_port  # noqa: E402

DOCKER = os.environ.get("DOCKER") or "/usr/bin/docker"
PASSPHRASE = "cpu per frame"
SETTINGS = {"RUNNER_CAPTURE__FPS": "30", "RUNNER_CAPTURE__SKIP_UNCHANGED": "false",
            "RUNNER_LOG__STATUS_INTERVAL_S": "0"}


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def published(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith("desktop_runner_frames_published_total "):
            return float(line.split()[1])
    raise RuntimeError("no desktop_runner_frames_published_total in /metrics")


def window(pid: int, port: int, warmup: float, seconds: float) -> dict[str, Any]:
    time.sleep(warmup)
    c0, f0, t0 = cpu_s(pid), published(port), time.monotonic()
    time.sleep(seconds)
    c1, f1, t1 = cpu_s(pid), published(port), time.monotonic()
    frames = f1 - f0
    return {"cpu_s": round(c1 - c0, 2), "frames": int(frames), "fps": round(frames / (t1 - t0), 2),
            "cpu_ms_per_frame": round(1000 * (c1 - c0) / frames, 3) if frames else None,
            "cpu_percent": round(100 * (c1 - c0) / (t1 - t0), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--image", default="desktop-runner:test")
    args = parser.parse_args()
    results: dict[str, Any] = {"screen": "1920x1080", "fps": 30, "scene": "video", "seconds": args.seconds}
    with LiveKitServer() as lk, Xvfb(1920, 1080) as x:
        scene = subprocess.Popen([sys.executable, str(ROOT / "bench" / "scenes.py"), "--display", x.display,
                                  "--scene", "video"], stdout=subprocess.PIPE, text=True)
        try:
            assert scene.stdout is not None and scene.stdout.readline().strip() == "ready"
            port = free_tcp_port()
            env = {**SETTINGS, "RUNNER_METRICS__ADDRESS": f"127.0.0.1:{port}"}
            with Runner(livekit_url=lk.url, api_key=lk.api_key, api_secret=lk.api_secret, room="cpu-host",
                        passphrase=PASSPHRASE, display=x.display, extra_env=env) as host:
                host.wait_for_event("track_published", timeout=60)
                assert host.pid is not None
                results["host"] = window(host.pid, port, args.warmup, args.seconds)
            port = free_tcp_port()
            argv = [DOCKER, "run", "-d", "--network", "host", "--read-only", "-e", f"DISPLAY={x.display}",
                    "-v", "/tmp/.X11-unix:/tmp/.X11-unix:ro", "-e", f"RUNNER_LIVEKIT__URL={lk.url}",
                    "-e", f"RUNNER_LIVEKIT__API_KEY={lk.api_key}", "-e", f"RUNNER_LIVEKIT__API_SECRET={lk.api_secret}",
                    "-e", "RUNNER_LIVEKIT__ROOM=cpu-container", "-e", f"RUNNER_E2EE__PASSPHRASE={PASSPHRASE}",
                    "-e", f"RUNNER_METRICS__ADDRESS=127.0.0.1:{port}",
                    *[a for k, v in SETTINGS.items() for a in ("-e", f"{k}={v}")], args.image]
            cid = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
            try:
                deadline = time.monotonic() + 60
                while "track_published" not in subprocess.run([DOCKER, "logs", cid], capture_output=True,
                                                              text=True).stderr:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the container never published its track")
                    time.sleep(0.5)
                pid = int(subprocess.run([DOCKER, "inspect", "-f", "{{.State.Pid}}", cid], capture_output=True,
                                         text=True, check=True).stdout)
                results["container"] = window(pid, port, args.warmup, args.seconds)
            finally:
                subprocess.run([DOCKER, "rm", "-f", cid], capture_output=True)
        finally:
            scene.kill()
            scene.wait()
    h, c = results["host"]["cpu_ms_per_frame"], results["container"]["cpu_ms_per_frame"]
    results["container_over_host"] = round(c / h, 3) if h and c else None
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
