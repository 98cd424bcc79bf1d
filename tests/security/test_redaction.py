"""The log redaction filter removes credentials and secrets, whatever the logger."""

from __future__ import annotations

import json
import logging
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokengate.gateway.logs import _PATTERNS, JsonFormatter, RedactingFilter, redact

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


# The secret-bearing-key pattern as it was written first, with a leading ``["']?\w*``: the
# pattern now starts at the key word, which must redact exactly the same text.
_KEYED_FIRST = re.compile(
    r"""(?i)(["']?\w*(?:secret|token|password|authorization)["']?\s*[:=]\s*)"""
    r"""(["'])(?:(?!\2).)*\2"""
)
_KEYED_PIECES = st.sampled_from(
    [
        "secret",
        "Token",
        "PASSWORD",
        "authorization",
        "client_",
        "api",
        "tokengate",
        "_",
        "'",
        '"',
        ":",
        "=",
        " ",
        "\n",
        "x",
        "\u017fecret",  # a long s: matches "s" without regard to case
        "\u212a",  # the Kelvin sign: matches "k" likewise
        "{",
        ",",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_KEYED_PIECES, max_size=24).map("".join))
def test_keyed_pattern_redacts_what_the_first_one_did(text: str) -> None:
    keyed = next(p for p, _ in _PATTERNS if "authorization" in p.pattern)
    replacement = r"\1\2[REDACTED]\2"
    assert keyed.sub(replacement, text) == _KEYED_FIRST.sub(replacement, text)


@pytest.mark.parametrize(
    "text",
    [
        "secret_token: 'x'",
        "tokentoken='x' password = \"y\"",
        '{"api_token": "v", "logger": "tokengate.access"}',
        "Authorization:'a' client_SECRET=\"b\"",
    ],
)
def test_keyed_pattern_on_known_lines(text: str) -> None:
    keyed = next(p for p, _ in _PATTERNS if "authorization" in p.pattern)
    replacement = r"\1\2[REDACTED]\2"
    assert keyed.sub(replacement, text) == _KEYED_FIRST.sub(replacement, text)
    assert "[REDACTED]" in keyed.sub(replacement, text)
