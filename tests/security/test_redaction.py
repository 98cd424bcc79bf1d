"""The log redaction filter removes credentials and secrets, whatever the logger."""

from __future__ import annotations

import json
import logging

import pytest

from tokengate.gateway.logs import JsonFormatter, RedactingFilter, redact

SECRET = "tg_" + "A1b2C3d4E5" * 4 + "xyz"


@pytest.mark.parametrize(
    "line",
    [
        f"Authorization: Bearer {SECRET}",
        "authorization: basic dXNlcjpwYXNzd29yZA==",
        f"token created: {SECRET}",
        '{"secret": "s3cr3t-value", "name": "x"}',
        "client_secret='s3cr3t-value'",
        'password = "s3cr3t-value"',
        '{"token": "losant-jwt-value"}',
    ],
)
def test_redact(line: str) -> None:
    out = redact(line)
    for leaked in (SECRET, "dXNlcjpwYXNzd29yZA==", "s3cr3t-value", "losant-jwt-value"):
        assert leaked not in out


def test_filter_redacts_messages_arguments_and_tracebacks() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "call with %s", (SECRET,), None)
    try:
        raise ValueError(f"bad token {SECRET}")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    text = JsonFormatter().format(record)
    assert SECRET not in text
    payload = json.loads(text)
    assert payload["level"] == "error" and "ValueError" in payload["exception"]
