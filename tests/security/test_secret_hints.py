"""A secretHint shows at most 4 characters of any secret, in one format for every source:
the visible beginning, then "…" (the store's ``tg_`` prefix is no secret and not counted).

Amper sends 8 characters of each secret (``abcd1234***``); the gateway keeps that whole
snippet internally, only to recognise its own credential. Real loopback HTTP.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Gateway
from tests.security.conftest import serving
from tokengate.gateway.demo import Simulated
from tokengate.upstreams import ids
from tokengate.upstreams.oauth.simulator import WALK_USER

HINT = re.compile(r"(?:tg_)?[^…]{0,4}…")
LIST = """query($after: String, $user: String) {
  tokens(first: 100, after: $after, filter: {userId: $user}) {
    nodes { id source { key } externalId secretHint }
    pageInfo { hasNextPage endCursor }
  }
}"""
REVOKE = "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }"


@pytest.fixture(scope="module")
def gw(sims: dict[str, Simulated], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with serving(sims, tmp_path_factory.mktemp("hints")) as gateway:
        yield gateway


def every_token(gw: Gateway) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = None
    while True:
        page = gw.data(LIST, {"after": after, "user": WALK_USER})["tokens"]
        found.extend(page["nodes"])
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


def test_every_listed_hint_shows_at_most_four_characters(
    gw: Gateway, sims: dict[str, Simulated]
) -> None:
    gw.data('mutation { createToken(input: {source: "internal", name: "mine"}) { secret } }')
    tokens = every_token(gw)
    by_source: dict[str, list[dict[str, Any]]] = {}
    for token in tokens:
        by_source.setdefault(token["source"]["key"], []).append(token)
    assert set(by_source) == {"internal", "amper", "idp", "fleet"}
    for token in tokens:
        assert token["secretHint"] is None or HINT.fullmatch(token["secretHint"]), token
    secrets_by_id = {t.id: t.secret for t in sims["amper"].state.tokens}
    for token in by_source["amper"]:
        secret = secrets_by_id[token["externalId"]]
        assert token["secretHint"] == f"{secret[:4]}…"
    # The OAuth-style server and Losant show no part of a secret: nothing to cut.
    assert {t["secretHint"] for t in by_source["idp"] + by_source["fleet"]} == {None}


def test_internal_hints_show_four_characters_after_the_prefix(gw: Gateway) -> None:
    created = gw.data(
        'mutation { createToken(input: {source: "internal", name: "hinted"}) '
        "{ secret token { id secretHint } } }"
    )["createToken"]
    secret = created["secret"]
    assert created["token"]["secretHint"] == f"tg_{secret[3:7]}…"
    node = gw.data(
        "query($id: ID!) { node(id: $id) { ... on Token { secretHint } } }",
        {"id": created["token"]["id"]},
    )["node"]
    assert node["secretHint"] == f"tg_{secret[3:7]}…"


def test_hints_stored_by_older_versions_are_cut_when_shown(gw: Gateway) -> None:
    """Older versions stored 8 characters (``tg_`` and 5 of the secret)."""
    created = gw.data(
        'mutation { createToken(input: {source: "internal", name: "old"}) { secret token { id } } }'
    )["createToken"]
    secret, global_id = created["secret"], created["token"]["id"]
    database = Path(gw.config.store.url.removeprefix("sqlite:///"))
    with sqlite3.connect(database) as conn:
        conn.execute(
            "UPDATE tokens SET secret_hint = ? WHERE id = ?",
            (secret[:8], ids.decode(global_id)[2]),
        )
    node = gw.data(
        "query($id: ID!) { node(id: $id) { ... on Token { secretHint } } }", {"id": global_id}
    )["node"]
    assert node["secretHint"] == f"tg_{secret[3:7]}…"


def test_the_gateways_own_amper_credential_is_told_by_the_whole_snippet(
    gw: Gateway, sims: dict[str, Simulated]
) -> None:
    """A token whose secret shares the credential's first 4 characters (its hint is the
    same) but not the 8 Amper shows is revocable; the credential itself is not."""
    state = sims["amper"].state
    mine = state.credential_token()
    assert mine is not None
    lookalike = state.add("lookalike", secret=state.api_token[:4] + "~" * 28)
    assert lookalike.redacted != mine.redacted
    refused = gw.gql(REVOKE, {"id": ids.token_id("amper", mine.id)})
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert state.find(mine.id) is not None
    revoked = gw.data(REVOKE, {"id": ids.token_id("amper", lookalike.id)})
    assert revoked["revokeToken"]["revokedTokenId"] == ids.token_id("amper", lookalike.id)
    assert state.find(lookalike.id) is None
