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
