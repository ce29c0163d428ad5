"""Annex B byte streams (H.264 and H.265): start codes, NAL unit boundaries and NAL unit types.

Pure bytes-in/bytes-out helpers with no I/O. An *access unit* (AU) here is one encoded picture as an
encoder writes it: NAL units, each preceded by a start code (``00 00 01`` or ``00 00 00 01``).

Two NALU scanners live here on purpose, because two different programs look at the same bytes:

- :func:`find_nalu_indices` reproduces livekit-client's ``findNALUIndices`` (the E2EE worker decides
  how many bytes stay in clear with it). Its quirks are part of the E2EE wire format.
- :func:`split_nalus` models libwebrtc's RTP packetizer (``H264::FindNaluIndices``): what travels
  over RTP and what the receiving browser rebuilds with :func:`join_nalus`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

START_CODE_3 = b"\x00\x00\x01"
"""Three-byte Annex B start code."""
START_CODE_4 = b"\x00\x00\x00\x01"
"""Four-byte Annex B start code; what a browser's RTP depacketizer writes before every NALU."""
_ZERO = 0x00
_ZERO_PAIR = b"\x00\x00"
_START_CODE_FINAL_BYTE = 0x01
EMULATION_PREVENTION_BYTE = 0x03
VECTOR_SCAN_MIN_BYTES = 8192
"""From this size on, scans use numpy: bytes.find runs at ~1.5 GB/s for 2- and 3-byte needles."""

# H.264 (ITU-T H.264 table 7-1): the type is the low 5 bits of the one-byte NAL header.
H264_NAL_TYPE_MASK = 0x1F
H264_NAL_SLICE_NON_IDR = 1
H264_NAL_SLICE_IDR = 5
H264_NAL_SEI = 6
H264_NAL_SPS = 7
H264_NAL_PPS = 8
H264_NAL_AUD = 9
H264_SLICE_TYPES = frozenset({H264_NAL_SLICE_NON_IDR, H264_NAL_SLICE_IDR})
"""The NAL types livekit-client treats as an H.264 slice (partitioned slices 2-4 are not)."""

# H.265 (ITU-T H.265 table 7-1): the type is bits 1..6 of the first of two NAL header bytes.
H265_NAL_TYPE_SHIFT = 1
H265_NAL_TYPE_MASK = 0x3F
H265_NAL_BLA_W_LP = 16
H265_NAL_IDR_W_RADL = 19
H265_NAL_IDR_N_LP = 20
H265_NAL_CRA = 21
H265_NAL_IRAP_MAX = 23
H265_NAL_VPS = 32
H265_NAL_SPS = 33
H265_NAL_PPS = 34
H265_NAL_AUD = 35
H265_NAL_PREFIX_SEI = 39
H265_NAL_SUFFIX_SEI = 40
H265_SLICE_TYPES = frozenset(range(0, 10)) | frozenset(range(16, 22))
"""VCL types livekit-client treats as an H.265 slice segment: 0-9 and 16-21."""


def h264_nal_type(header_byte: int) -> int:
    """NAL unit type of an H.264 NALU, from its first (header) byte."""
    return header_byte & H264_NAL_TYPE_MASK


def h265_nal_type(header_byte: int) -> int:
    """NAL unit type of an H.265 NALU, from the first of its two header bytes."""
    return (header_byte >> H265_NAL_TYPE_SHIFT) & H265_NAL_TYPE_MASK


def is_h264_slice(nal_type: int) -> bool:
    """True for H.264 coded slices (non-IDR type 1 and IDR type 5)."""
    return nal_type in H264_SLICE_TYPES


def is_h265_slice(nal_type: int) -> bool:
    """True for H.265 slice segments (types 0-9 and 16-21)."""
    return nal_type in H265_SLICE_TYPES


def _zero_pair_array(data: bytes) -> np.ndarray:
    """Sorted offsets p with data[p] == data[p + 1] == 0 (overlapping pairs included)."""
    size = len(data)
    even = np.frombuffer(data, dtype="<u2", count=size // 2)
    odd = np.frombuffer(data, dtype="<u2", count=(size - 1) // 2, offset=1 if size > 1 else 0)
    offsets = np.concatenate((np.flatnonzero(even == 0) * 2, np.flatnonzero(odd == 0) * 2 + 1))
    offsets.sort()
    return offsets


def _offsets_of_pair_then(data: bytes, third: int, end: int) -> list[int]:
    """Offsets p of ``00 00 <third>`` with p + 3 <= end, in order."""
    if len(data) < VECTOR_SCAN_MIN_BYTES:
        needle = bytes((_ZERO, _ZERO, third))
        found: list[int] = []
        hit = data.find(needle, 0, end)
        while hit >= 0:
            found.append(hit)
            hit = data.find(needle, hit + 1, end)
        return found
    pairs = _zero_pair_array(data)
    pairs = pairs[pairs + 3 <= end]
    array = np.frombuffer(data, dtype=np.uint8)
    offsets: list[int] = pairs[array[pairs + 2] == third].tolist()
    return offsets


def zero_pair_offsets(data: bytes) -> list[int]:
    """Offsets p where ``data[p:p + 2] == 00 00``, overlapping pairs included, in order."""
    if len(data) < VECTOR_SCAN_MIN_BYTES:
        found: list[int] = []
        hit = data.find(_ZERO_PAIR)
        while hit >= 0:
            found.append(hit)
            hit = data.find(_ZERO_PAIR, hit + 1)
        return found
    offsets: list[int] = _zero_pair_array(data).tolist()
    return offsets


def short_start_code_offsets(data: bytes, end: int | None = None) -> list[int]:
    """Offsets of every ``00 00 01`` lying within ``data[:end]``, in order (they never overlap).

    A 4-byte start code shows up here as the ``00 00 01`` one byte after it begins.
    """
    return _offsets_of_pair_then(data, _START_CODE_FINAL_BYTE, len(data) if end is None else end)


def emulation_prevention_offsets(data: bytes) -> list[int]:
    """Offsets of every ``00 00 03`` in ``data``, in order (they never overlap)."""
    return _offsets_of_pair_then(data, EMULATION_PREVENTION_BYTE, len(data))


def find_nalu_indices(data: bytes) -> list[int]:
    """Offsets of the first byte after each start code, exactly as livekit-client's findNALUIndices.

    Semantics (they are part of the E2EE format, quirks included):

    - 3- and 4-byte start codes are recognised, but only when at least one byte follows them.
    - A NALU that starts within the last 3 bytes of ``data`` is not reported.
    - An empty NALU (a start code right after a start code) is reported.
    - Raises ``ValueError`` when bytes other than zeros come before the first start code
      ("leading data"). Data shorter than 4 bytes yields ``[]`` without that check.
    """
    size = len(data)
    search_limit = size - 3
    if search_limit <= 0:
        return []
    # The JS scan only accepts a start code that has a byte after it.
    codes = short_start_code_offsets(data, size - 1)
    if codes:
        first = codes[0]
        first_nalu_end = first - 1 if first > 0 and data[first - 1] == _ZERO else first
    else:
        first_nalu_end = size
    if data[:first_nalu_end].strip(b"\x00"):
        raise ValueError("byte stream contains leading data before the first start code")
    return [code + 3 for code in codes if code + 3 < search_limit]


def iter_nalu_indices(data: bytes) -> Iterator[int]:
    """:func:`find_nalu_indices`, lazily: scans only as far as the caller reads.

    Raises the same ValueError before yielding anything. Each step is a ``bytes.find`` from the
    previous start code, so reading the first few NALUs of a large unit costs little.
    """
    size = len(data)
    search_limit = size - 3
    if search_limit <= 0:
        return
    # The JS scan only accepts a start code that has a byte after it.
    code = data.find(START_CODE_3, 0, size - 1)
    if code < 0:
        first_nalu_end = size
    else:
        first_nalu_end = code - 1 if code > 0 and data[code - 1] == _ZERO else code
    if data[:first_nalu_end].strip(b"\x00"):
        raise ValueError("byte stream contains leading data before the first start code")
    while 0 <= code and code + 3 < search_limit:
        yield code + 3
        code = data.find(START_CODE_3, code + 3, size - 1)


def normalize_start_codes(data: bytes) -> bytes:
    """Rewrite every 3-byte start code to the 4-byte form; return ``data`` itself if none.

    A ``00 00 01`` already preceded by ``00`` counts as a 4-byte start code and is left alone.
    This is what the browser's depacketizer produces on the receiving side, so a header
    normalized before encryption is the header the receiver authenticates.
    """
    hits = [
        code
        for code in short_start_code_offsets(data)
        if code == 0 or data[code - 1] != _ZERO
    ]
    if not hits:
        return data
    view = memoryview(data)  # slices of a view are not copies; join copies once
    pieces: list[memoryview] = []
    previous = 0
    for hit in hits:
        pieces.append(view[previous:hit])
        previous = hit
    pieces.append(view[previous:])
    return b"\x00".join(pieces)


def nalu_spans(data: bytes) -> list[tuple[int, int]]:
    """(payload start, payload end) of each NALU, with libwebrtc's packetizer boundaries."""
    size = len(data)
    # libwebrtc scans i < size - 3: a start code needs a byte after it.
    codes = short_start_code_offsets(data, size - 1)
    code_starts = [code - 1 if code > 0 and data[code - 1] == _ZERO else code for code in codes]
    ends = [*code_starts[1:], size]
    return [(code + 3, end) for code, end in zip(codes, ends, strict=False)]


def split_nalus(data: bytes) -> list[bytes]:
    """NALU payloads (without start codes), split the way libwebrtc's RTP packetizer splits them.

    A NALU ends where the next start code begins; a zero right before ``00 00 01`` belongs to that
    (4-byte) start code. The last NALU runs to the end of ``data``, trailing zeros included (they
    are sent over RTP). Bytes before the first start code are dropped, as the packetizer drops them.
    """
    return [data[start:end] for start, end in nalu_spans(data)]


def join_nalus(nalus: Iterable[bytes]) -> bytes:
    """Annex B stream with a 4-byte start code before each NALU (what an RTP receiver rebuilds)."""
    return b"".join(START_CODE_4 + bytes(nalu) for nalu in nalus)


def h264_nal_types(au: bytes) -> list[int]:
    """H.264 NAL unit types of the NALUs in ``au``, in order (empty NALUs are skipped)."""
    return [h264_nal_type(au[start]) for start, end in nalu_spans(au) if end > start]


def h265_nal_types(au: bytes) -> list[int]:
    """H.265 NAL unit types of the NALUs in ``au``, in order (empty NALUs are skipped)."""
    return [h265_nal_type(au[start]) for start, end in nalu_spans(au) if end > start]


def is_h264_keyframe(au: bytes) -> bool:
    """True when the H.264 access unit contains an IDR slice (NAL type 5)."""
    return H264_NAL_SLICE_IDR in h264_nal_types(au)


def is_h265_keyframe(au: bytes) -> bool:
    """True when the H.265 access unit contains an IRAP slice (BLA, IDR or CRA: types 16-23)."""
    return any(H265_NAL_BLA_W_LP <= t <= H265_NAL_IRAP_MAX for t in h265_nal_types(au))
