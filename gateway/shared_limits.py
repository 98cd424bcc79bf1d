"""Rate-limit buckets in Redis, so that every replica enforces one limit per caller lineage.

The bucket is the in-process ``TokenBuckets`` arithmetic run as one Lua script (atomic in
Redis, one round trip per request) on Redis's own clock, so replicas' clocks do not matter.
Chosen over the ``limits`` package, which has no token bucket and costs as much
(``benchmarks/ratelimit_redis.py``).

When Redis cannot be reached, requests are decided by in-process buckets with the same
settings: the limit degrades to one per replica (as without ``storage_url``) instead of
refusing every caller or letting everyone through. A warning is logged once per outage,
``fallbacks`` counts the requests decided locally, and Redis is tried again after
``RETRY_AFTER_FAILURE_S``, so an unreachable Redis costs a request at most one timeout.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from tokengate.gateway.ratelimit import TokenBuckets

log = logging.getLogger("tokengate.ratelimit")

KEY_PREFIX = "tokengate:rate:"
# Redis must answer a bucket decision within this, else the request is decided locally.
REDIS_TIMEOUT_S = 0.25
RETRY_AFTER_FAILURE_S = 1.0

# KEYS[1]: the bucket; ARGV: rate per second, burst. Returns the wait in seconds as a string
# ("0": go on). A bucket untouched for burst/rate seconds is full again, the same as a
# missing one, so it expires then.
_BUCKET_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(saved[1])
if tokens == nil then
  tokens = burst
else
  local elapsed = math.max(0, now - tonumber(saved[2]))
  tokens = math.min(burst, tokens + elapsed * rate)
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'updated',
  string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return string.format('%.17g', wait)
"""


def redis_client(url: str, *, timeout_s: float = REDIS_TIMEOUT_S) -> aioredis.Redis:
    """A client that fails fast: no retries, short connect and read timeouts."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


class RedisBuckets:
    """``rate_per_s`` sustained and ``burst`` at once per caller, shared by every replica
    using the same Redis; in-process buckets while Redis is unreachable."""

    def __init__(
        self,
        client: aioredis.Redis,
        rate_per_s: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_local_decision: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._on_local_decision = on_local_decision
        self._script = client.register_script(_BUCKET_SCRIPT)
        self._rate = repr(float(rate_per_s))
        self._burst = str(burst)
        self._local = TokenBuckets(rate_per_s, burst, clock=clock)
        self._clock = clock
        self._down_until: float | None = None
        # Requests decided by the local buckets because Redis failed (for metrics).
        self.fallbacks = 0

    @property
    def shared(self) -> bool:
        """False while decisions are local because Redis failed."""
        return self._down_until is None

    async def check(self, caller: str) -> float | None:
        if self._down_until is not None and self._clock() < self._down_until:
            return self._decide_locally(caller)
        try:
            raw = await self._script(keys=[KEY_PREFIX + caller], args=[self._rate, self._burst])
            wait = float(raw)
        except (RedisError, OSError, ValueError) as exc:
            if self._down_until is None:
                log.warning(
                    "rate limits: Redis unreachable (%s); limiting per replica until it is back",
                    type(exc).__name__,
                )
            self._down_until = self._clock() + RETRY_AFTER_FAILURE_S
            return self._decide_locally(caller)
        if self._down_until is not None:
            self._down_until = None
            log.warning("rate limits: Redis reachable again; limits shared across replicas")
        return wait if wait > 0 and math.isfinite(wait) else None

    def _decide_locally(self, caller: str) -> float | None:
        self.fallbacks += 1
        if self._on_local_decision is not None:
            self._on_local_decision()
        return self._local.acquire(caller)

    async def aclose(self) -> None:
        await self._client.aclose()
