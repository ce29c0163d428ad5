"""Rate limits and the counters of what was dropped: token buckets per identity, rejections by
reason (logged at most once per interval per reason)."""

from __future__ import annotations

import time
from collections import Counter, OrderedDict

from runner.logs import get_logger

log = get_logger(__name__)

MAX_RATE_BUCKETS = 256
REJECT_LOG_INTERVAL_S = 1.0


class TokenBucket:
    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.last = rate, burst, burst, time.monotonic()

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Buckets:
    """One token bucket per identity, the least recently used forgotten past MAX_RATE_BUCKETS."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, identity: str) -> bool:
        bucket = self._buckets.get(identity)
        if bucket is None:
            bucket = self._buckets[identity] = TokenBucket(self.rate, self.burst)
            while len(self._buckets) > MAX_RATE_BUCKETS:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(identity)
        return bucket.take(time.monotonic())

    def set_rate(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        for bucket in self._buckets.values():
            bucket.rate, bucket.burst = rate, burst

    def forget(self, identity: str) -> None:
        self._buckets.pop(identity, None)


class Rejections:
    """Counts dropped messages by reason; logs each reason at most once per interval."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._unlogged: Counter[str] = Counter()
        self._logged_at: dict[str, float] = {}

    def add(self, reason: str, identity: str | None, detail: str = "") -> None:
        self.counts[reason] += 1
        self._unlogged[reason] += 1
        now = time.monotonic()
        if now - self._logged_at.get(reason, -1e9) >= REJECT_LOG_INTERVAL_S:
            self._logged_at[reason] = now
            log.warning("input_rejected", reason=reason, sender=identity, count=self._unlogged.pop(reason),
                        detail=detail or None)
