"""The control server: authenticated input and RPC from viewers, monitor lists and status back.

Commands flow one way: receive -> authenticate (envelope, replay window) -> validate (pydantic)
-> authorize (control policy) -> inject. Each step can only drop; nothing that failed a step
reaches the next, and nothing from the network can raise out of a handler. docs/protocol.md is
the wire specification; this module is its host side.

The server outlives LiveKit connections: the service attaches each new room (``attach``) and
sessions, control and held input carry over a reconnect.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc

from runner.config import Settings
from runner.control import envelope as env
from runner.control import messages as msg
from runner.control.held import BUTTON, KEY, Held, HeldInputs
from runner.control.inject import Injector
from runner.control.pointer import Layout, UnknownMonitor, WheelAccumulator, layout_from_mss
from runner.logs import get_logger
from runner.media.controls import MediaControl, QualityRequest, Region

log = get_logger(__name__)

PROTOCOL_VERSION = 1
SESSIONS_PER_IDENTITY = 4
MAX_SESSIONS = 64
RPC_RATE = 20.0
RPC_BURST = 40.0
INPUT_BURST_FACTOR = 2.0
MAX_RATE_BUCKETS = 256
TICK_S = 0.1
LAYOUT_POLL_S = 2.0
REJECT_LOG_INTERVAL_S = 1.0
UNAUTHENTICATED = 401
NONCE_BYTES = 16

ClipboardFactory = Callable[[str, Callable[[str], None]], Any]
"""Makes the clipboard (display, on_change) -> object with get_text(), set_text(), close()."""


def _percentiles_ms(samples: Any) -> dict[str, float] | None:
    """p50/p95 in ms of the recent receive-to-injected latencies, or None before any input."""
    values = sorted(samples)
    if not values:
        return None
    pick = lambda q: round(1000 * values[min(len(values) - 1, int(q * len(values)))], 3)  # noqa: E731
    return {"p50": pick(0.5), "p95": pick(0.95), "n": len(values)}


class RpcFailure(Exception):
    """An error reported to an authenticated caller inside the sealed response."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Session:
    id: int
    identity: str
    key_index: int
    window: env.ReplayWindow = field(default_factory=env.ReplayWindow)
    out_seq: int = 0

    def next_seq(self) -> int:
        self.out_seq += 1
        return self.out_seq


class TokenBucket:
    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.last = rate, burst, burst, time.monotonic()

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Rejections:
    """Counts dropped messages by reason; logs each reason at most once per interval."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._unlogged: Counter[str] = Counter()
        self._logged_at: dict[str, float] = {}

    def add(self, reason: str, identity: str | None, detail: str = "") -> None:
        self.counts[reason] += 1
        self._unlogged[reason] += 1
        now = time.monotonic()
        if now - self._logged_at.get(reason, -1e9) >= REJECT_LOG_INTERVAL_S:
            self._logged_at[reason] = now
            log.warning("input_rejected", reason=reason, sender=identity, count=self._unlogged.pop(reason),
                        detail=detail or None)


class ControlServer:
    def __init__(
        self,
        settings: Settings,
        pipeline: MediaControl,
        injector: Injector,
        clipboard_factory: ClipboardFactory | None = None,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.injector = injector
        self._clipboard_factory = clipboard_factory
        self._clipboard: Any = None
        self._room: rtc.Room | None = None
        self._identity = settings.livekit.identity
        self._key = b""
        self._key_index = 0
        self._sessions: OrderedDict[int, Session] = OrderedDict()
        self._controller: Session | None = None
        self._held = HeldInputs(settings.control.heartbeat_timeout_s)
        self._wheel = WheelAccumulator()
        self._input_buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._rpc_buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.rejections = Rejections()
        self.accepted = 0
        self.layout = Layout([])
        self.selected: str | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._methods: dict[str, tuple[type[msg._Msg], bool, Callable[[Session, Any], Awaitable[dict[str, Any]]]]] = {
            "dr.ping": (msg.PingParams, False, self._ping),
            "dr.monitors.list": (msg.NoParams, False, self._monitors_list),
            "dr.monitors.select": (msg.SelectMonitorParams, True, self._monitors_select),
            "dr.keyframe": (msg.NoParams, False, self._keyframe),
            "dr.quality.set": (msg.QualityParams, True, self._quality_set),
            "dr.stats": (msg.NoParams, False, self._stats),
            "dr.clipboard.get": (msg.NoParams, True, self._clipboard_get),
            "dr.clipboard.set": (msg.ClipboardSetParams, True, self._clipboard_set),
            "dr.control.request": (msg.NoParams, False, self._control_request),
            "dr.control.release": (msg.NoParams, False, self._control_release),
        }

    # --- keys -------------------------------------------------------------------------------
    def set_key(self, key: bytes, key_index: int) -> None:
        """Install the control key (derive it with env.derive_control_key off the loop).

        Sessions opened under another key end, and whatever the controller held is released:
        rotating the passphrase is how a key holder is revoked.
        """
        rotated = bool(self._key) and (key, key_index) != (self._key, self._key_index)
        self._key, self._key_index = key, key_index
        if rotated:
            self._sessions.clear()
            self._set_controller(None, reason="key_rotated")

    def update_settings(self, settings: Settings) -> None:
        """Apply a reloaded configuration's control and clipboard sections."""
        self.settings = settings
        self._held.timeout_s = settings.control.heartbeat_timeout_s
        for bucket in self._input_buckets.values():
            bucket.rate, bucket.burst = settings.control.max_input_rate, settings.control.max_input_rate * INPUT_BURST_FACTOR
        c = self._controller
        if c is not None and (settings.control.view_only or not self._may_control(c.identity)):
            self._set_controller(None, reason="policy_changed")
        if (settings.control.enabled and settings.clipboard.mode != "off" and self._clipboard is None
                and self._clipboard_factory is not None):
            task = asyncio.get_running_loop().create_task(self._open_clipboard(), name="clipboard-open")
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    # --- LiveKit binding --------------------------------------------------------------------
    def attach(self, room: rtc.Room) -> None:
        """Serve this room (a new connection); called by the service after each connect."""
        self._room = room
        self._identity = room.local_participant.identity
        room.on("data_received", self._on_data)
        room.on("participant_disconnected", self._on_participant_left)
        for method in ("dr.hello", *self._methods):
            room.local_participant.register_rpc_method(method, self._rpc_handler(method))

    def detach(self) -> None:
        self._room = None

    # --- tasks ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Heartbeat expiry, monitor layout changes and the injection queue, until cancelled."""
        enabled = self.settings.control.enabled
        if enabled and self._clipboard_factory is not None and self.settings.clipboard.mode != "off":
            await self._open_clipboard()
        await self._refresh_layout(initial=True)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.injector.run(), name="inject")
            tg.create_task(self._tick_loop(), name="control-tick")

    async def _tick_loop(self) -> None:
        last_layout = time.monotonic()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            for item in self._held.expired(now):
                log.info("input_released", reason="heartbeat_expired", kind=item.kind)
                self._release(item)
            if now - last_layout >= LAYOUT_POLL_S:
                last_layout = now
                await self._refresh_layout()

    async def close(self) -> None:
        """Release everything held and stop injecting (the runner is stopping)."""
        self._held.clear()
        await self.injector.release_all()
        await asyncio.to_thread(self.injector.close)
        if self._clipboard is not None:
            await asyncio.to_thread(self._clipboard.close)
            self._clipboard = None

    # --- layout -----------------------------------------------------------------------------
    async def _refresh_layout(self, *, initial: bool = False) -> None:
        try:
            screen = await self.pipeline.screen_layout(refresh=not initial)
        except Exception as exc:  # display away: keep the last layout; capture reports the loss
            log.debug("layout_unavailable", error=f"{type(exc).__name__}: {exc}")
            return
        raw: list[dict[str, Any]] = [vars(screen.union)] + [
            {**vars(m.region), "output": m.output, "name": m.name, "is_primary": m.primary} for m in screen.monitors]
        layout = layout_from_mss(raw)
        if layout == self.layout and not initial:
            return
        self.layout = layout
        left, top, right, bottom = layout.bounds()
        if self.settings.control.enabled:  # no input connection to X when control is off
            self.injector.submit(lambda b: setattr(b, "bounds", (left, top, right, bottom)))
        if initial:
            current = layout.by_index(self.settings.capture.monitor)
            self.selected = current.id if current else None
        elif self.selected is not None:
            await self._follow_layout()
        log.info("monitors", monitors=[m.wire() for m in layout.monitors], selected=self.selected)
        self._push_all({"t": "monitors", "monitors": self._monitor_list(), "selected": self.selected})

    async def _follow_layout(self) -> None:
        """The selected monitor moved, resized or vanished: capture its new rectangle, or the primary."""
        try:
            chosen = self.layout.get(self.selected or "")
        except UnknownMonitor:
            chosen = next((m for m in self.layout.monitors if m.primary), None)
            if chosen is None:
                return
        region = Region(chosen.x, chosen.y, chosen.width, chosen.height)
        self.selected = chosen.id
        if self.pipeline.region != region:
            await self.pipeline.select_region(region)

    def _monitor_list(self) -> list[dict[str, Any]]:
        return [m.wire() for m in self.layout.monitors]

    # --- data packets (input) ---------------------------------------------------------------
    def _on_data(self, packet: rtc.DataPacket) -> None:
        try:
            self._handle_input(packet)
        except Exception as exc:  # a bug here must not take the room callback down
            log.error("input_handler_failed", error=f"{type(exc).__name__}: {exc}")

    def _handle_input(self, packet: rtc.DataPacket) -> None:
        if packet.topic != env.DATA_CONTEXT:
            return
        # LiveKit announces a new participant to the others only after 1-3 s; until then the
        # SDK gives no sender. The session the envelope names then supplies the identity: the
        # envelope still proves a key holder sealed it for that session (docs/protocol.md).
        sender = packet.participant.identity if packet.participant is not None else None
        if not self.settings.control.enabled:
            return
        data = packet.data
        if len(data) > msg.MAX_INPUT_ENVELOPE_BYTES:
            self.rejections.add("size", sender)
            return
        if not self._bucket(self._input_buckets, sender or "", self.settings.control.max_input_rate,
                            self.settings.control.max_input_rate * INPUT_BURST_FACTOR):
            self.rejections.add("rate", sender)
            return
        try:
            session, opened = self._open(data, sender, env.KIND_INPUT, env.DATA_CONTEXT)
            sender = session.identity
            message = msg.parse_input(opened.body)
        except env.EnvelopeError as exc:
            self.rejections.add(exc.reason, sender, str(exc))
            return
        except msg.SchemaError as exc:
            self.rejections.add("schema", sender, str(exc))
            return
        reason = self._input_refusal(session)
        if reason is not None:
            self.rejections.add(reason, sender)
            return
        try:
            self._inject(message)
        except UnknownMonitor:
            self.rejections.add("unknown_monitor", sender)
            return
        self.accepted += 1

    def _input_refusal(self, session: Session) -> str | None:
        if self.settings.control.view_only:
            return "view_only"
        if self._controller is not session:
            return "no_control"
        return None

    def _inject(self, m: Any) -> None:
        now = time.monotonic()
        submit = self.injector.submit
        if isinstance(m, msg.Move):
            x, y = self.layout.to_pixels(m.mon, m.x, m.y)
            submit(lambda b: b.move_to(x, y), move=True)
        elif isinstance(m, msg.Rel):
            submit(lambda b: b.move_by(m.dx, m.dy))
        elif isinstance(m, msg.ButtonMsg):
            if m.mon is not None and m.x is not None and m.y is not None:
                px, py = self.layout.to_pixels(m.mon, m.x, m.y)  # land the click where aimed
                submit(lambda b: b.move_to(px, py))
            item = Held(BUTTON, m.button)
            if m.down:
                self._held.press(item, now)
            else:
                self._held.release(item)
            submit(lambda b: b.button(m.button, m.down))
        elif isinstance(m, msg.Wheel):
            sx, sy = self._wheel.add(m.dx, m.dy)
            if sx or sy:
                submit(lambda b: b.wheel(sx, sy))
        elif isinstance(m, msg.Key):
            item = Held(KEY, m.code)
            if m.down:
                self._held.press(item, now)
            else:
                self._held.release(item)
            mods = frozenset(m.mods)
            submit(lambda b: b.keyboard.key(m.code, m.key, m.down, mods))
        elif isinstance(m, msg.Text):
            submit(lambda b: b.keyboard.type_text(m.text))
        elif isinstance(m, msg.HeldMsg):
            for item in self._held.heartbeat(m.keys, m.buttons, now):
                self._release(item)
        elif isinstance(m, msg.Reset):
            self._held.clear()
            self._wheel.reset()
            submit(lambda b: b.release_all())

    def _release(self, item: Held) -> None:
        if item.kind == KEY:
            self.injector.submit(lambda b: b.keyboard.release(item.name))
        else:
            self.injector.submit(lambda b: b.button(item.name, False))

    # --- envelope handling ------------------------------------------------------------------
    def _open(self, data: bytes, sender: str | None, kind: int, context: str) -> tuple[Session, env.Opened]:
        """Find the session, check freshness, authenticate; EnvelopeError says why not.

        ``sender`` None (not yet announced by LiveKit) means: the session's own identity.
        """
        header = env.parse_header(data)
        if header.kind != kind or header.key_index != self._key_index or not self._key:
            raise env.EnvelopeError("auth", "wrong kind or key index")
        session = self._sessions.get(header.session)
        if session is None or (sender is not None and session.identity != sender):
            if sender is None:
                raise env.EnvelopeError("auth", "no sender and no such session")
            # Authenticate before saying "unknown session", so forgeries are counted as such.
            env.open_envelope(self._key, data, sender=sender, recipient=self._identity, context=context)
            raise env.EnvelopeError("unknown_session", "no such session for this sender")
        sender = session.identity
        if not session.window.check(header.seq):
            raise env.EnvelopeError("replay", "sequence number already seen or too old")
        opened = env.open_envelope(self._key, data, sender=sender, recipient=self._identity, context=context)
        session.window.accept(header.seq)
        self._sessions.move_to_end(session.id)
        return session, opened

    def _seal(self, session: Session, kind: int, context: str, body: dict[str, Any]) -> bytes:
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        return env.seal(self._key, kind=kind, key_index=self._key_index, session=session.id,
                        seq=session.next_seq(), sender=self._identity, recipient=session.identity,
                        context=context, body=raw)

    def _bucket(self, buckets: OrderedDict[str, TokenBucket], identity: str, rate: float, burst: float) -> bool:
        bucket = buckets.get(identity)
        if bucket is None:
            bucket = buckets[identity] = TokenBucket(rate, burst)
            while len(buckets) > MAX_RATE_BUCKETS:
                buckets.popitem(last=False)
        buckets.move_to_end(identity)
        return bucket.take(time.monotonic())

    # --- pushes -----------------------------------------------------------------------------
    def _push(self, session: Session, body: dict[str, Any]) -> None:
        room = self._room
        if room is None or not self._key:
            return
        payload = self._seal(session, env.KIND_PUSH, env.DATA_CONTEXT, body)
        task = asyncio.get_running_loop().create_task(
            self._send(room, payload, session.identity), name="control-push"
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send(self, room: rtc.Room, payload: bytes, identity: str) -> None:
        try:
            await room.local_participant.publish_data(
                payload, reliable=True, destination_identities=[identity], topic=env.DATA_CONTEXT
            )
        except Exception as exc:  # the viewer left or the room is reconnecting
            log.debug("push_failed", identity=identity, error=f"{type(exc).__name__}: {exc}")

    def _push_all(self, body: dict[str, Any]) -> None:
        for session in list(self._sessions.values()):
            self._push(session, body)

    def _control_body(self, session: Session) -> dict[str, Any]:
        c = self._controller
        return {"t": "control", "controller": c.identity if c else None, "you": c is session}

    # --- control ----------------------------------------------------------------------------
    def _may_control(self, identity: str) -> bool:
        allowed = self.settings.control.allowed_identities
        return not allowed or identity in allowed

    def _set_controller(self, session: Session | None, *, reason: str) -> None:
        previous = self._controller
        if previous is session:
            return
        self._controller = session
        if previous is not None:
            self._held.clear()
            self._wheel.reset()
            self.injector.submit(lambda b: b.release_all())
        log.info("control_changed", controller=session.identity if session else None,
                 previous=previous.identity if previous else None, reason=reason)
        for s in list(self._sessions.values()):
            self._push(s, self._control_body(s))

    def _on_participant_left(self, participant: rtc.RemoteParticipant) -> None:
        try:
            identity = participant.identity
            gone = [sid for sid, s in self._sessions.items() if s.identity == identity]
            if self._controller is not None and self._controller.identity == identity:
                self._set_controller(None, reason="controller_left")
            for sid in gone:
                del self._sessions[sid]
            self._input_buckets.pop(identity, None)
            self._rpc_buckets.pop(identity, None)
        except Exception as exc:
            log.error("participant_left_failed", error=f"{type(exc).__name__}: {exc}")

    # --- RPC --------------------------------------------------------------------------------
    def _rpc_handler(self, method: str) -> Callable[[rtc.RpcInvocationData], Awaitable[str]]:
        async def handle(data: rtc.RpcInvocationData) -> str:
            try:
                return await self._handle_rpc(method, data)
            except rtc.RpcError:
                raise
            except Exception as exc:  # never let a handler bug escape as a traceback to the caller
                log.error("rpc_failed", method=method, error=f"{type(exc).__name__}: {exc}")
                raise rtc.RpcError(UNAUTHENTICATED, "unauthenticated") from None

        return handle

    def _unauthenticated(self, reason: str, sender: str, detail: str = "") -> rtc.RpcError:
        self.rejections.add(reason, sender, detail)
        return rtc.RpcError(UNAUTHENTICATED, "unauthenticated")

    async def _handle_rpc(self, method: str, data: rtc.RpcInvocationData) -> str:
        sender = data.caller_identity
        if not self.settings.control.enabled:
            raise rtc.RpcError(rtc.RpcError.ErrorCode.UNSUPPORTED_METHOD, "control is disabled")
        if len(data.payload) > msg.MAX_RPC_PAYLOAD_CHARS:
            raise self._unauthenticated("size", sender)
        try:
            raw = base64.b64decode(data.payload, validate=True)
        except (binascii.Error, ValueError):
            raise self._unauthenticated("auth", sender, "payload is not base64") from None
        if method == "dr.hello":
            return self._hello(raw, sender)
        try:
            session, opened = self._open(raw, sender, env.KIND_RPC_REQUEST, method)
        except env.EnvelopeError as exc:
            if exc.reason == "unknown_session":
                # Authenticated, so the caller holds the key: tell it to say hello again.
                self.rejections.add("unknown_session", sender)
                raise rtc.RpcError(UNAUTHENTICATED, "no_session") from None
            raise self._unauthenticated(exc.reason, sender, str(exc)) from None
        context = env.response_context(method, opened.header.seq)
        try:
            if not self._bucket(self._rpc_buckets, sender, RPC_RATE, RPC_BURST):
                raise RpcFailure("busy", "too many calls; slow down")
            params_model, needs_control, handler = self._methods[method]
            params = msg.parse_params(params_model, opened.body)
            if needs_control and self._controller is not session:
                raise RpcFailure("no_control", "request control first (dr.control.request)")
            result = await handler(session, params)
            body: dict[str, Any] = {"ok": True, "result": result}
        except msg.SchemaError as exc:
            body = {"ok": False, "error": {"code": "bad_request", "message": str(exc)}}
        except RpcFailure as exc:
            body = {"ok": False, "error": {"code": exc.code, "message": str(exc)}}
        except Exception as exc:
            log.error("rpc_failed", method=method, error=f"{type(exc).__name__}: {exc}")
            body = {"ok": False, "error": {"code": "internal", "message": "internal error"}}
        return base64.b64encode(self._seal(session, env.KIND_RPC_RESPONSE, context, body)).decode()

    def _hello(self, raw: bytes, sender: str) -> str:
        try:
            header = env.parse_header(raw)
            if header.kind != env.KIND_RPC_REQUEST or header.session != 0 or header.key_index != self._key_index:
                raise env.EnvelopeError("auth", "not a hello request under the current key")
            opened = env.open_envelope(self._key, raw, sender=sender, recipient=self._identity, context="dr.hello")
        except env.EnvelopeError as exc:
            raise self._unauthenticated(exc.reason, sender, str(exc)) from None
        if not self._bucket(self._rpc_buckets, sender, RPC_RATE, RPC_BURST):
            raise self._unauthenticated("rate", sender)
        try:
            params = msg.parse_params(msg.HelloParams, opened.body)
            nonce = base64.b64decode(params.nonce, validate=True)
            if len(nonce) != NONCE_BYTES:
                raise ValueError
        except (msg.SchemaError, binascii.Error, ValueError):
            raise self._unauthenticated("schema", sender, "hello without a 16-byte nonce") from None
        session = self._new_session(sender)
        c = self._controller
        result = {
            "session": f"{session.id:016x}",
            "nonce": params.nonce,
            "protocol": PROTOCOL_VERSION,
            "runner": self._identity,
            "monitors": self._monitor_list(),
            "selected": self.selected,
            "controller": c.identity if c else None,
            "view_only": self.settings.control.view_only,
            "clipboard": self.settings.clipboard.mode,
            "limits": {
                "input_bytes": msg.MAX_INPUT_ENVELOPE_BYTES,
                "input_rate": self.settings.control.max_input_rate,
                "text_chars": msg.MAX_TEXT_CHARS,
                "clipboard_bytes": msg.MAX_CLIPBOARD_BYTES,
                "heartbeat_timeout_s": self.settings.control.heartbeat_timeout_s,
            },
        }
        log.info("control_session_opened", identity=sender, client=params.client[:64])
        body = {"ok": True, "result": result}
        context = env.response_context("dr.hello", header.seq)
        return base64.b64encode(self._seal(session, env.KIND_RPC_RESPONSE, context, body)).decode()

    def _new_session(self, identity: str) -> Session:
        mine = [s for s in self._sessions.values() if s.identity == identity]
        for old in mine[: max(0, len(mine) - SESSIONS_PER_IDENTITY + 1)]:
            self._drop_session(old)
        while len(self._sessions) >= MAX_SESSIONS:
            self._drop_session(next(iter(self._sessions.values())))
        sid = int.from_bytes(os.urandom(8), "big") or 1
        session = self._sessions[sid] = Session(sid, identity, self._key_index)
        return session

    def _drop_session(self, session: Session) -> None:
        self._sessions.pop(session.id, None)
        if self._controller is session:
            self._set_controller(None, reason="session_ended")

    # --- methods ----------------------------------------------------------------------------
    async def _ping(self, session: Session, p: msg.PingParams) -> dict[str, Any]:
        return {"t": p.t, "runner_ms": int(time.time() * 1000)}

    async def _monitors_list(self, session: Session, p: msg.NoParams) -> dict[str, Any]:
        return {"monitors": self._monitor_list(), "selected": self.selected}

    async def _monitors_select(self, session: Session, p: msg.SelectMonitorParams) -> dict[str, Any]:
        try:
            m = self.layout.get(p.id)
        except UnknownMonitor:
            raise RpcFailure("unknown_monitor", "no monitor with that id (dr.monitors.list)") from None
        width, height = await self.pipeline.select_region(Region(m.x, m.y, m.width, m.height))
        self.selected = m.id
        log.info("monitor_selected", monitor=m.id, width=width, height=height, by=session.identity)
        self._push_all({"t": "monitors", "monitors": self._monitor_list(), "selected": self.selected})
        return {"selected": m.id, "width": width, "height": height}

    async def _keyframe(self, session: Session, p: msg.NoParams) -> dict[str, Any]:
        self.pipeline.request_keyframe()
        return {}

    async def _quality_set(self, session: Session, p: msg.QualityParams) -> dict[str, Any]:
        q = self.pipeline.set_quality(QualityRequest(fps=p.fps, bitrate=p.bitrate, max_width=p.max_width,
                                                     max_height=p.max_height))
        log.info("quality_set", fps=q.fps, bitrate=q.bitrate, max_size=(q.max_width, q.max_height),
                 by=session.identity)
        return {"fps": q.fps, "bitrate": q.bitrate, "max_width": q.max_width, "max_height": q.max_height}

    async def _stats(self, session: Session, p: msg.NoParams) -> dict[str, Any]:
        info = self.pipeline.stream_info()
        return {
            "fps": info.rates.fps,
            "bitrate": info.rates.bitrate,
            "encode_ms": info.rates.encode_ms,
            "width": info.width,
            "height": info.height,
            "keyframes": info.keyframes,
            "dropped": info.dropped,
            "input": {
                "accepted": self.accepted,
                "rejected": dict(self.rejections.counts),
                "dropped": self.injector.dropped,
                "inject_ms": _percentiles_ms(self.injector.latencies_s),
            },
        }

    def _clipboard_allowed(self, direction: str) -> None:
        mode = self.settings.clipboard.mode
        if mode not in (direction, "both"):
            raise RpcFailure("forbidden", f"clipboard.mode is {mode}")
        if self._clipboard is None:
            raise RpcFailure("unavailable", "the host clipboard is not available")

    async def _clipboard_get(self, session: Session, p: msg.NoParams) -> dict[str, Any]:
        self._clipboard_allowed("from-host")
        text = await asyncio.to_thread(self._clipboard.get_text)
        if text is not None and len(text.encode("utf-8", "surrogatepass")) > msg.MAX_CLIPBOARD_BYTES:
            raise RpcFailure("unavailable", f"the host clipboard holds more than {msg.MAX_CLIPBOARD_BYTES} bytes")
        return {"text": text}

    async def _clipboard_set(self, session: Session, p: msg.ClipboardSetParams) -> dict[str, Any]:
        self._clipboard_allowed("to-host")
        await asyncio.to_thread(self._clipboard.set_text, p.text)
        return {}

    async def _open_clipboard(self) -> None:
        loop = asyncio.get_running_loop()

        def changed(text: str) -> None:  # clipboard thread
            loop.call_soon_threadsafe(self._on_host_clipboard, text)

        assert self._clipboard_factory is not None
        try:
            self._clipboard = await asyncio.to_thread(self._clipboard_factory, self.pipeline.display, changed)
        except Exception as exc:
            log.warning("clipboard_unavailable", error=f"{type(exc).__name__}: {exc}")

    def _on_host_clipboard(self, text: str) -> None:
        c = self._controller
        if c is None or self.settings.clipboard.mode not in ("from-host", "both"):
            return
        if len(text.encode("utf-8", "surrogatepass")) > msg.MAX_CLIPBOARD_BYTES:
            log.info("clipboard_push_skipped", reason="too_large")
            return
        self._push(c, {"t": "clipboard", "text": text})

    async def _control_request(self, session: Session, p: msg.NoParams) -> dict[str, Any]:
        if self.settings.control.view_only:
            raise RpcFailure("forbidden", "this runner is view-only (control.view_only)")
        if not self._may_control(session.identity):
            raise RpcFailure("forbidden", "this identity may not take control (control.allowed_identities)")
        c = self._controller
        if c is not None and c is not session and c.identity != session.identity:
            raise RpcFailure("busy", f"{c.identity} has control")
        self._set_controller(session, reason="requested")
        return {"controller": session.identity, "you": True}

    async def _control_release(self, session: Session, p: msg.NoParams) -> dict[str, Any]:
        if self._controller is session:
            self._set_controller(None, reason="released")
        c = self._controller
        return {"controller": c.identity if c else None, "you": False}
