"""The runner's service under a measuring probe (started by bench/run.py, configured like the
runner itself through RUNNER_* variables).

It runs the real ``runner.service.Service`` in this process and records, for every published
frame, the stage times the pipeline reports (grab, conversion, encode, encrypt, hand-off to the
SDK). Once the first frame is out it waits ``--warmup`` seconds, then measures for ``--seconds``:
process CPU time (all threads: Python, PyAV/libx264, the SDK's Rust and WebRTC threads), frames
published, bytes, resident memory (sampled every ``--rss-every`` seconds). Then it stops the
service the way SIGTERM does and writes one JSON object to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.config import load_settings  # noqa: E402
from runner.logs import register_secrets, setup_logging  # noqa: E402
from runner.media.stats import FrameTimes  # noqa: E402
from runner.service import Service  # noqa: E402

STAGES = ("capture", "convert", "encode", "encrypt", "handoff")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process
    return usage.ru_utime + usage.ru_stime


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of this process's threads, in two groups: "python" (threads started
    by Python: event loop, capture, encode, and the libx264 threads under them, which inherit
    the name) and "sdk" (the LiveKit SDK's Rust and WebRTC threads, which name themselves)."""
    tick = os.sysconf("SC_CLK_TCK")
    own = Path("/proc/self/comm").read_text().strip()
    out = {"python": 0.0, "sdk": 0.0}
    for task in Path("/proc/self/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out["python" if comm == own else "sdk"] += (int(fields[11]) + int(fields[12])) / tick
    return out


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Recorder:
    def __init__(self) -> None:
        self.on = False
        self.samples: list[tuple[float, ...]] = []

    def __call__(self, t: FrameTimes) -> None:
        if self.on:
            self.samples.append((t.capture_s, t.convert_s, t.encode_s, t.encrypt_s, t.handoff_s))


async def measure(service: Service, recorder: Recorder, warmup: float, seconds: float,
                  rss_every: float, samples: bool = True) -> dict[str, Any]:
    pipeline = service.pipeline
    while pipeline.stats.published == 0:
        if service.stop.is_set():
            raise RuntimeError("the service stopped before publishing a frame")
        await asyncio.sleep(0.05)
    await asyncio.sleep(warmup)
    before, cpu0, t0, rss0 = pipeline.stats, cpu_seconds(), time.monotonic(), rss_mb()
    threads0 = thread_cpu_seconds()
    recorder.on = samples  # a long memory run records none: the list itself would grow
    rss_series = [(0.0, round(rss0, 1))]
    while (elapsed := time.monotonic() - t0) < seconds:
        await asyncio.sleep(min(rss_every, seconds - elapsed))
        rss_series.append((round(time.monotonic() - t0, 1), round(rss_mb(), 1)))
    recorder.on = False
    after, cpu1, t1 = pipeline.stats, cpu_seconds(), time.monotonic()
    threads1 = thread_cpu_seconds()
    frames = after.published - before.published
    return {
        "seconds": round(t1 - t0, 3),
        "frames": frames,
        "fps": round(frames / (t1 - t0), 2),
        "captured": after.captured - before.captured,
        "unchanged_ticks": after.unchanged - before.unchanged,
        "repeated": after.repeated - before.repeated,
        "dropped": after.dropped - before.dropped,
        "keyframes": after.keyframes - before.keyframes,
        "kbit_s": round((after.bytes_published - before.bytes_published) * 8 / (t1 - t0) / 1000, 1),
        "cpu_s": round(cpu1 - cpu0, 3),
        "cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
        # Per group of threads, from /proc (clock ticks: coarser than getrusage above).
        "cpu_percent_threads": {k: round(100 * (threads1[k] - threads0[k]) / (t1 - t0), 2) for k in threads0},
        "cpu_ms_per_frame": round(1000 * (cpu1 - cpu0) / frames, 3) if frames else None,
        "rss_mb": rss_series,
        "samples": [[round(v * 1000, 4) for v in s] for s in recorder.samples],
        "stages": list(STAGES),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    settings = load_settings(None, {})
    setup_logging(settings.log.level, settings.log.format)
    register_secrets(settings.secrets())
    service = Service(settings)
    recorder = Recorder()
    service.pipeline.observe_frames(recorder)
    run = asyncio.create_task(service.run())
    try:
        result = await measure(service, recorder, args.warmup, args.seconds, args.rss_every, not args.no_samples)
    finally:
        os.kill(os.getpid(), signal.SIGTERM)  # the service's own clean stop
        code = await run
    result["exit_code"] = code
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rss-every", type=float, default=5.0)
    parser.add_argument("--no-samples", action="store_true",
                        help="do not record per-frame stage times (memory runs: about 200 bytes a frame)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    args.out.write_text(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)  # as the CLI does: the SDK's threads must not run into interpreter teardown


if __name__ == "__main__":
    main()
