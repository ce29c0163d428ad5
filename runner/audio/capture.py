"""Desktop audio: the monitor of the host's default sink (or ``audio.source``), captured by a
``parec`` child in a reader thread, handed to the event loop in 10 ms frames and from there to the
SDK's ``AudioSource`` of the current connection.

The reader thread blocks on the pipe, so the event loop only ever takes whole frames from the
backlog. When the audio server is missing or goes away, ``audio_unavailable`` is logged once, the
thread keeps trying with a capped backoff, and ``audio_resumed`` is logged when sound flows again;
the picture never waits for any of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import subprocess
import threading
import time

from livekit import rtc

from runner.audio import pulse
from runner.audio.format import DESKTOP, FRAME_MS, SAMPLE_RATE, SAMPLES_PER_FRAME
from runner.audio.pacing import Backlog, FrameSlicer, LagGuard, Outage
from runner.config import AudioSettings
from runner.logs import get_logger

log = get_logger(__name__)

# parec's buffer: small, so sound reaches the SDK within a frame or two of being played.
RECORD_LATENCY_MS = 10
# Frames the loop may fall behind before the oldest are dropped: 60 ms of sound.
BACKLOG_FRAMES = 6
READ_BYTES = 4096
# The reader may fall this far behind the sound before the stream is restarted (see LagGuard).
MAX_LAG_S = 0.25
# parec's pipe to us: one page (21 ms of stereo) instead of the default 64 KiB (341 ms). When the
# reader thread is held up (a loaded machine), parec then stops at once and the server drops what
# it cannot deliver; a full 64 KiB pipe would have kept a third of a second of stale sound, and
# that delay for the rest of the stream.
F_SETPIPE_SZ = 1031  # Linux fcntl
PIPE_BYTES = 4096
STOP_WAIT_S = 2.0
SEND_ERROR_LOG_EVERY = 1000  # audio_send_failed: the first, then every 1000th (10 s of frames)
LAGGING = "lagging"  # _read_once's reason when it restarts the stream to drop stale sound


class DesktopAudio:
    """Captures desktop audio for as long as the service runs; ``attach`` the source of each new
    connection, ``detach`` it when the connection ends (frames meanwhile are dropped)."""

    def __init__(self, settings: AudioSettings) -> None:
        self._settings = settings
        self._backlog = Backlog(BACKLOG_FRAMES)
        self._ready = asyncio.Event()
        self._source: rtc.AudioSource | None = None
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.frames_sent = 0
        self.send_errors = 0
        self.outage = Outage()
        self.lag_resets = 0
        self.server = pulse.resolve_server(settings.server, os.environ, os.getuid())

    @property
    def device(self) -> str:
        return self._settings.source or pulse.DEFAULT_MONITOR

    def attach(self, source: rtc.AudioSource | None) -> None:
        self._backlog.clear()
        self._source = source

    def detach(self) -> None:
        self._source = None

    async def run(self) -> None:
        """Start the reader thread and feed its frames to the attached source until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        reader = threading.Thread(target=self._read_forever, name="audio-capture", daemon=True)
        reader.start()
        try:
            while True:
                await self._ready.wait()
                frame = self._backlog.take()
                if frame is None:
                    self._ready.clear()
                    continue
                source = self._source
                if source is None:
                    continue
                try:
                    await source.capture_frame(
                        rtc.AudioFrame(frame, SAMPLE_RATE, DESKTOP.channels, SAMPLES_PER_FRAME))
                except Exception as exc:  # the connection closing under us, or the SDK refusing
                    self.send_errors += 1
                    if self._source is source and self.send_errors % SEND_ERROR_LOG_EVERY == 1:
                        log.warning("audio_send_failed", error=f"{type(exc).__name__}: {exc}",
                                    count=self.send_errors)
                    continue
                self.frames_sent += 1
        finally:
            self._stop.set()
            self._kill_child()
            await asyncio.to_thread(reader.join, STOP_WAIT_S)

    # --- the reader thread -------------------------------------------------------------------
    def _deliver(self, frames: list[bytes]) -> None:
        """On the loop: queue frames (dropping the oldest beyond the backlog) and wake the sender."""
        for frame in frames:
            self._backlog.put(frame)
        self._ready.set()

    def _read_forever(self) -> None:
        slicer = FrameSlicer(DESKTOP.frame_bytes)
        guard = LagGuard(FRAME_MS / 1000, MAX_LAG_S)
        while not self._stop.is_set():
            error = self._read_once(slicer, guard)
            if self._stop.is_set():
                return
            if error == LAGGING:
                self.lag_resets += 1
                if self.lag_resets == 1 or self.lag_resets % 100 == 0:
                    log.warning("audio_lag_reset", max_lag_s=MAX_LAG_S, count=self.lag_resets)
                continue
            first, delay = self.outage.failed(time.monotonic())
            if first:
                log.warning("audio_unavailable", server=self.server, device=self.device, error=error,
                            retry="every few seconds; video is not affected")
            self._stop.wait(delay)

    def _read_once(self, slicer: FrameSlicer, guard: LagGuard) -> str:
        """One life of a parec child: read until it ends; returns why it ended."""
        slicer.reset()
        guard.reset()
        try:
            pulse.check_present(self.server, "parec")
            argv = pulse.record_argv(self.server, self.device, DESKTOP, RECORD_LATENCY_MS)
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=pulse.client_env(self.server))
        except (pulse.PulseUnavailable, OSError) as exc:
            return str(exc)
        self._proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        fd = proc.stdout.fileno()
        with contextlib.suppress(OSError):  # not Linux, or a kernel without it: the default pipe
            fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES)
        loop = self._loop
        assert loop is not None
        try:
            while not self._stop.is_set():
                chunk = os.read(fd, READ_BYTES)
                if not chunk:
                    break
                frames = slicer.push(chunk)
                if guard.behind(time.monotonic(), len(frames)):
                    return LAGGING
                if frames:
                    ended = self.outage.flowing(time.monotonic())
                    if ended is not None:
                        log.info("audio_resumed", server=self.server, device=self.device,
                                 after_s=round(ended, 1))
                    try:
                        loop.call_soon_threadsafe(self._deliver, frames)
                    except RuntimeError:  # the loop closed: the service is stopping
                        return "stopping"
        finally:
            self._kill_child()
            stderr = proc.stderr.read().decode(errors="replace").strip()
            proc.stdout.close()
            proc.stderr.close()
        lines = stderr.splitlines()
        return lines[-1] if lines else f"parec ended with status {proc.returncode}"

    def _kill_child(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def make_desktop_audio(settings: AudioSettings) -> DesktopAudio | None:
    """The capture for these settings, or None with ``audio.enabled = false``."""
    return DesktopAudio(settings) if settings.enabled else None


