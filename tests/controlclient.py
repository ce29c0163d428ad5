"""A Python viewer-side client of the control protocol (docs/protocol.md), for tests and benchmarks.

Joins a room with the LiveKit Python SDK (E2EE on, or off to play a plaintext attacker), opens a
session with ``dr.hello`` and sends sealed input and calls. ``raw_*`` methods send arbitrary bytes,
for the hostile-input tests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Callable
from typing import Any

from livekit import rtc

from runner.control import envelope as env
from runner.control import messages as msg


class CallFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class ControlClient:
    def __init__(self, room: rtc.Room, runner_identity: str, passphrase: str | None, key_index: int = 0) -> None:
        self.room = room
        self.runner = runner_identity
        self.key = env.derive_control_key(passphrase) if passphrase is not None else b"\0" * 32
        self.key_index = key_index
        self.session = 0
        self.seq = 0
        self.ordinal = 0  # of this session's reliable input messages
        self.window = env.ReplayWindow()
        self.pushes: list[dict[str, Any]] = []
        self.push_failures = 0
        self._push_event = asyncio.Event()
        room.on("data_received", self._on_data)

    @classmethod
    async def join(cls, url: str, token: str, runner_identity: str, passphrase: str | None,
                   *, e2ee: bool = True, key_index: int = 0) -> ControlClient:
        room = rtc.Room()
        options = rtc.RoomOptions(auto_subscribe=False)
        if e2ee and passphrase is not None:
            options.encryption = rtc.E2EEOptions(
                key_provider_options=rtc.KeyProviderOptions(shared_key=passphrase.encode()))
        await room.connect(url, token, options)
        if e2ee and passphrase is not None and key_index:
            provider = room.e2ee_manager.key_provider
            assert provider is not None  # E2EE is on
            provider.set_shared_key(passphrase.encode(), key_index)
        for _ in range(100):  # the runner must be in the room before we can call it
            if runner_identity in room.remote_participants:
                break
            await asyncio.sleep(0.1)
        return cls(room, runner_identity, passphrase, key_index)

    @property
    def identity(self) -> str:
        return self.room.local_participant.identity

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def seal(self, kind: int, context: str, body: Any, *, session: int | None = None, seq: int | None = None) -> bytes:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return env.seal(self.key, kind=kind, key_index=self.key_index,
                        session=self.session if session is None else session,
                        seq=self._next() if seq is None else seq, sender=self.identity,
                        recipient=self.runner, context=context, body=raw)

    # --- RPC ------------------------------------------------------------------------------------
    async def raw_call(self, method: str, payload: str, timeout: float = 5.0) -> str:
        return await self.room.local_participant.perform_rpc(
            destination_identity=self.runner, method=method, payload=payload, response_timeout=timeout)

    async def hello(self) -> dict[str, Any]:
        nonce = base64.b64encode(os.urandom(16)).decode()
        seq = self._next()
        request = self.seal(env.KIND_RPC_REQUEST, "dr.hello", {"nonce": nonce, "client": "tests"}, session=0, seq=seq)
        answer = base64.b64decode(await self.raw_call("dr.hello", base64.b64encode(request).decode()))
        header = env.parse_header(answer)
        opened = env.open_envelope(self.key, answer, sender=self.runner, recipient=self.identity,
                                   context=env.response_context("dr.hello", seq))
        body = json.loads(opened.body)
        result: dict[str, Any] = body["result"]
        assert result["nonce"] == nonce and int(result["session"], 16) == header.session
        self.session = header.session
        self.ordinal = 0
        self.window = env.ReplayWindow()
        self.window.accept(header.seq)
        return result

    async def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 5.0) -> dict[str, Any]:
        seq = self._next()
        request = self.seal(env.KIND_RPC_REQUEST, method, params or {}, seq=seq)
        answer = base64.b64decode(await self.raw_call(method, base64.b64encode(request).decode(), timeout))
        header = env.parse_header(answer)
        opened = env.open_envelope(self.key, answer, sender=self.runner, recipient=self.identity,
                                   context=env.response_context(method, seq))
        if header.session != self.session or not self.window.accept(header.seq):
            raise AssertionError("response from another session or replayed")
        body = json.loads(opened.body)
        if not body["ok"]:
            raise CallFailed(body["error"]["code"], body["error"]["message"])
        result: dict[str, Any] = body["result"]
        return result

    async def call_until(self, method: str, predicate: Callable[[dict[str, Any]], bool],
                         params: dict[str, Any] | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """Call ``method`` until its result satisfies ``predicate`` (or ``timeout`` passes); the
        last result either way, for the caller's assertions."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate(result := await self.call(method, params)):
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
        return result

    # --- input ----------------------------------------------------------------------------------
    async def send(self, message: dict[str, Any], *, reliable: bool = True) -> None:
        """Seal and send as the reference viewer does: reliable kinds numbered, the body padded."""
        ordinal = None
        if message.get("t") in msg.RELIABLE_KINDS:
            self.ordinal += 1
            ordinal = self.ordinal
        body = msg.encode_input(message, ordinal)
        await self.raw_send(self.seal(env.KIND_INPUT, env.DATA_CONTEXT, body), reliable=reliable)

    async def raw_send(self, payload: bytes, *, reliable: bool = True, topic: str = env.DATA_CONTEXT) -> None:
        await self.room.local_participant.publish_data(
            payload, reliable=reliable, destination_identities=[self.runner], topic=topic)

    # --- pushes ---------------------------------------------------------------------------------
    def _on_data(self, packet: rtc.DataPacket) -> None:
        if packet.topic != env.DATA_CONTEXT or packet.participant is None or packet.participant.identity != self.runner:
            return
        try:
            opened = env.open_envelope(self.key, packet.data, sender=self.runner, recipient=self.identity,
                                       context=env.DATA_CONTEXT)
            if opened.header.session != self.session or not self.window.accept(opened.header.seq):
                raise env.EnvelopeError("replay", "push")
        except env.EnvelopeError:
            self.push_failures += 1
            return
        self.pushes.append(json.loads(opened.body))
        self._push_event.set()

    async def wait_push(self, predicate: Any, timeout: float = 5.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for p in self.pushes:
                if predicate(p):
                    return p
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"no matching push in {timeout} s; got {[p.get('t') for p in self.pushes]}")
            self._push_event.clear()
            try:
                await asyncio.wait_for(self._push_event.wait(), remaining)
            except TimeoutError:
                pass

    async def close(self) -> None:
        await self.room.disconnect()
