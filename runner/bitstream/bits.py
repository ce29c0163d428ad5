"""Bits of an H.264/H.265 RBSP, MSB first: fixed-width fields and Exp-Golomb numbers (ITU-T H.264 9.1).

Pure code over bytes whose emulation prevention is already removed (``runner.bitstream.escaping``).
"""

from __future__ import annotations

MAX_EXP_GOLOMB_ZEROS = 31
"""Leading zeros of the longest ue(v) the standard allows (a 32-bit value)."""


class BitReader:
    """MSB-first bits of an RBSP (emulation prevention already removed)."""

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._total = 8 * len(data)
        self.pos = 0

    def u(self, count: int) -> int:
        """An unsigned ``count``-bit field; ValueError when the data ends first."""
        if self.pos + count > self._total:
            raise ValueError("H.264 header ends early")
        self.pos += count
        return (self._value >> (self._total - self.pos)) & ((1 << count) - 1)

    def ue(self) -> int:
        """An unsigned Exp-Golomb number, ue(v)."""
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > MAX_EXP_GOLOMB_ZEROS:
                raise ValueError("H.264 Exp-Golomb number too long")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        """A signed Exp-Golomb number, se(v): 1, -1, 2, -2, ... for codes 1, 2, 3, 4, ..."""
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


class BitWriter:
    """MSB-first bits for an RBSP; ``rbsp()`` adds the trailing bits."""

    def __init__(self) -> None:
        self._value = 0
        self._bits = 0

    def u(self, count: int, value: int) -> None:
        self._value = (self._value << count) | (value & ((1 << count) - 1))
        self._bits += count

    def ue(self, value: int) -> None:
        code = value + 1
        length = code.bit_length()
        self.u(2 * length - 1, code)  # length - 1 zeros, then the number itself

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def rbsp(self) -> bytes:
        """The bits with rbsp_trailing_bits (a stop bit, then zeros to a byte boundary)."""
        self.u(1, 1)
        pad = -self._bits % 8
        value, bits = self._value << pad, self._bits + pad
        return value.to_bytes(bits // 8, "big")
