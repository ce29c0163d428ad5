"""The controller's microphone as a microphone of the host (``audio.microphone``).

The runner joins with auto-subscribe off and subscribes to one track at most: the microphone
publication of the participant who has control, announced as end-to-end encrypted. The SDK
decrypts it with the room's key (a frame that does not decrypt is dropped, never played) and
``pacat`` plays it into a null sink of our own, whose monitor a remapped source turns into a
microphone host applications can pick (``audio.microphone_source``). Control changing hands
switches the subscription at once; nobody in control means no subscription at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass

from livekit import rtc

from runner.audio import pulse
from runner.audio.format import MICROPHONE, SAMPLE_RATE
from runner.audio.pacing import Outage
from runner.config import AudioSettings
from runner.logs import get_logger

log = get_logger(__name__)

PLAYBACK_LATENCY_MS = 30
PLAYER_RETRY_S = 1.0  # without an audio server, the microphone's frames are dropped meanwhile
SOURCE_CHECK_S = 5.0  # how often the virtual microphone is checked for (pactl: ~4 ms)
SINK_SUFFIX = "_sink"


@dataclass(frozen=True)
class MicPublication:
    """What the runner knows of a remote audio publication."""

    identity: str
    sid: str
    microphone: bool  # its source is the microphone
    encrypted: bool  # announced as end-to-end encrypted (GCM)


def wanted_microphone(controller: str | None, publications: Iterable[MicPublication]) -> str | None:
    """The one publication to subscribe to: the controller's encrypted microphone, else none."""
    if controller is None:
        return None
    for p in publications:
        if p.identity == controller and p.microphone and p.encrypted:
            return p.sid
    return None


def virtual_source_modules(source: str) -> list[list[str]]:
    """``pactl load-module`` arguments for the virtual microphone ``source``: a null sink the
    runner plays into, and a source remapped from its monitor (applications list monitors apart
    from microphones; a remapped source is listed as a microphone)."""
    sink = source + SINK_SUFFIX
    return [
        ["module-null-sink", f"sink_name={sink}", f"rate={SAMPLE_RATE}", f"channels={MICROPHONE.channels}",
         "sink_properties=device.description=desktop-runner-microphone-sink"],
        ["module-remap-source", f"master={sink}.monitor", f"source_name={source}",
         f"channels={MICROPHONE.channels}", "source_properties=device.description=desktop-runner-microphone"],
    ]


class HostMicrophone:
    """Follows the controller's microphone in the current room and plays it into the host."""

    def __init__(self, settings: AudioSettings) -> None:
        self.source_name = settings.microphone_source
        self.sink_name = self.source_name + SINK_SUFFIX
        self.server = pulse.resolve_server(settings.server, os.environ, os.getuid())
        self._room: rtc.Room | None = None
        self._controller: str | None = None
        self._playing: tuple[str, asyncio.Task[None]] | None = None  # (track sid, player task)
        self._modules: list[str] = []
        self.outage = Outage()
        self.frames_played = 0

    # --- control and room events -----------------------------------------------------------
    def set_controller(self, identity: str | None) -> None:
        self._controller = identity
        self._reconcile()

    def attach(self, room: rtc.Room) -> None:
        self._room = room
        room.on("track_published", lambda *_: self._reconcile())
        room.on("track_unpublished", lambda *_: self._reconcile())
        room.on("participant_disconnected", lambda *_: self._reconcile())
        room.on("track_subscribed", self._on_subscribed)
        room.on("track_unsubscribed", lambda track, pub, participant: self._stop_playing(pub.sid))
        self._reconcile()

    def detach(self) -> None:
        self._room = None
        self._stop_playing(None)

    def _publications(self) -> list[tuple[MicPublication, rtc.RemoteTrackPublication]]:
        room = self._room
        if room is None:
            return []
        found = []
        for participant in room.remote_participants.values():
            for pub in participant.track_publications.values():
                if pub.kind != rtc.TrackKind.KIND_AUDIO:
                    continue
                info = MicPublication(
                    identity=participant.identity, sid=pub.sid,
                    microphone=pub.source == rtc.TrackSource.SOURCE_MICROPHONE,
                    encrypted=pub.encryption_type == rtc.EncryptionType.GCM)
                found.append((info, pub))
        return found

    def _reconcile(self) -> None:
        """Subscribe to the wanted microphone and to nothing else."""
        pubs = self._publications()
        wanted = wanted_microphone(self._controller, (info for info, _ in pubs))
        for info, pub in pubs:
            want = info.sid == wanted
            if pub.subscribed != want:
                pub.set_subscribed(want)
        if self._playing is not None and self._playing[0] != wanted:
            self._stop_playing(None)

    def _on_subscribed(self, track: rtc.Track, pub: rtc.RemoteTrackPublication,
                       participant: rtc.RemoteParticipant) -> None:
        wanted = wanted_microphone(self._controller, (info for info, _ in self._publications()))
        if pub.sid != wanted:  # control moved on meanwhile: never play it
            pub.set_subscribed(False)
            return
        if self._playing is not None and self._playing[0] == pub.sid:
            return
        self._stop_playing(None)
        task = asyncio.get_running_loop().create_task(self._play(track, participant.identity),
                                                      name="microphone")
        task.add_done_callback(self._player_ended)
        self._playing = (pub.sid, task)
        log.info("microphone_playing", identity=participant.identity, source=self.source_name)

    def _player_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.warning("microphone_failed", error=f"{type(exc).__name__}: {exc}")
            if self._playing is not None and self._playing[1] is task:
                self._playing = None

    def _stop_playing(self, sid: str | None) -> None:
        playing = self._playing
        if playing is None or (sid is not None and playing[0] != sid):
            return
        self._playing = None
        playing[1].cancel()
        log.info("microphone_stopped", source=self.source_name)

    # --- the host side ---------------------------------------------------------------------
    async def keep_source(self) -> None:
        """Keep the virtual microphone in place for as long as the service runs: made at start, so
        host applications can pick it before anyone speaks, and made again after the audio server
        restarted (it forgets loaded modules). Checked every ``SOURCE_CHECK_S``."""
        while True:
            now = asyncio.get_running_loop().time()
            try:
                await self._ensure_source()
            except pulse.PulseUnavailable as exc:
                if self.outage.failed(now)[0]:
                    log.warning("microphone_unavailable", server=self.server, error=str(exc))
            else:
                if self.outage.flowing(now) is not None:
                    log.info("microphone_resumed", server=self.server)
            await asyncio.sleep(SOURCE_CHECK_S)

    async def _ensure_source(self) -> None:
        """Load the null sink and the remapped source unless the server has them (it forgets
        them when it restarts)."""
        sinks = pulse.short_names(await asyncio.to_thread(pulse.pactl, self.server, "list", "short", "sinks"))
        if self.sink_name in sinks:
            return
        self._modules = []
        for args in virtual_source_modules(self.source_name):
            module = await asyncio.to_thread(pulse.pactl, self.server, "load-module", *args)
            self._modules.append(module.strip())
        log.info("microphone_source_ready", source=self.source_name, server=self.server)

    async def _play(self, track: rtc.Track, identity: str) -> None:
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=MICROPHONE.channels)
        proc: asyncio.subprocess.Process | None = None
        try:
            async for event in stream:
                if proc is None or proc.returncode is not None:
                    proc = await self._start_player()
                    if proc is None:
                        continue  # no audio server: this frame is dropped, the next one tries again
                assert proc.stdin is not None
                try:
                    proc.stdin.write(bytes(event.frame.data))
                    await proc.stdin.drain()
                    self.frames_played += 1
                except (BrokenPipeError, ConnectionResetError):
                    proc = None
        finally:
            await stream.aclose()
            if proc is not None and proc.returncode is None:
                proc.kill()
                with contextlib.suppress(Exception):
                    await proc.wait()

    async def _start_player(self) -> asyncio.subprocess.Process | None:
        """A pacat into our sink, or None when that cannot be now (keep_source reports why)."""
        now = asyncio.get_running_loop().time()
        if now < self._retry_at:
            return None
        try:
            await self._ensure_source()
            pulse.check_present(self.server, "pacat")
            return await asyncio.create_subprocess_exec(
                *pulse.playback_argv(self.server, self.sink_name, MICROPHONE, PLAYBACK_LATENCY_MS),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, env=pulse.client_env(self.server))
        except (pulse.PulseUnavailable, OSError):
            self._retry_at = now + PLAYER_RETRY_S
            return None

    _retry_at = 0.0

    async def close(self) -> None:
        """Stop playing and unload the modules this runner loaded."""
        self._stop_playing(None)
        for module in reversed(self._modules):
            with contextlib.suppress(pulse.PulseUnavailable):
                await asyncio.to_thread(pulse.pactl, self.server, "unload-module", module)
        self._modules = []
