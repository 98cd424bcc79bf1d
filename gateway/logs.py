"""Structured JSON logs with a request id, passed through a redaction filter.

The filter removes what must never reach a log: bearer/basic credentials, anything shaped
like a tokengate secret, and values of secret-bearing keys, in the message and in the
structured fields a record carries (``log.warning(..., extra={"fields": {...}})``, see
``FIELDS``): the JSON line holds each field as its own key.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from opentelemetry import trace

# Defined beside the trace context upstream requests carry (they send it as X-Request-Id).
from tokengate.upstreams.trace_context import request_id_var as request_id_var

# The record attribute holding a line's structured fields: ``extra={FIELDS: {...}}``.
FIELDS = "fields"
# Keys of the line itself, which a field never replaces.
_RESERVED = frozenset(
    {"ts", "level", "logger", "message", "request_id", "trace_id", "span_id", "exception"}
)

_PATTERNS = [
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [REDACTED]"),
    (re.compile(r"tg_[A-Za-z0-9_-]{20,}"), "tg_[REDACTED]"),
    # A JWT (a JSON header, base64url: "eyJ"), signed or not, wherever it appears.
    (re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), "[REDACTED JWT]"),
    # key = "value" / key: 'value' for secret-bearing keys (client_secret, api_token, ...).
    # The match starts at the key word, not at the start of the key: the text before it is
    # kept either way, and a leading ``\w*`` made every position of a line try every word
    # length (the dearest pattern by far on a JSON log line).
    (
        re.compile(
            r"""(?i)((?:secret|token|password|authorization)["']?\s*[:=]\s*)"""
            r"""(["'])(?:(?!\2).)*\2"""
        ),
        r"\1\2[REDACTED]\2",
    ),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            setattr(record, FIELDS, {k: _redact_field(k, v) for k, v in fields.items()})
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
            record.redacted_exception = type(exc).__name__
        return True


_SECRET_KEY = re.compile(r"(?i)secret|token|password|authorization")


def _redact_field(key: str, value: object) -> object:
    if isinstance(value, str):
        return "[REDACTED]" if _SECRET_KEY.search(key) else redact(value)
    return value


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """A record's structured fields (empty when it has none)."""
    fields = getattr(record, FIELDS, None)
    return fields if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; within a request, with its ``request_id`` and the
    ``trace_id``/``span_id`` of its server span (the ids a ``traceparent`` carries)."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            payload["request_id"] = request_id
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            payload["trace_id"] = f"{span_context.trace_id:032x}"
            payload["span_id"] = f"{span_context.span_id:016x}"
        for key, value in fields_of(record).items():
            if key not in _RESERVED:
                payload[key] = value
        if record.exc_text:
            payload["exception"] = record.exc_text
        return redact(json.dumps(payload, ensure_ascii=False, default=str))


def setup(level: str = "INFO") -> None:
    """Route the gateway's, uvicorn's and the libraries' logs through one JSON handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # httpx logs full request URLs at INFO; keep it quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
