"""Emulation prevention over encrypted H.264/H.265 bodies: literal vectors, and a differential
check against straight ports of the semantics of livekit-client's writeRbsp / parseRbsp /
needsRbspUnescaping (src/e2ee/utils.ts), which loop byte by byte."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.bitstream.escaping import (
    escape_rbsp,
    needs_unescaping,
    unescape_rbsp,
    unescape_rbsp_if_needed,
)


def reference_escape(data: bytes) -> bytes:
    out = bytearray()
    zeros = 0
    for byte in data:
        if byte <= 3 and zeros >= 2:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def reference_unescape(data: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(data):
        if len(data) - i >= 3 and data[i] == 0 and data[i + 1] == 0 and data[i + 2] == 3:
            out += data[i : i + 2]
            i += 3
        else:
            out.append(data[i])
            i += 1
    return bytes(out)


def reference_needs_unescaping(data: bytes) -> bool:
    return any(data[i : i + 3] == b"\x00\x00\x03" for i in range(len(data) - 3))


@pytest.mark.parametrize(
    "plain, escaped",
    [
        ("000000", "00000300"),
        ("000001", "00000301"),
        ("000002", "00000302"),
        ("000003", "00000303"),
        ("000004", "000004"),
        ("00000000", "0000030000"),
        ("0000000000", "00000300000300"),
        ("ff00000001ff", "ff0000030001ff"),
        ("0000", "0000"),
        ("aa0000", "aa0000"),
        ("00ff00ff", "00ff00ff"),
    ],
)
def test_escape_vectors(plain: str, escaped: str) -> None:
    assert escape_rbsp(bytes.fromhex(plain)).hex() == escaped


def test_escape_returns_the_input_when_nothing_to_escape() -> None:
    data = bytes(range(4, 200))
    assert escape_rbsp(data) is data


def test_escape_only_after_start() -> None:
    assert escape_rbsp(bytes.fromhex("00000100000001"), start=3).hex() == "0000010000030001"


def test_escape_counts_zeros_only_from_start() -> None:
    assert escape_rbsp(bytes.fromhex("00000001"), start=1).hex() == "0000000301"


@pytest.mark.parametrize(
    "escaped, plain",
    [
        ("00000300", "000000"),
        ("0000030000030000", "000000000000"),
        ("000003ff", "0000ff"),  # removed whatever follows, as parseRbsp does
        ("00000003", "000000"),
        ("ff000003", "ff0000"),
    ],
)
def test_unescape_vectors(escaped: str, plain: str) -> None:
    assert unescape_rbsp(bytes.fromhex(escaped)).hex() == plain


def test_unescape_only_after_start() -> None:
    assert unescape_rbsp(bytes.fromhex("0000030000000300"), start=3).hex() == "00000300000000"


def test_needs_unescaping_ignores_a_final_escape_sequence() -> None:
    assert not needs_unescaping(bytes.fromhex("ff000003"))
    assert needs_unescaping(bytes.fromhex("00000300"))


def test_unescape_if_needed_keeps_a_final_escape_sequence() -> None:
    data = bytes.fromhex("ff000003")
    assert unescape_rbsp_if_needed(data) is data


def test_escape_of_200_kb_of_ciphertext_like_bytes_is_exact() -> None:
    data = bytes((i * 7919 + 13) % 251 + 4 for i in range(200_000)) + b"\x00\x00\x02\x00\x00\x00"
    assert escape_rbsp(data) == reference_escape(data)


ZERO_HEAVY = st.binary(max_size=64).map(
    lambda raw: bytes(b if b % 3 else b % 4 for b in raw)  # about 2/3 of the bytes are 0..3
)
LARGE = st.integers(min_value=2048, max_value=6000).flatmap(
    lambda size: st.binary(min_size=size, max_size=size).map(
        lambda raw: bytes(b if b & 0x30 else 0 for b in raw)
    )
)


@settings(max_examples=400)
@given(st.one_of(ZERO_HEAVY, st.binary(max_size=64), LARGE))
def test_escaping_matches_the_byte_loop_semantics(data: bytes) -> None:
    assert escape_rbsp(data) == reference_escape(data)
    assert unescape_rbsp(data) == reference_unescape(data)
    assert needs_unescaping(data) == reference_needs_unescaping(data)


@settings(max_examples=300)
@given(st.one_of(ZERO_HEAVY, LARGE))
def test_unescape_inverts_escape_and_escaped_data_has_no_start_code(data: bytes) -> None:
    escaped = escape_rbsp(data)
    assert unescape_rbsp(escaped) == data
    for prefix in (b"\x00\x00\x00", b"\x00\x00\x01", b"\x00\x00\x02"):
        assert prefix not in escaped
