"""Apollo Federation v2: the subgraph SDL and entity resolution through the batched loader."""

from __future__ import annotations

from tests.conftest import Gateway

CREATE = 'mutation { createToken(input: {source: "internal", name: "fed"}) { token { id } } }'


def test_service_sdl_has_the_token_key(gateway: Gateway) -> None:
    sdl = gateway.data("{ _service { sdl } }")["_service"]["sdl"]
    assert 'type Token implements Node @key(fields: "id")' in sdl
    assert "federation/v2" in sdl
    assert "type PageInfo @shareable" in sdl


def test_entities_resolve_token_representations(gateway: Gateway) -> None:
    token_id = gateway.data(CREATE)["createToken"]["token"]["id"]
    missing = "VG9rZW46aW50ZXJuYWw6MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA"
    data = gateway.data(
        """query($r: [_Any!]!) { _entities(representations: $r) { ... on Token { id name provider } } }""",
        {"r": [{"__typename": "Token", "id": token_id}, {"__typename": "Token", "id": missing}]},
    )
    assert data["_entities"] == [{"id": token_id, "name": "fed", "provider": "INTERNAL"}, None]


def test_non_token_representations_are_bad_input(gateway: Gateway) -> None:
    body = gateway.gql(
        """query($r: [_Any!]!) { _entities(representations: $r) { ... on Token { id } } }""",
        {"r": [{"__typename": "Source", "id": "x"}, {"__typename": "Nope"}, {"id": "x"}]},
    )
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"] * 3
    assert body["data"]["_entities"] == [None, None, None]


USER_TOKENS = """query($r: [_Any!]!) { _entities(representations: $r) {
  ... on User { id tokens { totalCount nodes { id } } } } }"""


def test_user_entities_list_the_users_internal_tokens(gateway: Gateway) -> None:
    """The quick loop's check of the User entity (the simulators' suite is
    tests/federation): one user's tokens only, and a caller bound to another user is
    refused on that entry alone."""
    create = """mutation($subject: String) { createToken(input: {source: "internal",
      name: "fed", scopes: ["tokens:read"], subject: $subject}) { secret token { id } } }"""
    mine = gateway.data(create, {"subject": "u1"})["createToken"]
    gateway.data(create, {"subject": "u2"})
    gateway.data(create, {"subject": None})
    reps = [{"__typename": "User", "id": "u1"}, {"__typename": "User", "id": "u2"}]
    u1, u2 = gateway.data(USER_TOKENS, {"r": reps})["_entities"]
    assert u1 == {"id": "u1", "tokens": {"totalCount": 1, "nodes": [mine["token"]]}}
    assert u2["tokens"]["totalCount"] == 1
    body = gateway.gql(USER_TOKENS, {"r": reps}, secret=mine["secret"])
    assert [(e["extensions"]["code"], e["path"]) for e in body["errors"]] == [
        ("FORBIDDEN", ["_entities", 1, "tokens"])
    ]
    assert body["data"]["_entities"] == [u1, None]


def test_viewer_is_the_caller(gateway: Gateway) -> None:
    viewer = "{ viewer { subject scopes tokens { totalCount } } }"
    assert gateway.data(viewer)["viewer"] == {
        "subject": None,
        "scopes": ["tokens:admin"],
        "tokens": {"totalCount": 0},
    }
    create = """mutation { createToken(input: {source: "internal", name: "me",
      scopes: ["tokens:read"], subject: "u1"}) { secret } }"""
    secret = gateway.data(create)["createToken"]["secret"]
    assert gateway.data(viewer, secret=secret)["viewer"] == {
        "subject": "u1",
        "scopes": ["tokens:read"],
        "tokens": {"totalCount": 1},
    }
