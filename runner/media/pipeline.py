"""The frame path: capture -> encode -> encrypt -> publish.

Two tasks on the event loop, each handing its blocking work to its own single-thread executor:
the capture task grabs at a steady ``capture.fps`` into a one-slot mailbox, the encode task
takes the newest picture, encodes and encrypts it off the loop, and hands it to the publisher.
A grab therefore overlaps the previous frame's encode, and when encoding falls behind the
oldest picture is dropped, never queued (latency beats completeness on a remote desktop).

What to send when is decided by ``runner.media.scheduling.FrameSchedule``, which encoder writes
it by ``runner.media.encode.EncoderSlot``; this module is the thread plumbing between them.
The pipeline implements ``runner.media.controls.MediaControl``, the only way control changes it,
and is the only writer of its own state (frame rate, size limit, bitrate cap and target).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from runner.config import Settings
from runner.logs import get_logger
from runner.media.capture import CapturedFrame, DisplayError, ScreenGrabber
from runner.media.controls import (
    CursorSink,
    Quality,
    QualityRequest,
    Region,
    ScreenLayout,
    ScreenMonitor,
    StreamInfo,
)
from runner.media.cursor import follow_cursor
from runner.media.damage import ChangeWatch
from runner.media.encode import AccessUnit, EncoderSlot
from runner.media.randr import RandrScreen
from runner.media.scheduling import FrameSchedule, Grab, follow_target
from runner.media.screen_size import FitRequest, ScreenSize, fit_size
from runner.media.stats import FrameTimes, RateMeter, Stats, log_status
from runner.notify import Notifier, Wait, WatchdogGate
from runner.publish import Publisher

log = get_logger(__name__)

T = TypeVar("T")

DISPLAY_RETRY_S = 1.0
RATES_INTERVAL_S = 1.0  # StreamInfo.rates are over this interval

Sealer = Callable[[bytes, bool], bytes]
"""Encrypts one access unit (data, keyframe) for the wire; identity for the SDK engine."""

FrameObserver = Callable[[FrameTimes], None]
"""Called on the event loop with the stage times of every published (not repeated) frame."""


class Pipeline:
    """Runs the frame path for whichever Publisher is attached (none: it idles)."""

    def __init__(self, settings: Settings, grabber: ScreenGrabber, seal: Sealer,
                 watchdog: WatchdogGate | None = None, notifier: Notifier | None = None) -> None:
        self._settings = settings
        self._grabber = grabber
        self._seal = seal
        # Fed by every frame handed to LiveKit; WatchdogGate(None)/Notifier(None) do nothing.
        self._watchdog = watchdog if watchdog is not None else WatchdogGate(None)
        self._notifier = notifier if notifier is not None else Notifier(None)
        self._observers: list[FrameObserver] = []
        self._stats = Stats(bitrate_target=settings.encoder.bitrate)
        self._meter = RateMeter(time.monotonic(), self._stats)
        self._publisher: Publisher | None = None
        self._attached = asyncio.Event()
        self._new_frame = asyncio.Event()
        self._latest: CapturedFrame | None = None
        self._schedule = FrameSchedule(echo_keyframes=settings.e2ee.frame_engine == "runner",
                                       refresh_s=settings.capture.idle_refresh_s)
        self._watch: ChangeWatch | None = None  # on the capture thread
        # Skipping still ticks needs the runner's frame engine: Chrome drops some SDK-encrypted
        # IDRs (docs/e2ee.md) and then recovers only from a steady stream of frames (measured:
        # with sparse frames a change often did not show within 5 s).
        self.skip_unchanged = settings.capture.skip_unchanged and settings.e2ee.frame_engine == "runner"
        self._encoders = EncoderSlot(settings.encoder)
        self._fps = settings.capture.fps
        self._max_size = (0, 0)  # (width, height) the picture is scaled to fit; 0 = no limit
        self._bitrate_cap = settings.encoder.max_bitrate  # a viewer may lower it (dr.quality.set)
        self._randr: RandrScreen | None = None  # on the capture thread, made by the first fit
        self._capture_pool = ThreadPoolExecutor(1, thread_name_prefix="capture")
        self._encode_pool = ThreadPoolExecutor(1, thread_name_prefix="encode")

    # --- read-only views (service, metrics) -------------------------------------------------
    @property
    def stats(self) -> Stats:
        """A copy of the counters now."""
        return self._stats.snapshot()

    @property
    def fps(self) -> float:
        """The frame rate captured now (capture.fps, or lower after dr.quality.set)."""
        return self._fps

    @property
    def publisher(self) -> Publisher | None:
        return self._publisher

    def observe_frames(self, observer: FrameObserver) -> None:
        """Report every published frame's stage times to ``observer`` (metrics, the bench probe)."""
        self._observers.append(observer)

    # --- life (called by the service) ---------------------------------------------------------
    async def open(self) -> None:
        """Open the display (and watch it for changes); DisplayError when it cannot be opened."""
        await self._in_capture_thread(self._grabber.open)
        if self.skip_unchanged:
            await self._in_capture_thread(self._open_change_watch)

    def attach(self, publisher: Publisher) -> None:
        self._publisher = publisher
        self._schedule.force_keyframe()  # every (re)publish starts with an IDR
        self._attached.set()

    def detach(self) -> Publisher | None:
        """Stop publishing; returns the publisher that was attached."""
        publisher, self._publisher = self._publisher, None
        self._attached.clear()
        return publisher

    def close(self) -> None:
        if self._watch is not None:
            self._capture_pool.submit(self._watch.close)
        if self._randr is not None:
            self._capture_pool.submit(self._randr.close)
        self._capture_pool.submit(self._grabber.close)
        self._capture_pool.shutdown(wait=True, cancel_futures=True)
        self._encode_pool.shutdown(wait=True, cancel_futures=True)

    # --- MediaControl ---------------------------------------------------------------------------
    @property
    def display(self) -> str:
        return self._grabber.display

    @property
    def region(self) -> Region | None:
        r = self._grabber.region
        return Region(r["left"], r["top"], r["width"], r["height"]) if r is not None else None

    async def screen_layout(self, *, refresh: bool) -> ScreenLayout:
        raw = await self._in_capture_thread(lambda: self._grabber.raw_monitors(refresh=refresh))
        return layout_from_mss(raw)

    async def select_region(self, region: Region) -> tuple[int, int]:
        """Capture another rectangle (a monitor) from the next frame on; returns the new picture
        size. The encoder follows the size on its own, starting with an IDR; no reconnect."""
        await self._in_capture_thread(
            lambda: self._grabber.select(region.left, region.top, region.width, region.height))
        self._take_latest()
        self._schedule.force_keyframe()
        return self.output_size(*self._grabber.size)

    def request_keyframe(self) -> None:
        self._schedule.force_keyframe()

    def ask_keyframe(self) -> None:
        self._stats.keyframe_requests += 1
        self._schedule.keyframe_requested()

    def set_quality(self, request: QualityRequest) -> Quality:
        enc = self._settings.encoder
        if request.fps is not None:
            self._fps = min(request.fps, self._settings.capture.fps)
        if request.bitrate is not None:
            self._bitrate_cap = min(max(request.bitrate, enc.min_bitrate), enc.max_bitrate)
            self._stats.bitrate_target = min(self._stats.bitrate_target, self._bitrate_cap)
        width, height = self._max_size
        self._max_size = (request.max_width if request.max_width is not None else width,
                          request.max_height if request.max_height is not None else height)
        return Quality(fps=self._fps, bitrate=self._bitrate_cap, max_width=self._max_size[0],
                       max_height=self._max_size[1])

    def stream_info(self) -> StreamInfo:
        width, height = self.output_size(*self._grabber.size)
        s = self._stats
        return StreamInfo(width=width, height=height, keyframes=s.keyframes, dropped=s.dropped,
                          rates=self._meter.rates)

    async def fit_screen(self, request: FitRequest) -> ScreenSize:
        """Resize the X screen with RandR and follow it at once: the grabber reopens in the same
        capture-thread call (no failed grab in between), the picture waiting for the encoder is
        dropped (it has the old size) and the next frame is an IDR of the new size."""
        grabber = self._grabber
        before = grabber.screen_size
        applied = await self._in_capture_thread(lambda: self._fit_in_capture_thread(request))
        self._take_latest()
        log.info("screen_resized", display=grabber.display, screen=grabber.screen_size, previous=before,
                 size=grabber.size, dpi=applied.dpi, reason="dr.screen.fit")
        # Not _resume(): the DAMAGE watch stays, as it watches the root window, which RandR resizes
        # in place (and the capture loop may be waiting on its descriptor right now).
        width, height = grabber.size
        self._notifier.status(f"publishing {width}x{height} from {grabber.display}")
        self._schedule.force_keyframe()
        return applied

    def _fit_in_capture_thread(self, request: FitRequest) -> ScreenSize:
        grabber = self._grabber
        if self._randr is None or self._randr.display != grabber.display:
            if self._randr is not None:
                self._randr.close()
            self._randr = RandrScreen(grabber.display)
        max_width, max_height = self._randr.max_size()
        applied = self._randr.apply(fit_size(request, max_width=max_width, max_height=max_height))
        try:
            grabber.open()
        except DisplayError as exc:  # the display went away meanwhile: the capture loop recovers it
            log.warning("capture_reopen_failed", reason=str(exc))
        return applied

    async def watch_cursor(self, sink: CursorSink) -> None:
        """The pointer for viewers that draw it (capture.cursor = "viewer"): its own X connection
        and thread, read at most once per capture tick, never in the capture thread's way."""
        await follow_cursor(self._grabber.display, sink, lambda: 1.0 / self._fps)

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """The encoded size for a captured size: scaled down to fit the size limit, even."""
        max_w, max_h = self._max_size
        scale = min(max_w / width if max_w else 1.0, max_h / height if max_h else 1.0, 1.0)
        return max(2, int(width * scale) & ~1), max(2, int(height * scale) & ~1)

    async def _in_capture_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._capture_pool, fn)

    # --- capture task -----------------------------------------------------------------------
    async def capture_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = time.monotonic()
        while True:
            await self._attached.wait()
            self._poll_feedback()
            must = self._schedule.must_grab(time.monotonic(), self._stats.last_published_at)
            try:
                frame, changed = await loop.run_in_executor(self._capture_pool, self._grab_if_changed, must)
            except DisplayError as exc:
                if not await self._follow_resize(str(exc)):
                    await self._recover_display(str(exc))
                next_at = time.monotonic()
                continue
            if frame is None:  # nothing changed on screen: nothing to grab, encode or send
                self._stats.unchanged += 1
                if await self._wait_for_damage():
                    next_at = time.monotonic()  # grab now: a change ends the wait at once
                    continue
                next_at = self._sleep_until_next(next_at)
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                continue
            self._stats.captured += not frame.repeat
            self._schedule.grabbed(time.monotonic(), changed=changed, repeat=frame.repeat)
            if self._take_latest() is not None:
                self._stats.dropped += 1
            self._latest = frame
            self._new_frame.set()
            next_at = self._sleep_until_next(next_at)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def _sleep_until_next(self, next_at: float) -> float:
        """The next tick; after falling behind, restart the clock instead of bursting."""
        next_at += 1.0 / self._fps
        return next_at if next_at > time.monotonic() else time.monotonic()

    def _poll_feedback(self) -> None:
        """Collect LiveKit's keyframe requests and bitrate target on every tick, also when the
        screen is still, so a request is answered within a tick."""
        publisher = self._publisher
        if publisher is None:
            return
        feedback = publisher.take_feedback()
        if feedback.republished:
            self._schedule.force_keyframe()
        if feedback.keyframe:
            self._stats.keyframe_requests += 1
            self._schedule.keyframe_requested()
        if feedback.target_bitrate is not None:
            current = self._stats.bitrate_target
            target = follow_target(current, feedback.target_bitrate, floor=self._settings.encoder.min_bitrate,
                                   cap=self._bitrate_cap)
            if target != current:
                log.debug("bitrate_target", bitrate=target, previous=current)
                self._stats.bitrate_target = target

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
            while not damaged and self._publisher is not None:
                self._poll_feedback()
                now = time.monotonic()
                if self._schedule.must_grab(now, self._stats.last_published_at):
                    break
                waiter = loop.create_future()
                timer = loop.call_later(self._schedule.idle_wait(now, self._stats.last_published_at), wake, False)
                try:
                    await waiter
                finally:
                    timer.cancel()
        finally:
            loop.remove_reader(fd)
        return True

    def _grab_if_changed(self, must: bool) -> tuple[CapturedFrame | None, bool]:
        """Capture thread: (a picture, whether the screen changed). The picture is None when the
        screen did not change since the last one, or (a still screen's refresh) a repeat of the
        last one, which costs no grab and no encode when the encoder can write it (runner.media.h264)."""
        watch = self._watch
        if watch is None or not self.skip_unchanged:
            return self._grabber.grab_picture(), not must
        changed = watch.changed()  # always asked, so it tracks every change
        can_repeat = self._encoders.can_repeat(*self.output_size(*self._grabber.size))
        match self._schedule.grab(time.monotonic(), changed=changed, must=must, can_repeat=can_repeat):
            case Grab.NOTHING:
                return None, changed
            case Grab.REPEAT:
                return CapturedFrame.again(), changed
            case Grab.PICTURE:
                frame = self._grabber.grab_picture()
                return (frame if changed else dataclasses.replace(frame, refine=True)), changed

    def _take_latest(self) -> CapturedFrame | None:
        """Empty the mailbox; a picture nobody will encode goes back to the grabber."""
        frame, self._latest = self._latest, None
        if frame is not None:
            frame.release()
        return frame

    def _open_change_watch(self) -> None:
        """Capture thread: watch the display for changes (XDamage); reopened after display loss."""
        if self._watch is not None:
            self._watch.close()
        self._watch = ChangeWatch(self._grabber.display, cursor=self._settings.capture.cursor == "picture")

    async def _follow_resize(self, reason: str) -> bool:
        """A grab failed: if the X server is still there with a screen of another size (xrandr,
        a resized virtual screen), follow it at once, logged at info level (``screen_resized``),
        instead of the lost-display path (an error and a second's pause). False if the display
        does not answer (it is lost) or its screen kept its size (an unexplained failure: the
        lost-display path logs it and backs off)."""
        grabber = self._grabber
        before = grabber.screen_size
        try:
            await self._in_capture_thread(grabber.open)
        except DisplayError:
            return False
        after = grabber.screen_size
        if before is None or after == before:
            return False
        log.info("screen_resized", display=grabber.display, screen=after, previous=before,
                 size=grabber.size, reason=reason)
        await self._resume()
        return True

    async def _resume(self) -> None:
        """Capture works again (display back or resized): watch it for changes, say so, IDR."""
        if self.skip_unchanged:
            await self._in_capture_thread(self._open_change_watch)
        width, height = self._grabber.size
        self._notifier.status(f"publishing {width}x{height} from {self._grabber.display}")
        self._schedule.force_keyframe()

    async def _recover_display(self, reason: str) -> None:
        grabber = self._grabber
        log.error("capture_lost", reason=reason, retry_every_s=DISPLAY_RETRY_S)
        self._notifier.status(f"X display {grabber.display} lost, retrying every {DISPLAY_RETRY_S:g} s")
        with self._watchdog.waiting(Wait.DISPLAY):  # a restart would wait for the same display
            while True:
                await asyncio.sleep(DISPLAY_RETRY_S)
                try:
                    await self._in_capture_thread(grabber.open)
                except DisplayError:
                    continue
                break
        log.info("capture_resumed", display=grabber.display, size=grabber.size)
        await self._resume()

    # --- encode task ------------------------------------------------------------------------
    async def encode_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._new_frame.wait()
            self._new_frame.clear()
            frame, self._latest = self._latest, None
            publisher = self._publisher
            if frame is None or publisher is None:
                if frame is not None:
                    frame.release()
                continue
            if frame.repeat and self._schedule.needs_keyframe(time.monotonic()):
                continue  # an IDR became due meanwhile: the next tick grabs a real picture
            # LiveKit's feedback was collected by the capture tick that grabbed this picture.
            keyframe = self._schedule.take_keyframe(time.monotonic())
            sealed = await loop.run_in_executor(
                self._encode_pool, self._encode_and_seal, frame, keyframe, self._stats.bitrate_target
            )
            if sealed is None:
                continue
            au, payload, encrypt_s = sealed
            if not frame.repeat:
                self._schedule.picture_encoded(len(au.data), au.qp)
            if self._publisher is not publisher:
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
            if accepted and au.keyframe:
                self._schedule.keyframe_sent(time.monotonic(), 8 * len(payload) / max(1, self._stats.bitrate_target))
            self._count(au, payload, accepted, repeat=frame.repeat)
            if accepted and not frame.repeat:  # grab start (captured_at less the grab) to here
                self._stats.host_s += time.monotonic() - (frame.captured_at - frame.grab_s)
                self._stats.host_frames += 1
            self._watchdog.frame_published(time.monotonic())  # accepted or not: the path works
            if accepted and not frame.repeat:
                times = FrameTimes(frame.grab_s, frame.convert_s + au.convert_s, au.encode_s - au.convert_s,
                                   encrypt_s, handoff_s)
                for observe in self._observers:
                    observe(times)

    def _encode_and_seal(self, frame: CapturedFrame, keyframe: bool,
                         bitrate: int) -> tuple[AccessUnit, bytes, float] | None:
        """Encode thread: (re)open the encoder for this size, encode, encrypt. A pooled picture
        goes back to the grabber once encoded, or when encoding failed. None: a repeat the
        encoder could not write (nothing is sent; the next tick grabs a real picture)."""
        try:
            if frame.repeat:  # the screen did not change (see _grab_if_changed)
                au = self._encoders.repeat()
            else:
                picture = frame.picture if frame.picture is not None else frame.pixels
                assert picture is not None  # a CapturedFrame that is no repeat holds one or the other
                width, height = self.output_size(frame.width, frame.height)
                au = self._encoders.encode(picture, width, height, fps=self._fps, bitrate=bitrate,
                                           keyframe=keyframe, at=frame.captured_at, refine=frame.refine)
        finally:
            frame.release()
        if au is None:
            return None
        started = time.perf_counter()
        payload = self._seal(au.data, au.keyframe)
        return au, payload, time.perf_counter() - started

    def _count(self, au: AccessUnit, payload: bytes, accepted: bool, *, repeat: bool = False) -> None:
        s = self._stats
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

    # --- rates and the status line -------------------------------------------------------------
    async def rates_loop(self) -> None:
        """Close a rates interval every second: what StreamInfo.rates (dr.stats) reports."""
        while True:
            await asyncio.sleep(RATES_INTERVAL_S)
            self._meter.update(time.monotonic(), self._stats)

    async def status_loop(self, interval_s: float) -> None:
        """One line every interval: what a person watching the logs wants to know."""
        meter = RateMeter(time.monotonic(), self._stats)
        while True:
            await asyncio.sleep(interval_s)
            publisher = self._publisher
            log_status(meter.update(time.monotonic(), self._stats),
                       connected=publisher is not None and publisher.live,
                       subscribers=publisher.subscribers if publisher else 0)


def layout_from_mss(monitors: list[dict[str, object]]) -> ScreenLayout:
    """mss's monitor list (index 0: the union of all) as a ScreenLayout."""

    def region(m: dict[str, object]) -> Region:
        return Region(int(m["left"]), int(m["top"]), int(m["width"]), int(m["height"]))  # type: ignore[call-overload]

    def text(value: object) -> str | None:
        return value if isinstance(value, str) else None

    return ScreenLayout(
        union=region(monitors[0]),
        monitors=tuple(ScreenMonitor(region(m), output=text(m.get("output")) or None, name=text(m.get("name")),
                                     primary=bool(m.get("is_primary", False))) for m in monitors[1:]),
    )
