"""Trace context over real loopback HTTP: the caller's ``traceparent`` is continued on every
upstream request of all three simulated sources (read back from their request logs), with
the request's ``X-Request-Id``; spans land in the SDK's in-memory exporter; log lines carry
the trace id; nothing is exported unless an endpoint is configured."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import BOOTSTRAP, Gateway, gateway_config, on_root_logger
from tokengate.gateway.app import create_app
from tokengate.gateway.demo import Simulated, simulators
from tokengate.gateway.logs import JsonFormatter
from tokengate.gateway.tracing import Tracing
from tokengate.gateway.upstream_factory import http_client
from tokengate.upstreams.http_edge import UpstreamHttp
from tokengate.upstreams.loopback import serve_in_thread
from tokengate.upstreams.oauth.simulator import WALK_USER
from tokengate.upstreams.trace_context import PROPAGATING, tracer_var

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
# One query that reaches every source: the OAuth-style one only lists with a user filter.
QUERY = "query Everything($user: String!) { tokens(first: 5, filter: {userId: $user}) { edges { node { id } } failedSources { source { key } reason } } }"
VARIABLES = {"user": WALK_USER}
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


# One client for the simulators' control endpoints (a fresh client per call costs ~50 ms).
SIM = httpx.Client(timeout=10)


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, Simulated]]:
    with SIM, simulators(count=5) as running:
        yield running


@contextlib.contextmanager
def gateway(
    tmp_path: Path, sims: dict[str, Simulated], tracing: Tracing | None
) -> Iterator[Gateway]:
    config = gateway_config(tmp_path, sources=tuple(s.source for s in sims.values()))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
        with serve_in_thread(create_app(config, tracing=tracing)) as url:
            yield Gateway(url=url, admin_secret=BOOTSTRAP, config=config)


EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def exporting(
    tmp_path_factory: pytest.TempPathFactory, sims: dict[str, Simulated]
) -> Iterator[Gateway]:
    """A gateway whose spans land in ``EXPORTER``."""
    with gateway(tmp_path_factory.mktemp("exporting"), sims, Tracing.exporting_to(EXPORTER)) as gw:
        yield gw


@pytest.fixture(scope="module")
def propagating(
    tmp_path_factory: pytest.TempPathFactory, sims: dict[str, Simulated]
) -> Iterator[Gateway]:
    """A gateway without an exporter, as `tokengate serve` runs without OTEL_* settings."""
    with gateway(tmp_path_factory.mktemp("propagating"), sims, Tracing()) as gw:
        yield gw


@pytest.fixture(scope="module")
def faulted(
    tmp_path_factory: pytest.TempPathFactory, sims: dict[str, Simulated]
) -> Iterator[Gateway]:
    """Exporting to ``EXPORTER`` too; its own, for the failures its breakers count."""
    with gateway(tmp_path_factory.mktemp("faulted"), sims, Tracing.exporting_to(EXPORTER)) as gw:
        yield gw


@pytest.fixture(autouse=True)
def clean(sims: dict[str, Simulated]) -> None:
    for sim in sims.values():
        SIM.delete(f"{sim.url}/_sim/requests")
        SIM.delete(f"{sim.url}/_sim/faults")
    EXPORTER.clear()


@pytest.fixture(params=["propagating", "exporting"])
def gw(request: pytest.FixtureRequest) -> Gateway:
    """Propagation must not depend on export: both modes pass the same header tests."""
    result: Gateway = request.getfixturevalue(request.param)
    return result


def upstream_requests(sims: dict[str, Simulated]) -> dict[str, list[dict[str, Any]]]:
    """Each simulator's request log, read over HTTP, then cleared."""
    logged = {}
    for key, sim in sims.items():
        logged[key] = SIM.get(f"{sim.url}/_sim/requests").json()["requests"]
        SIM.delete(f"{sim.url}/_sim/requests")
    return logged


def traced_headers(request: dict[str, Any]) -> tuple[str, str, str]:
    """(trace id, parent span id, X-Request-Id) an upstream request carried."""
    match = TRACEPARENT.fullmatch(request["headers"].get("traceparent", ""))
    assert match, request
    return match[1], match[2], request["headers"].get("x-request-id", "")


def ask(gw: Gateway, headers: dict[str, str] | None = None) -> httpx.Response:
    response = gw.post(QUERY, VARIABLES, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    assert body["data"]["tokens"]["failedSources"] == []
    return response


def test_every_upstream_request_continues_the_callers_trace(
    gw: Gateway, sims: dict[str, Simulated]
) -> None:
    ask(gw, {"traceparent": CALLER, "X-Request-Id": "lb-7f3a-41c2"})
    logged = upstream_requests(sims)
    parents = set()
    for key, requests in logged.items():
        assert requests, f"{key} was not asked"
        for request in requests:
            trace_id, parent, request_id = traced_headers(request)
            assert (trace_id, request_id) == (TRACE_ID, "lb-7f3a-41c2"), (key, request)
            assert request["headers"]["traceparent"].endswith("-01")  # the caller sampled
            parents.add(parent)
    # Each upstream request names a span of the gateway's own as parent, not the caller's.
    assert CALLER_SPAN not in parents
    assert len(parents) == sum(map(len, logged.values()))


def test_without_traceparent_each_request_starts_a_new_trace(
    gw: Gateway, sims: dict[str, Simulated]
) -> None:
    ids = []
    for _ in range(2):
        response = ask(gw)
        logged = upstream_requests(sims)
        seen = {traced_headers(r)[::2] for requests in logged.values() for r in requests}
        assert all(logged.values())
        # One trace per incoming request, and the id the response names.
        assert seen == {(next(iter(seen))[0], response.headers["x-request-id"])}
        ids.append(next(iter(seen))[0])
    assert ids[0] != ids[1]
    assert "0" * 32 not in ids


@pytest.mark.parametrize(
    "headers",
    [
        [("traceparent", f"00-{TRACE_ID.upper()}-{CALLER_SPAN}-01")],
        [("traceparent", f"00-{'0' * 32}-{CALLER_SPAN}-01")],
        [("traceparent", "x" * 5000)],
        # Two traceparent headers: which one the caller meant is unknown.
        [("traceparent", CALLER), ("traceparent", f"00-{'1' * 32}-{CALLER_SPAN}-01")],
    ],
)
def test_a_request_with_a_malformed_traceparent_is_served_in_a_new_trace(
    propagating: Gateway, sims: dict[str, Simulated], headers: list[tuple[str, str]]
) -> None:
    response = httpx.post(
        f"{propagating.url}/graphql",
        json={"query": QUERY, "variables": VARIABLES},
        headers=[("Authorization", f"Bearer {BOOTSTRAP}"), *headers],
    )
    assert response.status_code == 200 and "errors" not in response.json()
    logged = upstream_requests(sims)
    trace_ids = {traced_headers(r)[0] for requests in logged.values() for r in requests}
    assert len(trace_ids) == 1
    assert trace_ids.isdisjoint({TRACE_ID, "0" * 32, "1" * 32, TRACE_ID.upper()})


def spans_of_one_request() -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The one GraphQL server span since the test began, and the client spans. The server
    span ends just after the response is sent: wait for it a little."""
    deadline = time.monotonic() + 5
    while True:
        spans = EXPORTER.get_finished_spans()
        servers = [s for s in spans if s.kind is SpanKind.SERVER and s.name == "POST /graphql"]
        if servers or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert len(servers) == 1, [s.name for s in spans]
    return servers[0], [s for s in spans if s.kind is SpanKind.CLIENT]


def test_spans_nest_upstream_calls_under_the_request(
    exporting: Gateway, sims: dict[str, Simulated]
) -> None:
    response = exporting.post(
        QUERY, VARIABLES, headers={"traceparent": CALLER}, operation_name="Everything"
    )
    assert response.status_code == 200 and "errors" not in response.json()
    server, clients = spans_of_one_request()
    assert server.context is not None and server.parent is not None
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert f"{server.parent.span_id:016x}" == CALLER_SPAN and server.parent.is_remote
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["http.route"] == "/graphql"
    assert server.attributes["graphql.operation.name"] == "Everything"
    # Every upstream request is one client span, child of the server span, and the very
    # span its traceparent names.
    logged = upstream_requests(sims)
    sent = {(key, traced_headers(r)[1]) for key, rs in logged.items() for r in rs}
    assert {s.attributes["tokengate.source"] for s in clients if s.attributes} == set(sims)
    received = set()
    for span in clients:
        assert span.parent is not None and span.context is not None and span.attributes
        assert span.parent.span_id == server.context.span_id
        assert span.context.trace_id == server.context.trace_id
        assert span.attributes["tokengate.outcome"] == "ok"
        assert span.attributes["http.response.status_code"] == 200
        assert span.status.status_code is StatusCode.UNSET
        received.add((span.attributes["tokengate.source"], f"{span.context.span_id:016x}"))
    assert received == sent


@pytest.mark.parametrize(
    ("status", "outcome"), [(500, "unavailable"), (401, "unauthorized"), (429, "rate_limited")]
)
def test_a_failed_upstream_call_is_an_error_span(
    faulted: Gateway, sims: dict[str, Simulated], status: int, outcome: str
) -> None:
    amper = sims["amper"]
    SIM.post(f"{amper.url}/_sim/faults", json={"faults": [{"kind": "status", "status": status}]})
    body = faulted.gql(QUERY, VARIABLES)
    server, clients = spans_of_one_request()
    assert body["data"]["tokens"]["failedSources"] == [
        {"source": {"key": "amper"}, "reason": outcome.upper()}
    ]
    failed = [s for s in clients if s.attributes and s.attributes["tokengate.source"] == "amper"]
    assert failed  # one span per attempt (429 is retried)
    for span in failed:
        assert span.attributes is not None
        assert span.attributes["tokengate.outcome"] == outcome
        assert span.attributes["http.response.status_code"] == status
        assert span.status.status_code is StatusCode.ERROR
    others = [s for s in clients if s not in failed]
    assert others and all(s.status.status_code is StatusCode.UNSET for s in others)
    # The request itself answered 200 (a failing source never fails the page).
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 200


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The gateway's JSON log lines, as `tokengate serve` writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    with on_root_logger(handler, logging.INFO):
        yield stream


def test_log_lines_within_a_request_carry_its_trace_id(
    gw: Gateway, sims: dict[str, Simulated], json_logs: io.StringIO
) -> None:
    ask(gw, {"traceparent": CALLER, "X-Request-Id": "req-1"})
    response = ask(gw)
    logging.getLogger("tokengate.test").warning("outside any request")
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    by_request = {
        line["request_id"]: line
        for line in lines
        if line["logger"] == "tokengate.access" and "/graphql" in line["message"]
    }
    first = by_request["req-1"]
    assert first["trace_id"] == TRACE_ID and re.fullmatch("[0-9a-f]{16}", first["span_id"])
    assert first["span_id"] != CALLER_SPAN  # the gateway's server span, not the caller's
    # Without a caller's trace, the new trace's id: the one its upstream requests carried.
    second = by_request[response.headers["x-request-id"]]
    sent = {traced_headers(r)[0] for rs in upstream_requests(sims).values() for r in rs}
    assert second["trace_id"] in sent and second["trace_id"] != TRACE_ID
    # Outside any request, no trace id.
    assert {"trace_id", "span_id", "request_id"}.isdisjoint(lines[-1])


class Collector:
    """A dummy OTLP/HTTP collector on loopback: keeps every trace export it is sent."""

    def __init__(self) -> None:
        self.exports: list[ExportTraceServiceRequest] = []

    async def traces(self, request: Request) -> Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.body())
        self.exports.append(export)
        return Response(b"", media_type="application/x-protobuf")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/traces", self.traces, methods=["POST"])])


def exporter_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("OtelBatch")]


def test_nothing_is_exported_without_an_endpoint(
    tmp_path: Path, sims: dict[str, Simulated], monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = Collector()
    with serve_in_thread(collector.app()) as collector_url:
        # The collector listens where an exporter would go, but no endpoint is configured.
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            monkeypatch.delenv(name, raising=False)
        tracing = Tracing.from_env()
        assert not tracing.exporting and tracing.tracer is PROPAGATING
        threads = exporter_threads()
        with gateway(tmp_path, sims, None) as gw:
            ask(gw, {"traceparent": CALLER})
            assert exporter_threads() == threads
        assert collector.exports == []
        assert all(upstream_requests(sims).values())  # while propagating all the same

        # The same run with the endpoint set exports (so the test above can fail).
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector_url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "tokengate-test")
        with gateway(tmp_path, sims, None) as gw:
            ask(gw, {"traceparent": CALLER})
        # Shutting down flushed the exporter.
    spans = [
        (resource.resource, span)
        for export in collector.exports
        for resource in export.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    graphql = [span for _, span in spans if span.name == "POST /graphql"]
    assert len(graphql) == 1 and graphql[0].trace_id.hex() == TRACE_ID
    assert {span.name.split()[1] for _, span in spans if span.kind == span.SPAN_KIND_CLIENT} == set(
        sims
    )
    service = {
        a.value.string_value for r, _ in spans for a in r.attributes if a.key == "service.name"
    }
    assert service == {"tokengate-test"}


async def test_a_cancelled_upstream_call_still_ends_its_span(sims: dict[str, Simulated]) -> None:
    """A deadline cancelling a call mid-request leaves an ERROR span, not an open one."""
    amper = sims["amper"]
    token = tracer_var.set(Tracing.exporting_to(EXPORTER).tracer)
    try:
        async with http_client() as client:
            faults = {"faults": [{"kind": "hang", "hang_s": 1}]}
            await client.post(f"{amper.url}/_sim/faults", json=faults)
            edge = UpstreamHttp(
                key="amper", name="Amper", client=client, timeout_s=5, headers={}, credential="-"
            )
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await edge.send("GET", f"{amper.url}/v1/access_tokens")
    finally:
        tracer_var.reset(token)
    [span] = EXPORTER.get_finished_spans()
    assert span.attributes is not None and span.attributes["tokengate.outcome"] == "cancelled"
    assert span.status.status_code is StatusCode.ERROR
    # The hanging request itself carried the trace context too.
    async with httpx.AsyncClient() as control:
        [request] = (await control.get(f"{amper.url}/_sim/requests")).json()["requests"]
    assert traced_headers(request)[1] == f"{span.context.span_id:016x}"  # type: ignore[union-attr]
