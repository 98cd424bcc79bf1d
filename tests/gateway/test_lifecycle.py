"""Create -> list -> node -> update -> revoke over real HTTP, and where the secret may appear."""

from __future__ import annotations

from pathlib import Path

from graphql import GraphQLInterfaceType, GraphQLObjectType, build_schema, get_named_type

from tests.conftest import Gateway, LogCapture

CREATE = """
mutation($input: CreateTokenInput!) {
  createToken(input: $input) {
    secret clientMutationId
    token { id name description status scopes secretHint provider externalId createdAt
            owner { kind id } source { key provider } }
  }
}"""
NODE = (
    "query($id: ID!) { node(id: $id) { id ... on Token { name description status lastUsedAt } } }"
)
LIST = """
query($filter: TokenFilter) {
  tokens(first: 100, filter: $filter) { totalCount edges { node { id name status } } }
}"""


def test_create_list_node_update_revoke(
    gateway: Gateway, captured_logs: LogCapture, tmp_path: Path
) -> None:
    created = gateway.data(
        CREATE,
        {
            "input": {
                "source": "internal",
                "name": "ci-deploy",
                "description": "CI",
                "scopes": ["tokens:read"],
                "clientMutationId": "m1",
            }
        },
    )["createToken"]
    secret = created["secret"]
    token = created["token"]
    assert secret.startswith("tg_") and len(secret) == 46
    assert created["clientMutationId"] == "m1"
    assert token["secretHint"] == f"tg_{secret[3:7]}…" and secret not in str(token)
    assert token["provider"] == "INTERNAL" and token["source"] == {
        "key": "internal",
        "provider": "INTERNAL",
    }
    assert token["status"] == "ACTIVE" and token["scopes"] == ["tokens:read"]
    assert token["createdAt"].endswith("+00:00")

    listed = gateway.data(LIST, {"filter": {"name": "CI-*"}})["tokens"]
    assert listed["totalCount"] == 1
    assert listed["edges"][0]["node"] == {
        "id": token["id"],
        "name": "ci-deploy",
        "status": "ACTIVE",
    }

    # The new token works as a credential, and its use is recorded.
    own = gateway.data(NODE, {"id": token["id"]}, secret=secret)["node"]
    assert own["name"] == "ci-deploy" and own["lastUsedAt"] is not None

    updated = gateway.data(
        """mutation($id: ID!) { updateToken(input: {id: $id, name: "ci-deploy-2", status: INACTIVE}) {
             token { id name status description } } }""",
        {"id": token["id"]},
    )["updateToken"]["token"]
    assert updated == {
        "id": token["id"],
        "name": "ci-deploy-2",
        "status": "INACTIVE",
        "description": "CI",
    }
    # An inactive token no longer authenticates.
    assert gateway.post("{ sources { key } }", secret=secret).status_code == 401

    revoked = gateway.data(
        "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }",
        {"id": token["id"]},
    )
    assert revoked["revokeToken"]["revokedTokenId"] == token["id"]
    # Kept for audit, out of default lists, visible when asked for.
    assert gateway.data(NODE, {"id": token["id"]})["node"]["status"] == "REVOKED"
    assert gateway.data(LIST, {"filter": {"name": "ci-*"}})["tokens"]["totalCount"] == 0
    assert (
        gateway.data(LIST, {"filter": {"name": "ci-*", "statuses": ["REVOKED"]}})["tokens"][
            "totalCount"
        ]
        == 1
    )
    # Revoking twice is fine; updating a revoked token is refused.
    gateway.data(
        "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }",
        {"id": token["id"]},
    )
    body = gateway.gql(
        "mutation($id: ID!) { updateToken(input: {id: $id, status: ACTIVE}) { token { id } } }",
        {"id": token["id"]},
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

    # The secret is nowhere at rest and nowhere in the logs.
    db = b"".join(p.read_bytes() for p in tmp_path.glob("gateway.db*"))
    assert b"tg_" + secret[3:].encode() not in db and secret[8:].encode() not in db
    assert secret not in captured_logs.text and secret[8:] not in captured_logs.text
    assert gateway.admin_secret not in captured_logs.text


def test_secret_is_returned_once_only(gateway: Gateway) -> None:
    created = gateway.data(CREATE, {"input": {"source": "internal", "name": "once"}})["createToken"]
    assert created["token"]["scopes"] == ["tokens:read"]  # default scope
    query = "query($id: ID!) { node(id: $id) { ... on Token { secretHint } } }"
    hint = gateway.data(query, {"id": created["token"]["id"]})["node"]["secretHint"]
    assert hint == f"tg_{created['secret'][3:7]}…"
    # No other field of the schema returns a string named like a secret.
    sdl = Path(__file__).resolve().parents[2].joinpath("schema.graphql").read_text()
    schema = build_schema(sdl, assume_valid_sdl=True)
    returning = [
        f"{name}.{field}"
        for name, kind in schema.type_map.items()
        if isinstance(kind, GraphQLObjectType | GraphQLInterfaceType)
        for field, definition in kind.fields.items()
        if "secret" in field.lower()
        and field != "secretHint"
        and get_named_type(definition.type) is schema.type_map["String"]
    ]
    assert len(returning) == 1, returning  # the create payload's, once


def test_nodes_and_sources(gateway: Gateway) -> None:
    ids = [
        gateway.data(CREATE, {"input": {"source": "internal", "name": f"n{i}"}})["createToken"][
            "token"
        ]["id"]
        for i in range(3)
    ]
    missing = "VG9rZW46aW50ZXJuYWw6MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA"
    data = gateway.data(
        "query($ids: [ID!]!) { nodes(ids: $ids) { id ... on Token { name } } }",
        {"ids": [*ids, missing]},
    )
    assert [n and n["name"] for n in data["nodes"]] == ["n0", "n1", "n2", None]
    sources = gateway.data(
        "{ sources { id key name provider capabilities { canCreate canUpdate canRevoke nativeSortFields } } }"
    )
    [internal] = sources["sources"]
    assert internal["key"] == "internal" and internal["capabilities"]["canRevoke"] is True
    node = gateway.data(
        "query($id: ID!) { node(id: $id) { id ... on Source { key } } }", {"id": internal["id"]}
    )
    assert node["node"]["key"] == "internal"


def test_expires_at_must_be_future_and_expired_tokens_show_expired(gateway: Gateway) -> None:
    body = gateway.gql(
        CREATE,
        {"input": {"source": "internal", "name": "old", "expiresAt": "2001-01-01T00:00:00Z"}},
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    body = gateway.gql(
        CREATE,
        {"input": {"source": "internal", "name": "naive", "expiresAt": "2099-01-01T00:00:00"}},
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    ok = gateway.data(
        CREATE,
        {
            "input": {
                "source": "internal",
                "name": "later",
                "expiresAt": "2099-01-01T02:00:00+02:00",
            }
        },
    )
    token_id = ok["createToken"]["token"]["id"]
    got = gateway.data(
        "query($id: ID!) { node(id: $id) { ... on Token { expiresAt } } }", {"id": token_id}
    )
    assert got["node"]["expiresAt"] == "2099-01-01T00:00:00+00:00"
