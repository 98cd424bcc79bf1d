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


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("req42abc", True),
        ("3f2b8c1e-9a4d-4c7e-8f00-1a2b3c4d5e6f", True),  # a UUID, as most proxies send
        ("Root=1-5759e988-bd862e3fe1be46a994272793", True),  # AWS ALB
        ("a" * 128, True),
        ("a" * 129, False),
        ("has space", False),
        ('quote"inside', False),
        ("semi;colon", False),
        ("-leading-dash", False),
        ("", False),
    ],
)
def test_incoming_request_ids_kept_when_sane(gateway: Gateway, incoming: str, kept: bool) -> None:
    response = gateway.post("{ sources { key } }", headers={"X-Request-Id": incoming})
    assert response.status_code == 200
    echoed = response.headers["x-request-id"]
    if kept:
        assert echoed == incoming
    else:
        assert echoed != incoming and len(echoed) == 32 and echoed.isalnum()
