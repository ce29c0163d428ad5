"""The X pointer, for viewers that draw it themselves (``capture.cursor = "viewer"``).

A ``CursorWatch`` owns one python-xlib connection of its own, used from one thread. XFixes says
when the cursor changes (DisplayCursorNotify, carrying the new cursor's serial), so its image
(XFixesGetCursorImage: width * height * 4 bytes on the socket, and as many Python ints in
python-xlib) is fetched only then, never per frame. XInput 2 raw motion events say when the
pointer moved (devices and XTEST make them); an application's XWarpPointer makes none, so the
position is also read every ``IDLE_POLL_S`` while nothing happens.

``follow_cursor`` is the loop on the event loop: wait until X reports something (or the idle
poll), read the pointer in the cursor thread, tell the sink, then wait at least one capture tick
before reading again, so a pointer moving at 1000 Hz costs at most capture.fps reads a second.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from Xlib import display as xdisplay
from Xlib.error import XError
from Xlib.ext import xfixes

from runner.logs import get_logger
from runner.media.controls import CursorShape, CursorSink
from runner.media.damage import select_raw_motion

log = get_logger(__name__)

IDLE_POLL_S = 0.25  # an XWarpPointer (no motion event) is seen within this
RETRY_S = 1.0  # the display went away: try again this often
# XFixes allows cursors of any size the server accepts; a bigger one is not converted (a 4096 x
# 4096 cursor would be 64 MB of Python ints), the sink gets an empty image (no image) instead.
MAX_FETCH_PIXELS = 512 * 512


class CursorUnavailable(RuntimeError):
    """The display cannot be opened (``permanent`` False: it may come back), or has no XFixes."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class CursorWatch:
    """The pointer's image and position on one X display. Not thread-safe: one thread only."""

    def __init__(self, display: str) -> None:
        try:
            d = xdisplay.Display(display)
        except Exception as exc:
            raise CursorUnavailable(f"cannot open X display {display}: {exc}", permanent=False) from exc
        try:
            if not d.has_extension("XFIXES"):
                raise CursorUnavailable(f"X display {display} has no XFIXES extension", permanent=True)
            d.xfixes_query_version()  # XFixes answers nothing else before it
            self._root = d.screen().root
            d.xfixes_select_cursor_input(self._root, xfixes.XFixesDisplayCursorNotifyMask)
            self._notify = d.extension_event.DisplayCursorNotify[0]
            self.motion_events = select_raw_motion(d, self._root)
            d.sync()
        except CursorUnavailable:
            d.close()
            raise
        except Exception as exc:
            d.close()
            raise CursorUnavailable(f"XFixes cursor on {display}: {type(exc).__name__}: {exc}",
                                    permanent=False) from exc
        self._d = d
        self._serial: int | None = None
        self._position: tuple[int, int] | None = None

    def fileno(self) -> int:
        fd: int = self._d.fileno()
        return fd

    def poll(self) -> tuple[CursorShape | None, tuple[int, int] | None, bool]:
        """(the new image if the cursor changed since the last call, the position if the pointer
        moved, whether more events are already queued). The first call reports both."""
        d = self._d
        serials: list[int] = []
        while d.pending_events():
            event = d.next_event()
            if event.type == self._notify and hasattr(event, "cursor_serial"):
                serials.append(int(event.cursor_serial))
        shape = None
        if self._serial is None or (serials and serials[-1] != self._serial):
            shape = self._fetch(serials[-1] if serials else 0)
        pointer = self._root.query_pointer()
        position = (int(pointer.root_x), int(pointer.root_y))
        moved = position != self._position
        self._position = position
        return shape, position if moved else None, bool(d.pending_events())

    def _fetch(self, announced: int) -> CursorShape | None:
        try:
            reply = self._d.xfixes_get_cursor_image(self._root)
        except XError as exc:
            # The X server refuses (BadAccess) the image of a cursor whose creator has gone
            # (xsetroot -cursor_name sets one and exits) to every client connected before it went.
            log.debug("cursor_image_refused", serial=announced, error=type(exc).__name__)
            self._serial = announced
            return CursorShape(announced, 0, 0, 0, 0, b"")
        serial = int(reply.cursor_serial)
        if serial == self._serial:
            return None
        self._serial = serial
        width, height = int(reply.width), int(reply.height)
        words = reply.cursor_image
        if width * height > MAX_FETCH_PIXELS or len(words) != width * height:
            log.warning("cursor_too_large", width=width, height=height)
            return CursorShape(serial, 0, 0, 0, 0, b"")
        bgra = struct.pack(f"<{len(words)}I", *words)  # ARGB32 words -> B G R A bytes
        return CursorShape(serial, width, height, int(reply.xhot), int(reply.yhot), bgra)

    def close(self) -> None:
        try:
            self._d.close()
        except Exception:
            pass


async def _readable(fd: int, timeout: float) -> None:
    """Return when ``fd`` is readable or after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    loop.add_reader(fd, wake)
    timer = loop.call_later(timeout, wake)
    try:
        await waiter
    finally:
        timer.cancel()
        loop.remove_reader(fd)


async def follow_cursor(display: str, sink: CursorSink, interval: Callable[[], float]) -> None:
    """Report the pointer of ``display`` to ``sink`` until cancelled, reading it at most once per
    ``interval()`` seconds (the capture tick). Returns when the display has no XFixes; waits and
    reopens when the display goes away."""
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(1, thread_name_prefix="cursor")
    try:
        while True:
            try:
                watch = await loop.run_in_executor(pool, CursorWatch, display)
            except CursorUnavailable as exc:
                if exc.permanent:
                    log.warning("cursor_unavailable", display=display, reason=str(exc))
                    return
                log.debug("cursor_watch_waiting", display=display, reason=str(exc))
                await asyncio.sleep(RETRY_S)  # the display is away; capture reports that
                continue
            try:
                await _follow(watch, sink, interval, pool)
            except Exception as exc:  # the X server went away; capture reports that
                log.debug("cursor_watch_lost", error=f"{type(exc).__name__}: {exc}")
            finally:
                pool.submit(watch.close)
            await asyncio.sleep(RETRY_S)
    finally:
        pool.shutdown(wait=False)  # a queued watch.close still runs


async def _follow(watch: CursorWatch, sink: CursorSink, interval: Callable[[], float],
                  pool: ThreadPoolExecutor) -> None:
    loop = asyncio.get_running_loop()
    idle_s = IDLE_POLL_S if watch.motion_events else 0.0
    while True:
        shape, position, more = await loop.run_in_executor(pool, watch.poll)
        if shape is not None:
            sink.cursor_shape(shape)
        if position is not None:
            sink.pointer_moved(*position)
        await asyncio.sleep(interval())  # at most one read per capture tick
        if not more and idle_s:
            await _readable(watch.fileno(), idle_s)
