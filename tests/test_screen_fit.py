"""Fit to window: the size and DPI a request becomes (runner.media.screen_size, pure), who may ask
for it (dr.screen.fit in runner.control.rpc, with a stand-in pipeline), and RandR on a real Xvfb
(runner.media.randr: within its largest screen, and no hang when the X server refuses)."""

from __future__ import annotations

import json

import pytest

from controlfakes import FakeMedia, RecordingInjector, screen
from runner.config import load_settings
from runner.control import messages as msg
from runner.control.policy import Refused
from runner.control.server import ControlServer
from runner.media.randr import ResizeError
from runner.media.screen_size import FitRequest, ScreenSize, dpi_for, fit_size


@pytest.mark.parametrize(("request_", "largest", "applied"), [
    (FitRequest(1280, 720), (4096, 2304), (1280, 720)),
    (FitRequest(981, 749), (4096, 2304), (980, 748)),  # odd sides round down to even
    (FitRequest(100, 50), (4096, 2304), (320, 240)),  # raised to the smallest, side by side
    (FitRequest(200, 900), (4096, 2304), (320, 900)),
    (FitRequest(5000, 2000), (4096, 2304), (4096, 1638)),  # scaled down whole: the aspect stays
    (FitRequest(3000, 3000), (1920, 1080), (1080, 1080)),  # the server's largest screen bounds it
    (FitRequest(8000, 8000), (8192, 8192), (4096, 4096)),  # and MAX_SIDE, whatever the server takes
    (FitRequest(1921, 1081), (1921, 1081), (1920, 1080)),  # an odd largest screen: even below it
])
def test_requests_become_even_sizes_within_the_bounds(request_: FitRequest, largest: tuple[int, int],
                                                      applied: tuple[int, int]) -> None:
    size = fit_size(request_, max_width=largest[0], max_height=largest[1])
    assert (size.width, size.height) == applied


@pytest.mark.parametrize(("scale", "dpi"), [(1.0, 96), (1.25, 120), (2.0, 192), (0.1, 48), (9.0, 384),
                                             (float("nan"), 96)])
def test_dpi_is_96_per_device_pixel_ratio_bounded(scale: float, dpi: int) -> None:
    assert dpi_for(scale) == dpi


def test_millimetres_give_the_dpi() -> None:
    assert ScreenSize(1920, 1080, 96).millimetres == (508, 286)
    assert ScreenSize(2560, 1600, 192).millimetres == (339, 212)


# --- dr.screen.fit --------------------------------------------------------------------------------


def control(*, resizable: bool) -> tuple[ControlServer, FakeMedia]:
    settings = load_settings(None, {
        "livekit": {"url": "ws://127.0.0.1:1", "api_key": "k", "api_secret": "s" * 32},
        "e2ee": {"passphrase": "a passphrase of some length"},
        "capture": {"resizable": resizable},
    })
    media = FakeMedia(screen((0, 0, 1280, 720), (0, 0, 1280, 720, "screen", True)))
    return ControlServer(settings, media, RecordingInjector()), media  # type: ignore[arg-type]


def body(params: dict[str, object]) -> bytes:
    return json.dumps(params).encode()


async def test_the_controller_fits_a_resizable_screen_and_monitors_follow() -> None:
    server, media = control(resizable=True)
    await server.monitors.refresh(initial=True)
    session = server.sessions.new("viewer")
    server._set_controller(session, "requested")
    result = await server.methods.call(session, "dr.screen.fit", body({"width": 1001, "height": 700, "scale": 1.5}))
    assert result == {"width": 1000, "height": 700, "dpi": 144}
    assert media.fits == [FitRequest(1001, 700, 1.5)]
    assert [(m.region.width, m.region.height) for m in server.monitors.layout.monitors] == [(1000, 700)]


async def test_a_screen_the_runner_does_not_own_is_never_resized() -> None:
    server, media = control(resizable=False)
    session = server.sessions.new("viewer")
    server._set_controller(session, "requested")
    with pytest.raises(Refused) as refused:
        await server.methods.call(session, "dr.screen.fit", body({"width": 1000, "height": 700}))
    assert refused.value.code == "forbidden"
    assert media.fits == []


async def test_only_the_controller_may_fit() -> None:
    server, media = control(resizable=True)
    session = server.sessions.new("watcher")
    with pytest.raises(Refused) as refused:
        await server.methods.call(session, "dr.screen.fit", body({"width": 1000, "height": 700}))
    assert refused.value.code == "no_control"
    assert media.fits == []


@pytest.mark.parametrize("params", [
    {"width": 1000},
    {"width": 0, "height": 700},
    {"width": 1000, "height": 16385},
    {"width": 1000.5, "height": 700},
    {"width": "1000", "height": 700},
    {"width": True, "height": 700},
    {"width": 1000, "height": 700, "scale": 0},
    {"width": 1000, "height": 700, "scale": "2"},
])
async def test_bad_parameters_are_schema_errors(params: dict[str, object]) -> None:
    server, media = control(resizable=True)
    session = server.sessions.new("viewer")
    server._set_controller(session, "requested")
    with pytest.raises(msg.SchemaError):
        await server.methods.call(session, "dr.screen.fit", body(params))
    assert media.fits == []


async def test_a_server_that_cannot_resize_answers_unavailable() -> None:
    server, media = control(resizable=True)
    media.fit_error = ResizeError("the screen has 2 active outputs; fitting needs exactly one")
    session = server.sessions.new("viewer")
    server._set_controller(session, "requested")
    with pytest.raises(Refused) as refused:
        await server.methods.call(session, "dr.screen.fit", body({"width": 1000, "height": 700}))
    assert (refused.value.code, str(refused.value)) == (
        "unavailable", "the screen has 2 active outputs; fitting needs exactly one")


# --- RandR on a real Xvfb -------------------------------------------------------------------------


def x_size(display: str) -> tuple[int, int]:
    from Xlib import display as xdisplay

    d = xdisplay.Display(display)  # a new connection: an open one keeps the size it connected with
    try:
        return d.screen().width_in_pixels, d.screen().height_in_pixels
    finally:
        d.close()


@pytest.mark.integration
async def test_randr_resizes_xvfb_within_its_largest_screen_and_refuses_beyond(xvfb_factory) -> None:
    from runner.media.randr import RandrScreen

    screen = RandrScreen(xvfb_factory(1600, 1000).display)
    try:
        assert screen.max_size() == (1600, 1000)
        assert screen.apply(ScreenSize(1024, 640, 120)) == ScreenSize(1024, 640, 120)
        assert x_size(screen.display) == (1024, 640)
        with pytest.raises(ResizeError, match="beyond the largest screen"):
            screen.apply(ScreenSize(1602, 1000, 96))
        assert x_size(screen.display) == (1024, 640)
    finally:
        screen.close()


@pytest.mark.integration
async def test_an_x_error_during_a_resize_is_refused_without_hanging(xvfb_factory,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """python-xlib 0.33 cannot parse RandR's errors and then reads no further reply on that
    connection: the runner drops it, so the next fit works and the capture thread never hangs."""
    import asyncio
    from types import SimpleNamespace

    from runner.media import randr

    screen = randr.RandrScreen(xvfb_factory(800, 600).display)
    try:
        real_range = randr.randr.get_screen_size_range
        # Pretend the server takes more than it does: the X server then refuses the new size.
        monkeypatch.setattr(randr.randr, "get_screen_size_range",
                            lambda root: SimpleNamespace(max_width=4000, max_height=4000))
        with pytest.raises(ResizeError, match="refused the new size"):
            await asyncio.wait_for(asyncio.to_thread(screen.apply, ScreenSize(2000, 1500, 96)), 20)
        monkeypatch.setattr(randr.randr, "get_screen_size_range", real_range)
        applied = await asyncio.wait_for(asyncio.to_thread(screen.apply, ScreenSize(640, 480, 96)), 20)
        assert applied == ScreenSize(640, 480, 96) and x_size(screen.display) == (640, 480)
    finally:
        screen.close()
