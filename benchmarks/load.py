"""Load benchmark (run by hand): many concurrent clients against ``tokengate serve --demo``
while one simulated upstream fails half its requests.

    python benchmarks/load.py [--clients 200] [--seconds 30] [--runs 2] [--fresh-answers]

Reports per run: requests, HTTP status counts (any 5xx is a failure), the share of pages
with a failed source, p50/p99 latency, the CPU seconds the gateway process (simulators
included, with --demo) and this load generator used, and the gateway's RSS before and
after; the RSS growth of the last run over the first must stay under 10%.
``--fresh-answers``: every simulator sends each answer in new bytes (the same JSON), as
with token lists that change between requests.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tokengate.upstreams.loopback import free_port
from tokengate.upstreams.oauth.simulator import WALK_USER

SECRET = "load-bootstrap-token-0123456789"
QUERY = (
    '{ tokens(first: 20, filter: {userId: "USER"}) { totalCount edges { node { id name '
    "provider createdAt } } pageInfo { endCursor } failedSources { source { key } reason } } }"
).replace("USER", WALK_USER)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(url: str, clients: int, seconds: float) -> dict[str, object]:
    statuses: collections.Counter[int] = collections.Counter()
    latencies: list[float] = []
    partial = 0
    transport_errors = 0
    error_kinds: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {SECRET}"}, timeout=30, limits=limits
    ) as client:

        async def worker() -> None:
            nonlocal partial, transport_errors
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    response = await client.post(f"{url}/graphql", json={"query": QUERY})
                except httpx.TransportError as exc:
                    transport_errors += 1
                    error_kinds[f"{type(exc).__name__}: {exc}"[:120]] += 1
                    continue
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[response.status_code] += 1
                failed = response.json()["data"]["tokens"]["failedSources"]
                if failed:
                    partial += 1
                    reasons.update(f"{f['source']['key']}:{f['reason']}" for f in failed)

        await asyncio.gather(*(worker() for _ in range(clients)))
    latencies.sort()
    total = sum(statuses.values())
    return {
        "requests": total,
        "rps": total / seconds,
        "statuses": dict(statuses),
        "transport_errors": transport_errors,
        "error_kinds": dict(error_kinds),
        "partial_share": partial / total if total else 0.0,
        "reasons": dict(reasons),
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument(
        "--failing", default="fleet", help="source key of the half-failing upstream"
    )
    parser.add_argument(
        "--fresh-answers", action="store_true", help="every upstream answer in new bytes"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tokengate-load-"))
    config = workdir / "load.toml"
    config.write_text("[limits]\nrate_per_s = 1000000\nburst = 1000000\nmax_cost = 100000\n")
    port = free_port()
    log = (workdir / "gateway.log").open("w+")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokengate.gateway.cli",
            "serve",
            "--demo",
            "--config",
            str(config),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env={**os.environ, "TOKENGATE_BOOTSTRAP_TOKEN": SECRET, "TOKENGATE_SHUTDOWN_DELAY_S": "0"},
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        log.seek(0)
        sims = dict(re.findall(r"^\s+(\w+)\s+\w+\s+(http://127\.0\.0\.1:\d+)$", log.read(), re.M))
        failing = sims[args.failing]
        for sim in sims.values():
            faults = [{"kind": "status", "status": 500, "every": 2}] if sim == failing else []
            httpx.post(
                f"{sim}/_sim/faults", json={"faults": faults, "vary_bytes": args.fresh_answers}
            ).raise_for_status()
        print(f"gateway pid {process.pid}; {args.failing} ({failing}) fails every 2nd request")
        baseline = rss_mb(process.pid)
        print(f"RSS before: {baseline:.1f} MB")
        after = []
        for number in range(1, args.runs + 1):
            gateway_cpu, own_cpu = cpu_s(process.pid), time.process_time()
            result = asyncio.run(run(url, args.clients, args.seconds))
            gateway_cpu, own_cpu = cpu_s(process.pid) - gateway_cpu, time.process_time() - own_cpu
            after.append(rss_mb(process.pid))
            print(
                f"run {number}: {result['requests']} requests ({result['rps']:.0f}/s), "
                f"statuses {result['statuses']}, transport errors {result['transport_errors']}, "
                f"pages with a failed source {result['partial_share']:.1%} {result['reasons']}, "
                f"p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms, RSS after {after[-1]:.1f} MB"
            )
            requests = max(1, int(result["requests"]))  # type: ignore[call-overload]
            print(
                f"  CPU: gateway (with its simulators) {gateway_cpu:.1f} s, "
                f"{gateway_cpu / requests * 1000:.2f} ms a request; "
                f"this load generator {own_cpu:.1f} s"
            )
            if result["error_kinds"]:
                print(f"  transport errors: {result['error_kinds']}")
            assert not any(code >= 500 for code in result["statuses"]), "an HTTP 5xx"  # type: ignore[attr-defined]
        growth = (after[-1] - after[0]) / after[0]
        print(
            f"RSS growth, last run over first: {growth:+.1%} ({'PASS' if growth <= 0.10 else 'MISS'})"
        )
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
