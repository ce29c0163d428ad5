"""The control envelope: AES-256-GCM sealing of every control message and RPC payload.

Pure code, bytes in and bytes out; docs/protocol.md specifies the format and
tests/vectors/control_envelope.json pins it. The LiveKit SDKs accept plaintext data packets and RPC
even with E2EE on, so this envelope, not LiveKit's, decides what may reach the keyboard and mouse.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = 1
KIND_INPUT = 1
KIND_PUSH = 2
KIND_RPC_REQUEST = 3
KIND_RPC_RESPONSE = 4
KINDS = (KIND_INPUT, KIND_PUSH, KIND_RPC_REQUEST, KIND_RPC_RESPONSE)

DATA_CONTEXT = "desktop-runner/v1"
"""Context of input and push messages; also the data packet topic."""

PBKDF2_SALT = b"desktop-runner/control"
PBKDF2_ITERATIONS = 100_000
HKDF_INFO = b"desktop-runner/control/v1 aes-256-gcm"
KEY_BYTES = 32

HEADER = struct.Struct(">BBBBQQ12s")  # version, kind, key index, reserved, session, seq, nonce
HEADER_BYTES = HEADER.size  # 32
NONCE_BYTES = 12
TAG_BYTES = 16
MIN_ENVELOPE_BYTES = HEADER_BYTES + TAG_BYTES
MAX_KEY_INDEX = 15  # the E2EE key index; JS key rings hold 16 keys
MAX_SEQ = 2**64 - 1
MAX_IDENTITY_BYTES = 4096

REPLAY_WINDOW = 64


class EnvelopeError(ValueError):
    """An envelope that must be dropped; ``reason`` is a short counter name, never message content."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def derive_control_key(passphrase: str | bytes) -> bytes:
    """The 32-byte control key for a room passphrase (PBKDF2 then HKDF, labels of our own)."""
    secret = passphrase.encode() if isinstance(passphrase, str) else passphrase
    ikm = hashlib.pbkdf2_hmac("sha256", secret, PBKDF2_SALT, PBKDF2_ITERATIONS, KEY_BYTES)
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=HKDF_INFO).derive(ikm)


def response_context(method: str, request_seq: int) -> str:
    return f"{method}#{request_seq}"


@dataclass(frozen=True)
class Header:
    kind: int
    key_index: int
    session: int
    seq: int
    nonce: bytes

    def pack(self) -> bytes:
        return HEADER.pack(VERSION, self.kind, self.key_index, 0, self.session, self.seq, self.nonce)


@dataclass(frozen=True)
class Opened:
    header: Header
    body: bytes


def _lp(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > MAX_IDENTITY_BYTES:
        raise EnvelopeError("schema", f"field of {len(raw)} bytes is longer than {MAX_IDENTITY_BYTES}")
    return struct.pack(">H", len(raw)) + raw


def _aad(header: bytes, sender: str, recipient: str, context: str) -> bytes:
    return header + _lp(sender) + _lp(recipient) + _lp(context)


def seal(
    key: bytes,
    *,
    kind: int,
    key_index: int,
    session: int,
    seq: int,
    sender: str,
    recipient: str,
    context: str,
    body: bytes,
    nonce: bytes | None = None,
) -> bytes:
    """Seal ``body``; ``nonce`` is for test vectors only (random otherwise)."""
    if kind not in KINDS:
        raise ValueError(f"unknown envelope kind {kind}")
    if not 0 <= key_index <= MAX_KEY_INDEX or not 0 <= session <= MAX_SEQ or not 1 <= seq <= MAX_SEQ:
        raise ValueError("key index, session or sequence number out of range")
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"nonce must be {NONCE_BYTES} bytes")
    header = Header(kind, key_index, session, seq, nonce).pack()
    return header + AESGCM(key).encrypt(nonce, body, _aad(header, sender, recipient, context))


def parse_header(envelope: bytes) -> Header:
    """The clear header, unauthenticated: only for choosing the key and session to open it with."""
    if len(envelope) < MIN_ENVELOPE_BYTES:
        raise EnvelopeError("auth", f"envelope of {len(envelope)} bytes is shorter than {MIN_ENVELOPE_BYTES}")
    version, kind, key_index, reserved, session, seq, nonce = HEADER.unpack_from(envelope)
    if version != VERSION:
        raise EnvelopeError("auth", f"envelope version {version}, expected {VERSION}")
    if kind not in KINDS or reserved != 0 or seq == 0:
        raise EnvelopeError("auth", "malformed envelope header")
    return Header(kind, key_index, session, seq, nonce)


def open_envelope(key: bytes, envelope: bytes, *, sender: str, recipient: str, context: str) -> Opened:
    """Authenticate and decrypt; EnvelopeError("auth") for anything that does not verify."""
    header = parse_header(envelope)
    raw_header = envelope[:HEADER_BYTES]
    try:
        body = AESGCM(key).decrypt(
            header.nonce, envelope[HEADER_BYTES:], _aad(raw_header, sender, recipient, context)
        )
    except InvalidTag:
        raise EnvelopeError("auth", "envelope does not verify (wrong key, sender, recipient or context)") from None
    return Opened(header, body)


class ReplayWindow:
    """Sliding window over one session's sequence numbers (the IPsec/DTLS anti-replay scheme).

    ``check`` says whether a number is fresh without recording it; ``accept`` records it. Call
    ``accept`` only after the envelope verified, so forgeries cannot move the window.
    """

    __slots__ = ("_seen", "highest")

    def __init__(self) -> None:
        self.highest = 0
        self._seen = 0  # bit i set: highest - i was seen

    def check(self, seq: int) -> bool:
        if seq > self.highest:
            return True
        offset = self.highest - seq
        return offset < REPLAY_WINDOW and not (self._seen >> offset) & 1

    def accept(self, seq: int) -> bool:
        if not self.check(seq):
            return False
        if seq > self.highest:
            shift = seq - self.highest
            self._seen = ((self._seen << shift) | 1) & ((1 << REPLAY_WINDOW) - 1) if shift < REPLAY_WINDOW else 1
            self.highest = seq
        else:
            self._seen |= 1 << (self.highest - seq)
        return True
