"""Tracing's own work per request, in process (run by hand): no network, no simulators.

    python benchmarks/tracing.py [--rounds 20000] [--upstreams 3]

One "request" is what tracing adds to a fan-out page: the server span middleware around a
trivial ASGI app, plus ``--upstreams`` calls of ``UpstreamHttp.send`` on an in-memory
transport (``httpx.MockTransport``), with one JSON log line. Three ways:

- ``bare``: the same ASGI app and ``httpx`` requests with no tracing code at all (the
  floor: what the gateway did before tracing);
- ``propagating``: no exporter configured (ids made and sent, nothing recorded);
- ``exporting``: the SDK recording every span, a ``BatchSpanProcessor`` handing them to an
  exporter that drops them (the OTLP encoding and the HTTP post are left out).

Rounds are interleaved (bare, propagating, exporting, ...) and each way's median per
request is printed with its difference to ``bare``: the fan-out benchmark's latency on a
shared VM moves by more than these microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import statistics
import time
from collections.abc import Sequence

import httpx
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from starlette.types import Receive, Scope, Send

from tokengate.gateway.logs import JsonFormatter
from tokengate.gateway.tracing import TraceRequests, Tracing
from tokengate.upstreams.http_edge import UpstreamHttp

HEADERS = {"authorization": "Bearer upstream-credential", "accept": "application/json"}


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"{}")


def logger() -> logging.Logger:
    log = logging.getLogger("bench.tracing")
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(JsonFormatter())
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log


async def main(rounds: int, upstreams: int) -> None:
    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    log = logger()
    edges = [
        UpstreamHttp(
            key=f"s{i}", name=f"S{i}", client=client, timeout_s=5, headers=HEADERS, credential="-"
        )
        for i in range(upstreams)
    ]
    urls = [f"http://upstream-{i}.invalid/list" for i in range(upstreams)]

    async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.gather(*(client.request("GET", u, headers=HEADERS) for u in urls))
        log.info("GET /graphql 200")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def traced_app(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.gather(*(e.send("GET", u) for e, u in zip(edges, urls, strict=True)))
        log.info("GET /graphql 200")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    exporting = Tracing(provider.get_tracer("bench"), provider)
    ways = {
        "bare": bare_app,
        "propagating": TraceRequests(traced_app, Tracing(), frozenset({"/graphql"})),
        "exporting": TraceRequests(traced_app, exporting, frozenset({"/graphql"})),
    }
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/graphql",
        "headers": [(b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: object) -> None:
        return None

    samples: dict[str, list[float]] = {name: [] for name in ways}
    batch = 50
    for _ in range(rounds // batch):
        for name, app in ways.items():
            started = time.perf_counter()
            for _ in range(batch):
                await app(scope, receive, send)  # type: ignore[arg-type]
            samples[name].append((time.perf_counter() - started) / batch * 1e6)
    exporting.shutdown()
    await client.aclose()
    floor = statistics.median(samples["bare"])
    print(f"{rounds} requests per way, {upstreams} upstream calls each, interleaved in batches")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:12s} median {median:7.1f} us per request ({median - floor:+.1f} us)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20000)
    parser.add_argument("--upstreams", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.upstreams))
