"""Callers signed in at an identity provider, probed as an attacker would: a JWT bound to
user U gets exactly what an internal token bound to U gets (the README's table, cell by
cell), and nothing of another user's tokens through node, nodes, _entities, filters, forged
or replayed cursors, or mutations. What is refused costs nothing upstream."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Gateway
from tests.cursor_forgery import token_cursor, unsigned
from tests.jwt_idp import Idp, SigningKey, claims, idp, jwt_gateway, sign
from tests.security.test_authorization_model import (
    ALICE,
    BOB,
    TABLE,
    TARGETS,
    World,
    check_cell,
)
from tokengate.gateway.demo import Simulated
from tokengate.upstreams import ids
from tokengate.upstreams.oauth.normalise import local_id_for
from tokengate.upstreams.oauth.simulator import SimToken

pytestmark = pytest.mark.slow

RW = ["tokens:read", "tokens:write"]
# JWT caller kind -> (scope claim, the row of the README's table it must match)
JWT_CALLERS: dict[str, tuple[list[str] | None, str]] = {
    "jwt admin": (["tokens:admin"], "admin"),
    "jwt writer@alice": (RW, "writer@alice"),
    "jwt reader@alice": (["tokens:read"], "reader@alice"),
    "jwt default@alice": (None, "reader@alice"),  # no tokens:* scope: default_scopes
}
CELLS = [
    (caller, target, expected)
    for caller, (_, row) in JWT_CALLERS.items()
    for target, expected in zip(TARGETS, TABLE[row].split(), strict=True)
]

CREATE = """mutation($input: CreateTokenInput!) { createToken(input: $input) {
  secret token { id name } } }"""
NODE = "query($id: ID!) { node(id: $id) { id } }"
NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }"
ENTITIES = """query($r: [_Any!]!) { _entities(representations: $r) { ... on Token { id } } }"""
LIST = """query($filter: TokenFilter, $after: String) {
  tokens(first: 100, filter: $filter, after: $after) {
    nodes { id name owner { kind id } } pageInfo { endCursor } } }"""
REVOKE = "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }"
RENAME = """mutation($id: ID!) { updateToken(input: {id: $id, name: "pwned"}) {
  token { id } } }"""
SWITCH_OFF = """mutation($id: ID!) { updateToken(input: {id: $id, status: INACTIVE}) {
  token { id } } }"""


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.rsa("bola")


@pytest.fixture(scope="module")
def provider(key: SigningKey) -> Iterator[Idp]:
    with idp(key) as running:
        yield running


def jwt_for(key: SigningKey, subject: str, scopes: list[str] | None) -> str:
    scope = None if scopes is None else " ".join(scopes)
    return sign(key, claims(subject, scope=scope, exp=2**31 - 1))


@pytest.fixture(scope="module")
def world(
    sims: dict[str, Simulated],
    provider: Idp,
    key: SigningKey,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    home = tmp_path_factory.mktemp("jwt-bola")
    sources = tuple(s.source for s in sims.values())
    with jwt_gateway(home, provider, sources=sources) as gateway:
        callers = {
            kind: jwt_for(key, ALICE if "@alice" in kind else "ops@example.com", scopes)
            for kind, (scopes, _) in JWT_CALLERS.items()
        }
        yield World(gateway, sims, callers)


def _requests(world: World) -> list[Any]:
    return [r for sim in world.sims.values() for r in sim.state.control.requests]


def _clear(world: World) -> None:
    for sim in world.sims.values():
        sim.state.control.requests.clear()


@pytest.mark.parametrize(
    ("caller", "target", "expected"), CELLS, ids=[f"{c}->{t}" for c, t, _ in CELLS]
)
def test_cell(world: World, caller: str, target: str, expected: str) -> None:
    scopes, _ = JWT_CALLERS[caller]
    check_cell(world, world.callers[caller], scopes or ["tokens:read"], target, expected)


# -- another user's tokens, through every entry point ------------------------------------


def _oauth_token(world: World, user: str) -> str:
    token_id = str(uuid.uuid4())
    world.sims["idp"].state.users.setdefault(user, []).append(
        SimToken(
            id=token_id,
            client_name=f"{user}-phone",
            created_at=1_700_000_000_000,
            scopes=["x"],
        )
    )
    return ids.token_id("idp", local_id_for(user, token_id))


def _internal(world: World, **fields: Any) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    created = world.gateway.data(
        CREATE, {"input": {"source": "internal", "name": name, "scopes": ["tokens:read"], **fields}}
    )
    token_id: str = created["createToken"]["token"]["id"]
    return token_id


@pytest.fixture
def others(world: World) -> dict[str, str]:
    """Tokens that are not alice's: bob's (OAuth-style and internal), an unbound internal
    one, an Amper one."""
    amper = world.gateway.data(
        CREATE, {"input": {"source": "amper", "name": f"a-{uuid.uuid4().hex[:8]}"}}
    )["createToken"]["token"]["id"]
    return {
        "bob oauth": _oauth_token(world, BOB),
        "bob internal": _internal(world, subject=BOB),
        "unbound internal": _internal(world),
        "amper": amper,
    }


def test_another_users_tokens_are_invisible_and_cost_nothing_upstream(
    world: World, others: dict[str, str]
) -> None:
    alice = world.callers["jwt writer@alice"]
    gateway = world.gateway
    _clear(world)
    for target in others.values():
        assert gateway.data(NODE, {"id": target}, secret=alice)["node"] is None
        for mutation in (REVOKE, RENAME, SWITCH_OFF):
            body = gateway.gql(mutation, {"id": target}, secret=alice)
            assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND", body
    targets = list(others.values())
    assert gateway.data(NODES, {"ids": targets}, secret=alice)["nodes"] == [None] * len(targets)
    representations = [{"__typename": "Token", "id": t} for t in targets]
    entities = gateway.data(ENTITIES, {"r": representations}, secret=alice)
    assert entities["_entities"] == [None] * len(targets)
    assert _requests(world) == []
    # Everything is still there for the admin.
    for target in targets:
        assert gateway.data(NODE, {"id": target})["node"] == {"id": target}


def test_filters_cannot_widen_the_binding(world: World) -> None:
    alice = world.callers["jwt reader@alice"]
    gateway = world.gateway
    own = {_oauth_token(world, ALICE), _internal(world, subject=ALICE)}
    _clear(world)
    for list_filter in (
        {"userId": BOB},
        {"userId": BOB, "sources": ["idp"]},
        {"userId": "ops@example.com", "sources": ["internal"]},
    ):
        body = gateway.gql(LIST, {"filter": list_filter}, secret=alice)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body
    assert _requests(world) == []
    mine = gateway.data(LIST, {"filter": {"userId": ALICE}}, secret=alice)["tokens"]["nodes"]
    every = gateway.data(LIST, {}, secret=alice)["tokens"]["nodes"]
    assert own <= {n["id"] for n in every} == {n["id"] for n in mine}
    assert {n["owner"]["id"] for n in every} == {ALICE}
    # The only upstream asked is the OAuth-style one, about alice.
    asked = [r.path for r in _requests(world)]
    assert asked and all("alice" in path for path in asked), asked


def test_cursors_replayed_or_forged_reveal_nothing(world: World, others: dict[str, str]) -> None:
    alice = world.callers["jwt writer@alice"]
    gateway = world.gateway
    for _ in range(3):
        _oauth_token(world, BOB)
    bobs = gateway.data(LIST.replace("first: 100", "first: 2"), {"filter": {"userId": BOB}})
    cursor = bobs["tokens"]["pageInfo"]["endCursor"]
    everyone = gateway.data(LIST.replace("first: 100", "first: 2"), {})
    wide_cursor = everyone["tokens"]["pageInfo"]["endCursor"]
    _clear(world)
    body = gateway.gql(LIST, {"filter": {"userId": BOB}, "after": cursor}, secret=alice)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert _requests(world) == []
    for replayed in (cursor, wide_cursor):
        page = gateway.gql(LIST, {"after": replayed}, secret=alice)
        nodes = ((page.get("data") or {}).get("tokens") or {}).get("nodes") or []
        assert all(n["owner"]["id"] == ALICE for n in nodes), page
        assert not {n["id"] for n in nodes} & set(others.values())
    # Cursors made by hand: a real one with its MAC altered, and one naming bob's token.
    bob_local = local_id_for(BOB, str(uuid.uuid4()))
    for forged in (
        cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB"),
        unsigned(token_cursor(source="idp", local_id=bob_local)),
        unsigned(token_cursor(source="idp", local_id=bob_local, version=1)),
    ):
        _clear(world)
        body = gateway.gql(LIST, {"after": forged}, secret=alice)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
        assert _requests(world) == []


def test_a_bound_caller_creates_only_its_own_internal_tokens(world: World) -> None:
    alice = world.callers["jwt writer@alice"]
    gateway = world.gateway
    _clear(world)
    for fields in (
        {"source": "internal", "subject": BOB},
        {"source": "internal", "scopes": ["tokens:admin"]},
        {"source": "amper"},
        {"source": "idp"},
    ):
        body = gateway.gql(CREATE, {"input": {"name": "x", **fields}}, secret=alice)
        assert body["errors"][0]["extensions"]["code"] in ("FORBIDDEN", "UNSUPPORTED_OPERATION")
    assert _requests(world) == []
    reader = world.callers["jwt reader@alice"]
    body = gateway.gql(CREATE, {"input": {"name": "x", "source": "internal"}}, secret=reader)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize(
    "forge",
    [
        "admin scope, another key",
        "another user's subject, bad signature",
        "expired admin",
        "wrong audience",
    ],
)
def test_a_refused_caller_causes_no_upstream_call(
    world: World, key: SigningKey, forge: str
) -> None:
    if forge == "admin scope, another key":
        token = sign(SigningKey.rsa(key.kid), claims(ALICE, scope="tokens:admin"))
    elif forge == "another user's subject, bad signature":
        real = jwt_for(key, ALICE, RW).split(".")
        other = jwt_for(key, BOB, RW).split(".")
        token = ".".join([real[0], other[1], real[2]])
    elif forge == "expired admin":
        token = sign(key, claims("ops@example.com", scope="tokens:admin", exp=1_000_000))
    else:
        token = sign(key, claims(ALICE, aud="someone-else"))
    _clear(world)
    for query, variables in (
        (LIST, {"filter": {"userId": BOB}}),
        (REVOKE, {"id": _oauth_token(world, BOB)}),
    ):
        response = world.gateway.post(query, variables, secret=token)
        assert response.status_code == 401
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert _requests(world) == []


def test_gateway_is_the_one_under_test(world: World) -> None:
    """The suite's gateway accepts the JWTs it is given (a suite where every JWT were
    refused would pass the tests above for the wrong reason)."""
    gateway: Gateway = world.gateway
    for caller in JWT_CALLERS:
        assert gateway.post("{ sources { key } }", secret=world.callers[caller]).status_code == 200
