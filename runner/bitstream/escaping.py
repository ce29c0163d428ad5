"""Emulation prevention (ITU-T H.264 7.4.1, H.265 7.4.2): the ``03`` bytes that keep start codes out of a NALU.

An encoder escapes every ``00 00 0x`` with ``x <= 3`` as ``00 00 03 0x``; a decoder removes
``00 00 03`` -> ``00 00``. One copy for the whole runner: the E2EE frame format escapes
everything after the clear header with it (livekit-client's ``writeRbsp`` / ``parseRbsp`` /
``needsRbspUnescaping`` applied to ``data[start:]``), and ``runner.media.h264`` with it reads
and rewrites slice headers. The functions visit only the ``00 00`` pairs (about one per 64 KiB
of ciphertext), found by a vectorised scan, instead of looping over bytes. ``start`` lets a
caller escape a whole frame after its header without copying the body out first."""

from __future__ import annotations

import numpy as np

from runner.bitstream.annexb import (
    EMULATION_PREVENTION_BYTE,
    VECTOR_SCAN_MIN_BYTES,
    emulation_prevention_offsets,
    zero_pair_offsets,
)

_ESCAPE = bytes((EMULATION_PREVENTION_BYTE,))
_ESCAPED_SEQUENCE_LENGTH = 3
SPARSE_ESCAPES = 64
"""Fewer escapes than one per this many bytes are cut out slice by slice; more, with a mask."""


def escape_rbsp(data: bytes, start: int = 0) -> bytes:
    """Insert an emulation prevention byte after every ``00 00`` that precedes a byte <= 0x03.

    Only ``data[start:]`` is escaped (zero counting starts there); ``data[:start]`` is kept as is.
    Counting restarts after each inserted byte, so ``00 00 00 00`` becomes ``00 00 03 00 00``.
    Returns ``data`` itself when nothing needs escaping.
    """
    size = len(data)
    view = memoryview(data)  # slices of a view are not copies; join copies once
    pieces: list[memoryview | bytes] = []
    flushed = 0
    # Zeros before `counted_from` do not count: escaping restarted the count there.
    counted_from = start
    for pair in zero_pair_offsets(data):
        if pair < counted_from or pair + 2 >= size:
            continue
        if data[pair + 2] <= EMULATION_PREVENTION_BYTE:
            pieces.append(view[flushed : pair + 2])
            pieces.append(_ESCAPE)
            flushed = counted_from = pair + 2
    if not pieces:
        return data
    pieces.append(view[flushed:])
    return b"".join(pieces)


def _escape_bytes(data: bytes, start: int) -> np.ndarray:
    """A mask over ``data``: True at the ``03`` of every ``00 00 03`` that starts in ``data[start:]``."""
    body = np.frombuffer(data, np.uint8)
    mask = np.zeros(len(body), dtype=bool)
    if len(body) < _ESCAPED_SEQUENCE_LENGTH:
        return mask
    if len(data) < VECTOR_SCAN_MIN_BYTES:
        offsets = [offset for offset in emulation_prevention_offsets(data) if offset >= start]
        mask[np.array(offsets, dtype=np.int64) + 2] = True
        return mask
    hits = mask[2:]  # in place, so the peak is two boolean arrays however dense the zeros
    np.equal(body[2:], EMULATION_PREVENTION_BYTE, out=hits)
    hits &= body[:-2] == 0
    hits &= body[1:-1] == 0
    hits[:start] = False
    return mask


def needs_unescaping(data: bytes, start: int = 0) -> bool:
    """True when ``00 00 03`` starts in ``data[start:]`` before its last 3 bytes (the JS check
    ignores one that ends the data)."""
    mask = _escape_bytes(data, start)
    return bool(mask.any()) and int(mask.argmax()) + 1 < len(data)


def unescape_rbsp(data: bytes, start: int = 0) -> bytes:
    """Remove every emulation prevention byte of ``data[start:]``: ``00 00 03`` -> ``00 00``.

    The JS scan removes them left to right; occurrences of ``00 00 03`` cannot overlap, so that is
    every occurrence. Returns ``data`` itself when there is none.
    """
    return _remove_escapes(data, _escape_bytes(data, start))


def unescape_rbsp_if_needed(data: bytes, start: int = 0) -> bytes:
    """What the JS receiver does: :func:`unescape_rbsp` only when :func:`needs_unescaping`.

    The two differ only when the single ``00 00 03`` is the last 3 bytes (then kept as is).
    """
    mask = _escape_bytes(data, start)
    if not mask.any() or int(mask.argmax()) + 1 >= len(data):
        return data
    return _remove_escapes(data, mask)


def has_canonical_escaping(data: bytes, start: int = 0) -> bool:
    """Whether ``data[start:]`` is exactly what :func:`escape_rbsp` writes, i.e.
    ``escape_rbsp(unescape_rbsp_if_needed(data, start), start) == data``, checked in one linear,
    vectorised pass without building either (time and memory linear in the input).

    Escaped data never holds ``00 00`` followed by 00, 01 or 02, and every ``00 00 03`` in it is an
    inserted byte, so a byte <= 03 follows it (the one that needed escaping). Zeros never count
    across a non-zero byte, so these local rules are the whole condition.
    """
    body = np.frombuffer(data, np.uint8)[start:]
    size = len(body)
    if size < _ESCAPED_SEQUENCE_LENGTH:
        return True
    pair = body[:-2] == 0  # 00 00 with a byte after it; in place from here
    pair &= body[1:-1] == 0
    third = body[2:]
    if np.any(pair & (third < EMULATION_PREVENTION_BYTE)):
        return False
    pair &= third == EMULATION_PREVENTION_BYTE  # now: where an escape byte is
    if pair[-1]:  # an escape byte that ends the data escapes nothing
        return False
    pair[:-1] &= body[3:] > EMULATION_PREVENTION_BYTE  # an escape byte before a byte it need not escape
    return not bool(pair.any())


def _remove_escapes(data: bytes, mask: np.ndarray) -> bytes:
    """``data`` without the bytes ``mask`` marks (it marks at least one)."""
    count = int(np.count_nonzero(mask))
    if count * SPARSE_ESCAPES > len(data):
        # Dense escapes (zero-heavy data): one mask instead of a slice per escape, which cost
        # ~200 bytes each (measured: 490 MiB for a 4 MiB frame of 00 00 03 runs).
        np.logical_not(mask, out=mask)
        kept: bytes = np.frombuffer(data, np.uint8)[mask].tobytes()
        return kept
    view = memoryview(data)
    pieces: list[memoryview] = []
    previous = 0
    for escape in np.flatnonzero(mask).tolist():
        pieces.append(view[previous:escape])
        previous = escape + 1
    pieces.append(view[previous:])
    return b"".join(pieces)
