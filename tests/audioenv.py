"""Helpers for the sound tests: a private PulseAudio per test, a runner that captures it, and
reading the viewer's ears (``window.viewer.soundPeak``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from audiostack import PulseAudio
from realenv import QUADRANTS, Runner, mint_token, paint

PASSPHRASE = "the runner's passphrase for sound, 2026"
STARTUP_TIMEOUT_S = 30
# A tone is "heard" when the viewer's strongest bin lies this close to it (the analyser's bins are
# 5.9 Hz wide) and is louder than HEARD_DB (the tones are played at -6 dBFS; Opus keeps them
# within a few dB; silence reads below -100 dB).
FREQUENCY_TOLERANCE_HZ = 15.0
HEARD_DB = -60.0
# Silence, or sound that did not decrypt: nothing above this anywhere in the spectrum.
SILENT_DB = -70.0


@contextmanager
def sound_runner(livekit_server: Any, xvfb: Any, room: str, pulse: PulseAudio, *,
                 passphrase: str = PASSPHRASE, extra_env: dict[str, str] | None = None) -> Iterator[Runner]:
    """The runner, as users start it, capturing ``pulse``'s default sink's monitor."""
    paint(xvfb.display, QUADRANTS)
    env = {"RUNNER_AUDIO__SERVER": pulse.server, "RUNNER_LOG__STATUS_INTERVAL_S": "2", **(extra_env or {})}
    proc = Runner.joining(livekit_server, room=room, passphrase=passphrase, display=xvfb.display, extra_env=env)
    with proc:
        proc.wait_for_event("audio_track_published", timeout=STARTUP_TIMEOUT_S)
        proc.wait_for_event("track_published", timeout=STARTUP_TIMEOUT_S)
        yield proc
        print("--- runner log ---")
        print(proc.log_path.read_text(errors="replace")[-6000:])


def viewer_token(livekit_server: Any, room: str, identity: str = "viewer", *, publish: bool = False) -> str:
    return mint_token(livekit_server.api_key, livekit_server.api_secret, room, identity, publish=publish)


async def sound_peak(page: Any) -> dict | None:
    """``{frequency, db}`` of what the viewer receives from the runner, or None without a track."""
    return await page.evaluate("() => window.viewer.soundPeak()")


async def wait_to_hear(page: Any, frequency: float, *, timeout: float) -> float:
    """Seconds until the viewer's strongest frequency is ``frequency``; fails with what it heard."""
    started = time.monotonic()
    peak = None
    while time.monotonic() - started < timeout:
        peak = await sound_peak(page)
        if peak and peak["db"] > HEARD_DB and abs(peak["frequency"] - frequency) <= FREQUENCY_TOLERANCE_HZ:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    state = await page.evaluate("() => ({ ...window.viewer.state })")
    raise AssertionError(f"the viewer never heard {frequency} Hz within {timeout} s; last peak {peak}; "
                         f"state {state}")


async def inbound_audio(page: Any) -> dict:
    """The inbound-rtp stats of the runner's sound track (packets that arrived, decoded or not)."""
    return await page.evaluate("""async () => {
        const room = window.viewer.room;
        const runner = room && room.remoteParticipants.get('desktop-runner');
        if (!runner) return {};
        for (const pub of runner.audioTrackPublications.values()) {
            if (!pub.track) continue;
            const report = await pub.track.getRTCStatsReport();
            let found = {};
            report && report.forEach((s) => { if (s.type === 'inbound-rtp') found = {
                packetsReceived: s.packetsReceived, bytesReceived: s.bytesReceived,
                encrypted: pub.isEncrypted, source: pub.source }; });
            return found;
        }
        return {};
    }""")
