"""The systemd units and the sd_notify client (runner/notify.py).

- Both units pass ``systemd-analyze verify``, with ExecStart pointing at this checkout's console
  script (the shipped path, /opt/desktop-runner, does not exist here), and the system unit's
  ``systemd-analyze security`` exposure stays at or below the level the docs quote.
- ``Notifier`` against real AF_UNIX datagram sockets, a path and an abstract name: the bytes
  systemd would receive.
- ``WatchdogGate`` with literal times, and the feeding task end to end.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import structlog

from runner.notify import Notifier, Wait, WatchdogGate, feed_watchdog, watchdog_usec_from

if TYPE_CHECKING:
    from realenv import LiveKitServer, Xvfb

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
SYSTEM_UNIT = REPO / "systemd" / "desktop-runner.service"
USER_UNIT = REPO / "systemd" / "desktop-runner-user.service"
CONSOLE_SCRIPT = REPO / ".venv" / "bin" / "desktop-runner"
SHIPPED_EXEC_START = "ExecStart=/opt/desktop-runner/.venv/bin/desktop-runner"
# Measured with systemd 252 (Debian 12); docs/operations.md quotes it. Lower is better.
EXPOSURE_MAX = 1.1
DATAGRAM_MAX = 4096
NO_DATAGRAM_S = 0.2


# --- the units ------------------------------------------------------------------------------


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze is required for this test (Debian package systemd)", pytrace=False)
    return path


def installable_copy(unit: Path, directory: Path) -> Path:
    """The unit with ExecStart at this checkout's console script, in ``directory``."""
    assert CONSOLE_SCRIPT.exists(), f"{CONSOLE_SCRIPT} is missing: pip install -e . in .venv"
    text = unit.read_text()
    assert text.count(SHIPPED_EXEC_START) == 1, f"{unit.name}: expected {SHIPPED_EXEC_START!r}"
    copy = directory / unit.name
    copy.write_text(text.replace(SHIPPED_EXEC_START, f"ExecStart={CONSOLE_SCRIPT}"))
    return copy


def analyze(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([systemd_analyze(), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_system_unit_verifies(tmp_path: Path) -> None:
    unit = installable_copy(SYSTEM_UNIT, tmp_path)
    result = analyze("verify", "--man=no", str(unit))
    about_ours = [line for line in result.stderr.splitlines() if unit.name in line]
    assert result.returncode == 0, result.stderr
    assert about_ours == []


def test_user_unit_verifies_for_a_user_manager(tmp_path: Path) -> None:
    # --user needs no running user manager, only a runtime directory to resolve paths in.
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    unit = installable_copy(USER_UNIT, tmp_path)
    result = analyze("verify", "--user", "--man=no", str(unit), env={"XDG_RUNTIME_DIR": str(runtime)})
    about_ours = [line for line in result.stderr.splitlines() if unit.name in line]
    assert result.returncode == 0, result.stderr
    assert about_ours == []


def test_system_unit_exposure_is_at_most_the_documented_level(tmp_path: Path) -> None:
    unit = installable_copy(SYSTEM_UNIT, tmp_path)
    result = analyze("security", "--offline=true", "--no-pager", str(unit))
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match is not None, result.stdout
    exposure = float(match.group(1))
    print(f"systemd-analyze security: overall exposure {exposure} (max {EXPOSURE_MAX})")
    assert exposure <= EXPOSURE_MAX, result.stdout


# --- Notifier against real sockets ----------------------------------------------------------


class Listener:
    """A bound AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address  # what NOTIFY_SOCKET would say

    def receive(self) -> bytes:
        self.sock.settimeout(2.0)
        return self.sock.recv(DATAGRAM_MAX)

    def nothing_arrives(self) -> bool:
        self.sock.settimeout(NO_DATAGRAM_S)
        try:
            self.sock.recv(DATAGRAM_MAX)
        except TimeoutError:
            return True
        return False


@pytest.fixture
def path_listener() -> Iterator[Listener]:
    # Under /tmp with a short name: sun_path holds 107 bytes, pytest's tmp_path can be longer.
    directory = tempfile.mkdtemp(prefix="notify-")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        yield Listener(sock, path)
    finally:
        sock.close()
        shutil.rmtree(directory)


@pytest.fixture
def abstract_listener() -> Iterator[Listener]:
    name = f"desktop-runner-test-{secrets.token_hex(4)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    try:
        yield Listener(sock, "@" + name)
    finally:
        sock.close()


def test_ready_status_and_stopping_reach_a_path_socket(path_listener: Listener) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path_listener.address})
    notifier.ready()
    notifier.status("publishing 1280x720 from :0 to room desktop")
    notifier.stopping()
    assert path_listener.receive() == b"READY=1"
    assert path_listener.receive() == b"STATUS=publishing 1280x720 from :0 to room desktop"
    assert path_listener.receive() == b"STOPPING=1"


def test_messages_reach_an_abstract_socket(abstract_listener: Listener) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": abstract_listener.address, "WATCHDOG_USEC": "30000000"})
    notifier.ready(status="publishing")
    notifier.watchdog()
    assert abstract_listener.receive() == b"READY=1\nSTATUS=publishing"
    assert abstract_listener.receive() == b"WATCHDOG=1"


def test_status_folds_newlines_so_it_cannot_add_assignments(path_listener: Listener) -> None:
    notifier = Notifier(path_listener.address)
    notifier.status("cannot reach ws://lk\nREADY=1")
    assert path_listener.receive() == b"STATUS=cannot reach ws://lk READY=1"


def test_reload_is_announced_with_monotonic_time_and_ends_with_ready(path_listener: Listener) -> None:
    notifier = Notifier(path_listener.address)
    notifier.ready()
    notifier.reloading(monotonic_usec=123456789)
    notifier.reloaded()
    assert path_listener.receive() == b"READY=1"
    assert path_listener.receive() == b"RELOADING=1\nMONOTONIC_USEC=123456789"
    assert path_listener.receive() == b"READY=1"


def test_reloading_carries_clock_monotonic_by_default(path_listener: Listener) -> None:
    notifier = Notifier(path_listener.address)
    notifier.ready()
    path_listener.receive()
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    reloading, stamp = path_listener.receive().split(b"\n")
    assert reloading == b"RELOADING=1"
    assert before <= int(stamp.removeprefix(b"MONOTONIC_USEC=")) <= after


def test_a_reload_before_start_up_is_over_sends_nothing(path_listener: Listener) -> None:
    # READY=1 after such a reload would tell systemd start-up is over before the track is out.
    notifier = Notifier(path_listener.address)
    notifier.reloading()
    notifier.reloaded()
    assert path_listener.nothing_arrives()


def test_watchdog_interval_is_half_of_watchdog_usec(path_listener: Listener) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path_listener.address, "WATCHDOG_USEC": "30000000",
                                      "WATCHDOG_PID": str(os.getpid())})
    assert notifier.watchdog_interval_s == 15.0


def test_watchdog_pid_of_another_process_disables_the_watchdog(path_listener: Listener) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path_listener.address, "WATCHDOG_USEC": "30000000",
                                      "WATCHDOG_PID": str(os.getpid() + 1)})
    notifier.watchdog()
    assert notifier.watchdog_interval_s is None
    assert path_listener.nothing_arrives()


@pytest.mark.parametrize("environ", [
    {},
    {"WATCHDOG_USEC": "0"},
    {"WATCHDOG_USEC": "thirty"},
    {"WATCHDOG_USEC": "-5"},
    {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "not-a-pid"},
    {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "0"},
])
def test_watchdog_is_off_unless_usec_is_positive_and_the_pid_is_ours(environ: dict[str, str]) -> None:
    assert watchdog_usec_from(environ, pid=4242) is None


def test_watchdog_pid_equal_to_ours_or_absent_enables_it() -> None:
    assert watchdog_usec_from({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, pid=4242) == 30_000_000
    assert watchdog_usec_from({"WATCHDOG_USEC": "30000000"}, pid=4242) == 30_000_000


def test_without_notify_socket_everything_is_a_silent_no_op() -> None:
    notifier = Notifier.from_environ({"WATCHDOG_USEC": "30000000"})
    with structlog.testing.capture_logs() as logs:
        notifier.ready()
        notifier.status("x")
        notifier.watchdog()
        notifier.reloading()
        notifier.reloaded()
        notifier.stopping()
    assert notifier.enabled is False
    assert notifier.watchdog_interval_s is None
    assert logs == []


@pytest.mark.parametrize("address", ["vsock:2:1234", "relative/path", "@"])
def test_an_unsupported_address_disables_notifications(address: str) -> None:
    assert Notifier(address).enabled is False


def test_a_vanished_socket_is_logged_once_and_never_raises() -> None:
    notifier = Notifier("/nonexistent/desktop-runner/notify")
    with structlog.testing.capture_logs() as logs:
        notifier.ready()
        notifier.status("still here")
        notifier.stopping()
    assert [entry["event"] for entry in logs] == ["notify_failed"]
    assert logs[0]["socket"] == "/nonexistent/desktop-runner/notify"


# --- WatchdogGate: literal times ------------------------------------------------------------


def test_no_ping_before_the_first_frame() -> None:
    gate = WatchdogGate(15.0)
    assert gate.due(100.0) is False


def test_a_published_frame_earns_one_ping_per_interval() -> None:
    gate = WatchdogGate(15.0)
    gate.frame_published(100.5)
    assert gate.due(101.0) is True
    gate.frame_published(101.5)
    assert gate.due(115.9) is False
    assert gate.due(116.0) is True


def test_pings_stop_when_frames_stop() -> None:
    gate = WatchdogGate(15.0)
    gate.frame_published(100.0)
    assert gate.due(100.0) is True
    assert gate.due(115.0) is False
    assert gate.due(200.0) is False
    gate.frame_published(200.5)
    assert gate.due(201.0) is True


def test_a_deliberate_wait_keeps_feeding_without_frames() -> None:
    gate = WatchdogGate(15.0)
    with gate.waiting(Wait.DISPLAY):
        assert gate.waiting_for == ("display",)
        assert gate.due(100.0) is True
        assert gate.due(114.0) is False
        assert gate.due(115.0) is True
    # mypy keeps the narrowing from inside the block; the property changed when it ended.
    assert gate.waiting_for == ()  # type: ignore[comparison-overlap]
    assert gate.due(130.0) is False


def test_overlapping_waits_feed_until_the_last_one_ends() -> None:
    gate = WatchdogGate(15.0)
    with gate.waiting(Wait.LIVEKIT):
        with gate.waiting(Wait.DISPLAY):
            assert gate.waiting_for == ("display", "livekit")
        assert gate.due(100.0) is True
    assert gate.due(115.0) is False


def test_a_frame_during_a_wait_does_not_end_it() -> None:
    # The last picture grabbed before the display went away can still leave the encoder.
    gate = WatchdogGate(15.0)
    with gate.waiting(Wait.DISPLAY):
        gate.frame_published(100.0)
        assert gate.due(100.0) is True
        assert gate.due(115.0) is True
        assert gate.waiting_for == ("display",)


def test_a_gate_without_watchdog_is_never_due() -> None:
    gate = WatchdogGate(None)
    gate.frame_published(1.0)
    assert gate.due(1000.0) is False
    assert gate.check_every_s is None


def test_the_feeding_task_looks_five_times_per_interval() -> None:
    assert WatchdogGate(15.0).check_every_s == 3.0


def test_a_non_positive_interval_is_refused() -> None:
    with pytest.raises(ValueError, match=r"watchdog interval must be positive, got 0\.0"):
        WatchdogGate(0.0)


# --- the feeding task, end to end ------------------------------------------------------------


async def test_feed_watchdog_pings_while_frames_flow_and_stops_when_they_stop(path_listener: Listener) -> None:
    # WatchdogSec=0.4 s: a ping every 0.2 s, looked for every 0.04 s.
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path_listener.address, "WATCHDOG_USEC": "400000"})
    gate = WatchdogGate(notifier.watchdog_interval_s)
    path_listener.sock.setblocking(False)
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(feed_watchdog(notifier, gate))
    try:
        pings = 0
        deadline = loop.time() + 0.7
        while loop.time() < deadline:
            gate.frame_published(time.monotonic())
            try:
                if await asyncio.wait_for(loop.sock_recv(path_listener.sock, DATAGRAM_MAX), 0.05) == b"WATCHDOG=1":
                    pings += 1
            except TimeoutError:
                pass
        assert 2 <= pings <= 5
        await asyncio.sleep(0.3)  # the last frame's ping may still be due
        while True:  # drain it
            try:
                await asyncio.wait_for(loop.sock_recv(path_listener.sock, DATAGRAM_MAX), 0.01)
            except TimeoutError:
                break
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(loop.sock_recv(path_listener.sock, DATAGRAM_MAX), 0.6)
    finally:
        task.cancel()


async def test_feed_watchdog_returns_at_once_without_a_watchdog() -> None:
    notifier = Notifier.from_environ({})
    await asyncio.wait_for(feed_watchdog(notifier, WatchdogGate(notifier.watchdog_interval_s)), 1.0)


def test_the_runner_tells_systemd_ready_status_watchdog_and_stopping(
        path_listener: Listener, livekit_server: LiveKitServer, xvfb: Xvfb, room_name: str
) -> None:
    """The real runner under a stand-in notify socket: READY only once publishing, STATUS lines,
    WATCHDOG pings while frames flow (a still screen included), STOPPING on SIGTERM."""
    import signal
    import time

    from realenv import Runner

    runner = Runner.joining(livekit_server, room=room_name, passphrase="notify test", display=xvfb.display,
                            extra_env={"NOTIFY_SOCKET": path_listener.address, "WATCHDOG_USEC": "1000000",
                                       "RUNNER_LOG__STATUS_INTERVAL_S": "0"})
    with runner:
        messages: list[bytes] = []

        def pings_after_ready() -> int:
            after = next((i for i, m in enumerate(messages) if m.startswith(b"READY=1")), len(messages))
            return messages[after:].count(b"WATCHDOG=1")

        # Until two pings followed READY: how many come while connecting depends on the load.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and pings_after_ready() < 2:
            messages.append(path_listener.receive())
        ready = [m for m in messages if m.startswith(b"READY=1")]
        assert len(ready) == 1 and b"STATUS=publishing 1280x720 from " in ready[0], messages
        assert messages[0].startswith(b"STATUS=connecting to ws://127.0.0.1:")  # before READY
        # Pings while connecting (a deliberate wait) and, after READY, from published frames.
        assert messages[messages.index(ready[0]):].count(b"WATCHDOG=1") >= 2, messages
        runner._signal(signal.SIGTERM)
        while (message := path_listener.receive()) == b"WATCHDOG=1":
            pass
        assert message == b"STOPPING=1"
        assert runner.process.wait(5) == 0
