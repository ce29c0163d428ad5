"""Screen content for the benchmarks: an X client that draws one scene until it is killed.

    .venv/bin/python bench/scenes.py --display :5 --scene scrolling

Scenes (python-xlib only, so any X server with the built-in "fixed" font works):
- ``static``: a desktop: a wallpaper with gradients and noise, three windows of source text. Drawn
  once, then nothing changes.
- ``scrolling``: the desktop plus a terminal covering most of the screen that prints 30 lines of
  source text per second, scrolling like a terminal does (the whole text moves up a line).
- ``video``: the desktop plus a player window half the screen wide (16:9) showing a photo-like
  picture panning and drifting at 30 frames per second: every pixel of the window changes.
- ``photon``: a black screen with a square in the middle that turns white while the pointer is on
  the right half of the screen and black on the left half (input-to-photon latency).

Prints "ready" on stdout once the first picture is on the screen.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from Xlib import X
from Xlib import display as xdisplay
from Xlib.error import ConnectionClosedError

if TYPE_CHECKING:
    from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FPS = 30
LINES_PER_S = 30
STRIP_BYTES = 192 * 1024  # put_image in strips: python-xlib does not split big requests
PHOTON_SQUARE = 0.25  # side of the photon square as a fraction of the screen height


def source_lines() -> list[str]:
    """Real text: this repository's Python sources, tabs expanded."""
    lines: list[str] = []
    for path in sorted((ROOT / "runner").rglob("*.py")):
        lines.extend(line.expandtabs(4).rstrip() for line in path.read_text().splitlines())
    return lines


def wallpaper(width: int, height: int, seed: int = 7) -> np.ndarray:
    """A photo-like BGRA picture: soft colour gradients, blobs and some fine grain."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    img = np.zeros((height, width, 4), np.float32)
    for c, (fx, fy, phase) in enumerate([(1.3, 0.7, 0.0), (0.6, 1.9, 1.0), (2.1, 1.1, 2.0)]):
        img[..., c] = 90 + 60 * np.sin(2 * math.pi * (fx * x + phase / 3)) * np.cos(2 * math.pi * fy * y)
    for _ in range(24):  # blobs
        cx, cy, r = rng.random(), rng.random(), 0.03 + 0.12 * rng.random()
        d2 = ((x - cx) * width / height) ** 2 + (y - cy) ** 2
        img[..., :3] += (np.exp(-d2 / (r * r)) * rng.uniform(-70, 70, 3)[None, None, :].T).transpose(1, 2, 0)
    img[..., :3] += rng.normal(0, 6, (height, width, 1))
    img[..., 3] = 255
    return np.clip(img, 0, 255).astype(np.uint8)


class Screen:
    def __init__(self, display: str) -> None:
        self.conn = xdisplay.Display(display)
        self.screen = self.conn.screen()
        self.root = self.screen.root
        self.width, self.height = self.screen.width_in_pixels, self.screen.height_in_pixels
        self.depth = self.screen.root_depth
        self.font = self.conn.open_font("fixed")
        metrics = self.font.query()
        self.char_w = metrics.max_bounds.character_width
        self.line_h = metrics.font_ascent + metrics.font_descent
        self.ascent = metrics.font_ascent

    def pixel(self, r: int, g: int, b: int) -> int:
        pixel: int = self.screen.default_colormap.alloc_color(r * 257, g * 257, b * 257).pixel
        return pixel

    def put(self, drawable: Any, gc: Any, x: int, y: int, bgra: np.ndarray) -> None:
        h, w = bgra.shape[:2]
        rows = max(1, STRIP_BYTES // (w * 4))
        for top in range(0, h, rows):
            strip = np.ascontiguousarray(bgra[top:top + rows])
            drawable.put_image(gc, x, y + top, w, strip.shape[0], X.ZPixmap, self.depth, 0, strip.tobytes())

    def window(self, x: int, y: int, w: int, h: int, bg: tuple[int, int, int], *, events: int = 0) -> Any:
        win = self.root.create_window(x, y, w, h, 0, self.depth, X.InputOutput, X.CopyFromParent,
                                      background_pixel=self.pixel(*bg), override_redirect=True,
                                      event_mask=events)
        win.map()
        return win

    def desktop(self, lines: list[str]) -> None:
        """Wallpaper on the root window and three text windows."""
        pixmap = self.root.create_pixmap(self.width, self.height, self.depth)
        gc = pixmap.create_gc()
        self.put(pixmap, gc, 0, 0, wallpaper(self.width, self.height))
        self.root.change_attributes(background_pixmap=pixmap)
        self.root.clear_area(0, 0, 0, 0)
        pixmap.free()
        w, h = self.width, self.height
        for i, (fx, fy, fw, fh) in enumerate([(0.04, 0.06, 0.42, 0.5), (0.52, 0.1, 0.4, 0.38),
                                               (0.3, 0.55, 0.45, 0.38)]):
            win = self.window(int(fx * w), int(fy * h), int(fw * w), int(fh * h), (246, 246, 242))
            self.text_window(win, int(fw * w), int(fh * h), lines[i * 200:], title=f"window {i + 1}")
        self.conn.sync()

    def text_window(self, win: Any, w: int, h: int, lines: list[str], *, title: str) -> None:
        bar = win.create_gc(foreground=self.pixel(52, 58, 70))
        win.fill_rectangle(bar, 0, 0, w, self.line_h + 8)
        title_gc = win.create_gc(foreground=self.pixel(230, 230, 230), background=self.pixel(52, 58, 70),
                                 font=self.font)
        win.image_text(title_gc, 8, 4 + self.ascent, title)
        text_gc = win.create_gc(foreground=self.pixel(20, 20, 20), background=self.pixel(246, 246, 242),
                                font=self.font)
        cols = max(1, (w - 16) // self.char_w)
        for row in range((h - self.line_h - 12) // self.line_h):
            line = lines[row % len(lines)][:cols]
            if line:
                win.image_text(text_gc, 8, self.line_h + 10 + row * self.line_h + self.ascent, line)


def run_static(s: Screen, lines: list[str]) -> None:
    s.desktop(lines)
    ready()
    while True:
        time.sleep(3600)


def run_scrolling(s: Screen, lines: list[str]) -> None:
    s.desktop(lines)
    x, y, w, h = int(0.08 * s.width), int(0.08 * s.height), int(0.8 * s.width), int(0.8 * s.height)
    term = s.window(x, y, w, h, (12, 14, 18))
    gc = term.create_gc(foreground=s.pixel(200, 220, 200), background=s.pixel(12, 14, 18), font=s.font)
    blank = term.create_gc(foreground=s.pixel(12, 14, 18))
    rows, cols = h // s.line_h, max(1, (w - 8) // s.char_w)
    for row in range(rows):
        term.image_text(gc, 4, row * s.line_h + s.ascent, lines[row % len(lines)][:cols])
    s.conn.sync()
    ready()
    n = rows
    next_at = time.monotonic()
    while True:
        # A terminal's scroll: everything up one line, the new line at the bottom.
        term.copy_area(gc, term, 0, s.line_h, w, (rows - 1) * s.line_h, 0, 0)
        term.fill_rectangle(blank, 0, (rows - 1) * s.line_h, w, s.line_h)
        line = lines[n % len(lines)][:cols]
        if line:
            term.image_text(gc, 4, (rows - 1) * s.line_h + s.ascent, line)
        s.conn.flush()
        n += 1
        next_at += 1.0 / LINES_PER_S
        time.sleep(max(0.0, next_at - time.monotonic()))


def run_video(s: Screen, lines: list[str]) -> None:
    s.desktop(lines)
    w = (s.width // 2) & ~3
    h = (w * 9 // 16) & ~1
    x, y = (s.width - w) // 2, (s.height - h) // 2
    player = s.window(x, y, w, h, (0, 0, 0))
    gc = player.create_gc()
    texture = wallpaper(w * 2, h * 2, seed=3)
    ready()
    t0 = next_at = time.monotonic()
    while True:
        t = time.monotonic() - t0
        # A slow pan around an ellipse: the whole picture moves, as in a video with a moving camera.
        ox = int((0.5 + 0.5 * math.sin(t * 0.7)) * w)
        oy = int((0.5 + 0.5 * math.cos(t * 0.5)) * h)
        s.put(player, gc, 0, 0, texture[oy:oy + h, ox:ox + w])
        s.conn.flush()
        next_at += 1.0 / FPS
        time.sleep(max(0.0, next_at - time.monotonic()))


def run_photon(s: Screen) -> None:
    win = s.window(0, 0, s.width, s.height, (0, 0, 0), events=X.PointerMotionMask)
    side = int(PHOTON_SQUARE * s.height)
    sx, sy = (s.width - side) // 2, (s.height - side) // 2
    gcs = {False: win.create_gc(foreground=s.pixel(0, 0, 0)), True: win.create_gc(foreground=s.pixel(255, 255, 255))}
    white = False
    win.fill_rectangle(gcs[white], sx, sy, side, side)
    s.conn.sync()
    ready()
    while True:
        event = s.conn.next_event()
        if event.type != X.MotionNotify:
            continue
        want = event.root_x >= s.width // 2
        if want != white:
            white = want
            win.fill_rectangle(gcs[white], sx, sy, side, side)
            s.conn.flush()


def ready() -> None:
    print("ready", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--display", required=True)
    parser.add_argument("--scene", required=True, choices=["static", "scrolling", "video", "photon"])
    args = parser.parse_args()
    s = Screen(args.display)
    try:
        if args.scene == "photon":
            run_photon(s)
        lines = source_lines()
        {"static": run_static, "scrolling": run_scrolling, "video": run_video}[args.scene](s, lines)
    except ConnectionClosedError:
        return  # the X server went away first: the benchmark is over


if __name__ == "__main__":
    main()
