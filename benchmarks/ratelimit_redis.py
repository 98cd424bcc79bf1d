"""Shared rate limits in Redis (run by hand): tokengate's own Lua token bucket against the
``limits`` package's Redis strategies, paired.

    pip install 'limits[async-redis]'     # the package under comparison (not a dependency)
    python benchmarks/ratelimit_redis.py [--rounds 20] [--calls 200] [--concurrency 32]
                                         [--redis-url redis://127.0.0.1:6379/0]

Without ``--redis-url`` a private ``redis-server`` is started on a free loopback port.
Contenders, each deciding "may this caller go on?" for one caller with a limit it never
reaches (the path every accepted request takes):

- ``local``: the in-process ``TokenBuckets`` (no Redis: what sharing adds, for scale);
- ``lua``: ``gateway/shared_limits.RedisBuckets`` (redis-py asyncio, one EVALSHA);
- ``limits-moving``: ``limits`` ``MovingWindowRateLimiter.hit`` (the exact one of its
  strategies, burst per burst/rate seconds), over redis-py (``implementation="redispy"``);
- ``limits-sliding``: ``SlidingWindowCounterRateLimiter.hit`` (approximate), over redis-py;
- ``limits-moving-coredis``: the moving window over coredis, the package's default client.

Every round runs each contender in a fresh random order: ``--calls`` sequential calls
(latency: per-call p50) and then ``--calls`` calls from ``--concurrency`` tasks at once
(throughput). Printed: the median over rounds of each contender's p50 and calls/s, and the
median over rounds of its ratio to ``lua`` in the same round (paired: drift on a shared
machine hits both sides of a ratio alike).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from tokengate.gateway.ratelimit import TokenBuckets
from tokengate.gateway.shared_limits import RedisBuckets, redis_client
from tokengate.upstreams.loopback import free_port

Decide = Callable[[str], Awaitable[object]]


@contextmanager
def private_redis() -> Iterator[str]:
    if shutil.which("redis-server") is None:
        raise SystemExit("no redis-server here: install it or pass --redis-url")
    port = free_port()
    root = tempfile.mkdtemp(prefix="bench-redis-")
    process = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", root],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(root, ignore_errors=True)


async def contenders(url: str, rate: float, burst: int) -> dict[str, Decide]:
    from limits import RateLimitItemPerSecond
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

    ours = RedisBuckets(redis_client(url), rate, burst)
    local = TokenBuckets(rate, burst)
    # The closest the package comes to "rate per second, burst at once".
    item = RateLimitItemPerSecond(burst, max(1, round(burst / rate)))
    redispy = RedisStorage("async+" + url, implementation="redispy")
    coredis = RedisStorage("async+" + url, implementation="coredis")
    moving = MovingWindowRateLimiter(redispy)
    sliding = SlidingWindowCounterRateLimiter(redispy)
    moving_coredis = MovingWindowRateLimiter(coredis)

    async def lua(caller: str) -> object:
        return await ours.check(caller)

    async def limits_moving(caller: str) -> object:
        return await moving.hit(item, caller)

    async def limits_sliding(caller: str) -> object:
        return await sliding.hit(item, caller)

    async def limits_moving_coredis(caller: str) -> object:
        return await moving_coredis.hit(item, caller)

    async def in_process(caller: str) -> object:
        return await local.check(caller)

    return {
        "local": in_process,
        "lua": lua,
        "limits-moving": limits_moving,
        "limits-sliding": limits_sliding,
        "limits-moving-coredis": limits_moving_coredis,
    }


async def sequential(decide: Decide, calls: int) -> float:
    """Per-call p50 in microseconds."""
    caller = uuid.uuid4().hex
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await decide(caller)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


async def concurrent(decide: Decide, calls: int, concurrency: int) -> float:
    """Calls per second with ``concurrency`` callers deciding at once."""
    callers = [uuid.uuid4().hex for _ in range(concurrency)]
    per_task = max(1, calls // concurrency)

    async def task(caller: str) -> None:
        for _ in range(per_task):
            await decide(caller)

    started = time.perf_counter()
    await asyncio.gather(*(task(c) for c in callers))
    return per_task * concurrency / (time.perf_counter() - started)


async def run(args: argparse.Namespace, url: str) -> None:
    # A limit no caller reaches: every call is an accepted request's decision.
    decide = await contenders(url, rate=1e6, burst=10**9)
    for name, fn in decide.items():  # warm-up: connections, script loading
        await sequential(fn, 50)
        await concurrent(fn, 200, args.concurrency)
        print(f"warmed {name}")
    p50s: dict[str, list[float]] = {n: [] for n in decide}
    rates: dict[str, list[float]] = {n: [] for n in decide}
    for _ in range(args.rounds):
        order = list(decide)
        random.shuffle(order)
        for name in order:
            p50s[name].append(await sequential(decide[name], args.calls))
        random.shuffle(order)
        for name in order:
            rates[name].append(await concurrent(decide[name], args.calls, args.concurrency))
    print(
        f"\n{args.rounds} rounds x {args.calls} calls, concurrency {args.concurrency}\n"
        f"{'contender':<24}{'p50 us':>9}{'p50 / lua':>11}{'calls/s':>10}{'calls/s / lua':>15}"
    )
    for name in decide:
        latency_ratio = statistics.median(
            a / b for a, b in zip(p50s[name], p50s["lua"], strict=True)
        )
        rate_ratio = statistics.median(
            a / b for a, b in zip(rates[name], rates["lua"], strict=True)
        )
        print(
            f"{name:<24}{statistics.median(p50s[name]):>9.0f}{latency_ratio:>11.2f}"
            f"{statistics.median(rates[name]):>10.0f}{rate_ratio:>15.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    if args.redis_url:
        asyncio.run(run(args, args.redis_url))
        return
    with private_redis() as url:
        asyncio.run(run(args, url))


if __name__ == "__main__":
    main()
