"""The controller's microphone into the host, end to end: Chromium's fake capture device reads a
WAV of a known tone; the controlling viewer publishes it (E2EE by livekit-client); the runner
subscribes to that track only and plays it into its virtual microphone on a private PulseAudio,
where we record it and check the frequency. A participant without control reaches nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from audioenv import PASSPHRASE, STARTUP_TIMEOUT_S, sound_runner, viewer_token
from audiostack import PulseAudio, dominant_frequency, write_wav
from realenv import CHROMIUM_ARGS, CHROMIUM_PATH, viewer_address, wait_for_viewer

pytestmark = pytest.mark.integration

MIC_TONE_HZ = 660.0
MIC_SOURCE = "desktop_runner_mic"
RECORD_S = 2.0
HEARD_RMS = 0.01  # the WAV is at -6 dBFS (RMS 0.35); Opus and Pulse keep it well above this
SILENT_RMS = 0.001


@pytest.fixture
def pulse():
    with PulseAudio() as server:
        yield server


@pytest.fixture
async def mic_browser(tmp_path) -> AsyncIterator:
    """Headless Chromium whose (fake) microphone plays a 660 Hz tone from a WAV made here."""
    from playwright.async_api import async_playwright

    wav = write_wav(tmp_path / "tone.wav", MIC_TONE_HZ, 5.0)
    args = [*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}"]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM_PATH, headless=True, args=args)
        try:
            yield browser
        finally:
            await browser.close()


async def join(browser, viewer_server, livekit_server, room: str, identity: str, *, control: bool):
    context = await browser.new_context()
    await context.grant_permissions(["microphone"])
    page = await context.new_page()
    await page.goto(viewer_address(viewer_server.url, livekit_server.url))
    await page.wait_for_function("() => window.viewer !== undefined", timeout=10_000)
    token = viewer_token(livekit_server, room, identity, publish=True)
    await page.evaluate("(o) => window.viewer.connect(o)",
                        {"url": livekit_server.url, "token": token, "passphrase": PASSPHRASE, "control": control})
    await wait_for_viewer(page, lambda s: s["control"]["session"], timeout=STARTUP_TIMEOUT_S,
                          what="a control session")
    return page


def host_hears(pulse: PulseAudio) -> tuple[float, float]:
    """(frequency, RMS) of what the host's virtual microphone gives its applications."""
    return dominant_frequency(pulse.record(MIC_SOURCE, RECORD_S))


async def wait_for_host_to_hear(pulse: PulseAudio, timeout: float) -> tuple[float, float]:
    heard = (0.0, 0.0)
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        heard = await asyncio.to_thread(host_hears, pulse)
        if heard[1] > HEARD_RMS and abs(heard[0] - MIC_TONE_HZ) < 5:
            return heard
    raise AssertionError(f"the host's microphone never carried {MIC_TONE_HZ} Hz; last {heard}")


async def test_the_controllers_microphone_reaches_the_hosts_virtual_source(
        livekit_server, xvfb, room_name, pulse, mic_browser, viewer_server):
    env = {"RUNNER_AUDIO__MICROPHONE": "true"}
    with sound_runner(livekit_server, xvfb, room_name, pulse, extra_env=env) as runner:
        runner.wait_for_event("microphone_source_ready", timeout=10)
        assert MIC_SOURCE in pulse.short_list("sources")
        page = await join(mic_browser, viewer_server, livekit_server, room_name, "alice", control=True)
        await wait_for_viewer(page, lambda s: s["control"]["you"], timeout=10, what="control")
        assert (await wait_for_viewer(page, lambda s: True, timeout=1, what="state"))["microphone"]["status"] == "off"
        silent = await asyncio.to_thread(host_hears, pulse)
        assert silent[1] < SILENT_RMS, f"the host heard {silent} before the microphone was switched on"
        await page.evaluate("() => window.viewer.startMicrophone()")
        frequency, rms = await wait_for_host_to_hear(pulse, timeout=20)
        encrypted = await page.evaluate("""() => [...window.viewer.room.localParticipant
            .audioTrackPublications.values()].map((p) => p.isEncrypted)""")
        playing = runner.wait_for_event("microphone_playing", timeout=1)
        # Switched off: the host's microphone falls silent.
        await page.evaluate("() => window.viewer.stopMicrophone()")
        await asyncio.sleep(1.0)
        after = await asyncio.to_thread(host_hears, pulse)
    assert encrypted == [True]
    assert playing["identity"] == "alice"
    print(f"host heard {frequency:.1f} Hz at RMS {rms:.3f}")
    assert after[1] < SILENT_RMS, f"still heard {after} after the microphone was switched off"


async def test_a_microphone_without_control_never_reaches_the_host_until_it_has_control(
        livekit_server, xvfb, room_name, pulse, mic_browser, viewer_server):
    env = {"RUNNER_AUDIO__MICROPHONE": "true"}
    with sound_runner(livekit_server, xvfb, room_name, pulse, extra_env=env) as runner:
        runner.wait_for_event("microphone_source_ready", timeout=10)
        alice = await join(mic_browser, viewer_server, livekit_server, room_name, "alice", control=True)
        await wait_for_viewer(alice, lambda s: s["control"]["you"], timeout=10, what="alice in control")
        bob = await join(mic_browser, viewer_server, livekit_server, room_name, "bob", control=False)
        # The reference viewer refuses; a client of bob's own making publishes anyway.
        refused = await bob.evaluate("() => window.viewer.startMicrophone().then(() => 'started', (e) => e.code)")
        assert refused == "no_control"
        await bob.evaluate("() => window.viewer.room.localParticipant.setMicrophoneEnabled(true)")
        await asyncio.sleep(2.0)  # published, announced to the runner
        frequency, rms = await asyncio.to_thread(host_hears, pulse)
        assert rms < SILENT_RMS, f"bob, not in control, reached the host: {frequency:.1f} Hz at RMS {rms:.4f}"
        assert not any(e.get("event") == "microphone_playing" for e in runner.events())
        # Control moves to bob: the runner follows it, and his microphone now reaches the host.
        await alice.evaluate("() => window.viewer.releaseControl()")
        await bob.evaluate("() => window.viewer.requestControl()")
        await wait_for_host_to_hear(pulse, timeout=20)
        playing = runner.wait_for_event("microphone_playing", timeout=1)
    assert playing["identity"] == "bob"


async def test_a_viewer_without_the_key_never_reaches_the_hosts_microphone(
        livekit_server, xvfb, room_name, pulse, mic_browser, viewer_server):
    """Carol has a join token but another passphrase: her dr.hello never opens a session (the
    runner's SDK cannot decrypt it), so she never gets control, and the microphone she publishes
    anyway (encrypted under her key) is never subscribed, even with nobody else in control."""
    env = {"RUNNER_AUDIO__MICROPHONE": "true"}
    with sound_runner(livekit_server, xvfb, room_name, pulse, extra_env=env) as runner:
        runner.wait_for_event("microphone_source_ready", timeout=10)
        context = await mic_browser.new_context()
        await context.grant_permissions(["microphone"])
        carol = await context.new_page()
        await carol.goto(viewer_address(viewer_server.url, livekit_server.url))
        await carol.wait_for_function("() => window.viewer !== undefined", timeout=10_000)
        token = viewer_token(livekit_server, room_name, "carol", publish=True)
        await carol.evaluate("(o) => window.viewer.connect(o)", {
            "url": livekit_server.url, "token": token, "passphrase": "carol's own passphrase, not the room's",
            "control": True})
        await carol.evaluate("() => window.viewer.room.localParticipant.setMicrophoneEnabled(true)")
        await asyncio.sleep(4.0)
        frequency, rms = await asyncio.to_thread(host_hears, pulse)
        state = await wait_for_viewer(carol, lambda s: True, timeout=1, what="state")
        events = [e.get("event") for e in runner.events()]
    assert rms < SILENT_RMS, f"a viewer without the key reached the host: {frequency:.1f} Hz at RMS {rms:.4f}"
    assert state["control"]["you"] is False
    assert "microphone_playing" not in events
    assert not any(e == "control_changed" for e in events), "nobody got control"
