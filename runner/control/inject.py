"""Injection into the X session: the only module that touches the real keyboard and mouse.

One dedicated thread owns every X connection used for input (pynput's mouse controller, the
XTEST keyboard injector), so injection never blocks the event loop and the connections are
never shared across threads. The control server hands it validated, authorized operations
through a bounded queue; pointer moves waiting in the queue are coalesced (only the newest
position matters) and are the first thing dropped when the queue is full.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

from runner.control.keyboard import KeyboardInjector
from runner.control.pointer import clamp_to_bounds, saturate_int16
from runner.logs import get_logger

log = get_logger(__name__)

QUEUE_LIMIT = 256
# X core protocol button numbers: 1-3 buttons, 4-7 wheel, 8/9 back/forward.
BUTTONS = {"left": 1, "middle": 2, "right": 3, "back": 8, "forward": 9}
WHEEL_UP, WHEEL_DOWN, WHEEL_LEFT, WHEEL_RIGHT = 4, 5, 6, 7
MAX_WHEEL_STEPS = 64


T = TypeVar("T")


class InjectError(RuntimeError):
    """The X input connections cannot be made; the message says why and what to set."""


class OpKind(Enum):
    INPUT = "input"      # in order, dropped only when the queue is full of them
    MOVE = "move"        # a pointer move: may be coalesced or dropped under pressure
    RELEASE = "release"  # releases held input: never dropped, runs before any queued input
    BARRIER = "barrier"  # no X call: tells the event loop everything queued before it has run


@dataclass
class Op:
    """One injection: ``fn`` runs on the injection thread with the X backend."""

    fn: Callable[[XBackend], object]
    kind: OpKind = OpKind.INPUT
    epoch: int = 0  # INPUT and MOVE run only while the injector is still in this epoch
    enqueued_at: float = field(default_factory=time.perf_counter)

    @property
    def move(self) -> bool:
        return self.kind is OpKind.MOVE


class XBackend:
    """The X connections, created and used on the injection thread only."""

    def __init__(self, display: str) -> None:
        # pynput (the mouse) takes no display argument: it connects to $DISPLAY, at import and
        # in Controller(). The environment is read here, never written (other threads read it),
        # so it must name the captured display. The keyboard opens ``display`` itself.
        if os.environ.get("DISPLAY") != display:
            raise InjectError(f"pointer input needs DISPLAY={display} in the runner's environment "
                              f"(pynput uses $DISPLAY; it is {os.environ.get('DISPLAY')!r})")
        from pynput.mouse import Button, Controller

        self.display = display
        self._Button = Button
        self.mouse = Controller()
        self._keyboard: KeyboardInjector | None = None
        self.bounds: tuple[int, int, int, int] | None = None
        self.buttons_down: set[str] = set()

    @property
    def keyboard(self) -> KeyboardInjector:
        """The XTEST keyboard injector, opened on first use."""
        if self._keyboard is None:
            self._keyboard = KeyboardInjector(self.display)
        return self._keyboard

    def move_to(self, x: int, y: int) -> None:
        if self.bounds is not None:
            x, y = clamp_to_bounds(x, y, self.bounds)
        self.mouse.position = (x, y)

    def move_by(self, dx: int, dy: int) -> None:
        x, y = self.mouse.position
        self.move_to(x + saturate_int16(dx), y + saturate_int16(dy))

    def button(self, name: str, down: bool) -> None:
        button = self._Button(BUTTONS[name])
        if down:
            self.mouse.press(button)
            self.buttons_down.add(name)
        elif name in self.buttons_down:
            self.mouse.release(button)
            self.buttons_down.discard(name)

    def wheel(self, steps_x: int, steps_y: int) -> None:
        """Positive y scrolls down, positive x right (docs/protocol.md); one X click per step."""
        for count, positive, negative in ((steps_y, WHEEL_DOWN, WHEEL_UP), (steps_x, WHEEL_RIGHT, WHEEL_LEFT)):
            button = self._Button(positive if count > 0 else negative)
            for _ in range(min(abs(count), MAX_WHEEL_STEPS)):
                self.mouse.click(button)

    def release_all(self) -> None:
        for name in sorted(self.buttons_down):
            self.mouse.release(self._Button(BUTTONS[name]))
        self.buttons_down.clear()
        if self._keyboard is not None:
            self._keyboard.release_all()

    def close(self) -> None:
        try:
            self.release_all()
        finally:
            if self._keyboard is not None:
                self._keyboard.close()


class Injector:
    """Runs injection operations in order on its own thread; see the module docstring."""

    def __init__(self, display: str, backend_factory: Callable[[str], XBackend] = XBackend) -> None:
        self.display = display
        self._factory = backend_factory
        self._backend: XBackend | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="inject")
        self._queue: deque[Op] = deque()
        self._ready = asyncio.Event()
        self.dropped = 0
        self.injected = 0
        self.latencies_s: deque[float] = deque(maxlen=4096)  # enqueue to injected, for the benchmark
        self._failures_logged_at = 0.0
        # Bumped by revoke(): input queued in an earlier epoch never runs. Written on the event
        # loop, read on the injection thread (an int: one atomic load).
        self.epoch = 0
        self.revoked = 0  # queued operations discarded by revoke()

    # --- producer side (event loop) --------------------------------------------------------
    def stale(self, epoch: int) -> Callable[[], bool]:
        """For long operations (a text): True once the injector left ``epoch``; checked between steps."""
        return lambda: self.epoch != epoch

    def submit_release(self, fn: Callable[[XBackend], object], *, first: bool = True) -> None:
        """Queue a release: never dropped; ahead of any queued input (after earlier releases), or
        with ``first`` False after everything queued (input in order, then the release)."""
        at = len(self._queue)
        if first:
            at = next((i for i, op in enumerate(self._queue) if op.kind is not OpKind.RELEASE), at)
        self._queue.insert(at, Op(fn, OpKind.RELEASE))
        self._ready.set()

    def revoke(self) -> None:
        """Control changed hands, the key rotated, view-only came on, or the controller reset: no
        input queued so far may run, a text being typed stops at its next character, and
        everything held is released first."""
        self.epoch += 1
        kept = deque(op for op in self._queue if op.kind in (OpKind.RELEASE, OpKind.BARRIER))
        self.revoked += len(self._queue) - len(kept)
        self._queue = kept
        self.submit_release(lambda b: b.release_all())

    def submit(self, fn: Callable[[XBackend], object], *, move: bool = False) -> bool:
        """Queue an operation; False when it was dropped (queue full of non-moves)."""
        if move and self._queue and self._queue[-1].move:
            self._queue[-1] = Op(fn, OpKind.MOVE, self.epoch)  # coalesce: only the newest position matters
            self._ready.set()
            return True
        if len(self._queue) >= QUEUE_LIMIT:
            oldest_move = next((op for op in self._queue if op.move), None)
            if oldest_move is None:
                self.dropped += 1
                return False
            self._queue.remove(oldest_move)
            self.dropped += 1
        self._queue.append(Op(fn, OpKind.MOVE if move else OpKind.INPUT, self.epoch))
        self._ready.set()
        return True

    async def barrier(self) -> None:
        """Return once every operation queued before this call has run (or was discarded)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finish() -> None:
            if not done.done():
                done.set_result(None)

        def arrived(_: XBackend) -> None:  # injection thread
            loop.call_soon_threadsafe(finish)

        self._queue.append(Op(arrived, OpKind.BARRIER))
        self._ready.set()
        await done

    async def run(self) -> None:
        """Consume the queue until cancelled; failures are logged (rate-limited), never fatal."""
        loop = asyncio.get_running_loop()
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                op = self._queue.popleft()
                await loop.run_in_executor(self._pool, self._apply, op)

    def _connected(self) -> XBackend:
        if self._backend is None:
            self._backend = self._factory(self.display)
        return self._backend

    def _apply(self, op: Op) -> None:
        if op.kind is OpKind.BARRIER:
            op.fn(self._backend)  # type: ignore[arg-type]  # a barrier never touches X
            return
        if op.kind is not OpKind.RELEASE and op.epoch != self.epoch:
            self.revoked += 1  # queued before a revocation that came while it waited
            return
        try:
            op.fn(self._connected())
            self.injected += 1
            self.latencies_s.append(time.perf_counter() - op.enqueued_at)
        except Exception as exc:  # X gone, keymap trouble: drop this input, reconnect next time
            now = time.monotonic()
            if now - self._failures_logged_at > 1.0:
                self._failures_logged_at = now
                log.warning("inject_failed", error=f"{type(exc).__name__}: {exc}")
            self._drop_backend()

    def _drop_backend(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None and backend._keyboard is not None:
            backend._keyboard.close()  # never raises

    async def call(self, fn: Callable[[XBackend], T]) -> T:
        """Run one function on the injection thread now (bypassing the queue) and return its result."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(self._connected()))

    def _clear(self) -> None:
        """Drop everything queued; waiting barriers are let through."""
        for op in self._queue:
            if op.kind is OpKind.BARRIER:
                op.fn(self._backend)  # type: ignore[arg-type]  # a barrier never touches X
        self._queue.clear()

    async def release_all(self) -> None:
        """Release every key and button we hold, after dropping queued input."""
        self._clear()
        if self._backend is None:
            return
        try:
            await self.call(lambda b: b.release_all())
        except Exception as exc:
            log.warning("release_failed", error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Release everything and stop the thread (blocking; call via asyncio.to_thread)."""
        self._clear()

        def shutdown() -> None:
            if self._backend is not None:
                try:
                    self._backend.close()
                except Exception as exc:
                    log.warning("release_failed", error=f"{type(exc).__name__}: {exc}")
                self._backend = None

        self._pool.submit(shutdown)
        self._pool.shutdown(wait=True)
