"""Hostile documents and bodies are refused before any costly step, over real loopback HTTP,
while another client's /healthz keeps answering.

Bounds here are generous (seconds); the hostile inputs are sized so that unbounded work
would take far longer (the 30-level fragment document: 2^30 expansions). Real timings come
from benchmarks/hostile.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import BOOTSTRAP, UNLIMITED, Gateway, gateway_config
from tokengate.gateway.app import create_app
from tokengate.upstreams.loopback import serve_in_thread
from tokengate.upstreams.service import TokenService

pytestmark = pytest.mark.slow

GENEROUS_S = 2.0
MB = 1024 * 1024


@pytest.fixture
def no_execution(monkeypatch: pytest.MonkeyPatch) -> None:
    async def must_not_run(*_a: object, **_k: object) -> None:
        raise AssertionError("a refused operation executed")

    monkeypatch.setattr(TokenService, "list_tokens", must_not_run)
    monkeypatch.setattr(TokenService, "load_tokens", must_not_run)


@contextmanager
def healthz_watch(gateway: Gateway) -> Iterator[list[float]]:
    """A second client polling /healthz on its own connection; yields the latencies seen."""
    latencies: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                started = time.perf_counter()
                client.get(f"{gateway.url}/healthz").raise_for_status()
                latencies.append(time.perf_counter() - started)
                time.sleep(0.01)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    while not latencies:
        time.sleep(0.005)
    try:
        yield latencies
    finally:
        stop.set()
        thread.join(timeout=60)


def post(gateway: Gateway, payload: object, timeout: float = 10) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/graphql",
        content=orjson.dumps(payload),
        headers={
            "Authorization": f"Bearer {gateway.admin_secret}",
            "Content-Type": "application/json",
        },
        timeout=timeout,
    )


def refusal(response: httpx.Response, status: int = 200) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body.get("data") is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    message: str = error["message"]
    return message


def exponential_fragments(levels: int) -> str:
    parts = ["query { ...F0 }"]
    parts += [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)]
    parts.append(f"fragment F{levels} on Query {{ sources {{ key }} }}")
    return " ".join(parts)


def test_exponential_fragments_refused_while_healthz_answers(
    gateway: Gateway, no_execution: None
) -> None:
    with healthz_watch(gateway) as latencies:
        started = time.perf_counter()
        response = post(gateway, {"query": exponential_fragments(30)})
        elapsed = time.perf_counter() - started
        time.sleep(0.05)
    assert "selections once fragments are expanded" in refusal(response)
    assert elapsed < GENEROUS_S
    assert max(latencies) < GENEROUS_S


@pytest.mark.parametrize(
    "query",
    [
        "{ sources { " + "key " * 1000 + "} }",
        "{ " + "__typename " * 600 + "}",
        "query { ...A ...B } fragment A on Query { "
        + "__typename " * 150
        + "} fragment B on Query { "
        + "__typename " * 150
        + "}",
    ],
    ids=["field", "typename", "through-fragments"],
)
def test_repeated_field_refused_before_validation(gateway: Gateway, query: str) -> None:
    # graphql-core compares every pair of same-named fields: never let it see hundreds.
    assert "the same field" in refusal(post(gateway, {"query": query}))


@pytest.mark.parametrize(
    "query",
    [
        "{ " + " ".join("sources { " + "key " * 99 + "}" for _ in range(19)) + " }",
        "query { "
        + " ".join(f"...F{i}" for i in range(19))
        + " } "
        + " ".join(f"fragment F{i} on Query {{ sources {{ {'key ' * 99}}} }}" for i in range(19)),
    ],
    ids=["under-repeated-parents", "through-fragments"],
)
def test_same_response_path_under_many_parents_refused(gateway: Gateway, query: str) -> None:
    """Under every per-set limit (99 repeats, 1,900 selections), 19 parents of the same
    name each repeating one field still cost validation ~150-300 ms pairing them up."""
    with healthz_watch(gateway) as latencies:
        response = post(gateway, {"query": query})
        time.sleep(0.05)
    assert "same response paths" in refusal(response)
    assert max(latencies) < GENEROUS_S


def test_fields_repeated_through_a_few_fragments_still_run(gateway: Gateway) -> None:
    """What Relay and Apollo send: the same fields from several fragments."""
    fragments = " ".join(f"fragment F{i} on Source {{ key name provider }}" for i in range(20))
    spreads = " ".join(f"...F{i}" for i in range(20))
    body = post(gateway, {"query": f"{{ sources {{ {spreads} }} }} {fragments}"}).json()
    assert "errors" not in body, body


def test_selection_cap_counts_the_whole_document(gateway: Gateway) -> None:
    many_fragments = (
        "query { "
        + " ".join(f"...F{i}" for i in range(1100))
        + " } "
        + " ".join(f"fragment F{i} on Query {{ __typename }}" for i in range(1100))
    )
    assert "selections" in refusal(post(gateway, {"query": many_fragments}))
    many_operations = " ".join(f"query Q{i} {{ __typename }}" for i in range(1900))
    message = refusal(post(gateway, {"query": many_operations, "operationName": "Q1899"}))
    assert "selections" in message


def test_token_limit(gateway: Gateway) -> None:
    just_over = "{ " + "__typename " * 10_000 + "}"  # 10,002 tokens
    assert "more than 10000 lexical tokens" in refusal(post(gateway, {"query": just_over}))
    huge = "{ " + "a " * 300_000 + "}"
    with healthz_watch(gateway) as latencies:
        started = time.perf_counter()
        response = post(gateway, {"query": huge})
        elapsed = time.perf_counter() - started
    assert "lexical tokens" in refusal(response)
    assert elapsed < GENEROUS_S and max(latencies) < GENEROUS_S
    # Comments are not tokens; within the limit the document runs as usual.
    assert gateway.data("# " + "x" * 1000 + "\n{ __typename }") == {"__typename": "Query"}


def test_long_string_literal_refused_unparsed(gateway: Gateway) -> None:
    query = '{ tokens(filter: {name: "' + "x" * 900_000 + '"}) { totalCount } }'
    assert "characters long" in refusal(post(gateway, {"query": query}))


@pytest.mark.parametrize("levels", [20, 150, 1500])
def test_nested_inline_fragments(gateway: Gateway, levels: int) -> None:
    query = "{ " + "... on Query { " * levels + "__typename" + " }" * levels + " }"
    assert "levels deep" in refusal(post(gateway, {"query": query}))


def test_deeply_nested_values_refused(gateway: Gateway) -> None:
    query = "{ tokens(filter: {sources: " + "[" * 400 + '"a"' + "]" * 400 + "}) { totalCount } }"
    assert "too deeply" in refusal(post(gateway, {"query": query}))


def test_huge_variables_refused(gateway: Gateway, no_execution: None) -> None:
    query = "query($f: TokenFilter) { tokens(filter: $f) { totalCount } }"
    as_list = {"f": {"sources": ["a"] * 200_000}}
    message = refusal(post(gateway, {"query": query, "variables": as_list}))
    assert "variables hold more than 10000 values" in message
    as_object = {"f": {f"k{i}": 1 for i in range(50_000)}}
    assert "variables hold" in refusal(post(gateway, {"query": query, "variables": as_object}))


def test_deep_json_body_is_a_json_400(gateway: Gateway) -> None:
    body = b'{"query": "{ __typename }", "variables": {"v": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    response = httpx.post(
        f"{gateway.url}/graphql",
        content=body,
        headers={
            "Authorization": f"Bearer {gateway.admin_secret}",
            "Content-Type": "application/json",
        },
    )
    assert "JSON" in refusal(response, 400)


def _raw_request(gateway: Gateway, head: bytes, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """Send ``head`` (and some of a body) on a raw socket and read the answer without ever
    finishing the upload: an answer proves the server did not wait for the rest."""
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head + body)
        received = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            received += data
            head_part, _, rest = received.partition(b"\r\n\r\n")
            if rest and b"content-length:" in head_part.lower():
                length = int(head_part.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(rest) >= length:
                    break
    head_part, _, rest = received.partition(b"\r\n\r\n")
    status = int(head_part.split(b" ")[1])
    assert b"connection: close" in head_part.lower()
    payload: dict[str, Any] = orjson.loads(rest)
    return status, payload


def test_declared_body_over_the_limit_answers_413_before_the_upload(gateway: Gateway) -> None:
    head = (
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {gateway.admin_secret}\r\n".encode()
        + f"Content-Length: {60 * MB}\r\n\r\n".encode()
    )
    status, payload = _raw_request(gateway, head, b'{"query": "')
    assert status == 413
    assert payload["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_chunked_body_over_the_limit_answers_413_unfinished(gateway: Gateway) -> None:
    head = (
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {gateway.admin_secret}\r\n".encode()
        + b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b" " * (256 * 1024)
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5))  # 1.25 MiB
    status, payload = _raw_request(gateway, head, body)  # never the final 0-size chunk
    assert status == 413
    assert payload["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.fixture
def small_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    """A gateway whose body limit is 4 KiB."""
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    config = gateway_config(tmp_path, limits=replace(UNLIMITED, max_body_bytes=4096))
    with serve_in_thread(create_app(config)) as url:
        yield Gateway(url=url, admin_secret=BOOTSTRAP, config=config)


def test_query_string_and_body_limits_are_configurable(small_gateway: Gateway) -> None:
    auth = {"Authorization": f"Bearer {small_gateway.admin_secret}"}
    url = f"{small_gateway.url}/graphql"
    pad = "x" * 4096
    response = httpx.get(url, params={"query": "{ __typename }", "pad": pad}, headers=auth)
    assert "query string" in refusal(response, 414)
    ok = httpx.get(url, params={"query": "{ __typename }"}, headers=auth)
    assert ok.json() == {"data": {"__typename": "Query"}}
    response = httpx.post(url, json={"query": "{ __typename }", "pad": pad}, headers=auth)
    assert "request body" in refusal(response, 413)


def test_body_within_the_limit_still_runs(gateway: Gateway) -> None:
    padded = {"query": "{ __typename }", "extensions": {"pad": "x" * (MB - 1000)}}
    response = post(gateway, padded)
    assert response.status_code == 200 and response.json()["data"] == {"__typename": "Query"}


def test_graphiql_never_persists_headers(gateway: Gateway) -> None:
    page = httpx.get(f"{gateway.url}/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    # The page's init script (ours, served by the gateway; tests/browser checks the storage).
    init = httpx.get(f"{gateway.url}/graphiql/assets/tokengate-graphiql.js").text
    assert "shouldPersistHeaders: false" in init
    assert "shouldPersistHeaders: true" not in init
