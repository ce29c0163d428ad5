"""AES-GCM objects, cached per key so the per-frame path does no key schedule."""

from __future__ import annotations

from functools import lru_cache

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

AES_KEY_SIZES = (16, 32)
"""AES-128 (livekit-client default, the only size the native SDKs use) and AES-256."""
GCM_TAG_LENGTH = 16
IV_LENGTH = 12
"""GCM nonce length in bytes; the only value livekit-client writes."""
_CACHED_KEYS = 32


@lru_cache(maxsize=_CACHED_KEYS)
def _cipher_for(key: bytes) -> AESGCM:
    return AESGCM(key)


def cipher(key: bytes) -> AESGCM:
    """The AES-GCM object for a raw 16- or 32-byte key (raises ValueError for other sizes)."""
    if type(key) is not bytes:
        key = bytes(key)
    if len(key) not in AES_KEY_SIZES:
        raise ValueError(f"AES key must be 16 or 32 bytes, got {len(key)} bytes")
    return _cipher_for(key)
