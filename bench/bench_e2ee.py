"""Benchmark runner.e2ee on real 1080p libx264 access units of a desktop-like picture.

Run from the repository root:  .venv/bin/python bench/bench_e2ee.py [--repeat N]

Encodes a synthetic desktop (wallpaper, a terminal and an editor full of text, title bars) at
1920x1080 the way the runner does (baseline, zero latency, 4 slices, SPS/PPS in band), then
times normalize_start_codes, encrypt_frame and decrypt_frame on a key frame and on a delta frame
(the terminal scrolls by a line, the cursor moves). Prints median microseconds per frame (wall
clock and CPU) and MB/s (frame bytes per wall-clock microsecond).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from functools import partial
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.bitstream.annexb import h264_nal_types, is_h264_keyframe, normalize_start_codes
from runner.e2ee import decrypt_frame, derive_key, encrypt_frame

WIDTH, HEIGHT = 1920, 1080
GLYPH_W, GLYPH_H, LINE_H = 6, 9, 14
X264_OPTIONS = {
    "preset": "veryfast",
    "tune": "zerolatency",
    "profile": "baseline",
    "crf": "23",
    "threads": "4",
    "forced-idr": "1",
    "x264-params": "slices=4:keyint=600",
}


def glyph_atlas(rng: np.random.Generator, count: int = 40) -> np.ndarray:
    """Random 6x9 bitmaps that look like the letters of a small font at a distance."""
    glyphs = rng.random((count, GLYPH_H, GLYPH_W)) < 0.38
    glyphs[:, :, -1] = False  # letter spacing
    glyphs[:, -2:, :] = False  # baseline gap
    return glyphs


def vocabulary(rng: np.random.Generator, atlas: np.ndarray, size: int = 300) -> list[np.ndarray]:
    """Word bitmaps (2-9 letters, frequent letters more often), reused like words in real text."""
    weights = 1 / np.arange(1, len(atlas) + 1)
    weights /= weights.sum()
    words = []
    for _ in range(size):
        letters = rng.choice(len(atlas), size=int(rng.integers(2, 10)), p=weights)
        words.append(np.concatenate([atlas[i] for i in letters], axis=1))
    return words


def draw_text(picture: np.ndarray, box: tuple[int, int, int, int], ink: tuple[int, int, int],
              words: list[np.ndarray], first_line: int = 0) -> None:
    """Fill ``box`` (top, left, bottom, right) with code-like lines; ``first_line`` scrolls."""
    top, left, bottom, right = box
    for line in range((bottom - top) // LINE_H):
        line_rng = np.random.default_rng(first_line + line)
        if line_rng.random() < 0.2:
            continue  # blank line
        x = left + 4 + int(line_rng.integers(0, 4)) * 4 * GLYPH_W  # indentation
        end = left + 4 + int(line_rng.integers(20, 110)) * GLYPH_W
        y = top + line * LINE_H + 2
        while True:
            word = words[int(line_rng.zipf(1.3)) % len(words)]
            if x + word.shape[1] >= min(end, right - 4):
                break
            picture[y : y + GLYPH_H, x : x + word.shape[1]][word] = ink
            x += word.shape[1] + GLYPH_W


def window(picture: np.ndarray, box: tuple[int, int, int, int], body: tuple[int, int, int],
           title: tuple[int, int, int]) -> tuple[int, int, int, int]:
    top, left, bottom, right = box
    picture[top - 2 : bottom + 2, left - 2 : right + 2] = (60, 60, 60)  # border / shadow
    picture[top : top + 28, left:right] = title
    picture[top + 28 : bottom, left:right] = body
    for i, colour in enumerate([(237, 106, 94), (245, 191, 79), (98, 197, 84)]):
        picture[top + 9 : top + 19, left + 10 + 18 * i : left + 20 + 18 * i] = colour
    return top + 30, left, bottom, right


def desktop(scroll: int, cursor: int) -> np.ndarray:
    """RGB 1080p desktop; ``scroll`` lines the terminal has scrolled, ``cursor`` its column."""
    rng = np.random.default_rng(2024)
    words = vocabulary(rng, glyph_atlas(rng))
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    picture = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    picture[..., 0] = 30 + rows * 60 // HEIGHT
    picture[..., 1] = 60 + cols * 80 // WIDTH
    picture[..., 2] = 120 + (rows + cols) * 60 // (HEIGHT + WIDTH)
    picture[HEIGHT - 40 :, :] = (36, 36, 40)  # panel
    for i in range(12):  # launcher icons
        colour = (90 + 12 * i, 140, 200 - 9 * i)
        picture[HEIGHT - 34 : HEIGHT - 6, 12 + 44 * i : 40 + 44 * i] = colour
    editor = window(picture, (60, 80, 1000, 1100), (250, 250, 248), (225, 225, 228))
    draw_text(picture, (editor[0], editor[1] + 48, editor[2], editor[3]), (40, 40, 40), words)
    picture[editor[0] : editor[2], editor[1] : editor[1] + 44] = (240, 240, 240)  # gutter
    terminal = window(picture, (140, 1150, 980, 1860), (24, 26, 33), (52, 54, 62))
    draw_text(picture, terminal, (200, 220, 200), words, first_line=1000 + scroll)
    cursor_row = terminal[2] - LINE_H - 4
    left = terminal[1] + 6 + cursor * GLYPH_W
    picture[cursor_row : cursor_row + GLYPH_H + 2, left : left + GLYPH_W] = (230, 230, 230)
    return picture


def encode_units() -> tuple[bytes, bytes]:
    """(key frame, typical delta frame) as libx264 writes them for the runner."""
    context = av.CodecContext.create("libx264", "w")
    context.width, context.height = WIDTH, HEIGHT
    context.pix_fmt = "yuv420p"
    context.time_base = Fraction(1, 30)
    context.framerate = Fraction(30)
    context.options = X264_OPTIONS
    units: list[bytes] = []
    for tick in range(4):
        frame = av.VideoFrame.from_ndarray(desktop(scroll=tick, cursor=3 * tick), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = tick
        units += [bytes(packet) for packet in context.encode(frame)]
    units += [bytes(packet) for packet in context.encode(None)]
    key = next(unit for unit in units if is_h264_keyframe(unit))
    delta = [unit for unit in units if not is_h264_keyframe(unit)][-1]
    return key, delta


def median_us(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median wall-clock µs, median CPU µs of this thread) per call. On a loaded machine the
    CPU time is the better estimate of the cost; the wall time is what a frame waits."""
    for _ in range(min(20, repeat)):
        run()  # warm caches and the allocator
    wall, cpu = [], []
    for _ in range(repeat):
        wall_start, cpu_start = time.perf_counter_ns(), time.thread_time_ns()
        run()
        cpu.append(time.thread_time_ns() - cpu_start)
        wall.append(time.perf_counter_ns() - wall_start)
    return statistics.median(wall) / 1000, statistics.median(cpu) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=500, help="timed runs per measurement")
    args = parser.parse_args()

    key = derive_key("benchmark passphrase")
    key_frame, delta_frame = encode_units()
    preset, crf = X264_OPTIONS["preset"], X264_OPTIONS["crf"]
    print(f"libx264 {WIDTH}x{HEIGHT} {preset}, baseline, 4 slices, crf {crf}")
    print(f"{'frame':<6} {'bytes':>8} {'operation':<22} {'wall µs':>9} {'cpu µs':>9} {'MB/s':>7}")
    for name, unit in (("key", key_frame), ("delta", delta_frame)):
        keyframe = name == "key"
        normalized = normalize_start_codes(unit)
        encrypted = encrypt_frame(normalized, key, codec="h264", keyframe=keyframe)
        assert decrypt_frame(encrypted, key, codec="h264", keyframe=keyframe) == normalized
        runs: dict[str, Callable[[], object]] = {
            "normalize_start_codes": partial(normalize_start_codes, unit),
            "encrypt_frame": partial(encrypt_frame, normalized, key, codec="h264", keyframe=keyframe),
            "decrypt_frame": partial(decrypt_frame, encrypted, key, codec="h264", keyframe=keyframe),
        }
        for operation, run in runs.items():
            wall, cpu = median_us(run, args.repeat)
            print(
                f"{name:<6} {len(unit):>8} {operation:<22} {wall:>9.1f} {cpu:>9.1f}"
                f" {len(unit) / wall:>7.0f}"
            )
        print(f"{'':<6} NAL types {h264_nal_types(unit)}")


if __name__ == "__main__":
    main()
