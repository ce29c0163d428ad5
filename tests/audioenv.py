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
                jitterBufferMs: 1000 * s.jitterBufferDelay / Math.max(1, s.jitterBufferEmittedCount),
                jitterBufferTargetMs: 1000 * s.jitterBufferTargetDelay / Math.max(1, s.jitterBufferEmittedCount),
                concealedSamples: s.concealedSamples, totalSamplesReceived: s.totalSamplesReceived,
                encrypted: pub.isEncrypted, source: pub.source }; });
            return found;
        }
        return {};
    }""")


# --- flashes and beeps: A/V offset and capture-to-browser latency ---------------------------------

# Installed into the viewer page: watches the shown picture (every decoded frame, through
# requestVideoFrameCallback) for dark -> bright and the runner's sound (a 256-sample analyser,
# 5.3 ms, read every 2 ms) for silence -> tone, and records when each was seen, in the wall-clock
# milliseconds of this machine (performance.timeOrigin + now), so the host's own clock compares.
SYNC_WATCH_JS = """() => {
    const video = document.getElementById('screen');
    const runner = window.viewer.room.remoteParticipants.get('desktop-runner');
    const pub = [...runner.audioTrackPublications.values()].find((p) => p.track);
    const ctx = new AudioContext();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 256;
    ctx.createMediaStreamSource(new MediaStream([pub.track.mediaStreamTrack])).connect(analyser);
    const sync = window.__sync = { video: [], audio: [], bright: false, loud: false };
    const canvas = document.createElement('canvas');
    canvas.width = 16; canvas.height = 16;
    const g = canvas.getContext('2d', { willReadFrequently: true });
    const wall = (t) => performance.timeOrigin + t;
    const onFrame = (now, meta) => {
        g.drawImage(video, 0, 0, 16, 16);
        const d = g.getImageData(0, 0, 16, 16).data;
        let sum = 0;
        for (let i = 0; i < d.length; i += 4) sum += d[i] + d[i + 1] + d[i + 2];
        const luma = sum / (3 * 256);
        if (!sync.bright && luma > 160) { sync.bright = true; sync.video.push(wall(meta.expectedDisplayTime ?? now)); }
        else if (sync.bright && luma < 60) sync.bright = false;
        video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
    const samples = new Float32Array(analyser.fftSize);
    setInterval(() => {
        analyser.getFloatTimeDomainData(samples);
        let sum = 0;
        for (const s of samples) sum += s * s;
        const rms = Math.sqrt(sum / samples.length);
        if (!sync.loud && rms > 0.05) { sync.loud = true; sync.audio.push(wall(performance.now())); }
        else if (sync.loud && rms < 0.005) sync.loud = false;
    }, 2);
    return ctx.state;
}"""

FLASH_INTERVAL_S = 1.5
BEEP_S = 0.3
BEEP_HZ = 1000.0


async def flashes_and_beeps(page: Any, display: str, tone: Any, count: int) -> list[dict[str, float]]:
    """Show a white screen and start a beep at the same moment, ``count`` times (black and silence
    between); returns per event the host's times and when the browser saw and heard it (all in
    wall-clock ms), for the events both seen and heard."""
    state = await page.evaluate(SYNC_WATCH_JS)
    assert state == "running", f"the page's AudioContext is {state}"
    paint(display, (0, 0, 0))
    await asyncio.sleep(FLASH_INTERVAL_S)
    host: list[tuple[float, float]] = []
    for _ in range(count):
        beep_at = tone.play(BEEP_HZ, BEEP_S) * 1000.0
        paint(display, (255, 255, 255))
        flash_at = time.time() * 1000.0
        host.append((beep_at, flash_at))
        await asyncio.sleep(BEEP_S + 0.2)
        paint(display, (0, 0, 0))
        await asyncio.sleep(FLASH_INTERVAL_S - BEEP_S - 0.2)
    await asyncio.sleep(1.0)
    seen = await page.evaluate("() => ({ video: window.__sync.video, audio: window.__sync.audio })")
    t0 = host[0][0]
    print("host (beep, flash):", [(round(b - t0), round(f - t0)) for b, f in host])
    print("browser video:", [round(t - t0) for t in seen["video"]], "audio:", [round(t - t0) for t in seen["audio"]])
    events = []
    for beep_at, flash_at in host:
        video = [t for t in seen["video"] if flash_at - 50 <= t <= flash_at + 1000]
        audio = [t for t in seen["audio"] if beep_at - 50 <= t <= beep_at + 1000]
        # The first onset counts: on a loaded machine a beep can drop out and come back (the
        # browser conceals lost packets), which reads as a second onset within the same beep.
        if video and audio:
            events.append({"beep_at": beep_at, "flash_at": flash_at, "seen": video[0], "heard": audio[0]})
    return events


def av_offsets_ms(events: list[dict[str, float]]) -> list[float]:
    """Sound minus picture, as they reached the viewer, corrected for when each was made on the
    host: positive = sound later than picture."""
    return [(e["heard"] - e["beep_at"]) - (e["seen"] - e["flash_at"]) for e in events]


def audio_latencies_ms(events: list[dict[str, float]]) -> list[float]:
    """Host beep start (into the sink) -> heard in the viewer."""
    return [e["heard"] - e["beep_at"] for e in events]
