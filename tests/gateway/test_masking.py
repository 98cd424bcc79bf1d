"""Unexpected failures are masked for clients and logged once, with the request id."""

from __future__ import annotations

import pytest

from tests.conftest import Gateway, LogCapture
from tokengate.upstreams.service import TokenService


def test_unexpected_exception_is_masked(
    gateway: Gateway, captured_logs: LogCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("internal detail: db password hunter2")

    monkeypatch.setattr(TokenService, "list_tokens", explode)
    response = gateway.post("{ tokens { totalCount } }", headers={"X-Request-Id": "req42abc"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req42abc"
    [error] = response.json()["errors"]
    assert error["message"] == "Internal server error"
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": "req42abc"}
    assert "hunter2" not in response.text and "Traceback" not in response.text
    logged = [line for line in captured_logs.lines if "req42abc" in line]
    assert logged and "RuntimeError" in logged[0]


def test_expected_errors_are_not_logged_as_crashes(
    gateway: Gateway, captured_logs: LogCapture
) -> None:
    gateway.gql("{ tokens(first: 500) { totalCount } }")
    assert not [line for line in captured_logs.lines if "ERROR" in line]
