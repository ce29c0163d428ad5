"""Hostile frames that cost: decrypt_frame must reject zero-heavy and oversized H.264 frames in time
and memory linear in the input, whatever the bytes (issue: a 4 MiB all-zero frame once took 19 s
and 1.4 GB, re-escaping the whole frame before rejecting it).

The bounds are generous (a tenth of a second per MiB is ~100x the measured figure), so a slow CI
machine passes, while the quadratic-constant behaviour they guard against fails by orders of magnitude.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.bitstream.escaping import escape_rbsp, has_canonical_escaping, unescape_rbsp_if_needed
from runner.e2ee import DecryptionError, decrypt_frame, derive_key
from runner.e2ee.frame import MAX_FRAME_BYTES

KEY = derive_key("bounds")
MIB = 1024 * 1024
SLICE = b"\x00\x00\x00\x01\x65\x88"  # a start code and an IDR slice's first two bytes: the clear header
SECONDS_PER_MIB = 0.1
MEMORY_PER_INPUT_BYTE = 4  # peak traced allocation per byte of input


def measured(run: Callable[[], object]) -> tuple[float, int]:
    """(seconds, peak traced bytes) of ``run()``, which must raise DecryptionError."""
    tracemalloc.start()
    try:
        started = time.perf_counter()
        with pytest.raises(DecryptionError) as raised:
            run()
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"{raised.value}: {elapsed * 1000:.1f} ms, peak {peak / MIB:.1f} MiB")
    return elapsed, peak


@pytest.mark.parametrize(("what", "body"), [
    ("all zeros", bytes(4 * MIB)),
    ("zeros with a 01 every 3 bytes", b"\x00\x00\x01" * (4 * MIB // 3)),
    ("zeros with a 02 every 3 bytes", b"\x00\x00\x02" * (4 * MIB // 3)),
])
def test_zero_heavy_frames_with_broken_escaping_are_rejected_in_linear_time_and_memory(what: str,
                                                                                       body: bytes) -> None:
    frame = SLICE + body
    elapsed, peak = measured(lambda: decrypt_frame(frame, KEY, codec="h264"))
    assert elapsed < SECONDS_PER_MIB * len(frame) / MIB, f"{what}: {elapsed:.2f} s"
    assert peak < MEMORY_PER_INPUT_BYTE * len(frame), f"{what}: peak {peak / MIB:.0f} MiB"


def test_zero_heavy_frames_with_valid_escaping_fail_authentication_in_linear_time_and_memory() -> None:
    # Every 00 00 escaped as an encoder would (00 00 01 -> 00 00 03 01): a million escape bytes.
    frame = SLICE + b"\x00\x00\x03\x01" * MIB + b"\x80" * 28 + b"\x0c\x00"
    elapsed, peak = measured(lambda: decrypt_frame(frame, KEY, codec="h264"))
    assert elapsed < SECONDS_PER_MIB * len(frame) / MIB, f"{elapsed:.2f} s"
    assert peak < MEMORY_PER_INPUT_BYTE * len(frame), f"peak {peak / MIB:.0f} MiB"


def test_a_frame_over_the_size_bound_is_rejected_before_any_work() -> None:
    frame = SLICE + bytes(MAX_FRAME_BYTES)
    with pytest.raises(DecryptionError, match=rf"^frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}$"):
        decrypt_frame(frame, KEY, codec="h264")
    elapsed, peak = measured(lambda: decrypt_frame(frame, KEY, codec="h264"))
    assert elapsed < SECONDS_PER_MIB and peak < MIB  # not even a copy of it


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=24).map(lambda b: bytes(x % 5 for x in b)), st.integers(0, 4))
def test_canonical_escaping_means_what_an_encoder_writes(data: bytes, start: int) -> None:
    """The linear check equals the definition: unescaping, then escaping again gives the same bytes
    (the receiver's unescaping, quirk included; bytes 00..04 only, where escaping happens)."""
    start = min(start, len(data))
    expected = escape_rbsp(unescape_rbsp_if_needed(data, start), start) == data
    assert has_canonical_escaping(data, start) is expected
