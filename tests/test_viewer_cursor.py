"""viewer/cursor.js's pure parts, run in Node: which cursor and pointer pushes it takes (bounded,
whatever arrives), the size and hotspot a host cursor is shown at, the CSS it becomes."""

from __future__ import annotations

import base64
import json

from runner.control.cursor import png_rgba
from test_viewer_logic import js

PNG_24 = base64.b64encode(png_rgba(24, 24, bytes(24 * 24 * 4))).decode()
IMAGE = {"t": "cursor", "serial": 7, "w": 24, "h": 24, "xhot": 11, "yhot": 11, "png": PNG_24}


def parse_cursor(message: dict[str, object]) -> object:
    return js(f"cursor.parseCursor({json.dumps(message)})")


def test_a_cursor_image_push_is_taken_as_sent() -> None:
    assert parse_cursor(IMAGE) == {"serial": 7, "kind": "image", "w": 24, "h": 24, "xhot": 11, "yhot": 11,
                                   "png": PNG_24}


def test_hidden_unknown_and_known_serials_are_told_apart() -> None:
    assert parse_cursor({"t": "cursor", "serial": 3, "hidden": True}) == {"serial": 3, "kind": "hidden"}
    assert parse_cursor({"t": "cursor", "serial": 4, "unknown": True}) == {"serial": 4, "kind": "unknown"}
    assert parse_cursor({"t": "cursor", "serial": 5}) == {"serial": 5, "kind": "ref"}


def test_oversized_or_malformed_cursor_pushes_are_refused() -> None:
    bad = [
        {**IMAGE, "w": 257}, {**IMAGE, "h": 0}, {**IMAGE, "w": 2.5}, {**IMAGE, "w": "24"},
        {**IMAGE, "xhot": 24}, {**IMAGE, "yhot": -1}, {**IMAGE, "png": "A" * 16385},
        {**IMAGE, "png": "not base64!"}, {**IMAGE, "png": None}, {**IMAGE, "serial": -1},
        {**IMAGE, "serial": 2**32}, {**IMAGE, "serial": True}, {**IMAGE, "png": "iVBORw0KGgo="},
        # A small PNG that would decode to 30000 x 30000 pixels is never decoded.
        {**IMAGE, "png": base64.b64encode(png_rgba(1, 1, bytes(4)).replace(
            b"\x00\x00\x00\x01\x00\x00\x00\x01", (30000).to_bytes(4, "big") * 2, 1)).decode()},
    ]
    assert js(f"{json.dumps(bad)}.map((m) => cursor.parseCursor(m))") == [None] * len(bad)


def test_a_pngs_declared_size_is_read_before_decoding() -> None:
    assert js(f"cursor.pngSize({json.dumps(PNG_24)})") == [24, 24]
    assert js("cursor.pngSize('R0lGODlhAQABAAAAACw=')") is None  # a GIF


def test_pointer_pushes_are_checked() -> None:
    assert js("cursor.parsePointer({t: 'pointer', x: -3, y: 40, w: 1920, h: 1080})") == {
        "x": -3, "y": 40, "w": 1920, "h": 1080}
    bad = [{"x": 1.5, "y": 0, "w": 1, "h": 1}, {"x": 0, "y": 0, "w": 0, "h": 1},
           {"x": 0, "y": 0, "w": 1, "h": 70000}, {"x": "1", "y": 0, "w": 1, "h": 1}, {}]
    assert js(f"{json.dumps(bad)}.map((m) => cursor.parsePointer(m))") == [None] * len(bad)


def test_a_cursor_is_scaled_with_the_picture_and_drawn_at_the_device_pixel_ratio() -> None:
    # A 24 px cursor in a picture shown at half size on a HiDPI screen: 12 CSS px, 24 device px.
    assert js("cursor.cursorGeometry({w: 24, h: 24, xhot: 11, yhot: 5}, 0.5, 2)") == {
        "cssWidth": 12, "cssHeight": 12, "hotX": 6, "hotY": 3, "pixelWidth": 24, "pixelHeight": 24}


def test_a_cursor_is_never_shown_larger_than_browsers_accept() -> None:
    assert js("cursor.cursorGeometry({w: 128, h: 64, xhot: 127, yhot: 63}, 3, 1)") == {
        "cssWidth": 128, "cssHeight": 64, "hotX": 127, "hotY": 63, "pixelWidth": 128, "pixelHeight": 64}


def test_the_css_cursor_names_its_hotspot_and_resolution() -> None:
    assert js("cursor.cursorCss('data:image/png;base64,AA==', 3, 4, 1)") == (
        'url("data:image/png;base64,AA==") 3 4, auto')
    assert js("cursor.cursorCss('data:image/png;base64,AA==', 3, 4, 2)") == (
        'image-set(url("data:image/png;base64,AA==") 2x) 3 4, auto')
