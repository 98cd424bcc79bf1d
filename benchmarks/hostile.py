"""Hostile documents and bodies (run by hand): how long each takes to be refused, and how long
a concurrent ``/healthz`` waits meanwhile.

    python benchmarks/hostile.py [--only NAME ...] [--skip NAME ...] [--timeout 30]

Starts ``tokengate serve`` on loopback (SQLite store in a temporary directory, a bootstrap
token, no upstreams), then for each family sends the hostile request while a second client
(its own thread and connection) polls ``/healthz`` every 5 ms. Prints, per family: the HTTP
status and ``extensions.code`` of the answer, the time to the answer, the slowest
``/healthz`` answer during that time, and the gateway's RSS before and after.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from tokengate.upstreams.loopback import free_port

SECRET = "hostile-bootstrap-token-0123456789"
MB = 1024 * 1024


@dataclass
class Outcome:
    status: int | str
    code: str
    seconds: float


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _code(raw: bytes) -> str:
    try:
        body = orjson.loads(raw)
        return str(body["errors"][0]["extensions"]["code"])
    except (ValueError, KeyError, IndexError, TypeError):  # not a GraphQL error body
        return "(no GraphQL error: " + raw[:60].decode("latin-1", "replace") + ")"


def post_json(payload: object, timeout: float) -> Callable[[str], Outcome]:
    """A sender of ``payload``, encoded now (before the clock and the poller start)."""
    body = orjson.dumps(payload)
    return lambda base: post_raw(base, body, timeout)


# One client, connected before the first family, so no family pays for connecting.
CLIENT = httpx.Client()


def post_raw(base: str, body: bytes, timeout: float) -> Outcome:
    started = time.perf_counter()
    try:
        response = CLIENT.post(
            f"{base}/graphql",
            content=body,
            headers={"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"},
            timeout=timeout,
        )
    except httpx.TimeoutException:
        return Outcome("timeout", "-", time.perf_counter() - started)
    except httpx.TransportError as exc:
        return Outcome(type(exc).__name__, "-", time.perf_counter() - started)
    return Outcome(response.status_code, _code(response.content), time.perf_counter() - started)


def big_upload(base: str, size: int, chunked: bool, timeout: float) -> Outcome:
    """A raw-socket upload of ``size`` bytes; the clock stops at the answer's first bytes,
    whether or not the upload finished (a sender thread keeps writing)."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    framing = b"Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}".encode()
    head = (
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {SECRET}\r\n".encode()
        + framing
        + b"\r\n\r\n"
    )
    piece = b"{" + b" " * (64 * 1024 - 1)

    def sender() -> None:
        try:
            sent = 0
            while sent < size:
                chunk = piece[: size - sent]
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                sent += len(chunk)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass

    started = time.perf_counter()
    sock.sendall(head)
    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    received = b""
    try:
        while b"\r\n\r\n" not in received:
            data = sock.recv(65536)
            if not data:
                break
            received += data
        elapsed = time.perf_counter() - started
        head_part, _, rest = received.partition(b"\r\n\r\n")
        status: int | str = int(head_part.split(b" ")[1]) if head_part else "closed"
        while len(rest) < 20 and (data := sock.recv(65536)):
            rest += data
    except TimeoutError:
        return Outcome("timeout", "-", time.perf_counter() - started)
    except OSError as exc:
        return Outcome(type(exc).__name__, "-", time.perf_counter() - started)
    finally:
        sock.close()
    return Outcome(status, _code(rest), elapsed)


def fragments_exponential(levels: int) -> dict[str, object]:
    parts = ["query { ...F0 }"]
    parts += [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)]
    parts.append(f"fragment F{levels} on Query {{ sources {{ key }} }}")
    return {"query": " ".join(parts)}


def families(timeout: float) -> dict[str, Callable[[], Callable[[str], Outcome]]]:
    """Each family: a builder of its sender (built outside the measured time)."""
    many_fragments = (
        "query { "
        + " ".join(f"...F{i}" for i in range(1100))
        + " } "
        + " ".join(f"fragment F{i} on Query {{ __typename }}" for i in range(1100))
    )
    nested = "{ " + "... on Query { " * 150 + "__typename" + " }" * 150 + " }"
    too_nested = "{ " + "... on Query { " * 1500 + "__typename" + " }" * 1500 + " }"
    many_ops = " ".join(f"query Q{i} {{ __typename }}" for i in range(1900))
    deep_json = b'{"query": "{ __typename }", "variables": {"v": ' + b"[" * 5000
    deep_json += b"]" * 5000 + b"}}"
    filter_query = "query($f: TokenFilter) { tokens(filter: $f) { totalCount } }"
    return {
        "exp-fragments-21": lambda: post_json(fragments_exponential(21), timeout),
        "exp-fragments-30": lambda: post_json(fragments_exponential(30), timeout),
        "repeated-field-1000": lambda: post_json(
            {"query": "{ sources { " + "key " * 1000 + "} }"}, timeout
        ),
        "same-path-19x99": lambda: post_json(
            {"query": "{ " + " ".join("sources { " + "key " * 99 + "}" for _ in range(19)) + " }"},
            timeout,
        ),
        "repeated-typename-1000": lambda: post_json(
            {"query": "{ " + "__typename " * 1000 + "}"}, timeout
        ),
        "tokens-300k": lambda: post_json({"query": "{ " + "a " * 300_000 + "}"}, timeout),
        "body-60mb": lambda: lambda u: big_upload(u, 60 * MB, chunked=False, timeout=timeout),
        "body-60mb-chunked": lambda: (
            lambda u: big_upload(u, 60 * MB, chunked=True, timeout=timeout)
        ),
        "deep-json-5000": lambda: lambda u: post_raw(u, deep_json, timeout),
        "many-fragments-1100": lambda: post_json({"query": many_fragments}, timeout),
        "nested-inline-150": lambda: post_json({"query": nested}, timeout),
        "nested-inline-1500": lambda: post_json({"query": too_nested}, timeout),
        "variables-list-200k": lambda: post_json(
            {"query": filter_query, "variables": {"f": {"sources": ["a"] * 200_000}}}, timeout
        ),
        "variables-object-50k": lambda: post_json(
            {"query": filter_query, "variables": {"f": {f"k{i}": 1 for i in range(50_000)}}},
            timeout,
        ),
        "string-literal-900k": lambda: post_json(
            {"query": '{ tokens(filter: {name: "' + "x" * 900_000 + '"}) { totalCount } }'},
            timeout,
        ),
        "many-operations-1900": lambda: post_json(
            {"query": many_ops, "operationName": "Q1899"}, timeout
        ),
    }


class HealthPoller:
    """A second client on its own connection: the slowest /healthz answer while active."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.worst = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=120) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                client.get(f"{self.base}/healthz").raise_for_status()
                self.worst = max(self.worst, time.perf_counter() - started)
                self.samples += 1
                time.sleep(0.005)

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        while self.samples < 3:  # connected and warm before the hostile request leaves
            time.sleep(0.005)
        self.worst = 0.0
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=130)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--skip", nargs="*", default=[])
    parser.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tokengate-hostile-"))
    config = workdir / "hostile.toml"
    config.write_text(
        '[store]\nurl = "sqlite:///hostile.db"\n\n[limits]\nrate_per_s = 1000000\nburst = 1000000\n'
    )
    port = free_port()
    log = (workdir / "gateway.log").open("w+")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokengate.gateway.cli",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
        ],
        env={**os.environ, "TOKENGATE_BOOTSTRAP_TOKEN": SECRET, "TOKENGATE_SHUTDOWN_DELAY_S": "0"},
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        CLIENT.get(f"{base}/healthz")
        post_json({"query": "{ __typename }"}, args.timeout)(base)  # first-request costs
        print(f"{'family':24} {'status':>8} {'code':18} {'answer':>10} {'healthz max':>12}  RSS MB")
        for name, build in families(args.timeout).items():
            if (args.only and name not in args.only) or name in args.skip:
                continue
            send = build()
            before = rss_mb(process.pid)
            with HealthPoller(base) as poller:
                outcome = send(base)
            after = rss_mb(process.pid)
            print(
                f"{name:24} {outcome.status!s:>8} {outcome.code[:18]:18} "
                f"{outcome.seconds * 1000:8.1f}ms {poller.worst * 1000:10.1f}ms  "
                f"{before:.0f} -> {after:.0f}",
                flush=True,
            )
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
