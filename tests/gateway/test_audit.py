"""Every mutation leaves an audit record (success or not), readable by admins only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BOOTSTRAP, UNLIMITED, Gateway, gateway_config
from tokengate.gateway.app import create_app
from tokengate.gateway.config import ServerConfig
from tokengate.upstreams.loopback import serve_in_thread

AUDIT = """query($after: String) { auditEvents(first: 2, after: $after) {
  edges { cursor node { action targetId source outcome actorTokenId at } }
  pageInfo { hasNextPage endCursor } } }"""


def test_audit_log(gateway: Gateway) -> None:
    made = gateway.data(
        'mutation { createToken(input: {source: "internal", name: "audited", scopes: ["tokens:read", "tokens:write"]}) { secret token { id } } }'
    )["createToken"]
    token_id, secret = made["token"]["id"], made["secret"]
    gateway.data(
        'mutation($id: ID!) { updateToken(input: {id: $id, description: "d"}) { token { id } } }',
        {"id": token_id},
    )
    failed = gateway.gql(
        'mutation { createToken(input: {source: "internal", name: "x", scopes: ["tokens:admin"]}) { secret } }',
        secret=secret,
    )
    assert failed["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    gateway.data(
        "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }", {"id": token_id}
    )

    events = []
    cursor = None
    while True:
        page = gateway.data(AUDIT, {"after": cursor})["auditEvents"]
        events.extend(e["node"] for e in page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        cursor = page["pageInfo"]["endCursor"]
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("revoke", "ok"),
        ("create", "FORBIDDEN"),
        ("update", "ok"),
        ("create", "ok"),
    ]
    assert events[0]["targetId"] == token_id == events[2]["targetId"] == events[3]["targetId"]
    assert events[1]["actorTokenId"] == token_id, "the failed create was made by the new token"
    assert all(e["source"] == "internal" and e["at"].endswith("+00:00") for e in events)


def test_audit_needs_admin_and_valid_cursor(gateway: Gateway) -> None:
    reader = gateway.data(
        'mutation { createToken(input: {source: "internal", name: "r"}) { secret } }'
    )
    body = gateway.gql(AUDIT, {"after": None}, secret=reader["createToken"]["secret"])
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = gateway.gql(AUDIT, {"after": "garbage"})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.fixture
def locked_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    config = gateway_config(
        tmp_path, server=ServerConfig(graphiql=False, introspection=False), limits=UNLIMITED
    )
    with serve_in_thread(create_app(config)) as url:
        yield Gateway(url=url, admin_secret=BOOTSTRAP, config=config)


def test_introspection_and_graphiql_can_be_turned_off(locked_down: Gateway) -> None:
    import httpx

    body = locked_down.gql("{ __schema { types { name } } }")
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "introspection" in body["errors"][0]["message"].lower()
    assert locked_down.data("{ sources { key } }")["sources"] == [{"key": "internal"}]
    page = httpx.get(f"{locked_down.url}/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 404 or "graphiql" not in page.text.lower()
