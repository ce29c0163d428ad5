"""The daemon's life, top to bottom: startup -> main loop -> shutdown.

Startup derives the E2EE key, opens the display (a missing display is a clear, immediate
error), makes the control server and binds the metrics endpoint. The main loop is one
``asyncio.TaskGroup``: the connection supervisor (connect with capped backoff, hand the
publisher to the pipeline, rebuild everything after the SDK gives up), the pipeline's capture,
encode and rates tasks, the systemd watchdog, control and metrics (each restarted after a
crash by ``supervise``) and the status line. A crash of any other task stops the group and the
process exits non-zero, logged. Signal handlers only set flags.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import e2ee
from runner.audio.capture import DesktopAudio, make_desktop_audio
from runner.audio.microphone import HostMicrophone
from runner.config import ConfigError, Settings, load_settings, parse_host_port
from runner.control import envelope as control_envelope
from runner.control.inject import Injector
from runner.control.server import ControlServer
from runner.e2ee.passphrase import MIN_PASSPHRASE_CHARS, passphrase_weakness
from runner.logs import get_logger, register_secrets
from runner.media.capture import DisplayError, ScreenGrabber
from runner.media.pipeline import Pipeline, Sealer

if TYPE_CHECKING:
    from runner.metrics import Health, Metrics, MetricValues
from runner.notify import Notifier, Wait, WatchdogGate, feed_watchdog
from runner.publish import RESTARTED, Publisher, SdkKey

log = get_logger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_FATAL = 3  # LiveKit refused this runner for good (livekit.on_fatal = "exit")
# Disconnect reasons that a plain reconnect will not cure: another participant took our identity,
# an operator removed us, the room was deleted. They follow livekit.on_fatal, never a fast loop.
FATAL_REASONS = frozenset({"DUPLICATE_IDENTITY", "PARTICIPANT_REMOVED", "ROOM_DELETED"})
# A connection that lasted this long resets the backoff of the next reconnect.
STABLE_CONNECTION_S = 60.0
CODEC: e2ee.Codec = "h264"


def frame_sealer(ring: e2ee.KeyRing) -> Sealer:
    """Encrypt access units with the ring's current key (read per frame, so rotation applies)."""

    def seal(data: bytes, keyframe: bool) -> bytes:
        return ring.encrypt_frame(data, codec=CODEC, keyframe=keyframe)

    return seal


def _warn_if_weak(passphrase: str) -> None:
    """Log ``weak_passphrase`` (a warning naming the setting and the minimum) for a short passphrase."""
    weakness = passphrase_weakness(passphrase)
    if weakness is not None:
        log.warning("weak_passphrase", setting="e2ee.passphrase", length=len(passphrase),
                    minimum=MIN_PASSPHRASE_CHARS, problem=weakness)


async def _server_answers(url: str) -> bool:
    """Whether the LiveKit server's port accepts a TCP connection now (no request is sent)."""
    from urllib.parse import urlparse

    u = urlparse(url)
    port = u.port or (443 if u.scheme in ("wss", "https") else 80)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(u.hostname, port), timeout=1.0)
    except (TimeoutError, OSError):
        return False
    writer.close()
    return True


def _backoff(attempt: int, initial: float, cap: float) -> float:
    """Capped exponential backoff with +-20 % jitter, so many runners do not retry in step."""
    base = min(cap, initial * 2.0 ** min(attempt, 16))
    return base * random.uniform(0.8, 1.2)


async def supervise(name: str, run: Callable[[], Awaitable[None]], *, initial_s: float = 1.0,
                    cap_s: float = 30.0, max_crashes: int = 5, window_s: float = 300.0) -> None:
    """Run ``run()`` again after a crash, with capped backoff; give up (re-raise, which stops the
    process with a non-zero status) after ``max_crashes`` crashes within ``window_s``."""
    crashes: list[float] = []
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            now = time.monotonic()
            crashes = [t for t in crashes if now - t < window_s] + [now]
            if len(crashes) >= max_crashes:
                log.error("task_gave_up", task=name, crashes=len(crashes), window_s=window_s,
                          error=f"{type(exc).__name__}: {exc}")
                raise
            delay = _backoff(len(crashes) - 1, initial_s, cap_s)
            log.error("task_crashed", task=name, error=f"{type(exc).__name__}: {exc}",
                      restart_in_s=round(delay, 2), exc_info=exc)
            await asyncio.sleep(delay)


class Service:
    def __init__(self, settings: Settings, reload: Callable[[], Settings] | None = None) -> None:
        self.settings = settings
        self._reload = reload
        # Fixed for the life of the process (changing it needs a restart, see _reload_locked).
        self._frame_engine = settings.e2ee.frame_engine
        self.stop = asyncio.Event()
        self.exit_code = EXIT_OK
        self._signals = 0
        self._background: set[asyncio.Task[None]] = set()
        passphrase = settings.e2ee.passphrase
        assert passphrase is not None
        _warn_if_weak(passphrase.get_secret_value())
        self.keys = e2ee.KeyRing()
        self.keys.set_key(passphrase.get_secret_value(), settings.e2ee.key_index)
        # (passphrase, key_index) as last read from the configuration, to tell a real change
        # on SIGHUP from a re-read of the same key.
        self._configured_key = (passphrase.get_secret_value(), settings.e2ee.key_index)
        # What the SDK's key provider must hold now; every new connection uses it.
        self._sdk_key = SdkKey(passphrase.get_secret_value().encode(), settings.e2ee.key_index)
        self._reload_lock = asyncio.Lock()  # two quick SIGHUPs must not pick the same slot
        self.grabber = ScreenGrabber(settings.capture.display, settings.capture.monitor,
                                     cursor=settings.capture.cursor == "picture")
        seal: Sealer = frame_sealer(self.keys) if settings.e2ee.frame_engine == "runner" else (lambda d, k: d)
        self.notifier = Notifier.from_environ()
        self.watchdog = WatchdogGate(self.notifier.watchdog_interval_s)
        self.pipeline = Pipeline(settings, self.grabber, seal, self.watchdog, self.notifier)
        self.control: ControlServer | None = None  # made once the display is open
        self._leaving: Publisher | None = None  # the room to leave when stopping (see _connection_loop)
        self.connects = 0
        self.metrics: Metrics | None = None  # when metrics.address is set
        self.audio: DesktopAudio | None = make_desktop_audio(settings.audio)
        self._audio_muted = settings.audio.muted  # audio.muted as last read (SIGHUP applies it)
        self.microphone: HostMicrophone | None = (
            HostMicrophone(settings.audio) if settings.audio.microphone and settings.control.enabled else None)

    # --- signals: set flags, nothing else ----------------------------------------------------
    def _on_stop_signal(self, signame: str) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second_signal_exit_now", signal=signame)
            os._exit(EXIT_FAILURE)
        log.info("stopping", signal=signame)
        self.stop.set()

    def _on_hup(self) -> None:
        task = asyncio.get_running_loop().create_task(self._apply_reload())
        self._background.add(task)  # keep a reference until done, or the task may vanish
        task.add_done_callback(self._background.discard)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)

    # --- life ----------------------------------------------------------------------------
    async def run(self) -> int:
        self._install_signals()
        try:
            await self.pipeline.open()
        except DisplayError as exc:
            log.error("display_unavailable", error=str(exc))
            self.pipeline.close()
            return EXIT_FAILURE
        width, height = self.grabber.size
        # Made also with control.enabled = false: it follows the monitor layout (a screen that
        # grows or shrinks, a monitor that moves); it then joins no room and injects nothing.
        self.control = await self._make_control()
        if self.microphone is not None:
            self.control.controller_watchers.append(self.microphone.set_controller)
        if self.settings.metrics.address is not None:
            try:
                await self._start_metrics(self.settings.metrics.address)
            except OSError as exc:
                log.error("metrics_unavailable", address=self.settings.metrics.address, error=str(exc))
                self.pipeline.close()
                return EXIT_FAILURE
        log.info(
            "starting",
            display=self.grabber.display,
            capture_backend=self.grabber.backend,
            monitor=self.settings.capture.monitor,
            width=width,
            height=height,
            fps=self.settings.capture.fps,
            frame_engine=self.settings.e2ee.frame_engine,
            key_index=self.keys.current_index,
            key=self.keys.fingerprint(),
        )
        failed = False
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self._connection_loop(), name="connection"),
                    tg.create_task(self.pipeline.capture_loop(), name="capture"),
                    tg.create_task(self.pipeline.encode_loop(), name="encode"),
                    tg.create_task(self.pipeline.rates_loop(), name="rates"),
                    tg.create_task(feed_watchdog(self.notifier, self.watchdog), name="watchdog"),
                ]
                # Control, sound and metrics are restarted on a crash: the picture need not stop for them.
                if self.audio is not None:
                    tasks.append(tg.create_task(supervise("audio", self.audio.run), name="audio"))
                if self.microphone is not None:
                    tasks.append(tg.create_task(supervise("microphone", self.microphone.keep_source),
                                                name="microphone"))
                if self.control is not None:
                    tasks.append(tg.create_task(supervise("control", self.control.run), name="control"))
                if self.metrics is not None:
                    tasks.append(tg.create_task(supervise("metrics", self.metrics.serve), name="metrics"))
                if self.settings.log.status_interval_s > 0:
                    tasks.append(
                        tg.create_task(self.pipeline.status_loop(self.settings.log.status_interval_s), name="status")
                    )
                await self.stop.wait()
                for task in tasks:
                    task.cancel()
        except* Exception as group:
            for error in group.exceptions:
                log.error("task_failed", error=f"{type(error).__name__}: {error}", exc_info=error)
            failed = True
        finally:
            await self._shutdown()
        return EXIT_FAILURE if failed else self.exit_code

    async def _start_metrics(self, address: str) -> None:
        from runner.metrics import Metrics, frame_health

        def health() -> Health:
            publisher = self.pipeline.publisher
            return frame_health(self.pipeline.stats.last_published_at, publisher is not None and publisher.live)

        metrics = self.metrics = Metrics(self.metric_values, health)
        self.pipeline.observe_frames(metrics.observe)
        await metrics.start(*parse_host_port(address))

    def metric_values(self) -> MetricValues:
        """What /metrics reports, read from the live objects at scrape time."""
        from runner.metrics import MetricValues

        s = self.pipeline.stats
        publisher = self.pipeline.publisher
        control = self.control
        return MetricValues(
            captured=s.captured, encoded=s.encoded, published=s.published,
            keyframes=s.keyframes, keyframe_requests=s.keyframe_requests,
            bytes=s.bytes_published, dropped=s.dropped, rejected=s.rejected,
            reconnects=max(0, self.connects - 1),
            input_accepted=control.accepted if control else 0,
            input_rejected=dict(control.rejections.counts) if control else {},
            connected=publisher is not None and publisher.live, bitrate_target=s.bitrate_target,
            fps=self.pipeline.fps, key_index=self.keys.current_index,
            viewers=publisher.subscribers if publisher else 0,
            last_frame_age=(time.monotonic() - s.last_published_at) if s.last_published_at else -1.0,
            frame_engine=self._frame_engine,
        )

    async def _make_control(self) -> ControlServer:
        from runner.control.clipboard import X11Clipboard

        passphrase, index = self._configured_key
        key = await asyncio.to_thread(control_envelope.derive_control_key, passphrase)  # PBKDF2: ~50 ms
        control = ControlServer(self.settings, self.pipeline, Injector(self.grabber.display), X11Clipboard)
        control.set_key(key, index)
        return control

    async def _shutdown(self) -> None:
        self.notifier.stopping()
        if self.control is not None:  # release held keys and buttons before anything else
            try:
                await asyncio.wait_for(self.control.close(), timeout=1.0)
            except (TimeoutError, Exception) as exc:
                log.warning("control_close_failed", error=f"{type(exc).__name__}: {exc}")
        if self.microphone is not None:
            self.microphone.detach()
            try:
                await asyncio.wait_for(self.microphone.close(), timeout=2.0)
            except (TimeoutError, Exception) as exc:
                log.warning("microphone_close_failed", error=f"{type(exc).__name__}: {exc}")
        if self.audio is not None:
            self.audio.detach()
        publisher = self.pipeline.detach() or self._leaving
        self._leaving = None
        if publisher is not None:
            try:
                await asyncio.wait_for(publisher.close(), timeout=2.0)
            except (TimeoutError, Exception) as exc:  # shutting down: report, don't hang
                log.warning("disconnect_failed", error=f"{type(exc).__name__}: {exc}")
        await asyncio.to_thread(self.pipeline.close)
        log.info("stopped")

    async def _sleep_until_reachable(self, delay: float) -> None:
        """Back off for ``delay`` seconds, but if the server was refusing connections, stop as
        soon as it accepts them again (checked once a second): a server that returns is found
        within a second, not at the end of a 30 s backoff."""
        url = self.settings.livekit.url
        assert url is not None
        deadline = time.monotonic() + delay
        refused = not await _server_answers(url)
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(1.0, left))
            if refused and await _server_answers(url):
                log.info("livekit_reachable_again")
                return

    async def _connection_loop(self) -> None:
        lk = self.settings.livekit
        attempt = 0
        while True:
            width, height = self.grabber.size
            key = self._sdk_key
            with self.watchdog.waiting(Wait.LIVEKIT):  # a restart would wait for the same server
                if attempt == 0:
                    self.notifier.status(f"connecting to {lk.url}")
                try:
                    publisher = await Publisher.connect(self.settings, width, height, key)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    delay = _backoff(attempt, lk.retry_initial_s, lk.retry_max_s)
                    log.warning(
                        "connect_failed",
                        url=lk.url,
                        error=f"{type(exc).__name__}: {exc}",
                        attempt=attempt + 1,
                        retry_in_s=round(delay, 2),
                    )
                    self.notifier.status(f"cannot reach {lk.url} ({type(exc).__name__}), "
                                         f"attempt {attempt + 1}, next in {delay:.0f} s")
                    attempt += 1
                    await self._sleep_until_reachable(delay)
                    continue
            # attempt is not reset here: a connection that is dropped at once (e.g. another runner
            # with our identity) must back off further each time; a stable one resets it below.
            self.connects += 1
            connected_at = time.monotonic()
            if self._sdk_key is not key:  # rotated while we were connecting
                publisher.set_sdk_key(self._sdk_key, use_for_frames=self._frame_engine == "sdk")
            self.pipeline.attach(publisher)
            if self.audio is not None:
                publisher.set_audio_muted(self._audio_muted)
                self.audio.attach(publisher.audio_source)
            if self.control is not None and self.settings.control.enabled:
                self.control.attach(publisher.room)
            if self.microphone is not None:
                self.microphone.attach(publisher.room)
            self.notifier.ready(status=f"publishing {width}x{height} from {self.grabber.display} to room {lk.room}")
            # Until closed below; when this task is cancelled (stopping), _shutdown closes it, so
            # viewers see the runner leave at once instead of when the server times it out (~20 s).
            self._leaving = publisher
            try:
                await publisher.disconnected.wait()
            finally:
                self.pipeline.detach()
                if self.audio is not None:
                    self.audio.detach()
                if self.microphone is not None:
                    self.microphone.detach()
                if self.control is not None:
                    self.control.detach()
            reason = publisher.disconnect_reason
            await publisher.close()
            self._leaving = None
            if time.monotonic() - connected_at >= STABLE_CONNECTION_S:
                attempt = 0
            if reason == RESTARTED:
                # The SDK is connected again; the runner leaves its restarted session for a fresh
                # one (runner.publish.RESTARTED) at once: nothing failed that waiting would mend.
                delay = 0.0
            else:
                delay = _backoff(attempt, lk.retry_initial_s, lk.retry_max_s)
                attempt += 1
            if reason in FATAL_REASONS:
                log.error("livekit_fatal", reason=reason, policy=lk.on_fatal,
                          retry_in_s=round(delay, 2) if lk.on_fatal == "retry" else None)
                if lk.on_fatal == "exit":
                    self.exit_code = EXIT_FATAL
                    self.stop.set()
                    return
            else:
                log.warning("livekit_disconnected", reason=reason, retry_in_s=round(delay, 2))
            self.notifier.status(f"disconnected from LiveKit ({reason}), reconnecting in {delay:.0f} s")
            with self.watchdog.waiting(Wait.LIVEKIT):
                await asyncio.sleep(delay)

    # --- SIGHUP --------------------------------------------------------------------------
    async def _apply_reload(self) -> None:
        async with self._reload_lock:
            self.notifier.reloading()
            try:
                await self._reload_locked()
            finally:
                self.notifier.reloaded()

    async def _reload_locked(self) -> None:
        if self._reload is None:
            log.info("reload_ignored", reason="no configuration source to re-read")
            return
        try:
            new = await asyncio.to_thread(self._reload)
        except ConfigError as exc:
            log.error("reload_failed", error=str(exc))
            return
        old = self.settings
        assert new.e2ee.passphrase is not None
        register_secrets(new.secrets())
        passphrase = new.e2ee.passphrase.get_secret_value()
        index = new.e2ee.key_index
        if (passphrase, index) != self._configured_key:
            self._configured_key = (passphrase, index)
            _warn_if_weak(passphrase)
            if index == self.keys.current_index:
                # Same index, new key: move to the next slot so in-flight frames under the old
                # key stay decryptable and viewers can hold both keys (JS rings have 16 slots).
                index = (index + 1) % e2ee.DEFAULT_RING_SIZE
            self._sdk_key = SdkKey(passphrase.encode(), index)
            await asyncio.to_thread(self.keys.set_key, passphrase, index)  # PBKDF2: ~50 ms
            if self.control is not None:
                key = await asyncio.to_thread(control_envelope.derive_control_key, passphrase)
                self.control.set_key(key, index)
            publisher = self.pipeline.publisher
            if publisher is not None:
                publisher.set_sdk_key(self._sdk_key, use_for_frames=self._frame_engine == "sdk")
            self.pipeline.request_keyframe()
            log.info("e2ee_key_rotated", key_index=index, key=self.keys.fingerprint())
        if self.control is not None:
            self.control.update_settings(new)
        # capture.resizable is read at each dr.screen.fit: it applies at once.
        old_capture = old.capture.model_copy(update={"resizable": new.capture.resizable})
        if new.audio.muted != self._audio_muted:
            self._audio_muted = new.audio.muted
            publisher = self.pipeline.publisher
            if publisher is not None:
                publisher.set_audio_muted(new.audio.muted)
            log.info("audio_muted" if new.audio.muted else "audio_unmuted")
        restart_needed = [
            name
            for name in ("livekit", "capture", "encoder", "log")
            if getattr(new, name) != (old_capture if name == "capture" else getattr(old, name))
        ]
        if new.e2ee.frame_engine != old.e2ee.frame_engine:
            restart_needed.append("e2ee.frame_engine")
        if new.control.enabled != old.control.enabled:
            restart_needed.append("control.enabled")
        if new.audio.model_copy(update={"muted": old.audio.muted}) != old.audio:
            restart_needed.append("audio")
        if restart_needed:
            log.warning("reload_needs_restart", sections=restart_needed)


def run_service(config_file: Path | None, overrides: dict[str, Any], settings: Settings) -> int:
    register_secrets(settings.secrets())

    def reload() -> Settings:
        return load_settings(config_file, overrides)

    async def main() -> int:
        return await Service(settings, reload).run()

    return asyncio.run(main())
