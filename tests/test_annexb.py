"""runner.bitstream.annexb: start codes, NALU boundaries and types, with literal byte strings.

Vectors marked "naluUtils.test.ts" are ported from livekit-client 2.23
(src/e2ee/worker/naluUtils.test.ts).
"""


from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.bitstream.annexb import (
    find_nalu_indices,
    h264_nal_type,
    h264_nal_types,
    h265_nal_type,
    h265_nal_types,
    is_h264_keyframe,
    is_h264_slice,
    is_h265_keyframe,
    is_h265_slice,
    iter_nalu_indices,
    join_nalus,
    normalize_start_codes,
    split_nalus,
)

if TYPE_CHECKING:
    from collections.abc import Callable

SPS = bytes([0x67, 0x64, 0x00, 0x1F, 0xAC, 0xD9])
PPS = bytes([0x68, 0xEE, 0x3C, 0xB0])
IDR = bytes([0x65, 0x88, 0x84, 0x21, 0x43, 0x55, 0x66, 0x77])
SC3 = b"\x00\x00\x01"
SC4 = b"\x00\x00\x00\x01"


# ---- find_nalu_indices (livekit-client findNALUIndices) ----------------------------------------


def test_find_nalu_indices_with_4_byte_start_codes() -> None:
    assert find_nalu_indices(SC4 + SPS + SC4 + PPS + SC4 + IDR) == [4, 14, 22]


def test_find_nalu_indices_with_3_byte_start_codes() -> None:
    assert find_nalu_indices(SC3 + SPS + SC3 + PPS + SC3 + IDR) == [3, 12, 19]


def test_find_nalu_indices_with_mixed_start_codes() -> None:
    assert find_nalu_indices(SC4 + SPS + SC3 + PPS + SC4 + IDR) == [4, 13, 21]


def test_find_nalu_indices_ignores_a_trailing_nalu_of_3_bytes_or_less() -> None:
    assert find_nalu_indices(SC4 + SPS + SC4 + b"\x65\x88\x84") == [4]


def test_find_nalu_indices_reports_a_trailing_nalu_of_4_bytes() -> None:
    assert find_nalu_indices(SC4 + SPS + SC4 + b"\x65\x88\x84\x21") == [4, 14]


def test_find_nalu_indices_reads_a_start_code_with_nothing_after_it_as_data() -> None:
    assert find_nalu_indices(b"\x00\x00\x00\x01\x65\x00\x00\x01") == [4]


def test_find_nalu_indices_reports_an_empty_nalu() -> None:
    assert find_nalu_indices(SC3 + SC3 + IDR) == [3, 6]


def test_find_nalu_indices_accepts_leading_zeros() -> None:
    assert find_nalu_indices(b"\x00\x00" + SC4 + IDR) == [6]


def test_find_nalu_indices_rejects_leading_data() -> None:
    with pytest.raises(ValueError, match="leading data"):
        find_nalu_indices(bytes([9, 9, 9, 9, 1, 2, 3, 4, 5, 6, 7, 8]))


def test_find_nalu_indices_rejects_leading_data_before_a_start_code() -> None:
    with pytest.raises(ValueError, match="leading data"):
        find_nalu_indices(b"\x09" + SC4 + IDR)


def test_find_nalu_indices_skips_the_check_for_tiny_input() -> None:
    assert find_nalu_indices(b"\x09\x09\x09") == []


def test_find_nalu_indices_of_all_zeros_is_empty() -> None:
    assert find_nalu_indices(bytes(16)) == []


# ---- normalize_start_codes ---------------------------------------------------------------------


def test_normalize_rewrites_3_byte_start_codes() -> None:  # naluUtils.test.ts
    given = bytes([0, 0, 1, 0x67, 0x64, 0, 0, 1, 0x68, 0xEE, 0, 0, 1, 0x65, 0x88])
    assert normalize_start_codes(given) == bytes(
        [0, 0, 0, 1, 0x67, 0x64, 0, 0, 0, 1, 0x68, 0xEE, 0, 0, 0, 1, 0x65, 0x88]
    )


def test_normalize_rewrites_only_3_byte_codes_when_mixed() -> None:  # naluUtils.test.ts
    given = bytes(
        [0, 0, 0, 1, 0x67, 0x64, 0, 0, 1, 0x68, 0xEE, 0, 0, 0, 1, 0x06, 0x05, 0, 0, 1, 0x65, 0x88]
    )
    assert normalize_start_codes(given) == bytes(
        [0, 0, 0, 1, 103, 100, 0, 0, 0, 1, 104, 238, 0, 0, 0, 1, 6, 5, 0, 0, 0, 1, 101, 136]
    )


def test_normalize_returns_the_same_object_when_all_codes_are_4_bytes() -> None:  # naluUtils.test.ts
    given = bytes([0, 0, 0, 1, 0x67, 0x64, 0, 0, 0, 1, 0x65, 0x88])
    assert normalize_start_codes(given) is given


def test_normalize_leaves_a_start_code_with_extra_leading_zeros() -> None:  # naluUtils.test.ts
    given = bytes([0, 0, 0, 0, 1, 0x65, 0x88])
    assert normalize_start_codes(given) is given


def test_normalize_rewrites_a_start_code_at_the_very_end() -> None:
    assert normalize_start_codes(b"\x65\x88\x00\x00\x01") == b"\x65\x88\x00\x00\x00\x01"


def test_normalize_of_empty_input() -> None:
    given = b""
    assert normalize_start_codes(given) is given


def test_normalize_takes_under_100_us_of_cpu_on_a_200_kb_unit() -> None:
    unit = SC4 + SPS + SC4 + PPS + SC3 + IDR + bytes(range(1, 256)) * 800  # 204 KB, one 3-byte code
    cpu_ns = []
    for _ in range(30):
        started = time.thread_time_ns()  # CPU time: the test machine may be busy
        normalize_start_codes(unit)
        cpu_ns.append(time.thread_time_ns() - started)
    assert min(cpu_ns) < 100_000


# ---- split_nalus / join_nalus (the RTP path) ---------------------------------------------------


def test_split_nalus_drops_start_codes() -> None:
    assert split_nalus(SC4 + SPS + SC4 + PPS + SC3 + IDR) == [SPS, PPS, IDR]


def test_split_nalus_gives_a_zero_before_00_00_01_to_the_start_code() -> None:
    unit = b"\x00\x00\x01\x67\x11\x00\x00\x00\x01\x65\x22"
    assert split_nalus(unit) == [b"\x67\x11", b"\x65\x22"]


def test_split_nalus_keeps_trailing_zeros_of_the_last_nalu() -> None:
    assert split_nalus(SC4 + b"\x65\x88\x0c\x00") == [b"\x65\x88\x0c\x00"]


def test_split_nalus_drops_leading_data() -> None:
    assert split_nalus(b"\x09\x09" + SC3 + IDR) == [IDR]


def test_join_nalus_writes_4_byte_start_codes() -> None:
    assert join_nalus([SPS, PPS, IDR]) == SC4 + SPS + SC4 + PPS + SC4 + IDR


def test_split_then_join_normalizes_start_codes() -> None:
    unit = SC4 + SPS + SC4 + PPS + SC3 + IDR
    assert join_nalus(split_nalus(unit)) == normalize_start_codes(unit)


# ---- NAL unit types ----------------------------------------------------------------------------


def test_h264_nal_type_of_sps_pps_sei_idr_and_p_slice() -> None:
    assert [h264_nal_type(b) for b in (0x67, 0x68, 0x06, 0x65, 0x41)] == [7, 8, 6, 5, 1]


def test_h265_nal_type_of_vps_sps_pps_sei_idr_and_trail() -> None:
    assert [h265_nal_type(b) for b in (0x40, 0x42, 0x44, 0x4E, 0x26, 0x28, 0x02)] == [
        32,
        33,
        34,
        39,
        19,
        20,
        1,
    ]


def test_h264_slice_types_are_1_and_5() -> None:
    assert [t for t in range(32) if is_h264_slice(t)] == [1, 5]


def test_h265_slice_types_are_0_to_9_and_16_to_21() -> None:
    assert [t for t in range(64) if is_h265_slice(t)] == [*range(10), *range(16, 22)]


def test_h264_nal_types_lists_each_nalu() -> None:
    assert h264_nal_types(SC4 + SPS + SC4 + PPS + SC3 + b"\x06\x05\x01" + SC3 + IDR) == [7, 8, 6, 5]


def test_h265_nal_types_lists_each_nalu() -> None:
    assert h265_nal_types(SC4 + b"\x40\x01\x0c" + SC4 + b"\x26\x01\xaf") == [32, 19]


def test_is_h264_keyframe_with_an_idr_slice() -> None:
    assert is_h264_keyframe(SC4 + SPS + SC4 + PPS + SC3 + IDR)


def test_is_h264_keyframe_without_an_idr_slice() -> None:
    assert not is_h264_keyframe(SC4 + b"\x41\x9a\x21\x43")


def test_is_h264_keyframe_of_parameter_sets_only() -> None:
    assert not is_h264_keyframe(SC4 + SPS + SC4 + PPS)


def test_is_h265_keyframe_with_an_idr_slice() -> None:
    assert is_h265_keyframe(SC4 + b"\x40\x01\x0c" + SC4 + b"\x26\x01\xaf")


def test_is_h265_keyframe_with_a_trailing_picture() -> None:
    assert not is_h265_keyframe(SC4 + b"\x02\x01\xd0")


# ---- differential checks against byte-by-byte ports of the JS semantics -------------------------


def reference_find_nalu_indices(stream: bytes) -> list[int]:
    """findNALUIndices (livekit-client src/e2ee/worker/naluUtils.ts), one byte at a time."""
    result: list[int] = []
    start = pos = 0
    limit = len(stream) - 3
    while pos < limit:
        while pos < limit:
            if pos < limit - 1 and stream[pos : pos + 4] == b"\x00\x00\x00\x01":
                break
            if stream[pos : pos + 3] == b"\x00\x00\x01":
                break
            pos += 1
        if pos >= limit:
            pos = len(stream)
        end = pos
        while end > start and stream[end - 1] == 0:
            end -= 1
        if start == 0:
            if end != start:
                raise ValueError("leading data")
        else:
            result.append(start)
        four_byte = pos < len(stream) - 3 and stream[pos : pos + 4] == b"\x00\x00\x00\x01"
        code_length = 4 if four_byte else 3
        start = pos = pos + code_length
    return result


def reference_normalize(data: bytes) -> bytes:
    out = bytearray()
    for i, byte in enumerate(data):
        if data[i : i + 3] == b"\x00\x00\x01" and (i == 0 or data[i - 1] != 0):
            out.append(0)
        out.append(byte)
    return bytes(out)


ANNEX_B_PIECES = st.lists(
    st.sampled_from([SC3, SC4, b"\x00", b"\x00\x00", b"\x01", b"\x03", b"\x65", b"\x41", b"\x09"]),
    max_size=30,
).map(b"".join)
LARGE_ANNEX_B = st.integers(min_value=8192, max_value=12000).flatmap(
    lambda size: st.binary(min_size=size, max_size=size).map(
        lambda raw: bytes(b if b & 0xF0 else b & 0x01 for b in raw)  # many 00 and 01 bytes
    )
)


def outcome(function: Callable[[bytes], object], data: bytes) -> object:
    try:
        return function(data)
    except ValueError:
        return "leading data"


@settings(max_examples=400, deadline=None)
@given(st.one_of(ANNEX_B_PIECES, st.binary(max_size=40), LARGE_ANNEX_B))
def test_nalu_scans_match_the_byte_loop_semantics(data: bytes) -> None:
    expected = outcome(reference_find_nalu_indices, data)
    assert outcome(find_nalu_indices, data) == expected
    assert outcome(lambda d: list(iter_nalu_indices(d)), data) == expected
    assert normalize_start_codes(data) == reference_normalize(data)


def test_iter_nalu_indices_raises_before_yielding() -> None:
    with pytest.raises(ValueError, match="leading data"):
        next(iter_nalu_indices(b"\x09" + SC4 + IDR))
