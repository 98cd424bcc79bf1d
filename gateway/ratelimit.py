"""Per-caller rate limiting: a token bucket per internal token, in process memory.

Several replicas each keep their own buckets here, so the effective limit is per replica;
``[limits] storage_url`` puts the same buckets in Redis instead (``shared_limits``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class RateLimiter(Protocol):
    async def check(self, caller: str) -> float | None:
        """None when the call may proceed, else the seconds to wait before retrying."""
        ...


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """``rate_per_s`` sustained, ``burst`` at once; LRU-bounded number of tracked callers."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        max_callers: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate = rate_per_s
        self.burst = burst
        self.max_callers = max_callers
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    async def check(self, caller: str) -> float | None:
        return self.acquire(caller)

    def acquire(self, caller: str) -> float | None:
        now = self._clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated=now)
            self._buckets[caller] = bucket
            if len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(caller)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return (1 - bucket.tokens) / self.rate
