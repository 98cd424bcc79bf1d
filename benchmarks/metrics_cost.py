"""The p50 cost of metrics on the fan-out page (run by hand): paired, metrics on vs off.

    python benchmarks/metrics_cost.py [--requests 400] [--latency-ms 50] [--no-pin]

Two gateways from this tree, one with ``[server] metrics = true`` (the default) and one
with ``metrics = false``, on the same CPU and the same simulators (benchmarks/fanout.py's
set-up: one process per simulator, the gateway pinned to a CPU of its own), pages
alternating (on, off, then off, on). Prints both p50s and the paired median of the
differences (on - off); with ``--scrape-every N`` the metrics gateway is also scraped every
N pages, as Prometheus would be. ``--aa`` runs both with metrics on: the paired median
then shows what the set-up itself contributes (which gateway started first, its port...).
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fanout import (  # the sibling script, found through the path above
    _sim_settings,
    fetch_page,
    gateway_env,
    start_gateway,
    start_simulators,
    wait_ready,
    write_config,
)

from tokengate.upstreams.loopback import free_port


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--scrape-every", type=int, default=0)
    parser.add_argument("--aa", action="store_true", help="both gateways with metrics on")
    args = parser.parse_args()
    args.fresh_answers = False
    cpus = sorted(os.sched_getaffinity(0))
    gateway_cpus: set[int] | None = None
    if not args.no_pin and len(cpus) >= 2:
        gateway_cpus = {cpus[-1]}
        os.sched_setaffinity(0, set(cpus[:-1]))
    workdir = Path(tempfile.mkdtemp(prefix="tokengate-bench-"))
    sim_processes, sims = start_simulators(workdir)
    env = gateway_env(sims, "aiohttp")
    gateways = []
    try:
        for name, enabled in (("on", "true"), ("off", "true" if args.aa else "false")):
            config = write_config(workdir / f"{name}.toml", sims, str(workdir / f"{name}.db"))
            config.write_text(config.read_text() + f"\n[server]\nmetrics = {enabled}\n")
            port = free_port()
            process = start_gateway(config, port, env, gateway_cpus, workdir / f"{name}.log")
            gateways.append((process, port))
        for _, port in gateways:
            wait_ready(f"http://127.0.0.1:{port}/readyz")
        on_port = gateways[0][1]
        assert httpx.get(f"http://127.0.0.1:{on_port}/metrics").status_code == 200
        off_status = httpx.get(f"http://127.0.0.1:{gateways[1][1]}/metrics").status_code
        assert off_status == (200 if args.aa else 404)
        for sim_url, _ in sims.values():
            httpx.post(f"{sim_url}/_sim/faults", json=_sim_settings(args))
        connections = [http.client.HTTPConnection("127.0.0.1", p, timeout=30) for _, p in gateways]
        for _ in range(20):
            for connection in connections:
                fetch_page(connection)
        times: list[list[float]] = [[], []]
        for round_ in range(args.requests):
            for which in (0, 1) if round_ % 2 == 0 else (1, 0):
                elapsed, raw = fetch_page(connections[which])
                assert b'"errors"' not in raw, raw[:300]
                times[which].append(elapsed)
            if args.scrape_every and round_ % args.scrape_every == 0:
                httpx.get(f"http://127.0.0.1:{on_port}/metrics")
        scraped = httpx.get(f"http://127.0.0.1:{on_port}/metrics").text
    finally:
        for process, _ in gateways:
            process.terminate()
            process.wait(timeout=30)
        for process in sim_processes:
            process.terminate()
            process.wait(timeout=30)
    differences = [on - off for on, off in zip(times[0], times[1], strict=True)]
    pinning = f"gateways on CPU {min(gateway_cpus)}" if gateway_cpus else "no CPU pinning"
    print(
        f"metrics on vs {'on (A/A)' if args.aa else 'off'}: {args.requests} pages each, alternating; upstream latency "
        f"{args.latency_ms:.0f} ms; {pinning}; scrape every {args.scrape_every or 'never'}"
    )
    for name, samples in zip(("on", "off"), times, strict=True):
        samples.sort()
        p90 = samples[int(len(samples) * 0.9) - 1]
        print(f"metrics {name}: p50 {statistics.median(samples):.2f} ms, p90 {p90:.2f} ms")
    print(f"on - off, paired median: {statistics.median(differences):+.3f} ms")
    pages = [ln for ln in scraped.splitlines() if ln.startswith("tokengate_graphql_requests_total")]
    print("scraped:", *pages)


if __name__ == "__main__":
    main()
