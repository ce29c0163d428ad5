"""Sound on loopback: capture-to-browser latency, the A/V offset and the runner's CPU for sound.

Starts a real livekit-server, Xvfb (1280x720), a private PulseAudio (a null sink as the default
sink) and the runner; the reference viewer runs in headless Chromium. Reports:
- latency: a beep written into the sink (one small-buffered pacat) until the viewer's WebAudio
  analyser hears it (runner capture, Opus, SDK encryption, the SFU hop, the viewer's decryption,
  its jitter buffer and playout), p50/p95 in ms;
- A/V offset: a white screen and a beep made together; sound minus picture as the viewer gets
  them (positive: sound later), p50 and spread in ms;
- CPU: the runner's CPU (its process and its parec child) with a viewer watching a still screen
  and a tone playing, with audio.enabled true and false, in % of one core; the difference is
  what sound costs.
Timing figures depend on the machine's load: the report carries the load average.
Usage: .venv/bin/python bench/bench_audio.py [--beeps 20] [--cpu-seconds 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "tests")]

from audioenv import (  # noqa: E402
    audio_latencies_ms,
    av_offsets_ms,
    flashes_and_beeps,
    wait_to_hear,
)
from audiostack import PulseAudio, Tone  # noqa: E402
from devstack import LiveKitServer, Runner, ViewerServer, Xvfb, mint_token, paint, viewer_link  # noqa: E402
from realenv import CHROMIUM_ARGS, CHROMIUM_PATH  # noqa: E402

PASSPHRASE = "audio benchmark passphrase"
TICKS = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its live children (parec), in seconds."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid, utime, stime = int(fields[1]), int(fields[11]), int(fields[12])
        if int(entry.name) == pid or ppid == pid:
            total += (utime + stime) / TICKS
    return total


async def session(lk: LiveKitServer, x: Xvfb, pulse: PulseAudio, viewer: ViewerServer, *, audio: bool,
                  beeps: int, cpu_s: float) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    room = f"bench-audio-{int(audio)}"
    env = {"RUNNER_AUDIO__SERVER": pulse.server, "RUNNER_AUDIO__ENABLED": str(audio).lower(),
           "RUNNER_LOG__STATUS_INTERVAL_S": "0"}
    result: dict[str, Any] = {}
    paint(x.display, (0, 0, 0))
    with Tone(pulse) as tone, Runner.joining(lk, room=room, passphrase=PASSPHRASE, display=x.display,
                                             extra_env=env) as runner:
        runner.wait_for_event("track_published", timeout=30)
        token = mint_token(lk.api_key, lk.api_secret, room, "bench-viewer")
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM_PATH, headless=True,
                                                       args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(viewer_link(viewer.url, lk.url, token, PASSPHRASE))
                await page.wait_for_function("() => window.viewer && window.viewer.state.framesDecoded > 0",
                                             timeout=30_000)
                if audio:
                    tone.play(440, 2.0)
                    await wait_to_hear(page, 440, timeout=30)
                    events = await flashes_and_beeps(page, x.display, tone, beeps)
                    result["latency"] = audio_latencies_ms(events)
                    result["offset"] = av_offsets_ms(events)
                tone.play(440)
                await asyncio.sleep(2.0)
                pid = runner.pid
                assert pid is not None
                before, t0 = cpu_seconds(pid), time.monotonic()
                await asyncio.sleep(cpu_s)
                result["cpu_pct"] = 100 * (cpu_seconds(pid) - before) / (time.monotonic() - t0)
            finally:
                await browser.close()
    return result


async def run(beeps: int, cpu_s: float) -> dict[str, Any]:
    with LiveKitServer() as lk, Xvfb(1280, 720) as x, PulseAudio() as pulse, ViewerServer() as viewer:
        on = await session(lk, x, pulse, viewer, audio=True, beeps=beeps, cpu_s=cpu_s)
        off = await session(lk, x, pulse, viewer, audio=False, beeps=beeps, cpu_s=cpu_s)
    latency, offset = on["latency"], on["offset"]
    return {
        "load_average": os.getloadavg(),
        "beeps": len(latency),
        "capture_to_browser_ms": {"p50": round(pct(latency, 0.5)), "p95": round(pct(latency, 0.95))},
        "av_offset_ms": {"p50": round(statistics.median(offset)), "min": round(min(offset)),
                         "max": round(max(offset))},
        "runner_cpu_pct": {"audio_on": round(on["cpu_pct"], 1), "audio_off": round(off["cpu_pct"], 1),
                           "extra": round(on["cpu_pct"] - off["cpu_pct"], 1)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beeps", type=int, default=20)
    parser.add_argument("--cpu-seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args.beeps, args.cpu_seconds))
    print(json.dumps(result, indent=2))
    lat, off, cpu = result["capture_to_browser_ms"], result["av_offset_ms"], result["runner_cpu_pct"]
    print(f"\n| sound | p50 | p95 |\n|---|---|---|\n| capture to browser, ms | {lat['p50']} | {lat['p95']} |")
    print(f"| A/V offset (sound minus picture), ms | {off['p50']} | {off['min']}..{off['max']} |")
    print(f"\nrunner CPU, % of one core: audio on {cpu['audio_on']}, off {cpu['audio_off']}, "
          f"extra {cpu['extra']} (load average {result['load_average'][0]:.1f})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
