"""Pure decisions of the audio path: cutting a byte stream into frames, bounding the backlog
between the capture thread and the SDK, and when an audio server outage is worth a log line.

No I/O, no threads, no clock of its own: the caller passes ``now`` (seconds, monotonic), so every
decision is tested with literal inputs (tests/test_audio_pacing.py).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


class FrameSlicer:
    """Bytes as they arrive from a pipe -> whole frames of ``frame_bytes``; the rest waits for
    the next ``push``. A pipe read may end anywhere, even inside a sample."""

    def __init__(self, frame_bytes: int) -> None:
        if frame_bytes <= 0:
            raise ValueError("frame_bytes must be positive")
        self.frame_bytes = frame_bytes
        self._pending = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        self._pending += data
        whole = len(self._pending) // self.frame_bytes * self.frame_bytes
        if whole == 0:
            return []
        frames = [bytes(self._pending[i:i + self.frame_bytes]) for i in range(0, whole, self.frame_bytes)]
        del self._pending[:whole]
        return frames

    def reset(self) -> None:
        """Forget a partial frame (the stream it belonged to ended)."""
        self._pending.clear()


class Backlog:
    """Frames waiting for the SDK, at most ``max_frames``: when the consumer falls behind (a busy
    event loop), the oldest frames go. Sound that arrives late is worth less than sound that
    arrives now: a backlog kept would be latency kept for the rest of the session."""

    def __init__(self, max_frames: int) -> None:
        if max_frames <= 0:
            raise ValueError("max_frames must be positive")
        self.max_frames = max_frames
        self._frames: deque[bytes] = deque()
        self.dropped = 0

    def put(self, frame: bytes) -> int:
        """Queue ``frame``; returns how many old frames were dropped to make room (0 or 1)."""
        self._frames.append(frame)
        if len(self._frames) > self.max_frames:
            self._frames.popleft()
            self.dropped += 1
            return 1
        return 0

    def take(self) -> bytes | None:
        return self._frames.popleft() if self._frames else None

    def clear(self) -> None:
        self._frames.clear()

    def __len__(self) -> int:
        return len(self._frames)


@dataclass
class Outage:
    """The audio server's availability, as the capture loop sees it: one ``lost`` log line per
    outage (not one per retry), one ``resumed`` line when sound flows again, and the delay before
    the next attempt (doubling from ``initial_s`` to ``cap_s``; reset once sound flowed)."""

    initial_s: float = 0.5
    cap_s: float = 5.0
    down: bool = False
    attempts: int = 0
    since: float | None = field(default=None)

    def failed(self, now: float) -> tuple[bool, float]:
        """An attempt failed (no server, or the stream ended): (log it?, retry in seconds)."""
        first = not self.down
        if first:
            self.down, self.since, self.attempts = True, now, 0
        delay = min(self.cap_s, self.initial_s * 2.0 ** min(self.attempts, 16))
        self.attempts += 1
        return first, delay

    def flowing(self, now: float) -> float | None:
        """Sound arrived: the outage's length in seconds if one just ended (log it), else None."""
        if not self.down:
            return None
        since = self.since if self.since is not None else now
        self.down, self.since, self.attempts = False, None, 0
        return now - since


class LagGuard:
    """How far the reader is behind the audio it reads, from the audio's own clock: after the
    first frame at ``start``, ``frames`` frames of ``frame_s`` each should have taken as long to
    arrive as they last. When the reader falls behind (a starved process), the audio server
    buffers the rest for it, without bound; the reader sees no error, only sound that arrives
    later and later. ``behind`` says when that lag passed ``max_lag_s``: then the stream is
    restarted, which drops what the server kept. A device clock a little faster than ours makes
    the lag negative: the baseline moves with it."""

    def __init__(self, frame_s: float, max_lag_s: float) -> None:
        self.frame_s = frame_s
        self.max_lag_s = max_lag_s
        self._start: float | None = None
        self._frames = 0

    def reset(self) -> None:
        self._start, self._frames = None, 0

    def lag(self, now: float, frames: int) -> float:
        """Count ``frames`` more frames read at ``now``; the lag in seconds after them."""
        if self._start is None:
            self._start, self._frames = now, 0
            return 0.0
        self._frames += frames
        lag = (now - self._start) - self._frames * self.frame_s
        if lag < 0:
            self._start += lag  # re-baseline: we cannot be ahead of the audio
            lag = 0.0
        return lag

    def behind(self, now: float, frames: int) -> bool:
        return self.lag(now, frames) > self.max_lag_s
