"""The request context every upstream request carries: W3C ``traceparent`` and ``X-Request-Id``.

The gateway sets both per incoming request (``gateway/tracing.py`` the span and the tracer,
``gateway/app.py`` the request id); ``UpstreamHttp.send`` reads them and, when spans are
recorded, opens one client span per upstream request under the request's server span.
They live here, below the gateway, so that the upstream layer never imports the gateway.

Propagation never depends on export: without an exporter the tracer is a
``PropagatingTracer``, which only makes ids (no SDK, no span kept, no thread), and an
upstream request builds no span at all, only its ``traceparent``.
"""

from __future__ import annotations

import contextvars
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind
from opentelemetry.util.types import Attributes

if TYPE_CHECKING:
    # The type the API's Tracer declares (what ``trace.use_span`` returns); only named here.
    from opentelemetry.util._decorator import _AgnosticContextManager

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)


def _new_id(bits: int) -> int:
    # Trace and span ids need uniqueness, not secrecy (the SDK draws them the same way).
    value = 0
    while not value:  # zero is the invalid id
        value = random.getrandbits(bits)
    return value


class PropagatingTracer(trace.Tracer):
    """A tracer that records nothing but keeps the trace going: every span it starts has a
    fresh span id, under the parent's trace id (a new trace id when there is no parent) and
    with the parent's sampled flag, so ``traceparent`` stays meaningful downstream."""

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        parent = trace.get_current_span(context).get_span_context()
        if parent.is_valid:
            span_context = SpanContext(
                parent.trace_id, _new_id(64), is_remote=False, trace_flags=parent.trace_flags
            )
        else:
            span_context = SpanContext(_new_id(128), _new_id(64), is_remote=False)
        return NonRecordingSpan(span_context)

    def start_as_current_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> _AgnosticContextManager[Span]:
        return trace.use_span(self.start_span(name, context), end_on_exit=end_on_exit)


PROPAGATING = PropagatingTracer()

# The tracer of the app serving the current request (one per app, so tests can run apps
# with and without export in one process); outside a request, propagation only.
tracer_var: contextvars.ContextVar[trace.Tracer] = contextvars.ContextVar(
    "tracer", default=PROPAGATING
)


def traceparent(span_context: SpanContext) -> str:
    """The W3C ``traceparent`` header naming ``span_context`` as the parent."""
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{span_context.trace_flags:02x}"
    )


def outbound_headers(base: Mapping[str, str], span: Span | None) -> dict[str, str]:
    """``base`` plus ``traceparent`` and the request's id. The parent named is ``span``;
    None when nothing records: then a fresh span id under the current span (what a
    ``PropagatingTracer`` span would hold, without building one)."""
    headers = dict(base)
    if span is not None:
        headers["traceparent"] = traceparent(span.get_span_context())
    else:
        parent = trace.get_current_span().get_span_context()
        if parent.is_valid:
            headers["traceparent"] = (
                f"00-{parent.trace_id:032x}-{_new_id(64):016x}-{parent.trace_flags:02x}"
            )
        else:
            headers["traceparent"] = f"00-{_new_id(128):032x}-{_new_id(64):016x}-00"
    request_id = request_id_var.get()
    if request_id is not None:
        headers["x-request-id"] = request_id
    return headers


__all__ = [
    "PROPAGATING",
    "PropagatingTracer",
    "outbound_headers",
    "request_id_var",
    "traceparent",
    "tracer_var",
]
