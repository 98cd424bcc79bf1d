"""``revokeTokens`` against the authorization model, cell by cell: for every caller kind and
target kind of ``test_authorization_model``, a real bulk revocation whose filter selects
just that target revokes it exactly in the ``RW`` cells, and in the ``-`` cells costs
nothing upstream (``revokeToken``'s rule, to the cell)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.security.test_authorization_model import (
    CALLERS,
    CELLS,
    World,
    _clear_upstream_logs,
    _make_target,
    _upstream_requests,
    world,
)

pytestmark = pytest.mark.slow
__all__ = ["world"]  # the module's fixture, shared

BULK = """mutation($f: TokenFilter!) { revokeTokens(input: {filter: $f, dryRun: false, max: 500}) {
  sources { source { key } revoked { id } skipped { token { id } } failed { token { id } } } } }"""
NODE = "query($id: ID!) { node(id: $id) { id } }"


@pytest.mark.parametrize(
    ("caller", "target", "expected"), CELLS, ids=[f"{c}->{t}" for c, t, _ in CELLS]
)
def test_bulk_cell(world: World, caller: str, target: str, expected: str) -> None:
    gateway = world.gateway
    secret = world.callers[caller]
    scopes = CALLERS[caller].get("scopes", ["tokens:admin"])
    target_id, list_filter = _make_target(world, target)
    if "userId" in list_filter:  # the user's other tokens stay out: select it by name too
        made = world.sims["idp"].state.users[list_filter["userId"]][-1]
        list_filter = {**list_filter, "name": made.client_name}
    _clear_upstream_logs(world)
    body = gateway.gql(BULK, {"f": list_filter}, secret=secret)
    if "tokens:write" not in scopes and "tokens:admin" not in scopes:
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body
        assert _upstream_requests(world) == 0
        return
    acted: set[str] = set()
    revoked: set[str] = set()
    if "errors" in body:
        # Another user's list, or a source the caller may not read: refused up front.
        assert expected == "-", body
        assert body["errors"][0]["extensions"]["code"] in ("FORBIDDEN", "BAD_USER_INPUT")
    else:
        sources: list[dict[str, Any]] = body["data"]["revokeTokens"]["sources"]
        for source in sources:
            revoked |= {t["id"] for t in source["revoked"]}
            acted |= revoked | {s["token"]["id"] for s in source["skipped"] + source["failed"]}
    if expected == "RW":
        assert revoked == {target_id}, body
        assert gateway.data(NODE, {"id": target_id})["node"] is None or target.startswith(
            "internal"
        )
    else:
        assert target_id not in acted, body
        assert _upstream_requests(world) == 0, [
            r for sim in world.sims.values() for r in sim.state.control.requests
        ]
        assert gateway.data(NODE, {"id": target_id})["node"] is not None
