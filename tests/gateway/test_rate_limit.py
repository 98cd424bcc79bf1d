"""Per-token rate limits: a token bucket answering RATE_LIMITED with retry information."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BOOTSTRAP, Gateway, gateway_config
from tokengate.gateway.app import create_app
from tokengate.gateway.config import LimitsConfig
from tokengate.gateway.ratelimit import TokenBuckets
from tokengate.upstreams.loopback import serve_in_thread


def test_bucket_arithmetic() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate_per_s=2, burst=3, clock=lambda: now[0])
    assert [buckets.acquire("a") for _ in range(3)] == [None, None, None]
    wait = buckets.acquire("a")
    assert wait == pytest.approx(0.5)
    assert buckets.acquire("b") is None, "buckets are per caller"
    now[0] = 0.5
    assert buckets.acquire("a") is None
    assert buckets.acquire("a") is not None
    now[0] = 100
    assert [buckets.acquire("a") for _ in range(4)].count(None) == 3, "refill caps at the burst"


def test_lru_bound() -> None:
    buckets = TokenBuckets(rate_per_s=1, burst=1, max_callers=2)
    for caller in ("a", "b", "c"):
        buckets.acquire(caller)
    assert buckets.acquire("a") is None, "the oldest caller was forgotten, starting full"


@pytest.fixture
def tight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    config = gateway_config(tmp_path, limits=LimitsConfig(rate_per_s=0.5, burst=3))
    with serve_in_thread(create_app(config)) as url:
        yield Gateway(url=url, admin_secret=BOOTSTRAP, config=config)


def test_over_the_limit_answers_rate_limited(tight: Gateway) -> None:
    other = tight.data(
        'mutation { createToken(input: {source: "internal", name: "other"}) { secret } }'
    )
    other_secret = other["createToken"]["secret"]
    statuses = [tight.post("{ sources { key } }") for _ in range(3)]
    assert all("errors" not in r.json() for r in statuses[:2])
    limited = tight.post("{ sources { key } }")
    assert limited.status_code == 200
    assert int(limited.headers["retry-after"]) >= 1
    body = limited.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert body["errors"][0]["extensions"]["retryAfter"] >= 1
    # Another token has its own bucket.
    assert "errors" not in tight.post("{ sources { key } }", secret=other_secret).json()
