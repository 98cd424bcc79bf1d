"""Trace context without a server: strict ``traceparent`` parsing, and export switched on
only by an OTLP endpoint."""

from __future__ import annotations

import pytest

from tokengate.gateway.tracing import Tracing, parse_traceparent
from tokengate.upstreams.trace_context import PROPAGATING

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER = f"00-{TRACE_ID}-{CALLER_SPAN}-01"

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
