"""The X11 CLIPBOARD selection as text, both ways, over python-xlib.

X has no clipboard store: the "clipboard" is whichever client owns the CLIPBOARD selection, and
reading it is a conversation with that owner (ConvertSelection, then its SelectionNotify and a
property on our window). Owning it means answering every other client's SelectionRequest for as
long as we hold it. Both sides therefore need an event loop, and python-xlib is not safe to use
from several threads on one connection, so an ``X11Clipboard`` keeps its own connection and a
hidden (never mapped) window on ONE daemon thread that makes every X call; the public methods
post work to that thread and wait for the answer.

Changes by other clients are noticed through XFixes SelectionNotify (no polling); the new owner's
text is read and reported through ``on_change`` only when it differs from the last text reported
or set by us, so our own ``set_text`` never echoes back.

Texts are capped at ``MAX_CLIPBOARD_BYTES`` of UTF-8 either way (the protocol's limit, from
runner/control/messages.py). We serve our own text in one
property when it fits in one X request and with the INCR protocol otherwise; other clients' INCR
transfers are received too, and past the cap drained and dropped, so the owner is not left
hanging. Clipboard contents can be secrets (passwords): no log line carries them, only sizes.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, TypeVar

from Xlib import X, Xatom
from Xlib import display as xdisplay
from Xlib import error as xerror
from Xlib.ext import xfixes
from Xlib.protocol import event as xevent
from Xlib.protocol import request as xrequest
from Xlib.protocol import rq

from runner.control.messages import MAX_CLIPBOARD_BYTES
from runner.logs import get_logger

log = get_logger(__name__)


# Waiting beyond a caller's own timeout for the clipboard thread to pick the work up (it may be
# busy finishing a read for on_change).
HANDOFF_SLACK_S = 0.5
SET_TIMEOUT_S = 2.0
# How long reading a new owner's text for on_change may take.
CHANGE_READ_TIMEOUT_S = 1.0
CLOSE_JOIN_TIMEOUT_S = 2.0
# After an unexpected exception in the loop, so a fault that repeats cannot spin a core.
ERROR_BACKOFF_S = 0.05

# ChangeProperty's fixed part; python-xlib has no BIG-REQUESTS, so one request carries at most
# max_request_length * 4 bytes in all.
CHANGE_PROPERTY_HEADER_BYTES = 24
INCR_CHUNK_BYTES = 64 * 1024
# A requestor that stops deleting our INCR property for this long has given up.
INCR_IDLE_TIMEOUT_S = 5.0
MAX_INCR_TRANSFERS = 16
# One INCR chunk we receive can be as large as the owner's largest request (BIG-REQUESTS).
INCR_READ_UNITS = 0x3FFFFFFF

# Private properties on our hidden window: where owners put converted text, and the zero-length
# append whose PropertyNotify tells us the server time (ICCCM: never own or convert with
# CurrentTime).
TRANSFER_PROPERTY = "_DESKTOP_RUNNER_CLIPBOARD"
TIME_PROPERTY = "_DESKTOP_RUNNER_TIMESTAMP"

T = TypeVar("T")


class ClipboardError(RuntimeError):
    """The clipboard cannot do what was asked; the message says why."""


class _Closing(Exception):
    """close() was called while the clipboard thread was waiting on the X server."""


class _NoAnswer(Exception):
    """The selection owner did not answer in time."""


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


@dataclass(frozen=True)
class _Atoms:
    clipboard: int
    targets: int
    timestamp: int
    utf8_string: int
    text: int
    incr: int
    transfer: int
    time_probe: int
    string: int = Xatom.STRING
    atom: int = Xatom.ATOM
    integer: int = Xatom.INTEGER

    @classmethod
    def intern(cls, display: xdisplay.Display) -> _Atoms:
        def atom(name: str) -> int:
            return int(display.intern_atom(name))

        return cls(clipboard=atom("CLIPBOARD"), targets=atom("TARGETS"),
                   timestamp=atom("TIMESTAMP"), utf8_string=atom("UTF8_STRING"),
                   text=atom("TEXT"), incr=atom("INCR"), transfer=atom(TRANSFER_PROPERTY),
                   time_probe=atom(TIME_PROPERTY))


@dataclass(frozen=True)
class _Owned:
    """The text we serve while we own CLIPBOARD; ``acquired`` is the server time we took it."""

    text: str
    utf8: bytes
    acquired: int


@dataclass
class _IncrTransfer:
    """One INCR transfer of our text to one requestor property, ``sent`` bytes so far."""

    requestor: Any  # Xlib Window
    type: int
    data: bytes
    sent: int = 0
    deadline: float = field(default_factory=lambda: time.monotonic() + INCR_IDLE_TIMEOUT_S)


@dataclass
class _Job:
    run: Callable[[], Any]
    future: Future[Any] = field(default_factory=Future)


def _decode(kind: int, data: bytes, atoms: _Atoms) -> str:
    """Text from a converted property: STRING is ISO Latin-1 (ICCCM), everything else UTF-8."""
    if kind == atoms.string:
        text = data.decode("latin-1")
    else:
        text = data.decode("utf-8", errors="replace")
    # Some old clients count the C string's terminator in the property.
    return text.rstrip("\x00")


class X11Clipboard:
    """CLIPBOARD text of one X display; thread-safe, every X call on its own daemon thread.

    ``on_change(text)`` runs on that thread when another client takes the clipboard with a text
    that differs from the last one reported or set; hop to your event loop from there
    (``loop.call_soon_threadsafe``) and do not call back into this object from it.
    """

    def __init__(self, display: str, on_change: Callable[[str], None] | None = None, *,
                 max_request_bytes: int | None = None) -> None:
        """``max_request_bytes``: the largest X request we send (default: the server's, about
        256 KiB); texts that do not fit go out with INCR. Tests lower it to exercise INCR."""
        self.display_name = display
        self._request_limit = max_request_bytes
        self._on_change = on_change
        try:
            self._display = xdisplay.Display(display)
        except Exception as exc:  # DisplayNameError, DisplayConnectionError, OSError
            raise ClipboardError(
                f"cannot open X display {display} for the clipboard: {exc}") from None
        try:
            self._setup()
        except Exception as exc:
            self._display.close()
            raise ClipboardError(
                f"cannot set up the clipboard on X display {display}: {exc}") from None

        self._lock = threading.Lock()
        self._jobs: deque[_Job] = deque()
        self._closed = False  # close() was called
        self._gone = False  # the X connection was lost
        self._finished = False  # the thread no longer takes jobs
        self._stopping = False
        # Wakes the thread for jobs and close(); the thread closes it when it ends, and writes
        # happen under _lock only while _wake_open, so no write can hit a recycled descriptor.
        self._wake_open = True
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

        # Only the clipboard thread touches these from here on.
        self._owned: _Owned | None = None
        self._last_text: str | None = None
        self._owner_changed = False
        self._transfers: dict[tuple[int, int], _IncrTransfer] = {}

        self._thread = threading.Thread(target=self._run, name=f"clipboard {display}", daemon=True)
        self._thread.start()

    def _setup(self) -> None:
        d = self._display
        d.set_error_handler(self._on_x_error)
        self._atoms = _Atoms.intern(d)
        self._window = d.screen().root.create_window(
            -10, -10, 1, 1, 0, X.CopyFromParent, event_mask=X.PropertyChangeMask)
        self._max_request_bytes = min(d.display.info.max_request_length * 4,
                                      self._request_limit or 1 << 32)
        # (event code, sub-code) of XFixes SetSelectionOwnerNotify; python-xlib clones the event
        # class per display, so isinstance() against xfixes' class does not match.
        self._owner_notify: tuple[int, int] | None = None
        if d.has_extension("XFIXES"):
            self._owner_notify = d.extension_event.SetSelectionOwnerNotify
            d.xfixes_query_version()
            d.xfixes_select_selection_input(self._window, self._atoms.clipboard,
                                            xfixes.XFixesSetSelectionOwnerNotifyMask)
        else:
            log.warning("clipboard_changes_unwatched", display=self.display_name,
                        reason="the X server has no XFIXES extension")
        d.sync()
        self._xfd = d.fileno()

    # --- public API (any thread) ----------------------------------------------------------------

    def get_text(self, timeout: float = 1.0) -> str | None:
        """The CLIPBOARD's text, or None if nobody owns it, it holds no text, it is larger than
        MAX_CLIPBOARD_BYTES, the owner does not answer within ``timeout`` seconds, or the
        clipboard is closed. Raises ClipboardError when the X display is gone."""
        deadline = time.monotonic() + timeout
        try:
            job = self._submit(lambda: self._read_text(deadline))
        except _Closing:
            return None
        try:
            text: str | None = job.result(timeout + HANDOFF_SLACK_S)
        except (_Closing, FutureTimeout):
            job.cancel()
            return None
        return text

    def set_text(self, text: str) -> None:
        """Own CLIPBOARD with ``text`` and serve it until another client takes it over.

        Raises ClipboardError when the text is over MAX_CLIPBOARD_BYTES of UTF-8 (the clipboard
        is left as it was), the clipboard is closed or the X display is gone."""
        # Lone surrogates (JavaScript strings can hold them) have no UTF-8 form.
        data = text.encode("utf-8", errors="replace")
        if len(data) > MAX_CLIPBOARD_BYTES:
            raise ClipboardError(f"clipboard text of {len(data)} bytes is over the limit of "
                                 f"{MAX_CLIPBOARD_BYTES} bytes (MAX_CLIPBOARD_BYTES)")
        try:
            job = self._submit(lambda: self._own(text, data, time.monotonic() + SET_TIMEOUT_S))
            job.result(SET_TIMEOUT_S + HANDOFF_SLACK_S)
        except _Closing:
            raise ClipboardError(
                f"the clipboard of X display {self.display_name} is closed") from None
        except FutureTimeout:
            job.cancel()
            raise ClipboardError(f"taking the clipboard of X display {self.display_name} "
                                 f"timed out after {SET_TIMEOUT_S:.0f} s") from None

    def close(self) -> None:
        """Stop the thread, give up CLIPBOARD if we hold it, close the connection. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stopping = True
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(CLOSE_JOIN_TIMEOUT_S)

    def __enter__(self) -> X11Clipboard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _submit(self, run: Callable[[], T]) -> Future[T]:
        if threading.current_thread() is self._thread:
            raise ClipboardError("X11Clipboard called from its own thread (on_change): "
                                 "hop to another thread first")
        job = _Job(run)
        with self._lock:
            if self._gone:
                raise self._gone_error()
            if self._closed or self._finished:
                raise _Closing()
            self._jobs.append(job)
        self._wake()
        return job.future

    def _wake(self) -> None:
        with self._lock:
            if not self._wake_open:
                return
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass  # a full pipe wakes the thread just as well

    # --- the clipboard thread -------------------------------------------------------------------

    def _run(self) -> None:
        lost: BaseException | None = None
        while not self._stopping:
            try:
                self._run_jobs()
                self._report_owner_change()
                self._expire_transfers()
                event = self._next_event(self._idle_deadline(), until_woken=True)
                if event is not None:
                    self._dispatch(event)
            except _Closing:
                break
            except Exception as exc:
                if self._is_lost(exc):
                    lost = exc
                    break
                log.error("clipboard_loop_failed", display=self.display_name,
                          error=f"{type(exc).__name__}: {exc}", exc_info=exc)
                time.sleep(ERROR_BACKOFF_S)
        self._finish(lost)

    def _finish(self, lost: BaseException | None) -> None:
        with self._lock:
            self._finished = True
            self._gone = lost is not None
            jobs = list(self._jobs)
            self._jobs.clear()
        if lost is not None:
            log.error("clipboard_lost", display=self.display_name, reason=str(lost))
        for job in jobs:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(self._gone_error() if lost else _Closing())
        if lost is None:
            self._release()
        with self._lock:
            self._wake_open = False
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _gone_error(self) -> ClipboardError:
        return ClipboardError(f"X display {self.display_name} is gone")

    def _is_lost(self, exc: BaseException) -> bool:
        # python-xlib turns socket failures into ConnectionClosedError and remembers them.
        return (isinstance(exc, xerror.ConnectionClosedError)
                or self._display.display.socket_error is not None)

    def _release(self) -> None:
        try:
            if self._owned is not None and self._owner_is_us():
                # No owner, at our acquisition time: cannot clear a newer owner's claim.
                xrequest.SetSelectionOwner(display=self._display.display, window=X.NONE,
                                           selection=self._atoms.clipboard,
                                           time=self._owned.acquired)
            self._display.close()
        except Exception as exc:
            log.debug("clipboard_close_failed", display=self.display_name, error=str(exc))

    def _run_jobs(self) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    return
                job = self._jobs.popleft()
            if not job.future.set_running_or_notify_cancel():
                continue  # the caller stopped waiting
            try:
                job.future.set_result(job.run())
            except _Closing:
                job.future.set_exception(_Closing())
                raise
            except Exception as exc:
                if self._is_lost(exc):
                    job.future.set_exception(self._gone_error())
                    raise
                job.future.set_exception(exc)

    def _next_event(self, deadline: float | None, *, until_woken: bool) -> rq.Event | None:
        """The next X event; None at ``deadline`` or, with ``until_woken``, when a job arrives.
        Raises _Closing when close() was called."""
        while True:
            # Flush first: flushing also reads, and what it reads lands in python-xlib's queue,
            # where select() on the socket cannot see it.
            self._display.flush()
            if self._display.pending_events():
                return self._display.next_event()
            if self._stopping:
                raise _Closing()
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                return None
            readable, _, _ = select.select([self._xfd, self._wake_r], [], [], timeout)
            if self._wake_r in readable:
                try:
                    while os.read(self._wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                if until_woken:
                    return None

    def _wait_for(self, match: Callable[[rq.Event], bool], deadline: float) -> rq.Event | None:
        """The first event that ``match``es before ``deadline``; every other event is handled
        as usual meanwhile (we keep serving our own clipboard while reading someone else's)."""
        while (event := self._next_event(deadline, until_woken=False)) is not None:
            if match(event):
                return event
            self._dispatch(event)
        return None

    def _dispatch(self, event: rq.Event) -> None:
        try:
            if event.type == X.SelectionRequest:
                # Clients may send these with SendEvent too; answering costs nothing.
                self._serve(event)
            elif event.send_event:
                # Only the server may say we lost the clipboard, that a property changed or
                # who owns CLIPBOARD now: ignore forgeries.
                pass
            elif event.type == X.SelectionClear:
                if event.atom == self._atoms.clipboard and event.window.id == self._window.id:
                    self._owned = None
            elif event.type == X.PropertyNotify:
                if event.state == X.PropertyDelete:
                    self._continue_incr(event.window, event.atom)
            elif (event.type, getattr(event, "sub_code", None)) == self._owner_notify:
                if event.selection == self._atoms.clipboard:
                    self._owner_changed = True
        except Exception as exc:
            if self._is_lost(exc):
                raise
            # Other clients can send us anything (SendEvent); one bad event must not stop us.
            log.warning("clipboard_event_failed", display=self.display_name,
                        x_event=type(event).__name__, error=f"{type(exc).__name__}: {exc}")

    def _on_x_error(self, err: xerror.XError, request: object) -> None:
        # Asynchronous errors, mostly from requestors that vanished or sent us bogus windows
        # and atoms; expected from hostile or dying clients, so not worth more than debug.
        resource = getattr(err, "resource_id", None)
        log.debug("clipboard_x_error", display=self.display_name, error=type(err).__name__,
                  resource=getattr(resource, "id", resource))

    def _server_time(self, deadline: float) -> int:
        """The X server's current time, from the PropertyNotify of a zero-length append."""
        self._window.change_property(self._atoms.time_probe, self._atoms.string, 8, b"",
                                     X.PropModeAppend)
        wid = self._window.id
        event = self._wait_for(
            lambda e: (e.type == X.PropertyNotify and not e.send_event and e.window.id == wid
                       and e.atom == self._atoms.time_probe),
            deadline)
        return int(event.time) if event is not None else X.CurrentTime

    def _owner_is_us(self) -> bool:
        owner = self._display.get_selection_owner(self._atoms.clipboard)
        return bool(owner != X.NONE and owner.id == self._window.id)

    # --- taking and serving ------------------------------------------------------------------

    def _own(self, text: str, data: bytes, deadline: float) -> None:
        stamp = self._server_time(deadline)
        self._window.set_selection_owner(self._atoms.clipboard, stamp)
        if not self._owner_is_us():
            raise ClipboardError(f"X display {self.display_name} did not give us CLIPBOARD")
        self._owned = _Owned(text=text, utf8=data, acquired=stamp)
        self._last_text = text

    def _serve(self, request: rq.Event) -> None:
        """Answer one SelectionRequest: write the property, then SelectionNotify (ICCCM 2.2)."""
        # Obsolete clients leave the property None and mean "use the target's name".
        prop = request.property or request.target
        answered = False
        # Never from our own window (we read our own text directly): a forged request naming
        # it could otherwise rewrite the event mask our server-time probe depends on.
        if (request.selection == self._atoms.clipboard and self._owned is not None
                and request.requestor.id != self._window.id):
            answered = self._write_target(request.requestor, request.target, prop, self._owned)
        # Permissive about request.time: toolkits disagree on it and the text is ours to give.
        notify = xevent.SelectionNotify(time=request.time, requestor=request.requestor,
                                        selection=request.selection, target=request.target,
                                        property=prop if answered else X.NONE)
        request.requestor.send_event(notify, event_mask=0, propagate=False)

    def _write_target(self, requestor: Any, target: int, prop: int, owned: _Owned) -> bool:
        a = self._atoms
        if target == a.targets:
            requestor.change_property(prop, a.atom, 32,
                                      [a.targets, a.timestamp, a.utf8_string, a.string, a.text])
        elif target == a.timestamp:
            requestor.change_property(prop, a.integer, 32, [owned.acquired])
        elif target in (a.utf8_string, a.text):
            # TEXT lets the owner pick the encoding; UTF-8 is the one that loses nothing.
            return self._put(requestor, prop, a.utf8_string, owned.utf8)
        elif target == a.string:
            return self._put(requestor, prop, a.string, owned.text.encode("latin-1", "replace"))
        else:
            return False
        return True

    def _put(self, requestor: Any, prop: int, kind: int, data: bytes) -> bool:
        padded = (len(data) + 3) & ~3
        if padded + CHANGE_PROPERTY_HEADER_BYTES <= self._max_request_bytes:
            requestor.change_property(prop, kind, 8, data)
            return True
        key = (requestor.id, prop)
        if key not in self._transfers and len(self._transfers) >= MAX_INCR_TRANSFERS:
            log.warning("clipboard_incr_refused", display=self.display_name,
                        reason=f"{MAX_INCR_TRANSFERS} transfers already running")
            return False
        # INCR (ICCCM 2.7.2): announce the size, then one chunk per deletion of the property.
        requestor.change_attributes(event_mask=X.PropertyChangeMask)
        requestor.change_property(prop, self._atoms.incr, 32, [len(data)])
        self._transfers[key] = _IncrTransfer(requestor=requestor, type=kind, data=data)
        return True

    def _continue_incr(self, window: Any, prop: int) -> None:
        transfer = self._transfers.get((window.id, prop))
        if transfer is None:
            return
        chunk = transfer.data[transfer.sent:transfer.sent + INCR_CHUNK_BYTES]
        transfer.requestor.change_property(prop, transfer.type, 8, chunk)
        transfer.sent += len(chunk)
        transfer.deadline = time.monotonic() + INCR_IDLE_TIMEOUT_S
        if not chunk:  # the zero-length chunk ends the transfer
            self._end_transfer((window.id, prop))

    def _end_transfer(self, key: tuple[int, int]) -> None:
        transfer = self._transfers.pop(key)
        if all(k[0] != key[0] for k in self._transfers):
            transfer.requestor.change_attributes(event_mask=0)

    def _expire_transfers(self) -> None:
        now = time.monotonic()
        for key, transfer in list(self._transfers.items()):
            if transfer.deadline <= now:
                log.warning("clipboard_incr_abandoned", display=self.display_name,
                            sent=transfer.sent, size=len(transfer.data))
                self._end_transfer(key)

    def _idle_deadline(self) -> float | None:
        return min((t.deadline for t in self._transfers.values()), default=None)

    # --- reading ----------------------------------------------------------------------------

    def _report_owner_change(self) -> None:
        if not self._owner_changed:
            return
        self._owner_changed = False
        # While we own CLIPBOARD, its text is the one we set, which is _last_text: no echo.
        text = self._read_text(time.monotonic() + CHANGE_READ_TIMEOUT_S)
        if text is None or text == self._last_text:
            return
        self._last_text = text
        if self._on_change is not None:
            try:
                self._on_change(text)
            except Exception as exc:
                log.error("clipboard_callback_failed", error=f"{type(exc).__name__}: {exc}",
                          exc_info=exc)

    def _read_text(self, deadline: float) -> str | None:
        a = self._atoms
        owner = self._display.get_selection_owner(a.clipboard)
        if owner == X.NONE:
            return None
        if owner.id == self._window.id:
            return self._owned.text if self._owned is not None else None
        stamp = self._server_time(deadline)
        try:
            for target in (a.utf8_string, a.string, a.text):
                converted = self._convert(target, stamp, deadline)
                if converted is None:
                    continue
                text = _decode(*converted, a)
                size = len(text.encode("utf-8"))
                if size > MAX_CLIPBOARD_BYTES:
                    raise _TooLarge(size)
                return text
        except _TooLarge as exc:
            log.warning("clipboard_too_large", display=self.display_name, size=exc.size,
                        limit=MAX_CLIPBOARD_BYTES)
        except _NoAnswer:
            log.info("clipboard_owner_silent", display=self.display_name)
        return None

    def _convert(self, target: int, stamp: int, deadline: float) -> tuple[int, bytes] | None:
        """(type, bytes) of CLIPBOARD converted to ``target``; None when the owner refuses.
        Raises _NoAnswer when it does not answer by ``deadline``, _TooLarge past the cap."""
        a = self._atoms
        wid = self._window.id
        self._window.convert_selection(a.clipboard, target, a.transfer, stamp)
        # The owner echoes our time; a late answer to an earlier, timed-out request does not.
        reply = self._wait_for(
            # Owners answer with SendEvent, so send_event is expected here.
            lambda e: (e.type == X.SelectionNotify and e.requestor.id == wid
                       and e.selection == a.clipboard and e.target == target
                       and e.time in (stamp, X.CurrentTime)),
            deadline)
        if reply is None:
            raise _NoAnswer()
        if reply.property == X.NONE:
            return None
        prop = self._window.get_property(a.transfer, X.AnyPropertyType, 0,
                                         MAX_CLIPBOARD_BYTES // 4 + 1, delete=True)
        if prop is None:
            return None
        if prop.property_type == a.incr:
            return self._receive_incr(deadline)
        if prop.bytes_after:
            self._window.delete_property(a.transfer)  # GetProperty only deletes what it read whole
            raise _TooLarge(len(prop.value) + prop.bytes_after)
        if prop.format != 8:
            return None
        return prop.property_type, bytes(prop.value)

    def _receive_incr(self, deadline: float) -> tuple[int, bytes] | None:
        """The rest of an INCR transfer (ICCCM 2.7.2), the announcement already read and deleted.

        Past MAX_CLIPBOARD_BYTES the chunks are still taken and dropped: owners such as xclip
        serve nobody else until their transfer ends, so walking away would freeze the clipboard
        for every application on the desktop."""
        a = self._atoms
        wid = self._window.id
        kind, parts, size, text_like = X.NONE, [], 0, True
        while True:
            notify = self._wait_for(
                lambda e: (e.type == X.PropertyNotify and not e.send_event and e.window.id == wid
                           and e.atom == a.transfer and e.state == X.PropertyNewValue),
                deadline)
            if notify is None:
                raise _NoAnswer()
            chunk = self._window.get_property(a.transfer, X.AnyPropertyType, 0, INCR_READ_UNITS,
                                              delete=True)
            if chunk is None or not len(chunk.value):
                break  # the zero-length chunk ends it
            text_like = text_like and chunk.format == 8
            kind = chunk.property_type
            size += len(chunk.value)
            if size <= MAX_CLIPBOARD_BYTES:
                parts.append(bytes(chunk.value))
            else:
                parts.clear()
        if not text_like:
            return None
        if size > MAX_CLIPBOARD_BYTES:
            raise _TooLarge(size)
        return kind, b"".join(parts)
