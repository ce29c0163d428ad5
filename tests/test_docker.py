"""The Docker image, built from the repository's Dockerfile and run as README "Docker" says.

The image is built on the locally made base when the registry cannot be reached
(docker/build-base.sh). Containers run with ``--network host`` against the session's LiveKit
server on loopback; the reference viewer in headless Chromium watches and controls them.
Own-X mode: the container's Xvfb (with its own X cookie), painted and read back with python-xlib
from the image's own venv through ``docker exec``. Host-X mode: an Xvfb on the host with a cookie,
its socket directory and a cookie file mounted as the README shows.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockerenv import (
    IMAGE_UID,
    MAX_IMAGE_MB,
    Container,
    ca_bundle,
    docker,
    docker_image,  # noqa: F401 (fixture)
)
from realenv import (
    QUADRANTS,
    LiveKitServer,
    Quadrants,
    Xvfb,
    color_close,
    mint_token,
    paint,
    quadrant_colours,
    sample_pixels,
    video_point,
    viewer_state,
    wait_for_picture,
    wait_for_viewer,
)
from xstate import XState
from xstate import wait_until as x_wait_until

pytestmark = pytest.mark.integration

PASSPHRASE = "container passphrase, 2026"
SCREEN = (1280, 720)
COLOR_TOLERANCE = 12  # the runner tags its colour matrix (see test_browser_e2e)
POSITION_TOLERANCE_PX = 3
STOP_DEADLINE_S = 3.0
PYTHON = "/opt/desktop-runner/.venv/bin/python"

# Run inside the container with the image's python-xlib: paint rectangles given as JSON
# [[r, g, b, x0, y0, x1, y1], ...] (fractions of the screen) as the root window's background.
PAINT = r"""
import json, sys
from Xlib import display
d = display.Display(); s = d.screen(); root = s.root
w, h = s.width_in_pixels, s.height_in_pixels
pixmap = root.create_pixmap(w, h, s.root_depth)
for r, g, b, x0, y0, x1, y1 in json.loads(sys.argv[1]):
    gc = pixmap.create_gc(foreground=s.default_colormap.alloc_color(r * 257, g * 257, b * 257).pixel)
    pixmap.fill_rectangle(gc, int(x0 * w), int(y0 * h), int(x1 * w) - int(x0 * w), int(y1 * h) - int(y0 * h))
    gc.free()
root.change_attributes(background_pixmap=pixmap); root.clear_area(0, 0, 0, 0); pixmap.free(); d.sync()
"""
# Inside the container: wait (up to 10 s) until the X pointer is within 3 px of (x, y); print it.
POINTER = r"""
import sys, time
from Xlib import display
x, y = int(sys.argv[1]), int(sys.argv[2])
root = display.Display().screen().root
deadline = time.monotonic() + 10
while True:
    p = root.query_pointer()
    if (abs(p.root_x - x) <= 3 and abs(p.root_y - y) <= 3) or time.monotonic() > deadline:
        break
    time.sleep(0.02)
print(p.root_x, p.root_y)
"""


def quadrant_rects(q: Quadrants = QUADRANTS) -> str:
    return json.dumps([[*q.top_left, 0, 0, 0.5, 0.5], [*q.top_right, 0.5, 0, 1, 0.5],
                       [*q.bottom_left, 0, 0.5, 0.5, 1], [*q.bottom_right, 0.5, 0.5, 1, 1]])


def free_display_number() -> int:
    """A display number no X server on this machine uses: no lock file, no socket (path or abstract;
    a container on the host network shares the host's abstract sockets)."""
    abstract = Path("/proc/net/unix").read_text()
    for number in range(200, 400):
        if (not Path(f"/tmp/.X{number}-lock").exists() and not Path(f"/tmp/.X11-unix/X{number}").exists()
                and f"@/tmp/.X11-unix/X{number}\n" not in abstract):
            return number
    raise AssertionError("no free X display number between 200 and 399")


def runner_env(livekit_server: LiveKitServer, room: str, secrets_dir: Path) -> list[str]:
    """``-e``/``-v`` arguments: LiveKit settings, secrets as files (README "Docker"), a metrics
    port of its own (the host network is shared)."""
    secrets_dir.mkdir(mode=0o755)
    (secrets_dir / "livekit-api-secret").write_text(livekit_server.api_secret)
    (secrets_dir / "e2ee-passphrase").write_text(PASSPHRASE)
    for f in secrets_dir.iterdir():
        f.chmod(0o644)
    from devstack import free_tcp_port

    return ["--network", "host",
            "-e", f"RUNNER_LIVEKIT__URL={livekit_server.url}",
            "-e", f"RUNNER_LIVEKIT__API_KEY={livekit_server.api_key}",
            "-e", f"RUNNER_LIVEKIT__ROOM={room}",
            "-v", f"{secrets_dir}:/run/secrets:ro",
            "-e", "RUNNER_LIVEKIT__API_SECRET_FILE=/run/secrets/livekit-api-secret",
            "-e", "RUNNER_E2EE__PASSPHRASE_FILE=/run/secrets/e2ee-passphrase",
            "-e", f"RUNNER_METRICS__ADDRESS=127.0.0.1:{free_tcp_port()}",
            "-e", "RUNNER_LOG__STATUS_INTERVAL_S=2"]


def own_x_args(display: int) -> list[str]:
    return ["--read-only", "--tmpfs", "/tmp", "-e", f"RUNNER_XVFB={SCREEN[0]}x{SCREEN[1]}",
            "-e", f"DISPLAY=:{display}", "--health-interval", "1s", "--health-start-period", "60s"]


@pytest.fixture
def container_log(request: pytest.FixtureRequest) -> Iterator[list[Container]]:
    """Containers registered here are removed after the test; their logs are printed."""
    made: list[Container] = []
    yield made
    for c in made:
        print(f"--- container {c.id[:12]} log ---")
        print(c.logs()[-6000:])
        c.remove()



async def watch_and_take_control(page, open_viewer, livekit_server: LiveKitServer, room: str,  # type: ignore[no-untyped-def]
                                 expected: list) -> dict:
    token = mint_token(livekit_server.api_key, livekit_server.api_secret, room, "viewer")
    # The screen keeps its size (the own-X screen is resizable; the test fits it at its end).
    await open_viewer(page, livekit_server.url, token, PASSPHRASE, fit=False)
    await wait_for_picture(page, expected, timeout=30, tolerance=COLOR_TOLERANCE)
    return await wait_for_viewer(
        page, lambda s: bool((s.get("control") or {}).get("you")) and s["videoWidth"] > 0 and s["framesDecoded"] > 0,
        timeout=20, what="control and decoding")


# --- the image ---------------------------------------------------------------------------------


def test_image_is_small_non_root_without_compiler_or_build_secrets(docker_image: str) -> None:  # noqa: F811
    info = json.loads(docker("image", "inspect", docker_image).stdout)[0]
    size_mb = info["Size"] / 1e6
    print(f"image size: {size_mb:.0f} MB")
    assert size_mb <= MAX_IMAGE_MB, f"image is {size_mb:.0f} MB"
    assert info["Config"]["User"] == "runner"
    assert not any(e.startswith(("PIP_CERT=", "SSL_CERT_FILE=", "REQUESTS_CA_BUNDLE=")) for e in info["Config"]["Env"])
    probe = docker("run", "--rm", "--entrypoint", "sh", docker_image, "-c",
                   "id -u; command -v gcc cc c++ make ld || true; ls -A /run/secrets 2>/dev/null || true")
    assert probe.stdout.split() == [str(IMAGE_UID)], f"a compiler or a build secret in the image: {probe.stdout}"
    # The build's CA bundle (a BuildKit secret) is in no file of the image: no certificate that
    # the host trusts and the image's own bundle lacks (this network's proxy CA) appears anywhere.
    bundle = ca_bundle()
    if bundle is not None:
        image_bundle = docker("run", "--rm", "--entrypoint", "cat", docker_image,
                              "/etc/ssl/certs/ca-certificates.crt").stdout
        host_only = [c for c in _pem_bodies(bundle.read_text()) if c not in image_bundle]
        if host_only:
            cid = docker("create", docker_image).stdout.strip()
            try:
                export = subprocess.run([docker_cli(), "export", cid], capture_output=True, timeout=300, check=True)
            finally:
                docker("rm", cid)
            blob = export.stdout
            assert len(blob) > 100e6, "the export holds the image's file system"
            leaked = [c[:40] for c in host_only if c.splitlines()[1].encode() in blob]
            assert not leaked, f"host-only CA certificates found in the image: {leaked}"


def docker_cli() -> str:
    from dockerenv import DOCKER

    return DOCKER


def _pem_bodies(text: str) -> list[str]:
    return re.findall(r"-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----", text, re.S)


# --- own X server --------------------------------------------------------------------------------


@pytest.fixture
def own_x(docker_image: str, livekit_server: LiveKitServer, room_name: str, tmp_path: Path,  # noqa: F811
          container_log: list[Container]) -> tuple[Container, int]:
    display = free_display_number()
    c = Container([*own_x_args(display), *runner_env(livekit_server, room_name, tmp_path / "secrets")],
                  docker_image)
    container_log.append(c)
    c.wait_for_event("track_published", timeout=60)
    return c, display


async def test_own_x_viewer_sees_and_controls_the_container_screen(
        own_x: tuple[Container, int], livekit_server: LiveKitServer, room_name: str, page, open_viewer) -> None:
    c, display = own_x
    c.exec(PYTHON, "-c", PAINT, quadrant_rects())
    state = await watch_and_take_control(page, open_viewer, livekit_server, room_name, quadrant_colours())
    assert state["e2eeEnabled"] is True and state["trackEncrypted"] is True
    assert (state["videoWidth"], state["videoHeight"]) == SCREEN
    assert state["encryptionErrors"] == 0, state["lastError"]
    # A click in the viewer moves the container's X pointer there (read back from its X server).
    for fx, fy in [(0.25, 0.5), (0.75, 0.25)]:
        x, y = await video_point(page, fx, fy)
        await page.mouse.click(x, y)
        want = (round(fx * (SCREEN[0] - 1)), round(fy * (SCREEN[1] - 1)))
        got = tuple(int(v) for v in (await asyncio.to_thread(
            c.exec, PYTHON, "-c", POINTER, str(want[0]), str(want[1]))).split())
        assert all(abs(g - w) <= POSITION_TOLERANCE_PX for g, w in zip(got, want, strict=True)), (got, want)
    # A change on the container's screen reaches the viewer.
    c.exec(PYTHON, "-c", PAINT, json.dumps([[30, 200, 30, 0, 0, 1, 1]]))
    away = [(0.25, 0.25), (0.25, 0.75), (0.75, 0.75), (0.05, 0.05), (0.95, 0.95)]
    await wait_for_picture(page, [(30, 200, 30)] * len(away), timeout=5, tolerance=COLOR_TOLERANCE,
                           points=away)
    # The pointer is the viewer's to draw (capture.cursor = "viewer", read with XFixes in the
    # container): its image reached the controller as a CSS cursor, and the picture around its hot
    # spot is the green background, no pointer in it.
    pointer = (await viewer_state(page))["pointer"]
    assert pointer["kind"] == "image" and pointer["local"] is True and "url(" in pointer["css"], pointer
    px, py = want  # where the last click put it
    around = [((px + dx + 0.5) / SCREEN[0], (py + dy + 0.5) / SCREEN[1]) for dx in range(-2, 3) for dy in range(-2, 3)]
    samples = await sample_pixels(page, around)
    assert samples is not None
    not_green = [p for p in samples if not color_close(p, (30, 200, 30), 60)]
    assert not not_green, f"a pointer drawn into the picture at {want}: {samples}"
    # The container's X server is the runner's own (the entrypoint sets capture.resizable): the
    # viewer's fit-to-window resizes it, read back from that X server.
    fitted = await page.evaluate("() => window.viewer.setFit(true)")
    size = c.exec(PYTHON, "-c", "from Xlib import display; s = display.Display().screen(); "
                  "print(s.width_in_pixels, s.height_in_pixels)")
    assert tuple(int(v) for v in size.split()) == (fitted["width"], fitted["height"]) != SCREEN, (size, fitted)
    # Health: healthy while frames are published (interval 1 s in this test).
    c.wait_for_health("healthy", timeout=30)
    # Non-root: the entrypoint, Xvfb and the runner all run as the image's uid.
    uids = c.process_uids()
    assert len(uids) >= 3, uids
    assert set(uids.values()) == {IMAGE_UID}, uids
    assert c.inspect()["HostConfig"]["ReadonlyRootfs"] is True
    # The fast path: mss's default backend and the pointer read with XFixes, no fallback.
    events = list(c.events())
    starting = next(e for e in events if e.get("event") == "starting")
    assert starting["capture_backend"] == "default", starting
    names = {e.get("event") for e in events}
    assert not names & {"capture_backend_fallback", "cursor_unavailable"}, names
    ready = next(e for e in events if e.get("event") == "xvfb_ready")
    assert ready["display"] == f":{display}" and ready["auth"] == "MIT-MAGIC-COOKIE-1"


def test_own_x_server_refuses_clients_without_its_cookie(own_x: tuple[Container, int], tmp_path: Path) -> None:
    """With --network host the container's X server is reachable from the whole host (abstract
    socket): only the cookie the entrypoint generated opens it."""
    c, display = own_x
    probe = ("from Xlib import display, error\n"
             f"try:\n    d = display.Display(':{display}'); print('open', d.screen().width_in_pixels)\n"
             "except error.DisplayConnectionError as e:\n    print('refused', e)\n")
    no_cookie = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30,
                               env={**os.environ, "XAUTHORITY": str(tmp_path / "none")})
    assert no_cookie.stdout.startswith("refused") and "uthoriz" in no_cookie.stdout, no_cookie
    # The cookie file inside is the runner's own, mode 0600; with it, the host's client gets in.
    listing = c.exec("sh", "-c", 'stat -c "%a %u" "$XAUTHORITY"').split()
    assert listing == ["600", str(IMAGE_UID)], listing
    entries = c.exec("sh", "-c", 'xauth -f "$XAUTHORITY" nlist')
    assert len(entries.splitlines()) == 1 and b"MIT-MAGIC-COOKIE-1".hex() in entries.lower(), entries
    # (With --network host the container has the host's name, so its entry matches here as is.)
    copied = tmp_path / "copied"
    subprocess.run(["xauth", "-q", "-f", str(copied), "nmerge", "-"], check=True, text=True, input=entries)
    with_cookie = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30,
                                 env={**os.environ, "XAUTHORITY": str(copied)})
    assert with_cookie.stdout.strip() == f"open {SCREEN[0]}", with_cookie


def test_docker_stop_ends_it_cleanly_within_3_s(docker_image: str, livekit_server: LiveKitServer,  # noqa: F811
                                                room_name: str, tmp_path: Path,
                                                container_log: list[Container]) -> None:
    c = Container([*own_x_args(free_display_number()),
                   *runner_env(livekit_server, room_name, tmp_path / "secrets")], docker_image)
    container_log.append(c)
    c.wait_for_event("track_published", timeout=60)
    took = c.stop(timeout_s=10)
    state = c.inspect()["State"]
    print(f"docker stop took {took:.2f} s")
    assert state["ExitCode"] == 0, state
    assert took < STOP_DEADLINE_S, f"docker stop took {took:.1f} s"
    names = [e.get("event") for e in c.events()]
    assert "stopping" in names and names[-1] == "stopped", names[-5:]


# --- the host's X server -------------------------------------------------------------------------


class CookieXvfb(Xvfb):
    """An Xvfb that admits only clients with the cookie in ``authority`` (-auth)."""

    def __init__(self, authority: Path, width: int, height: int) -> None:
        self._authority = authority
        super().__init__(width, height)

    def _spawn(self, argv: list[str], **kwargs):  # type: ignore[no-untyped-def, override]
        return super()._spawn([*argv, "-auth", str(self._authority)], **kwargs)


def xauth_add(authority: Path, display: str, cookie: str) -> None:
    subprocess.run(["xauth", "-q", "-f", str(authority), "source", "-"], check=True, text=True,
                   input=f"add {display} MIT-MAGIC-COOKIE-1 {cookie}\n")


@pytest.fixture
def host_x(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Xvfb, Path]]:
    """An Xvfb on the host with a cookie, like a desktop's; XAUTHORITY points at its cookie file."""
    authority = tmp_path / "host.Xauthority"
    cookie = secrets.token_hex(16)
    xauth_add(authority, ":0", cookie)  # the server reads every entry, whatever its display
    server = CookieXvfb(authority, *SCREEN)
    xauth_add(authority, server.display, cookie)
    monkeypatch.setenv("XAUTHORITY", str(authority))
    try:
        yield server, authority
    finally:
        server.stop()


def readme_cookie_commands(display: str, cookie_path: Path) -> None:
    """README "Docker", host's X display: the cookie file for the container, as the README says
    (``xauth extract``, then owned by the image's uid)."""
    subprocess.run(["xauth", "extract", str(cookie_path), display], check=True)
    os.chown(cookie_path, IMAGE_UID, -1)
    cookie_path.chmod(0o600)


async def test_host_x_viewer_sees_host_screen_and_stop_releases_input(
        docker_image: str, host_x: tuple[Xvfb, Path], livekit_server: LiveKitServer, room_name: str,  # noqa: F811
        tmp_path: Path, page, open_viewer, container_log: list[Container]) -> None:
    server, _ = host_x
    paint(server.display, QUADRANTS)
    cookie = tmp_path / "desktop-runner.xauth"
    readme_cookie_commands(server.display, cookie)
    mounts = ["-e", f"DISPLAY={server.display}", "-v", "/tmp/.X11-unix:/tmp/.X11-unix:ro",
              "-v", f"{cookie}:/run/xauthority:ro", "-e", "XAUTHORITY=/run/xauthority"]
    # Through the mounted socket file alone (no shared network namespace: no abstract socket),
    # with the host's name so that the cookie's entry matches: mss (libxcb) grabs the screen and
    # python-xlib (the runner's input side) connects.
    probe = ("import mss; from Xlib import display\n"
             "s = mss.MSS(); m = s.monitors[1]; p = s.grab(m).pixel(10, 10)\n"
             "print(m['width'], display.Display().screen().height_in_pixels, *p)")
    grab = docker("run", "--rm", "--network", "none", "--hostname", socket.gethostname(), *mounts,
                  "--entrypoint", PYTHON, docker_image, "-c", probe)
    assert grab.stdout.split() == [str(v) for v in (*SCREEN, *QUADRANTS.top_left)], grab.stdout

    c = Container([*mounts, "--read-only", *runner_env(livekit_server, room_name, tmp_path / "secrets")],
                  docker_image)
    container_log.append(c)
    c.wait_for_event("track_published", timeout=60)
    await watch_and_take_control(page, open_viewer, livekit_server, room_name, quadrant_colours())
    uids = c.process_uids()  # host-X mode: the runner is PID 1 itself (exec)
    assert list(uids.values()) == [IMAGE_UID], uids
    xs = XState(server.display)
    try:
        # The viewer holds the left button down on the host's screen; docker stop releases it.
        x, y = await video_point(page, 0.5, 0.5)
        await page.mouse.move(x, y)
        await page.mouse.down()
        assert await asyncio.to_thread(x_wait_until, lambda: xs.buttons_down() == {"left"}, 10), xs.buttons_down()
        took = await asyncio.to_thread(c.stop, 10)
        assert c.inspect()["State"]["ExitCode"] == 0
        assert took < STOP_DEADLINE_S, f"docker stop took {took:.1f} s"
        assert xs.buttons_down() == set(), "the held button was not released on docker stop"
    finally:
        xs.close()


# --- failures are reported, not hidden -----------------------------------------------------------


def test_unhealthy_while_no_frames_are_published(docker_image: str, tmp_path: Path,  # noqa: F811
                                                 container_log: list[Container]) -> None:
    """LiveKit unreachable: the runner keeps retrying (by design), and Docker calls it unhealthy."""
    from devstack import free_tcp_port

    c = Container(["--network", "host", "--read-only", "--tmpfs", "/tmp",
                   "-e", f"RUNNER_XVFB={SCREEN[0]}x{SCREEN[1]}", "-e", f"DISPLAY=:{free_display_number()}",
                   "-e", f"RUNNER_LIVEKIT__URL=ws://127.0.0.1:{free_tcp_port()}",
                   "-e", "RUNNER_LIVEKIT__API_KEY=key", "-e", "RUNNER_LIVEKIT__API_SECRET=secret",
                   "-e", f"RUNNER_E2EE__PASSPHRASE={PASSPHRASE}",
                   "-e", f"RUNNER_METRICS__ADDRESS=127.0.0.1:{free_tcp_port()}",
                   "--health-interval", "1s", "--health-retries", "2", "--health-start-period", "1s"],
                  docker_image)
    container_log.append(c)
    c.wait_for_event("connect_failed", timeout=60)
    c.wait_for_health("unhealthy", timeout=30)
    assert c.running


def test_entrypoint_reports_bad_settings_and_a_failing_x_server(
        docker_image: str, xvfb: Xvfb, container_log: list[Container]) -> None:  # noqa: F811
    def run(*args: str) -> tuple[int, list[dict]]:
        c = Container(["--network", "host", "--read-only", "--tmpfs", "/tmp", *args], docker_image)
        container_log.append(c)
        status = int(docker("wait", c.id, timeout=60).stdout)
        return status, [e for e in c.events() if e.get("logger") == "entrypoint"]

    status, events = run("-e", "RUNNER_XVFB=big")
    assert status == 2
    assert events[-1]["event"] == "entrypoint_failed"
    assert events[-1]["error"] == "RUNNER_XVFB must be WIDTHxHEIGHT, for example 1920x1080"
    # The display of an X server already on the host (shared abstract sockets with --network host).
    status, events = run("-e", "RUNNER_XVFB=640x480", "-e", f"DISPLAY={xvfb.display}")
    assert status == 1
    assert events[-1]["event"] == "entrypoint_failed"
    assert events[-1]["error"].startswith(f"Xvfb could not start on {xvfb.display}"), events[-1]


def test_container_exits_1_when_its_x_server_dies(own_x: tuple[Container, int]) -> None:
    c, _ = own_x
    # No procps in the image: find Xvfb's PID from /proc.
    c.exec("sh", "-c", 'for p in /proc/[0-9]*; do [ "$(cat $p/comm)" = Xvfb ] && kill -9 "${p#/proc/}"; done; true')
    status = int(docker("wait", c.id, timeout=60).stdout)
    assert status == 1
    names = [e.get("event") for e in c.events()]
    assert "xvfb_exited" in names, names[-6:]
