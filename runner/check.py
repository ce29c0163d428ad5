"""`desktop-runner check`: can this configuration run here? One PASS/FAIL line per part.

For operators and container health checks. It never joins the room (that would take the running
service's identity and push it out): LiveKit is checked by reaching the server over HTTP and, with
an API key, by an authenticated RoomService call; a ready token is checked for expiry.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from runner import e2ee
from runner.config import Settings

EXIT_OK = 0
EXIT_FAILED = 1
HTTP_TIMEOUT_S = 5.0

Check = Callable[[Settings], str]


class CheckFailed(Exception):
    pass


def _http_url(ws_url: str) -> str:
    parsed = urllib.parse.urlparse(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parsed.scheme, parsed.scheme)
    return urllib.parse.urlunparse((scheme, parsed.netloc, "", "", "", ""))


def check_display(settings: Settings) -> str:
    from runner.media.capture import DisplayError, ScreenGrabber

    grabber = ScreenGrabber(settings.capture.display, settings.capture.monitor,
                            cursor=settings.capture.cursor == "picture")
    try:
        grabber.open()
        frame = grabber.grab()
    except DisplayError as exc:
        raise CheckFailed(str(exc)) from None
    finally:
        grabber.close()
    return (f"{grabber.display}, monitor {settings.capture.monitor}: {frame.width}x{frame.height} "
            f"({grabber.backend} backend){_pointer(settings, grabber.display)}")


def _pointer(settings: Settings, display: str) -> str:
    """How viewers will see the pointer (capture.cursor = "viewer" needs XFixes; not fatal)."""
    if settings.capture.cursor != "viewer":
        return f"; pointer: {settings.capture.cursor}"
    from runner.media.cursor import CursorUnavailable, CursorWatch

    try:
        CursorWatch(display).close()
    except CursorUnavailable as exc:
        return f"; pointer: viewers get none ({exc})"
    return "; pointer: pushed to viewers (XFixes)"


def check_encoder(settings: Settings) -> str:
    import numpy as np

    from runner.media.encode import EncoderError, H264Encoder, choose_codec

    width, height = 1280, 720
    cfg = settings.encoder
    codec, passed_over = choose_codec(cfg.codec, fps=settings.capture.fps, bitrate=cfg.bitrate,
                                      max_bitrate=cfg.max_bitrate)
    try:
        enc = H264Encoder.configured(cfg, width, height, fps=settings.capture.fps, bitrate=cfg.bitrate, codec=codec)
        au = enc.encode(np.zeros((height, width, 4), np.uint8), keyframe=True)
    except EncoderError as exc:
        raise CheckFailed(str(exc)) from None
    if not au.keyframe:
        raise CheckFailed("the first frame was not an IDR")
    chosen = f"{codec} (auto; not usable: {', '.join(passed_over)})" if passed_over else codec
    detail = f" {cfg.preset}" if codec == "libx264" else ""
    return f"{chosen}{detail}, {width}x{height} test frame in {au.encode_s * 1000:.1f} ms"


def check_e2ee(settings: Settings) -> str:
    assert settings.e2ee.passphrase is not None
    ring = e2ee.KeyRing()
    ring.set_key(settings.e2ee.passphrase.get_secret_value(), settings.e2ee.key_index)
    frame = b"\x00\x00\x00\x01\x65" + bytes(64)
    wire = ring.encrypt_frame(frame, codec="h264", keyframe=True)
    if ring.decrypt_frame(wire, codec="h264", keyframe=True) != frame:
        raise CheckFailed("an encrypted test frame did not decrypt to itself")
    return f"key index {settings.e2ee.key_index}, {ring.fingerprint()}, frame engine {settings.e2ee.frame_engine}"


def check_livekit(settings: Settings) -> str:
    lk = settings.livekit
    assert lk.url is not None
    base = _http_url(lk.url)
    try:
        with urllib.request.urlopen(base + "/", timeout=HTTP_TIMEOUT_S) as response:
            reached = f"{base} answers (HTTP {response.status})"
    except urllib.error.HTTPError as exc:
        reached = f"{base} answers (HTTP {exc.code})"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CheckFailed(f"cannot reach {base}: {reason}") from None
    if lk.token is not None:
        return f"{reached}; {_token_expiry(lk.token.get_secret_value())}"
    return f"{reached}; {asyncio.run(_list_rooms(settings))}"


def _token_expiry(token: str) -> str:
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = int(claims["exp"])
    except (IndexError, KeyError, ValueError, TypeError):
        raise CheckFailed("livekit.token is not a JWT with an expiry (exp)") from None
    left = exp - time.time()
    if left <= 0:
        raise CheckFailed(f"livekit.token expired {int(-left)} s ago")
    return f"token valid for another {int(left)} s"


async def _list_rooms(settings: Settings) -> str:
    from livekit import api

    lk = settings.livekit
    assert lk.api_key is not None and lk.api_secret is not None and lk.url is not None
    client = api.LiveKitAPI(_http_url(lk.url), lk.api_key, lk.api_secret.get_secret_value())
    try:
        rooms = await asyncio.wait_for(client.room.list_rooms(api.ListRoomsRequest()), HTTP_TIMEOUT_S)
    except Exception as exc:  # twirp errors, timeouts: the message names the cause, never the secret
        raise CheckFailed(f"the API key was not accepted: {type(exc).__name__}: {exc}") from None
    finally:
        await client.aclose()
    return f"API key {lk.api_key} accepted ({len(rooms.rooms)} room(s) open)"


CHECKS: list[tuple[str, Check]] = [
    ("display", check_display),
    ("encoder", check_encoder),
    ("e2ee", check_e2ee),
    ("livekit", check_livekit),
]


def run_checks(settings: Settings, out: Callable[[str], None] = print) -> int:
    """Print one line per check; 0 when all pass (the configuration was valid to get here)."""
    out(f"PASS configuration: valid (room {settings.livekit.room}, identity {settings.livekit.identity})")
    failed = 0
    for name, check in CHECKS:
        try:
            detail = check(settings)
        except CheckFailed as exc:
            out(f"FAIL {name}: {exc}")
            failed += 1
        except Exception as exc:  # an unexpected failure is still a clear FAIL line, not a traceback
            out(f"FAIL {name}: {type(exc).__name__}: {exc}")
            failed += 1
        else:
            out(f"PASS {name}: {detail}")
    return EXIT_FAILED if failed else EXIT_OK
