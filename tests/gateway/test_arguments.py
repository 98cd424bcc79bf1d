"""Bad arguments get BAD_USER_INPUT with a clear message, never a 500 or a traceback."""

from __future__ import annotations

import base64
import json

import pytest

from tests.conftest import Gateway
from tests.cursor_forgery import Payload, token_cursor, unsigned
from tokengate.upstreams.merge import CURSOR_VERSION


def code_of(gateway: Gateway, query: str, variables: dict[str, object] | None = None) -> str:
    body = gateway.gql(query, variables)
    assert "errors" in body, body
    text = json.dumps(body)
    assert "Traceback" not in text and 'File "' not in text
    code: str = body["errors"][0]["extensions"]["code"]
    return code


@pytest.mark.parametrize(
    "args",
    [
        "first: 0",
        "first: 101",
        "last: 0",
        "last: 101",
        "first: -1",
        "first: 1, last: 1",
        'after: "x", before: "y"',
        'first: 2, before: "x"',
        'last: 2, after: "x"',
    ],
)
def test_page_size_and_combinations(gateway: Gateway, args: str) -> None:
    assert code_of(gateway, f"{{ tokens({args}) {{ totalCount }} }}") == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "",
        "!!!",
        "A" * 5000,
        unsigned(token_cursor()),
        unsigned(token_cursor(version=1)),
        Payload({"v": CURSOR_VERSION}),
        Payload([1, 2]),
        Payload(token_cursor(version=1)),
        Payload(token_cursor(value={"t": "yesterday"})),
        Payload(token_cursor(value={"t": "2020-01-01T00:00:00"})),
        Payload(token_cursor(value={"t": "0001-01-01T00:00:00+14:00"})),
        Payload(token_cursor(value={"t": "9999-12-31T23:59:59-14:00"})),
        Payload(token_cursor(value={"s": "a"}, order=("NAME", "ASC")) | {"o": ["NAME", "UP"]}),
        Payload(token_cursor(value={"s": "a"})),
        Payload(token_cursor(value={"s": 5}, order=("NAME", "ASC"))),
        Payload(token_cursor(source=5)),
        Payload(token_cursor(backward=3)),
        Payload(token_cursor(positions={"a": 1})),
        Payload(token_cursor(positions=["a"])),
    ],
)
def test_bad_cursors(gateway: Gateway, cursor: str | Payload) -> None:
    text = cursor.cursor(gateway) if isinstance(cursor, Payload) else cursor
    assert (
        code_of(
            gateway,
            "query($c: String) { tokens(first: 2, after: $c) { totalCount } }",
            {"c": text},
        )
        == "BAD_USER_INPUT"
    )


def test_a_well_formed_signed_cursor_is_accepted(gateway: Gateway) -> None:
    """The payloads above are refused for what they hold, not for how they were sealed."""
    cursor = Payload(token_cursor(value={"t": "2020-01-01T00:00:00+00:00"})).cursor(gateway)
    gateway.data("query($c: String) { tokens(first: 2, after: $c) { totalCount } }", {"c": cursor})


def test_cursor_of_another_order_is_refused(gateway: Gateway) -> None:
    page = gateway.data("{ tokens(first: 1) { pageInfo { endCursor } } }")
    cursor = page["tokens"]["pageInfo"]["endCursor"]
    query = "query($c: String) { tokens(first: 1, after: $c, orderBy: {field: NAME, direction: ASC}) { totalCount } }"
    assert code_of(gateway, query, {"c": cursor}) == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    "bad_id", ["", "nope", "VG9rZW4", "%%%", base64.b64encode(b"User:internal:1").decode()]
)
def test_bad_ids(gateway: Gateway, bad_id: str) -> None:
    assert (
        code_of(gateway, "query($id: ID!) { node(id: $id) { id } }", {"id": bad_id})
        == "BAD_USER_INPUT"
    )


def test_unknown_ids_are_null_and_mutations_not_found(gateway: Gateway) -> None:
    unknown = base64.urlsafe_b64encode(b"Token:internal:" + b"0" * 32).decode().rstrip("=")
    assert gateway.data("query($id: ID!) { node(id: $id) { id } }", {"id": unknown})["node"] is None
    mutation = "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }"
    assert code_of(gateway, mutation, {"id": unknown}) == "NOT_FOUND"
    elsewhere = base64.urlsafe_b64encode(b"Token:nosuchsource:1").decode().rstrip("=")
    assert code_of(gateway, mutation, {"id": elsewhere}) == "NOT_FOUND"


def test_too_many_node_ids(gateway: Gateway) -> None:
    ids = ["VG9rZW46aW50ZXJuYWw6MA"] * 101
    assert (
        code_of(gateway, "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": ids})
        == "BAD_USER_INPUT"
    )


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("{ tokens(first: 5 }", "GRAPHQL_PARSE_FAILED"),
        ("{ tokenz }", "GRAPHQL_VALIDATION_FAILED"),
        ('{ tokens(filter: {name: ""}) { totalCount } }', "BAD_USER_INPUT"),
        ('{ tokens(filter: {sources: ["nope"]}) { totalCount } }', "BAD_USER_INPUT"),
        (
            '{ tokens(filter: {createdAfter: "2020-01-01T00:00:00"}) { totalCount } }',
            "BAD_USER_INPUT",
        ),
        (
            'mutation { createToken(input: {source: "nope", name: "x"}) { secret } }',
            "BAD_USER_INPUT",
        ),
        (
            'mutation { createToken(input: {source: "internal", name: ""}) { secret } }',
            "BAD_USER_INPUT",
        ),
        (
            'mutation { createToken(input: {source: "internal", name: "x", scopes: ["root"]}) { secret } }',
            "BAD_USER_INPUT",
        ),
        (
            'mutation { createToken(input: {source: "internal", name: "x", scopes: []}) { secret } }',
            "BAD_USER_INPUT",
        ),
    ],
)
def test_coded_errors(gateway: Gateway, query: str, code: str) -> None:
    assert code_of(gateway, query) == code


def test_variable_errors_and_batches(gateway: Gateway) -> None:
    assert (
        code_of(gateway, "query($n: Int) { tokens(first: $n) { totalCount } }", {"n": "ten"})
        == "BAD_USER_INPUT"
    )
    import httpx

    response = httpx.post(
        f"{gateway.url}/graphql",
        json=[{"query": "{ sources { key } }"}, {"query": "{ sources { key } }"}],
        headers={"Authorization": f"Bearer {gateway.admin_secret}"},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_graphql_response_json_media_type_gets_4xx_for_request_errors(gateway: Gateway) -> None:
    import httpx

    headers = {
        "Authorization": f"Bearer {gateway.admin_secret}",
        "Accept": "application/graphql-response+json",
    }
    for query in ("{ tokens(first: 5 }", "{ tokenz }"):
        response = httpx.post(f"{gateway.url}/graphql", json={"query": query}, headers=headers)
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("application/graphql-response+json")
        assert "data" not in response.json()
        assert response.json()["errors"][0]["extensions"]["code"].startswith("GRAPHQL_")
    ok = httpx.post(
        f"{gateway.url}/graphql", json={"query": "{ sources { key } }"}, headers=headers
    )
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith("application/graphql-response+json")
    field_error = httpx.post(
        f"{gateway.url}/graphql",
        json={"query": "{ tokens(first: 500) { totalCount } }"},
        headers=headers,
    )
    assert field_error.status_code == 200, "a field error still has data: 200"
    # Plain JSON clients (Apollo, Relay) keep HTTP 200 for every GraphQL error.
    plain = gateway.post("{ tokenz }")
    assert plain.status_code == 200 and plain.headers["content-type"] == "application/json"
