"""Cross-replica revocation delay (run by hand): how long a token revoked through replica A
still works on replica B.

    python benchmarks/revocation_delay.py --bus postgres [--pg-url URL] [--revocations 50]
    python benchmarks/revocation_delay.py --bus redis [--redis-url URL]
    python benchmarks/revocation_delay.py --bus none            # SQLite, no bus: the baseline

Two `tokengate serve` processes (the replicas) share one store: a fresh database on the
PostgreSQL server ``--pg-url`` (or ``$TOKENGATE_TEST_PG_URL``) for ``postgres``; a SQLite
file plus Redis (``--redis-url``, else a private ``redis-server``) for ``redis``; a SQLite
file alone for ``none``. Each revocation: create a token on A, use it once on B (B caches
the caller), revoke it on A, then ask B again and again on one kept-alive connection until
it answers 401. The delay is from A's answer to the revocation to B's first 401, so it
includes one request to B: its resolution is one request's round trip (printed too).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import asyncpg
import httpx
import sqlalchemy as sa
from ratelimit_redis import private_redis  # the sibling script (run from benchmarks/)

from tokengate.upstreams.loopback import free_port

SECRET = "bench-bootstrap-token-0123456789"
CREATE = """mutation { createToken(input: {source: "internal", name: "bench",
  scopes: ["tokens:read"]}) { token { id } secret } }"""
REVOKE = """mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }"""
PING = "{ sources { key } }"


def fresh_pg_database(admin_url: str) -> str:
    name = "bench_" + uuid.uuid4().hex[:12]

    async def create() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return str(sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False))


@contextmanager
def replica(root: Path, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    log = (root / f"replica-{port}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tokengate.gateway.cli", "serve", "--config",
         str(root / "tg.toml"), "--port", str(port), "--log-level", "warning"],
        cwd=root,
        env={
            **os.environ,
            "TOKENGATE_BOOTSTRAP_TOKEN": SECRET,
            "TOKENGATE_SHUTDOWN_DELAY_S": "0",
            **env,
        },
        stdout=log,
        stderr=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"{url}/readyz", timeout=1)
                if ready.status_code == 200 and ready.json().get("revocations") != "reconnecting":
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"replica did not start; see {log.name}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def gql(
    client: httpx.Client, url: str, query: str, secret: str, **variables: str
) -> httpx.Response:
    return client.post(
        f"{url}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {secret}"},
    )


def measure(a: str, b: str, revocations: int) -> None:
    delays, polls, round_trips = [], [], []
    with httpx.Client(timeout=10) as to_a, httpx.Client(timeout=10) as to_b:
        for _ in range(revocations):
            made = gql(to_a, a, CREATE, SECRET).json()["data"]["createToken"]
            started = time.perf_counter()
            assert gql(to_b, b, PING, made["secret"]).status_code == 200
            round_trips.append(time.perf_counter() - started)
            revoked = gql(to_a, a, REVOKE, SECRET, id=made["token"]["id"])
            answered = time.perf_counter()
            assert revoked.status_code == 200 and "errors" not in revoked.json(), revoked.text
            count = 0
            while gql(to_b, b, PING, made["secret"]).status_code != 401:
                count += 1
            delays.append(time.perf_counter() - answered)
            polls.append(count)
    ms = sorted(d * 1000 for d in delays)
    print(
        f"{revocations} revocations: delay p50 {statistics.median(ms):.1f} ms, "
        f"p90 {ms[int(0.9 * (len(ms) - 1))]:.1f} ms, max {ms[-1]:.1f} ms; "
        f"B still answered 200 after A's answer in {sum(1 for p in polls if p)} of them "
        f"(at most {max(polls)} times); one request to B (p50): "
        f"{statistics.median(round_trips) * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bus", choices=["postgres", "redis", "none"], required=True)
    parser.add_argument("--revocations", type=int, default=50)
    parser.add_argument("--pg-url", default=os.environ.get("TOKENGATE_TEST_PG_URL"))
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-revocation-"))
    with ExitStack() as stack:
        env: dict[str, str] = {}
        store_url = f"sqlite:///{root / 'tg.db'}"
        if args.bus == "postgres":
            if not args.pg_url:
                raise SystemExit("--bus postgres needs --pg-url or $TOKENGATE_TEST_PG_URL")
            store_url = fresh_pg_database(args.pg_url)
        elif args.bus == "redis":
            redis_url = args.redis_url or stack.enter_context(private_redis())
            env["TOKENGATE_LIMITS_STORAGE_URL"] = redis_url
        (root / "tg.toml").write_text(
            f'[store]\nurl = "{store_url}"\n\n[limits]\nrate_per_s = 1000000\nburst = 1000000\n'
        )
        a = stack.enter_context(replica(root, env))  # first: it creates the server key
        b = stack.enter_context(replica(root, env))
        print(f"bus: {args.bus}")
        measure(a, b, args.revocations)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
