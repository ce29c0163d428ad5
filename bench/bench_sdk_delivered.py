"""What the LiveKit SDK's own path really delivers on the quality clips (`make bench`).

The clips of tests/screen_quality.py go, at 30 fps, into the SDK's ``rtc.VideoSource``
(``is_screencast=True``, H.264, one layer, the target as the maximum bitrate): the path a LiveKit
user takes without desktop-runner (libwebrtc: its OpenH264 build, frame dropper, pacing, the
bandwidth estimate). A subscriber in the same process, through a real livekit-server on loopback,
receives the decoded frames (``rtc.VideoStream``, I420). Each source picture carries its number
in a strip of 16x16 black or white blocks at the top (above every text region), read back after
decoding, so each delivered frame is compared with its own source: luma PSNR and SSIM of the text
region. The clip loops for ``--seconds``; the first ``--warmup`` seconds (the bandwidth estimate
ramping up) are not scored. Bitrate = bytes the publisher sent in the scored window
(``achieved``) and over the whole run (``achieved_all``, first keyframe included); the first
delivered frame's text PSNR and when it arrived after publishing.

Usage: .venv/bin/python bench/bench_sdk_delivered.py [--clips ...] [--bitrates ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "scripts"), str(ROOT / "bench")]

from livekit import rtc  # noqa: E402

import i420  # noqa: E402
import screen_quality as sq  # noqa: E402
from devstack import LiveKitServer, mint_token  # noqa: E402

WIDTH, HEIGHT = 1920, 1080
BLOCK = 16
BITS = 14  # frame numbers up to 16383 (9 minutes at 30 fps)
BITRATES = [300_000, 1_000_000, 2_000_000, 4_000_000, 8_000_000]


def stamp(bgra: np.ndarray, number: int) -> None:
    """Writes ``number`` into the top strip: bit i = block i, white for 1, black for 0."""
    for i in range(BITS):
        bgra[:BLOCK, i * BLOCK:(i + 1) * BLOCK, :3] = 255 if number >> i & 1 else 0


def read_stamp(y: np.ndarray) -> int:
    """The number in a decoded picture's strip (each block's centre, thresholded)."""
    number = 0
    for i in range(BITS):
        if y[4:12, i * BLOCK + 4:(i + 1) * BLOCK - 4].mean() > 128:
            number |= 1 << i
    return number


def i420_luma(frame: rtc.VideoFrame) -> np.ndarray:
    y = np.frombuffer(frame.data, np.uint8)[: frame.width * frame.height]
    return y.reshape(frame.height, frame.width)


async def bytes_sent(track: rtc.LocalVideoTrack) -> tuple[int, str]:
    for s in await track.get_stats():
        if s.HasField("outbound_rtp"):
            return s.outbound_rtp.sent.bytes_sent, s.outbound_rtp.outbound.encoder_implementation
    return 0, ""


async def run(server: LiveKitServer, clip: sq.Clip, lumas: list[np.ndarray], pictures: list[np.ndarray],
              bitrate: int, seconds: float, warmup: float) -> dict[str, Any]:
    room_name = f"sdk-{clip.name}-{bitrate}"
    pub, sub = rtc.Room(), rtc.Room()
    received: list[tuple[float, int, np.ndarray]] = []
    sizes: set[tuple[int, int]] = set()
    streams: list[asyncio.Task[None]] = []

    async def consume(track: rtc.Track) -> None:
        async for event in rtc.VideoStream(track, format=rtc.VideoBufferType.I420):
            f = event.frame
            sizes.add((f.width, f.height))
            if (f.width, f.height) == (WIDTH, HEIGHT):
                y = i420_luma(f)
                received.append((time.monotonic(), read_stamp(y), y.copy()))

    @sub.on("track_subscribed")
    def _on_track(track: rtc.Track, *_: Any) -> None:
        if track.kind == rtc.TrackKind.KIND_VIDEO:
            streams.append(asyncio.create_task(consume(track)))

    key, secret = server.api_key, server.api_secret
    await sub.connect(server.url, mint_token(key, secret, room_name, "viewer"))
    await pub.connect(server.url, mint_token(key, secret, room_name, "sdk", publish=True))
    source = rtc.VideoSource(WIDTH, HEIGHT, is_screencast=True)
    track = rtc.LocalVideoTrack.create_video_track("screen", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_SCREENSHARE, video_codec=rtc.VideoCodec.H264,
                                      simulcast=False)
    options.video_encoding.max_bitrate = bitrate
    options.video_encoding.max_framerate = sq.FPS
    await pub.local_participant.publish_track(track, options)
    started = time.monotonic()
    scored_from = started + warmup
    sent_at_warmup: int | None = None
    n = 0
    next_at = started
    while time.monotonic() - started < seconds:
        if sent_at_warmup is None and time.monotonic() >= scored_from:
            sent_at_warmup = (await bytes_sent(track))[0]
            first_scored = n
        picture = pictures[n % len(pictures)].copy()
        stamp(picture, n)
        source.capture_frame(rtc.VideoFrame(WIDTH, HEIGHT, rtc.VideoBufferType.BGRA, picture.tobytes()))
        n += 1
        next_at += 1 / sq.FPS
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    sent_end, implementation = await bytes_sent(track)
    await asyncio.sleep(0.5)  # the last frames in flight
    for task in streams:
        task.cancel()
    await pub.disconnect()
    await sub.disconnect()
    first = (sq.score(lumas[received[0][1] % len(lumas)], received[0][2], clip.text_region).text_psnr
             if received else None)
    scored = [(num, y) for _, num, y in received if first_scored <= num < n]
    scores = [sq.score(lumas[num % len(lumas)], y, clip.text_region) for num, y in scored]
    window = seconds - warmup
    text = [s.text_psnr for s in scores]
    return {
        "clip": clip.name, "target": bitrate, "encoder": implementation, "sizes": sorted(sizes),
        "achieved_all": round(8 * sent_end / seconds),
        "achieved": round(8 * (sent_end - (sent_at_warmup or 0)) / window),
        "first_delivered_s": round(received[0][0] - started, 2) if received else None,
        "first_text_psnr": None if first is None else round(first, 2),
        "frames_sent": n - first_scored, "frames_delivered": len(scored),
        "text_psnr": {"mean": round(float(np.mean(text)), 2) if text else None,
                      "p5": round(sq.percentile(text, 0.05), 2) if text else None},
        "text_ssim": round(float(np.mean([s.text_ssim for s in scores])), 4) if scores else None,
    }


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    with LiveKitServer() as server:
        for name in args.clips.split(","):
            clip = sq.clip(name, WIDTH, HEIGHT, frames=90)
            pictures = list(clip.pictures())
            lumas = [sq.luma(i420.from_bgra(p)) for p in pictures]
            for bitrate in (int(b) for b in args.bitrates.split(",")):
                r = await run(server, clip, lumas, pictures, bitrate, args.seconds, args.warmup)
                results.append(r)
                print(json.dumps(r), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", default=",".join(sq.CLIPS))
    parser.add_argument("--bitrates", default=",".join(str(b) for b in BITRATES))
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=6.0)
    parser.add_argument("--json", default=str(ROOT / "bench" / "sdk_delivered_results.json"))
    args = parser.parse_args()
    results = asyncio.run(measure(args))
    Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
