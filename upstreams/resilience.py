"""Traffic shaping around any source: retries, a circuit breaker and a bulkhead.

``ResilientSource`` wraps a ``TokenSource`` and is one itself, so adapters stay plain.
- Retries only idempotent calls (list, get, and revoke where the upstream documents it as
  idempotent), only for connection errors, 429, 502, 503 and 504, with jittered
  exponential backoff that honours Retry-After, and only inside the caller's deadline
  (the service's per-source timeout). Creates and updates are never retried.
- The breaker opens after ``failure_threshold`` consecutive failures, fails fast while
  open, lets one probe through after ``reset_after_s`` (half-open), and closes on success.
- Only the upstream's own trouble is a failure: connection errors, timeouts, 5xx, 401/403
  (the gateway's credential refused), 408, 429 and unusable answers. What the caller's
  input caused never is (an ``InvalidInput``/``InvalidCursor``/``NotFound``/``Forbidden``,
  or any other 4xx answer): else one caller's bad requests would cut the source off for
  everyone. Such an outcome proves nothing about the upstream, so it neither resets the
  failure count nor closes a half-open breaker; it only frees the probe.
- The bulkhead caps concurrent calls per source; callers wait for a slot within the deadline.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tokengate.upstreams import errors
from tokengate.upstreams.base import TokenSource
from tokengate.upstreams.model import (
    Capabilities,
    Created,
    CreateSpec,
    PageRequest,
    Provider,
    SourcePage,
    Token,
    UpdateSpec,
)
from tokengate.upstreams.secret_lookup import (
    OwnCredentialAware,
    SecretLookup,
    SecretSearch,
    SecretSearchable,
    lookup_kind,
)

log = logging.getLogger("tokengate.resilience")
T = TypeVar("T")
RETRYABLE_STATUSES = frozenset({502, 503, 504})
# 4xx answers that say the upstream is refusing the gateway itself, or is overloaded.
FAILING_CLIENT_STATUSES = frozenset({401, 403, 408, 429})
# Upstreams whose revoke the provider documents as idempotent (OAuth-style: always 204).
IDEMPOTENT_REVOKE = frozenset({Provider.OAUTH})


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    retries: int = 2
    max_concurrency: int = 20
    failure_threshold: int = 5
    reset_after_s: float = 15.0
    backoff_base_s: float = 0.05
    backoff_max_s: float = 1.0


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        key: str,
        threshold: int,
        reset_after_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, BreakerState], None] | None = None,
    ) -> None:
        self.key = key
        # Told (source key, new state) when the breaker opens or closes (the gateway's metrics).
        self.on_change = on_change
        self.threshold = threshold
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.reset_after_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def health(self) -> str:
        """``ok``, ``degraded`` (failing or probing) or ``down`` (open), as /readyz shows."""
        state = self.state
        if state is BreakerState.OPEN:
            return "down"
        if state is BreakerState.HALF_OPEN or self._failures > 0:
            return "degraded"
        return "ok"

    def allow(self) -> bool:
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        if self._opened_at is not None:
            log.info("circuit for source %s closed", self.key)
            if self.on_change is not None:
                self.on_change(self.key, BreakerState.CLOSED)
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def neutral(self) -> None:
        """A call that says nothing about the upstream's health: only free the probe."""
        self._probing = False

    def failure(self) -> None:
        self._failures += 1
        was_probing, self._probing = self._probing, False
        if was_probing or (self._opened_at is None and self._failures >= self.threshold):
            self._opened_at = self._clock()
            log.warning(
                "circuit for source %s opened after %d failure(s)", self.key, self._failures
            )
            if self.on_change is not None:
                self.on_change(self.key, BreakerState.OPEN)


def retryable(exc: errors.UpstreamError) -> bool:
    if isinstance(exc, errors.UpstreamRateLimited):
        return True
    if isinstance(exc, errors.UpstreamUnavailable):
        return exc.status is None or exc.status in RETRYABLE_STATUSES
    return False


def counts_as_failure(exc: BaseException) -> bool:
    """Upstream trouble trips the breaker; a caller's mistake (not found, bad input, an
    upstream 4xx other than ``FAILING_CLIENT_STATUSES``) does not (see the module)."""
    if isinstance(exc, TimeoutError):
        return True
    if not isinstance(exc, errors.UpstreamError):
        return False
    if isinstance(
        exc, (errors.UpstreamTimeout, errors.UpstreamUnauthorized, errors.UpstreamRateLimited)
    ):
        return True
    status = exc.status
    return status is None or not 400 <= status < 500 or status in FAILING_CLIENT_STATUSES


class ResilientSource:
    """A ``TokenSource`` that adds retries, a breaker and a bulkhead to another one."""

    def __init__(
        self,
        inner: TokenSource,
        policy: TrafficPolicy,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        on_breaker: Callable[[str, BreakerState], None] | None = None,
    ) -> None:
        self.inner = inner
        self.policy = policy
        self.breaker = CircuitBreaker(
            inner.key, policy.failure_threshold, policy.reset_after_s, on_change=on_breaker
        )
        self._slots = asyncio.Semaphore(policy.max_concurrency)
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret

    @property
    def key(self) -> str:
        return self.inner.key

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def provider(self) -> Provider:
        return self.inner.provider

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    @property
    def health(self) -> str:
        return self.breaker.health

    def owner_in_id(self, local_id: str) -> str | None:
        return self.inner.owner_in_id(local_id)

    async def list_page(self, request: PageRequest) -> SourcePage:
        return await self._run(lambda: self.inner.list_page(request), idempotent=True)

    async def get_many(self, local_ids: Sequence[str]) -> dict[str, Token]:
        return await self._run(lambda: self.inner.get_many(local_ids), idempotent=True)

    async def create(self, spec: CreateSpec) -> Created:
        return await self._run(lambda: self.inner.create(spec), idempotent=False)

    async def update(self, local_id: str, spec: UpdateSpec) -> Token:
        return await self._run(lambda: self.inner.update(local_id, spec), idempotent=False)

    async def revoke(self, local_id: str) -> None:
        idempotent = self.inner.provider in IDEMPOTENT_REVOKE
        await self._run(lambda: self.inner.revoke(local_id), idempotent=idempotent)

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def secret_lookup(self) -> SecretLookup:
        return lookup_kind(self.inner)

    async def find_secret(self, secret: str, *, max_pages: int) -> SecretSearch:
        inner = self.inner
        if not isinstance(inner, SecretSearchable):
            raise errors.Unsupported(f"source {self.key!r} cannot look up secrets")
        return await self._run(
            lambda: inner.find_secret(secret, max_pages=max_pages), idempotent=True
        )

    async def own_credentials(self, tokens: Sequence[Token]) -> set[str]:
        inner = self.inner
        if not isinstance(inner, OwnCredentialAware):
            return set()
        return await self._run(lambda: inner.own_credentials(tokens), idempotent=True)

    async def _run(self, call: Callable[[], Awaitable[T]], *, idempotent: bool) -> T:
        attempts = 1 + (self.policy.retries if idempotent else 0)
        for attempt in range(1, attempts + 1):
            if not self.breaker.allow():
                raise errors.UpstreamUnavailable(
                    self.key, f"source {self.key!r} is failing; calls are paused (circuit open)"
                )
            try:
                async with self._slots:
                    result = await call()
            except asyncio.CancelledError:
                # The caller's deadline ran out mid-call: for the breaker, a hang is a failure.
                self.breaker.failure()
                raise
            except Exception as exc:
                if counts_as_failure(exc):
                    self.breaker.failure()
                else:
                    self.breaker.neutral()
                if (
                    attempt == attempts
                    or not isinstance(exc, errors.UpstreamError)
                    or not retryable(exc)
                ):
                    raise
                await self._sleep(self._backoff(attempt, exc))
                continue
            self.breaker.success()
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int, exc: errors.UpstreamError) -> float:
        if isinstance(exc, errors.UpstreamRateLimited) and exc.retry_after_s:
            return min(exc.retry_after_s, 30.0)
        ceiling = min(self.policy.backoff_max_s, self.policy.backoff_base_s * 2 ** (attempt - 1))
        return self._rng.uniform(0, ceiling)  # full jitter
