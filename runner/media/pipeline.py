"""The frame path: capture -> encode -> encrypt -> publish.

Two tasks on the event loop, each handing its blocking work to its own single-thread executor:
the capture task grabs at a steady ``capture.fps`` into a one-slot mailbox, the encode task
takes the newest picture, encodes and encrypts it off the loop, and hands it to the publisher.
A grab therefore overlaps the previous frame's encode, and when encoding falls behind the
oldest picture is dropped, never queued (latency beats completeness on a remote desktop).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from runner.config import Settings
from runner.logs import get_logger
from runner.media.capture import CapturedFrame, DisplayError, ScreenGrabber
from runner.media.encode import AccessUnit, EncoderError, H264Encoder, choose_codec
from runner.notify import Notifier, WatchdogGate
from runner.publish import Publisher

log = get_logger(__name__)

# Follow the receivers' bitrate target only when it moved by more than this fraction, so the
# encoder is not reconfigured on every wobble of the estimate.
BITRATE_HYSTERESIS = 0.15
DISPLAY_RETRY_S = 1.0
# A requested IDR is sent again this much later (see Pipeline._wants_keyframe).
KEYFRAME_ECHO_S = 0.3
# A still screen is sent again this often (a tiny delta frame), so the track never looks dead.
IDLE_REFRESH_S = 1.0
# While waiting on a still screen, LiveKit's keyframe requests are collected this often.
IDLE_POLL_S = 0.1
# After a change on an otherwise still screen, one more frame follows this much later. Measured
# (bench input-to-photon, skip_unchanged): the runner handed every change to LiveKit within
# 10-30 ms, yet about 1 change in 20 reached Chromium only with the next frame, the idle refresh
# a second later (the receiver seems to learn that a frame is complete, or that its last
# packet is missing, only from the next frame's packets). A trailing frame bounds that wait.
TRAILING_FRAME_S = 0.05

@dataclass(frozen=True)
class FrameTimes:
    """Where one published frame's time went, in seconds (for metrics histograms)."""

    capture_s: float
    convert_s: float
    encode_s: float  # libx264 only, without the conversion
    encrypt_s: float
    handoff_s: float = 0.0  # EncodedVideoSource.capture_frame: into the SDK's send path


Sealer = Callable[[bytes, bool], bytes]
"""Encrypts one access unit (data, keyframe) for the wire; identity for the SDK engine."""


@dataclass
class Stats:
    """Counters since start; the status line reports their rates over each interval."""

    captured: int = 0
    unchanged: int = 0  # ticks skipped because nothing changed on screen
    repeated: int = 0  # still-screen refreshes sent as skip pictures
    published: int = 0
    rejected: int = 0
    dropped: int = 0
    keyframes: int = 0
    keyframe_requests: int = 0
    bytes_published: int = 0
    encode_s: float = 0.0
    encoded: int = 0
    bitrate_target: int = 0
    last_published_at: float = field(default=0.0)

    def snapshot(self) -> Stats:
        return Stats(**self.__dict__)


class Pipeline:
    """Runs the frame path for whichever Publisher is attached (none: it idles)."""

    def __init__(self, settings: Settings, grabber: ScreenGrabber, seal: Sealer,
                 watchdog: WatchdogGate | None = None, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.grabber = grabber
        self.seal = seal
        # Fed by every frame handed to LiveKit; WatchdogGate(None)/Notifier(None) do nothing.
        self.watchdog = watchdog if watchdog is not None else WatchdogGate(None)
        self.notifier = notifier if notifier is not None else Notifier(None)
        self.stats = Stats(bitrate_target=settings.encoder.bitrate)
        self.publisher: Publisher | None = None
        self._attached = asyncio.Event()
        self._new_frame = asyncio.Event()
        self._latest: CapturedFrame | None = None
        self._force_keyframe = True
        self._keyframe_requested = False  # LiveKit asked; collected by _poll_feedback
        self._watch: Any = None  # runner.media.damage.ChangeWatch, on the capture thread
        self._echo_keyframe_at: float | None = None
        self._trailing_at: float | None = None  # see TRAILING_FRAME_S
        self._grab_changed = False  # the last grab saw a change on screen (capture thread)
        self._echo_keyframes = settings.e2ee.frame_engine == "runner"
        # Skipping still ticks needs the runner's frame engine: Chrome drops some SDK-encrypted
        # IDRs (docs/e2ee.md) and then recovers only from a steady stream of frames (measured:
        # with sparse frames a change often did not show within 5 s).
        self.skip_unchanged = settings.capture.skip_unchanged and settings.e2ee.frame_engine == "runner"
        self._encoder: H264Encoder | None = None
        self._codec: str | None = None  # chosen by the first encoder opened (encoder.codec = auto)
        self.fps = settings.capture.fps
        self.max_size = (0, 0)  # (width, height) the picture is scaled to fit; 0 = no limit
        self.bitrate_cap = settings.encoder.max_bitrate  # a viewer may lower it (dr.quality.set)
        self._capture_pool = ThreadPoolExecutor(1, thread_name_prefix="capture")
        self._encode_pool = ThreadPoolExecutor(1, thread_name_prefix="encode")
        self.observe: Callable[[FrameTimes], None] | None = None  # metrics, when enabled

    # --- publisher hand-over (called by the service) -------------------------------------
    def attach(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self._force_keyframe = True  # every (re)publish starts with an IDR
        self._attached.set()

    def detach(self) -> None:
        self.publisher = None
        self._attached.clear()

    def request_keyframe(self) -> None:
        self._force_keyframe = True

    async def select_region(self, left: int, top: int, width: int, height: int) -> tuple[int, int]:
        """Capture another rectangle (a monitor) from the next frame on; returns the new picture
        size. The encoder follows the size on its own, starting with an IDR; no reconnect."""
        await self.run_in_capture_thread(lambda: self.grabber.select(left, top, width, height))
        self._take_latest()
        self._force_keyframe = True
        return self.output_size(*self.grabber.size)

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """The encoded size for a captured size: scaled down to fit ``max_size``, even."""
        max_w, max_h = self.max_size
        scale = min(max_w / width if max_w else 1.0, max_h / height if max_h else 1.0, 1.0)
        return max(2, int(width * scale) & ~1), max(2, int(height * scale) & ~1)

    async def run_in_capture_thread(self, fn: Callable[[], object]) -> object:
        return await asyncio.get_running_loop().run_in_executor(self._capture_pool, fn)

    # --- tasks ---------------------------------------------------------------------------
    async def capture_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = time.monotonic()
        while True:
            await self._attached.wait()
            self._poll_feedback()
            must = self._must_grab(time.monotonic())
            try:
                frame = await loop.run_in_executor(self._capture_pool, self._grab_if_changed, must)
            except DisplayError as exc:
                if not await self._follow_resize(str(exc)):
                    await self._recover_display(str(exc))
                next_at = time.monotonic()
                continue
            if frame is None:  # nothing changed on screen: nothing to grab, encode or send
                self.stats.unchanged += 1
                if await self._wait_for_damage():
                    next_at = time.monotonic()  # grab now: a change ends the wait at once
                    continue
                next_at = self._sleep_until_next(next_at)
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                continue
            self.stats.captured += not frame.repeat
            now = time.monotonic()
            if self._grab_changed:  # the screen changed: a trailing frame follows
                self._trailing_at = now + TRAILING_FRAME_S
            elif self._trailing_due(now):
                self._trailing_at = None  # this was it
            if self._take_latest() is not None:
                self.stats.dropped += 1
            self._latest = frame
            self._new_frame.set()
            next_at = self._sleep_until_next(next_at)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def _sleep_until_next(self, next_at: float) -> float:
        """The next tick; after falling behind, restart the clock instead of bursting."""
        next_at += 1.0 / self.fps
        return next_at if next_at > time.monotonic() else time.monotonic()

    def _poll_feedback(self) -> None:
        """Collect LiveKit's keyframe requests and bitrate target on every tick, also when the
        screen is still, so a request is answered within a tick."""
        publisher = self.publisher
        if publisher is None:
            return
        feedback = publisher.take_feedback()
        if publisher.republished:
            publisher.republished = False
            self._force_keyframe = True
        if feedback.keyframe:
            self.stats.keyframe_requests += 1
            self._keyframe_requested = True
        if feedback.target_bitrate is not None:
            self._follow_target(feedback.target_bitrate)

    async def _wait_for_damage(self) -> bool:
        """On a still screen, sleep until the X server reports a change instead of asking it
        every tick (idle CPU at 1080p60: 9 % -> see the README's benchmark table). LiveKit's
        feedback and the other reasons to grab are still checked every IDLE_POLL_S, on the
        loop, without waking the capture thread. False if a change cannot be waited for."""
        fd = self._watch.wait_fd() if self._watch is not None else None
        if fd is None:
            return False
        loop = asyncio.get_running_loop()
        damaged = False
        waiter: asyncio.Future[None] | None = None

        def wake(by_damage: bool) -> None:
            nonlocal damaged
            damaged = damaged or by_damage
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

        # A future and a timer per poll: asyncio.wait_for would make a task and cancel it on
        # every timeout, several times the cost, ten times a second for as long as it is still.
        loop.add_reader(fd, wake, True)
        try:
            while not damaged and self.publisher is not None:
                self._poll_feedback()
                if self._must_grab(time.monotonic()):
                    break
                timeout = IDLE_POLL_S
                if self._trailing_at is not None:
                    timeout = min(timeout, max(0.0, self._trailing_at - time.monotonic()))
                waiter = loop.create_future()
                timer = loop.call_later(timeout, wake, False)
                try:
                    await waiter
                finally:
                    timer.cancel()
        finally:
            loop.remove_reader(fd)
        return True

    def _must_grab(self, now: float) -> bool:
        """Whether this tick needs a picture even if nothing changed on screen."""
        stale = now - self.stats.last_published_at >= IDLE_REFRESH_S
        return self._needs_keyframe(now) or stale or self._trailing_due(now)

    def _trailing_due(self, now: float) -> bool:
        return self._trailing_at is not None and now >= self._trailing_at

    def _needs_keyframe(self, now: float) -> bool:
        """Whether the next frame must be an IDR (forced, requested, or an echo due)."""
        echo_due = self._echo_keyframe_at is not None and now >= self._echo_keyframe_at
        return self._force_keyframe or self._keyframe_requested or echo_due

    def _grab_if_changed(self, must: bool) -> CapturedFrame | None:
        """Capture thread: a picture, or None when the screen did not change since the last one,
        or (a still screen's refresh) a repeat of the last one, which costs no grab and no
        encode when the encoder can write it (runner.media.h264)."""
        watch = self._watch
        self._grab_changed = not must
        if watch is not None and self.skip_unchanged:
            changed = self._grab_changed = watch.changed()  # always asked, so it tracks every change
            if not changed and not must:
                return None
            encoder = self._encoder  # read across threads: a stale answer only costs a real frame
            now = time.monotonic()
            # Only the refresh of a still screen: a trailing frame stays a real one. Measured
            # (bench input-to-photon, 30 trials a side, twice): with skip pictures as trailing
            # frames too, p50 rose from 35-39 to 46-53 ms; why is not known (Chromium's frame-size
            # based jitter estimate is a suspect).
            if (not changed and not self._trailing_due(now) and encoder is not None and encoder.can_repeat
                    and not self._needs_keyframe(now)
                    and self.output_size(*self.grabber.size) == (encoder.width, encoder.height)):
                return CapturedFrame.again()
        return self.grabber.grab_picture()

    def _take_latest(self) -> CapturedFrame | None:
        """Empty the mailbox; a picture nobody will encode goes back to the grabber."""
        frame, self._latest = self._latest, None
        if frame is not None:
            frame.release()
        return frame

    def open_change_watch(self) -> None:
        """Capture thread: watch the display for changes (XDamage); reopened after display loss."""
        from runner.media.damage import ChangeWatch

        if self._watch is not None:
            self._watch.close()
        self._watch = ChangeWatch(self.grabber.display, cursor=self.settings.capture.cursor)

    async def _follow_resize(self, reason: str) -> bool:
        """A grab failed: if the X server is still there with a screen of another size (xrandr,
        a resized virtual screen), follow it at once, logged at info level (``screen_resized``),
        instead of the lost-display path (an error and a second's pause). False if the display
        does not answer (it is lost) or its screen kept its size (an unexplained failure: the
        lost-display path logs it and backs off)."""
        before = self.grabber.screen_size
        try:
            await self.run_in_capture_thread(self.grabber.open)
        except DisplayError:
            return False
        after = self.grabber.screen_size
        if before is None or after == before:
            return False
        log.info("screen_resized", display=self.grabber.display, screen=after, previous=before,
                 size=self.grabber.size, reason=reason)
        await self._resume()
        return True

    async def _resume(self) -> None:
        """Capture works again (display back or resized): watch it for changes, say so, IDR."""
        if self.skip_unchanged:
            await self.run_in_capture_thread(self.open_change_watch)
        width, height = self.grabber.size
        self.notifier.status(f"publishing {width}x{height} from {self.grabber.display}")
        self._force_keyframe = True

    async def _recover_display(self, reason: str) -> None:
        log.error("capture_lost", reason=reason, retry_every_s=DISPLAY_RETRY_S)
        self.notifier.status(f"X display {self.grabber.display} lost, retrying every {DISPLAY_RETRY_S:g} s")
        loop = asyncio.get_running_loop()
        with self.watchdog.waiting("display"):  # a restart would wait for the same display
            while True:
                await asyncio.sleep(DISPLAY_RETRY_S)
                try:
                    await loop.run_in_executor(self._capture_pool, self.grabber.open)
                except DisplayError:
                    continue
                break
        log.info("capture_resumed", display=self.grabber.display, size=self.grabber.size)
        await self._resume()

    async def encode_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._new_frame.wait()
            self._new_frame.clear()
            frame, self._latest = self._latest, None
            publisher = self.publisher
            if frame is None or publisher is None:
                if frame is not None:
                    frame.release()
                continue
            if frame.repeat and self._needs_keyframe(time.monotonic()):
                continue  # an IDR became due meanwhile: the next tick grabs a real picture
            # LiveKit's feedback was collected by the capture tick that grabbed this picture.
            requested, self._keyframe_requested = self._keyframe_requested, False
            keyframe = self._wants_keyframe(requested, time.monotonic())
            sealed = await loop.run_in_executor(
                self._encode_pool, self._encode_and_seal, frame, keyframe, self.stats.bitrate_target
            )
            if sealed is None:
                continue
            au, payload, encrypt_s = sealed
            if self.publisher is not publisher:
                continue  # the connection changed while we encoded; the next frame is an IDR
            handoff_started = time.perf_counter()
            accepted = publisher.push(
                payload,
                keyframe=au.keyframe,
                width=au.width,
                height=au.height,
                timestamp_us=publisher.next_timestamp_us(frame.captured_at),
            )
            handoff_s = time.perf_counter() - handoff_started
            self._count(au, payload, accepted, repeat=frame.repeat)
            self.watchdog.frame_published(time.monotonic())  # accepted or not: the path works
            if accepted:
                if self.observe is not None and not frame.repeat:
                    self.observe(FrameTimes(frame.grab_s, frame.convert_s + au.convert_s, au.encode_s - au.convert_s,
                                            encrypt_s, handoff_s))

    def _wants_keyframe(self, requested: bool, now: float) -> bool:
        """Whether the next picture must be an IDR.

        Forced ones (start, republish, display back, key rotation) and requested ones (PLI/FIR,
        new subscribers) are sent at once. Each requested one is echoed once KEYFRAME_ECHO_S
        later: right after a viewer joins, Chrome sometimes decodes the first IDR and then drops
        the following delta frames ("has no GoP"), freezing until it asks again 3 s later. A
        second IDR shortly after ends that freeze (measured: 1 join in 4 froze for 3.5 s without
        the echo, none in 30 with it). An IDR costs a few hundred kB at 1080p, on joins and losses
        only. Not with the sdk engine: Chrome drops half of the SDK-encrypted IDRs (docs/e2ee.md),
        each dropped one freezes the picture, so more IDRs there means more freezes.
        """
        echo = self._echo_keyframe_at is not None and now >= self._echo_keyframe_at
        if requested and self._echo_keyframes:
            self._echo_keyframe_at = now + KEYFRAME_ECHO_S
        elif echo:
            self._echo_keyframe_at = None
        keyframe = self._force_keyframe or requested or echo
        self._force_keyframe = False
        return keyframe

    def _follow_target(self, target: int) -> None:
        enc = self.settings.encoder
        target = min(max(target, enc.min_bitrate), self.bitrate_cap)
        current = self.stats.bitrate_target
        if abs(target - current) > BITRATE_HYSTERESIS * current:
            log.debug("bitrate_target", bitrate=target, previous=current)
            self.stats.bitrate_target = target

    def _encode_and_seal(self, frame: CapturedFrame, keyframe: bool,
                         bitrate: int) -> tuple[AccessUnit, bytes, float] | None:
        """Encode thread: (re)open the encoder for this size, encode, encrypt. A pooled picture
        goes back to the grabber once encoded, or when encoding failed. None: a repeat the
        encoder could not write (nothing is sent; the next tick grabs a real picture)."""
        try:
            au = self._encode(frame, keyframe, bitrate)
        finally:
            frame.release()
        if au is None:
            return None
        started = time.perf_counter()
        payload = self.seal(au.data, au.keyframe)
        return au, payload, time.perf_counter() - started

    def _encode(self, frame: CapturedFrame, keyframe: bool, bitrate: int) -> AccessUnit | None:
        enc = self._encoder
        if frame.repeat:  # the screen did not change (see _grab_if_changed)
            return enc.repeat() if enc is not None else None
        picture = frame.picture if frame.picture is not None else frame.pixels
        width, height = self.output_size(frame.width, frame.height)
        if enc is None or (enc.width, enc.height, enc.fps) != (width, height, self.fps):
            enc = self._encoder = self._open_encoder(width, height, bitrate)
            keyframe = True
        elif enc.bitrate != bitrate:
            enc.set_bitrate(bitrate)
        try:
            return enc.encode(picture, keyframe=keyframe)
        except EncoderError as exc:
            if enc.codec == "libx264":
                raise
            # A hardware encoder that stops working (driver reset, GPU gone): libx264 from now on.
            log.error("encoder_failed", codec=enc.codec, error=str(exc), fallback="libx264")
            self._codec = "libx264"
            enc = self._encoder = self._open_encoder(width, height, bitrate)
            return enc.encode(picture, keyframe=True)

    def _open_encoder(self, width: int, height: int, bitrate: int) -> H264Encoder:
        """Encode thread: an encoder for this size; the codec is chosen once (encoder.codec)."""
        cfg = self.settings.encoder
        if self._codec is None:
            self._codec, passed_over = choose_codec(cfg.codec, fps=self.fps, bitrate=bitrate,
                                                    max_bitrate=cfg.max_bitrate)
            log.info("encoder_selected", codec=self._codec, setting=cfg.codec, passed_over=passed_over)
        return H264Encoder.configured(cfg, width, height, fps=self.fps, bitrate=bitrate, codec=self._codec)

    def _count(self, au: AccessUnit, payload: bytes, accepted: bool, *, repeat: bool = False) -> None:
        s = self.stats
        if repeat:
            s.repeated += 1
        else:
            s.encoded += 1
            s.encode_s += au.encode_s
        if not accepted:
            s.rejected += 1
            return
        s.published += 1
        s.bytes_published += len(payload)
        s.keyframes += au.keyframe
        s.last_published_at = time.monotonic()

    async def status_loop(self, interval_s: float) -> None:
        """One line every interval: what a person watching the logs wants to know."""
        before, t0 = self.stats.snapshot(), time.monotonic()
        while True:
            await asyncio.sleep(interval_s)
            now, t1 = self.stats.snapshot(), time.monotonic()
            dt = max(t1 - t0, 1e-6)
            encoded = now.encoded - before.encoded
            log.info(
                "status",
                connected=self.publisher is not None and self.publisher.live,
                fps=round((now.published - before.published) / dt, 1),
                encode_ms=round(1000 * (now.encode_s - before.encode_s) / encoded, 2) if encoded else None,
                bitrate=int(8 * (now.bytes_published - before.bytes_published) / dt),
                bitrate_target=now.bitrate_target,
                keyframes=now.keyframes - before.keyframes,
                keyframe_requests=now.keyframe_requests - before.keyframe_requests,
                dropped=now.dropped - before.dropped,
                unchanged=now.unchanged - before.unchanged,
                repeated=now.repeated - before.repeated,
                rejected=now.rejected - before.rejected,
                subscribers=self.publisher.subscribers if self.publisher else 0,
            )
            before, t0 = now, t1

    def close(self) -> None:
        if self._watch is not None:
            self._capture_pool.submit(self._watch.close)
        self._capture_pool.submit(self.grabber.close)
        self._capture_pool.shutdown(wait=True, cancel_futures=True)
        self._encode_pool.shutdown(wait=True, cancel_futures=True)
