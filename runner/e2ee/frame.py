"""LiveKit E2EE media frames (livekit-client's FrameCryptor format), one encoded frame at a time.

Wire format of an encrypted frame::

    [clear header][AES-GCM ciphertext + 16-byte tag][IV (12)][0x0C][key index]
                  |<-- escaped for H.264/H.265 when the header ends in a slice NALU -->|

- The clear header is authenticated as AES-GCM additional data, byte for byte as it is sent.
- The IV travels in clear and is authenticated implicitly (GCM fails with any other IV).
- ``0x0C`` is the IV length. The key index only selects the key; it is not authenticated.

How many bytes stay in clear (the "header"), per codec:

- ``opus`` (any audio): 1 (the TOC byte).
- ``vp8``: 10 for a key frame, 3 for a delta frame. ``vp9``: 0.
- ``h264`` / ``h265``: the Annex B stream is scanned (see :func:`runner.bitstream.annexb.find_nalu_indices`);
  the first slice NALU decides, H.264 slice types first, then H.265, whatever ``codec`` says. The
  header runs to that slice's NAL header + 2 bytes. The encoder rewrites 3-byte start codes in the
  header to 4-byte ones (the receiving browser rebuilds NALUs with 4-byte codes) and escapes
  everything after the header. When the stream has no slice or does not parse (SPS/PPS-only unit,
  leading garbage), the VP8 rule (10/3 by ``keyframe``) applies with no normalizing or escaping.

Decryption follows the JS receiver step by step (same header rule on the received bytes, same
unescaping), with two deliberate refusals JS does not make, neither of which any sender triggers:
an IV length byte other than 12, and escaping other than what an encoder writes (extra or missing
emulation prevention bytes leave the ciphertext intact, so JS would accept such a frame).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, get_args

from cryptography.exceptions import InvalidTag

from runner.bitstream.annexb import (
    h264_nal_type,
    h265_nal_type,
    is_h264_slice,
    is_h265_slice,
    iter_nalu_indices,
    normalize_start_codes,
)
from runner.bitstream.bits import BitReader
from runner.bitstream.escaping import escape_rbsp, has_canonical_escaping, unescape_rbsp_if_needed

from ._aead import GCM_TAG_LENGTH, IV_LENGTH, cipher
from .errors import DecryptionError

Codec = Literal["h264", "h265", "vp8", "vp9", "opus"]
"""Codecs livekit-client encrypts. ``opus`` stands for the audio rule (any audio codec)."""
CODECS: frozenset[str] = frozenset(get_args(Codec))
NALU_CODECS = frozenset({"h264", "h265"})

CLEAR_BYTES_AUDIO = 1
CLEAR_BYTES_VP8_KEY = 10
CLEAR_BYTES_VP8_DELTA = 3
CLEAR_BYTES_VP9 = 0
SLICE_HEADER_CLEAR_BYTES = 2
"""Bytes of the first slice NALU left in clear: its NAL header byte and one more."""

TRAILER_LENGTH = 2
"""IV length byte + key index byte."""
MAX_IV_TRIES = 64
"""IVs tried per H.264 frame to keep the parsed slice header fields intact (see below)."""
MAX_MATCHED_BITS = 6
"""More parsed bits than this past the clear byte are not worth searching for (2**6 tries)."""
MIN_ENCRYPTED_BODY = GCM_TAG_LENGTH + IV_LENGTH + TRAILER_LENGTH
MAX_KEY_INDEX = 255
MAX_FRAME_BYTES = 16 * 1024 * 1024
"""Larger frames are refused before any work. libx264's largest access unit is bounded by its VBV
buffer (encoder.max_bitrate x 0.25 s: 3 MiB at 100 Mbit/s; a 4K IDR of noise measured 1 MiB at
50 Mbit/s); 16 MiB leaves room for other senders' keyframes."""


def clear_header_length(frame: bytes, *, codec: Codec, keyframe: bool = False) -> tuple[int, bool]:
    """(bytes left in clear, whether the NALU rules apply) for ``frame``, as livekit-client decides.

    Applied to the plaintext frame by the sender and to the received (encrypted) frame by the
    receiver; both must find the same header. Raises ValueError for an unsupported codec.
    """
    if codec == "opus":
        return CLEAR_BYTES_AUDIO, False
    if codec == "vp9":
        return CLEAR_BYTES_VP9, False
    vp8_rule = CLEAR_BYTES_VP8_KEY if keyframe else CLEAR_BYTES_VP8_DELTA
    if codec == "vp8":
        return vp8_rule, False
    if codec not in NALU_CODECS:
        raise ValueError(f"unsupported codec {codec!r}: expected one of {sorted(CODECS)}")
    slice_header = _first_slice_header_end(frame)
    if slice_header is None:
        return vp8_rule, False
    return slice_header, True


def _first_slice_header_end(frame: bytes) -> int | None:
    """Offset just past the first slice's NAL header + 1 byte, or None (no slice, or no parse)."""
    # H.264 goes first over the whole unit: an H.264 AUD or SEI header byte reads as an H.265 slice.
    # The lazy scan stops at the first H.264 slice, usually within the first kilobyte.
    seen: list[int] = []
    try:
        for index in iter_nalu_indices(frame):
            if is_h264_slice(h264_nal_type(frame[index])):
                return index + SLICE_HEADER_CLEAR_BYTES
            seen.append(index)
    except ValueError:
        return None
    for index in seen:
        if is_h265_slice(h265_nal_type(frame[index])):
            return index + SLICE_HEADER_CLEAR_BYTES
    return None


def encrypt_frame(
    frame: bytes,
    key: bytes,
    *,
    codec: Codec,
    key_index: int = 0,
    keyframe: bool = False,
) -> bytes:
    """Encrypt one encoded frame for livekit-client receivers.

    ``frame`` is one access unit (H.264/H.265 in Annex B), one VP8/VP9 frame or one audio packet.
    ``key`` is the raw 16- or 32-byte AES key (see :func:`runner.e2ee.derive_key`); ``key_index``
    (0..255) is written in the trailer and tells the receiver which key of its ring to use;
    ``keyframe`` matters for VP8 and for H.264/H.265 units without a slice and must match the
    frame type the receiver sees. Raises ValueError for an empty frame (livekit-client sends empty
    frames unencrypted), a frame shorter than its clear header, or a bad argument.
    """
    # A fresh random 96-bit IV per frame (NIST SP 800-38D, 8.2.2). The same key is shared by every
    # participant and by every run of this process, and JS derives its IVs from SSRC and RTP
    # timestamps we do not control, so a counter could collide across restarts or with other
    # senders; 96 random bits stay below the 2**-32 collision bound for 2**32 frames per key,
    # which is more than a year of 60 fps video plus audio. os.urandom costs about a microsecond.
    layout = _layout(frame, codec=codec, key_index=key_index, keyframe=keyframe)
    matched = _h264_parsed_bits_past_clear(layout) if codec == "h264" else None
    for _ in range(MAX_IV_TRIES if matched else 1):
        encrypted = _seal(layout, key, os.urandom(IV_LENGTH), key_index)
        if not matched or _leading_bits(encrypted, matched[1], len(layout.header)) == matched[0]:
            break
    return encrypted


@dataclass(frozen=True)
class _Layout:
    """A frame split for encryption: its clear header (normalized for NALU codecs) and the rest."""

    frame: bytes
    clear_bytes: int
    header: bytes
    nalu: bool


def _layout(frame: bytes, *, codec: Codec, key_index: int, keyframe: bool) -> _Layout:
    """Check the arguments and find the clear header, once per frame whatever the IV tries."""
    if not 0 <= key_index <= MAX_KEY_INDEX:
        raise ValueError(f"key_index must be 0..{MAX_KEY_INDEX}, got {key_index}")
    frame = bytes(frame)
    if not frame:
        raise ValueError("empty frame: livekit-client sends empty frames unencrypted")
    clear_bytes, nalu = clear_header_length(frame, codec=codec, keyframe=keyframe)
    if clear_bytes > len(frame):
        raise ValueError(
            f"{codec} frame of {len(frame)} bytes is shorter than its"
            f" {clear_bytes}-byte clear header"
        )
    header = frame[:clear_bytes]
    if nalu:
        header = normalize_start_codes(header)
    return _Layout(frame, clear_bytes, header, nalu)


def _seal(layout: _Layout, key: bytes, iv: bytes, key_index: int) -> bytes:
    """The encrypted frame: header, ciphertext + tag, IV, IV length, key index (escaped)."""
    if len(iv) != IV_LENGTH:
        raise ValueError(f"IV must be {IV_LENGTH} bytes, got {len(iv)}")
    sealed = cipher(key).encrypt(iv, memoryview(layout.frame)[layout.clear_bytes :], layout.header)
    encrypted = b"".join((layout.header, sealed, iv, bytes((IV_LENGTH, key_index))))
    if layout.nalu:
        encrypted = escape_rbsp(encrypted, start=len(layout.header))
    return encrypted


def _h264_parsed_bits_past_clear(layout: _Layout) -> tuple[int, int] | None:
    """Why some IVs are better than others for H.264, and which.

    Before a browser decrypts a frame, libwebrtc's H.264 depacketizer and SPS/PPS tracker read
    the first slice header: first_mb_in_slice, slice_type and pic_parameter_set_id, three
    Exp-Golomb numbers. LiveKit leaves only one byte after the NAL header in clear, and an x264
    I slice (first_mb 0 = 1 bit, slice_type 7 = 7 bits) fills it, so pic_parameter_set_id (0:
    one '1' bit) is read from ciphertext. Half of all IVs make it parse as another id, Chrome
    logs "No PPS with id ... received", drops the IDR and every delta frame after it, and the
    viewer freezes until a later keyframe happens to parse. Choosing, among fresh random IVs,
    one whose ciphertext starts with the plaintext's bits keeps those fields intact on the wire.

    Returns (the plaintext bits, their count) when the fields run past the clear byte, or None
    (nothing to match, or not an H.264 slice). On the wire they start right after the header.
    """
    frame, clear_bytes = layout.frame, layout.clear_bytes
    if not layout.nalu or not is_h264_slice(h264_nal_type(frame[clear_bytes - SLICE_HEADER_CLEAR_BYTES])):
        return None
    reader = BitReader(frame[clear_bytes - 1 : clear_bytes + 7])  # the clear byte + enough to parse
    try:
        for _ in range(3):  # first_mb_in_slice, slice_type, pic_parameter_set_id
            reader.ue()
    except ValueError:  # cut off by the end of the frame
        return None
    count = reader.pos - 8
    if count <= 0 or count > MAX_MATCHED_BITS:
        return None
    return _leading_bits(frame, count, clear_bytes), count


def _leading_bits(data: bytes, count: int, offset: int) -> int:
    """The first ``count`` (<= 8) bits of ``data[offset:]`` as an integer."""
    return data[offset] >> (8 - count)


def _encrypt_frame_with_iv(
    frame: bytes,
    key: bytes,
    iv: bytes,
    *,
    codec: Codec,
    key_index: int = 0,
    keyframe: bool = False,
) -> bytes:
    """encrypt_frame with a caller-chosen IV. Tests only: an IV must never repeat under a key."""
    layout = _layout(frame, codec=codec, key_index=key_index, keyframe=keyframe)
    return _seal(layout, key, iv, key_index)


def frame_key_index(frame: bytes) -> int:
    """The key index of a received encrypted frame (its last byte, not authenticated)."""
    if not frame:
        raise DecryptionError("empty frame carries no E2EE trailer")
    return frame[-1]


def decrypt_frame(
    frame: bytes,
    key: bytes,
    *,
    codec: Codec,
    keyframe: bool = False,
) -> bytes:
    """Decrypt and authenticate one frame encrypted by livekit-client (or :func:`encrypt_frame`).

    ``frame`` is the frame as the receiver gets it (for H.264/H.265 after RTP, with 4-byte start
    codes). ``keyframe`` is the receiver's frame type (used by VP8 and slice-less H.264/H.265).
    ``key`` must be the key for this frame's key index (see :func:`frame_key_index`); the index byte
    itself is not checked here. Returns the clear header followed by the plaintext: for H.264/H.265
    the header keeps the sender's 4-byte start codes.

    Raises DecryptionError for anything that does not authenticate; never returns unverified bytes.
    """
    aead = cipher(key)
    if codec not in CODECS:
        raise ValueError(f"unsupported codec {codec!r}: expected one of {sorted(CODECS)}")
    if len(frame) > MAX_FRAME_BYTES:
        raise DecryptionError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
    frame = bytes(frame)
    if not frame:
        raise DecryptionError("empty frame carries no E2EE trailer")
    clear_bytes, nalu = clear_header_length(frame, codec=codec, keyframe=keyframe)
    if nalu:
        # Stricter than JS: only the escaping an encoder writes is accepted, so a frame with
        # emulation prevention bytes added or removed (same ciphertext) counts as tampered.
        # Checked on the received bytes in one linear pass, before anything is unescaped.
        if not has_canonical_escaping(frame, start=clear_bytes):
            raise DecryptionError(f"malformed escaping in the encrypted part of the {codec} frame")
        frame = unescape_rbsp_if_needed(frame, start=clear_bytes)
    body_length = len(frame) - clear_bytes
    if body_length < MIN_ENCRYPTED_BODY:
        raise DecryptionError(
            f"truncated {codec} frame: {max(body_length, 0)} bytes after the {clear_bytes}-byte"
            f" clear header, need at least {MIN_ENCRYPTED_BODY}"
        )
    iv_length = frame[-TRAILER_LENGTH]
    if iv_length != IV_LENGTH:
        raise DecryptionError(
            f"malformed E2EE trailer: IV length byte is {iv_length}, expected {IV_LENGTH}"
        )
    iv_start = len(frame) - TRAILER_LENGTH - IV_LENGTH
    header = frame[:clear_bytes]
    try:
        plaintext = aead.decrypt(
            frame[iv_start : iv_start + IV_LENGTH], memoryview(frame)[clear_bytes:iv_start], header
        )
    except InvalidTag:
        raise DecryptionError(
            f"{codec} frame failed authentication (wrong key, wrong codec/frame type, or tampered)"
        ) from None
    return b"".join((header, plaintext))
