"""Pure control logic: monitor mapping, wheel accumulation, held-input expiry, message schemas."""

from __future__ import annotations

import json

import pytest

from controlfakes import screen
from runner.control import messages as msg
from runner.control.held import Held, HeldInputs, HeldKind
from runner.control.pointer import Layout, UnknownMonitor, WheelAccumulator, layout_from_screen, saturate_int16

# Two monitors side by side, the second one smaller and lower (an "odd" layout), as X lists them.
TWO = screen((0, 0, 2304, 1080), (0, 0, 1280, 720, "DUMMY0", True), (1280, 300, 1024, 768, "DUMMY1", False))


@pytest.fixture
def two() -> Layout:
    return layout_from_screen(TWO)


def test_layout_lists_each_output_and_the_union(two: Layout) -> None:
    assert [(m.id, m.x, m.y, m.width, m.height, m.primary) for m in two.monitors] == [
        ("DUMMY0", 0, 0, 1280, 720, True),
        ("DUMMY1", 1280, 300, 1024, 768, False),
        ("all", 0, 0, 2304, 1080, False),
    ]


def test_single_monitor_layout_has_no_union_and_is_primary() -> None:
    layout = layout_from_screen(screen((0, 0, 800, 600), (0, 0, 800, 600, "screen", False)))
    assert [(m.id, m.primary) for m in layout.monitors] == [("screen", True)]


@pytest.mark.parametrize("mon, x, y, expected", [
    ("DUMMY0", 0.0, 0.0, (0, 0)),
    ("DUMMY0", 1.0, 1.0, (1279, 719)),
    ("DUMMY0", 0.5, 0.5, (640, 360)),
    ("DUMMY1", 0.0, 0.0, (1280, 300)),
    ("DUMMY1", 1.0, 1.0, (2303, 1067)),
    ("DUMMY1", 0.25, 0.5, (1280 + 256, 300 + 384)),
    ("all", 1.0, 1.0, (2303, 1079)),
])
def test_normalized_positions_land_on_the_named_monitor(two: Layout, mon: str, x: float, y: float,
                                                       expected: tuple[int, int]) -> None:
    assert two.to_pixels(mon, x, y) == expected


def test_unknown_monitor_is_refused_not_guessed(two: Layout) -> None:
    with pytest.raises(UnknownMonitor):
        two.to_pixels("DUMMY7", 0.5, 0.5)


def test_bounds_cover_all_monitors(two: Layout) -> None:
    assert two.bounds() == (0, 0, 2303, 1079)


def test_wheel_accumulates_fractions_and_carries_the_rest() -> None:
    w = WheelAccumulator()
    assert w.add(0, 0.4) == (0, 0)
    assert w.add(0, 0.4) == (0, 0)
    assert w.add(0, 0.4) == (0, 1)  # 1.2: one step, 0.2 left
    assert w.add(0, -0.7) == (0, 0)  # -0.5
    assert w.add(-2.5, -0.6) == (-2, -1)


def test_wheel_clamps_each_message_and_ignores_non_finite() -> None:
    w = WheelAccumulator()
    assert w.add(1e9, -1e9) == (16, -16)
    assert w.add(float("nan"), float("inf")) == (0, 0)


def test_relative_moves_saturate_to_int16() -> None:
    assert saturate_int16(40000) == 32767 and saturate_int16(-40000) == -32768 and saturate_int16(5) == 5


def test_held_input_expires_after_the_timeout_unless_refreshed() -> None:
    held = HeldInputs(timeout_s=2.0, key_hold_s=2.0)
    held.press(Held(HeldKind.KEY, "KeyA"), now=0.0)
    held.press(Held(HeldKind.BUTTON, "left"), now=0.5)
    assert held.expired(now=1.9) == []
    assert held.heartbeat(["KeyA"], ["left"], now=1.9) == []
    assert held.expired(now=3.0) == []  # both refreshed at 1.9: deadline 3.9
    assert held.expired(now=3.9) == [Held(HeldKind.BUTTON, "left"), Held(HeldKind.KEY, "KeyA")]
    assert len(held) == 0


def test_keys_are_held_at_most_key_hold_s_without_a_refresh_buttons_the_heartbeat_timeout() -> None:
    held = HeldInputs(timeout_s=30.0)  # the largest control.heartbeat_timeout_s
    held.press(Held(HeldKind.KEY, "KeyQ"), now=0.0)
    held.press(Held(HeldKind.BUTTON, "left"), now=0.0)
    assert held.expired(now=0.49) == []
    assert held.expired(now=0.5) == [Held(HeldKind.KEY, "KeyQ")]
    assert held.heartbeat([], ["left"], now=0.6) == []
    assert held.expired(now=30.6) == [Held(HeldKind.BUTTON, "left")]  # refreshed at 0.6


def test_heartbeat_releases_at_once_what_the_viewer_no_longer_holds() -> None:
    held = HeldInputs(timeout_s=2.0)
    held.press(Held(HeldKind.KEY, "ShiftLeft"), now=0.0)
    held.press(Held(HeldKind.KEY, "KeyA"), now=0.0)
    assert held.heartbeat(["ShiftLeft"], [], now=0.1) == [Held(HeldKind.KEY, "KeyA")]
    assert Held(HeldKind.KEY, "ShiftLeft") in held and Held(HeldKind.KEY, "KeyA") not in held


def test_heartbeat_does_not_invent_presses() -> None:
    held = HeldInputs(timeout_s=2.0)
    assert held.heartbeat(["KeyB"], ["right"], now=0.0) == []
    assert len(held) == 0


def _parse(obj: dict[str, object]) -> object:
    """Parse ``obj`` as the runner receives it from the reference viewer: numbered, padded."""
    return msg.parse_input(msg.encode_input(obj, 1))


@pytest.mark.parametrize("obj, cls", [
    ({"t": "move", "mon": "DUMMY1", "x": 0, "y": 1}, msg.Move),
    ({"t": "rel", "dx": -5, "dy": 32767}, msg.Rel),
    ({"t": "button", "button": "back", "down": True, "mon": "a", "x": 0.1, "y": 0.2}, msg.ButtonMsg),
    ({"t": "wheel", "dy": 0.25}, msg.Wheel),
    ({"t": "key", "code": "KeyQ", "key": "@", "down": True, "mods": ["AltGraph"], "extra": 1}, msg.Key),
    ({"t": "text", "text": "Grüße 世界"}, msg.Text),
    ({"t": "held", "keys": ["KeyA"], "buttons": ["left"]}, msg.HeldMsg),
    ({"t": "reset"}, msg.Reset),
])
def test_valid_messages_parse(obj: dict[str, object], cls: type) -> None:
    assert isinstance(_parse(obj), cls)


@pytest.mark.parametrize("obj, where", [
    ({"t": "move", "mon": "a", "x": 1.01, "y": 0}, "move.x"),
    ({"t": "move", "mon": "", "x": 0, "y": 0}, "move.mon"),
    ({"t": "rel", "dx": 40000, "dy": 0}, "rel.dx"),
    ({"t": "rel", "dx": 1.5, "dy": 0}, "rel.dx"),
    ({"t": "button", "button": "left", "down": "yes"}, "button.down"),
    ({"t": "button", "button": "button12", "down": True}, "button.button"),
    ({"t": "key", "code": "KeyA", "key": "a", "down": True, "mods": ["Hyper"]}, "key.mods.0"),
    ({"t": "key", "code": "K" * 33, "key": "a", "down": True}, "key.code"),
    ({"t": "text", "text": "x" * 1025}, "text.text"),
    ({"t": "held", "keys": ["KeyA"] * 33}, "held.keys"),
    ({"t": "launch_missiles"}, "message"),
    ({"x": 1}, "message"),
])
def test_invalid_messages_name_the_field(obj: dict[str, object], where: str) -> None:
    with pytest.raises(msg.SchemaError, match=f"^{where}:"):
        _parse(obj)


@pytest.mark.parametrize("kind", sorted(msg.RELIABLE_KINDS))
def test_reliable_messages_without_their_ordinal_are_refused(kind: str) -> None:
    with pytest.raises(msg.SchemaError, match=f"^{kind}.o: Field required"):
        msg.parse_input(json.dumps({"t": kind}).encode())


@pytest.mark.parametrize("message, size", [
    ({"t": "key", "code": "KeyA", "key": "a", "down": True, "mods": []}, 256),
    ({"t": "key", "code": "Enter", "key": "Enter", "down": True, "mods": []}, 256),
    ({"t": "key", "code": "K" * 32, "key": "k" * 32, "down": False, "mods": ["Shift", "Control", "Alt", "Meta",
                                                                        "AltGraph", "CapsLock"]}, 256),
    ({"t": "move", "mon": "screen", "x": 0.123456789, "y": 1}, 256),
    ({"t": "held", "keys": ["K" * 32] * 8, "buttons": []}, 1024),
    ({"t": "text", "text": "世" * 1024}, 4048),
])
def test_input_bodies_are_padded_to_three_sizes(message: dict[str, object], size: int) -> None:
    body = msg.encode_input(message, 2**53 - 1)
    assert len(body) == size
    assert msg.parse_input(body) == msg.parse_input(body.rstrip())


@pytest.mark.parametrize("body", [b"\xff\xfe", b"not json", b"[1,2]", b"null", b"[" * 100000])
def test_non_objects_are_schema_errors(body: bytes) -> None:
    with pytest.raises(msg.SchemaError):
        msg.parse_input(body)


def test_schema_error_never_echoes_the_value() -> None:
    with pytest.raises(msg.SchemaError) as caught:
        _parse({"t": "key", "code": "KeyA", "key": "secret-password-123456789012345678", "down": True})
    assert "secret-password" not in str(caught.value)


def test_clipboard_limit_is_in_utf8_bytes() -> None:
    ok = "é" * (msg.MAX_CLIPBOARD_BYTES // 2)
    assert msg.parse_params(msg.ClipboardSetParams, json.dumps({"text": ok}).encode()).text == ok
    with pytest.raises(msg.SchemaError, match="longer than 65536 bytes"):
        msg.parse_params(msg.ClipboardSetParams, json.dumps({"text": ok + "é"}).encode())


# --- strict types (issue 17, item 10) ---------------------------------------------------------


@pytest.mark.parametrize("body", [
    {"t": "move", "mon": "screen", "x": True, "y": 0.5},
    {"t": "move", "mon": "screen", "x": 0.5, "y": False},
    {"t": "button", "button": "left", "down": True, "mon": "screen", "x": True, "y": 0.0},
    {"t": "wheel", "dx": 0, "dy": True},
    {"t": "rel", "dx": True, "dy": 0},
])
def test_json_booleans_are_never_numbers(body: dict[str, object]) -> None:
    with pytest.raises(msg.SchemaError):
        msg.parse_input(json.dumps(body).encode())


@pytest.mark.parametrize("body", [
    b'{"t":"rel","dx":' + b"9" * 5000 + b',"dy":0}',
    b'{"t":"move","mon":"screen","x":' + b"1" * 5000 + b',"y":0}',
])
def test_integers_of_thousands_of_digits_are_a_schema_error(body: bytes) -> None:
    with pytest.raises(msg.SchemaError, match="a number in the body has more than 20 digits"):
        msg.parse_input(body)


def test_huge_integer_params_are_a_schema_error() -> None:
    with pytest.raises(msg.SchemaError):
        msg.parse_params(msg.QualityParams, b'{"bitrate":' + b"7" * 5000 + b"}")
