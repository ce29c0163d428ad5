"""Real components for the demo and the tests: livekit-server, Xvfb, the viewer page server, tokens.

Every process helper starts its process in the constructor, stops it with ``.stop()`` (idempotent)
and is a context manager. Processes are plain subprocesses in their own process group; their output
goes to a log file under a private temporary directory (``.log_path``, kept after stop for
post-mortems), so a failure can say where to look; those directories are made under
``$DEVSTACK_TMPDIR`` when it is set (the tests point it into pytest's base temporary directory,
which pytest prunes to the last three runs), else under the system's temporary directory.
Everything listens on 127.0.0.1 only, except livekit-server's ICE/TCP port, which it always
binds on all interfaces.

Used by ``scripts/demo.py`` and ``tests/conftest.py``; importable as ``devstack`` with
``scripts/`` on ``sys.path``.
"""

from __future__ import annotations

import atexit
import datetime
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"

LIVEKIT_SERVER_BIN_ENV = "LIVEKIT_SERVER_BIN"
LIVEKIT_SERVER_DEFAULT_BIN = "livekit-server"
# --dev mode's well-known key pair; only ever served on loopback.
DEV_API_KEY = "devkey"
DEV_API_SECRET = "secret"
# WebRTC media ports per server: one per peer connection, a handful is plenty for a test room.
RTC_UDP_PORT_COUNT = 16
RTC_UDP_PORT_SEARCH = (20_000, 60_000)

STARTUP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.05
LOG_TAIL_CHARS = 2_000

X11_SOCKET_DIR = Path("/tmp/.X11-unix")
# Parent of the helpers' private directories when set (made if missing).
TMPDIR_ENV = "DEVSTACK_TMPDIR"

Rgb = tuple[int, int, int]


class ComponentError(RuntimeError):
    """A real component is missing or did not come up; the message says which and what to do."""


# --- ports ----------------------------------------------------------------------------------------


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def _udp_port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_udp_range(count: int) -> tuple[int, int]:
    """First and last port of ``count`` consecutive UDP ports that are all free right now."""
    low, high = RTC_UDP_PORT_SEARCH
    for _ in range(200):
        start = random.randrange(low, high - count)
        if all(_udp_port_is_free(p) for p in range(start, start + count)):
            return start, start + count - 1
    raise ComponentError(f"no {count} consecutive free UDP ports between {low} and {high}")


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str,
                proc: subprocess.Popen[bytes] | None = None, log_path: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ComponentError(f"{what}: process exited with code {proc.returncode}"
                                 + _log_hint(log_path))
        if predicate():
            return
        time.sleep(POLL_INTERVAL_S)
    raise ComponentError(f"{what}: not ready after {timeout:.0f} s" + _log_hint(log_path))


def _log_hint(log_path: Path | None) -> str:
    if log_path is None or not log_path.exists():
        return ""
    tail = log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    return f" (log: {log_path})\n--- log tail ---\n{tail}"


def _resolve_binary(name: str, *, setting: str | None = None, install_hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        where = f" (set {setting} to its path)" if setting else ""
        raise ComponentError(f"{name!r} not found{where}; {install_hint}")
    return path


# --- process base ---------------------------------------------------------------------------------


# Every process started here, so a Python that exits without stopping them still takes them along.
_STARTED: weakref.WeakSet[_ManagedProcess] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_STARTED):
        process.kill()


class _ManagedProcess:
    """A subprocess in its own process group, with a log file and an idempotent stop()."""

    name = "process"

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        parent = os.environ.get(TMPDIR_ENV) or None
        if parent:
            os.makedirs(parent, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f"devstack-{self.name}-", dir=parent))
        self.log_path = self._tmp / f"{self.name}.log"

    def _spawn(self, argv: list[str], *, env: dict[str, str] | None = None,
               stdout: int | None = None, pass_fds: tuple[int, ...] = (),
               cwd: Path | None = None) -> subprocess.Popen[bytes]:
        log = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=stdout if stdout is not None else log,
                stderr=log, env=env, pass_fds=pass_fds, cwd=cwd, start_new_session=True)
        finally:
            log.close()
        _STARTED.add(self)
        return self._proc

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The started process (signal it, wait for it); only after it was started."""
        assert self._proc is not None, f"{self.name} was never started"
        return self._proc

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _signal(self, sig: int) -> None:
        assert self._proc is not None
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL, no chance to clean up: what a crash looks like from outside."""
        if self.running:
            self._signal(signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait()

    # (signal, seconds to wait for exit) tried in order before SIGKILL.
    stop_signals: tuple[tuple[int, float], ...] = ((signal.SIGTERM, STOP_TIMEOUT_S),)

    def stop(self) -> None:
        """Ask politely (``stop_signals``), then SIGKILL. Safe to call twice."""
        for sig, wait_s in self.stop_signals:
            if not self.running:
                break
            self._signal(sig)
            try:
                self.process.wait(wait_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __del__(self) -> None:
        # Last resort so a forgotten helper does not leave its process behind.
        try:
            if self.running:
                self._signal(signal.SIGKILL)
        except Exception:
            pass


# --- livekit-server -------------------------------------------------------------------------------


class LiveKitServer(_ManagedProcess):
    """``livekit-server --dev`` on loopback, on free ports that survive ``restart()``.

    The config pins every port (signalling, ICE/TCP, a small ICE/UDP range) and restricts ICE to
    the loopback interface with 127.0.0.1 as the only candidate address, so media never leaves the
    host. ``api_key``/``api_secret`` default to --dev's ``devkey``/``secret``.
    """

    name = "livekit-server"
    # A first SIGTERM waits for participants to leave, and one that arrives within moments of
    # startup is lost (1.13.5 hangs); a second SIGTERM forces the shutdown.
    stop_signals = ((signal.SIGTERM, 1.0), (signal.SIGTERM, 3.0))

    def __init__(self, port: int | None = None, *, api_key: str = DEV_API_KEY,
                 api_secret: str = DEV_API_SECRET, log_level: str = "info",
                 startup_timeout: float = STARTUP_TIMEOUT_S,
                 playout_delay: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.api_key, self.api_secret = api_key, api_secret
        # room.playout_delay (min, max ms): the RTP playout-delay extension on every subscriber's
        # video; (0, 0) makes Chrome render each frame as soon as it is decoded (docs/operations.md).
        self.playout_delay = playout_delay
        self.binary = _resolve_binary(
            os.environ.get(LIVEKIT_SERVER_BIN_ENV, LIVEKIT_SERVER_DEFAULT_BIN),
            setting=LIVEKIT_SERVER_BIN_ENV, install_hint="run scripts/setup.sh to build it")
        self.port = port or free_tcp_port()
        self.rtc_tcp_port = free_tcp_port()
        self.rtc_udp_range = free_udp_range(RTC_UDP_PORT_COUNT)
        self.startup_timeout = startup_timeout
        self.config_path = self._tmp / "livekit.yaml"
        self.config_path.write_text(self._config_yaml(log_level))
        self.start()

    @property
    def url(self) -> str:
        """Signalling URL for SDKs: ``ws://127.0.0.1:PORT``."""
        return f"ws://{LOOPBACK}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _config_yaml(self, log_level: str) -> str:
        # JSON is YAML; it saves a dependency and quoting rules.
        udp_start, udp_end = self.rtc_udp_range
        config = {
            "port": self.port,
            "bind_addresses": [LOOPBACK],
            "rtc": {
                "tcp_port": self.rtc_tcp_port,
                "port_range_start": udp_start,
                "port_range_end": udp_end,
                "node_ip": LOOPBACK,
                "use_external_ip": False,
                "enable_loopback_candidate": True,
                "interfaces": {"includes": ["lo"]},
            },
            "keys": {self.api_key: self.api_secret},
            "logging": {"level": log_level, "json": False},
        }
        if self.playout_delay is not None:
            low, high = self.playout_delay
            config["room"] = {"playout_delay": {"enabled": True, "min": low, "max": high}}
        return json.dumps(config, indent=2) + "\n"

    def _answers_http(self) -> bool:
        try:
            with urllib.request.urlopen(self.http_url, timeout=1) as resp:
                ok: bool = resp.status == 200
                return ok
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> None:
        if self.running:
            return
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start {datetime.datetime.now().isoformat()} ===\n".encode())
        self._spawn([self.binary, "--dev", "--bind", LOOPBACK, "--config", str(self.config_path)])
        _wait_until(self._answers_http, self.startup_timeout, f"livekit-server on {self.url}",
                    self._proc, self.log_path)

    def restart(self) -> None:
        """Stop (gracefully, if still running) and start again on the same ports and keys."""
        self.stop()
        self.start()


# --- Xvfb -----------------------------------------------------------------------------------------


class Xvfb(_ManagedProcess):
    """A virtual X screen, ``WxHx24``, no TCP listener. Picks a free display number unless given."""

    name = "xvfb"

    def __init__(self, width: int = 1920, height: int = 1080, display: int | str | None = None, *,
                 startup_timeout: float = STARTUP_TIMEOUT_S) -> None:
        super().__init__()
        binary = _resolve_binary("Xvfb", install_hint="install the Debian package xvfb "
                                                      "(scripts/setup.sh does)")
        self.width, self.height = width, height
        # -noreset: without it the server resets when its last client leaves, and with it the
        # background that paint() set.
        screen = ["-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp", "-noreset"]
        if display is None:
            # -displayfd: the server picks a free display and writes its number once it accepts
            # connections, which avoids both guessing and racing other X servers.
            read_fd, write_fd = os.pipe()
            try:
                self._spawn([binary, "-displayfd", str(write_fd), *screen], pass_fds=(write_fd,))
            finally:
                os.close(write_fd)
            number = self._read_display_number(read_fd, startup_timeout)
        else:
            number = int(str(display).lstrip(":"))
            self._spawn([binary, f":{number}", *screen])
        self.display = f":{number}"
        socket_path = X11_SOCKET_DIR / f"X{number}"
        _wait_until(lambda: _unix_socket_accepts(socket_path), startup_timeout,
                    f"Xvfb {self.display}", self._proc, self.log_path)

    def _read_display_number(self, read_fd: int, timeout: float) -> int:
        return read_display_number(self.process, read_fd, timeout, name="Xvfb", log_path=self.log_path)

    @property
    def env(self) -> dict[str, str]:
        """Environment additions for a client of this screen: ``{"DISPLAY": ":N"}``."""
        return {"DISPLAY": self.display}


def read_display_number(proc: subprocess.Popen[bytes], read_fd: int, timeout: float, *, name: str,
                        log_path: Path | None, exit_hint: str = "") -> int:
    """The display number an X server writes to its ``-displayfd`` pipe; ComponentError (naming
    the log) if the server exits or stays silent for ``timeout`` seconds."""
    data = b""
    deadline = time.monotonic() + timeout
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        os.set_blocking(pipe.fileno(), False)
        while not data.endswith(b"\n"):
            if proc.poll() is not None:
                raise ComponentError(f"{name} exited with code {proc.returncode}{exit_hint}"
                                     + _log_hint(log_path))
            if time.monotonic() > deadline:
                raise ComponentError(f"{name} did not report a display number" + _log_hint(log_path))
            try:
                chunk = pipe.read(64)
            except BlockingIOError:
                chunk = None
            if chunk:
                data += chunk
            else:
                time.sleep(POLL_INTERVAL_S)
    return int(data.strip())


def _unix_socket_accepts(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


# --- pictures on the X screen ---------------------------------------------------------------------


@dataclass(frozen=True)
class Quadrants:
    """Four solid quadrants; the defaults differ strongly in every channel, so samples tell them
    apart even through lossy video."""

    top_left: Rgb = (255, 0, 0)
    top_right: Rgb = (0, 255, 0)
    bottom_left: Rgb = (0, 0, 255)
    bottom_right: Rgb = (255, 255, 255)

    def at(self, x: float, y: float) -> Rgb:
        """The colour at normalized screen coordinates (0..1, 0..1)."""
        if y < 0.5:
            return self.top_left if x < 0.5 else self.top_right
        return self.bottom_left if x < 0.5 else self.bottom_right


QUADRANTS = Quadrants()


def parse_color(color: str | Rgb) -> Rgb:
    """``'#rrggbb'`` or an (r, g, b) tuple of 0..255 -> (r, g, b)."""
    if isinstance(color, str):
        text = color.removeprefix("#")
        if len(text) != 6:
            raise ValueError(f"colour {color!r} is not #rrggbb")
        return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)
    r, g, b = color
    if not all(0 <= c <= 255 for c in (r, g, b)):
        raise ValueError(f"colour {color!r} has a channel outside 0..255")
    return r, g, b


def paint(display: str, picture: str | Rgb | Quadrants) -> None:
    """Put a known picture on the whole X screen: a solid colour or a `Quadrants` pattern.

    Sets the root window's background pixmap, which the server keeps after this client has gone,
    so the picture stays until the next paint. Windows on top of the root still cover it.
    """
    from Xlib import display as xdisplay

    conn = xdisplay.Display(display)
    try:
        screen = conn.screen()
        root = screen.root
        width, height = screen.width_in_pixels, screen.height_in_pixels
        if isinstance(picture, Quadrants):
            half_w, half_h = width // 2, height // 2
            rects = [(picture.top_left, 0, 0, half_w, half_h),
                     (picture.top_right, half_w, 0, width - half_w, half_h),
                     (picture.bottom_left, 0, half_h, half_w, height - half_h),
                     (picture.bottom_right, half_w, half_h, width - half_w, height - half_h)]
        else:
            rects = [(parse_color(picture), 0, 0, width, height)]
        pixmap = root.create_pixmap(width, height, screen.root_depth)
        colormap = screen.default_colormap
        for rgb, x, y, w, h in rects:
            r, g, b = parse_color(rgb)
            pixel = colormap.alloc_color(r * 257, g * 257, b * 257).pixel
            gc = pixmap.create_gc(foreground=pixel)
            pixmap.fill_rectangle(gc, x, y, w, h)
            gc.free()
        root.change_attributes(background_pixmap=pixmap)
        root.clear_area(0, 0, 0, 0)  # 0 width/height = the whole window
        pixmap.free()  # the root keeps its own reference
        conn.sync()
    finally:
        conn.close()


# --- viewer page server ---------------------------------------------------------------------------


class ViewerServer(_ManagedProcess):
    """``scripts/serve_viewer.py`` on loopback, on ``port`` (0: a free one).

    ``.url`` is the viewer page and ends in ``/``.
    """

    name = "viewer-server"

    def __init__(self, port: int = 0, *, startup_timeout: float = STARTUP_TIMEOUT_S) -> None:
        super().__init__()
        script = REPO_ROOT / "scripts" / "serve_viewer.py"
        proc = self._spawn([sys.executable, str(script), "--port", str(port)],
                           stdout=subprocess.PIPE)
        self.url = self._read_url(proc, startup_timeout)

    def _read_url(self, proc: subprocess.Popen[bytes], timeout: float) -> str:
        assert proc.stdout is not None  # spawned with stdout=PIPE
        os.set_blocking(proc.stdout.fileno(), False)
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            if proc.poll() is not None:
                raise ComponentError(f"serve_viewer.py exited with code {proc.returncode}"
                                     + _log_hint(self.log_path))
            if time.monotonic() > deadline:
                raise ComponentError("serve_viewer.py printed no URL" + _log_hint(self.log_path))
            chunk = proc.stdout.readline()
            if chunk:
                line += chunk
            else:
                time.sleep(POLL_INTERVAL_S)
        return line.decode().strip()

    def stop(self) -> None:
        super().stop()
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()


def viewer_address(viewer_url: str, livekit_url: str, runner: str | None = None) -> str:
    """The viewer link a user is given: no secret in it, only the LiveKit URL (and the runner's
    identity) in the fragment; the user pastes the token and the passphrase into the page.

    A browser keeps every address it loads in its profile (History, Sessions, ukm), so a link with
    a secret leaves the secret there (viewer/link.js).
    """
    from urllib.parse import urlencode

    params = {"url": livekit_url, **({"runner": runner} if runner else {})}
    return f"{viewer_url}#{urlencode(params)}"


def viewer_link(viewer_url: str, livekit_url: str, token: str, passphrase: str) -> str:
    """A viewer link that connects on load, for tests and tools (opt-in): url, token and passphrase
    in the fragment, which never reaches a server. The browser's history keeps them all the same,
    so the page shows a warning; give users ``viewer_address`` and the secrets apart.
    """
    from urllib.parse import urlencode

    return f"{viewer_url}#{urlencode({'url': livekit_url, 'token': token, 'passphrase': passphrase})}"


# --- runner ---------------------------------------------------------------------------------------


class Runner(_ManagedProcess):
    """``python -m runner`` configured through RUNNER_* environment variables.

    Its stderr (JSON lines when not a TTY) goes to ``.log_path``; ``events()`` parses it.
    """

    name = "runner"

    def __init__(self, *, livekit_url: str, api_key: str, api_secret: str, room: str,
                 passphrase: str, display: str, extra_env: dict[str, str] | None = None,
                 python: str = sys.executable, script: list[str] | None = None) -> None:
        super().__init__()
        env = {
            **os.environ,
            "DISPLAY": display,
            "RUNNER_LIVEKIT__URL": livekit_url,
            "RUNNER_LIVEKIT__API_KEY": api_key,
            "RUNNER_LIVEKIT__API_SECRET": api_secret,
            "RUNNER_LIVEKIT__ROOM": room,
            "RUNNER_E2EE__PASSPHRASE": passphrase,
            **(extra_env or {}),
        }
        # From the repository root, so `-m runner` finds the package even when not installed.
        # ``script`` replaces `-m runner` (the benchmarks run the service under a probe).
        self._spawn([python, *(script or ["-m", "runner"])], env=env, cwd=REPO_ROOT)

    @classmethod
    def joining(cls, server: LiveKitServer, *, room: str, passphrase: str, display: str,
                extra_env: dict[str, str] | None = None) -> Self:
        """A runner that joins ``room`` on ``server`` with the server's API key and secret."""
        return cls(livekit_url=server.url, api_key=server.api_key, api_secret=server.api_secret, room=room,
                   passphrase=passphrase, display=display, extra_env=extra_env)

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def events(self) -> Iterator[dict[str, Any]]:
        """Every JSON object logged so far, in order; other lines are skipped."""
        if not self.log_path.exists():
            return
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue

    def wait_for_event(self, event: str, timeout: float = 30.0) -> dict[str, Any]:
        """The first logged record with ``"event": event``; fails if the runner exits first."""
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            found.extend(e for e in self.events() if e.get("event") == event)
            return bool(found)

        _wait_until(seen, timeout, f"runner event {event!r}", self._proc, self.log_path)
        return found[0]


# --- tokens ---------------------------------------------------------------------------------------


def mint_token(api_key: str, api_secret: str, room: str, identity: str, *, publish: bool = False,
               subscribe: bool = True, publish_data: bool = True,
               ttl: datetime.timedelta = datetime.timedelta(hours=6),
               name: str | None = None) -> str:
    """A LiveKit access token (JWT) that joins ``room`` as ``identity`` with the given rights."""
    from livekit import api

    grants = api.VideoGrants(room_join=True, room=room, can_publish=publish,
                             can_subscribe=subscribe, can_publish_data=publish_data)
    token = (api.AccessToken(api_key, api_secret).with_identity(identity).with_grants(grants)
             .with_ttl(ttl))
    if name:
        token = token.with_name(name)
    with warnings.catch_warnings():
        # PyJWT warns about --dev's 6-byte secret on every token; it is known and loopback-only.
        if api_secret == DEV_API_SECRET:
            warnings.filterwarnings("ignore", message=".*HMAC key.*below the minimum")
        return token.to_jwt()
