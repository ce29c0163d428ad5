"""Emulation prevention (ITU-T H.264 7.4.1, H.265 7.4.2): the ``03`` bytes that keep start codes out of a NALU.

An encoder escapes every ``00 00 0x`` with ``x <= 3`` as ``00 00 03 0x``; a decoder removes
``00 00 03`` -> ``00 00``. One copy for the whole runner: the E2EE frame format escapes
everything after the clear header with it (livekit-client's ``writeRbsp`` / ``parseRbsp`` /
``needsRbspUnescaping`` applied to ``data[start:]``), and ``runner.media.h264`` with it reads
and rewrites slice headers. The functions visit only the ``00 00`` pairs (about one per 64 KiB
of ciphertext), found by a vectorised scan, instead of looping over bytes. ``start`` lets a
caller escape a whole frame after its header without copying the body out first."""

from __future__ import annotations

from runner.bitstream.annexb import (
    EMULATION_PREVENTION_BYTE,
    emulation_prevention_offsets,
    zero_pair_offsets,
)

_ESCAPE = bytes((EMULATION_PREVENTION_BYTE,))
_ESCAPED_SEQUENCE_LENGTH = 3


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


def _escapes_from(data: bytes, start: int) -> list[int]:
    return [offset for offset in emulation_prevention_offsets(data) if offset >= start]


def needs_unescaping(data: bytes, start: int = 0) -> bool:
    """True when ``00 00 03`` starts in ``data[start:]`` before its last 3 bytes (the JS check
    ignores one that ends the data)."""
    offsets = _escapes_from(data, start)
    return bool(offsets) and offsets[0] + _ESCAPED_SEQUENCE_LENGTH < len(data)


def unescape_rbsp(data: bytes, start: int = 0) -> bytes:
    """Remove every emulation prevention byte of ``data[start:]``: ``00 00 03`` -> ``00 00``.

    The JS scan removes them left to right; occurrences of ``00 00 03`` cannot overlap, so that is
    every occurrence. Returns ``data`` itself when there is none.
    """
    return _remove_escapes(data, _escapes_from(data, start))


def unescape_rbsp_if_needed(data: bytes, start: int = 0) -> bytes:
    """What the JS receiver does: :func:`unescape_rbsp` only when :func:`needs_unescaping`.

    The two differ only when the single ``00 00 03`` is the last 3 bytes (then kept as is).
    """
    offsets = _escapes_from(data, start)
    if not offsets or offsets[0] + _ESCAPED_SEQUENCE_LENGTH >= len(data):
        return data
    return _remove_escapes(data, offsets)


def _remove_escapes(data: bytes, offsets: list[int]) -> bytes:
    if not offsets:
        return data
    view = memoryview(data)
    pieces: list[memoryview] = []
    previous = 0
    for offset in offsets:
        pieces.append(view[previous : offset + 2])
        previous = offset + _ESCAPED_SEQUENCE_LENGTH
    pieces.append(view[previous:])
    return b"".join(pieces)
