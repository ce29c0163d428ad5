"""A hostile LiveKit server, in process: packets reach the runner's control server the way the
Python SDK delivers them (``rtc.DataPacket`` to the ``data_received`` callback, ``rtc.RpcInvocationData``
to the RPC handlers), in whatever order, number and labelling a server can produce, and what
reaches X is read back from X (tests/xstate.py, scripts/xrecorder.py).

The server can drop, delay, reorder, duplicate and replay packets, and relabel the sender (it
assigns identities). It cannot seal: every envelope here is sealed by a ``Viewer`` holding the
key, exactly as the reference viewer seals it; the test decides what the server does with it.

    stack = HostileStack(settings, display)      # a real Injector on that X display
    v = stack.viewer("alice")
    await stack.hello(v)                          # a session, as the viewer opens it
    await stack.call(v, "dr.control.request")
    stack.deliver(v.input({"t": "key", ...}))     # or reorder / drop / duplicate these
    await stack.settle()                          # every queued injection has run
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import os
import uuid
from dataclasses import dataclass, field

from livekit import rtc
from livekit.rtc._proto import participant_pb2, room_pb2

from controlfakes import FakeMedia, screen
from runner.config import Settings, load_settings
from runner.control import envelope as env
from runner.control import messages as msg
from runner.control.inject import Injector
from runner.control.pointer import layout_from_screen
from runner.control.server import ControlServer

RUNNER = "desktop-runner"
PASSPHRASE = "hostile server passphrase"


def settings(**control: object) -> Settings:
    return load_settings(None, {
        "livekit": {"url": "ws://127.0.0.1:1", "api_key": "k", "api_secret": "s" * 32, "identity": RUNNER},
        "e2ee": {"passphrase": PASSPHRASE},
        "control": {"max_input_rate": 10_000, **control},
    })


@functools.cache
def participant(identity: str) -> rtc.RemoteParticipant:
    """A RemoteParticipant as the SDK makes it from the server's participant info (one per identity,
    as in a room)."""
    info = participant_pb2.ParticipantInfo(identity=identity, sid=f"PA_{identity}")
    return rtc.RemoteParticipant(participant_pb2.OwnedParticipant(info=info))


def data_packet(data: bytes, sender: str | None, topic: str = env.DATA_CONTEXT) -> rtc.DataPacket:
    """A data packet as the SDK hands it to ``data_received`` (no participant: not announced yet)."""
    return rtc.DataPacket(data=data, kind=room_pb2.DataPacketKind.KIND_RELIABLE,
                          participant=participant(sender) if sender is not None else None, topic=topic)


def invocation(method: str, payload: str, caller: str) -> rtc.RpcInvocationData:
    """An RPC invocation as the SDK hands it to a registered handler."""
    return rtc.RpcInvocationData(request_id=str(uuid.uuid4()), caller_identity=caller, payload=payload,
                                 response_timeout=10.0, method=method)


@dataclass
class Packet:
    """One input envelope as the viewer sent it; the server may deliver it under another label."""

    data: bytes
    sender: str
    seq: int
    body: dict[str, object]


@dataclass
class Viewer:
    """The viewer side of a session: seals like viewer/control.js (one counter for all it sends)."""

    identity: str
    key: bytes
    key_index: int = 0
    session: int = 0
    seq: int = 0
    ordinal: int = 0  # of this session's reliable input messages
    hellos: list[bytes] = field(default_factory=list)

    def seal(self, kind: int, context: str, body: dict[str, object] | bytes, *,
             session: int | None = None) -> tuple[bytes, int]:
        self.seq += 1
        raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        sealed = env.seal(self.key, kind=kind, key_index=self.key_index,
                          session=self.session if session is None else session, seq=self.seq,
                          sender=self.identity, recipient=RUNNER, context=context, body=raw)
        return sealed, self.seq

    def input(self, body: dict[str, object]) -> Packet:
        """An input message as the viewer seals it: reliable kinds numbered, the body padded."""
        ordinal = None
        if body.get("t") in msg.RELIABLE_KINDS:
            self.ordinal += 1
            ordinal = self.ordinal
        data, seq = self.seal(env.KIND_INPUT, env.DATA_CONTEXT, msg.encode_input(body, ordinal))
        return Packet(data, self.identity, seq, body)


class CallRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class HostileStack:
    """A ControlServer with a real Injector on ``display``, fed by the test acting as the server."""

    def __init__(self, settings: Settings, display: str, width: int = 1280, height: int = 720) -> None:
        os.environ["DISPLAY"] = display  # pynput's mouse takes the display from here (set before any thread)
        self.media = FakeMedia(screen((0, 0, width, height), (0, 0, width, height, "screen", True)), display)
        self.injector = Injector(display)
        self.server = ControlServer(settings, self.media, self.injector)
        self.key = env.derive_control_key(PASSPHRASE)
        self.server.set_key(self.key, 0)
        self.server.monitors.layout = layout_from_screen(self.media.layout)
        bounds = self.server.monitors.layout.bounds()
        self.injector.submit(lambda b: setattr(b, "bounds", bounds))

    async def __aenter__(self) -> HostileStack:
        self._task = asyncio.get_running_loop().create_task(self.server.run(), name="control")
        await self.settle()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.server.close()

    def viewer(self, identity: str) -> Viewer:
        return Viewer(identity, self.key)

    # --- what the server delivers --------------------------------------------------------------
    def deliver(self, packet: Packet, *, as_sender: str | None = "", topic: str = env.DATA_CONTEXT) -> None:
        """Deliver one data packet; ``as_sender`` relabels it (None: no sender, as before LiveKit
        announced the participant)."""
        sender = packet.sender if as_sender == "" else as_sender
        self.server._on_data(data_packet(packet.data, sender, topic))

    async def rpc(self, method: str, payload: bytes, caller: str) -> str:
        """Invoke the runner's RPC handler as the SDK does; raises rtc.RpcError as the caller sees it."""
        return await self.server._handle_rpc(method, invocation(method, base64.b64encode(payload).decode(), caller))

    async def hello(self, v: Viewer) -> dict[str, object]:
        """Open a session for ``v``; the sealed hello is kept in ``v.hellos`` for replaying."""
        nonce = base64.b64encode(os.urandom(16)).decode()
        sealed, _ = v.seal(env.KIND_RPC_REQUEST, "dr.hello", {"nonce": nonce, "client": "hostile-test"}, session=0)
        v.hellos.append(sealed)
        answer = base64.b64decode(await self.rpc("dr.hello", sealed, v.identity))
        header = env.parse_header(answer)
        opened = env.open_envelope(self.key, answer, sender=RUNNER, recipient=v.identity,
                                   context=env.response_context("dr.hello", v.seq))
        result: dict[str, object] = json.loads(opened.body)["result"]
        assert result["nonce"] == nonce
        v.session = header.session
        v.ordinal = 0
        return result

    async def call(self, v: Viewer, method: str, params: dict[str, object] | None = None) -> dict[str, object]:
        sealed, seq = v.seal(env.KIND_RPC_REQUEST, method, params or {})
        answer = base64.b64decode(await self.rpc(method, sealed, v.identity))
        opened = env.open_envelope(self.key, answer, sender=RUNNER, recipient=v.identity,
                                   context=env.response_context(method, seq))
        body = json.loads(opened.body)
        if not body["ok"]:
            raise CallRefused(body["error"]["code"], body["error"]["message"])
        result: dict[str, object] = body["result"]
        return result

    # --- the runner side -----------------------------------------------------------------------
    async def settle(self) -> None:
        """Return once everything queued for injection so far has run on X."""
        await self.injector.barrier()
