"""``tokengate export``: the inventory from a running gateway's ``GET /export``.

The command is a client of the gateway, not of the store: the gateway holds the upstream
credentials and decides what the caller may read, so the export holds exactly what the
same token sees through the API. The credential comes from ``$TOKENGATE_TOKEN`` (never
an argument: command lines are visible to every user of the machine), the gateway's URL
from ``--url``, else ``$TOKENGATE_EXPORT_URL``, else ``http://127.0.0.1:8000``.

The answer is copied as it streams (to ``--output`` or standard output), trailer
included; the trailer decides the exit status.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import IO, Any

import httpx
import orjson

from tokengate.gateway.export import CSV, CSV_TRAILER_PREFIX, NDJSON

TOKEN_ENV = "TOKENGATE_TOKEN"  # noqa: S105 - the name of a variable, not a secret
URL_ENV = "TOKENGATE_EXPORT_URL"
DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_OK = 0
EXIT_FAILED = 1  # a source failed (the file lacks some of its tokens), or the export did
EXIT_USAGE = 2
EXIT_SKIPPED = 3  # nothing failed, but the filter could not be asked of some source
# What is kept of the answer's end to read the trailer from.
_TAIL_BYTES = 1 << 20
# Between two chunks of the answer: a page of the slowest source, retries included.
READ_TIMEOUT_S = 300.0


def add_parser(sub: Any) -> None:
    export = sub.add_parser(
        "export",
        help="stream the token inventory of a running gateway as CSV or JSON lines "
        f"(credential in ${TOKEN_ENV}; needs tokens:admin)",
    )
    export.add_argument("--format", choices=["csv", "jsonl"], required=True)
    export.add_argument(
        "--filter",
        help="a TokenFilter as JSON, as in the tokens query, e.g. '{\"neverUsed\": true}'",
    )
    export.add_argument("--url", help=f"the gateway (default: ${URL_ENV}, else {DEFAULT_URL})")
    export.add_argument("--output", "-o", help="write here instead of standard output")
    export.set_defaults(func=run)


def read_trailer(tail: bytes, fmt: str) -> dict[str, Any] | None:
    """The trailer object of an answer ending in ``tail``, or None when it has none (the
    answer was cut short)."""
    lines = tail.rstrip(b"\r\n").rsplit(b"\n", 1)
    last = lines[-1].rstrip(b"\r")
    if fmt == "csv":
        prefix = CSV_TRAILER_PREFIX.encode()
        if not last.startswith(prefix):
            return None
        last = last[len(prefix) :]
    try:
        parsed = orjson.loads(last)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("failedSources"), list):
        return None
    return parsed


def exit_status(trailer: dict[str, Any] | None) -> int:
    if trailer is None:
        return EXIT_FAILED
    failed = trailer["failedSources"]
    if any(not f.get("skipped") for f in failed):
        return EXIT_FAILED
    return EXIT_SKIPPED if failed else EXIT_OK


def _say(message: str) -> None:
    print(f"tokengate export: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    secret = os.environ.get(TOKEN_ENV, "").strip()
    if not secret:
        _say(f"set {TOKEN_ENV} to a tokens:admin token of the gateway")
        return EXIT_USAGE
    base = (args.url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
    params = {"filter": args.filter} if args.filter else {}
    headers = {
        "Authorization": f"Bearer {secret}",
        "Accept": CSV if args.format == "csv" else NDJSON,
    }
    timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_S)
    try:
        with (
            httpx.Client(timeout=timeout) as client,
            client.stream("GET", f"{base}/export", params=params, headers=headers) as answer,
        ):
            if answer.status_code != 200:
                answer.read()
                _say(f"HTTP {answer.status_code}: {_message(answer.content)}")
                return EXIT_USAGE if answer.status_code in (400, 406) else EXIT_FAILED
            tail = _copy(answer, args.output)
    except httpx.HTTPError as exc:
        _say(f"the gateway at {base} could not be read: {type(exc).__name__}")
        return EXIT_FAILED
    trailer = read_trailer(tail, args.format)
    _report(trailer)
    return exit_status(trailer)


def _copy(answer: httpx.Response, output: str | None) -> bytes:
    tail = b""
    sink: IO[bytes]
    with open(Path(output), "wb") if output else _stdout() as sink:
        for chunk in answer.iter_bytes():
            sink.write(chunk)
            tail = (tail + chunk)[-_TAIL_BYTES:]
        sink.flush()
    return tail


class _stdout:
    """Standard output's bytes, left open at the end."""

    def __enter__(self) -> IO[bytes]:
        return sys.stdout.buffer

    def __exit__(self, *_exc: object) -> None:
        sys.stdout.buffer.flush()


def _message(body: bytes) -> str:
    try:
        return str(orjson.loads(body)["errors"][0]["message"])
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return "no readable answer"


def _report(trailer: dict[str, Any] | None) -> None:
    if trailer is None:
        _say("the answer ended without its trailer: the export was cut short")
        return
    _say(f"{trailer.get('count')} token(s) exported")
    for failure in trailer["failedSources"]:
        kind = "skipped" if failure.get("skipped") else "FAILED"
        _say(
            f"{kind}: source {failure.get('source')} ({failure.get('reason')}, "
            f"{failure.get('exported')} exported): {failure.get('message')}"
        )


__all__ = ["add_parser", "exit_status", "read_trailer", "run"]
