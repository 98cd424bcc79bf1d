"""Trace context: a server span per HTTP request, continuing the caller's W3C ``traceparent``.

Our own ASGI middleware rather than Strawberry's ``OpenTelemetryExtension``, which opens a
span around every resolved field: one span per request and one per upstream call
(``upstreams/http_edge.py``) keep tracing off the per-field hot path.

Spans are exported over OTLP/HTTP only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set; the SDK reads the other standard
``OTEL_*`` variables (service name, resource attributes, sampler, headers, timeouts).
Otherwise nothing is built but a ``PropagatingTracer``: ids are still made and sent
upstream, nothing is recorded, and no exporter thread runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokengate.upstreams.trace_context import PROPAGATING, tracer_var

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

SERVICE_NAME = "tokengate"
ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

# version 00 exactly; a later version may append fields after a dash (W3C trace context,
# "versioning"); version ff is invalid. Lowercase hex only.
_TRACEPARENT = re.compile(
    r"(?P<version>[0-9a-f]{2})-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-"
    r"(?P<flags>[0-9a-f]{2})(?P<rest>-.*)?"
)
# Operation names are the caller's text: an attribute holds at most this many characters.
MAX_OPERATION_NAME = 128


def parse_traceparent(value: str) -> SpanContext | None:
    """The remote parent a ``traceparent`` header names, or None when it is malformed
    (the request then starts a new trace)."""
    match = _TRACEPARENT.fullmatch(value.strip(" \t"))
    if match is None:
        return None
    version = match["version"]
    if version == "ff" or (version == "00" and match["rest"] is not None):
        return None
    trace_id = int(match["trace"], 16)
    span_id = int(match["span"], 16)
    if not trace_id or not span_id:
        return None
    # Only the sampled bit is defined; other bits are not passed on.
    flags = TraceFlags(int(match["flags"], 16) & TraceFlags.SAMPLED)
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)


class Tracing:
    """The tracer an app's requests use and what must be flushed when it stops."""

    def __init__(
        self, tracer: trace.Tracer = PROPAGATING, provider: TracerProvider | None = None
    ) -> None:
        self.tracer = tracer
        self.provider = provider

    @property
    def exporting(self) -> bool:
        return self.provider is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Tracing:
        """OTLP/HTTP export when an endpoint is configured (and the SDK not disabled, and
        ``OTEL_TRACES_EXPORTER`` not ``none``); propagation only otherwise."""
        if (
            not any(environ.get(name) for name in ENDPOINT_ENVS)
            or environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
            or environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none"
        ):
            return cls()
        # Imported only when exporting: the SDK and the exporter are not loaded otherwise.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = _provider()
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider.get_tracer(SERVICE_NAME), provider)

    @classmethod
    def exporting_to(cls, exporter: SpanExporter) -> Tracing:
        """Spans handed to ``exporter`` as each ends (tests: the SDK's in-memory exporter)."""
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        provider = _provider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return cls(provider.get_tracer(SERVICE_NAME), provider)

    def shutdown(self) -> None:
        """Flush and stop the exporter (a no-op without one)."""
        if self.provider is not None:
            self.provider.shutdown()


def _provider() -> TracerProvider:
    """An SDK provider; its sampler comes from ``OTEL_TRACES_SAMPLER`` (default: follow
    the caller's decision, sample new traces), its resource from ``OTEL_SERVICE_NAME`` and
    ``OTEL_RESOURCE_ATTRIBUTES``, with ``tokengate`` as the service name when unset."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    return TracerProvider(resource=resource)


class TraceRequests:
    """One SERVER span per HTTP request, current while the request runs (upstream spans
    and log lines find it there); continues a well-formed incoming ``traceparent``."""

    def __init__(
        self, app: ASGIApp, tracing: Tracing, routes: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.tracer = tracing.tracer
        # Paths named as themselves (http.route); any other path is "other", so span
        # names stay few.
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        parent = None
        values = [v for k, v in scope["headers"] if k == b"traceparent"]
        if len(values) == 1:  # several are as good as none
            parent = parse_traceparent(values[0].decode("latin-1"))
        method: str = scope["method"]
        path: str = scope["path"]
        route = path if path in self.routes else "other"
        span = self.tracer.start_span(
            f"{method} {route}",
            # An explicit context: the caller's parent, else nothing (never an ambient span).
            context=trace.set_span_in_context(NonRecordingSpan(parent))
            if parent is not None
            else otel_context.Context(),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "http.route": route},
        )
        context_token = otel_context.attach(trace.set_span_in_context(span))
        tracer_token = tracer_var.set(self.tracer)
        recording = span.is_recording()

        async def send_traced(message: Message) -> None:
            if recording and message["type"] == "http.response.start":
                status: int = message["status"]
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(StatusCode.ERROR)
            await send(message)

        try:
            await self.app(scope, receive, send_traced if recording else send)
        except BaseException as exc:
            if recording:
                span.set_status(StatusCode.ERROR, type(exc).__name__)
            raise
        finally:
            span.end()
            tracer_var.reset(tracer_token)
            otel_context.detach(context_token)


def set_operation_name(name: object) -> None:
    """Name the current request's GraphQL operation on its span (when it records)."""
    span = trace.get_current_span()
    if isinstance(name, str) and name and span.is_recording():
        span.set_attribute("graphql.operation.name", name[:MAX_OPERATION_NAME])


__all__ = ["TraceRequests", "Tracing", "parse_traceparent", "set_operation_name"]
