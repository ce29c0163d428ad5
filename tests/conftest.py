"""Fixtures for real components: livekit-server, Xvfb, the viewer page server, headless Chromium.

A test that needs a component that is missing FAILS with a message naming it; it never skips, so
CI cannot pass without exercising it.
"""

from __future__ import annotations

import importlib
import os
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

from realenv import (
    CHROMIUM_ARGS,
    CHROMIUM_PATH,
    TMPDIR_ENV,
    ComponentError,
    LiveKitServer,
    ViewerServer,
    Xvfb,
    viewer_address,
)

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

VIEWER_VIEWPORT = {"width": 1280, "height": 800}
T = TypeVar("T")


@pytest.fixture(scope="session", autouse=True)
def devstack_tmpdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real components' logs and files go under this run's pytest base directory (pytest keeps
    the last three runs), not one directory each in /tmp for ever; a failure still names its log.
    Subprocesses (a runner started by a test with devstack helpers) inherit it."""
    path = tmp_path_factory.getbasetemp() / "devstack"
    os.environ[TMPDIR_ENV] = str(path)
    return path


def _required(component: str, start: Callable[[], T]) -> T:
    """``start()``, or a test failure with a one-line reason when the component is missing."""
    try:
        return start()
    except (ComponentError, FileNotFoundError, ImportError) as exc:
        problem = str(exc)
    # Outside the except block, so the report shows the reason without a chained traceback.
    pytest.fail(f"{component} is required for this test and is unavailable: {problem}",
                pytrace=False)


@pytest.fixture(scope="session")
def livekit_server() -> Iterator[LiveKitServer]:
    """One livekit-server for the session (tests use their own rooms: see ``room_name``)."""
    with _required("livekit-server", LiveKitServer) as server:
        yield server


@pytest.fixture
def room_name(request: pytest.FixtureRequest) -> str:
    """A room name no other test uses."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:40]
    return f"{base}-{secrets.token_hex(3)}"


@pytest.fixture
def xvfb_factory() -> Iterator[Callable[..., Xvfb]]:
    """``make(width=1280, height=720) -> Xvfb``; every screen made is stopped after the test."""
    screens: list[Xvfb] = []

    def make(width: int = 1280, height: int = 720) -> Xvfb:
        screen = _required("Xvfb", lambda: Xvfb(width, height))
        screens.append(screen)
        return screen

    yield make
    for screen in screens:
        screen.stop()


@pytest.fixture
def xvfb(xvfb_factory: Callable[..., Xvfb]) -> Xvfb:
    """A fresh 1280x720 virtual screen for this test."""
    return xvfb_factory()


@pytest.fixture(scope="session")
def viewer_server() -> Iterator[ViewerServer]:
    """scripts/serve_viewer.py on a free port; ``.url`` is the viewer page."""
    with _required("the viewer page server (scripts/serve_viewer.py, node_modules)",
                   ViewerServer) as server:
        yield server


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Debian Chromium driven by Playwright (async API); never a downloaded browser."""
    async_api = _required("Playwright (python package playwright)",
                          lambda: importlib.import_module("playwright.async_api"))
    if not Path(CHROMIUM_PATH).exists():
        pytest.fail(f"Chromium is required at {CHROMIUM_PATH} (set CHROMIUM_BIN); install the "
                    "Debian package chromium (scripts/setup.sh does)", pytrace=False)
    async with async_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM_PATH, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh page; its console output and page errors are printed when the test ends
    (pytest shows them for failing tests)."""
    context = await browser.new_context(viewport=VIEWER_VIEWPORT)
    page = await context.new_page()
    lines: list[str] = []
    page.on("console", lambda msg: lines.append(f"console.{msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: lines.append(f"pageerror: {err}"))
    try:
        yield page
    finally:
        print("\n".join(["--- browser console ---", *lines]))
        await context.close()


@pytest.fixture
def open_viewer(viewer_server: ViewerServer) -> Callable[..., Awaitable[None]]:
    """``await open_viewer(page, livekit_url, token, passphrase, runner=None, fit=True)``: use the
    viewer as a user does: open the link without secrets (``viewer_address``), paste the token and
    the passphrase, press Connect. ``runner``: the identity whose screen the viewer may show (the
    viewer's default: desktop-runner); ``fit=False`` unticks "Fit the host's screen to this
    window" first (for tests of a fixed screen size on a runner with ``capture.resizable``)."""

    async def open_(page: Page, livekit_url: str, token: str, passphrase: str,
                    runner: str | None = None, fit: bool = True) -> None:
        await page.goto(viewer_address(viewer_server.url, livekit_url, runner))
        await page.wait_for_function("() => window.viewer !== undefined", timeout=10_000)
        await page.fill("#token", token)
        await page.fill("#passphrase", passphrase)
        if not fit:
            await page.uncheck("#fit")
        await page.click("#connect")

    return open_


# --- leaving the test process -------------------------------------------------------------------

_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave without interpreter finalization once the LiveKit SDK's native library was used.

    Its tokio threads can call back into Python while the interpreter tears down; the Rust side
    then panics in a function that cannot unwind and the process aborts after every test passed
    (seen in CI: "panic in a function that cannot unwind", make: Aborted). The runner's CLI does
    the same for the same reason (runner/cli.py). Everything is reported by now.
    """
    import os
    import sys

    ffi = sys.modules.get("livekit.rtc._ffi_client")
    if ffi is None or ffi.FfiClient._instance is None or not _exit_status:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(_exit_status[-1])
