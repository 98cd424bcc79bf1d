"""Trace context over real loopback HTTP: the caller's ``traceparent`` is continued on every
upstream request of all three simulated sources (read back from their request logs), with
the request's ``X-Request-Id``; spans land in the SDK's in-memory exporter; log lines carry
the trace id; nothing is exported unless an endpoint is configured."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import threading
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

from tests.conftest import BOOTSTRAP, Gateway, gateway_config
from tokengate.gateway.app import create_app
from tokengate.gateway.demo import Simulated, simulators
from tokengate.gateway.logs import JsonFormatter, RedactingFilter
from tokengate.gateway.tracing import Tracing, parse_traceparent
from tokengate.upstreams.loopback import serve_in_thread
from tokengate.upstreams.oauth.simulator import WALK_USER
from tokengate.upstreams.trace_context import PROPAGATING

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
# One query that reaches every source: the OAuth-style one only lists with a user filter.
QUERY = "query Everything($user: String!) { tokens(first: 5, filter: {userId: $user}) { edges { node { id } } failedSources { source { key } reason } } }"
VARIABLES = {"user": WALK_USER}
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, Simulated]]:
    with simulators(count=5) as running:
        yield running


@contextlib.contextmanager
def gateway(
    tmp_path: Path, sims: dict[str, Simulated], tracing: Tracing | None
) -> Iterator[Gateway]:
    config = gateway_config(tmp_path, sources=tuple(s.source for s in sims.values()))
    with serve_in_thread(create_app(config, tracing=tracing)) as url:
        yield Gateway(url=url, admin_secret=BOOTSTRAP, config=config)


@pytest.fixture(autouse=True)
def bootstrap(monkeypatch: pytest.MonkeyPatch, sims: dict[str, Simulated]) -> None:
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    for sim in sims.values():
        httpx.delete(f"{sim.url}/_sim/requests")
        httpx.delete(f"{sim.url}/_sim/faults")


def upstream_requests(sims: dict[str, Simulated]) -> dict[str, list[dict[str, Any]]]:
    """Each simulator's request log, read over HTTP, then cleared."""
    logged = {}
    for key, sim in sims.items():
        logged[key] = httpx.get(f"{sim.url}/_sim/requests").json()["requests"]
        httpx.delete(f"{sim.url}/_sim/requests")
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


@pytest.fixture(params=["propagating", "exporting"])
def tracing(request: pytest.FixtureRequest) -> Tracing:
    """Propagation must not depend on export: both modes pass the same header tests."""
    return (
        Tracing()
        if request.param == "propagating"
        else Tracing.exporting_to(InMemorySpanExporter())
    )


def test_every_upstream_request_continues_the_callers_trace(
    tmp_path: Path, sims: dict[str, Simulated], tracing: Tracing
) -> None:
    with gateway(tmp_path, sims, tracing) as gw:
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
    tmp_path: Path, sims: dict[str, Simulated], tracing: Tracing
) -> None:
    with gateway(tmp_path, sims, tracing) as gw:
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


MALFORMED = [
    "",
    "garbage",
    f"00-{TRACE_ID.upper()}-{CALLER_SPAN}-01",  # uppercase hex
    f"00-{'0' * 32}-{CALLER_SPAN}-01",  # invalid (all-zero) trace id
    f"00-{TRACE_ID}-{'0' * 16}-01",  # invalid (all-zero) parent id
    f"ff-{TRACE_ID}-{CALLER_SPAN}-01",  # version ff is forbidden
    f"00-{TRACE_ID}-{CALLER_SPAN}-01-extra",  # version 00 has exactly four fields
    f"00-{TRACE_ID}-{CALLER_SPAN}-1",  # flags are two digits
    f"00-{TRACE_ID[:-1]}-{CALLER_SPAN}-01",  # short trace id
    f"00_{TRACE_ID}_{CALLER_SPAN}_01",
    f"00-{TRACE_ID}-{CALLER_SPAN}-01\x00",
    f"00-{TRACE_ID}-{CALLER_SPAN}-0g",
    "00-" + "é" * 32 + f"-{CALLER_SPAN}-01",
]


@pytest.mark.parametrize("value", MALFORMED)
def test_a_malformed_traceparent_is_ignored(value: str) -> None:
    assert parse_traceparent(value) is None


def test_well_formed_traceparents_parse() -> None:
    parent = parse_traceparent(CALLER)
    assert parent is not None and parent.is_remote
    assert (f"{parent.trace_id:032x}", f"{parent.span_id:016x}", parent.trace_flags) == (
        TRACE_ID,
        CALLER_SPAN,
        1,
    )
    # A later version may add fields; unknown flag bits are not passed on.
    later = parse_traceparent(f"cc-{TRACE_ID}-{CALLER_SPAN}-03-what-the-future-holds")
    assert later is not None and later.trace_flags == 1 and later.trace_id == parent.trace_id
    unsampled = parse_traceparent(f"00-{TRACE_ID}-{CALLER_SPAN}-00")
    assert unsampled is not None and not unsampled.trace_flags.sampled


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
    tmp_path: Path, sims: dict[str, Simulated], headers: list[tuple[str, str]]
) -> None:
    with gateway(tmp_path, sims, Tracing()) as gw:
        response = httpx.post(
            f"{gw.url}/graphql",
            json={"query": QUERY, "variables": VARIABLES},
            headers=[("Authorization", f"Bearer {BOOTSTRAP}"), *headers],
        )
    assert response.status_code == 200 and "errors" not in response.json()
    logged = upstream_requests(sims)
    trace_ids = {traced_headers(r)[0] for requests in logged.values() for r in requests}
    assert len(trace_ids) == 1
    assert trace_ids.isdisjoint({TRACE_ID, "0" * 32, "1" * 32, TRACE_ID.upper()})


def spans_of(exporter: InMemorySpanExporter) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The one GraphQL server span, and the client spans."""
    spans = exporter.get_finished_spans()
    servers = [s for s in spans if s.kind is SpanKind.SERVER and s.name == "POST /graphql"]
    assert len(servers) == 1, [s.name for s in spans]
    return servers[0], [s for s in spans if s.kind is SpanKind.CLIENT]


def test_spans_nest_upstream_calls_under_the_request(
    tmp_path: Path, sims: dict[str, Simulated]
) -> None:
    exporter = InMemorySpanExporter()
    with gateway(tmp_path, sims, Tracing.exporting_to(exporter)) as gw:
        exporter.clear()  # start-up's own requests (readiness polls)
        ask(gw, {"traceparent": CALLER})
        server, clients = spans_of(exporter)
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
    tmp_path: Path, sims: dict[str, Simulated], status: int, outcome: str
) -> None:
    exporter = InMemorySpanExporter()
    amper = sims["amper"]
    with gateway(tmp_path, sims, Tracing.exporting_to(exporter)) as gw:
        exporter.clear()
        httpx.post(
            f"{amper.url}/_sim/faults", json={"faults": [{"kind": "status", "status": status}]}
        )
        body = gw.gql(QUERY, VARIABLES)
        httpx.delete(f"{amper.url}/_sim/faults")
        server, clients = spans_of(exporter)
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
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


def test_log_lines_within_a_request_carry_its_trace_id(
    tmp_path: Path, sims: dict[str, Simulated], json_logs: io.StringIO
) -> None:
    with gateway(tmp_path, sims, Tracing()) as gw:
        ask(gw, {"traceparent": CALLER, "X-Request-Id": "req-1"})
        response = ask(gw)
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
    # Outside any request (start-up, shutdown), no trace id.
    assert any("trace_id" not in line and "request_id" not in line for line in lines)


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


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ""},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"},
    ],
)
def test_export_is_off_unless_configured(environ: dict[str, str]) -> None:
    tracing = Tracing.from_env(environ)
    assert not tracing.exporting and tracing.tracer is PROPAGATING


def test_traces_endpoint_alone_turns_export_on() -> None:
    tracing = Tracing.from_env(
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces"}
    )
    try:
        assert tracing.exporting and tracing.tracer is not PROPAGATING
    finally:
        tracing.shutdown()
