"""Request bodies the gateway cannot represent are refused as unreadable, never a crash.

A lone surrogate (``"\\ud800"``) is valid JSON text but no Unicode character: it cannot be
encoded as UTF-8, so an error message quoting it could not be sent (HTTP 500, a traceback
in the log). Real loopback HTTP.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import Gateway, LogCapture

CREATE = (
    "mutation($d: DateTime, $n: String!) { createToken(input: "
    '{source: "internal", name: $n, expiresAt: $d}) { secret } }'
)


@pytest.mark.parametrize(
    "body",
    [
        # json.dumps escapes as ASCII: the surrogate travels as the six characters \ud800.
        json.dumps({"query": CREATE, "variables": {"d": "\ud800", "n": "x"}}),
        json.dumps({"query": CREATE, "variables": {"n": "a\udfffb"}}),
        json.dumps({"query": '{ tokens(filter: {name: "\ud83d"}) { totalCount } }'}),
    ],
    ids=["datetime-variable", "string-variable", "in-the-query"],
)
def test_lone_surrogates_are_an_unreadable_body(
    gateway: Gateway, captured_logs: LogCapture, body: str
) -> None:
    response = httpx.post(
        f"{gateway.url}/graphql",
        content=body.encode("ascii"),
        headers={
            "Authorization": f"Bearer {gateway.admin_secret}",
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "Traceback" not in captured_logs.text


def test_escaped_characters_that_are_real_still_work(gateway: Gateway) -> None:
    """A surrogate pair is one real character; escapes of real characters decode as ever."""
    body = gateway.gql(
        "query($n: String) { tokens(filter: {name: $n}) { totalCount } }", {"n": "\U0001f600é"}
    )
    assert body["data"]["tokens"]["totalCount"] == 0
    response = httpx.post(
        f"{gateway.url}/graphql",
        content=b'{"query": "query($n: String) { tokens(filter: {name: $n}) { totalCount } }",'
        b' "variables": {"n": "\\ud83d\\ude00\\u00e9"}}',
        headers={
            "Authorization": f"Bearer {gateway.admin_secret}",
            "Content-Type": "application/json",
        },
    )
    assert response.json() == {"data": {"tokens": {"totalCount": 0}}}
