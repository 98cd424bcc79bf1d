"""Saturation benchmark (run by hand): the gateway's CPU per request, two versions paired.

    python benchmarks/saturation.py (--ab REF | --stock-executor | --tracing) [--rounds 12]
                                    [--requests 400] [--concurrency 32] [--latency-ms 5]
                                    [--fresh-answers]

B is this tree; A is git ref REF (``--ab``), or this tree with Strawberry's stock
graphql-core execution in place of schema/execution.py's (``--stock-executor``), or this
tree without ``OTEL_*`` settings while B exports every span over OTLP/HTTP to a dummy
collector on loopback, in this process (``--tracing``). Both
gateways run over the same three simulators, on the same CPU (the last one; the
simulators and this client share the others). Each round sends ``--requests`` fan-out
pages (benchmarks/fanout.py's query) to A with ``--concurrency`` in flight, then to B (the
next round B first), and reads the CPU time each gateway process used for them from
/proc: CPU per request, whatever the machine's other load does to latency. Prints each
round, both medians and the paired median of B/A - 1: a negative figure is CPU that B
saves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from fanout import (
    HEADERS,
    PAYLOAD,
    Collector,
    gateway_env,
    start_gateway,
    start_simulators,
    wait_ready,
    write_config,
)

from tokengate.upstreams.loopback import free_port, serve_in_thread

# ``tokengate serve`` with the schema's executor swapped for Strawberry's stock one.
STOCK_EXECUTOR = """
import strawberry.schema.schema
import tokengate.gateway.app
from tokengate.gateway.cli import main

build = tokengate.gateway.app.build_schema

def stock(*args, **kwargs):
    schema = build(*args, **kwargs)
    schema.execution_context_class = strawberry.schema.schema.StrawberryGraphQLCoreExecutionContext
    return schema

tokengate.gateway.app.build_schema = stock
main()
"""


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def burst(url: str, requests: int, concurrency: int) -> float:
    """``requests`` pages with ``concurrency`` in flight; returns the wall seconds."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    remaining = requests
    async with httpx.AsyncClient(timeout=60, limits=limits, headers=HEADERS) as client:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                response = await client.post(f"{url}/graphql", content=PAYLOAD)
                assert response.status_code == 200, response.text[:300]
                assert b'"errors"' not in response.content, response.text[:300]

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def measure(pid: int, url: str, requests: int, concurrency: int) -> tuple[float, float]:
    """(CPU ms a request, requests a second) of one burst."""
    before = cpu_s(pid)
    wall = asyncio.run(burst(url, requests, concurrency))
    return (cpu_s(pid) - before) * 1000 / requests, requests / wall


def start_stock(
    config: Path, port: int, env: dict[str, str], cpus: set[int] | None, log: Path
) -> subprocess.Popen[bytes]:
    """This tree's ``tokengate serve`` on ``port``, with Strawberry's stock executor."""
    return subprocess.Popen(
        [
            *(sys.executable, "-c", STOCK_EXECUTOR, "serve", "--config", str(config)),
            *("--port", str(port), "--log-level", "warning"),
        ],
        env=env,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    versus = parser.add_mutually_exclusive_group(required=True)
    versus.add_argument("--ab", metavar="REF", help="A: git ref REF")
    versus.add_argument(
        "--stock-executor", action="store_true", help="A: this tree, stock graphql-core execution"
    )
    versus.add_argument(
        "--tracing", action="store_true", help="A: this tree; B: this tree exporting spans"
    )
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--fresh-answers", action="store_true")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    gateway_cpus: set[int] | None = None
    if len(cpus) >= 2:
        gateway_cpus = {cpus[-1]}
        os.sched_setaffinity(0, set(cpus[:-1]))  # the simulators inherit it
    workdir = Path(tempfile.mkdtemp(prefix="tokengate-saturation-"))
    sim_processes, sims = start_simulators(workdir)
    env = gateway_env(sims, "aiohttp")
    root = Path(__file__).resolve().parents[1]
    tree = workdir / "ref"
    if args.ab:
        tree.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", args.ab], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    gateways: list[tuple[subprocess.Popen[bytes], str]] = []
    collector = Collector()
    exits = contextlib.ExitStack()
    try:
        if args.tracing:
            collector_url = exits.enter_context(serve_in_thread(collector))
            env_b = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": collector_url}
        for name in "AB":
            port = free_port()
            config = write_config(workdir / f"{name}.toml", sims, str(workdir / f"{name}.db"))
            log = workdir / f"{name}.log"
            if name == "A" and args.stock_executor:
                process = start_stock(
                    config, port, {**env, "PYTHONPATH": str(root)}, gateway_cpus, log
                )
            elif args.tracing:
                own = env_b if name == "B" else env
                process = start_gateway(config, port, own, gateway_cpus, log, root)
            else:
                code = tree if name == "A" else root
                process = start_gateway(config, port, env, gateway_cpus, log, code)
            gateways.append((process, f"http://127.0.0.1:{port}"))
        for _, url in gateways:
            wait_ready(f"{url}/readyz")
        settings = {"faults": [], "latency_ms": args.latency_ms, "vary_bytes": args.fresh_answers}
        for sim_url, _ in sims.values():
            httpx.post(f"{sim_url}/_sim/faults", json=settings).raise_for_status()
        for process, url in gateways:  # warm-up: connections, caches
            measure(process.pid, url, args.concurrency * 4, args.concurrency)
        cpu: list[list[float]] = [[], []]
        rate: list[list[float]] = [[], []]
        for round_ in range(args.rounds):
            for which in (0, 1) if round_ % 2 == 0 else (1, 0):
                process, url = gateways[which]
                per_request, per_second = measure(process.pid, url, args.requests, args.concurrency)
                cpu[which].append(per_request)
                rate[which].append(per_second)
            print(
                f"round {round_ + 1}: A {cpu[0][-1]:.3f} ms CPU/request ({rate[0][-1]:.0f}/s), "
                f"B {cpu[1][-1]:.3f} ms CPU/request ({rate[1][-1]:.0f}/s)",
                flush=True,
            )
    finally:
        for process, _ in gateways:
            process.terminate()
            process.wait(timeout=30)
        for sim in sim_processes:
            sim.terminate()
            sim.wait(timeout=30)
        exits.close()
    ratios = [b / a - 1 for a, b in zip(cpu[0], cpu[1], strict=True)]
    versus = args.ab or (
        "this tree without OTEL_* settings" if args.tracing else "this tree with the stock executor"
    )
    print(
        f"A = {versus}, B = this tree{' exporting spans' if args.tracing else ''}; {args.rounds} rounds of {args.requests} requests, "
        f"{args.concurrency} in flight, upstream latency {args.latency_ms:.0f} ms"
    )
    for name, samples, rates in zip("AB", cpu, rate, strict=True):
        print(
            f"{name}: median {statistics.median(samples):.3f} ms CPU/request, "
            f"{statistics.median(rates):.0f} requests/s"
        )
    print(f"B/A - 1, paired median: {statistics.median(ratios):+.1%} CPU per request")
    print(f"rounds where B used less CPU: {sum(r < 0 for r in ratios)} of {len(ratios)}")
    if args.tracing:
        print(f"collector: {collector.exports} exports, {collector.bytes} bytes")


if __name__ == "__main__":
    sys.exit(main())
