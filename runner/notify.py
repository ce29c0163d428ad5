"""systemd service notifications (the sd_notify protocol), without libsystemd.

systemd passes a datagram socket in ``NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract
socket) and, with ``WatchdogSec=``, the watchdog timeout in ``WATCHDOG_USEC`` (µs) and the PID
that must ping in ``WATCHDOG_PID``. Each message is one datagram of ``KEY=value`` lines.

Everything here is a no-op when ``NOTIFY_SOCKET`` is unset (a terminal, Docker, the tests), and
nothing raises: a failed send is logged once as ``notify_failed`` and the runner goes on.

Watchdog semantics (``WatchdogGate``): ``WATCHDOG=1`` is sent only when the frame path has
published a frame since the last ping, or while the runner is deliberately waiting. See the
class docstring.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum

from runner.logs import get_logger

log = get_logger(__name__)

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"

USEC_PER_S = 1_000_000
# Ping at half the timeout, as sd_watchdog_enabled(3) recommends: one late ping is not fatal.
WATCHDOG_PING_FRACTION = 0.5
# The feeding task looks this many times per ping interval, so a ping is never more than
# interval * (1 + 1/N) apart (18 s for WatchdogSec=30), well inside the timeout.
WATCHDOG_CHECKS_PER_INTERVAL = 5
# systemd keeps the status as a single line; the runner's lines are short anyway.
STATUS_MAX_CHARS = 200


def _socket_address(value: str) -> bytes | None:
    """NOTIFY_SOCKET -> a sockaddr_un path: ``/path`` as is, ``@name`` as an abstract name.

    Anything else (systemd 253+ also knows ``vsock:``) is not supported here: None.
    """
    if value.startswith("/"):
        return os.fsencode(value)
    if value.startswith("@") and len(value) > 1:
        return b"\0" + os.fsencode(value[1:])
    return None


def watchdog_usec_from(environ: Mapping[str, str], pid: int) -> int | None:
    """The watchdog timeout in µs if this process must ping, else None.

    sd_watchdog_enabled(3) semantics: WATCHDOG_USEC must be a positive integer; when
    WATCHDOG_PID is set it must be a valid PID equal to ours (a child that inherited the
    environment must not ping for its parent); when it is unset, the watchdog is ours.
    """
    raw_usec = environ.get(WATCHDOG_USEC_ENV)
    if not raw_usec:
        return None
    try:
        usec = int(raw_usec, 10)
    except ValueError:
        return None
    if usec <= 0:
        return None
    raw_pid = environ.get(WATCHDOG_PID_ENV)
    if raw_pid:
        try:
            watchdog_pid = int(raw_pid, 10)
        except ValueError:
            return None
        if watchdog_pid <= 0 or watchdog_pid != pid:
            return None
    return usec


class Notifier:
    """Sends service state to systemd: ``ready()``, ``status()``, ``watchdog()``, ...

    Build it with ``Notifier.from_environ()``; ``Notifier(None)`` is a silent stand-in. Sends
    are non-blocking datagrams from the event loop's thread; a full or vanished socket costs one
    warning, never an exception.
    """

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        """``address``: NOTIFY_SOCKET as systemd wrote it (None: notifications off).
        ``watchdog_usec``: the watchdog timeout this process must honour (None: no watchdog)."""
        self._address_text = address or ""
        self._address = _socket_address(address) if address else None
        if address and self._address is None:
            log.warning("notify_unsupported", socket=address, reason="not a path or @abstract name")
        self._watchdog_usec = watchdog_usec if self._address is not None else None
        self._sock: socket.socket | None = None
        self._warned = False
        self._ready = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, pid: int | None = None) -> Notifier:
        """From NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (``os.environ`` and ``os.getpid()``
        unless given). The variables are left in place; nothing the runner starts pings."""
        environ = os.environ if environ is None else environ
        pid = os.getpid() if pid is None else pid
        return cls(environ.get(NOTIFY_SOCKET_ENV) or None, watchdog_usec_from(environ, pid))

    @property
    def enabled(self) -> bool:
        """Whether a notification socket is configured (the runner runs under systemd)."""
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """Seconds between pings (half of WATCHDOG_USEC), or None when there is no watchdog."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec * WATCHDOG_PING_FRACTION / USEC_PER_S

    # --- messages ----------------------------------------------------------------------
    def ready(self, status: str | None = None) -> None:
        """Start-up is complete: the track is published. Sending it again is harmless."""
        self._ready = True
        self._send("READY=1" if status is None else f"READY=1\n{_status_line(status)}")

    def status(self, text: str) -> None:
        """A one-line state for ``systemctl status``; newlines are folded into spaces."""
        self._send(_status_line(text))

    def watchdog(self) -> None:
        """Ping the watchdog; nothing when this process has no watchdog to ping."""
        if self._watchdog_usec is not None:
            self._send("WATCHDOG=1")

    def stopping(self) -> None:
        """A stop has begun (SIGTERM); systemd shows the unit as deactivating."""
        self._send("STOPPING=1")

    def reloading(self, monotonic_usec: int | None = None) -> None:
        """A reload (SIGHUP) has begun; call ``reloaded()`` when it is over, also when it failed.

        MONOTONIC_USEC (CLOCK_MONOTONIC in µs, now unless given) is what systemd 253+ needs to
        match the message to its reload request under Type=notify-reload; 252 ignores the
        field. Before ``ready()`` nothing is sent: systemd is still waiting for start-up, and
        the READY=1 that ends a reload would end start-up before the track is published.
        """
        if not self._ready:
            return
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000 if monotonic_usec is None else monotonic_usec
        self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def reloaded(self) -> None:
        """The reload is over (applied or refused): READY=1 again, only if start-up was over."""
        if self._ready:
            self._send("READY=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, message: str) -> None:
        if self._address is None:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # never stall the event loop on a full queue
            self._sock.sendto(message.encode(), self._address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("notify_failed", socket=self._address_text, error=f"{type(exc).__name__}: {exc}")


def _status_line(text: str) -> str:
    # A newline would start another KEY=value assignment in the datagram.
    line = " ".join(text.splitlines()).strip()[:STATUS_MAX_CHARS]
    return f"STATUS={line}"


class Wait(StrEnum):
    """Why the runner deliberately publishes no frames (``WatchdogGate.waiting``)."""

    DISPLAY = "display"  # the X display is away and being retried
    LIVEKIT = "livekit"  # the LiveKit server is unreachable and being retried


class WatchdogGate:
    """Decides when the runner has earned a ``WATCHDOG=1``: pure, times passed in.

    The frame path calls ``frame_published(now)`` for every frame it hands to LiveKit; a
    periodic task calls ``due(now)`` (every ``check_every_s``) and pings when it returns True.
    ``due`` is True only when ``interval_s`` has passed since the last ping AND a frame was
    published since then, or the runner is deliberately waiting. So when frames stop flowing
    (an encode thread hung, a grab that never returns, a dead event loop) the pings stop and
    systemd kills and restarts the service after ``WatchdogSec=``.

    A still screen does not trip it: with ``capture.skip_unchanged`` the pipeline skips ticks
    on which nothing changed, but still publishes one picture a second (a skip picture, see
    ``runner.media.scheduling.IDLE_REFRESH_S``) so the track never looks dead; without it every
    tick is published. Either way a healthy frame path publishes far more often than once per ping
    interval (15 s for WatchdogSec=30).

    Deliberate waits keep it fed: while the X display is away and being retried every second
    (``capture_lost`` .. ``capture_resumed``) and while LiveKit is unreachable and being
    retried with backoff (``connect_failed``, ``livekit_disconnected``), no frame is published,
    and a restart would not help: the new process would wait for the same display or server.
    The waiting code wraps itself in ``with gate.waiting(Wait.DISPLAY):`` (or ``Wait.LIVEKIT``);
    the gate is fed while any such wait is open. Waits are counted by reason, so overlapping
    waits (display gone while reconnecting) nest. A wait ends only when its block ends, never
    because a frame happened to be published meanwhile (the last picture grabbed before a
    display loss can still come out of the encoder).
    """

    def __init__(self, interval_s: float | None) -> None:
        """``interval_s``: seconds between pings, ``Notifier.watchdog_interval_s``; None (no
        watchdog) makes ``due`` always False, so the frame path can report unconditionally."""
        if interval_s is not None and interval_s <= 0:
            raise ValueError(f"watchdog interval must be positive, got {interval_s}")
        self.interval_s = interval_s
        self.last_frame_at: float | None = None
        self._last_ping: float | None = None
        self._published = False  # a frame went out since the last ping
        self._waits: Counter[Wait] = Counter()

    @property
    def check_every_s(self) -> float | None:
        """How often the feeding task should call ``due`` (None: no watchdog)."""
        if self.interval_s is None:
            return None
        return self.interval_s / WATCHDOG_CHECKS_PER_INTERVAL

    @property
    def waiting_for(self) -> tuple[Wait, ...]:
        """The reasons of the open waits, sorted (for the status line)."""
        return tuple(sorted(self._waits))

    def frame_published(self, now: float) -> None:
        """The frame path handed a frame to LiveKit (``now``: time.monotonic() seconds)."""
        self.last_frame_at = now
        self._published = True

    @contextmanager
    def waiting(self, reason: Wait) -> Iterator[None]:
        """The runner deliberately publishes nothing inside this block: keep feeding."""
        self._waits[reason] += 1
        try:
            yield
        finally:
            self._waits[reason] -= 1
            if self._waits[reason] <= 0:
                del self._waits[reason]

    def due(self, now: float) -> bool:
        """Whether to send WATCHDOG=1 now; True also records ``now`` as the last ping."""
        if self.interval_s is None:
            return False
        if self._last_ping is not None and now - self._last_ping < self.interval_s:
            return False
        if not (self._published or self._waits):
            return False
        self._last_ping = now
        self._published = False
        return True


async def feed_watchdog(notifier: Notifier, gate: WatchdogGate) -> None:
    """Run for the life of the service: send WATCHDOG=1 whenever ``gate.due``.

    Returns at once when the process has no watchdog. This task itself proves only that the
    event loop runs; the gate makes the pings depend on the frame path.
    """
    check_every_s = gate.check_every_s
    if notifier.watchdog_interval_s is None or check_every_s is None:
        return
    while True:
        if gate.due(time.monotonic()):
            notifier.watchdog()
        await asyncio.sleep(check_every_s)
