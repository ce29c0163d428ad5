"""LiveKit access tokens the runner signs itself, with its API key and secret.

Signed with PyJWT directly, with the claims livekit-api's AccessToken writes (tests/test_session.py
compares the two): importing livekit.api costs the runner 11 MB of resident memory. Every token
is registered with the log scrubber before it is returned (runner.logs.register_secrets).
"""

from __future__ import annotations

import time

import jwt

from runner.config import LiveKitSettings
from runner.logs import register_secrets


def sign_token(lk: LiveKitSettings, video: dict[str, object], ttl_s: int, *, name: str | None = None) -> str:
    """A token for ``lk.identity`` with the ``video`` grants, valid ``ttl_s`` from now."""
    assert lk.api_key is not None and lk.api_secret is not None  # the caller checked (Settings does)
    now = int(time.time())
    claims: dict[str, object] = {"video": video, "sub": lk.identity, "iss": lk.api_key,
                                 "nbf": now, "exp": now + int(ttl_s)}
    if name:
        claims["name"] = name
    token = jwt.encode(claims, lk.api_secret.get_secret_value(), algorithm="HS256")
    register_secrets([token])
    return token
