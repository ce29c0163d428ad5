"""Hostile input: truncated, bit-flipped, overwritten and random frames and data packets.

Decryption must raise DecryptionError and nothing else, and must never return bytes that did not
authenticate. The one unauthenticated part of a frame is its last byte (the key index, which only
selects a key): with a single key, a changed index still yields the authentic plaintext; with a
KeyRing it selects a missing key. The clear envelope of a data packet (sender identity, routing) is
not authenticated either, so only the decrypted value is held to the original.
"""


from __future__ import annotations

from typing import get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit.protocol.models import DataPacket, RpcRequest, UserPacket

from runner.e2ee import (
    Codec,
    DecryptionError,
    KeyRing,
    decrypt_data_packet,
    decrypt_frame,
    derive_key,
    encrypt_data_packet,
)
from runner.e2ee.frame import _encrypt_frame_with_iv

PASSPHRASE = "hostile input"
KEY = derive_key(PASSPHRASE)
RING = KeyRing()
RING.set_key(PASSPHRASE, 0)
ZERO_IV = bytes(12)
SOME_IV = bytes.fromhex("5a0000000001000000020003")

SC3, SC4 = b"\x00\x00\x01", b"\x00\x00\x00\x01"
H264_UNIT = (
    SC4 + bytes.fromhex("6742c01fda0507e84000000300400000") + SC4 + bytes.fromhex("68ce0fc8")
    + SC3 + bytes.fromhex("0605ffff4bdc45") + SC3 + bytes.fromhex("65888421435566778899aabbccdd")
    + SC3 + bytes.fromhex("65011020304050607080")
)
H265_UNIT = SC4 + bytes.fromhex("40010c01ffff") + SC4 + bytes.fromhex("2601af06b8204f5e6d7c8b9a")
PARAMETER_SETS = SC4 + bytes.fromhex("6742c01fda0507e8") + SC4 + bytes.fromhex("68ce0fc8")

# (codec, keyframe, plaintext, IV): zero IVs force escaping in the NALU cases.
CASES: list[tuple[Codec, bool, bytes, bytes]] = [
    ("h264", True, H264_UNIT, ZERO_IV),
    ("h264", False, H264_UNIT, SOME_IV),
    ("h265", True, H265_UNIT, ZERO_IV),
    ("h264", True, PARAMETER_SETS, ZERO_IV),
    ("vp8", True, bytes(range(0x10, 0x60)), SOME_IV),
    ("vp8", False, bytes(range(0x31, 0x51)), ZERO_IV),
    ("vp9", False, bytes(range(0x80, 0xA0)), SOME_IV),
    ("opus", False, bytes.fromhex("fc0102030000000405"), ZERO_IV),
]
ENCRYPTED = [
    (codec, keyframe, decrypt_frame(enc, KEY, codec=codec, keyframe=keyframe), enc)
    for codec, keyframe, plain, iv in CASES
    for enc in [_encrypt_frame_with_iv(plain, KEY, iv, codec=codec, keyframe=keyframe)]
]
CODECS = st.sampled_from(get_args(Codec))
FRAME_SETTINGS = settings(max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])


def test_every_case_decrypts_untampered() -> None:
    for codec, keyframe, plaintext, encrypted in ENCRYPTED:
        assert decrypt_frame(encrypted, KEY, codec=codec, keyframe=keyframe) == plaintext
        assert RING.decrypt_frame(encrypted, codec=codec, keyframe=keyframe) == plaintext


@FRAME_SETTINGS
@given(case=st.sampled_from(ENCRYPTED), data=st.data())
def test_truncated_frames_are_rejected(case: tuple[Codec, bool, bytes, bytes], data: st.DataObject) -> None:
    codec, keyframe, _, encrypted = case
    cut = data.draw(st.integers(min_value=0, max_value=len(encrypted) - 1))
    with pytest.raises(DecryptionError):
        decrypt_frame(encrypted[:cut], KEY, codec=codec, keyframe=keyframe)


@FRAME_SETTINGS
@given(case=st.sampled_from(ENCRYPTED), data=st.data())
def test_bit_flipped_frames_are_rejected(case: tuple[Codec, bool, bytes, bytes], data: st.DataObject) -> None:
    codec, keyframe, plaintext, encrypted = case
    position = data.draw(st.integers(min_value=0, max_value=len(encrypted) - 1))
    bit = data.draw(st.integers(min_value=0, max_value=7))
    flipped = bytearray(encrypted)
    flipped[position] ^= 1 << bit
    tampered = bytes(flipped)
    with pytest.raises(DecryptionError):
        RING.decrypt_frame(tampered, codec=codec, keyframe=keyframe)
    if position == len(encrypted) - 1:  # the key index: not authenticated, only selects a key
        assert decrypt_frame(tampered, KEY, codec=codec, keyframe=keyframe) == plaintext
    else:
        with pytest.raises(DecryptionError):
            decrypt_frame(tampered, KEY, codec=codec, keyframe=keyframe)


@FRAME_SETTINGS
@given(case=st.sampled_from(ENCRYPTED), data=st.data())
def test_frames_with_an_overwritten_span_are_rejected(
        case: tuple[Codec, bool, bytes, bytes], data: st.DataObject
) -> None:
    codec, keyframe, _, encrypted = case
    start = data.draw(st.integers(min_value=0, max_value=len(encrypted) - 2))
    replacement = data.draw(st.binary(min_size=1, max_size=8))
    tampered = encrypted[:start] + replacement + encrypted[start + len(replacement):]
    tampered = tampered[: len(encrypted) - 1] + encrypted[-1:]  # keep the key index
    if tampered == encrypted:
        return
    with pytest.raises(DecryptionError):
        decrypt_frame(tampered, KEY, codec=codec, keyframe=keyframe)


@FRAME_SETTINGS
@given(case=st.sampled_from(ENCRYPTED), data=st.data())
def test_frames_with_inserted_or_deleted_bytes_are_rejected(
        case: tuple[Codec, bool, bytes, bytes], data: st.DataObject
) -> None:
    codec, keyframe, _, encrypted = case
    position = data.draw(st.integers(min_value=0, max_value=len(encrypted) - 1))
    if data.draw(st.booleans()):
        inserted = data.draw(st.binary(min_size=1, max_size=4))
        tampered = encrypted[:position] + inserted + encrypted[position:]
    else:
        tampered = encrypted[:position] + encrypted[position + 1:]
    with pytest.raises(DecryptionError):
        RING.decrypt_frame(tampered, codec=codec, keyframe=keyframe)


@FRAME_SETTINGS
@given(frame=st.binary(max_size=300), codec=CODECS, keyframe=st.booleans())
def test_random_frames_are_rejected(frame: bytes, codec: Codec, keyframe: bool) -> None:
    with pytest.raises(DecryptionError):
        decrypt_frame(frame, KEY, codec=codec, keyframe=keyframe)
    with pytest.raises(DecryptionError):
        RING.decrypt_frame(frame, codec=codec, keyframe=keyframe)


ANNEX_B_LIKE = st.lists(
    st.sampled_from([SC3, SC4, b"\x00\x00\x03", b"\x00", b"\x65", b"\x41", b"\x26", b"\x0c\x00",
                     b"\x67\x42", bytes(12)]),
    max_size=40,
).map(b"".join)


@FRAME_SETTINGS
@given(frame=ANNEX_B_LIKE, codec=CODECS, keyframe=st.booleans())
def test_annex_b_shaped_garbage_is_rejected(frame: bytes, codec: Codec, keyframe: bool) -> None:
    with pytest.raises(DecryptionError):
        decrypt_frame(frame + bytes(12) + b"\x0c\x00", KEY, codec=codec, keyframe=keyframe)


# ---- data packets -------------------------------------------------------------------------------

PACKETS = [
    DataPacket(participant_identity="viewer", participant_sid="PA_1",
               destination_identities=["runner"],
               rpc_request=RpcRequest(id="r", method="input.key", payload='{"k":1}', version=1)),
    DataPacket(participant_identity="viewer", user=UserPacket(payload=bytes(40), topic="t")),
]
WIRES = [encrypt_data_packet(packet, KEY).SerializeToString() for packet in PACKETS]
DATA_SETTINGS = settings(max_examples=400, deadline=None)


def value_of(packet: DataPacket) -> tuple[str | None, bytes]:
    kind = packet.WhichOneof("value")
    return kind, getattr(packet, kind).SerializeToString() if kind else b""


@DATA_SETTINGS
@given(raw=st.binary(max_size=200))
def test_random_bytes_are_not_a_decryptable_packet(raw: bytes) -> None:
    with pytest.raises(DecryptionError):
        decrypt_data_packet(raw, KEY)
    with pytest.raises(DecryptionError):
        RING.decrypt_data_packet(raw)


@DATA_SETTINGS
@given(index=st.sampled_from(range(len(WIRES))), data=st.data())
def test_truncated_packets_are_rejected(index: int, data: st.DataObject) -> None:
    wire = WIRES[index]
    cut = data.draw(st.integers(min_value=0, max_value=len(wire) - 1))
    with pytest.raises(DecryptionError):
        decrypt_data_packet(wire[:cut], KEY)


@DATA_SETTINGS
@given(index=st.sampled_from(range(len(WIRES))), data=st.data())
def test_bit_flipped_packets_never_yield_a_forged_value(index: int, data: st.DataObject) -> None:
    wire = bytearray(WIRES[index])
    position = data.draw(st.integers(min_value=0, max_value=len(wire) - 1))
    wire[position] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
    try:
        decrypted = decrypt_data_packet(bytes(wire), KEY)
    except DecryptionError:
        return
    # Only the clear envelope was changed: the value is the authentic one.
    assert value_of(decrypted) == value_of(PACKETS[index])


@DATA_SETTINGS
@given(index=st.sampled_from(range(len(WIRES))), data=st.data())
def test_packets_with_a_tampered_encrypted_value_are_rejected(index: int, data: st.DataObject) -> None:
    packet = DataPacket()
    packet.ParseFromString(WIRES[index])
    value = bytearray(packet.encrypted_packet.encrypted_value)
    position = data.draw(st.integers(min_value=0, max_value=len(value) - 1))
    value[position] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
    packet.encrypted_packet.encrypted_value = bytes(value)
    with pytest.raises(DecryptionError):
        decrypt_data_packet(packet, KEY)
