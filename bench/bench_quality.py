"""Picture quality per bit on desktop content (`make bench`): the runner's libx264 against OpenH264.

Clips (tests/screen_quality.py, deterministic, 1920x1080, 30 fps, 3 s each): ``editor`` (12 px
text typed, a character per frame), ``terminal`` (scrolling 30 lines/s), ``video`` (a desktop
with a text window and a panning video). Each clip goes through, at each target bitrate:

- ``ours``: the runner's ``H264Encoder`` (libx264, default settings: Constrained Baseline);
- ``ours-high``: the same with ``encoder.profile = "high"``;
- ``ours-trellis`` (only when asked for with ``--encoders``): the defaults plus x264's trellis
  quantization (``trellis=1``), which the runner does not use for its CPU cost;
- ``openh264``: Debian's libopenh264 (bench/openh264.py) configured as WebRTC configures it for
  a screen share, i.e. the encoder of the LiveKit SDK's own ``VideoSource`` path.

Every access unit is decoded (PyAV) and compared with its source on luma: PSNR and SSIM of the
text region and the full frame, mean and 5th percentile over the frames. A frame the encoder
skipped (OpenH264's rate control drops frames) counts as the previous picture shown again, as
a viewer sees it. Achieved bitrate = all bytes of the clip (first keyframe included) / 3 s;
"after 1 s": the same from the second second on (the first keyframe's budget spent), with the
text PSNR of those frames: the steady state, compared at equal bitrate in a second table. CPU
ms/frame = process CPU time inside the encoder call (I420 in; ours with libx264's slice
threads), which depends on load: the machine's load average is printed with it.

Usage: .venv/bin/python bench/bench_quality.py [--frames 90] [--clips editor,terminal,video,terminal-random]
       [--bitrates 300000,...] [--json bench/quality_results.json] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import openh264  # noqa: E402

import i420  # noqa: E402
import screen_quality as sq  # noqa: E402
from runner.media import encode  # noqa: E402
from runner.media.encode import H264Encoder  # noqa: E402

BITRATES = [300_000, 500_000, 1_000_000, 2_000_000, 4_000_000, 8_000_000]
ENCODERS = ["ours", "ours-high", "openh264"]
CLIPS = [*sq.CLIPS, "terminal-random"]
OURS = ("ours", "ours-high", "ours-trellis")
WIDTH, HEIGHT = 1920, 1080
LEGIBLE_DB = 36.0

Encode = Callable[[Any, int], bytes]


@contextlib.contextmanager
def x264_tools(kind: str) -> Any:
    """``ours-trellis``: libx264's screen settings with trellis quantization while the block runs
    (the encoder reads them whenever it opens one, its first IDR's tries included)."""
    saved = encode.X264_SCREEN
    if kind == "ours-trellis":
        encode.X264_SCREEN = saved + ":trellis=1"
    try:
        yield
    finally:
        encode.X264_SCREEN = saved


def make_encoder(kind: str, bitrate: int) -> Encode:
    if kind in OURS:
        enc = H264Encoder(WIDTH, HEIGHT, fps=sq.FPS, bitrate=bitrate,
                          profile="high" if kind == "ours-high" else "baseline")
        return lambda frame, i: enc.encode(frame).data
    oh = openh264.OpenH264Encoder(WIDTH, HEIGHT, fps=sq.FPS, bitrate=bitrate)

    def encode(frame: Any, i: int) -> bytes:
        y, u, v = i420.planes(frame)
        return oh.encode(y, u, v)[0]
    return encode


def run(clip: sq.Clip, frames: list[Any], lumas: list[np.ndarray], kind: str, bitrate: int) -> dict[str, Any]:
    dec = sq.LumaDecoder()
    shown: np.ndarray | None = None
    sizes: list[int] = []
    scores: list[sq.Score] = []
    cpu = 0.0
    with x264_tools(kind):
        encode_one = make_encoder(kind, bitrate)
        for i, frame in enumerate(frames):
            started = time.process_time()
            au = encode_one(frame, i)
            cpu += time.process_time() - started
            sizes.append(len(au))
            if au:
                shown = dec.decode(au)
            if shown is None:
                raise RuntimeError(f"{kind} skipped the first picture")
            scores.append(sq.score(lumas[i], shown, clip.text_region))

    def stat(values: list[float], digits: int) -> dict[str, float]:
        return {"mean": round(float(np.mean(values)), digits), "p5": round(sq.percentile(values, 0.05), digits)}

    return {
        "encoder": kind, "clip": clip.name, "target": bitrate,
        "achieved": round(8 * sum(sizes) * sq.FPS / len(frames)),
        "after_1s": round(8 * sum(sizes[sq.FPS:]) * sq.FPS / max(1, len(frames) - sq.FPS)),
        "skipped": sum(1 for s in sizes if s == 0),
        "text_psnr": stat([s.text_psnr for s in scores], 2), "text_ssim": stat([s.text_ssim for s in scores], 4),
        "text_psnr_after_1s": stat([s.text_psnr for s in scores[sq.FPS:]], 2),
        "full_psnr": stat([s.full_psnr for s in scores], 2), "full_ssim": stat([s.full_ssim for s in scores], 4),
        "first_kb": round(sizes[0] / 1000, 1), "first_text_psnr": round(scores[0].text_psnr, 2),
        "cpu_ms": round(1000 * cpu / len(frames), 2),
    }


def interpolate(points: list[tuple[float, float]], x: float) -> float | None:
    """y at x on the curve through ``points`` (x = bitrate, linear in log bitrate); None outside."""
    pts = sorted(points)
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        if x0 <= x <= x1:
            if x1 == x0:
                return max(y0, y1)
            t = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return y0 + t * (y1 - y0)
    return None


def compare(results: list[dict[str, Any]], ours: str, *, after_1s: bool = False) -> list[dict[str, Any]]:
    """For every OpenH264 point: our text PSNR at OpenH264's achieved bitrate (interpolated on
    our curve), and the difference; ``after_1s``: bitrates and text of the frames after the first
    second (the steady state, without the first keyframe)."""
    rate, text = ("after_1s", "text_psnr_after_1s") if after_1s else ("achieved", "text_psnr")
    out = []
    for clip in sorted({r["clip"] for r in results}):
        curve = [(r[rate], r[text]["mean"]) for r in results if r["clip"] == clip and r["encoder"] == ours]
        for r in results:
            if r["clip"] != clip or r["encoder"] != "openh264":
                continue
            mine = interpolate(curve, r[rate])
            theirs = r[text]["mean"]
            out.append({"clip": clip, "encoder": ours, "achieved": r[rate], "openh264_text": theirs,
                        "ours_text": None if mine is None else round(mine, 2),
                        "delta_db": None if mine is None else round(mine - theirs, 2)})
    return out


def comparison_table(comparisons: list[dict[str, Any]]) -> list[str]:
    lines = ["| clip | encoder | achieved Mbit/s | OpenH264 text dB | ours text dB | ours - OpenH264 dB |",
             "|---|---|---|---|---|---|"]
    for c in comparisons:
        ours = "outside our curve" if c["ours_text"] is None else c["ours_text"]
        delta = "-" if c["delta_db"] is None else f"{c['delta_db']:+.2f}"
        lines.append(f"| {c['clip']} | {c['encoder']} | {c['achieved'] / 1e6:.2f} | {c['openh264_text']} "
                     f"| {ours} | {delta} |")
    return lines


def markdown(results: list[dict[str, Any]], comparisons: list[dict[str, Any]],
             steady: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"Machine: {meta['machine']}; load average {meta['load_before']} before, "
             f"{meta['load_after']} after; "
             f"OpenH264 {meta['openh264']}; {meta['frames']} frames of 1920x1080 at 30 fps per clip.", "",
             "| clip | encoder | target Mbit/s | achieved Mbit/s: clip / after 1 s "
             "| text PSNR mean / p5 dB | text SSIM mean / p5 | text PSNR after 1 s mean / p5 dB "
             "| frame PSNR mean / p5 dB | frame SSIM mean / p5 | first keyframe kB, text dB | skipped | CPU ms/frame |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['clip']} | {r['encoder']} | {r['target'] / 1e6:g} "
            f"| {r['achieved'] / 1e6:.2f} / {r['after_1s'] / 1e6:.2f} "
            f"| {r['text_psnr']['mean']} / {r['text_psnr']['p5']} | {r['text_ssim']['mean']} / {r['text_ssim']['p5']} "
            f"| {r['text_psnr_after_1s']['mean']} / {r['text_psnr_after_1s']['p5']} "
            f"| {r['full_psnr']['mean']} / {r['full_psnr']['p5']} | {r['full_ssim']['mean']} / {r['full_ssim']['p5']} "
            f"| {r['first_kb']}, {r['first_text_psnr']} | {r['skipped']} | {r['cpu_ms']} |")
    lines += ["", "At OpenH264's achieved bitrates (the whole clip), text PSNR (mean) of ours interpolated "
              "on our curve:", "", *comparison_table(comparisons),
              "", f"The same after the first second (bitrate and text of frames {sq.FPS + 1}-{meta['frames']}: "
              "the steady state):", "",
              *comparison_table(steady)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--clips", default=",".join(CLIPS))
    parser.add_argument("--bitrates", default=",".join(str(b) for b in BITRATES))
    parser.add_argument("--encoders", default=",".join(ENCODERS))
    parser.add_argument("--json", default=str(ROOT / "bench" / "quality_results.json"))
    parser.add_argument("--markdown", default=str(ROOT / "bench" / "quality_results.md"))
    args = parser.parse_args()
    meta = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                       f"Linux {platform.release()}, Python {platform.python_version()}",
            "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()), "openh264": openh264.version(),
            "frames": args.frames}
    results = []
    for name in args.clips.split(","):
        clip = sq.clip(name, WIDTH, HEIGHT, frames=args.frames)
        frames = [i420.from_bgra(p) for p in clip.pictures()]
        lumas = [sq.luma(f) for f in frames]
        for bitrate in (int(b) for b in args.bitrates.split(",")):
            for kind in args.encoders.split(","):
                r = run(clip, frames, lumas, kind, bitrate)
                results.append(r)
                print(json.dumps(r), flush=True)
    meta["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    ours_kinds = [kind for kind in OURS if kind in args.encoders.split(",")]
    comparisons = [c for ours in ours_kinds for c in compare(results, ours)]
    steady = [c for ours in ours_kinds for c in compare(results, ours, after_1s=True)]
    Path(args.json).write_text(json.dumps({"meta": meta, "results": results, "comparisons": comparisons,
                                           "comparisons_after_1s": steady}, indent=1))
    text = markdown(results, comparisons, steady, meta)
    Path(args.markdown).write_text(text)
    print(text)
    first = [r for r in results if r["encoder"] == "ours" and r["target"] >= 1_000_000]
    print(f"first keyframe text >= {LEGIBLE_DB} dB at targets >= 1 Mbit/s: "
          f"{sum(r['first_text_psnr'] >= LEGIBLE_DB for r in first)}/{len(first)}")


if __name__ == "__main__":
    main()
