"""DateTime inputs whose instant Python cannot hold in UTC are refused as BAD_USER_INPUT.

``0001-01-01T00:00:00+14:00`` parses, but in UTC it falls before year 1: converting it
raised ``OverflowError`` deep in the request (INTERNAL_SERVER_ERROR, a traceback in the log).
Real loopback HTTP against a gateway over its own store.
"""

from __future__ import annotations

import pytest

from tests.conftest import Gateway, LogCapture

OUT_OF_RANGE = [
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T13:59:59+14:00",
    "9999-12-31T23:59:59-14:00",
]
EDGES = ["0001-01-01T00:00:00+00:00", "0001-01-01T14:00:00+14:00", "9999-12-31T23:59:59.999999Z"]
FILTER = "query($d: DateTime) { tokens(filter: {%s: $d}) { totalCount } }"
CREATE = (
    "mutation($d: DateTime) { createToken(input: "
    '{source: "internal", name: "x", expiresAt: $d}) { secret } }'
)


def assert_clean(captured_logs: LogCapture) -> None:
    assert "Traceback" not in captured_logs.text and "OverflowError" not in captured_logs.text


@pytest.mark.parametrize("value", OUT_OF_RANGE)
@pytest.mark.parametrize(
    ("query", "argument"),
    [
        (FILTER % "createdAfter", "filter.createdAfter"),
        (FILTER % "createdBefore", "filter.createdBefore"),
        (CREATE, "expiresAt"),
    ],
)
def test_out_of_range_instants_are_bad_input(
    gateway: Gateway, captured_logs: LogCapture, query: str, argument: str, value: str
) -> None:
    response = gateway.post(query, {"d": value})
    assert response.status_code == 200
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": argument}
    assert error["message"].startswith(f"{argument} is out of range")
    assert_clean(captured_logs)


@pytest.mark.parametrize("value", EDGES)
def test_the_extreme_representable_instants_still_filter(
    gateway: Gateway, captured_logs: LogCapture, value: str
) -> None:
    for field in ("createdAfter", "createdBefore"):
        data = gateway.data(FILTER % field, {"d": value})
        assert isinstance(data["tokens"]["totalCount"], int)
    body = gateway.gql(CREATE, {"d": value})
    if value.startswith("0001"):  # in the past: refused as such, not as a crash
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    else:
        assert body["data"]["createToken"]["secret"]
    assert_clean(captured_logs)
