"""No secret in the browser's profile after using the viewer.

A browser keeps every address it loads, fragment included, in its profile: History (the ``urls``
table), the session-restore files under ``Sessions/`` and the ukm database; history.replaceState
does not take it back out. The viewer's token and passphrase therefore never travel in the link
the user is given: the link carries the LiveKit URL (and the runner's identity), the user pastes
the token and the passphrase. These tests use the viewer as a user would, in Chromium with a
persistent profile, close the browser, then read the profile.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from realenv import (
    CHROMIUM_ARGS,
    CHROMIUM_PATH,
    SdkScreenPublisher,
    color_close,
    mint_token,
    sample_pixels,
    viewer_address,
    viewer_link,
    viewer_state,
)

pytestmark = pytest.mark.integration

PASSPHRASE = "history test passphrase 7f3a"  # spaces: also looked for URL-encoded
RUNNER_IDENTITY = "desktop-runner"
COLOUR = (40, 160, 220)
PICTURE_TIMEOUT_S = 20


def encodings(secret: str) -> list[bytes]:
    """The forms a secret can take in a profile file: raw, URL-encoded (both styles), UTF-16."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret)}
    return [f.encode() for f in forms] + [secret.encode("utf-16-le")]


def history_urls(profile: Path) -> list[str]:
    """Every URL in the profile's History database (``urls`` table)."""
    copy = profile / "History.copy"  # read a copy: sqlite may want to write a journal
    copy.write_bytes((profile / "Default" / "History").read_bytes())
    with sqlite3.connect(copy) as db:
        urls = [row[0] for row in db.execute("SELECT url FROM urls")]
    copy.unlink()
    return urls


def profile_files_holding(profile: Path, secret: str) -> list[str]:
    """Files anywhere in the profile (History with its journal, Sessions/, ukm, caches, ...) whose
    bytes hold ``secret`` in any form."""
    hits = []
    for file in sorted(p for p in profile.rglob("*") if p.is_file()):
        data = file.read_bytes()
        if any(form in data for form in encodings(secret)):
            hits.append(str(file.relative_to(profile)))
    return hits


async def use_viewer(profile: Path, address: str, *, paste: tuple[str, str] | None) -> str:
    """Chromium with a persistent profile: open ``address``, paste token and passphrase when
    given (else the address connects by itself), see the picture, close the browser. Returns the
    page's link warning ('' when none is shown)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM_PATH, headless=True, args=CHROMIUM_ARGS)
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            await page.goto(address)
            await page.wait_for_function("() => window.viewer !== undefined", timeout=10_000)
            warning = await page.inner_text("#link-warning") \
                if await page.is_visible("#link-warning") else ""
            if paste is not None:
                token, passphrase = paste
                await page.fill("#token", token)
                await page.fill("#passphrase", passphrase)
                await page.click("#connect")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + PICTURE_TIMEOUT_S
            while True:
                pixels = await sample_pixels(page, [(0.5, 0.5)])
                if pixels and color_close(pixels[0], COLOUR):
                    break
                assert loop.time() < deadline, f"no picture; state {await viewer_state(page)}"
                await asyncio.sleep(0.1)
            # Let the browser record the visit as it does for a user who looks for a while.
            await asyncio.sleep(1)
        finally:
            await context.close()
    return warning


async def test_the_viewer_as_the_demo_tells_leaves_no_secret_in_the_browser_profile(
        livekit_server, room_name, viewer_server, tmp_path):
    key, secret = livekit_server.api_key, livekit_server.api_secret
    token = mint_token(key, secret, room_name, "viewer")
    profile = tmp_path / "profile"
    async with SdkScreenPublisher(livekit_server.url,
                                  mint_token(key, secret, room_name, RUNNER_IDENTITY, publish=True),
                                  PASSPHRASE, COLOUR):
        warning = await use_viewer(profile, viewer_address(viewer_server.url, livekit_server.url),
                                   paste=(token, PASSPHRASE))
    assert warning == ""

    urls = history_urls(profile)
    assert any(url.startswith(viewer_server.url) for url in urls), urls  # the visit was recorded
    assert not [url for url in urls if token in url or "passphrase" in url], urls
    assert (profile / "Default" / "Sessions").is_dir()
    assert profile_files_holding(profile, token) == []
    assert profile_files_holding(profile, PASSPHRASE) == []


async def test_a_link_with_the_secrets_leaves_them_in_the_profile_which_is_why_it_is_opt_in(
        livekit_server, room_name, viewer_server, tmp_path):
    """The opt-in link form (secrets in the fragment; tests and tools) is kept out of what users
    are given because of exactly this: the history keeps it, replaceState notwithstanding. Also
    shows that the check above finds a secret where there is one."""
    key, secret = livekit_server.api_key, livekit_server.api_secret
    token = mint_token(key, secret, room_name, "viewer")
    profile = tmp_path / "profile"
    async with SdkScreenPublisher(livekit_server.url,
                                  mint_token(key, secret, room_name, RUNNER_IDENTITY, publish=True),
                                  PASSPHRASE, COLOUR):
        warning = await use_viewer(profile, viewer_link(viewer_server.url, livekit_server.url,
                                                        token, PASSPHRASE), paste=None)
    assert "carried the token and passphrase: your browser's history keeps them" in warning

    assert any(token in url for url in history_urls(profile))
    leaked = profile_files_holding(profile, PASSPHRASE)
    assert "Default/History" in leaked, leaked
