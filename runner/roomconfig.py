"""Ask LiveKit to render the runner's room for low latency: playout delay min 0, max a few ms.

Without it, Chrome gives each received frame a render time and hands it to its smoothness
algorithm (``media::VideoRendererAlgorithm``), which paces a sparse stream by its average frame
interval: on a still screen re-sent once a second, the first change after a pause was held
0.1-1 s after it had arrived (README, Known limitations). With a playout delay
of min 0 and max at most 500 ms (the RTP playout-delay extension, written by LiveKit's SFU when
the room has the setting), libwebrtc renders for low latency and Chrome shows each frame as it is
decoded.

The setting lives in the room (LiveKit's ``CreateRoomRequest.min_playout_delay`` /
``max_playout_delay``). 0/0 means "not set" there, so the runner asks for min 0, max 9 ms: LiveKit
writes the extension in whole 10 ms units, so subscribers get exactly 0/0, as with the server-wide
``room.playout_delay`` 0/0 (the setting measured). With a max of 10 ms or more LiveKit could raise
the minimum above 0 with the jitter a subscriber reports (10 ms per ms of jitter, up to the max;
livekit-server 1.13.5 skips that for screen-share tracks, not for a camera in the same room), and
with a minimum above 0 Chrome is back to its smoothness algorithm. ``CreateRoom`` creates the room
or updates the stored room of that name. Subscribers get it when they join, so the runner asks
before it joins, on every connection. It needs the API key and secret (a ready token cannot
administer rooms): the runner signs a token with the ``roomCreate`` grant only, valid for a minute,
for this one request. A failure is logged and the runner joins anyway: the picture still flows,
only with Chrome's pacing.
"""

from __future__ import annotations

import json
from urllib.parse import urlparse, urlunparse

import aiohttp

from runner.config import Settings
from runner.logs import get_logger
from runner.tokens import sign_token

log = get_logger(__name__)

ADMIN_TOKEN_TTL_S = 60
REQUEST_TIMEOUT_MAX_S = 5.0  # the join that follows has its own livekit.connect_timeout_s
CREATE_ROOM_PATH = "/twirp/livekit.RoomService/CreateRoom"
# The largest max playout delay LiveKit still writes as 0 (whole 10 ms units, rounded down).
MAX_PLAYOUT_DELAY_MS = 9


def room_service_url(url: str) -> str:
    """The Twirp endpoint of LiveKit's RoomService for a server URL (ws -> http, wss -> https)."""
    parsed = urlparse(url)
    scheme = {"ws": "http", "wss": "https"}.get(parsed.scheme, parsed.scheme)
    base = parsed.path.rstrip("/")
    return urlunparse((scheme, parsed.netloc, base + CREATE_ROOM_PATH, "", "", ""))


def create_room_body(settings: Settings) -> dict[str, object]:
    """The CreateRoom request: the room's name and its playout delay, nothing else (an existing
    room keeps its other settings: LiveKit only applies the fields that are set)."""
    return {"name": settings.livekit.room, "min_playout_delay": 0, "max_playout_delay": MAX_PLAYOUT_DELAY_MS}


def admin_token(settings: Settings) -> str:
    """A short-lived token that may create (and so configure) rooms, and nothing else."""
    return sign_token(settings.livekit, {"roomCreate": True}, ADMIN_TOKEN_TTL_S)


_last_failure: list[str] = []  # the reason last logged as a warning, so an outage logs it once


def _failed(room: str, reason: str) -> bool:
    """Log a failure: a warning the first time a reason comes, at debug while it repeats (every
    reconnect attempt during an outage would otherwise add one to each ``connect_failed``)."""
    if _last_failure == [reason]:
        log.debug("room_playout_delay_unset", room=room, reason=reason)
    else:
        log.warning("room_playout_delay_unset", room=room, reason=reason)
        _last_failure[:] = [reason]
    return False


async def configure_room(settings: Settings) -> bool:
    """Set the room's playout delay (see the module docstring); True if LiveKit accepted it.
    Never raises: a failure is logged (``room_playout_delay_unset`` with the reason)."""
    lk = settings.livekit
    if not lk.zero_playout_delay:
        return False
    if lk.api_key is None or lk.api_secret is None:
        log.info("room_playout_delay_unset", room=lk.room,
                 reason="a ready token cannot configure the room; create it with max_playout_delay 9")
        return False
    assert lk.url is not None
    url = room_service_url(lk.url)
    headers = {"Authorization": f"Bearer {admin_token(settings)}", "Content-Type": "application/json"}
    try:
        timeout = aiohttp.ClientTimeout(total=min(lk.connect_timeout_s, REQUEST_TIMEOUT_MAX_S))
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.post(url, data=json.dumps(create_room_body(settings)), headers=headers) as response:
                if response.status != 200:
                    text = (await response.text())[:200]
                    return _failed(lk.room, f"LiveKit answered {response.status}: {text}")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return _failed(lk.room, f"{type(exc).__name__}: {exc}")
    _last_failure.clear()
    log.info("room_playout_delay_set", room=lk.room, min_ms=0, max_ms=MAX_PLAYOUT_DELAY_MS)
    return True
