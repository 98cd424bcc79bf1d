"""tokengate against GraphQL Mesh on the same upstreams (run by hand; issue 14).

    python benchmarks/vs_mesh.py [--mesh-dir DIR] [--mesh-copy DIR] [--runs 3]
                                 [--duration 10] [--connections 16] [--warmup 15]
                                 [--single-runs 3] [--single-duration 5] [--pin]
                                 [--only tokengate|mesh] [--py-spy FILE]

Starts tokengate's three simulators (``tokengate simulate``, one process each, no added
latency), GraphQL Mesh over them (the peer in ``shared/peers/mesh`` beside the repository,
or ``--mesh-dir``: copied to a temporary directory, or to ``--mesh-copy DIR`` which is kept
and reused, and set up there with its ``setup.sh``: npm ci, wrk), and ``tokengate serve``
over the same simulators (one process, defaults, a SQLite store). Then, with wrk and the
peer's ``bench.lua``:

- a warm-up of ``--warmup`` seconds at ``--connections`` for each gateway (Node's JIT keeps
  getting faster over its first tens of seconds);
- ``--runs`` runs of ``--duration`` seconds at ``--connections`` for each gateway,
  alternating (Mesh, tokengate, then tokengate, Mesh, ...): req/s, p50/p99, the gateway
  process's CPU (all threads, /proc) per request and its CPU share, and the simulators'
  CPU share (when they near a core of their own, they are the limit, not the gateway);
- ``--single-runs`` runs of ``--single-duration`` seconds at one connection, alternating:
  the p50 of one caller at a time.

It ends with each gateway's medians and the ratios of tokengate's to Mesh's. Both queries
are "the first 20 tokens of each source": Mesh's ``query.graphql`` (one root field per
upstream, three upstream GETs, 70 items) and tokengate's one merged page
``tokens(first: 20, filter: {userId}, orderBy: {field: CREATED_AT, direction: DESC})``
over the three upstreams and the internal store (20 items). An answer with an HTTP status
other than 200 or with GraphQL ``errors`` is counted and printed with its run.

``--pin`` puts both gateways on the last CPU and the simulators and wrk on the others
(default: no pinning, as a user would run them). ``--only`` runs one gateway (no Mesh
set-up for ``--only tokengate``; the peer's folder is still read for ``bench.lua``).
``--py-spy FILE`` adds one tokengate run after the measured ones, not counted, during which
py-spy (``pip install py-spy``; root or ptrace rights) samples the process into FILE in
its raw format (collapsed stacks); ``benchmarks/profile_layers.py FILE`` splits it by
layer.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from fanout import SECRET, gateway_env, start_simulators, wait_ready, write_config

from tokengate.upstreams.loopback import free_port
from tokengate.upstreams.oauth.simulator import WALK_USER

ROOT = Path(__file__).resolve().parents[1]
PEER = Path("shared", "peers", "mesh")

TOKENGATE_QUERY = """
query FirstTwentyMerged($userId: String!) {
  tokens(first: 20, filter: {userId: $userId}, orderBy: {field: CREATED_AT, direction: DESC}) {
    edges { node { id name provider createdAt } }
    pageInfo { hasNextPage endCursor }
    failedSources { source { key } reason }
  }
}
"""
# ``tokengate simulate``'s default (the OAuth-style user then holds 30 tokens: Mesh's page
# has 70 items).
SIMULATED_TOKENS = 30
RESULT = re.compile(r"^RESULT (.*)$", re.MULTILINE)
REQUESTS = re.compile(r"^requests: (\d+) in ([\d.]+) s", re.MULTILINE)


def default_mesh_dir() -> Path | None:
    """``shared/peers/mesh`` beside this repository, or beside its main checkout (a git
    worktree elsewhere shares the main checkout's ``.git``)."""
    bases = [ROOT]
    common = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--path-format=absolute", "--git-common-dir"],
        capture_output=True,
        text=True,
    )
    if common.returncode == 0 and common.stdout.strip():
        bases.append(Path(common.stdout.strip()).parent)
    for base in bases:
        candidate = base.parent / PEER
        if (candidate / "package.json").is_file():
            return candidate
    return None


def install_mesh(source: Path, into: Path) -> Path:
    """A writable copy of the peer in ``into/mesh``, set up (npm ci, wrk) unless a copy
    there is already set up."""
    dest = into / "mesh"
    if (dest / "node_modules" / ".bin" / "hive-gateway").exists():
        return dest
    shutil.copytree(
        source, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("node_modules", "run")
    )
    for path in [dest, *dest.rglob("*")]:  # the shared folder may be read-only
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    print(f"setting up Mesh in {dest} (npm ci: about a minute)", flush=True)
    subprocess.run(["./setup.sh"], cwd=dest, check=True)
    return dest


def pin(cpus: set[int] | None):  # type: ignore[no-untyped-def]
    """A ``preexec_fn`` that puts the child on ``cpus`` (None: leave it)."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, as they are now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system, every thread) the processes have used so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class Gateway:
    name: str
    url: str
    body: Path
    headers: list[str]
    pids: list[int]


@dataclass
class Run:
    rps: float
    p50: float
    p99: float
    cpu_ms: float  # gateway CPU per request
    cpu_share: float  # of one core, over the run
    sims_share: float
    failed: int  # answers other than 200, or with GraphQL errors


def wrk(
    gateway: Gateway, lua: Path, connections: int, seconds: float, cpus: set[int] | None
) -> tuple[dict[str, float], int, str]:
    """One wrk run: (the RESULT line's figures, requests, wrk's output)."""
    env = {
        **os.environ,
        "BENCH_BODY": str(gateway.body),
        "BENCH_HEADERS": "\n".join(gateway.headers),
    }
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s"]
    out = subprocess.run(
        [*command, "-s", str(lua), gateway.url],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=pin(cpus),
    ).stdout
    result, requests = RESULT.search(out), REQUESTS.search(out)
    if result is None or requests is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    figures = {k: float(v) for k, v in (item.split("=") for item in result.group(1).split())}
    return figures, int(requests.group(1)), out


def measured(
    gateway: Gateway,
    lua: Path,
    connections: int,
    seconds: float,
    cpus: set[int] | None,
    sims: list[int],
) -> Run:
    before, sims_before, started = cpu_s(gateway.pids), cpu_s(sims), time.monotonic()
    figures, requests, _ = wrk(gateway, lua, connections, seconds, cpus)
    used, wall = cpu_s(gateway.pids) - before, time.monotonic() - started
    return Run(
        rps=figures["rps"],
        p50=figures["p50_ms"],
        p99=figures["p99_ms"],
        cpu_ms=used * 1000 / max(requests, 1),
        cpu_share=used / wall,
        sims_share=(cpu_s(sims) - sims_before) / wall,
        failed=int(figures["non200"] + figures["gql_errors"]),
    )


def check_answers(gateways: list[Gateway]) -> None:
    """One request to each gateway: 200, no errors, and what the page holds."""
    for gateway in gateways:
        headers = dict(h.split(": ", 1) for h in gateway.headers)
        response = httpx.post(
            gateway.url,
            content=gateway.body.read_bytes(),
            headers={**headers, "Content-Type": "application/json"},
            timeout=30,
        )
        answer = response.json()
        if response.status_code != 200 or "errors" in answer:
            raise RuntimeError(f"{gateway.name}: {response.status_code} {response.text[:500]}")
        data = answer["data"]
        if "tokens" in data:
            page = data["tokens"]
            if page["failedSources"]:
                raise RuntimeError(f"tokengate: failed sources {page['failedSources']}")
            counts = f"{len(page['edges'])} merged items"
        else:
            counts = ", ".join(
                f"{k} {len(next(v for v in value.values() if isinstance(v, list)))}"
                for k, value in data.items()
            )
            counts += " items"
        print(f"{gateway.name}: {len(response.content):,} bytes, {counts}", flush=True)


def start_tokengate(
    workdir: Path, sims: dict[str, tuple[str, dict[str, str]]], cpus: set[int] | None
) -> tuple[subprocess.Popen[bytes], str]:
    """``tokengate serve`` over the simulators, one process, default settings (log level
    included) but for a rate limit no benchmark reaches."""
    port = free_port()
    config = write_config(workdir / "tokengate.toml", sims, str(workdir / "store.db"))
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "tokengate.gateway.cli", "serve"),
            *("--config", str(config), "--port", str(port)),
        ],
        env=gateway_env(sims, "aiohttp"),
        preexec_fn=pin(cpus),
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "tokengate.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/readyz")
    return process, f"{url}/graphql"


def start_mesh(
    mesh: Path, sims: dict[str, tuple[str, dict[str, str]]], cpus: set[int] | None
) -> tuple[str, int]:
    """Mesh Compose and Hive Gateway over the simulators (the peer's run-mesh.sh):
    (its URL, its PID)."""
    env = {
        **os.environ,
        "AMPER_URL": sims["amper"][0],
        "OAUTH_URL": sims["oauth"][0],
        "LOSANT_URL": sims["losant"][0],
        "AMPER_TOKEN": sims["amper"][1]["token"],
        "OAUTH_CLIENT_ID": sims["oauth"][1]["client_id"],
        "OAUTH_CLIENT_SECRET": sims["oauth"][1]["client_secret"],
        "LOSANT_TOKEN": sims["losant"][1]["token"],
    }
    subprocess.run(
        ["./run-mesh.sh"],
        cwd=mesh,
        env=env,
        check=True,
        preexec_fn=pin(cpus),
        stdout=subprocess.DEVNULL,
    )
    url = (mesh / "run" / "env").read_text().strip().split("=", 1)[1]
    pid = int((mesh / "run" / "pids").read_text().split()[0])
    return url, pid


def median_line(name: str, runs: list[Run], singles: list[float]) -> str:
    med = statistics.median
    return (
        f"{name:9}  req/s {', '.join(f'{r.rps:.1f}' for r in runs)} (median {med(r.rps for r in runs):.1f})"
        f"; p50 {med(r.p50 for r in runs):.2f} ms, p99 {med(r.p99 for r in runs):.2f} ms"
        f"; CPU {med(r.cpu_ms for r in runs):.2f} ms/request ({med(r.cpu_share for r in runs):.0%} of a core)"
        + (f"; one connection p50 {med(singles):.2f} ms" if singles else "")
        + f"; failed answers {sum(r.failed for r in runs)}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mesh-dir", type=Path, help="the peer (default: ../shared/peers/mesh)")
    parser.add_argument("--mesh-copy", type=Path, help="set Mesh up here and keep it (reused)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds per gateway")
    parser.add_argument("--single-runs", type=int, default=3)
    parser.add_argument("--single-duration", type=float, default=5.0)
    parser.add_argument("--pin", action="store_true", help="gateways on the last CPU")
    parser.add_argument("--only", choices=["tokengate", "mesh"])
    parser.add_argument("--py-spy", type=Path, help="profile one more tokengate run into FILE")
    parser.add_argument(
        "--py-spy-arg",
        action="append",
        default=[],
        help="one more py-spy record argument, e.g. --py-spy-arg=--threads (repeatable)",
    )
    args = parser.parse_args()

    peer = args.mesh_dir or default_mesh_dir()
    if peer is None or not (peer / "bench.lua").is_file():
        parser.error("no GraphQL Mesh peer found: pass --mesh-dir (shared/peers/mesh)")
    lua = peer.resolve() / "bench.lua"
    if shutil.which("wrk") is None and args.only == "tokengate":  # setup.sh installs it
        parser.error("wrk is not installed (Debian: apt-get install wrk)")

    cpus = sorted(os.sched_getaffinity(0))
    gateway_cpus = others = None
    if args.pin and len(cpus) >= 2:
        gateway_cpus, others = {cpus[-1]}, set(cpus[:-1])
        os.sched_setaffinity(0, others)  # the simulators inherit it
    workdir = Path(tempfile.mkdtemp(prefix="tokengate-vs-mesh-"))
    mesh_home = args.mesh_copy or workdir
    mesh: Path | None = None
    sim_processes: list[subprocess.Popen[str]] = []
    tokengate: subprocess.Popen[bytes] | None = None
    try:
        if args.only != "tokengate":
            mesh = install_mesh(peer, mesh_home.resolve())
        sim_processes, sims = start_simulators(workdir, SIMULATED_TOKENS)
        sim_pids = [p.pid for p in sim_processes]
        losant = sims["losant"][1]
        app_id = losant["application_ids"].split(",")[0]
        gateways: list[Gateway] = []
        if mesh is not None:
            url, pid = start_mesh(mesh, sims, gateway_cpus)
            body = workdir / "mesh.json"
            query = (mesh / "query.graphql").read_text()
            variables = {"userId": WALK_USER, "applicationId": app_id}
            body.write_text(json.dumps({"query": query, "variables": variables}))
            gateways.append(Gateway("Mesh", url, body, [], process_tree(pid)))
        if args.only != "mesh":
            tokengate, url = start_tokengate(workdir, sims, gateway_cpus)
            body = workdir / "tokengate.json"
            body.write_text(
                json.dumps({"query": TOKENGATE_QUERY, "variables": {"userId": WALK_USER}})
            )
            auth = [f"Authorization: Bearer {SECRET}"]
            gateways.append(Gateway("tokengate", url, body, auth, [tokengate.pid]))
        check_answers(gateways)
        load = Path("/proc/loadavg").read_text().split()[:3]
        print(f"load before: {' '.join(load)} (1/5/15 min), {os.cpu_count()} cores", flush=True)
        for gateway in gateways:
            if args.warmup > 0:
                wrk(gateway, lua, args.connections, args.warmup, others)

        runs: dict[str, list[Run]] = {g.name: [] for g in gateways}
        for round_ in range(args.runs):
            for gateway in gateways if round_ % 2 == 0 else gateways[::-1]:
                run = measured(gateway, lua, args.connections, args.duration, others, sim_pids)
                runs[gateway.name].append(run)
                print(
                    f"run {round_ + 1} {gateway.name:9}: {run.rps:7.1f} req/s, p50 {run.p50:6.2f} ms,"
                    f" p99 {run.p99:6.2f} ms, CPU {run.cpu_ms:5.2f} ms/request"
                    f" ({run.cpu_share:.0%} of a core; simulators {run.sims_share:.0%})"
                    + (f"; {run.failed} FAILED answers" if run.failed else ""),
                    flush=True,
                )
        if args.py_spy and tokengate is not None:  # one more run, not counted
            spy = subprocess.Popen(
                [
                    *("py-spy", "record", "--pid", str(tokengate.pid), "--format", "raw"),
                    *("--output", str(args.py_spy), "--duration", f"{args.duration:.0f}"),
                    *("--rate", "250", "--nonblocking"),
                    *args.py_spy_arg,
                ],
                preexec_fn=pin(others),
            )
            time.sleep(1)  # py-spy attaches
            tg = next(g for g in gateways if g.name == "tokengate")
            run = measured(tg, lua, args.connections, args.duration, others, sim_pids)
            spy.wait(timeout=120)
            print(f"profiled run (py-spy attached, not counted): {run.rps:.1f} req/s", flush=True)
        singles: dict[str, list[float]] = {g.name: [] for g in gateways}
        for round_ in range(args.single_runs):
            for gateway in gateways if round_ % 2 == 0 else gateways[::-1]:
                figures, _, _ = wrk(gateway, lua, 1, args.single_duration, others)
                singles[gateway.name].append(figures["p50_ms"])
                print(
                    f"one connection {gateway.name:9}: p50 {figures['p50_ms']:.2f} ms", flush=True
                )
        load = Path("/proc/loadavg").read_text().split()[:3]
        print(f"load after: {' '.join(load)}")
        print(
            f"{args.runs} runs of {args.duration:g} s at {args.connections} connections each "
            f"(after {args.warmup:g} s of warm-up), {args.single_runs} runs of "
            f"{args.single_duration:g} s at one connection; pinned: {'yes' if gateway_cpus else 'no'}"
        )
        for gateway in gateways:
            if runs[gateway.name]:
                print(median_line(gateway.name, runs[gateway.name], singles[gateway.name]))
        if len(gateways) == 2 and args.runs > 0:
            med = statistics.median
            mesh_runs, tg_runs = runs["Mesh"], runs["tokengate"]
            ratio = med(r.rps for r in tg_runs) / med(r.rps for r in mesh_runs)
            cpu = med(r.cpu_ms for r in tg_runs) / med(r.cpu_ms for r in mesh_runs)
            line = f"tokengate / Mesh: req/s {ratio:.2f}x, CPU per request {cpu:.2f}x"
            if singles["Mesh"] and singles["tokengate"]:
                single = med(singles["tokengate"]) / med(singles["Mesh"])
                line += f", one-connection p50 {single:.2f}x"
            print(line)
    finally:
        if tokengate is not None:
            tokengate.terminate()
            tokengate.wait(timeout=30)
        if mesh is not None and (mesh / "run" / "pids").exists():
            subprocess.run(["./stop.sh"], cwd=mesh, stdout=subprocess.DEVNULL, check=False)
        for sim in sim_processes:
            sim.terminate()
            sim.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
