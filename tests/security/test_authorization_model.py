"""The authorization model, cell by cell, over real HTTP (the README's table).

Each cell is one caller kind and one target kind. The target is made fresh for the cell;
the caller then tries to see it (``node``), list it (``tokens``) and act on it (internal
tokens: switch it off; every token: revoke it). ``RW`` sees and acts, ``R`` sees only,
``-`` sees nothing: the target answers as missing and costs nothing upstream.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import BOOTSTRAP, Gateway
from tests.security.conftest import serving
from tokengate.gateway.demo import Simulated
from tokengate.upstreams import ids
from tokengate.upstreams.oauth.normalise import local_id_for
from tokengate.upstreams.oauth.simulator import SimToken

pytestmark = pytest.mark.slow

ALICE = "alice@example.com"
BOB = "bob@example.com"
RW = ["tokens:read", "tokens:write"]

# caller kind -> createToken fields (the unbound admin is the bootstrap token)
CALLERS: dict[str, dict[str, Any]] = {
    "admin": {},
    "admin@alice": {"scopes": ["tokens:admin"], "subject": ALICE},
    "admin@internal": {"scopes": ["tokens:admin"], "allowedSources": ["internal"]},
    "writer": {"scopes": RW},
    "writer@alice": {"scopes": RW, "subject": ALICE},
    "writer@internal": {"scopes": RW, "allowedSources": ["internal"]},
    "reader": {"scopes": ["tokens:read"]},
    "reader@alice": {"scopes": ["tokens:read"], "subject": ALICE},
}

# target kind -> how it is made
INTERNAL_TARGETS: dict[str, dict[str, Any]] = {
    "internal admin": {"scopes": ["tokens:admin"]},
    "internal writer": {"scopes": RW},
    "internal reader": {"scopes": ["tokens:read"]},
    "internal writer@alice": {"scopes": RW, "subject": ALICE},
    "internal reader@alice": {"scopes": ["tokens:read"], "subject": ALICE},
    "internal reader@bob": {"scopes": ["tokens:read"], "subject": BOB},
    "internal reader@internal": {"scopes": ["tokens:read"], "allowedSources": ["internal"]},
}
UPSTREAM_TARGETS = ("oauth alice", "oauth bob", "amper", "losant")

# The README's table: rows are callers, columns the targets in this order.
TARGETS = (*INTERNAL_TARGETS, *UPSTREAM_TARGETS)
TABLE = {
    #                  adm   wr    rd    wr@a  rd@a  rd@b  rd@i  oa@a  oa@b  amp   los
    "admin": "RW    RW    RW    RW    RW    RW    RW    RW    RW    RW    RW",
    "admin@alice": "-     -     -     RW    RW    -     -     RW    -     -     -",
    "admin@internal": "-     -     -     -     -     -     RW    -     -     -     -",
    "writer": "-     RW    RW    RW    RW    RW    RW    RW    RW    RW    RW",
    "writer@alice": "-     -     -     RW    RW    -     -     RW    -     -     -",
    "writer@internal": "-     -     -     -     -     -     RW    -     -     -     -",
    "reader": "-     -     R     -     R     R     R     R     R     R     R",
    "reader@alice": "-     -     -     -     R     -     -     R     -     -     -",
}
CELLS = [
    (caller, target, expected)
    for caller, row in TABLE.items()
    for target, expected in zip(TARGETS, row.split(), strict=True)
]

CREATE = """mutation($input: CreateTokenInput!) { createToken(input: $input) {
  secret token { id name } } }"""
NODE = "query($id: ID!) { node(id: $id) { id } }"
LIST = """query($filter: TokenFilter) {
  tokens(first: 100, filter: $filter) { nodes { id } } }"""
SWITCH_OFF = """mutation($id: ID!) { updateToken(input: {id: $id, status: INACTIVE}) {
  token { status } } }"""
REVOKE = "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }"


@dataclass
class World:
    gateway: Gateway
    sims: dict[str, Simulated]
    callers: dict[str, str]


@pytest.fixture(scope="module")
def world(sims: dict[str, Simulated], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with serving(sims, tmp_path_factory.mktemp("authz")) as gateway:
        callers = {"admin": BOOTSTRAP}
        for kind, fields in CALLERS.items():
            if fields:
                callers[kind] = gateway.data(
                    CREATE, {"input": {"source": "internal", "name": kind, **fields}}
                )["createToken"]["secret"]
        yield World(gateway, sims, callers)


def _make_target(world: World, kind: str) -> tuple[str, dict[str, Any]]:
    """(global id, the list filter that finds it) of a fresh token of this kind."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    gateway = world.gateway
    if kind in INTERNAL_TARGETS:
        fields = {"source": "internal", "name": name, **INTERNAL_TARGETS[kind]}
        created = gateway.data(CREATE, {"input": fields})["createToken"]["token"]
        return created["id"], {"sources": ["internal"], "name": name}
    if kind.startswith("oauth"):
        user = ALICE if kind.endswith("alice") else BOB
        token_id = str(uuid.uuid4())
        state = world.sims["idp"].state
        state.users.setdefault(user, []).append(
            SimToken(id=token_id, client_name=name, created_at=1_700_000_000_000, scopes=["x"])
        )
        return ids.token_id("idp", local_id_for(user, token_id)), {
            "sources": ["idp"],
            "userId": user,
        }
    source = "amper" if kind == "amper" else "fleet"
    fields = {"source": source, "name": name}
    if source == "fleet":
        fields["applicationId"] = world.sims["fleet"].source.application_ids[0]
    created = gateway.data(CREATE, {"input": fields})["createToken"]["token"]
    return created["id"], {"sources": [source], "name": name}


def _upstream_requests(world: World) -> int:
    return sum(len(sim.state.control.requests) for sim in world.sims.values())


def _clear_upstream_logs(world: World) -> None:
    for sim in world.sims.values():
        sim.state.control.requests.clear()


@pytest.mark.parametrize(
    ("caller", "target", "expected"), CELLS, ids=[f"{c}->{t}" for c, t, _ in CELLS]
)
def test_cell(world: World, caller: str, target: str, expected: str) -> None:
    scopes = CALLERS[caller].get("scopes", ["tokens:admin"])
    check_cell(world, world.callers[caller], scopes, target, expected)


def check_cell(world: World, secret: str, scopes: list[str], target: str, expected: str) -> None:
    """One cell: a caller holding ``secret`` (with ``scopes``) against a fresh ``target``
    (also for callers signed in at an identity provider, tests/security/test_jwt_bola.py)."""
    gateway = world.gateway
    target_id, list_filter = _make_target(world, target)
    may_write = "tokens:write" in scopes or "tokens:admin" in scopes

    _clear_upstream_logs(world)
    seen = gateway.data(NODE, {"id": target_id}, secret=secret)["node"]
    assert (seen is not None) == ("R" in expected), seen
    acts = [REVOKE] if target not in INTERNAL_TARGETS else [SWITCH_OFF, REVOKE]
    for mutation in acts:
        body = gateway.gql(mutation, {"id": target_id}, secret=secret)
        if expected == "RW":
            assert "errors" not in body, body
        else:
            code = "NOT_FOUND" if may_write and expected == "-" else "FORBIDDEN"
            assert body["errors"][0]["extensions"]["code"] == code, body
    if expected == "-":
        # What the caller may not see costs nothing upstream.
        assert _upstream_requests(world) == 0, [
            r for sim in world.sims.values() for r in sim.state.control.requests
        ]

    if expected != "RW":  # still there: the caller may or may not list it
        listed = gateway.gql(LIST, {"filter": list_filter}, secret=secret)
        if "R" in expected:
            assert "errors" not in listed, listed
        elif "errors" in listed:  # another user's list, or a source it may not read
            assert listed["errors"][0]["extensions"]["code"] in ("FORBIDDEN", "BAD_USER_INPUT")
        found = [n["id"] for n in (listed.get("data") or {}).get("tokens", {}).get("nodes", [])]
        assert (target_id in found) == ("R" in expected), listed
        # and the unbound admin still finds it (the refusals changed nothing)
        assert gateway.data(NODE, {"id": target_id})["node"] is not None


def test_the_table_names_every_cell() -> None:
    assert len(CELLS) == len(CALLERS) * len(TARGETS)
