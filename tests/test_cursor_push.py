"""The pointer pushes (docs/protocol.md, "The pointer"): image encoding and its bounds, the
position's rate bound, what each session is sent. Pure: literal shapes, a clock passed in."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import zlib
from collections.abc import Mapping

import numpy as np

from runner.control.cursor import (
    MAX_PNG_BYTES,
    MAX_PUSH_BYTES,
    MAX_SIDE,
    CursorRelay,
    PointerGate,
    cursor_body,
    png_rgba,
)
from runner.control.envelope import DATA_CONTEXT, KIND_PUSH
from runner.control.sessions import Session, Sessions
from runner.media.controls import CursorShape, Region


def png_pixels(png: bytes) -> tuple[int, int, bytes]:
    """(width, height, RGBA bytes) of a PNG written by png_rgba (filter 0 on every row)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = {}, 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at:at + 4])
        kind, data = png[at + 4:at + 8], png[at + 8:at + 8 + length]
        assert struct.unpack(">I", png[at + 8 + length:at + 12 + length])[0] == zlib.crc32(kind + data)
        chunks[kind] = data
        at += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 6)
    raw = zlib.decompress(chunks[b"IDAT"])
    rows = [raw[y * (width * 4 + 1):(y + 1) * (width * 4 + 1)] for y in range(height)]
    assert all(row[0] == 0 for row in rows)
    return width, height, b"".join(row[1:] for row in rows)


def shape(serial: int, width: int, height: int, bgra: bytes, xhot: int = 0, yhot: int = 0) -> CursorShape:
    return CursorShape(serial, width, height, xhot, yhot, bgra)


def test_a_png_holds_the_pixels_as_given() -> None:
    png = png_rgba(2, 1, bytes([255, 0, 0, 255, 0, 0, 255, 128]))
    assert png_pixels(png) == (2, 1, bytes([255, 0, 0, 255, 0, 0, 255, 128]))


def test_cursor_pixels_go_out_as_rgba_with_straight_alpha() -> None:
    # XFixes: B G R A, premultiplied. Opaque white, half-transparent blue (premultiplied 64 of 128).
    body = cursor_body(shape(7, 2, 1, bytes([255, 255, 255, 255, 64, 0, 0, 128]), xhot=1, yhot=0))
    assert {k: v for k, v in body.items() if k != "png"} == {
        "t": "cursor", "serial": 7, "w": 2, "h": 1, "xhot": 1, "yhot": 0}
    assert png_pixels(base64.b64decode(str(body["png"]))) == (2, 1, bytes([255, 255, 255, 255, 0, 0, 128, 128]))


def test_a_transparent_cursor_is_pushed_as_hidden() -> None:
    assert cursor_body(shape(3, 2, 2, bytes(16))) == {"t": "cursor", "serial": 3, "hidden": True}


def test_a_cursor_the_server_would_not_give_is_unknown() -> None:
    assert cursor_body(shape(4, 0, 0, b"")) == {"t": "cursor", "serial": 4, "unknown": True}
    assert cursor_body(shape(5, 4, 4, bytes(7))) == {"t": "cursor", "serial": 5, "unknown": True}


def test_a_huge_cursor_is_scaled_to_the_bound_with_its_hotspot() -> None:
    pixels = np.full((300, 600, 4), 255, np.uint8)
    body = cursor_body(shape(9, 600, 300, pixels.tobytes(), xhot=599, yhot=150))
    assert (body["w"], body["h"], body["xhot"], body["yhot"]) == (MAX_SIDE, 64, 127, 32)
    assert png_pixels(base64.b64decode(str(body["png"])))[:2] == (MAX_SIDE, 64)


def test_a_hotspot_outside_the_image_is_clamped_into_it() -> None:
    body = cursor_body(shape(2, 4, 4, bytes([255] * 64), xhot=4000, yhot=9))
    assert (body["xhot"], body["yhot"]) == (3, 3)


def test_noise_too_big_for_a_packet_is_shown_with_fewer_pixels_at_the_same_size() -> None:
    noise = np.random.default_rng(1).integers(0, 256, (128, 128, 4), np.uint8)
    noise[:, :, 3] = 255
    body = cursor_body(shape(11, 128, 128, noise.tobytes(), xhot=5, yhot=6))
    png = base64.b64decode(str(body["png"]))
    width, height, _ = png_pixels(png)
    assert len(png) <= MAX_PNG_BYTES and (width, height) == (32, 32)  # 64 kB at 128, 16 kB at 64
    assert (body["w"], body["h"], body["xhot"], body["yhot"]) == (128, 128, 5, 6)


def test_the_largest_sealed_cursor_push_fits_one_data_packet() -> None:
    noise = np.random.default_rng(2).integers(0, 256, (512, 512, 4), np.uint8)  # what X might send
    noise[:, :, 3] = 255
    body = cursor_body(shape(2**32 - 1, 512, 512, noise.tobytes(), xhot=511, yhot=511))
    sessions = Sessions("desktop-runner")
    sessions.set_key(bytes(32), 0)
    sealed = sessions.seal(sessions.new("viewer-with-a-long-identity-" + "x" * 200), KIND_PUSH, DATA_CONTEXT, body)
    assert len(sealed) <= MAX_PUSH_BYTES


def test_positions_go_at_most_once_an_interval_only_changed_and_the_last_one_always() -> None:
    gate = PointerGate(0.1)
    assert gate.offer((1, 1), now=0.0) == (1, 1)
    assert gate.offer((1, 1), now=0.5) is None  # unchanged
    assert gate.offer((2, 2), now=0.55) == (2, 2)
    assert gate.offer((3, 3), now=0.60) is None  # too soon: held
    assert gate.offer((4, 4), now=0.62) is None  # the newer one replaces it
    assert round(gate.wait(now=0.62) or 0.0, 9) == 0.03
    assert gate.due(now=0.64) is None
    assert gate.due(now=0.65) == (4, 4)
    assert gate.wait(now=0.65) is None


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[int, dict[str, object], bool]] = []

    def __call__(self, session: Session, body: Mapping[str, object], reliable: bool) -> None:
        self.sent.append((session.id, dict(body), reliable))


def relay_with(sessions: list[Session], clock: list[float], rate: float = 30.0) -> tuple[CursorRelay, Recorder]:
    pushes = Recorder()
    relay = CursorRelay(pushes, lambda: sessions, lambda: Region(100, 50, 800, 600), rate, clock=lambda: clock[0])
    return relay, pushes


ARROW = shape(21, 2, 2, bytes([0, 0, 0, 255] * 4), xhot=0, yhot=0)
BEAM = shape(22, 2, 2, bytes([255] * 16), xhot=1, yhot=1)


def test_images_go_reliably_once_per_session_then_by_serial() -> None:
    a, b = Session(1, "a", 0), Session(2, "b", 0)
    live = [a]
    relay, pushes = relay_with(live, [0.0])
    relay.cursor_shape(ARROW)
    relay.cursor_shape(BEAM)
    relay.cursor_shape(ARROW)  # back to one a has: the serial alone
    live.append(b)
    relay.welcome(b)  # b has none: the full image
    assert [(sid, body.get("serial"), "png" in body, reliable) for sid, body, reliable in pushes.sent] == [
        (1, 21, True, True), (1, 22, True, True), (1, 21, False, True), (2, 21, True, True)]


async def test_a_pointer_moving_fast_is_pushed_at_the_rate_lossy_and_ends_where_it_stopped() -> None:
    clock = [0.0]
    relay, pushes = relay_with([Session(1, "a", 0)], clock, rate=20.0)
    for i in range(100):  # 1000 moves a second for 0.1 s
        clock[0] = i / 1000
        relay.pointer_moved(200 + i, 100)
    clock[0] = 0.2
    await asyncio.sleep(0.08)  # the held last position goes when its interval is over
    positions = [(body["x"], body["y"]) for _, body, reliable in pushes.sent if not reliable]
    assert positions[0] == (100, 50) and positions[-1] == (199, 50)  # relative to the region
    assert len(positions) <= 3  # 0.1 s at 20 a second, plus the last one
    assert all(body == {**body, "w": 800, "h": 600} for _, body, _ in pushes.sent)
    assert json.dumps(pushes.sent[0][1]) == '{"t": "pointer", "x": 100, "y": 50, "w": 800, "h": 600}'


def test_what_ended_sessions_held_is_forgotten() -> None:
    live: list[Session] = []
    relay, pushes = relay_with(live, [0.0])
    relay.cursor_shape(ARROW)
    for sid in range(1, 1001):  # replayed hellos: sessions that are welcomed, then pushed out
        session = Session(sid, "v", 0)
        live[:] = [session]
        relay.welcome(session)
    assert len(relay._known) <= 257
    assert pushes.sent[-1][1]["png"]  # the last one had no image yet: it got it whole
