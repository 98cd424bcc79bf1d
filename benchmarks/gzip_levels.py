"""gzip levels on real answers (run by hand): the time and size of each level.

    python benchmarks/gzip_levels.py [--rounds 200]

Serves the gateway over the bundled simulators on loopback (in this process), takes the
answer to the fan-out benchmark's page at 20 and at 100 tokens, then compresses each answer
at every level as Starlette's GZipMiddleware does (one zlib stream in gzip framing), the
levels interleaved round after round so the machine's drift falls on all of them alike.
Prints per level the median microseconds and the compressed size.

Then the whole middleware as the gateway runs it (``gateway/app.py``'s settings), called
directly as ASGI around an app that answers the 20-token page: no middleware, the
middleware with a client that does not accept gzip, and with one that does, interleaved;
the median microseconds of each: what gzip costs the gateway's CPU per page, without the
network and scheduling noise a fan-out run carries.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import httpx
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokengate.gateway.app import create_app
from tokengate.gateway.compression import GZIP_LEVEL, GZIP_OVER_BYTES, Gzip, deflate
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
LEVELS: list[int | str] = [*range(1, 10), *(f"isal {n}" for n in range(4))]


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


def gzipped(body: bytes, level: int | str) -> bytes:
    """zlib's levels 1-9, or ISA-L's as "isal N" (the gateway's compressor, when installed)."""
    module: Any = zlib
    if isinstance(level, str):
        module, level = deflate, int(level.split()[1])
    compressor = module.compressobj(level, module.DEFLATED, 16 + zlib.MAX_WBITS)
    return bytes(compressor.compress(body) + compressor.flush())


def middleware_costs(body: bytes, rounds: int) -> dict[str, float]:
    """Median microseconds of one answer through: no middleware, the middleware without and
    with ``Accept-Encoding: gzip``."""

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        return None

    starlette_app = GZipMiddleware(answer, minimum_size=GZIP_OVER_BYTES + 1, compresslevel=3)
    gzipped_app = Gzip(answer)
    gzip = [(b"accept-encoding", b"gzip")]
    cases: dict[str, tuple[ASGIApp, list[tuple[bytes, bytes]]]] = {
        "no middleware": (answer, gzip),
        "gateway's middleware, identity": (gzipped_app, []),
        "gateway's middleware, gzip": (gzipped_app, gzip),
        "Starlette's own (stdlib zlib, level 3), gzip": (starlette_app, gzip),
    }

    async def run() -> dict[str, float]:
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, (app, headers) in cases.items():
                scope: Scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
                started = time.perf_counter()
                await app(scope, receive, send)
                times[name].append((time.perf_counter() - started) * 1e6)
        return {name: statistics.median(samples) for name, samples in times.items()}

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    found = answers()
    for name, body in found.items():
        times: dict[int | str, list[float]] = {level: [] for level in LEVELS}
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
    page = found["20-token page"]
    print(
        f"middleware ({deflate.__name__} level {GZIP_LEVEL}), 20-token page, "
        f"{args.rounds} rounds interleaved"
    )
    for case, median in middleware_costs(page, args.rounds).items():
        print(f"  {case}: {median:7.1f} us")


if __name__ == "__main__":
    main()
