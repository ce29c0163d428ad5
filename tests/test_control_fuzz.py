"""Hostile input against the control server, in process: malformed, oversized, replayed and forged
messages by the tens of thousands. Nothing may crash, nothing may be injected, memory stays flat.

The server runs with a recording stand-in for the injector (pure logic; the real injection path is
covered by tests/test_control_live.py) and stand-ins for LiveKit's packet objects.
"""

from __future__ import annotations

import base64
import gc
import json
import os
import random
import tracemalloc
from types import SimpleNamespace

import pytest
from livekit import rtc

from controlfakes import FakeMedia, RecordingInjector, screen
from hostile import data_packet, invocation
from runner.config import load_settings
from runner.control import envelope as env
from runner.control.pointer import layout_from_screen
from runner.control.server import ControlServer

PASSPHRASE = "fuzz passphrase"
RUNNER = "desktop-runner"
VIEWER = "viewer"
KEY = env.derive_control_key(PASSPHRASE)


def make_server() -> tuple[ControlServer, RecordingInjector]:
    settings = load_settings(None, {
        "livekit": {"url": "ws://127.0.0.1:1", "api_key": "k", "api_secret": "s" * 32, "identity": RUNNER},
        "e2ee": {"passphrase": PASSPHRASE},
        "control": {"max_input_rate": 10_000},
    })
    media = FakeMedia(screen((0, 0, 1280, 720), (0, 0, 1280, 720, "screen", True)))
    injector = RecordingInjector()
    server = ControlServer(settings, media, injector)  # type: ignore[arg-type]  # records, never injects
    server.set_key(KEY, 0)
    server.monitors.layout = layout_from_screen(media.layout)
    server.pusher.room = SimpleNamespace(local_participant=SimpleNamespace(identity=RUNNER))  # type: ignore[assignment]  # no pushes sent
    return server, injector


def packet(data: bytes, sender: str | None = VIEWER, topic: str = env.DATA_CONTEXT) -> rtc.DataPacket:
    return data_packet(data, sender, topic)


async def open_session(server: ControlServer, control: bool = True) -> int:
    """A legitimate session (and control) for VIEWER, as the viewer would open it."""
    nonce = base64.b64encode(os.urandom(16)).decode()
    hello = env.seal(KEY, kind=env.KIND_RPC_REQUEST, key_index=0, session=0, seq=1, sender=VIEWER,
                     recipient=RUNNER, context="dr.hello", body=json.dumps({"nonce": nonce}).encode())
    answer = base64.b64decode(await server._handle_rpc("dr.hello", rpc(hello)))
    session = env.parse_header(answer).session
    if control:
        request = env.seal(KEY, kind=env.KIND_RPC_REQUEST, key_index=0, session=session, seq=2,
                           sender=VIEWER, recipient=RUNNER, context="dr.control.request", body=b"{}")
        await server._handle_rpc("dr.control.request", rpc(request))
    return session


def rpc(raw: bytes | str, sender: str = VIEWER, method: str = "") -> rtc.RpcInvocationData:
    return invocation(method, raw if isinstance(raw, str) else base64.b64encode(raw).decode(), sender)


def hostile_batch(rng: random.Random, session: int, valid: bytes, n: int) -> list[rtc.DataPacket]:
    """n packets, none of which may reach the injector."""
    move = json.dumps({"t": "move", "mon": "screen", "x": 0.5, "y": 0.5}).encode()
    out = []
    for i in range(n):
        kind = i % 10
        if kind == 0:  # random bytes, any length up to twice the limit
            out.append(packet(rng.randbytes(rng.randrange(0, 8192))))
        elif kind == 1:  # a plausible header, garbage after it
            head = env.Header(env.KIND_INPUT, 0, session, rng.randrange(1, 2**64), rng.randbytes(12)).pack()
            out.append(packet(head + rng.randbytes(rng.randrange(16, 200))))
        elif kind == 2:  # sealed with a wrong key
            out.append(packet(env.seal(rng.randbytes(32), kind=1, key_index=0, session=session,
                                       seq=rng.randrange(1, 2**64), sender=VIEWER, recipient=RUNNER,
                                       context=env.DATA_CONTEXT, body=move)))
        elif kind == 3:  # the one valid message, replayed
            out.append(packet(valid))
        elif kind == 4:  # right key, claims another sender
            out.append(packet(env.seal(KEY, kind=1, key_index=0, session=session, seq=10**9 + i,
                                       sender="mallory", recipient=RUNNER, context=env.DATA_CONTEXT, body=move),
                              sender="mallory"))
        elif kind == 5:  # right key, sealed for another runner
            out.append(packet(env.seal(KEY, kind=1, key_index=0, session=session, seq=10**9 + i,
                                       sender=VIEWER, recipient="other-runner", context=env.DATA_CONTEXT, body=move)))
        elif kind == 6:  # an RPC request envelope sent as input
            out.append(packet(env.seal(KEY, kind=3, key_index=0, session=session, seq=10**9 + i,
                                       sender=VIEWER, recipient=RUNNER, context=env.DATA_CONTEXT, body=move)))
        elif kind == 7:  # oversized
            out.append(packet(rng.randbytes(4097 + rng.randrange(0, 60000))))
        elif kind == 8:  # wrong key index, a flipped bit
            sealed = bytearray(env.seal(KEY, kind=1, key_index=0, session=session, seq=10**9 + i,
                                        sender=VIEWER, recipient=RUNNER, context=env.DATA_CONTEXT, body=move))
            sealed[rng.randrange(len(sealed))] ^= 1 << rng.randrange(8)
            out.append(packet(bytes(sealed)))
        else:  # no sender and an unknown session
            out.append(packet(env.seal(KEY, kind=1, key_index=0, session=session ^ 0xFFFF, seq=10**9 + i,
                                       sender=VIEWER, recipient=RUNNER, context=env.DATA_CONTEXT, body=move),
                              sender=None))
    return out


async def test_hostile_input_batch_never_injects_nor_crashes_and_memory_stays_flat() -> None:
    server, injector = make_server()
    session = await open_session(server)
    valid = env.seal(KEY, kind=1, key_index=0, session=session, seq=100, sender=VIEWER, recipient=RUNNER,
                     context=env.DATA_CONTEXT, body=b'{"t":"move","mon":"screen","x":0.1,"y":0.1}')
    server._on_data(packet(valid))
    assert len(injector.ops) == 1 and server.accepted == 1  # the legitimate message went through
    rng = random.Random(1234)

    def round_(n: int) -> None:
        for p in hostile_batch(rng, session, valid, n):
            server._on_data(p)

    round_(5_000)  # warm-up: caches, counters, log rate limiter
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    round_(30_000)
    gc.collect()
    growth = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(injector.ops) == 1 and server.accepted == 1
    assert sum(server.rejections.counts.values()) == 35_000
    assert growth < 256 * 1024, f"memory grew by {growth} bytes over 30,000 hostile messages"


async def test_authenticated_but_malformed_bodies_are_dropped() -> None:
    server, injector = make_server()
    session = await open_session(server)
    bodies = [b"", b"{", b"[]", b"null", b'{"t":"move","mon":"screen","x":2,"y":0}',
              b'{"t":"key","code":"KeyA","key":"a","down":"true"}', b'{"t":"text","text":' + b'"a"' * 2 + b"}",
              json.dumps({"t": "text", "text": "x" * 1025}).encode(), b"\xff" * 100,
              json.dumps({"t": "move", "mon": "screen", "x": 0.5, "y": float("nan")}).encode()]
    for seq, body in enumerate(bodies, start=200):
        server._on_data(packet(env.seal(KEY, kind=1, key_index=0, session=session, seq=seq, sender=VIEWER,
                                        recipient=RUNNER, context=env.DATA_CONTEXT, body=body)))
    assert injector.ops == []
    assert server.rejections.counts["schema"] == len(bodies)


async def test_hostile_rpc_payloads_get_no_sealed_answer() -> None:
    server, _ = make_server()
    session = await open_session(server, control=False)
    rng = random.Random(99)
    payloads = [
        "not base64!", "", "A" * (200 * 1024), base64.b64encode(rng.randbytes(40)).decode(),
        base64.b64encode(env.seal(rng.randbytes(32), kind=3, key_index=0, session=session, seq=5, sender=VIEWER,
                                  recipient=RUNNER, context="dr.stats", body=b"{}")).decode(),
        base64.b64encode(env.seal(KEY, kind=3, key_index=0, session=session, seq=6, sender=VIEWER,
                                  recipient=RUNNER, context="dr.ping", body=b"{}")).decode(),  # wrong method
        base64.b64encode(env.seal(KEY, kind=3, key_index=0, session=0, seq=7, sender=VIEWER,
                                  recipient=RUNNER, context="dr.hello", body=b'{"nonce":"short"}')).decode(),
    ]
    for method, payload in [(m, p) for p in payloads for m in ("dr.stats", "dr.hello")]:
        with pytest.raises(rtc.RpcError) as caught:
            await server._handle_rpc(method, rpc(payload))
        assert caught.value.message in ("unauthenticated",)
