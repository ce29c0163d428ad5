"""The control server: authenticated input and RPC from viewers, monitor lists and status back.

Commands flow one way: receive -> authenticate (sessions.py: envelope, replay window) -> validate
(messages.py) -> authorize (policy.py) -> dispatch (dispatch.py, rpc.py) -> inject (inject.py).
Each step can only drop; nothing that failed a step reaches the next, and nothing from the
network can raise out of a handler. docs/protocol.md is the wire specification; this module wires
the steps to LiveKit's callbacks and owns who has control.

The server outlives LiveKit connections: the service attaches each new room (``attach``) and
sessions, control and held input carry over a reconnect. The media pipeline is reached only
through ``MediaControl`` (runner/media/controls.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Awaitable, Callable

from livekit import rtc

from runner.config import Settings
from runner.control import envelope as env
from runner.control import messages as msg
from runner.control.cursor import CursorRelay
from runner.control.dispatch import InputDispatcher
from runner.control.host_clipboard import ClipboardFactory, HostClipboard
from runner.control.inject import Injector
from runner.control.monitors import LAYOUT_POLL_S, Monitors
from runner.control.ordering import Verdict
from runner.control.pointer import Layout, UnknownMonitor
from runner.control.policy import ControlPolicy, Refused
from runner.control.pushes import Pusher
from runner.control.ratelimit import Buckets, Rejections
from runner.control.rpc import METHODS, InputCounters, Methods
from runner.control.sessions import Session, Sessions
from runner.logs import get_logger
from runner.media.controls import MediaControl

log = get_logger(__name__)

PROTOCOL_VERSION = 2  # 2: ordinals on reliable input, padded input bodies, the resync push
RPC_RATE = 20.0
RPC_BURST = 40.0
INPUT_BURST_FACTOR = 2.0
TICK_S = 0.1
UNAUTHENTICATED = 401
NONCE_BYTES = 16


class ControlServer:
    def __init__(
        self,
        settings: Settings,
        media: MediaControl,
        injector: Injector,
        clipboard_factory: ClipboardFactory | None = None,
    ) -> None:
        self.settings = settings
        self.media = media
        self.injector = injector
        self.sessions = Sessions(settings.livekit.identity)
        self.policy = ControlPolicy(lambda: self.settings.control)
        self.pusher = Pusher(self.sessions)
        self.rejections = Rejections()
        self.counters = InputCounters(self.rejections)
        rate = settings.control.max_input_rate
        self._input_buckets = Buckets(rate, rate * INPUT_BURST_FACTOR)
        self._rpc_buckets = Buckets(RPC_RATE, RPC_BURST)
        self.monitors = Monitors(media, injector, initial_index=lambda: self.settings.capture.monitor,
                                 inject_bounds=lambda: self.settings.control.enabled,
                                 announce=self._announce_monitors)
        # capture.cursor = "viewer": the pointer is pushed to viewers instead of drawn (cursor.py).
        self.cursor = (CursorRelay(self.pusher.push, lambda: self.sessions, lambda: media.region,
                                   settings.capture.fps)
                       if settings.capture.cursor == "viewer" else None)
        self.input = InputDispatcher(injector, lambda: self.monitors.layout, settings.control.heartbeat_timeout_s)
        self.clipboard = HostClipboard(clipboard_factory, lambda: self.settings.clipboard,
                                       lambda: self.policy.controller is not None, self._push_clipboard)
        self.methods = Methods(lambda: self.settings, media, injector, self.monitors, self.clipboard,
                               self.policy, self.counters, self._set_controller)
        self._background: set[asyncio.Task[None]] = set()
        # Told the controller's identity (None: nobody) whenever control changes hands; the
        # host microphone follows it (runner/audio/microphone.py).
        self.controller_watchers: list[Callable[[str | None], None]] = []

    @property
    def accepted(self) -> int:
        """Input messages accepted (authenticated, valid, authorized) since start."""
        return self.counters.accepted

    @property
    def layout(self) -> Layout:
        return self.monitors.layout

    # --- keys and settings ------------------------------------------------------------------
    def set_key(self, key: bytes, key_index: int) -> None:
        """Install the control key (derive it with env.derive_control_key off the loop).

        Sessions opened under another key end, and whatever the controller held is released:
        rotating the passphrase is how a key holder is revoked.
        """
        if self.sessions.set_key(key, key_index):
            self._set_controller(None, "key_rotated")

    def update_settings(self, settings: Settings) -> None:
        """Apply a reloaded configuration's control and clipboard sections."""
        self.settings = settings
        self.input.held.timeout_s = settings.control.heartbeat_timeout_s
        rate = settings.control.max_input_rate
        self._input_buckets.set_rate(rate, rate * INPUT_BURST_FACTOR)
        if not self.policy.controller_still_allowed():
            self._set_controller(None, "policy_changed")
        if settings.control.enabled and self.clipboard.wanted:
            task = asyncio.get_running_loop().create_task(self.clipboard.open(self.media.display),
                                                          name="clipboard-open")
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    # --- LiveKit binding --------------------------------------------------------------------
    def attach(self, room: rtc.Room) -> None:
        """Serve this room (a new connection); called by the service after each connect."""
        self.pusher.room = room
        self.sessions.identity = room.local_participant.identity
        room.on("data_received", self._on_data)
        room.on("participant_disconnected", self._on_participant_left)
        # dr.hello last: a viewer calls it first, so an answered hello means every method is there
        # (registered first, a fast viewer's next call got "Method not supported at destination").
        for method in (*METHODS, "dr.hello"):
            room.local_participant.register_rpc_method(method, self._rpc_handler(method))
        self._reconcile({p.identity for p in room.remote_participants.values()})

    def _reconcile(self, present: set[str]) -> None:
        """After a (re)connect: whoever left while we were away is gone. LiveKit told us nothing
        about them, so their sessions and control would otherwise outlive them (everyone else
        got busy). The join response lists everyone in the room, so ``present`` is complete."""
        for identity in self.sessions.identities() - present:
            self._participant_gone(identity, reason="left_during_reconnect")

    def detach(self) -> None:
        self.pusher.room = None

    # --- tasks ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Heartbeat expiry, monitor layout changes and the injection queue, until cancelled."""
        if self.settings.control.enabled and self.clipboard.wanted:
            await self.clipboard.open(self.media.display)
        await self.monitors.refresh(initial=True)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.injector.run(), name="inject")
            tg.create_task(self._tick_loop(), name="control-tick")
            if self.cursor is not None and self.settings.control.enabled:  # else no viewer to tell
                tg.create_task(self.media.watch_cursor(self.cursor), name="cursor")

    async def _tick_loop(self) -> None:
        last_layout = time.monotonic()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            self.input.expire(now)
            if now - last_layout >= LAYOUT_POLL_S:
                last_layout = now
                await self.monitors.refresh()

    async def close(self) -> None:
        """Release everything held and stop injecting (the runner is stopping)."""
        self.input.held.clear()
        await self.injector.release_all()
        await asyncio.to_thread(self.injector.close)
        await self.clipboard.close()

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
        if not self._input_buckets.take(sender or ""):
            self.rejections.add("rate", sender)
            return
        try:
            session, opened = self.sessions.open(data, sender, env.KIND_INPUT, env.DATA_CONTEXT)
            sender = session.identity
            self._end_evicted()
            message = msg.parse_input(opened.body)
        except env.EnvelopeError as exc:
            self.rejections.add(exc.reason, sender, str(exc))
            return
        except msg.SchemaError as exc:
            self.rejections.add("schema", sender, str(exc))
            return
        if isinstance(message, msg.Ordered):
            match session.order.check(message.o, reset=isinstance(message, msg.Reset)):
                case Verdict.STALE:
                    self.rejections.add("stale", sender)
                    return
                case Verdict.GAP:
                    self.rejections.add("order", sender)
                    self._desynchronised(session)
                    return
                case Verdict.DESYNCED:
                    self.rejections.add("desynced", sender)
                    return
                case Verdict.IN_ORDER:
                    pass
        reason = self.policy.input_refusal(session)
        if reason is not None:
            self.rejections.add(reason, sender)
            return
        try:
            self.input.dispatch(message)
        except UnknownMonitor:
            self.rejections.add("unknown_monitor", sender)
            return
        self.counters.accepted += 1

    # --- control ----------------------------------------------------------------------------
    def _set_controller(self, session: Session | None, reason: str) -> None:
        previous = self.policy.controller
        if previous is session:
            return
        self.policy.controller = session
        if previous is not None:
            self.input.release_all()
        log.info("control_changed", controller=session.identity if session else None,
                 previous=previous.identity if previous else None, reason=reason)
        for watcher in self.controller_watchers:
            watcher(session.identity if session else None)
        for s in self.sessions:
            self.pusher.push(s, self._control_body(s))

    def _control_body(self, session: Session) -> dict[str, object]:
        c = self.policy.controller
        return {"t": "control", "controller": c.identity if c else None, "you": c is session}

    def _announce_monitors(self, body: dict[str, object]) -> None:
        self.pusher.push_all(body)
        if self.cursor is not None:
            self.cursor.region_changed()  # pointer positions are relative to the picture

    def _push_clipboard(self, text: str) -> None:
        if self.policy.controller is not None:
            self.pusher.push(self.policy.controller, {"t": "clipboard", "text": text})

    def _desynchronised(self, session: Session) -> None:
        """A reliable message is missing or late: nothing more of this session's reliable input is
        injected until its reset, what it holds is released after what came in order, and the
        viewer is asked to reset."""
        log.warning("input_out_of_order", identity=session.identity, expected=session.order.expected)
        if self.policy.controller is session:
            self.input.release_after_queued()
        self.pusher.push(session, {"t": "resync"})

    def _end_evicted(self) -> None:
        """Sessions pushed out by a newer one of the same viewer (or the global bound) end."""
        evicted, self.sessions.evicted = self.sessions.evicted, []
        for old in evicted:
            if self.policy.controller is old:
                self._set_controller(None, "session_ended")

    def _on_participant_left(self, participant: rtc.RemoteParticipant) -> None:
        try:
            self._participant_gone(participant.identity, reason="controller_left")
        except Exception as exc:
            log.error("participant_left_failed", error=f"{type(exc).__name__}: {exc}")

    def _participant_gone(self, identity: str, *, reason: str) -> None:
        c = self.policy.controller
        if c is not None and c.identity == identity:
            self._set_controller(None, reason)
        self.sessions.drop_identity(identity)
        self._input_buckets.forget(identity)
        self._rpc_buckets.forget(identity)

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
            session, opened = self.sessions.open(raw, sender, env.KIND_RPC_REQUEST, method)
        except env.EnvelopeError as exc:
            if exc.reason == "unknown_session":
                # Authenticated, so the caller holds the key: tell it to say hello again.
                self.rejections.add("unknown_session", sender)
                raise rtc.RpcError(UNAUTHENTICATED, "no_session") from None
            raise self._unauthenticated(exc.reason, sender, str(exc)) from None
        self._end_evicted()
        context = env.response_context(method, opened.header.seq)
        body: dict[str, object]
        try:
            if not self._rpc_buckets.take(sender):
                raise Refused("busy", "too many calls; slow down")
            body = {"ok": True, "result": await self.methods.call(session, method, opened.body)}
        except msg.SchemaError as exc:
            body = {"ok": False, "error": {"code": "bad_request", "message": str(exc)}}
        except Refused as exc:
            body = {"ok": False, "error": {"code": exc.code, "message": str(exc)}}
        except Exception as exc:
            log.error("rpc_failed", method=method, error=f"{type(exc).__name__}: {exc}")
            body = {"ok": False, "error": {"code": "internal", "message": "internal error"}}
        return base64.b64encode(self.sessions.seal(session, env.KIND_RPC_RESPONSE, context, body)).decode()

    def _hello(self, raw: bytes, sender: str) -> str:
        try:
            opened = self.sessions.open_hello(raw, sender)
        except env.EnvelopeError as exc:
            raise self._unauthenticated(exc.reason, sender, str(exc)) from None
        if not self._rpc_buckets.take(sender):
            raise self._unauthenticated("rate", sender)
        try:
            params = msg.parse_params(msg.HelloParams, opened.body)
            nonce = base64.b64decode(params.nonce, validate=True)
            if len(nonce) != NONCE_BYTES:
                raise ValueError
        except (msg.SchemaError, binascii.Error, ValueError):
            raise self._unauthenticated("schema", sender, "hello without a 16-byte nonce") from None
        session = self.sessions.new(sender)
        c = self.policy.controller
        result = {
            "session": f"{session.id:016x}",
            "nonce": params.nonce,
            "protocol": PROTOCOL_VERSION,
            "runner": self.sessions.identity,
            "monitors": self.monitors.wire(),
            "selected": self.monitors.selected,
            "controller": c.identity if c else None,
            "view_only": self.settings.control.view_only,
            "clipboard": self.settings.clipboard.mode,
            "resizable": self.settings.capture.resizable,
            "cursor": self.settings.capture.cursor,
            "limits": {
                "input_bytes": msg.MAX_INPUT_ENVELOPE_BYTES,
                "input_rate": self.settings.control.max_input_rate,
                "text_chars": msg.MAX_TEXT_CHARS,
                "clipboard_bytes": msg.MAX_CLIPBOARD_BYTES,
                "heartbeat_timeout_s": self.settings.control.heartbeat_timeout_s,
            },
        }
        log.info("control_session_opened", identity=sender, client=params.client[:64])
        context = env.response_context("dr.hello", opened.header.seq)
        body = {"ok": True, "result": result}
        answer = base64.b64encode(self.sessions.seal(session, env.KIND_RPC_RESPONSE, context, body)).decode()
        if self.cursor is not None:  # after the answer, so these pushes number after it
            self.cursor.welcome(session)
        return answer
