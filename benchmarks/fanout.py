"""Fan-out benchmark (run by hand): one page over every source, each upstream 50 ms slow.

    python benchmarks/fanout.py [--requests 200] [--latency-ms 50] [--transport default|aiohttp]

Each simulator (`tokengate simulate --provider P`) and the gateway (`tokengate serve`) run
in their own processes, so the measured latency is the gateway's, not the simulators' work
queueing behind one another.
Prints the p50/p90/p99 latency of a 20-token page over all four sources (internal store,
Amper, OAuth-style, Losant with one application), the target (slowest upstream + 5 ms),
and the upstream requests per page (target: one per upstream source).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from upstreams.loopback import free_port
from upstreams.oauth.simulator import WALK_USER

SECRET = "bench-bootstrap-token-0123456789"
QUERY = (
    '{ tokens(first: 20, filter: {userId: "USER"}) { totalCount edges { cursor node { id name '
    "provider status createdAt lastUsedAt expiresAt scopes owner { kind id } } } "
    "pageInfo { hasNextPage endCursor } failedSources { reason } } }"
).replace("USER", WALK_USER)


def wait_ready(url: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def start_simulators(
    workdir: Path,
) -> tuple[list[subprocess.Popen[str]], dict[str, tuple[str, dict[str, str]]]]:
    """One process per simulator, so that their work does not queue behind one another."""
    processes: list[subprocess.Popen[str]] = []
    sims: dict[str, tuple[str, dict[str, str]]] = {}
    for provider in ("amper", "oauth", "losant"):
        out = (workdir / f"{provider}.log").open("w+")
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway.cli",
                    "simulate",
                    "--provider",
                    provider,
                    "--port",
                    str(free_port()),
                    "--count",
                    "60",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
        for _ in range(300):
            out.seek(0)
            line = next((ln for ln in out.read().splitlines() if "http://" in ln), None)
            if line is not None:
                match = re.match(r"(\w+)\s+(http://\S+)\s+\((.*); control", line)
                assert match, line
                creds = dict(item.split("=", 1) for item in match.group(3).split(", "))
                sims[match.group(1)] = (match.group(2), creds)
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"the {provider} simulator did not start")
    return processes, sims


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--transport", choices=["default", "aiohttp"], default=None)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tokengate-bench-"))
    sim_processes, sims = start_simulators(workdir)
    env = {**os.environ, "TOKENGATE_BOOTSTRAP_TOKEN": SECRET}
    if args.transport:
        env["TOKENGATE_HTTP_TRANSPORT"] = args.transport
    amper_url, amper = sims["amper"]
    oauth_url, oauth = sims["oauth"]
    losant_url, losant = sims["losant"]
    env.update(
        B_AMPER=amper["token"],
        B_ID=oauth["client_id"],
        B_SECRET=oauth["client_secret"],
        B_LOSANT=losant["token"],
    )
    app_id = losant["application_ids"].split(",")[0] if "application_ids" in losant else None
    config = workdir / "bench.toml"
    config.write_text(
        f"""[store]\nurl = "sqlite:///bench.db"\n[limits]\nrate_per_s = 1000000\nburst = 1000000\n
[[sources]]\nkey = "amper"\nprovider = "amper"\nbase_url = "{amper_url}"\ntoken_env = "B_AMPER"\n
[[sources]]\nkey = "idp"\nprovider = "oauth"\nbase_url = "{oauth_url}"\nclient_id_env = "B_ID"\nclient_secret_env = "B_SECRET"\n
[[sources]]\nkey = "fleet"\nprovider = "losant"\nbase_url = "{losant_url}"\napplication_id = "{app_id}"\ntoken_env = "B_LOSANT"\n"""
    )
    port = free_port()
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "gateway.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/readyz")
        for sim_url, _ in sims.values():
            httpx.post(f"{sim_url}/_sim/faults", json={"faults": [], "latency_ms": args.latency_ms})
        with httpx.Client(headers={"Authorization": f"Bearer {SECRET}"}, timeout=30) as client:
            for _ in range(20):  # warm-up: connections, caches
                client.post(f"{url}/graphql", json={"query": QUERY}).raise_for_status()
            for sim_url, _ in sims.values():
                httpx.delete(f"{sim_url}/_sim/requests")
            samples = []
            for _ in range(args.requests):
                started = time.perf_counter()
                response = client.post(f"{url}/graphql", json={"query": QUERY})
                samples.append((time.perf_counter() - started) * 1000)
                body = response.json()
                assert "errors" not in body, body
                assert len(body["data"]["tokens"]["edges"]) == 20
        upstream = sum(
            len(httpx.get(f"{sim_url}/_sim/requests").json()["requests"])
            for sim_url, _ in sims.values()
        )
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
        for process in sim_processes:
            process.terminate()
            process.wait(timeout=30)
    samples.sort()
    p50 = statistics.median(samples)
    p90 = samples[int(len(samples) * 0.9) - 1]
    p99 = samples[int(len(samples) * 0.99) - 1]
    target = args.latency_ms + 5
    per_page = upstream / args.requests
    print(
        f"transport: {args.transport or 'default'}; pages: {args.requests}; upstream latency {args.latency_ms:.0f} ms"
    )
    print(
        f"latency p50 {p50:.1f} ms, p90 {p90:.1f} ms, p99 {p99:.1f} ms (target p50 <= {target:.0f} ms)"
    )
    print(f"p50 overhead over the slowest upstream: {p50 - args.latency_ms:.1f} ms")
    print(f"upstream requests per page: {per_page:.2f} (upstream sources: 3)")
    print("PASS" if p50 <= target and per_page <= 3 else "MISS")


if __name__ == "__main__":
    main()
