"""Picture quality of screen content: deterministic desktop clips and luma PSNR/SSIM.

Shared by the encoder's quality-floor test (tests/test_encode_quality.py) and the quality
benchmark (bench/bench_quality.py), so both measure the same pictures the same way.

Clips (any size; 12 px DejaVu Sans Mono text through Pillow's FreeType, seeded randomness, so a
clip is the same picture sequence on every run):
- ``editor``: a text editor over a wallpaper, one character typed per frame, a blinking caret.
- ``terminal``: a terminal covering most of the screen, scrolling one line per frame (30 lines/s
  at 30 fps); its lines are code-like, words from a small vocabulary.
- ``terminal-random`` (not in ``CLIPS``, for the benchmark): the same terminal with lines of random
  characters (like hashes, ids, hex dumps), so a new line's glyph runs appear nowhere else on the
  screen and an encoder that searches the whole picture for matching blocks (OpenH264's
  screen-content mode) finds nothing to copy.
- ``video``: a desktop with two text windows and a video player whose photo-like picture pans.

Each clip has a ``text_region`` (x, y, width, height): text that the viewer wants to read.
Metrics are on luma (Y of the BT.601 I420 the runner encodes): PSNR in dB (capped at
``PSNR_CAP`` for identical pictures) and SSIM as FFmpeg's ``ssim`` filter computes it (8x8
windows, every 4 pixels, the standard constants).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

FONT_PATH = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf")  # Debian fonts-dejavu-core
FONT_PX = 12
LINE_PX = 15
FPS = 30
PSNR_CAP = 99.0
LEGIBLE_DB = 36.0  # issue 15's bar for "text legible" (bench/bench_network.py)
CLIPS = ("editor", "terminal", "video")
WORDS = ("def", "return", "self", "frame", "encoder", "bitrate", "for", "in", "if", "else", "None",
         "width", "height", "import", "numpy", "np", "await", "async", "picture", "keyframe", "=",
         "+", "(", ")", "[0]", "len(data)", "0x1f", "# the", "slice", "while", "True:", "x264",
         "yield", "class", "Quality:", "text", "region", "psnr", "lambda", "1920", "1080")

Region = tuple[int, int, int, int]  # x, y, width, height


# --- metrics --------------------------------------------------------------------------------------


def rgb_luma(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3 or 4) RGB[A] uint8, as the browser and the X server give pictures -> (h, w) float
    luma 0..255 with the BT.601 weights (the formula of bench_network.py's in-browser check)."""
    rgbf = rgb[..., :3].astype(np.float64)
    return 0.299 * rgbf[..., 0] + 0.587 * rgbf[..., 1] + 0.114 * rgbf[..., 2]


def psnr(ref: np.ndarray, test: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 pictures, dB (``PSNR_CAP`` when identical)."""
    diff = ref.astype(np.float64) - test.astype(np.float64)
    mse = float(np.mean(diff * diff))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(255 * 255 / mse))


def ssim(ref: np.ndarray, test: np.ndarray) -> float:
    """Mean SSIM of two uint8 pictures over 8x8 windows every 4 pixels (FFmpeg's ``ssim``)."""
    h, w = (ref.shape[0] // 4) * 4, (ref.shape[1] // 4) * 4
    if h < 8 or w < 8:
        raise ValueError("SSIM needs at least 8x8 pixels")
    a = ref[:h, :w].astype(np.float64)
    b = test[:h, :w].astype(np.float64)

    def blocks(x: np.ndarray) -> np.ndarray:  # sums over 4x4 blocks
        return x.reshape(h // 4, 4, w // 4, 4).sum(axis=(1, 3))

    def windows(s: np.ndarray) -> np.ndarray:  # 8x8 windows = 2x2 neighbouring blocks
        return s[:-1, :-1] + s[1:, :-1] + s[:-1, 1:] + s[1:, 1:]

    n = 64.0  # pixels per window; the constants as FFmpeg's ssim_end1 scales them
    s_a, s_b = windows(blocks(a)), windows(blocks(b))
    s_aa, s_bb, s_ab = windows(blocks(a * a)), windows(blocks(b * b)), windows(blocks(a * b))
    c1, c2 = (0.01 * 255) ** 2 * n, (0.03 * 255) ** 2 * n * (n - 1)
    variances = (s_aa + s_bb) * n - s_a * s_a - s_b * s_b
    covariance = s_ab * n - s_a * s_b
    num = (2 * s_a * s_b + c1) * (2 * covariance + c2)
    den = (s_a * s_a + s_b * s_b + c1) * (variances + c2)
    return float(np.mean(num / den))


@dataclass(frozen=True)
class Score:
    """One decoded picture against its source: luma PSNR (dB) and SSIM, text region and frame."""

    text_psnr: float
    text_ssim: float
    full_psnr: float
    full_ssim: float


def score(source_y: np.ndarray, decoded_y: np.ndarray, text_region: Region) -> Score:
    x, y, w, h = text_region
    src_t, dec_t = source_y[y:y + h, x:x + w], decoded_y[y:y + h, x:x + w]
    return Score(psnr(src_t, dec_t), ssim(src_t, dec_t), psnr(source_y, decoded_y), ssim(source_y, decoded_y))


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest-rank method."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


class LumaDecoder:
    """Decodes an Annex B H.264 stream access unit by access unit (PyAV's FFmpeg decoder, which
    decodes every profile) and returns each picture's luma plane."""

    def __init__(self) -> None:
        self._ctx = av.CodecContext.create("h264", "r")
        self._ctx.thread_count = 1

    def decode(self, access_unit: bytes) -> np.ndarray:
        frames = self._ctx.decode(av.Packet(access_unit))
        if len(frames) != 1:
            raise ValueError(f"one access unit decoded to {len(frames)} pictures")
        return luma(frames[0])


def luma(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane of a yuv420p frame as an (height, width) array, copied out of its padded rows."""
    plane = frame.planes[0]
    rows: np.ndarray = np.frombuffer(plane, np.uint8)  # type: ignore[call-overload]
    return rows.reshape(-1, plane.line_size)[: frame.height, : frame.width].copy()


# --- clips ----------------------------------------------------------------------------------------


def text_lines(count: int, seed: int, width_chars: int = 110) -> list[str]:
    """Code-like lines: indentation, words and symbols, deterministic for a seed."""
    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        indent = " " * (4 * rng.randrange(0, 4))
        words: list[str] = []
        target = rng.randrange(12, max(13, width_chars - len(indent)))
        while sum(len(w) + 1 for w in words) < target:
            words.append(rng.choice(WORDS))
        lines.append(indent + " ".join(words) if rng.random() > 0.08 else "")
    return lines


RANDOM_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789(){}[];:=+-*/.,_ "


def random_lines(count: int, seed: int, width_chars: int = 110) -> list[str]:
    """Lines of random characters, 20 to ``width_chars``, deterministic for a seed."""
    rng = random.Random(seed)
    return ["".join(rng.choice(RANDOM_CHARS) for _ in range(rng.randrange(20, max(21, width_chars))))
            for _ in range(count)]


def wallpaper(width: int, height: int, seed: int) -> np.ndarray:
    """A photo-like BGRA picture: soft gradients, blobs and some grain."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    img = np.zeros((height, width, 4), np.float32)
    for c, (fx, fy, phase) in enumerate([(1.3, 0.7, 0.0), (0.6, 1.9, 1.0), (2.1, 1.1, 2.0)]):
        img[..., c] = 100 + 60 * np.sin(2 * math.pi * (fx * x + phase / 3)) * np.cos(2 * math.pi * fy * y)
    for _ in range(24):
        cx, cy, r = rng.random(), rng.random(), 0.03 + 0.12 * rng.random()
        d2 = ((x - cx) * width / height) ** 2 + (y - cy) ** 2
        blob = np.exp(-d2 / (r * r))
        img[..., :3] += blob[..., None] * rng.uniform(-70, 70, 3)[None, None, :]
    img[..., :3] += rng.normal(0, 3, (height, width, 1))  # grain of a JPEG-compressed photo
    img[..., 3] = 255
    return np.clip(img, 0, 255).astype(np.uint8)


def _font():  # type: ignore[no-untyped-def]
    from PIL import ImageFont

    return ImageFont.truetype(str(FONT_PATH), FONT_PX)


def render_text(lines: list[str], width: int, fg: tuple[int, int, int], bg: tuple[int, int, int],
                *, left: int = 6) -> np.ndarray:
    """Lines of 12 px text, one per ``LINE_PX`` rows, as BGRA (height = len(lines) * LINE_PX)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, max(1, len(lines)) * LINE_PX), bg)
    draw = ImageDraw.Draw(img)
    font = _font()
    for i, line in enumerate(lines):
        if line:
            draw.text((left, i * LINE_PX + 1), line, font=font, fill=fg)
    rgb = np.asarray(img)
    out = np.empty((*rgb.shape[:2], 4), np.uint8)
    out[..., 0], out[..., 1], out[..., 2], out[..., 3] = rgb[..., 2], rgb[..., 1], rgb[..., 0], 255
    return out


@dataclass(frozen=True)
class Clip:
    name: str
    width: int
    height: int
    frames: int
    text_region: Region

    def pictures(self) -> Iterator[np.ndarray]:
        """The clip's BGRA pictures, (height, width, 4); each yielded array is a fresh one."""
        yield from _GENERATORS[self.name](self)


def clip(name: str, width: int = 1920, height: int = 1080, frames: int = 60) -> Clip:
    if name not in _GENERATORS:
        raise ValueError(f"unknown clip {name!r}; one of {', '.join(_GENERATORS)}")
    return Clip(name, width, height, frames, _LAYOUTS[name](width, height))


def _align(v: float) -> int:
    return int(v) // 16 * 16


def _editor_layout(width: int, height: int) -> Region:
    x, y = _align(0.05 * width), _align(0.06 * height)
    return x, y + 32, _align(0.62 * width), _align(0.86 * height) - 32


def _editor(c: Clip) -> Iterator[np.ndarray]:
    x, y, w, h = c.text_region
    base = wallpaper(c.width, c.height, seed=11)
    base[y - 32:y, x:x + w] = (70, 58, 52, 255)  # title bar
    rows = h // LINE_PX
    lines = text_lines(rows + 4, seed=5, width_chars=max(10, w // 8))
    typed_row = rows // 2
    target = lines[typed_row] or "while True: frame = encoder.encode(picture, keyframe=False)"
    text = render_text([*lines[:typed_row], "", *lines[typed_row + 1:rows]], w, (30, 30, 30), (250, 250, 248))
    base[y:y + rows * LINE_PX, x:x + w] = text
    base[y + rows * LINE_PX:y + h, x:x + w] = (248, 250, 250, 255)
    row_y = y + typed_row * LINE_PX
    for i in range(c.frames):
        pic = base.copy()
        shown = target[:(i % len(target)) + 1]
        line = render_text([shown], w, (30, 30, 30), (250, 250, 248))
        pic[row_y:row_y + LINE_PX, x:x + w] = line
        if (i // 15) % 2 == 0:  # the caret blinks every half second
            cx = x + 6 + round(len(shown) * FONT_CHAR_PX)
            pic[row_y + 1:row_y + LINE_PX - 1, cx:cx + 1] = (30, 30, 30, 255)
        yield pic


FONT_CHAR_PX = 7.2247  # DejaVu Sans Mono's advance at 12 px (Pillow: getlength("M"))


def _terminal_layout(width: int, height: int) -> Region:
    return _align(0.08 * width), _align(0.08 * height), _align(0.8 * width), _align(0.8 * height)


def _terminal(c: Clip) -> Iterator[np.ndarray]:
    x, y, w, h = c.text_region
    base = wallpaper(c.width, c.height, seed=13)
    rows = h // LINE_PX
    make_lines = random_lines if c.name == "terminal-random" else text_lines
    lines = make_lines(rows + c.frames, seed=7, width_chars=max(10, w // 8))
    strip = render_text(lines, w, (200, 220, 200), (18, 20, 24), left=4)
    for i in range(c.frames):
        pic = base.copy()
        pic[y:y + h, x:x + w] = (24, 20, 18, 255)
        pic[y:y + rows * LINE_PX, x:x + w] = strip[i * LINE_PX:(i + rows) * LINE_PX]
        yield pic


def _video_layout(width: int, height: int) -> Region:
    # The text window on the left; the player sits right of it and never covers it.
    return _align(0.03 * width), _align(0.1 * height), _align(0.3 * width), _align(0.7 * height)


def _video(c: Clip) -> Iterator[np.ndarray]:
    x, y, w, h = c.text_region
    base = wallpaper(c.width, c.height, seed=17)
    rows = h // LINE_PX
    base[y:y + h, x:x + w] = (248, 250, 250, 255)
    base[y:y + rows * LINE_PX, x:x + w] = render_text(text_lines(rows, seed=9, width_chars=w // 8), w,
                                                      (20, 20, 20), (250, 250, 248))
    vx, vy = x + w + _align(0.04 * c.width), _align(0.2 * c.height)
    vw = _align(min(c.width - vx - 16, 0.5 * c.width))
    vh = _align(vw * 9 / 16)
    texture = wallpaper(vw * 2, vh * 2, seed=3)
    for i in range(c.frames):
        pic = base.copy()
        t = i / FPS
        ox = int((0.5 + 0.5 * math.sin(t * 0.7)) * vw)
        oy = int((0.5 + 0.5 * math.cos(t * 0.5)) * vh)
        pic[vy:vy + vh, vx:vx + vw] = texture[oy:oy + vh, ox:ox + vw]
        yield pic


_GENERATORS = {"editor": _editor, "terminal": _terminal, "terminal-random": _terminal, "video": _video}
_LAYOUTS = {"editor": _editor_layout, "terminal": _terminal_layout, "terminal-random": _terminal_layout,
            "video": _video_layout}
