"""Fan-out benchmark (run by hand): one page over every source, each upstream 50 ms slow.

    python benchmarks/fanout.py [--requests 200] [--latency-ms 50]

Prints the p50/p90/p99 latency of a 20-token page over all four sources (internal store,
Amper, OAuth-style, Losant simulators on loopback), the target (slowest upstream + 5 ms)
and the upstream requests per page, which should equal the number of upstream sources.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from gateway.app import create_app
from gateway.config import Config, LimitsConfig, StoreConfig
from gateway.demo import simulators
from upstreams.loopback import serve_in_thread
from upstreams.oauth.simulator import WALK_USER

QUERY = (
    '{ tokens(first: 20, filter: {userId: "USER"}) { totalCount edges { cursor node { id name '
    "provider status createdAt lastUsedAt expiresAt scopes owner { kind id } } } "
    "pageInfo { hasNextPage endCursor } failedSources { reason } } }"
).replace("USER", WALK_USER)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    secret = "bench-bootstrap-token-0123456789"
    os.environ["TOKENGATE_BOOTSTRAP_TOKEN"] = secret
    workdir = Path(tempfile.mkdtemp(prefix="tokengate-bench-"))
    with simulators(count=60) as sims:
        config = Config(
            store=StoreConfig(url=f"sqlite:///{workdir / 'b.db'}", key_file=workdir / "b.key"),
            limits=LimitsConfig(rate_per_s=1e6, burst=10**6),
            sources=tuple(s.source for s in sims.values()),
        )
        with (
            serve_in_thread(create_app(config)) as url,
            httpx.Client(headers={"Authorization": f"Bearer {secret}"}, timeout=30) as client,
        ):
            for sim in sims.values():
                sim.state.control.latency_ms = args.latency_ms
            for _ in range(10):  # warm-up: connections, caches
                client.post(f"{url}/graphql", json={"query": QUERY}).raise_for_status()
            for sim in sims.values():
                sim.state.control.requests.clear()
            samples = []
            for _ in range(args.requests):
                started = time.perf_counter()
                response = client.post(f"{url}/graphql", json={"query": QUERY})
                samples.append((time.perf_counter() - started) * 1000)
                body = response.json()
                assert "errors" not in body, body
                assert len(body["data"]["tokens"]["edges"]) == 20
            upstream = sum(len(s.state.control.requests) for s in sims.values())
    samples.sort()
    p50 = statistics.median(samples)
    p90 = samples[int(len(samples) * 0.9) - 1]
    p99 = samples[int(len(samples) * 0.99) - 1]
    target = args.latency_ms + 5
    print(f"pages: {args.requests}, upstream latency: {args.latency_ms:.0f} ms each")
    print(
        f"latency p50 {p50:.1f} ms, p90 {p90:.1f} ms, p99 {p99:.1f} ms (target p50 <= {target:.0f} ms)"
    )
    print(f"p50 overhead over the slowest upstream: {p50 - args.latency_ms:.1f} ms")
    print(
        f"upstream requests per page: {upstream / args.requests:.2f} (upstream sources: {len(sims)})"
    )
    print("PASS" if p50 <= target and upstream / args.requests <= len(sims) else "MISS")


if __name__ == "__main__":
    main()
