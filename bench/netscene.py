"""The screen for the network benchmark (bench/bench_network.py): an X client drawing until killed.

    .venv/bin/python bench/netscene.py --display :5

A desktop (bench/scenes.py) with three things on top:
- a page of text (``PAGE``: 12 px "fixed" font, dark on light) whose content is chosen by the
  pointer's height: the screen is cut into ``PAGES`` horizontal bands, one page each;
- a square (``SQUARE``) that is white while the pointer is on the right half, black on the left;
- a terminal that scrolls 30 lines a second while busy (stdin: ``busy 1`` / ``busy 0``).
Pointer moves therefore change the square and the page in the same frame: the square tells when
the change first shows (input-to-photon), the page region how long until its text is legible.

Prints "ready" on stdout once drawn, and "ok" after each stdin command.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import time
from pathlib import Path

from Xlib import X

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenes import LINES_PER_S, Screen, source_lines

PAGES = 8
# (x, y, width, height) as fractions of the screen; the bench reads the same constants.
PAGE = (0.03, 0.05, 0.45, 0.42)
SQUARE = (0.62, 0.70, 0.08, 0.12)
TERMINAL = (0.52, 0.05, 0.44, 0.55)
PAGE_BG, PAGE_FG = (250, 250, 246), (24, 24, 24)


def box(s: Screen, frac: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    fx, fy, fw, fh = frac
    return int(fx * s.width), int(fy * s.height), int(fw * s.width), int(fh * s.height)


def page_of(y: int, height: int) -> int:
    return min(PAGES - 1, max(0, y * PAGES // height))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--display", required=True)
    args = parser.parse_args()
    s = Screen(args.display)
    lines = source_lines()
    s.desktop(lines)

    px, py, pw, ph = box(s, PAGE)
    page_win = s.window(px, py, pw, ph, PAGE_BG)
    page_gc = page_win.create_gc(foreground=s.pixel(*PAGE_FG), background=s.pixel(*PAGE_BG), font=s.font)
    page_clear = page_win.create_gc(foreground=s.pixel(*PAGE_BG))
    cols, rows = (pw - 12) // s.char_w, (ph - 8) // s.line_h

    def draw_page(index: int) -> None:
        page_win.fill_rectangle(page_clear, 0, 0, pw, ph)
        start = 1 + index * 97  # pages far apart in the sources: no line in common
        for row in range(rows):
            text = lines[(start + row) % len(lines)][:cols]
            if text:
                page_win.image_text(page_gc, 6, 4 + row * s.line_h + s.ascent, text)

    sx, sy, sw, sh = box(s, SQUARE)
    square = s.window(sx, sy, sw, sh, (0, 0, 0))
    square_gcs = {False: square.create_gc(foreground=s.pixel(0, 0, 0)),
                  True: square.create_gc(foreground=s.pixel(255, 255, 255))}

    tx, ty, tw, th = box(s, TERMINAL)
    term = s.window(tx, ty, tw, th, (12, 14, 18))
    term_gc = term.create_gc(foreground=s.pixel(200, 220, 200), background=s.pixel(12, 14, 18), font=s.font)
    term_blank = term.create_gc(foreground=s.pixel(12, 14, 18))
    term_rows, term_cols = th // s.line_h, max(1, (tw - 8) // s.char_w)
    for row in range(term_rows):
        term.image_text(term_gc, 4, row * s.line_h + s.ascent, lines[(5000 + row) % len(lines)][:term_cols])

    pointer = s.root.query_pointer()
    white = pointer.root_x >= s.width // 2
    page = page_of(pointer.root_y, s.height)
    draw_page(page)
    square.fill_rectangle(square_gcs[white], 0, 0, sw, sh)
    s.root.change_attributes(event_mask=X.PointerMotionMask)  # our windows pass motion up to the root
    s.conn.sync()
    print("ready", flush=True)

    busy, n = False, 5000 + term_rows
    next_scroll = time.monotonic()
    xfd, infd = s.conn.fileno(), sys.stdin.fileno()
    while True:
        timeout = max(0.0, next_scroll - time.monotonic()) if busy else None
        readable, _, _ = select.select([xfd, infd], [], [], timeout)
        if infd in readable:
            line = os.read(infd, 1024).decode()
            if not line:
                return  # the bench went away
            for word in line.split("\n"):
                if word.startswith("busy "):
                    busy = word.split()[1] == "1"
                    next_scroll = time.monotonic()
                    print("ok", flush=True)
        while s.conn.pending_events():
            event = s.conn.next_event()
            if event.type != X.MotionNotify:
                continue
            want_white, want_page = event.root_x >= s.width // 2, page_of(event.root_y, s.height)
            if want_white != white:
                white = want_white
                square.fill_rectangle(square_gcs[white], 0, 0, sw, sh)
            if want_page != page:
                page = want_page
                draw_page(page)
            s.conn.flush()
        if busy and time.monotonic() >= next_scroll:
            term.copy_area(term_gc, term, 0, s.line_h, tw, (term_rows - 1) * s.line_h, 0, 0)
            term.fill_rectangle(term_blank, 0, (term_rows - 1) * s.line_h, tw, s.line_h)
            text = lines[n % len(lines)][:term_cols]
            if text:
                term.image_text(term_gc, 4, (term_rows - 1) * s.line_h + s.ascent, text)
            s.conn.flush()
            n += 1
            next_scroll += 1.0 / LINES_PER_S


if __name__ == "__main__":
    main()
