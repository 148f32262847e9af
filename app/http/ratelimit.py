"""Per-origin rate limiting: a token bucket per verified origin, with the clock passed in.

A simpler stand-in for Synapse's ``rc_federation`` (window_size / sleep_limit / reject_limit /
concurrent): each origin may send ``burst_count`` requests at once and ``per_second`` on average;
past that, requests are refused with 429 ``M_LIMIT_EXCEEDED`` (CS §Rate limiting) instead of
being queued. Pure: no I/O, no wall clock.
"""

import math
from dataclasses import dataclass

# Memory stays bounded whatever the number of origins: past this, full buckets (origins that
# have been quiet long enough to be back at burst) are forgotten, since a new bucket is full too.
MAX_TRACKED_ORIGINS = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated_ms: int


class RateLimiter:
    def __init__(self, per_second: float, burst_count: int):
        if per_second <= 0 or burst_count < 1:
            raise ValueError("per_second must be positive and burst_count at least 1")
        self.per_second = per_second
        self.burst_count = burst_count
        self._buckets: dict[str, _Bucket] = {}

    def _refill(self, bucket: _Bucket, now_ms: int) -> None:
        elapsed_ms = max(0, now_ms - bucket.updated_ms)
        bucket.tokens = min(self.burst_count, bucket.tokens + elapsed_ms * self.per_second / 1000)
        bucket.updated_ms = max(bucket.updated_ms, now_ms)

    def check(self, key: str, now_ms: int) -> int | None:
        """Take one token for ``key``: None if allowed, else how many ms until one is free."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED_ORIGINS:
                self._forget_full_buckets(now_ms)
            bucket = self._buckets[key] = _Bucket(float(self.burst_count), now_ms)
        else:
            self._refill(bucket, now_ms)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return max(1, math.ceil((1 - bucket.tokens) * 1000 / self.per_second))

    def _forget_full_buckets(self, now_ms: int) -> None:
        for key, bucket in list(self._buckets.items()):
            self._refill(bucket, now_ms)
            if bucket.tokens >= self.burst_count:
                del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
