"""The container's entrypoint: desktop-runner on the host's X display, or on an Xvfb of its own.

Host-X mode (``RUNNER_XVFB`` unset): exec the runner, which becomes PID 1 and handles SIGTERM
itself (release held input, leave the room, exit 0).

Own-X mode (``RUNNER_XVFB=WIDTHxHEIGHT``): a fresh random MIT-MAGIC-COOKIE-1 is written to
``$XAUTHORITY`` (mode 0600) and Xvfb is started on ``$DISPLAY`` with ``-auth`` on that file, so only
clients holding the cookie connect (with ``--network host`` its abstract socket is reachable from
the whole host). Readiness comes from Xvfb itself (``-displayfd``): no polling, no sleeps. The
screen can later fit a viewer's window (``dr.screen.fit``): Xvfb cannot grow past the size it
starts with, so it starts at ``RUNNER_XVFB_MAX`` (default 4096x2304, about 38 MB of framebuffer)
and is set to ``RUNNER_XVFB`` with RandR before the runner starts, with
``RUNNER_CAPTURE__RESIZABLE=true`` (unless set otherwise): this X server is the runner's own. This
process then stays PID 1 as a small init: it forwards SIGTERM, SIGINT and SIGHUP to the runner,
reaps orphans, stops Xvfb once the runner has exited and exits with the runner's status. If Xvfb
dies first, the runner is stopped and the container exits with status 1.

Messages are JSON lines on stderr like the runner's own (``"logger": "entrypoint"``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import NoReturn

RUNNER = "/opt/desktop-runner/.venv/bin/desktop-runner"
XVFB_START_TIMEOUT_S = 30.0
XVFB_STOP_TIMEOUT_S = 2.0
DEFAULT_XVFB_MAX = "4096x2304"  # the largest screen a viewer's fit may ask for (H.264 level 5.1)
SIZE = re.compile(r"([1-9][0-9]{1,4})x([1-9][0-9]{1,4})")
DISPLAY = re.compile(r":([0-9]{1,5})")
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def log(event: str, level: str = "info", **fields: object) -> None:
    record = {"event": event, "level": level, "logger": "entrypoint", **fields}
    print(json.dumps(record), file=sys.stderr, flush=True)


def fail(message: str, status: int) -> NoReturn:
    log("entrypoint_failed", "error", error=message)
    sys.exit(status)


def write_cookie(path: str, display: str) -> None:
    """A new authority file at ``path`` holding one fresh cookie for ``display``.

    The cookie goes to xauth on its standard input, never on a command line.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    cookie = secrets.token_hex(16)
    old_umask = os.umask(0o077)
    try:
        done = subprocess.run(["xauth", "-q", "-f", path, "source", "-"],
                              input=f"add {display} MIT-MAGIC-COOKIE-1 {cookie}\n", text=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=10)
    finally:
        os.umask(old_umask)
    if done.returncode != 0 or not os.path.isfile(path):
        fail(f"xauth could not write the X cookie to {path}: {done.stderr.strip()}", 1)


def framebuffer(size: str, largest: str) -> str:
    """The size Xvfb starts with: ``largest``, widened to hold ``size`` where that is bigger."""
    (w, h), (max_w, max_h) = (tuple(int(v) for v in s.split("x")) for s in (size, largest))
    return f"{max(w, max_w)}x{max(h, max_h)}"


def set_screen_size(display: str, size: str) -> None:
    """Set the started Xvfb's screen to ``size`` with RandR, at 96 dpi (runner.media.randr)."""
    from runner.media.randr import RandrScreen, ResizeError
    from runner.media.screen_size import ScreenSize

    width, height = (int(v) for v in size.split("x"))
    screen = RandrScreen(display)
    try:
        screen.apply(ScreenSize(width, height, 96))
    except ResizeError as exc:
        fail(f"cannot set the screen to {size}: {exc}", 1)
    finally:
        screen.close()


def start_xvfb(display: str, size: str, authority: str, log_path: str) -> subprocess.Popen[bytes]:
    """Xvfb on ``display``, returned once it accepts connections (it says so on -displayfd)."""
    read_fd, write_fd = os.pipe()
    with open(log_path, "wb") as xlog:
        try:
            xvfb = subprocess.Popen(
                ["Xvfb", display, "-screen", "0", f"{size}x24", "-auth", authority,
                 "-nolisten", "tcp", "-noreset", "-extension", "GLX", "-displayfd", str(write_fd)],
                pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=xlog, stderr=xlog)
        finally:
            os.close(write_fd)
    reported = b""
    deadline = time.monotonic() + XVFB_START_TIMEOUT_S
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while not reported.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([pipe], [], [], left)[0]:
                xvfb.kill()
                fail(f"Xvfb gave no sign of life on {display} within {XVFB_START_TIMEOUT_S:.0f} s: "
                     + xvfb_tail(log_path), 1)
            chunk = pipe.read(64)
            if not chunk:  # Xvfb closed the pipe: it exited without accepting connections
                status = xvfb.wait()
                fail(f"Xvfb could not start on {display} (status {status}; with --network host, "
                     "another X server may hold that display: choose another with -e DISPLAY=:N): "
                     + xvfb_tail(log_path), 1)
            reported += chunk
    return xvfb


def xvfb_tail(log_path: str) -> str:
    try:
        with open(log_path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return "(no Xvfb log)"
    return " | ".join(lines[-5:]) or "(Xvfb printed nothing)"


def supervise(runner: subprocess.Popen[bytes], xvfb: subprocess.Popen[bytes]) -> int:
    """Wait as PID 1: reap every child; return the runner's exit status."""
    xvfb_died = False
    while True:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:  # nothing left (cannot happen while the runner is ours)
            return 1
        if pid == runner.pid:
            runner.returncode = os.waitstatus_to_exitcode(wait_status)
            status = runner.returncode
            if status < 0:  # killed by a signal: report it the way a shell would
                status = 128 - status
            return 1 if xvfb_died else status
        if pid == xvfb.pid and not xvfb_died:
            xvfb.returncode = os.waitstatus_to_exitcode(wait_status)
            xvfb_died = True
            log("xvfb_exited", "error", status=xvfb.returncode,
                error="the container's X server exited; stopping the runner")
            runner.send_signal(signal.SIGTERM)


def stop_xvfb(xvfb: subprocess.Popen[bytes]) -> None:
    if xvfb.returncode is not None:
        return
    xvfb.terminate()
    try:
        xvfb.wait(XVFB_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        xvfb.kill()
        xvfb.wait()


def main(argv: list[str]) -> int:
    size = os.environ.get("RUNNER_XVFB", "")
    if not size:
        os.execv(RUNNER, [RUNNER, *argv])
    if not SIZE.fullmatch(size):
        fail("RUNNER_XVFB must be WIDTHxHEIGHT, for example 1920x1080", 2)
    largest = os.environ.get("RUNNER_XVFB_MAX") or DEFAULT_XVFB_MAX
    if not SIZE.fullmatch(largest):
        fail("RUNNER_XVFB_MAX must be WIDTHxHEIGHT, for example 3840x2160", 2)
    display = os.environ.get("DISPLAY") or ":99"
    if not DISPLAY.fullmatch(display):
        fail("DISPLAY must be :N for the container's own X server, for example :99", 2)
    authority = os.environ.get("XAUTHORITY") or "/tmp/.Xauthority"

    # Signals are passed on to the runner once it exists. Before that, SIGTERM/SIGINT end the
    # start-up as the clean stop they ask for (status 0; PID 1 leaving takes Xvfb along), and
    # SIGHUP (reload) has nothing to reload yet.
    runner: subprocess.Popen[bytes] | None = None

    def on_signal(signum: int, _frame: object) -> None:
        if runner is not None:
            runner.send_signal(signum)
        elif signum != signal.SIGHUP:
            raise SystemExit(0)

    for sig in FORWARDED:
        signal.signal(sig, on_signal)

    workdir = tempfile.mkdtemp(prefix="desktop-runner-")
    write_cookie(authority, display)
    xvfb = start_xvfb(display, framebuffer(size, largest), authority, os.path.join(workdir, "xvfb.log"))
    try:
        os.environ["XAUTHORITY"] = authority  # for the RandR client below
        set_screen_size(display, size)
        log("xvfb_ready", display=display, size=size, max_size=framebuffer(size, largest),
            auth="MIT-MAGIC-COOKIE-1", xauthority=authority)
        env = {"RUNNER_CAPTURE__RESIZABLE": "true", **os.environ, "DISPLAY": display, "XAUTHORITY": authority}
        runner = subprocess.Popen([RUNNER, *argv], env=env)
        return supervise(runner, xvfb)
    finally:
        stop_xvfb(xvfb)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
