"""runner.e2ee frames: clear header rules, trailer, escaping, and livekit-client byte vectors.

"FrameCryptor.test.ts" / "naluUtils.test.ts" vectors are ported from livekit-client 2.23
(src/e2ee/worker/). The WORKER_VECTORS were produced by livekit-client 2.23's shipped worker
(dist/livekit-client.e2ee.worker.mjs, driven by tests/interop/e2ee_worker_host.mjs) with
Math.random pinned to 0, so its IV is SSRC | timestamp | timestamp.
"""


from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from runner.e2ee import (
    DecryptionError,
    clear_header_length,
    decrypt_frame,
    derive_key,
    encrypt_frame,
    frame_key_index,
)
from runner.e2ee.frame import _encrypt_frame_with_iv

if TYPE_CHECKING:
    from runner.e2ee import Codec

KEY1 = derive_key("key1")  # 7adabac1db9abf018ef98fdc737f4f2f
SC3 = b"\x00\x00\x01"
SC4 = b"\x00\x00\x00\x01"
SPS = bytes([0x67, 0x64, 0x00, 0x1F, 0xAC, 0xD9])
PPS = bytes([0x68, 0xEE, 0x3C, 0xB0])
IDR = bytes([0x65, 0x88, 0x84, 0x21, 0x43, 0x55, 0x66, 0x77])

# FrameCryptor.test.ts: 10 clear bytes (VP8 key frame rule), key "key1" at index 1.
JS_FRAME = bytes(
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 254, 96, 91, 111, 187, 132, 31, 12, 207, 136, 17, 221,
     233, 116, 174, 6, 50, 37, 214, 71, 119, 196, 255, 255, 255, 255, 0, 0, 0, 0, 255, 255,
     199, 51, 12, 1]
)
JS_FRAME_IV = bytes([255, 255, 255, 255, 0, 0, 0, 0, 255, 255, 199, 51])
JS_FRAME_2 = bytes(
    [99, 2, 3, 4, 5, 6, 7, 8, 9, 10, 154, 108, 209, 239, 253, 33, 72, 111, 13, 125, 10, 101,
     28, 209, 141, 162, 0, 238, 189, 254, 66, 156, 255, 255, 255, 255, 0, 0, 0, 0, 255, 255,
     96, 247, 12, 1]
)
PLAIN_1_TO_16 = bytes(range(1, 17))


# ---- FrameCryptor.test.ts vectors ---------------------------------------------------------------


def test_js_vector_decrypts_with_key1() -> None:
    assert decrypt_frame(JS_FRAME, KEY1, codec="vp8", keyframe=True) == PLAIN_1_TO_16


def test_js_vector_read_as_h264_falls_back_to_10_clear_bytes() -> None:
    # Not Annex B ("leading data"), so the JS decoder uses the VP8 rule for the key frame.
    assert decrypt_frame(JS_FRAME, KEY1, codec="h264", keyframe=True) == PLAIN_1_TO_16


def test_second_js_vector_decrypts_with_key1() -> None:
    expected = bytes([99]) + PLAIN_1_TO_16[1:]
    assert decrypt_frame(JS_FRAME_2, KEY1, codec="vp8", keyframe=True) == expected


def test_js_vector_carries_key_index_1() -> None:
    assert frame_key_index(JS_FRAME) == 1


def test_js_vector_with_an_incorrect_key_fails() -> None:
    with pytest.raises(DecryptionError, match="authentication"):
        decrypt_frame(JS_FRAME, derive_key("incorrect key"), codec="vp8", keyframe=True)


def test_encrypt_with_the_js_iv_reproduces_the_js_vector() -> None:
    encrypted = _encrypt_frame_with_iv(
        PLAIN_1_TO_16, KEY1, JS_FRAME_IV, codec="vp8", key_index=1, keyframe=True
    )
    assert encrypted == JS_FRAME


def test_encrypt_rewrites_3_byte_start_codes_in_the_header() -> None:
    encrypted = encrypt_frame(SC3 + SPS + SC3 + PPS + SC3 + IDR, KEY1, codec="h264", keyframe=True)
    header = SC4 + SPS + SC4 + PPS + SC4 + IDR[:2]
    assert encrypted[: len(header)] == header
    expected = SC4 + SPS + SC4 + PPS + SC4 + IDR
    assert decrypt_frame(encrypted, KEY1, codec="h264", keyframe=True) == expected


def test_encrypt_rewrites_a_3_byte_start_code_on_a_delta_frame() -> None:
    p_slice = bytes([0x41, 0x9A, 0x21, 0x43, 0x55, 0x66])
    encrypted = encrypt_frame(SC3 + p_slice, KEY1, codec="h264")
    assert encrypted[:6] == SC4 + p_slice[:2]
    assert decrypt_frame(encrypted, KEY1, codec="h264") == SC4 + p_slice


def test_encrypt_leaves_4_byte_start_codes_in_the_header() -> None:
    unit = SC4 + SPS + SC4 + PPS + SC4 + IDR
    encrypted = encrypt_frame(unit, KEY1, codec="h264", keyframe=True)
    assert encrypted[:22] == unit[:22]
    assert decrypt_frame(encrypted, KEY1, codec="h264", keyframe=True) == unit


def test_h264_frame_with_leading_data_uses_the_vp8_rule() -> None:
    frame = bytes([9, 9, 9, 9, 1, 2, 3, 4, 5, 6, 7, 8])
    encrypted = encrypt_frame(frame, KEY1, codec="h264", keyframe=True)
    assert encrypted[:10] == frame[:10]
    assert decrypt_frame(encrypted, KEY1, codec="h264", keyframe=True) == frame


# ---- worker vectors (bytes written by livekit-client's worker) ----------------------------------

WORKER_VECTORS = [
    # codec, keyframe, plaintext, IV, encrypted frame as the worker wrote it (key "key1", index 1)
    (
        "h264", True,
        "0000016764001facd900000168ee3cb00000016588842143556677",
        "000000000000000000000000",
        "000000016764001facd90000000168ee3cb0000000016588d222caff75430eea91e1c0f0a3aff4bc7b"
        "b0d9efa5cd00000300000300000300000300000300000c01",
    ),
    (
        "h265", True,
        "0000000140010c010000012601af06b82000000000",
        "010000000000000000000000",
        "0000000140010c010000000126015712f0c34e1afbd244789e7bcec7eba79f7ac99f8178fdac01000003000003"
        "000003000003000003000c01",
    ),
    (
        "vp8", False,
        "3106009d012adeadbeef",
        "112233445566778855667788",
        "310600e21043b1c00d053be31d77032b64d839c12fa4b80998321122334455667788556677880c01",
    ),
    (
        "opus", False,
        "fcfffe00000102",
        "0badf00d000003c0000003c0",
        "fc2be8f319488b558d777856b03cea3ad4d21e4809e9350badf00d000003c0000003c00c01",
    ),
    (  # no slice: VP8 rule, 10 clear bytes, no escaping although the IV has 00 00 00
        "h264", True,
        "000000016764001facd90000000168ee3cb0",
        "0000007700000bb800000bb8",
        "000000016764001facd9fc2054fe04aa9b1f125cafb035d9ce5ce436366223734d69000000770000"
        "0bb800000bb80c01",
    ),
]
VECTOR_IDS = ["h264-escaped-iv", "h265-escaped-iv", "vp8-delta", "opus", "h264-no-slice"]


@pytest.mark.parametrize("codec, keyframe, plain, iv, wire", WORKER_VECTORS, ids=VECTOR_IDS)
def test_encrypt_reproduces_the_worker_bytes(codec: Codec, keyframe: bool, plain: str, iv: str, wire: str) -> None:
    encrypted = _encrypt_frame_with_iv(
        bytes.fromhex(plain), KEY1, bytes.fromhex(iv), codec=codec, key_index=1, keyframe=keyframe
    )
    assert encrypted.hex() == wire


@pytest.mark.parametrize("codec, keyframe, plain, iv, wire", WORKER_VECTORS, ids=VECTOR_IDS)
def test_decrypt_of_the_worker_bytes(codec: Codec, keyframe: bool, plain: str, iv: str, wire: str) -> None:
    from runner.bitstream.annexb import normalize_start_codes

    plaintext = bytes.fromhex(plain)
    header_bytes, nalu = clear_header_length(plaintext, codec=codec, keyframe=keyframe)
    expected = plaintext
    if nalu:
        expected = normalize_start_codes(plaintext[:header_bytes]) + plaintext[header_bytes:]
    assert decrypt_frame(bytes.fromhex(wire), KEY1, codec=codec, keyframe=keyframe) == expected


# ---- clear header rules (naluUtils.test.ts) -----------------------------------------------------

H264_KEY_FRAME = SC4 + bytes([0x06, 0x11, 0x22]) + SC4 + bytes([0x65, 0x33, 0x44, 0x55, 0x66])
H265_KEY_FRAME = SC4 + bytes([0x26, 0x11, 0x22]) + SC4 + bytes([0x02, 0x33, 0x44, 0x55, 0x66])
NO_SLICE_FRAME = SC4 + bytes([0x67, 0x11, 0x22, 0x33, 0x44, 0x55])
AMBIGUOUS_FRAME = SC4 + bytes([0x25, 0x11, 0x22, 0x33, 0x44, 0x55])


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_h264_unit_slices_at_the_h264_slice_whatever_the_codec(codec: Codec) -> None:
    assert clear_header_length(H264_KEY_FRAME, codec=codec) == (13, True)


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_h265_unit_slices_at_the_h265_slice_whatever_the_codec(codec: Codec) -> None:
    assert clear_header_length(H265_KEY_FRAME, codec=codec) == (6, True)


def test_byte_that_is_a_slice_in_both_codecs_reads_as_h264() -> None:
    assert clear_header_length(AMBIGUOUS_FRAME, codec="h265") == (6, True)


@pytest.mark.parametrize("keyframe, clear_bytes", [(True, 10), (False, 3)])
def test_unit_without_a_slice_uses_the_vp8_rule(keyframe: bool, clear_bytes: int) -> None:
    layout = clear_header_length(NO_SLICE_FRAME, codec="h264", keyframe=keyframe)
    assert layout == (clear_bytes, False)


@pytest.mark.parametrize(
    "codec, keyframe, expected",
    [("opus", False, 1), ("vp8", True, 10), ("vp8", False, 3), ("vp9", True, 0), ("vp9", False, 0)],
)
def test_clear_bytes_of_audio_vp8_and_vp9(codec: Codec, keyframe: bool, expected: int) -> None:
    assert clear_header_length(b"\x00\x00\x00\x01\x65" * 4, codec=codec, keyframe=keyframe) == (
        expected,
        False,
    )


def test_unsupported_codec_is_refused() -> None:
    with pytest.raises(ValueError, match="av1"):
        clear_header_length(b"\x12\x00", codec="av1")  # type: ignore[arg-type]


# ---- wire layout --------------------------------------------------------------------------------

IV = bytes.fromhex("0102030405060708090a0b0c")


def test_vp8_layout_is_header_ciphertext_tag_iv_length_and_key_index() -> None:
    frame = bytes(range(0x10, 0x30))
    encrypted = _encrypt_frame_with_iv(frame, KEY1, IV, codec="vp8", key_index=7, keyframe=True)
    assert len(encrypted) == 10 + 22 + 16 + 12 + 2
    assert encrypted[:10] == frame[:10]
    assert encrypted[-14:] == IV + b"\x0c\x07"


def test_vp9_encrypts_everything() -> None:
    frame = bytes(range(0x10, 0x30))
    encrypted = _encrypt_frame_with_iv(frame, KEY1, IV, codec="vp9")
    assert len(encrypted) == 32 + 30 and encrypted[:4] != frame[:4]


def test_opus_keeps_the_toc_byte() -> None:
    encrypted = _encrypt_frame_with_iv(b"\xfc\x01\x02\x03", KEY1, IV, codec="opus")
    assert encrypted[0] == 0xFC and len(encrypted) == 4 + 30


def test_h264_body_is_escaped_and_the_header_is_not() -> None:
    iv = bytes.fromhex("000000000000000000000000")
    unit = SC4 + SPS + SC4 + IDR
    encrypted = _encrypt_frame_with_iv(unit, KEY1, iv, codec="h264", keyframe=True)
    assert encrypted[:16] == unit[:16]  # header: SPS and the IDR NAL header + 1 byte
    assert encrypted[-19:] == b"\x00\x00\x03" * 5 + b"\x00\x00\x0c\x00"


def test_random_ivs_differ() -> None:
    frame = bytes(range(40))
    first, second = (encrypt_frame(frame, KEY1, codec="vp8") for _ in range(2))
    assert first[-14:-2] != second[-14:-2]


def test_aes_256_key_round_trips() -> None:
    key = derive_key("key1", key_size=32)
    frame = SC4 + IDR * 10
    assert decrypt_frame(encrypt_frame(frame, key, codec="h264"), key, codec="h264") == frame


# ---- refusals -----------------------------------------------------------------------------------


def test_encrypt_refuses_an_empty_frame() -> None:
    with pytest.raises(ValueError, match="empty"):
        encrypt_frame(b"", KEY1, codec="opus")


def test_encrypt_refuses_a_frame_shorter_than_its_clear_header() -> None:
    with pytest.raises(ValueError, match="shorter than its 10-byte clear header"):
        encrypt_frame(b"\x10\x02\x00", KEY1, codec="vp8", keyframe=True)


@pytest.mark.parametrize("key_index", [-1, 256])
def test_encrypt_refuses_a_key_index_outside_a_byte(key_index: int) -> None:
    with pytest.raises(ValueError, match=r"0\.\.255"):
        encrypt_frame(b"\x10" * 20, KEY1, codec="vp8", key_index=key_index)


def test_encrypt_refuses_a_key_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="16 or 32 bytes, got 15"):
        encrypt_frame(b"\x10" * 20, KEY1[:15], codec="vp8")


def test_decrypt_refuses_an_empty_frame() -> None:
    with pytest.raises(DecryptionError, match="empty"):
        decrypt_frame(b"", KEY1, codec="vp8")


def test_decrypt_refuses_a_truncated_frame() -> None:
    with pytest.raises(DecryptionError, match="truncated vp8 frame: 29 bytes"):
        decrypt_frame(JS_FRAME[:39], KEY1, codec="vp8", keyframe=True)


def test_decrypt_refuses_an_iv_length_other_than_12() -> None:
    tampered = JS_FRAME[:-2] + b"\x10\x01"
    with pytest.raises(DecryptionError, match="IV length byte is 16"):
        decrypt_frame(tampered, KEY1, codec="vp8", keyframe=True)


def test_decrypt_with_the_wrong_frame_type_fails() -> None:
    with pytest.raises(DecryptionError):
        decrypt_frame(JS_FRAME, KEY1, codec="vp8", keyframe=False)


def test_decrypt_error_messages_never_show_the_key() -> None:
    with pytest.raises(DecryptionError) as caught:
        decrypt_frame(JS_FRAME[:-5] + b"\x00\x00\x00\x0c\x01", KEY1, codec="vp8", keyframe=True)
    assert KEY1.hex() not in str(caught.value) and repr(KEY1) not in str(caught.value)
