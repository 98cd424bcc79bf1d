"""The inventory export's memory and speed (run by hand): is the gateway's memory flat in
the number of tokens exported?

    python benchmarks/export_memory.py [--sizes 10000,100000] [--rounds 2] [--format csv|jsonl]
                                       [--ab REF]

One ``tokengate serve`` process per size, each on its own SQLite store seeded with that
many internal tokens (ties and nulls on every date, as the tests seed), all running at
once. Rounds alternate the sizes (10k, 100k, 10k, 100k...) so that shared load falls on
each alike. Each export is read to the end over one connection (no gzip) while the gateway's
resident set (``VmRSS`` in ``/proc/PID/status``) is sampled every 10 ms; printed per
export: tokens, bytes, seconds, tokens/s, RSS before the export and its peak during it.
Flat memory means the peak over the before-RSS does not grow with the size.

``--ab REF``: for each size a second gateway from git ref REF (``git archive``) on the same
store file; rounds alternate REF, this tree / this tree, REF, and print both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tokengate.gateway.export import CSV_TRAILER_PREFIX
from tokengate.upstreams.loopback import free_port

SECRET = "bench-bootstrap-token-0123456789"
ACCEPT = {"csv": "text/csv", "jsonl": "application/x-ndjson"}
BASE = datetime(2025, 1, 1, tzinfo=UTC)


async def _seed(url: str, count: int) -> None:
    from tokengate.upstreams.store import create_engine, migrate
    from tokengate.upstreams.store.source import to_us
    from tokengate.upstreams.store.tables import token_scopes, tokens

    engine = create_engine(url)
    await migrate(engine)
    rng = random.Random(7)
    try:
        for start in range(0, count, 5000):
            rows, scopes = [], []
            for i in range(start, min(count, start + 5000)):
                token_id = secrets.token_hex(16)
                created = BASE + timedelta(minutes=rng.randrange(500_000))
                used = None if i % 3 == 0 else created + timedelta(days=rng.randrange(300))
                expires = None if i % 3 == 1 else created + timedelta(days=rng.randrange(900))
                name = f"token-{i % 977}"
                rows.append(
                    {
                        "id": token_id,
                        "name": name,
                        "name_key": name,
                        "description": None,
                        "scopes": json.dumps(["tokens:read"]),
                        "subject": rng.choice([None, "user-a", "user-b"]),
                        "allowed_sources": None,
                        "status": "ACTIVE",
                        "created_at": to_us(created),
                        "updated_at": to_us(created),
                        "last_used_at": None if used is None else to_us(used),
                        "expires_at": None if expires is None else to_us(expires),
                        "secret_hash": secrets.token_hex(32),
                        "secret_hint": "tg_seed…",
                        "is_bootstrap": False,
                        "created_by": None,
                    }
                )
                scopes.append({"token_id": token_id, "scope": "tokens:read"})
            async with engine.begin() as conn:
                await conn.execute(tokens.insert(), rows)
                await conn.execute(token_scopes.insert(), scopes)
    finally:
        await engine.dispose()


@contextmanager
def gateway(
    workdir: Path, count: int, code: Path | None = None, label: str = "B"
) -> Iterator[tuple[str, int]]:
    """A served gateway over a store of ``count`` tokens (seeded by the first gateway of
    that size), from the source tree ``code`` if given: (URL, pid)."""
    store = workdir / f"store-{count}.db"
    if not store.exists():
        asyncio.run(_seed(f"sqlite:///{store}", count))
    port = free_port()
    config = workdir / f"gateway-{count}-{label}.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nmetrics = false\n'
        f'[store]\nurl = "sqlite:///{store}"\nkey_file = "{workdir / "key"}"\n'
        "[limits]\nrate_per_s = 1000\nburst = 1000\n"
    )
    env = {**os.environ, "TOKENGATE_BOOTSTRAP_TOKEN": SECRET}
    if code is not None:  # that tree imports itself as tokengate.* through its links
        env["PYTHONPATH"] = str(code / ".typecheck")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokengate.gateway.cli",
            "serve",
            "--config",
            str(config),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=code,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("the gateway did not start")
            time.sleep(0.2)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def export_once(url: str, pid: int, fmt: str) -> dict[str, float]:
    peak = before = rss_kib(pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kib(pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    size = 0
    tail = b""
    started = time.perf_counter()
    headers = {
        "Authorization": f"Bearer {SECRET}",
        "Accept": ACCEPT[fmt],
        "Accept-Encoding": "identity",
    }
    try:
        with httpx.stream("GET", f"{url}/export", headers=headers, timeout=600) as answer:
            answer.raise_for_status()
            for chunk in answer.iter_raw():
                size += len(chunk)
                tail = (tail + chunk)[-4096:]
    finally:
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    last = tail.rstrip(b"\r\n").rsplit(b"\n", 1)[-1].decode()
    trailer = json.loads(last.removeprefix(CSV_TRAILER_PREFIX))
    assert trailer["complete"], trailer
    return {
        "tokens": trailer["count"],
        "bytes": size,
        "seconds": seconds,
        "before_mib": before / 1024,
        "peak_mib": peak / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--format", choices=list(ACCEPT), default="csv")
    parser.add_argument("--ab", metavar="REF", help="pair with a gateway from git ref REF")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="tokengate-export-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        trees: list[tuple[str, Path | None]] = [("B", None)]
        if args.ab:
            ref = work / "ref"
            ref.mkdir()
            root = Path(__file__).resolve().parents[1]
            archive = subprocess.run(
                ["git", "-C", str(root), "archive", args.ab], capture_output=True, check=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(ref)], input=archive, check=True)
            trees.insert(0, ("A", ref))
            print(f"A = {args.ab}, B = this tree")
        servers = {
            (n, label): stack.enter_context(gateway(work, n, code, label))
            for n in sizes
            for label, code in trees
        }
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        print("round  tree  tokens    bytes        s  tokens/s  RSS before  RSS peak  peak-before")
        for round_ in range(args.rounds):
            for n in sizes:
                for label, _code in trees if round_ % 2 == 0 else trees[::-1]:
                    url, pid = servers[(n, label)]
                    r = export_once(url, pid, args.format)
                    print(
                        f"{round_:5}  {label:4}  {r['tokens']:6.0f}  {r['bytes']:9.0f}  {r['seconds']:7.2f}"
                        f"  {r['tokens'] / r['seconds']:8.0f}  {r['before_mib']:8.1f} MiB"
                        f"  {r['peak_mib']:6.1f} MiB  {r['peak_mib'] - r['before_mib']:7.1f} MiB",
                        flush=True,
                    )
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
