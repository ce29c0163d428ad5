"""The PCM format both directions use: 48 kHz, signed 16-bit little-endian, 10 ms frames.

48 kHz is Opus's own rate, so neither the SDK nor the browser resamples; 10 ms is the frame size
WebRTC's audio pipeline works in, so a frame is handed to the SDK as it will be encoded.
"""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATE = 48_000
BYTES_PER_SAMPLE = 2  # s16le
FRAME_MS = 10
SAMPLES_PER_FRAME = SAMPLE_RATE * FRAME_MS // 1000  # per channel: 480


@dataclass(frozen=True)
class PcmFormat:
    """Interleaved s16le at ``SAMPLE_RATE`` with ``channels`` channels."""

    channels: int

    @property
    def frame_bytes(self) -> int:
        """Bytes in one ``FRAME_MS`` frame: 1920 for stereo."""
        return SAMPLES_PER_FRAME * self.channels * BYTES_PER_SAMPLE

    @property
    def bytes_per_second(self) -> int:
        return SAMPLE_RATE * self.channels * BYTES_PER_SAMPLE


DESKTOP = PcmFormat(channels=2)  # desktop audio: stereo, as the sink plays it
MICROPHONE = PcmFormat(channels=1)  # a viewer's microphone: mono, as browsers capture it
