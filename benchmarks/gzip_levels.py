"""gzip levels on real answers (run by hand): the time and size of each level.

    python benchmarks/gzip_levels.py [--rounds 200]

Serves the gateway over the bundled simulators on loopback (in this process), takes the
answer to the fan-out benchmark's page at 20 and at 100 tokens, then compresses each answer
at every level as Starlette's GZipMiddleware does (one zlib stream in gzip framing), the
levels interleaved round after round so the machine's drift falls on all of them alike.
Prints per level the median microseconds and the compressed size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import zlib
from pathlib import Path

import httpx

from tokengate.gateway.app import create_app
from tokengate.gateway.config import Config, LimitsConfig, StoreConfig
from tokengate.gateway.demo import simulators
from tokengate.upstreams.loopback import serve_in_thread
from tokengate.upstreams.oauth.simulator import WALK_USER

SECRET = "bench-bootstrap-token-0123456789"
QUERY = (
    '{ tokens(first: N, filter: {userId: "USER"}) { totalCount edges { cursor node { id name '
    "provider status createdAt lastUsedAt expiresAt scopes owner { kind id } } } "
    "pageInfo { hasNextPage endCursor } failedSources { reason } } }"
).replace("USER", WALK_USER)
LEVELS = range(1, 10)


def answers() -> dict[str, bytes]:
    """The uncompressed answers to a 20- and a 100-token page over every source."""
    os.environ["TOKENGATE_BOOTSTRAP_TOKEN"] = SECRET
    home = Path(tempfile.mkdtemp(prefix="tokengate-gzip-"))
    with simulators(count=60) as sims:
        config = Config(
            store=StoreConfig(url=f"sqlite:///{home / 'g.db'}", key_file=home / "g.key"),
            limits=LimitsConfig(rate_per_s=1e6, burst=1_000_000),
            sources=tuple(s.source for s in sims.values()),
        )
        with serve_in_thread(create_app(config)) as url:
            found = {}
            for size in (20, 100):
                response = httpx.post(
                    f"{url}/graphql",
                    json={"query": QUERY.replace("first: N", f"first: {size}")},
                    headers={"Authorization": f"Bearer {SECRET}", "Accept-Encoding": "identity"},
                )
                body = response.json()
                assert "errors" not in body, body["errors"]
                assert len(body["data"]["tokens"]["edges"]) == size
                found[f"{size}-token page"] = response.content
            return found


def gzipped(body: bytes, level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(body) + compressor.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    for name, body in answers().items():
        times: dict[int, list[float]] = {level: [] for level in LEVELS}
        for _ in range(args.rounds):
            for level in LEVELS:
                started = time.perf_counter()
                gzipped(body, level)
                times[level].append((time.perf_counter() - started) * 1e6)
        print(f"{name}: {len(body):,} bytes; {args.rounds} rounds, levels interleaved")
        for level in LEVELS:
            size = len(gzipped(body, level))
            print(
                f"  level {level}: {statistics.median(times[level]):7.1f} us, "
                f"{size:6,} bytes ({size / len(body):.1%})"
            )


if __name__ == "__main__":
    main()
