"""Input latency on loopback: a viewer's pointer move until the X server has the pointer there.

Starts a real livekit-server, Xvfb (1920x1080) and the runner; a Python viewer (the protocol of
docs/protocol.md, E2EE on) sends absolute moves to alternating positions and a thread polls the X
server's pointer until it reads the target. Reports, in ms:
- send-to-X: from the viewer's publish_data call until the X server reports the position (viewer
  encryption, LiveKit SFU hop over loopback, the runner's SDK decryption, envelope, validation,
  injection);
- receive-to-inject: inside the runner, from the moment the message was authenticated and
  validated until the XTEST call returned (the runner's own measure, from dr.stats).
Usage: .venv/bin/python bench/bench_input.py [--trials 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "tests")]

from controlclient import ControlClient  # noqa: E402
from devstack import LiveKitServer, Runner, Xvfb, mint_token  # noqa: E402
from xstate import XState  # noqa: E402

PASSPHRASE = "input benchmark"
POSITIONS = [(0.25, 0.25, (480, 270)), (0.75, 0.75, (1439, 809))]  # 0.75 * 1919 = 1439.25 -> 1439


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(trials: int) -> dict[str, Any]:
    with LiveKitServer() as lk, Xvfb(1920, 1080) as x:
        runner = Runner(livekit_url=lk.url, api_key=lk.api_key, api_secret=lk.api_secret, room="bench-input",
                        passphrase=PASSPHRASE, display=x.display, extra_env={"RUNNER_LOG__STATUS_INTERVAL_S": "0"})
        with runner:
            runner.wait_for_event("track_published", timeout=30)
            token = mint_token(lk.api_key, lk.api_secret, "bench-input", "bench-viewer")
            client = await ControlClient.join(lk.url, token, "desktop-runner", PASSPHRASE)
            await client.hello()
            await client.call("dr.control.request")
            xs = XState(x.display)
            samples: list[float] = []
            for i in range(trials + 10):
                fx, fy, target = POSITIONS[i % 2]
                seen = threading.Event()

                def poll(target: tuple[int, int] = target, seen: threading.Event = seen) -> None:
                    while xs.pointer() != target:
                        pass
                    seen.set()

                t0 = time.perf_counter()
                await client.send({"t": "move", "mon": "screen", "x": fx, "y": fy}, reliable=True)
                await asyncio.to_thread(poll)
                if i >= 10:  # warm-up excluded
                    samples.append((time.perf_counter() - t0) * 1000)
                await asyncio.sleep(0.02)
            stats = await client.call("dr.stats")
            await client.close()
            xs.close()
    inner = stats["input"]["inject_ms"]
    return {
        "trials": len(samples),
        "send_to_x_ms": {"p50": round(pct(samples, 0.5), 2), "p95": round(pct(samples, 0.95), 2),
                         "mean": round(statistics.mean(samples), 2), "max": round(max(samples), 2)},
        "receive_to_inject_ms": inner,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args.trials))
    print(f"input latency over {result['trials']} pointer moves (loopback, 1920x1080 Xvfb, E2EE on)")
    s, r = result["send_to_x_ms"], result["receive_to_inject_ms"]
    print(f"  viewer send -> X pointer moved : p50 {s['p50']:.2f} ms  p95 {s['p95']:.2f} ms  max {s['max']:.2f} ms")
    print(f"  runner receive -> injected     : p50 {r['p50']:.3f} ms  p95 {r['p95']:.3f} ms  (n={r['n']})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
