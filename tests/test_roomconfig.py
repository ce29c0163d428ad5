"""The room's playout delay request (runner/roomconfig.py) against a stand-in RoomService.

What LiveKit does with the request is tested with a real livekit-server and Chromium in
tests/test_playout_delay.py; here: which URL, which body, which token, and that every failure
is one logged line and no exception.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator

import jwt
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from runner.config import Settings
from runner.roomconfig import ADMIN_TOKEN_TTL_S, configure_room, room_service_url

SECRET = "an API secret of thirty-two bytes!"


@pytest.mark.parametrize(("url", "endpoint"), [
    ("ws://127.0.0.1:7880", "http://127.0.0.1:7880/twirp/livekit.RoomService/CreateRoom"),
    ("wss://example.livekit.cloud", "https://example.livekit.cloud/twirp/livekit.RoomService/CreateRoom"),
    ("https://lk.example.com/", "https://lk.example.com/twirp/livekit.RoomService/CreateRoom"),
    ("http://10.0.0.2:7880/livekit", "http://10.0.0.2:7880/livekit/twirp/livekit.RoomService/CreateRoom"),
])
def test_the_room_service_lives_beside_the_signalling_url(url: str, endpoint: str) -> None:
    assert room_service_url(url) == endpoint


def settings(url: str, **livekit: object) -> Settings:
    values: dict[str, object] = {"url": url, "api_key": "APIkey", "api_secret": SECRET, "room": "desk-1"}
    values.update(livekit)
    return Settings(livekit=values, e2ee={"passphrase": "a passphrase of some length"})


@pytest.fixture
async def room_service(aiohttp_free_port: int) -> AsyncIterator[tuple[str, list[dict[str, object]], list[int]]]:
    """A stand-in RoomService: records each request, answers with the status in ``answer``."""
    seen: list[dict[str, object]] = []
    answer = [200]

    async def create_room(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "auth": request.headers.get("Authorization", ""),
                     "body": json.loads(await request.text())})
        if answer[0] != 200:
            return web.Response(status=answer[0], text='{"code":"permission_denied","msg":"no"}')
        return web.json_response({"name": "desk-1", "sid": "RM_x"})

    app = web.Application()
    app.router.add_post("/twirp/livekit.RoomService/CreateRoom", create_room)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", aiohttp_free_port)
    await site.start()
    try:
        yield f"ws://127.0.0.1:{aiohttp_free_port}", seen, answer
    finally:
        await runner.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def aiohttp_free_port() -> int:
    return free_port()


async def test_the_request_names_the_room_and_the_delay_and_carries_a_room_create_token(
        room_service: tuple[str, list[dict[str, object]], list[int]]) -> None:
    url, seen, _ = room_service
    with capture_logs() as logs:
        assert await configure_room(settings(url)) is True
    assert len(seen) == 1
    # 9 ms: LiveKit writes whole 10 ms units, so the subscribers' extension says 0/0
    assert seen[0]["body"] == {"name": "desk-1", "min_playout_delay": 0, "max_playout_delay": 9}
    token = str(seen[0]["auth"]).removeprefix("Bearer ")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["video"] == {"roomCreate": True}
    assert claims["iss"] == "APIkey"
    assert claims["exp"] - claims["nbf"] == ADMIN_TOKEN_TTL_S
    assert [(e["event"], e["max_ms"]) for e in logs] == [("room_playout_delay_set", 9)]


async def test_a_refusal_is_one_warning_with_the_status_and_no_secret(
        room_service: tuple[str, list[dict[str, object]], list[int]]) -> None:
    url, seen, answer = room_service
    answer[0] = 401
    with capture_logs() as logs:
        assert await configure_room(settings(url)) is False
    text = repr(logs)
    assert SECRET not in text and str(seen[0]["auth"]).removeprefix("Bearer ") not in text
    assert [(e["event"], e["log_level"]) for e in logs] == [("room_playout_delay_unset", "warning")]
    assert str(logs[0]["reason"]).startswith("LiveKit answered 401")


async def test_an_unreachable_server_is_one_warning_however_often_it_is_tried(
        room_service: tuple[str, list[dict[str, object]], list[int]]) -> None:
    s = settings(f"ws://127.0.0.1:{free_port()}", connect_timeout_s=2)
    with capture_logs() as logs:
        for _ in range(3):  # three reconnect attempts during an outage
            assert await configure_room(s) is False
    assert [(e["event"], e["log_level"]) for e in logs] == [("room_playout_delay_unset", "warning")] + [
        ("room_playout_delay_unset", "debug")] * 2
    assert "ClientConnectorError" in str(logs[0]["reason"])
    url, _, _ = room_service  # back: set, and a later outage is warned about again
    with capture_logs() as logs:
        assert await configure_room(settings(url)) is True
        assert await configure_room(s) is False
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("room_playout_delay_set", "info"), ("room_playout_delay_unset", "warning")]


async def test_zero_sends_nothing_and_a_ready_token_says_why(
        room_service: tuple[str, list[dict[str, object]], list[int]]) -> None:
    url, seen, _ = room_service
    token_only = Settings(livekit={"url": url, "token": "a.ready.token", "room": "desk-1"},
                          e2ee={"passphrase": "a passphrase of some length"})
    with capture_logs() as logs:
        assert await configure_room(settings(url, zero_playout_delay=False)) is False
        assert await configure_room(token_only) is False
    assert seen == []
    assert [(e["event"], e["log_level"]) for e in logs] == [("room_playout_delay_unset", "info")]
    assert "a.ready.token" not in repr(logs)


def test_the_setting_is_a_yes_or_no() -> None:
    with pytest.raises(ValueError, match="zero_playout_delay"):
        settings("ws://127.0.0.1:7880", zero_playout_delay="sometimes")
