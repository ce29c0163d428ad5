"""The baseline: the same screen published the way a LiveKit user would without desktop-runner.

mss grabs the screen at ``--fps``; each BGRA picture goes as an ``rtc.VideoFrame`` into the SDK's
own ``rtc.VideoSource`` (``is_screencast=True``); the SDK converts, encodes (its WebRTC H.264
encoder, one layer, the same fps and maximum bitrate as the runner) and encrypts (the SDK's E2EE
with the same shared passphrase). Started by bench/run.py; measures itself like
bench/probe_runner.py (process CPU over a window after a warm-up) and writes JSON to ``--out``.

Frames are counted as the SDK's encoder counts them (WebRTC ``framesEncoded``), since WebRTC
may drop pictures it is handed when the encoder cannot keep up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import mss
from livekit import rtc
from livekit.rtc._proto import stats_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_runner import cpu_seconds, rss_mb


async def encoder_stats(track: rtc.LocalVideoTrack) -> dict[str, Any]:
    for s in await track.get_stats():
        if s.HasField("outbound_rtp"):
            out = s.outbound_rtp.outbound
            return {"frames_encoded": out.frames_encoded, "encode_s": out.total_encode_time,
                    "implementation": out.encoder_implementation,
                    "limited_by": stats_pb2.QualityLimitationReason.Name(out.quality_limitation_reason),
                    "bytes": s.outbound_rtp.sent.bytes_sent}
    return {"frames_encoded": 0, "encode_s": 0.0, "implementation": "", "limited_by": "", "bytes": 0}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    room = rtc.Room()
    options = rtc.RoomOptions(auto_subscribe=False, dynacast=False, encryption=rtc.E2EEOptions(
        key_provider_options=rtc.KeyProviderOptions(shared_key=args.passphrase.encode())))
    await room.connect(args.url, args.token, options)
    sct = mss.MSS(display=args.display)
    region = dict(sct.monitors[1])
    width, height = region["width"] & ~1, region["height"] & ~1
    region["width"], region["height"] = width, height
    source = rtc.VideoSource(width, height, is_screencast=True)
    track = rtc.LocalVideoTrack.create_video_track("screen", source)
    publish = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_SCREENSHARE,
                                      video_codec=rtc.VideoCodec.H264, simulcast=False)
    publish.video_encoding.max_bitrate = args.bitrate
    publish.video_encoding.max_framerate = args.fps
    await room.local_participant.publish_track(track, publish)

    pool = ThreadPoolExecutor(1)  # mss's X connection lives on one thread, as in the runner
    sct_thread = pool.submit(lambda: mss.MSS(display=args.display)).result()
    sct.close()
    grabs: list[tuple[float, float]] = []
    measuring = False

    async def frames() -> None:
        loop = asyncio.get_running_loop()
        next_at = time.monotonic()
        while True:
            t0 = time.perf_counter()
            shot = await loop.run_in_executor(pool, sct_thread.grab, region)
            t1 = time.perf_counter()
            source.capture_frame(rtc.VideoFrame(width, height, rtc.VideoBufferType.BGRA, shot.raw))
            t2 = time.perf_counter()
            if measuring:
                grabs.append((t1 - t0, t2 - t1))
            next_at += 1.0 / args.fps
            now = time.monotonic()
            next_at = max(next_at, now)
            await asyncio.sleep(next_at - now)

    task = asyncio.create_task(frames())
    try:
        await asyncio.sleep(args.warmup)
        s0, cpu0, t0, rss0 = await encoder_stats(track), cpu_seconds(), time.monotonic(), rss_mb()
        measuring = True
        await asyncio.sleep(args.seconds)
        measuring = False
        s1, cpu1, t1, rss1 = await encoder_stats(track), cpu_seconds(), time.monotonic(), rss_mb()
    finally:
        task.cancel()
        await room.disconnect()
    frames_encoded = s1["frames_encoded"] - s0["frames_encoded"]
    return {
        "seconds": round(t1 - t0, 3),
        "frames": frames_encoded,
        "captured": len(grabs),
        "fps": round(frames_encoded / (t1 - t0), 2),
        "kbit_s": round((s1["bytes"] - s0["bytes"]) * 8 / (t1 - t0) / 1000, 1),
        "cpu_s": round(cpu1 - cpu0, 3),
        "cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
        "cpu_ms_per_frame": round(1000 * (cpu1 - cpu0) / frames_encoded, 3) if frames_encoded else None,
        "encode_ms_mean": (round(1000 * (s1["encode_s"] - s0["encode_s"]) / frames_encoded, 3)
                           if frames_encoded else None),
        "encoder": s1["implementation"],
        "limited_by": s1["limited_by"],
        "rss_mb": [(0.0, round(rss0, 1)), (round(t1 - t0, 1), round(rss1, 1))],
        "samples": [[round(g * 1000, 4), round(h * 1000, 4)] for g, h in grabs],
        "stages": ["capture", "handoff"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--display", required=True)
    parser.add_argument("--fps", type=float, required=True)
    parser.add_argument("--bitrate", type=int, required=True)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.token = os.environ["BENCH_TOKEN"]  # not on the command line, where ps shows it
    args.passphrase = os.environ["BENCH_PASSPHRASE"]
    result = asyncio.run(run(args))
    args.out.write_text(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
