"""The host's audio server, PulseAudio or PipeWire's Pulse server, through its command-line
clients (pulseaudio-utils: ``parec``, ``pacat``, ``pactl``).

Command-line clients rather than a client library: no native binding to load into the runner, a
client that hangs or crashes takes only its own process, and a restarted server is met by simply
starting the client again. Every client gets the server explicitly (``--server``), which also
keeps libpulse from auto-spawning a daemon of its own when none runs (it only does that when no
server is named).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from runner.audio.format import SAMPLE_RATE, PcmFormat

DEFAULT_MONITOR = "@DEFAULT_MONITOR@"  # libpulse's name for the default sink's monitor
PACTL_TIMEOUT_S = 5.0
UNIX_PREFIX = "unix:"


class PulseUnavailable(Exception):
    """No audio server to talk to, or no client to talk to it with; ``str()`` says which."""


def resolve_server(configured: str | None, environ: Mapping[str, str], uid: int) -> str:
    """The server to use: ``audio.server``, else ``$PULSE_SERVER``, else the session's socket
    (``$XDG_RUNTIME_DIR/pulse/native``, else ``/run/user/<uid>/pulse/native``), as libpulse
    would find it."""
    if configured:
        return configured
    if environ.get("PULSE_SERVER"):
        return environ["PULSE_SERVER"]
    runtime = environ.get("XDG_RUNTIME_DIR") or f"/run/user/{uid}"
    return f"{UNIX_PREFIX}{runtime}/pulse/native"


def socket_path(server: str) -> Path | None:
    """The socket of a ``unix:`` server (or a bare path), None for a network server."""
    if server.startswith(UNIX_PREFIX):
        return Path(server[len(UNIX_PREFIX):])
    if server.startswith("/"):
        return Path(server)
    return None


def check_present(server: str, tool: str) -> str:
    """The path of ``tool``; raises PulseUnavailable when it is missing or a local server's
    socket does not exist (a network server is only found out by connecting)."""
    path = shutil.which(tool)
    if path is None:
        raise PulseUnavailable(f"{tool} not found (install pulseaudio-utils)")
    sock = socket_path(server)
    if sock is not None and not sock.exists():
        raise PulseUnavailable(f"no audio server at {server}")
    return path


def client_env(server: str) -> dict[str, str]:
    """The environment for a client: ours, with the server named (no auto-spawn)."""
    return {**os.environ, "PULSE_SERVER": server}


def record_argv(server: str, device: str, fmt: PcmFormat, latency_ms: int) -> list[str]:
    """``parec`` writing raw s16le at 48 kHz from ``device`` to stdout."""
    return ["parec", f"--server={server}", f"--device={device}", "--raw", "--format=s16le",
            f"--rate={SAMPLE_RATE}", f"--channels={fmt.channels}", f"--latency-msec={latency_ms}",
            "--client-name=desktop-runner", "--stream-name=desktop audio"]


def playback_argv(server: str, device: str, fmt: PcmFormat, latency_ms: int) -> list[str]:
    """``pacat`` playing raw s16le at 48 kHz from stdin into ``device``."""
    return ["pacat", "--playback", f"--server={server}", f"--device={device}", "--raw",
            "--format=s16le", f"--rate={SAMPLE_RATE}", f"--channels={fmt.channels}",
            f"--latency-msec={latency_ms}", "--client-name=desktop-runner",
            "--stream-name=viewer microphone"]


def pactl(server: str, *args: str) -> str:
    """Run ``pactl`` against ``server``; its output, or PulseUnavailable with its error."""
    check_present(server, "pactl")
    try:
        done = subprocess.run(["pactl", f"--server={server}", *args], capture_output=True, text=True,
                              timeout=PACTL_TIMEOUT_S, env=client_env(server), check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PulseUnavailable(f"pactl {args[0]}: {exc}") from None
    if done.returncode != 0:
        raise PulseUnavailable(f"pactl {args[0]}: {done.stderr.strip() or f'exit status {done.returncode}'}")
    return done.stdout


def short_names(listing: str) -> list[str]:
    """Names from ``pactl list short sinks|sources|modules`` output (the second column)."""
    names = []
    for line in listing.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            names.append(parts[1])
    return names
