"""Who gets in: 401 for missing/bad credentials, FORBIDDEN for a missing scope, bindings."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Gateway

CREATE = """mutation($input: CreateTokenInput!) { createToken(input: $input) {
  secret token { id owner { kind id } } } }"""


def make(gateway: Gateway, secret: str | None = None, **fields: object) -> tuple[str, str]:
    body = gateway.gql(CREATE, {"input": {"source": "internal", **fields}}, secret=secret)
    assert "errors" not in body, body
    payload = body["data"]["createToken"]
    return payload["token"]["id"], payload["secret"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer tg_not-a-real-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "tg_raw_secret_without_scheme"},
    ],
    ids=["missing", "empty", "unknown", "basic", "no-scheme"],
)
def test_missing_or_bad_credentials_answer_401(gateway: Gateway, headers: dict[str, str]) -> None:
    response = httpx.post(
        f"{gateway.url}/graphql", json={"query": "{ sources { key } }"}, headers=headers
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    get = httpx.get(
        f"{gateway.url}/graphql", params={"query": "{ sources { key } }"}, headers=headers
    )
    assert get.status_code == 401


def test_graphiql_page_needs_no_token_but_its_queries_do(gateway: Gateway) -> None:
    page = httpx.get(f"{gateway.url}/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()


def test_revoked_token_is_refused(gateway: Gateway) -> None:
    token_id, secret = make(gateway, name="soon-gone", scopes=["tokens:read"])
    assert gateway.post("{ sources { key } }", secret=secret).status_code == 200
    gateway.data(
        "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }", {"id": token_id}
    )
    assert gateway.post("{ sources { key } }", secret=secret).status_code == 401


def test_scopes(gateway: Gateway) -> None:
    _, reader = make(gateway, name="reader", scopes=["tokens:read"])
    _, writer = make(gateway, name="writer", scopes=["tokens:write"])
    body = gateway.gql(
        CREATE,
        {"input": {"source": "internal", "name": "x", "scopes": ["tokens:read"]}},
        secret=reader,
    )
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert body["data"] is None
    body = gateway.gql("{ tokens { totalCount } }", secret=writer)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # A reader lists what is no wider than itself: itself, not the writer or the admin.
    listed = gateway.data("{ tokens { totalCount nodes { name } } }", secret=reader)["tokens"]
    assert listed["totalCount"] == 1
    assert [n["name"] for n in listed["nodes"]] == ["reader"]


def test_no_scope_escalation(gateway: Gateway) -> None:
    _, rw = make(gateway, name="rw", scopes=["tokens:read", "tokens:write"])
    body = gateway.gql(
        CREATE,
        {"input": {"source": "internal", "name": "up", "scopes": ["tokens:admin"]}},
        secret=rw,
    )
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "secret" not in str(body.get("data"))
    _, bound = make(
        gateway,
        name="bound",
        scopes=["tokens:read", "tokens:write"],
        subject="alice",
        allowedSources=["internal"],
    )
    for wider in ({"subject": "bob"}, {"allowedSources": ["internal", "other"]}):
        body = gateway.gql(
            CREATE, {"input": {"source": "internal", "name": "w", **wider}}, secret=bound
        )
        assert body["errors"][0]["extensions"]["code"] in ("FORBIDDEN", "BAD_USER_INPUT"), body
    # Without a binding in the input, the new token inherits the caller's.
    token_id, _ = make(gateway, secret=bound, name="child")
    owner = gateway.data(
        "query($id: ID!) { node(id: $id) { ... on Token { owner { kind id } } } }", {"id": token_id}
    )
    assert owner["node"]["owner"] == {"kind": "USER", "id": "alice"}


def test_user_bound_token_sees_and_touches_only_its_own(gateway: Gateway) -> None:
    alice_id, alice = make(
        gateway, name="alice-rw", scopes=["tokens:read", "tokens:write"], subject="alice"
    )
    bob_id, _bob = make(gateway, name="bob", scopes=["tokens:read"], subject="bob")
    listed = gateway.data(
        "{ tokens(first: 100) { totalCount edges { node { id } } } }", secret=alice
    )
    assert [e["node"]["id"] for e in listed["tokens"]["edges"]] == [alice_id]
    assert listed["tokens"]["totalCount"] == 1
    node = gateway.data("query($id: ID!) { node(id: $id) { id } }", {"id": bob_id}, secret=alice)
    assert node["node"] is None
    body = gateway.gql(
        "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }",
        {"id": bob_id},
        secret=alice,
    )
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    body = gateway.gql('{ tokens(filter: {userId: "bob"}) { totalCount } }', secret=alice)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # Bob's token is untouched.
    assert (
        gateway.data(
            "query($id: ID!) { node(id: $id) { ... on Token { status } } }", {"id": bob_id}
        )["node"]["status"]
        == "ACTIVE"
    )


def test_source_bound_token_sees_nothing_else(gateway: Gateway) -> None:
    _, other = make(gateway, name="elsewhere", scopes=["tokens:read"], allowedSources=["internal"])
    assert gateway.data("{ sources { key } }", secret=other)["sources"] == [{"key": "internal"}]
