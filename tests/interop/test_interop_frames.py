"""Media frames: runner.e2ee against livekit-client's shipped E2EE worker, both directions.

Python -> JS: runner.e2ee encrypts, the frame crosses RTP (H.264/H.265: NALUs re-joined with 4-byte
start codes), the worker's decrypt transform must hand back the plaintext.
JS -> Python: the worker's encrypt transform encrypts (as a browser sender), the frame crosses RTP,
runner.e2ee must decrypt it to what the worker itself decrypts it to.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from runner.bitstream.annexb import (
    H264_NAL_SEI,
    H264_NAL_SLICE_IDR,
    H264_NAL_SLICE_NON_IDR,
    H264_NAL_SPS,
    h264_nal_types,
    h265_nal_types,
    join_nalus,
    normalize_start_codes,
    split_nalus,
)
from runner.e2ee import DecryptionError, KeyRing, decrypt_frame, derive_key, encrypt_frame
from runner.e2ee.frame import _encrypt_frame_with_iv

from .worker_host import JsFrame, WorkerHost, WorkerHostError, kept

if TYPE_CHECKING:
    from collections.abc import Callable

    from runner.e2ee import Codec

pytestmark = pytest.mark.integration

PASSPHRASE = "correct horse battery staple"
KEY = derive_key(PASSPHRASE)
ESCAPE_PATTERN = re.compile(b"\x00\x00\x03[\x00-\x03]")
IV_LENGTH = 12
TRAILER = 2
GCM_TAG = 16


@pytest.fixture
def keyed(js: WorkerHost) -> WorkerHost:
    """The worker with PASSPHRASE set as ExternalE2EEKeyProvider.setKey(PASSPHRASE) does."""
    js.set_key(PASSPHRASE.encode())
    return js


def through_rtp(frame: bytes) -> bytes:
    """What the receiving browser rebuilds from the RTP packets of an H.264/H.265 frame."""
    return join_nalus(split_nalus(frame))


def first_slice_header_end(au: bytes, slice_type: Callable[[int], bool]) -> int:
    """Offset just past the first slice's NAL header + 1 byte (independent of runner code)."""
    for match in re.finditer(b"\x00\x00\x01", au):
        if slice_type(au[match.end()]):
            return match.end() + 2
    raise AssertionError("no slice in unit")


def h264_slice(byte: int) -> bool:
    return byte & 0x1F in (H264_NAL_SLICE_NON_IDR, H264_NAL_SLICE_IDR)


def h265_slice(byte: int) -> bool:
    nal_type = (byte >> 1) & 0x3F
    return nal_type <= 9 or 16 <= nal_type <= 21


def received_plaintext(au: bytes, slice_type: Callable[[int], bool]) -> bytes:
    """The plaintext a receiver gets back: the clear header with 4-byte start codes, then the rest
    exactly as the sender had it."""
    end = first_slice_header_end(au, slice_type)
    header = re.sub(b"(?<!\x00)\x00\x00\x01", b"\x00\x00\x00\x01", au[:end])
    return header + au[end:]


# ---- the fixtures are what the suite claims ---------------------------------------------------


def test_x264_units_cover_slices_sei_and_3_byte_start_codes(x264_units: list[tuple[bytes, bool]]) -> None:
    keyframes = [au for au, key in x264_units if key]
    deltas = [au for au, key in x264_units if not key]
    assert len(keyframes) == 2 and len(deltas) >= 3
    first_idr = h264_nal_types(keyframes[0])
    assert first_idr[:3] == [H264_NAL_SPS, 8, H264_NAL_SEI]
    assert first_idr.count(H264_NAL_SLICE_IDR) == 4
    assert all(h264_nal_types(au).count(H264_NAL_SLICE_NON_IDR) == 4 for au in deltas)
    assert all(normalize_start_codes(au) != au for au, _ in x264_units)  # 3-byte codes present


def test_vpx_fixtures_have_key_and_delta_frames(
        vp8_frames: list[tuple[bytes, bool]], vp9_frames: list[tuple[bytes, bool]]
) -> None:
    for frames in (vp8_frames, vp9_frames):
        assert [key for _, key in frames].count(True) == 2 and len(frames) == 6


def test_x265_units_cover_parameter_sets_and_slices(x265_units: list[tuple[bytes, bool]]) -> None:
    types = h265_nal_types(x265_units[0][0])
    assert types[:3] == [32, 33, 34] and x265_units[0][1]
    assert any(not key for _, key in x265_units)


# ---- H.264 ------------------------------------------------------------------------------------


def test_x264_normalized_by_runner_python_to_js(keyed: WorkerHost, x264_units: list[tuple[bytes, bool]]) -> None:
    units = [normalize_start_codes(au) for au, _ in x264_units]
    wire = [
        through_rtp(encrypt_frame(au, KEY, codec="h264", keyframe=key))
        for au, (_, key) in zip(units, x264_units, strict=False)
    ]
    decrypted = keyed.decode(
        [JsFrame(w, "h264", key) for w, (_, key) in zip(wire, x264_units, strict=False)]
    )
    assert decrypted == units


def encrypt_through_rtp(units: list[tuple[bytes, bool]], codec: Codec) -> list[bytes]:
    return [through_rtp(encrypt_frame(au, KEY, codec=codec, keyframe=key)) for au, key in units]


def test_x264_as_encoded_python_to_js(keyed: WorkerHost, x264_units: list[tuple[bytes, bool]]) -> None:
    wire = encrypt_through_rtp(x264_units, "h264")
    decrypted = keyed.decode([JsFrame(w, "h264", key) for w, (_, key) in zip(wire, x264_units, strict=False)])
    assert decrypted == [received_plaintext(au, h264_slice) for au, _ in x264_units]


def test_x264_survives_rtp_unchanged_once_encrypted(x264_units: list[tuple[bytes, bool]]) -> None:
    for au, key in x264_units:
        encrypted = encrypt_frame(au, KEY, codec="h264", keyframe=key)
        assert through_rtp(encrypted) == encrypted


def test_x264_js_to_python(keyed: WorkerHost, x264_units: list[tuple[bytes, bool]]) -> None:
    encrypted = kept(keyed.encode([JsFrame(au, "h264", key) for au, key in x264_units]))
    assert all(frame is not None for frame in encrypted)
    wire = [through_rtp(frame) for frame in encrypted]
    expected = [received_plaintext(au, h264_slice) for au, _ in x264_units]
    assert [
        decrypt_frame(w, KEY, codec="h264", keyframe=key) for w, (_, key) in zip(wire, x264_units, strict=False)
    ] == expected
    from_js = keyed.decode([JsFrame(w, "h264", key) for w, (_, key) in zip(wire, x264_units, strict=False)])
    assert from_js == expected


def test_x264_js_and_python_keep_the_same_clear_header(keyed: WorkerHost, x264_units: list[tuple[bytes, bool]]) -> None:
    au, key = x264_units[0]
    from_js = kept(keyed.encode([JsFrame(au, "h264", key)]))[0]
    from_python = encrypt_frame(au, KEY, codec="h264", keyframe=key)
    header_end = first_slice_header_end(normalize_start_codes(au), h264_slice)
    expected = normalize_start_codes(au)[:header_end]
    assert from_js[:header_end] == from_python[:header_end] == expected


def test_x264_without_mime_type_uses_the_codec_given_to_the_transform(
        keyed: WorkerHost, x264_units: list[tuple[bytes, bool]]
) -> None:
    wire = encrypt_through_rtp(x264_units, "h264")
    decrypted = keyed.decode(
        [JsFrame(w, "h264", key, with_mime_type=False) for w, (_, key) in zip(wire, x264_units, strict=False)],
        codec="h264",
    )
    assert decrypted == [received_plaintext(au, h264_slice) for au, _ in x264_units]


# ---- H.265 ------------------------------------------------------------------------------------


def test_x265_python_to_js(keyed: WorkerHost, x265_units: list[tuple[bytes, bool]]) -> None:
    wire = encrypt_through_rtp(x265_units, "h265")
    decrypted = keyed.decode([JsFrame(w, "h265", key) for w, (_, key) in zip(wire, x265_units, strict=False)])
    assert decrypted == [received_plaintext(au, h265_slice) for au, _ in x265_units]


def test_x265_js_to_python(keyed: WorkerHost, x265_units: list[tuple[bytes, bool]]) -> None:
    encrypted = kept(keyed.encode([JsFrame(au, "h265", key) for au, key in x265_units]))
    wire = [through_rtp(frame) for frame in encrypted]
    assert [
        decrypt_frame(w, KEY, codec="h265", keyframe=key) for w, (_, key) in zip(wire, x265_units, strict=False)
    ] == [received_plaintext(au, h265_slice) for au, _ in x265_units]


# ---- units without a slice (VP8 rule, no escaping) --------------------------------------------


def parameter_sets_only(x264_units: list[tuple[bytes, bool]]) -> bytes:
    nalus = split_nalus(x264_units[0][0])
    return join_nalus([nalu for nalu in nalus if nalu[0] & 0x1F in (7, 8)])


def test_sps_pps_only_key_unit_python_to_js(keyed: WorkerHost, x264_units: list[tuple[bytes, bool]]) -> None:
    unit = parameter_sets_only(x264_units)
    encrypted = encrypt_frame(unit, KEY, codec="h264", keyframe=True)
    assert encrypted[:10] == unit[:10]
    assert len(encrypted) == len(unit) + GCM_TAG + IV_LENGTH + TRAILER  # not escaped
    assert keyed.decode([JsFrame(through_rtp(encrypted), "h264", True)]) == [unit]


def test_sps_pps_only_key_unit_js_to_python(keyed: WorkerHost, x264_units: list[tuple[bytes, bool]]) -> None:
    unit = parameter_sets_only(x264_units)
    encrypted = kept(keyed.encode([JsFrame(unit, "h264", True)]))[0]
    assert len(encrypted) == len(unit) + GCM_TAG + IV_LENGTH + TRAILER
    assert decrypt_frame(through_rtp(encrypted), KEY, codec="h264", keyframe=True) == unit


def test_sps_pps_only_delta_unit_keeps_3_clear_bytes_both_ways(
        keyed: WorkerHost, x264_units: list[tuple[bytes, bool]]
) -> None:
    unit = parameter_sets_only(x264_units)
    from_python = encrypt_frame(unit, KEY, codec="h264", keyframe=False)
    from_js = kept(keyed.encode([JsFrame(unit, "h264", False)]))[0]
    assert from_python[:3] == from_js[:3] == b"\x00\x00\x00"
    assert keyed.decode([JsFrame(from_python, "h264", False)]) == [unit]
    assert decrypt_frame(from_js, KEY, codec="h264", keyframe=False) == unit


def test_sps_pps_only_delta_unit_loses_its_start_code_to_rtp(x264_units: list[tuple[bytes, bool]]) -> None:
    # Trap: 3 clear bytes cut the first start code, so an RTP packetizer finds no NALU in it.
    unit = parameter_sets_only(x264_units)
    iv = bytes.fromhex("b1b2b3b4b5b6b7b8b9babbbc")
    encrypted = _encrypt_frame_with_iv(unit, KEY, iv, codec="h264", keyframe=False)
    assert encrypted[:4] != b"\x00\x00\x00\x01"
    assert through_rtp(encrypted) != encrypted


def test_sps_pps_only_unit_needs_the_same_frame_type_on_both_sides(
        keyed: WorkerHost, x264_units: list[tuple[bytes, bool]]
) -> None:
    unit = parameter_sets_only(x264_units)
    encrypted = encrypt_frame(unit, KEY, codec="h264", keyframe=True)
    assert keyed.decode([JsFrame(encrypted, "h264", keyframe=False)]) == [None]


# ---- VP8, VP9, audio --------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["vp8", "vp9"])
def test_vpx_python_to_js(
        keyed: WorkerHost, vp8_frames: list[tuple[bytes, bool]], vp9_frames: list[tuple[bytes, bool]], codec: Codec
) -> None:
    frames = vp8_frames if codec == "vp8" else vp9_frames
    wire = [encrypt_frame(frame, KEY, codec=codec, keyframe=key) for frame, key in frames]
    decrypted = keyed.decode([JsFrame(w, codec, key) for w, (_, key) in zip(wire, frames, strict=False)])
    assert decrypted == [frame for frame, _ in frames]


@pytest.mark.parametrize("codec", ["vp8", "vp9"])
def test_vpx_js_to_python(
        keyed: WorkerHost, vp8_frames: list[tuple[bytes, bool]], vp9_frames: list[tuple[bytes, bool]], codec: Codec
) -> None:
    frames = vp8_frames if codec == "vp8" else vp9_frames
    encrypted = kept(keyed.encode([JsFrame(frame, codec, key) for frame, key in frames]))
    assert [
        decrypt_frame(e, KEY, codec=codec, keyframe=key) for e, (_, key) in zip(encrypted, frames, strict=False)
    ] == [frame for frame, _ in frames]


def test_vp8_keeps_10_clear_bytes_on_key_frames_and_3_on_delta_frames(
        keyed: WorkerHost, vp8_frames: list[tuple[bytes, bool]]
) -> None:
    (key_frame, _), (delta_frame, _) = vp8_frames[0], vp8_frames[1]
    from_js = kept(keyed.encode([JsFrame(key_frame, "vp8", True), JsFrame(delta_frame, "vp8", False)]))
    assert from_js[0][:10] == key_frame[:10] and from_js[0][10:20] != key_frame[10:20]
    assert from_js[1][:3] == delta_frame[:3] and from_js[1][3:13] != delta_frame[3:13]


def test_opus_python_to_js(keyed: WorkerHost, opus_packets: list[bytes]) -> None:
    wire = [encrypt_frame(packet, KEY, codec="opus") for packet in opus_packets]
    assert all(w[0] == packet[0] for w, packet in zip(wire, opus_packets, strict=False))  # TOC byte in clear
    assert keyed.decode([JsFrame(w, "opus") for w in wire], track="mic") == opus_packets


def test_opus_js_to_python(keyed: WorkerHost, opus_packets: list[bytes]) -> None:
    encrypted = kept(keyed.encode([JsFrame(packet, "opus") for packet in opus_packets], track="mic"))
    assert [decrypt_frame(e, KEY, codec="opus") for e in encrypted] == opus_packets


# ---- escaping ---------------------------------------------------------------------------------


def test_python_iv_that_needs_escaping_js_decrypts(keyed: WorkerHost, x264_units: list[tuple[bytes, bool]]) -> None:
    au, key = x264_units[0]
    iv = bytes.fromhex("000000000000010203000000")
    encrypted = through_rtp(_encrypt_frame_with_iv(au, KEY, iv, codec="h264", keyframe=key))
    assert ESCAPE_PATTERN.search(encrypted[-20:])  # the IV is escaped
    assert keyed.decode([JsFrame(encrypted, "h264", key)]) == [received_plaintext(au, h264_slice)]


def craft_zero_ciphertext(au: bytes, iv: bytes, offsets: tuple[int, ...]) -> bytes:
    """``au`` changed after its clear header so that AES-GCM under KEY and ``iv`` writes zeros at
    ``offsets`` of the ciphertext (GCM is a stream cipher: plaintext = keystream gives zeros)."""
    header_end = first_slice_header_end(au, h264_slice)
    keystream = AESGCM(KEY).encrypt(iv, bytes(len(au) - header_end), b"")
    payload = bytearray(au[header_end:])
    for offset in offsets:
        payload[offset] = keystream[offset]
    return au[:header_end] + bytes(payload)


def test_python_ciphertext_that_needs_escaping_js_decrypts(
        keyed: WorkerHost, x264_units: list[tuple[bytes, bool]]
) -> None:
    au, key = x264_units[1]
    iv = bytes.fromhex("a1a2a3a4a5a6a7a8a9aaabac")
    crafted = craft_zero_ciphertext(au, iv, (20, 21, 22, 23, 50, 51, 52))
    encrypted = through_rtp(_encrypt_frame_with_iv(crafted, KEY, iv, codec="h264", keyframe=key))
    assert len(ESCAPE_PATTERN.findall(encrypted)) >= 2
    expected = received_plaintext(crafted, h264_slice)
    assert keyed.decode([JsFrame(encrypted, "h264", key)]) == [expected]


def test_js_iv_that_needs_escaping_python_decrypts(keyed: WorkerHost, x264_units: list[tuple[bytes, bool]]) -> None:
    # FrameCryptor's IV is SSRC | RTP timestamp | timestamp - send count: SSRC 0 and timestamp 0
    # put eight zero bytes in the IV.
    frames = [JsFrame(au, "h264", key, ssrc=0, timestamp=0) for au, key in x264_units]
    encrypted = kept(keyed.encode(frames))
    assert all(ESCAPE_PATTERN.search(frame[-24:]) for frame in encrypted)
    assert [
        decrypt_frame(through_rtp(e), KEY, codec="h264", keyframe=key)
        for e, (_, key) in zip(encrypted, x264_units, strict=False)
    ] == [received_plaintext(au, h264_slice) for au, _ in x264_units]


def test_js_ciphertext_that_needs_escaping_python_decrypts(
        keyed: WorkerHost, x264_units: list[tuple[bytes, bool]]
) -> None:
    au, key = x264_units[1]
    ssrc, timestamp = 0x0A0B0C0D, 0x01020304
    # With Math.random pinned to 0 the send counter of a new SSRC starts at 0: IV = ssrc|ts|ts.
    iv = ssrc.to_bytes(4, "big") + timestamp.to_bytes(4, "big") + timestamp.to_bytes(4, "big")
    crafted = craft_zero_ciphertext(au, iv, (10, 11, 12, 13, 40, 41, 42))
    keyed.pin_random(0)
    try:
        encrypted = kept(keyed.encode([JsFrame(crafted, "h264", key, ssrc=ssrc, timestamp=timestamp)]))[0]
    finally:
        keyed.pin_random(None)
    assert encrypted[-14:-2] == iv
    assert len(ESCAPE_PATTERN.findall(encrypted)) >= 2
    assert decrypt_frame(through_rtp(encrypted), KEY, codec="h264", keyframe=key) == (
        received_plaintext(crafted, h264_slice)
    )


# ---- negative controls: the harness does report drops ------------------------------------------


def test_js_drops_a_frame_encrypted_with_another_key(keyed: WorkerHost, x264_units: list[tuple[bytes, bool]]) -> None:
    au, key = x264_units[0]
    wrong = encrypt_frame(au, derive_key("another passphrase"), codec="h264", keyframe=key)
    assert keyed.decode([JsFrame(wrong, "h264", key)]) == [None]


def test_js_drops_a_tampered_python_frame(keyed: WorkerHost, vp8_frames: list[tuple[bytes, bool]]) -> None:
    frame, key = vp8_frames[0]
    encrypted = bytearray(encrypt_frame(frame, KEY, codec="vp8", keyframe=key))
    encrypted[40] ^= 0x01
    assert keyed.decode([JsFrame(bytes(encrypted), "vp8", key)]) == [None]


def test_python_rejects_a_tampered_js_frame(keyed: WorkerHost, x264_units: list[tuple[bytes, bool]]) -> None:
    au, key = x264_units[0]
    encrypted = bytearray(kept(keyed.encode([JsFrame(au, "h264", key)]))[0])
    encrypted[len(encrypted) // 2] ^= 0x80
    with pytest.raises(DecryptionError):
        decrypt_frame(bytes(encrypted), KEY, codec="h264", keyframe=key)


def test_keyring_decrypts_js_frames_by_their_key_index(keyed: WorkerHost, x264_units: list[tuple[bytes, bool]]) -> None:
    ring = KeyRing()
    ring.set_key(PASSPHRASE)
    au, key = x264_units[0]
    encrypted = kept(keyed.encode([JsFrame(au, "h264", key)]))[0]
    expected = received_plaintext(au, h264_slice)
    assert ring.decrypt_frame(encrypted, codec="h264", keyframe=key) == expected


def test_js_sender_dies_on_a_frame_shorter_than_its_clear_header(keyed: WorkerHost) -> None:
    # Trap: encodeFunction builds the clear header outside its try, so a 2-byte VP8 delta frame
    # (3 clear bytes) throws, errors the transform stream and ends the sender for good.
    with pytest.raises(WorkerHostError, match="stalled"):
        keyed.encode([JsFrame(b"\x31\x06", "vp8", False)], track="short", timeout_ms=500)
    with pytest.raises(WorkerHostError, match="already closed"):
        keyed.encode([JsFrame(bytes(range(0x31, 0x51)), "vp8", False)], track="short")
    with pytest.raises(ValueError, match="shorter than its 3-byte clear header"):
        encrypt_frame(b"\x31\x06", KEY, codec="vp8")
