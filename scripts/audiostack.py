"""A private PulseAudio server and tones for the audio tests, the benchmark and the demo.

``PulseAudio`` starts the Debian ``pulseaudio`` daemon in a temporary directory of its own (its own
socket, runtime and state directories, no D-Bus, no auto-spawn, no other client's server touched),
with a null sink as the default sink: what is played into it is what the runner captures from its
monitor. ``Tone`` writes sine waves into a sink through one long-lived ``pacat``, so a tone starts
within a few milliseconds of being asked for. ``dominant_frequency`` is the FFT check the tests use
on recorded PCM.
"""

from __future__ import annotations

import fcntl
import math
import os
import shutil
import subprocess
import threading
import time
import wave
from pathlib import Path

import numpy as np

from devstack import ComponentError, _ManagedProcess, _wait_until

SAMPLE_RATE = 48_000
DESKTOP_SINK = "desktop"
PLAYBACK_LATENCY_MS = 5
F_SETPIPE_SZ = 1031  # Linux fcntl: set a pipe's capacity
PIPE_BYTES = 4096


class PulseAudio(_ManagedProcess):
    """``pulseaudio`` on a private unix socket; ``.server`` is its address for clients
    (``unix:/...``), the runner's ``audio.server``. ``restart()`` stops and starts it on the
    same socket, as an audio server that crashed and came back."""

    name = "pulseaudio"

    def __init__(self, *, startup_timeout: float = 10.0) -> None:
        super().__init__()
        if shutil.which("pulseaudio") is None:
            raise ComponentError("pulseaudio not found: install the Debian packages pulseaudio and "
                                 "pulseaudio-utils (scripts/setup.sh does)")
        self.socket = self._tmp / "native"
        self.server = f"unix:{self.socket}"
        self._timeout = startup_timeout
        (self._tmp / "runtime").mkdir(mode=0o700)
        (self._tmp / "home").mkdir()
        script = self._tmp / "default.pa"
        script.write_text(
            f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket}\n"
            f"load-module module-null-sink sink_name={DESKTOP_SINK} rate={SAMPLE_RATE} channels=2\n"
            f"set-default-sink {DESKTOP_SINK}\n")
        self._script = script
        self.start()

    def env(self) -> dict[str, str]:
        """An environment whose Pulse clients find only this server."""
        return {**os.environ, "PULSE_SERVER": self.server, "HOME": str(self._tmp / "home"),
                "XDG_RUNTIME_DIR": str(self._tmp / "runtime")}

    def start(self) -> None:
        env = {**self.env(), "XDG_CONFIG_HOME": str(self._tmp / "home")}
        env.pop("PULSE_SERVER")
        # -n: no default script, only ours; no exit on idle; realtime and high priority off
        # (a test machine need not grant them).
        self._spawn(["pulseaudio", "-n", "-F", str(self._script), "--daemonize=no", "--exit-idle-time=-1",
                     "--use-pid-file=no", "--system=no", "--realtime=no", "--high-priority=no",
                     "--log-target=stderr", "--log-level=notice"], env=env)
        _wait_until(lambda: self.socket.exists() and self.answers(), self._timeout, "pulseaudio",
                    self._proc, self.log_path)
        self._warm_up()

    def _warm_up(self) -> None:
        """Read one sample from the sink's monitor: the first recording stream of a new server
        takes about 2 s to deliver anything (measured: 1.95 s, then 8 ms for every later one),
        which would otherwise count against whatever the test measures first."""
        proc = subprocess.Popen(["parec", f"--server={self.server}", f"--device={DESKTOP_SINK}.monitor",
                                 "--raw", "--latency-msec=10"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=self.env())
        try:
            assert proc.stdout is not None
            proc.stdout.read(1)
        finally:
            proc.kill()
            proc.wait()

    def restart(self, down_s: float = 0.0) -> None:
        """Stop the server, wait ``down_s`` seconds, start it again on the same socket."""
        self.stop()
        self.socket.unlink(missing_ok=True)
        time.sleep(down_s)
        self.start()

    def answers(self) -> bool:
        return subprocess.run(["pactl", f"--server={self.server}", "info"], capture_output=True,
                              timeout=5, env=self.env(), check=False).returncode == 0

    def pactl(self, *args: str) -> str:
        done = subprocess.run(["pactl", f"--server={self.server}", *args], capture_output=True, text=True,
                              timeout=10, env=self.env(), check=False)
        if done.returncode != 0:
            raise ComponentError(f"pactl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def short_list(self, kind: str) -> list[str]:
        """Names of ``kind`` (sinks, sources, ...) as ``pactl list short`` gives them."""
        return [line.split("\t")[1] for line in self.pactl("list", "short", kind).splitlines()
                if "\t" in line]

    def record(self, device: str, seconds: float, channels: int = 1, *, timeout: float = 30.0) -> np.ndarray:
        """``seconds`` of s16le from ``device`` (a source), counted from the first sample that
        arrives (a loaded machine may take a while to start the stream), as float samples of the
        first channel."""
        want = int(seconds * SAMPLE_RATE) * 2 * channels
        proc = subprocess.Popen(
            ["parec", f"--server={self.server}", f"--device={device}", "--raw", "--format=s16le",
             f"--rate={SAMPLE_RATE}", f"--channels={channels}", "--latency-msec=20"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env())
        data = bytearray()
        deadline = time.monotonic() + timeout
        try:
            assert proc.stdout is not None
            while len(data) < want and time.monotonic() < deadline:
                chunk = proc.stdout.read1(want - len(data))
                if not chunk:
                    break
                data += chunk
        finally:
            proc.kill()
            proc.wait()
        whole = len(data) // (2 * channels) * 2 * channels
        samples = np.frombuffer(bytes(data[:whole]), dtype="<i2")
        return samples.reshape(-1, channels)[:, 0].astype(np.float64) / 32768.0


def sine(frequency: float, seconds: float, *, amplitude: float = 0.5, channels: int = 2,
         phase_samples: int = 0) -> bytes:
    """s16le samples of a sine at 48 kHz, the same on every channel."""
    n = int(seconds * SAMPLE_RATE)
    t = (np.arange(n) + phase_samples) / SAMPLE_RATE
    mono = (amplitude * 32767 * np.sin(2 * math.pi * frequency * t)).astype("<i2")
    return np.repeat(mono, channels).tobytes()


def write_wav(path: Path, frequency: float, seconds: float, *, amplitude: float = 0.5) -> Path:
    """A mono 48 kHz 16-bit WAV of a sine (Chromium's --use-file-for-fake-audio-capture reads it)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(sine(frequency, seconds, amplitude=amplitude, channels=1))
    return path


class Tone:
    """One ``pacat`` into ``sink`` that plays silence until told to play a tone; the tone reaches
    the sink within about ``PLAYBACK_LATENCY_MS`` of ``play``."""

    CHUNK_S = 0.005

    def __init__(self, pulse: PulseAudio, sink: str = DESKTOP_SINK) -> None:
        self._proc = subprocess.Popen(
            ["pacat", "--playback", f"--server={pulse.server}", f"--device={sink}", "--raw", "--format=s16le",
             f"--rate={SAMPLE_RATE}", "--channels=2", f"--latency-msec={PLAYBACK_LATENCY_MS}",
             "--stream-name=test tone"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=pulse.env())
        # A pipe holds 64 KiB by default: 340 ms of this sound, which a writer paced by the clock
        # fills while pacat connects and which then delays every tone. One page (21 ms) instead:
        # the writer blocks as soon as pacat falls behind.
        assert self._proc.stdin is not None
        fcntl.fcntl(self._proc.stdin.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
        self._frequency = 0.0
        self._phase = 0
        self._until = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def play(self, frequency: float, seconds: float = 3600.0) -> float:
        """Play ``frequency`` Hz (0: silence) for ``seconds``; returns the wall-clock time it starts."""
        self._phase = 0
        self._until = time.time() + seconds
        self._frequency = frequency
        return time.time()

    def _feed(self) -> None:
        assert self._proc.stdin is not None
        chunk = int(self.CHUNK_S * SAMPLE_RATE)
        next_at = time.monotonic()
        while not self._stop.is_set():
            freq = self._frequency if time.time() < self._until else 0.0
            data = sine(freq, self.CHUNK_S, phase_samples=self._phase) if freq else bytes(chunk * 4)
            self._phase += chunk
            try:
                self._proc.stdin.write(data)
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                return
            next_at += self.CHUNK_S
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.1:  # fell far behind (a loaded machine): do not burst to catch up
                next_at = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        try:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        except BrokenPipeError:
            pass
        self._proc.kill()
        self._proc.wait()

    def __enter__(self) -> Tone:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def dominant_frequency(samples: np.ndarray) -> tuple[float, float]:
    """(frequency in Hz of the strongest bin, RMS level) of float samples at 48 kHz."""
    if len(samples) == 0:
        return 0.0, 0.0
    windowed = samples * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(windowed))
    spectrum[0] = 0.0
    peak = int(np.argmax(spectrum))
    return peak * SAMPLE_RATE / len(samples), float(np.sqrt(np.mean(samples ** 2)))
