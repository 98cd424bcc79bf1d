"""Retries, breaker and bulkhead around a scripted fake source (no network: pure policy)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tokengate.upstreams import errors
from tokengate.upstreams.model import (
    Capabilities,
    Created,
    CreateSpec,
    PageRequest,
    Provider,
    SourcePage,
    Token,
    TokenFilter,
    TokenOrder,
    UpdateSpec,
)
from tokengate.upstreams.resilience import (
    BreakerState,
    CircuitBreaker,
    ResilientSource,
    TrafficPolicy,
)

PAGE = SourcePage(items=[], has_more=False, total_count=0)
REQUEST = PageRequest(filter=TokenFilter(), order=TokenOrder(), limit=5)


class Scripted:
    """Answers each call with the next scripted outcome (an exception or a value)."""

    key = "fake"
    name = "Fake"
    capabilities = Capabilities()

    def __init__(self, outcomes: list[object], provider: Provider = Provider.LOSANT) -> None:
        self.outcomes = outcomes
        self.calls = 0
        self.provider = provider
        self.active = 0
        self.peak = 0

    async def _next(self) -> object:
        self.calls += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(0.001)
            outcome = self.outcomes.pop(0) if self.outcomes else PAGE
        finally:
            self.active -= 1
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def list_page(self, request: PageRequest) -> SourcePage:
        result = await self._next()
        assert isinstance(result, SourcePage)
        return result

    def owner_in_id(self, local_id: str) -> str | None:
        return None

    async def get_many(self, local_ids: Sequence[str]) -> dict[str, Token]:
        await self._next()
        return {}

    async def create(self, spec: CreateSpec) -> Created:
        await self._next()
        raise AssertionError("not scripted")

    async def update(self, local_id: str, spec: UpdateSpec) -> Token:
        await self._next()
        raise AssertionError("not scripted")

    async def revoke(self, local_id: str) -> None:
        await self._next()

    async def aclose(self) -> None:
        return None


def wrap(inner: Scripted, **policy: object) -> tuple[ResilientSource, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    return ResilientSource(inner, TrafficPolicy(**policy), sleep=sleep), slept  # type: ignore[arg-type]


def unavailable(status: int | None) -> errors.UpstreamUnavailable:
    return errors.UpstreamUnavailable("fake", "down", status=status)


@pytest.mark.parametrize("status", [None, 502, 503, 504])
async def test_retries_idempotent_reads_on_retryable_failures(status: int | None) -> None:
    inner = Scripted([unavailable(status), unavailable(status), PAGE])
    source, slept = wrap(inner, retries=2)
    assert await source.list_page(REQUEST) is PAGE
    assert inner.calls == 3 and len(slept) == 2
    assert all(0 <= s <= 1.0 for s in slept)


@pytest.mark.parametrize(
    "error",
    [
        unavailable(500),
        errors.UpstreamTimeout("fake", "slow"),
        errors.BadUpstreamResponse("fake", "junk"),
        errors.UpstreamUnauthorized("fake", "no"),
        errors.NotFound("gone"),
    ],
)
async def test_no_retry_for_other_failures(error: Exception) -> None:
    inner = Scripted([error, PAGE])
    source, _ = wrap(inner, retries=3)
    with pytest.raises(type(error)):
        await source.list_page(REQUEST)
    assert inner.calls == 1


async def test_retry_after_is_honoured() -> None:
    inner = Scripted([errors.UpstreamRateLimited("fake", "slow down", retry_after_s=2.5), PAGE])
    source, slept = wrap(inner, retries=1)
    await source.list_page(REQUEST)
    assert slept == [2.5]


async def test_writes_are_never_retried_and_revoke_only_where_idempotent() -> None:
    inner = Scripted([unavailable(503), PAGE])
    source, _ = wrap(inner, retries=3)
    with pytest.raises(errors.UpstreamUnavailable):
        await source.create(CreateSpec(name="x"))
    assert inner.calls == 1
    losant = Scripted([unavailable(503)], provider=Provider.LOSANT)
    with pytest.raises(errors.UpstreamUnavailable):
        await wrap(losant, retries=3)[0].revoke("a/b")
    assert losant.calls == 1
    oauth = Scripted([unavailable(503), None], provider=Provider.OAUTH)
    await wrap(oauth, retries=3)[0].revoke("u/t")
    assert oauth.calls == 2


async def test_breaker_opens_fails_fast_probes_and_closes() -> None:
    now = [0.0]
    inner = Scripted([unavailable(500)] * 3)
    source, _ = wrap(inner, retries=0, failure_threshold=3, reset_after_s=10)
    source.breaker = CircuitBreaker("fake", 3, 10, clock=lambda: now[0])
    for _ in range(3):
        with pytest.raises(errors.UpstreamUnavailable):
            await source.list_page(REQUEST)
    assert source.breaker.state is BreakerState.OPEN and source.health == "down"
    with pytest.raises(errors.UpstreamUnavailable, match="circuit open"):
        await source.list_page(REQUEST)
    assert inner.calls == 3, "an open breaker sends nothing upstream"
    now[0] = 11
    assert source.breaker.state is BreakerState.HALF_OPEN and source.health == "degraded"
    inner.outcomes = [unavailable(500)]
    with pytest.raises(errors.UpstreamUnavailable):
        await source.list_page(REQUEST)  # the probe fails: open again
    assert source.breaker.state is BreakerState.OPEN and inner.calls == 4
    now[0] = 22
    assert await source.list_page(REQUEST) is PAGE  # the probe succeeds: closed
    assert source.breaker.state is BreakerState.CLOSED and source.health == "ok"


async def test_caller_mistakes_do_not_trip_the_breaker() -> None:
    inner = Scripted([errors.NotFound("x")] * 10)
    source, _ = wrap(inner, failure_threshold=2)
    for _ in range(5):
        with pytest.raises(errors.NotFound):
            await source.get_many(["a"])
    assert source.breaker.state is BreakerState.CLOSED


@pytest.mark.parametrize(
    "error",
    [
        errors.InvalidInput("bad"),
        errors.InvalidCursor("forged"),
        errors.NotFound("gone"),
        errors.Forbidden("no"),
        errors.BadUpstreamResponse("fake", "refused the request", status=400),
        errors.BadUpstreamResponse("fake", "unexpected HTTP 404", status=404),
        errors.BadUpstreamResponse("fake", "unexpected HTTP 409", status=409),
        errors.BadUpstreamResponse("fake", "unexpected HTTP 422", status=422),
        errors.UpstreamUnavailable("fake", "kept changing", status=412),
    ],
    ids=lambda e: f"{type(e).__name__}-{getattr(e, 'status', None)}",
)
async def test_what_the_caller_caused_never_counts(error: Exception) -> None:
    inner = Scripted([error] * 10)
    source, _ = wrap(inner, failure_threshold=2)
    for _ in range(10):
        with pytest.raises(type(error)):
            await source.list_page(REQUEST)
    assert source.breaker.state is BreakerState.CLOSED and source.health == "ok"
    assert inner.calls == 10, "caller mistakes are never retried"


@pytest.mark.parametrize(
    "error",
    [
        unavailable(None),
        unavailable(500),
        errors.UpstreamTimeout("fake", "slow"),
        errors.UpstreamUnauthorized("fake", "refused", status=401),
        errors.UpstreamUnauthorized("fake", "refused", status=403),
        errors.UpstreamRateLimited("fake", "slow down"),
        errors.BadUpstreamResponse("fake", "junk"),
        errors.BadUpstreamResponse("fake", "unexpected HTTP 408", status=408),
        errors.BadUpstreamResponse("fake", "unexpected HTTP 302", status=302),
        TimeoutError(),
    ],
    ids=lambda e: f"{type(e).__name__}-{getattr(e, 'status', None)}",
)
async def test_upstream_trouble_counts(error: Exception) -> None:
    inner = Scripted([error] * 2)
    source, _ = wrap(inner, retries=0, failure_threshold=2)
    for _ in range(2):
        with pytest.raises(type(error)):
            await source.list_page(REQUEST)
    assert source.breaker.state is BreakerState.OPEN


async def test_a_caller_mistake_neither_closes_a_half_open_breaker_nor_holds_its_probe() -> None:
    now = [0.0]
    inner = Scripted([unavailable(500)] * 2)
    source, _ = wrap(inner, retries=0, failure_threshold=2, reset_after_s=10)
    source.breaker = CircuitBreaker("fake", 2, 10, clock=lambda: now[0])
    for _ in range(2):
        with pytest.raises(errors.UpstreamUnavailable):
            await source.list_page(REQUEST)
    now[0] = 11
    assert source.breaker.state is BreakerState.HALF_OPEN
    inner.outcomes = [errors.InvalidCursor("forged"), errors.NotFound("x")]
    with pytest.raises(errors.InvalidCursor):
        await source.list_page(REQUEST)  # proves nothing about the upstream
    assert source.breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(errors.NotFound):
        await source.get_many(["a"])  # the probe was freed: the next call may probe
    assert source.breaker.state is BreakerState.HALF_OPEN
    assert await source.list_page(REQUEST) is PAGE
    assert source.breaker.state is BreakerState.CLOSED


async def test_bulkhead_caps_concurrency() -> None:
    inner = Scripted([])
    source, _ = wrap(inner, max_concurrency=3)
    await asyncio.gather(*(source.list_page(REQUEST) for _ in range(20)))
    assert inner.calls == 20 and inner.peak == 3
