"""Regressions for what probing the demo as an attacker found about rights over other
tokens: each test reproduces one finding over real HTTP."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BOOTSTRAP, Gateway, gateway_config
from tokengate.gateway.app import create_app
from tokengate.gateway.config import LimitsConfig
from tokengate.gateway.demo import Simulated
from tokengate.upstreams.loopback import serve_in_thread

pytestmark = pytest.mark.slow

CREATE = """mutation($input: CreateTokenInput!) { createToken(input: $input) {
  secret token { id } } }"""
NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }"
RW = ["tokens:read", "tokens:write"]


def gid(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def make(gateway: Gateway, secret: str | None = None, **fields: Any) -> tuple[str, str]:
    body = gateway.data(CREATE, {"input": {"source": "internal", **fields}}, secret=secret)
    return body["createToken"]["token"]["id"], body["createToken"]["secret"]


def _requests(sims: dict[str, Simulated]) -> list[Any]:
    return [r for sim in sims.values() for r in sim.state.control.requests]


def test_ids_of_sources_the_caller_may_not_read_cost_nothing_upstream(
    gw: Gateway, sims: dict[str, Simulated]
) -> None:
    """Finding 3: an internal-only token's ``nodes`` of 100 upstream ids made 100 upstream
    GETs with the gateway's credentials, and a failing source answered with its error."""
    _, internal_only = make(gw, name="io", scopes=["tokens:read"], allowedSources=["internal"])
    app = sims["fleet"].source.application_ids[0]
    forged = [gid(f"Token:amper:{i:024x}") for i in range(50)] + [
        gid(f"Token:fleet:{app}/{i:024x}") for i in range(50)
    ]
    sims["fleet"].state.control.set_faults([{"kind": "status", "status": 503}])
    body = gw.gql(NODES, {"ids": forged}, secret=internal_only)
    assert body == {"data": {"nodes": [None] * 100}}
    assert _requests(sims) == []


def test_a_user_bound_caller_asks_nothing_upstream_for_another_users_ids(
    gw: Gateway, sims: dict[str, Simulated]
) -> None:
    _, alice = make(gw, name="alice", scopes=RW, subject="alice")
    forged = [gid(f"Token:idp:bob/{i:08x}-6221-4f06-a75e-ef6e6f06d32b") for i in range(20)]
    forged += [gid(f"Token:amper:{i:024x}") for i in range(20)]
    assert gw.data(NODES, {"ids": forged}, secret=alice)["nodes"] == [None] * 40
    for target in forged[:3] + forged[-3:]:
        revoke = gw.gql(
            "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }",
            {"id": target},
            secret=alice,
        )
        assert revoke["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert _requests(sims) == []


def test_an_admin_bound_to_a_user_stays_bound(gw: Gateway) -> None:
    """Finding 4: ``tokens:admin`` dropped the subject binding (other users' tokens, the
    audit log)."""
    bob_id, _ = make(gw, name="bob", scopes=["tokens:read"], subject="bob")
    _, bound_admin = make(gw, name="alice-admin", scopes=["tokens:admin"], subject="alice")
    assert (
        gw.data("query($id: ID!) { node(id: $id) { id } }", {"id": bob_id}, secret=bound_admin)[
            "node"
        ]
        is None
    )
    listed = gw.gql('{ tokens(filter: {userId: "bob"}) { totalCount } }', secret=bound_admin)
    assert listed["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    audit = gw.gql("{ auditEvents { nodes { action } } }", secret=bound_admin)
    assert audit["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    own = gw.data("{ tokens(first: 100) { nodes { name } } }", secret=bound_admin)
    assert {n["name"] for n in own["tokens"]["nodes"]} == {"alice-admin"}


def test_a_user_bound_writer_cannot_switch_on_what_an_admin_switched_off(gw: Gateway) -> None:
    """Finding 4, second half: the bound admin token (or any wider one) is not the bound
    writer's to re-activate."""
    wide_id, _ = make(gw, name="alice-admin", scopes=["tokens:admin"], subject="alice")
    _, writer = make(gw, name="alice-writer", scopes=RW, subject="alice")
    update = """mutation($id: ID!, $s: TokenStatus!) {
      updateToken(input: {id: $id, status: $s}) { token { status } } }"""
    assert "errors" not in gw.gql(update, {"id": wide_id, "s": "INACTIVE"})
    again = gw.gql(update, {"id": wide_id, "s": "ACTIVE"}, secret=writer)
    assert again["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_writers_do_not_act_on_admin_tokens(gw: Gateway) -> None:
    """Finding 5: an unbound read+write token renamed, switched off and revoked admin
    tokens, the bootstrap token included; a reader saw their metadata and hints."""
    bootstrap_id = gw.data("{ tokens(first: 100) { nodes { id name } } }")["tokens"]["nodes"]
    [bootstrap] = [n["id"] for n in bootstrap_id if n["name"] == "bootstrap"]
    other_admin, _ = make(gw, name="second-admin", scopes=["tokens:admin"])
    _, writer = make(gw, name="ops", scopes=RW)
    _, reader = make(gw, name="dash", scopes=["tokens:read"])
    for target in (bootstrap, other_admin):
        for mutation in (
            'mutation($id: ID!) { updateToken(input: {id: $id, name: "pwned"}) { token { id } } }',
            "mutation($id: ID!) { updateToken(input: {id: $id, status: INACTIVE}) "
            "{ token { id } } }",
            "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }",
        ):
            body = gw.gql(mutation, {"id": target}, secret=writer)
            assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND", body
        for secret in (writer, reader):
            node = gw.data(
                "query($id: ID!) { node(id: $id) { ... on Token { secretHint } } }",
                {"id": target},
                secret=secret,
            )
            assert node["node"] is None
    listed = gw.data(
        '{ tokens(first: 100, filter: {sources: ["internal"]}) { nodes { name } } }', secret=reader
    )
    assert {n["name"] for n in listed["tokens"]["nodes"]} == {"dash"}
    # The bootstrap token still works.
    assert "errors" not in gw.gql("{ sources { key } }")


def test_sources_lists_only_what_the_caller_may_read(gw: Gateway) -> None:
    """Also seen: ``sources`` showed sources a bound caller can never read."""
    _, alice = make(gw, name="alice", scopes=["tokens:read"], subject="alice")
    _, amper_only = make(gw, name="a", scopes=["tokens:read"], allowedSources=["amper"])
    keys = {s["key"] for s in gw.data("{ sources { key } }", secret=alice)["sources"]}
    assert keys == {"internal", "idp"}
    keys = {s["key"] for s in gw.data("{ sources { key } }", secret=amper_only)["sources"]}
    assert keys == {"amper"}
    all_keys = {s["key"] for s in gw.data("{ sources { key } }")["sources"]}
    assert all_keys == {"internal", "idp", "amper", "fleet"}
    fleet = gw.data("{ sources { id key } }")["sources"]
    fleet_id = next(s["id"] for s in fleet if s["key"] == "fleet")
    assert (
        gw.data("query($id: ID!) { node(id: $id) { id } }", {"id": fleet_id}, secret=alice)["node"]
        is None
    )


@pytest.fixture
def tight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    config = gateway_config(
        tmp_path, limits=LimitsConfig(rate_per_s=0.2, burst=4, max_lineage_tokens=5)
    )
    with serve_in_thread(create_app(config)) as url:
        yield Gateway(url=url, admin_secret=BOOTSTRAP, config=config)


def test_minting_does_not_escape_the_rate_limit(tight: Gateway) -> None:
    """Finding 7: buckets were per token, and a writer could mint children each with a
    fresh bucket. A token minted by anyone but an unbound admin shares its minter's."""
    _, writer = make(tight, name="writer", scopes=RW)  # by the admin: a bucket of its own
    _, child = make(tight, writer, name="child", scopes=RW)  # 1 of the writer's 4
    _, grandchild = make(tight, child, name="grandchild", scopes=["tokens:read"])  # 2
    assert "errors" not in tight.post("{ sources { key } }", secret=grandchild).json()  # 3
    assert "errors" not in tight.post("{ sources { key } }", secret=writer).json()  # 4
    for secret in (writer, child, grandchild):
        limited = tight.post("{ sources { key } }", secret=secret).json()
        assert limited["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    # The admin's bucket and a second admin-made token's are their own.
    _, other = make(tight, name="other", scopes=["tokens:read"])
    assert "errors" not in tight.post("{ sources { key } }", secret=other).json()


def test_a_lineage_holds_a_bounded_number_of_live_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    config = gateway_config(
        tmp_path, limits=LimitsConfig(rate_per_s=1e6, burst=10**6, max_lineage_tokens=4)
    )
    with serve_in_thread(create_app(config)) as url:
        gw = Gateway(url=url, admin_secret=BOOTSTRAP, config=config)
        _, writer = make(gw, name="writer", scopes=RW)  # the lineage's first live token
        minted = [make(gw, writer, name=f"c{i}", scopes=RW) for i in range(3)]
        # A grandchild counts against the same lineage.
        over = gw.gql(CREATE, {"input": {"source": "internal", "name": "x"}}, secret=minted[0][1])
        assert over["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert "revoke some" in over["errors"][0]["message"]
        revoke = "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }"
        assert "errors" not in gw.gql(revoke, {"id": minted[2][0]}, secret=writer)
        make(gw, minted[0][1], name="after-revoke", scopes=["tokens:read"])
        # An unbound admin is not a lineage: it mints what it needs.
        for i in range(6):
            make(gw, name=f"admin-made-{i}", scopes=["tokens:read"])
