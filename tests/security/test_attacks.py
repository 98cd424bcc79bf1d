"""Attacks on the gateway's own surface: broken object-level authorization, escalation,
forged identifiers, hostile inputs, and secrets leaking into logs."""

from __future__ import annotations

import base64
import json

import pytest

from tests.conftest import Gateway, LogCapture

pytestmark = pytest.mark.slow

CREATE = """mutation($input: CreateTokenInput!) { createToken(input: $input) {
  secret token { id } } }"""


def make(gateway: Gateway, secret: str | None = None, **fields: object) -> tuple[str, str]:
    payload = gateway.data(CREATE, {"input": {"source": "internal", **fields}}, secret=secret)
    return payload["createToken"]["token"]["id"], payload["createToken"]["secret"]


def gid(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.fixture
def two_users(gateway: Gateway) -> dict[str, tuple[str, str]]:
    return {
        "alice": make(
            gateway, name="alice", scopes=["tokens:read", "tokens:write"], subject="alice"
        ),
        "bob": make(gateway, name="bob", scopes=["tokens:read", "tokens:write"], subject="bob"),
        "ops": make(gateway, name="ops", scopes=["tokens:read"]),
    }


def test_cross_user_reads_through_every_entry_point(
    gateway: Gateway, two_users: dict[str, tuple[str, str]]
) -> None:
    _, alice = two_users["alice"]
    bob_id, _ = two_users["bob"]
    ops_id, _ = two_users["ops"]
    for target in (bob_id, ops_id):
        assert (
            gateway.data("query($id: ID!) { node(id: $id) { id } }", {"id": target}, secret=alice)[
                "node"
            ]
            is None
        )
        assert gateway.data(
            "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": [target]}, secret=alice
        )["nodes"] == [None]
        entities = gateway.data(
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on Token { id } } }",
            {"r": [{"__typename": "Token", "id": target}]},
            secret=alice,
        )
        assert entities["_entities"] == [None]
    names = {
        e["node"]["name"]
        for e in gateway.data("{ tokens(first: 100) { edges { node { name } } } }", secret=alice)[
            "tokens"
        ]["edges"]
    }
    assert names == {"alice"}
    # Asking the binding away through filters does not work either.
    body = gateway.gql('{ tokens(filter: {userId: "bob"}) { totalCount } }', secret=alice)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_cross_user_mutations_answer_not_found(
    gateway: Gateway, two_users: dict[str, tuple[str, str]]
) -> None:
    _, alice = two_users["alice"]
    bob_id, _ = two_users["bob"]
    missing = gid("Token:internal:" + "0" * 32)
    for mutation in (
        "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }",
        'mutation($id: ID!) { updateToken(input: {id: $id, name: "pwned"}) { token { id } } }',
    ):
        other = gateway.gql(mutation, {"id": bob_id}, secret=alice)
        absent = gateway.gql(mutation, {"id": missing}, secret=alice)
        # Same answer for "exists but not yours" and "does not exist": nothing to learn.
        assert (
            other["errors"][0]["extensions"]
            == absent["errors"][0]["extensions"]
            == {"code": "NOT_FOUND"}
        )
        assert other["errors"][0]["message"] == absent["errors"][0]["message"]
    node = gateway.data(
        "query($id: ID!) { node(id: $id) { ... on Token { name status } } }", {"id": bob_id}
    )
    assert node["node"] == {"name": "bob", "status": "ACTIVE"}


@pytest.mark.parametrize(
    "escalation",
    [
        {"scopes": ["tokens:admin"]},
        {"scopes": ["tokens:read", "tokens:write", "tokens:admin"]},
        {"subject": "bob"},
        {"allowedSources": ["internal", "elsewhere"]},
    ],
)
def test_scope_and_binding_escalation(
    gateway: Gateway, two_users: dict[str, tuple[str, str]], escalation: dict[str, object]
) -> None:
    _, alice = two_users["alice"]
    body = gateway.gql(
        CREATE, {"input": {"source": "internal", "name": "esc", **escalation}}, secret=alice
    )
    assert body["errors"][0]["extensions"]["code"] in ("FORBIDDEN", "BAD_USER_INPUT")
    assert body["data"] is None


@pytest.mark.parametrize(
    "forged",
    [
        gid("Token:internal:../../etc/passwd"),
        gid("Token:internal:" + "a" * 5000),
        gid("Token:INTERNAL:abc"),
        gid("Token:internal:\x00abc"),
        gid("Token:idp:..%2F..%2Fadmin/x"),
        gid("Source:internal:"),
        "VG9rZW46aW50ZXJuYWw6" + "%2e%2e",
    ],
)
def test_forged_and_tampered_ids(gateway: Gateway, forged: str) -> None:
    body = gateway.gql("query($id: ID!) { node(id: $id) { id } }", {"id": forged})
    text = json.dumps(body)
    assert "Traceback" not in text
    if "errors" in body:
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    else:
        assert body["data"]["node"] in (None, {"id": forged})
    revoke = gateway.gql(
        "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }", {"id": forged}
    )
    assert revoke["errors"][0]["extensions"]["code"] in ("NOT_FOUND", "BAD_USER_INPUT")


@pytest.mark.parametrize(
    "glob",
    ["x" * 101, "*" * 11, "\x00", "a\nb", ""],
)
def test_glob_bounds(gateway: Gateway, glob: str) -> None:
    body = gateway.gql(
        "query($g: String) { tokens(filter: {name: $g}) { totalCount } }", {"g": glob}
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_glob_metacharacters_are_literal(gateway: Gateway) -> None:
    make(gateway, name="a%b_c[d]")
    make(gateway, name="aXbYc[d]")
    for glob, expected in (("a%b_c[d]", 1), ("a%b*", 1), ("a?b?c[d]", 2), ("[ad]*", 0)):
        total = gateway.data(
            "query($g: String) { tokens(filter: {name: $g}) { totalCount } }", {"g": glob}
        )
        assert total["tokens"]["totalCount"] == expected, glob


def test_secrets_never_reach_the_logs(gateway: Gateway, captured_logs: LogCapture) -> None:
    token_id, secret = make(gateway, name="logged", scopes=["tokens:read", "tokens:write"])
    gateway.post("{ sources { key } }", secret=secret)
    gateway.post("{ sources { key } }", secret=secret + "wrong")
    gateway.post("{ tokens(first: 500) { totalCount } }", secret=secret)
    gateway.post(
        "query($s: String) { tokens(filter: {name: $s}) { totalCount } }",
        {"s": secret},
        secret=secret,
    )
    gateway.gql(
        'mutation($id: ID!) { updateToken(input: {id: $id, description: "x"}) { token { id } } }',
        {"id": token_id},
    )
    gateway.gql(
        "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }", {"id": token_id}
    )
    gateway.post("{ sources { key } }", secret=secret)  # revoked: 401
    text = captured_logs.text
    assert captured_logs.lines, "the capture must see the gateway's logs"
    for leaked in (secret, secret[8:], gateway.admin_secret):
        assert leaked not in text


def test_no_mutations_over_get(gateway: Gateway) -> None:
    import httpx

    response = httpx.get(
        f"{gateway.url}/graphql",
        params={
            "query": 'mutation { createToken(input: {source: "internal", name: "csrf"}) { secret } }'
        },
        headers={"Authorization": f"Bearer {gateway.admin_secret}"},
    )
    assert "secret" not in response.text or '"data":null' in response.text.replace(" ", "")
    assert (
        gateway.data('{ tokens(filter: {name: "csrf"}) { totalCount } }')["tokens"]["totalCount"]
        == 0
    )
