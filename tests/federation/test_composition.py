"""The composition check: tokengate's served SDL composes with a small users subgraph
(@apollo/composition), and @apollo/gateway serves `user(id) { email tokens }` from both,
forwarding the caller's bearer to tokengate (tests/federation/js/compose-and-query.mjs).

Needs node and the packages of tests/federation/js (tests/run.sh runs `npm ci` there):
skipped without them, failed when TOKENGATE_REQUIRE_NODE is set."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Gateway, node_or_skip
from tests.federation.conftest import clear_logs, mint, requests_to
from tokengate.gateway.demo import Simulated

pytestmark = pytest.mark.slow

JS = Path(__file__).resolve().parent / "js"
BRAM = "bram.jansen"
ANNA = "anna.de.vries@example.com"
USER = """query($id: ID!) { user(id: $id) { id email
  tokens(first: 20) { totalCount edges { node { id provider owner { id } } } } } }"""


def _node() -> str:
    return node_or_skip(
        JS / "node_modules" / "@apollo" / "gateway",
        f"run `npm ci` in {JS.relative_to(JS.parents[2])}",
    )


def federate(gw: Gateway, tmp_path: Path, requests: list[dict[str, Any]]) -> dict[str, Any]:
    """Compose, serve the supergraph, run ``requests``; the script's JSON report."""
    node = _node()
    path = tmp_path / "requests.json"
    path.write_text(json.dumps(requests))
    env = {**os.environ, "TOKENGATE_URL": gw.url, "TOKENGATE_SECRET": gw.admin_secret}
    done = subprocess.run(
        [node, "compose-and-query.mjs", str(path)],
        cwd=JS,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_composes_and_serves_a_users_tokens_through_apollo_gateway(
    gw: Gateway, sims: dict[str, Simulated], tmp_path: Path
) -> None:
    _, internal = mint(gw, scopes=["tokens:read"], subject=BRAM)
    anna_secret, _ = mint(gw, scopes=["tokens:read"], subject=ANNA)
    direct = gw.data(
        """query($r: [_Any!]!) { _entities(representations: $r) {
          ... on User { tokens(first: 20) { nodes { id } } } } }""",
        {"r": [{"__typename": "User", "id": BRAM}]},
    )["_entities"][0]["tokens"]["nodes"]
    clear_logs(sims)
    report = federate(
        gw,
        tmp_path,
        [
            {"query": USER, "variables": {"id": BRAM}, "secret": gw.admin_secret},
            {"query": USER, "variables": {"id": BRAM}, "secret": anna_secret},
            {"query": USER, "variables": {"id": ANNA}, "secret": anna_secret},
            {"query": USER, "variables": {"id": BRAM}, "secret": None},
        ],
    )
    # Composition gave no hint: nothing about tokengate's schema needs a second look.
    assert report["hints"] == []
    admin, other, own, anonymous = (r["body"] for r in report["results"])

    # The admin: the user from the users subgraph, its tokens from tokengate.
    assert "errors" not in admin, admin
    user = admin["data"]["user"]
    assert (user["id"], user["email"]) == (BRAM, "bram.jansen@example.net")
    ids = [e["node"]["id"] for e in user["tokens"]["edges"]]
    assert internal in ids
    assert ids == [n["id"] for n in direct]
    assert user["tokens"]["totalCount"] == 6
    assert {e["node"]["owner"]["id"] for e in user["tokens"]["edges"]} == {BRAM}

    # Anna's bearer was forwarded: Bram's tokens are refused, hers answered.
    assert [e["extensions"]["code"] for e in other["errors"]] == ["FORBIDDEN"]
    assert other["data"]["user"] is None
    assert "errors" not in own, own
    assert own["data"]["user"]["email"] == ANNA
    assert own["data"]["user"]["tokens"]["totalCount"] == 13

    # No bearer: tokengate answered 401, nothing of Bram's leaked.
    assert [e["extensions"]["code"] for e in anonymous["errors"]] == ["UNAUTHENTICATED"]
    assert "tokens" not in json.dumps(anonymous["data"])

    # One listing at the OAuth-style source per answered request (admin's, Anna's own);
    # the refused and the anonymous ones asked nothing; account-owned sources never asked.
    paths = [path for _, path in requests_to(sims["idp"])]
    assert len(paths) == 2 and sum("bram" in p for p in paths) == 1
    assert requests_to(sims["amper"]) == requests_to(sims["fleet"]) == []
