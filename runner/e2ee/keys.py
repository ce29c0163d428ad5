"""LiveKit E2EE keys: derivation, ratchet and a key ring, as livekit-client computes them.

- Key *material* is what people share: a passphrase, or random bytes.
- The AES *key* is derived from the material: PBKDF2-HMAC-SHA256 (100 000 iterations) for
  ``ExternalE2EEKeyProvider.setKey(string)``, HKDF-SHA256 with 128 zero bytes of info for
  ``setKey(ArrayBuffer)``. The salt is the ratchet salt, ``LKFrameEncryptionKey`` by default.
- A *ratchet* replaces the material by 32 bytes derived from it with the same KDF.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from livekit.protocol.models import DataPacket

from ._aead import AES_KEY_SIZES
from .data import data_packet_key_index, decrypt_data_packet, encrypt_data_packet, parse_data_packet
from .errors import DecryptionError
from .frame import Codec, decrypt_frame, encrypt_frame, frame_key_index

Kdf = Literal["pbkdf2", "hkdf"]
KDFS = ("pbkdf2", "hkdf")
DEFAULT_SALT = b"LKFrameEncryptionKey"
"""livekit-client's default ratchet salt (``KEY_PROVIDER_DEFAULTS.ratchetSalt``)."""
PBKDF2_ITERATIONS = 100_000
HKDF_INFO = bytes(128)
DEFAULT_KEY_SIZE = 16
RATCHET_MATERIAL_SIZE = 32
"""JS ratchets with ``deriveBits(..., 256)``."""
DEFAULT_RING_SIZE = 16
MAX_RING_SIZE = 256
FINGERPRINT_PREFIX = "keyfp:"
FINGERPRINT_HEX_DIGITS = 8


def _material_bytes(material: str | bytes) -> bytes:
    data = material.encode("utf-8") if isinstance(material, str) else bytes(material)
    if not data:
        raise ValueError("key material is empty: set a passphrase or key bytes")
    return data


def _kdf(material: bytes, kdf: Kdf, salt: bytes, length: int) -> bytes:
    if kdf == "pbkdf2":
        return PBKDF2HMAC(hashes.SHA256(), length, salt, PBKDF2_ITERATIONS).derive(material)
    if kdf == "hkdf":
        return HKDF(hashes.SHA256(), length, salt, HKDF_INFO).derive(material)
    raise ValueError(f"unsupported kdf {kdf!r}: expected one of {KDFS}")


def derive_key(
    material: str | bytes,
    *,
    kdf: Kdf = "pbkdf2",
    salt: bytes = DEFAULT_SALT,
    key_size: int = DEFAULT_KEY_SIZE,
) -> bytes:
    """The raw AES key livekit-client derives from key material.

    ``material``: a passphrase (UTF-8 encoded) or bytes. ``kdf="pbkdf2"`` equals JS
    ``setKey(string)`` and the Python/Rust SDK default; ``kdf="hkdf"`` equals JS
    ``setKey(ArrayBuffer)``. ``key_size`` is in bytes: 16 (AES-128, default) or 32 (JS
    ``keySize: 256``). Passphrase ``key1`` gives ``7adabac1db9abf018ef98fdc737f4f2f``.
    """
    if key_size not in AES_KEY_SIZES:
        raise ValueError(f"key_size must be 16 or 32 bytes, got {key_size}")
    return _kdf(_material_bytes(material), kdf, bytes(salt), key_size)


def ratchet(material: str | bytes, *, kdf: Kdf = "pbkdf2", salt: bytes = DEFAULT_SALT) -> bytes:
    """The next key material (32 bytes), as JS ``ratchet()`` / ``ParticipantKeyHandler.ratchetKey``.

    The result stays material for the same KDF: derive the AES key from it with
    :func:`derive_key` and the same ``kdf``. JS publishes it as the ratchet ``chainKey``.
    """
    return _kdf(_material_bytes(material), kdf, bytes(salt), RATCHET_MATERIAL_SIZE)


def key_fingerprint(key: bytes) -> str:
    """A short, prefixed tag for logs: ``keyfp:`` + the first 8 hex digits of SHA-256(key).

    It identifies a key without revealing it (checking a passphrase guess against it costs a full
    PBKDF2, as against any encrypted frame).
    """
    return FINGERPRINT_PREFIX + hashlib.sha256(bytes(key)).hexdigest()[:FINGERPRINT_HEX_DIGITS]


class _Slot:
    """Material and derived key at one ring index. Its repr shows only the fingerprint."""

    __slots__ = ("fingerprint", "key", "material")

    def __init__(self, material: bytes, key: bytes) -> None:
        self.material = material
        self.key = key
        self.fingerprint = key_fingerprint(key)

    def __repr__(self) -> str:
        return f"<key {self.fingerprint}>"


class KeyRing:
    """Keys by index, like livekit-client's ParticipantKeyHandler (ring of 16 by default).

    Keys are stored at ``index % size``; the current index is the one frames and packets are
    encrypted with. Received frames and packets pick their key by the index they carry, without the
    modulo, as JS does: an index at or above ``size`` has no key. Thread-safe. Its repr shows
    fingerprints only, never key bytes or material.
    """

    def __init__(
        self,
        *,
        size: int = DEFAULT_RING_SIZE,
        kdf: Kdf = "pbkdf2",
        salt: bytes = DEFAULT_SALT,
        key_size: int = DEFAULT_KEY_SIZE,
    ) -> None:
        if not 1 <= size <= MAX_RING_SIZE:
            raise ValueError(f"key ring size must be 1..{MAX_RING_SIZE}, got {size}")
        if kdf not in KDFS:
            raise ValueError(f"unsupported kdf {kdf!r}: expected one of {KDFS}")
        if key_size not in AES_KEY_SIZES:
            raise ValueError(f"key_size must be 16 or 32 bytes, got {key_size}")
        self._size = size
        self._kdf: Kdf = kdf
        self._salt = bytes(salt)
        self._key_size = key_size
        self._slots: list[_Slot | None] = [None] * size
        self._current = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Number of slots."""
        return self._size

    @property
    def current_index(self) -> int:
        """Slot used for encrypting (0..size-1)."""
        return self._current

    def set_key(self, material: str | bytes, index: int = 0, *, make_current: bool = True) -> int:
        """Derive the key from ``material`` and store it at ``index % size``; return that slot.

        With ``make_current`` (the JS default) the slot becomes the current index.
        """
        if index < 0:
            raise ValueError(f"key index must be >= 0, got {index}")
        data = _material_bytes(material)
        key = derive_key(data, kdf=self._kdf, salt=self._salt, key_size=self._key_size)
        slot = _Slot(data, key)
        with self._lock:
            position = index % self._size
            self._slots[position] = slot
            if make_current:
                self._current = position
        return position

    def rotate(self, material: str | bytes) -> int:
        """Store a new key at the slot after the current one and make it current; return the slot.

        Receivers need the new key at that index before frames encrypted with it arrive.
        """
        return self.set_key(material, (self._current + 1) % self._size)

    def ratchet(self, index: int | None = None) -> bytes:
        """Ratchet the key at ``index`` (default: current) in place, make it current, return the
        new material (JS's ``chainKey``, which can be handed to other participants)."""
        with self._lock:
            position = self._current if index is None else index % self._size
            slot = self._slots[position]
        if slot is None:
            raise LookupError(f"no key at index {position} to ratchet")
        material = ratchet(slot.material, kdf=self._kdf, salt=self._salt)
        self.set_key(material, position)
        return material

    def has_key(self, index: int) -> bool:
        """True when a key is stored at ``index`` (no modulo, as for received frames)."""
        return 0 <= index < self._size and self._slots[index] is not None

    def key(self, index: int | None = None) -> bytes:
        """The raw AES key at ``index`` (default: current). Raises LookupError if there is none."""
        return self._slot(index).key

    def fingerprint(self, index: int | None = None) -> str:
        """Log-safe fingerprint of the key at ``index`` (default: current); see key_fingerprint."""
        return self._slot(index).fingerprint

    def _slot(self, index: int | None) -> _Slot:
        position = self._current if index is None else index
        slot = self._slots[position] if 0 <= position < self._size else None
        if slot is None:
            raise LookupError(f"no key at index {position}")
        return slot

    def _current_key(self) -> tuple[int, bytes]:
        with self._lock:
            position = self._current
            slot = self._slots[position]
        if slot is None:
            raise LookupError(f"no key at the current index {position}: call set_key first")
        return position, slot.key

    def _received_key(self, index: int) -> bytes:
        if not self.has_key(index):
            raise DecryptionError(f"no key at index {index}")
        return self._slot(index).key

    def encrypt_frame(self, frame: bytes, *, codec: Codec, keyframe: bool = False) -> bytes:
        """:func:`runner.e2ee.encrypt_frame` with the current key and index."""
        position, key = self._current_key()
        return encrypt_frame(frame, key, codec=codec, key_index=position, keyframe=keyframe)

    def decrypt_frame(self, frame: bytes, *, codec: Codec, keyframe: bool = False) -> bytes:
        """:func:`runner.e2ee.decrypt_frame` with the key at the index the frame carries."""
        key = self._received_key(frame_key_index(frame))
        return decrypt_frame(frame, key, codec=codec, keyframe=keyframe)

    def encrypt_data_packet(self, packet: DataPacket) -> DataPacket:
        """:func:`runner.e2ee.encrypt_data_packet` with the current key and index."""
        position, key = self._current_key()
        return encrypt_data_packet(packet, key, key_index=position)

    def decrypt_data_packet(self, packet: DataPacket | bytes) -> DataPacket:
        """:func:`runner.e2ee.decrypt_data_packet` with the key at the packet's key index."""
        if not isinstance(packet, DataPacket):
            packet = parse_data_packet(packet)
        key = self._received_key(data_packet_key_index(packet))
        return decrypt_data_packet(packet, key)

    def __repr__(self) -> str:
        keys = {i: slot.fingerprint for i, slot in enumerate(self._slots) if slot is not None}
        return (
            f"KeyRing(size={self._size}, kdf={self._kdf!r}, key_size={self._key_size},"
            f" current_index={self._current}, keys={keys})"
        )
