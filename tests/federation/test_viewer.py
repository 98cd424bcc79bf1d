"""``Query.viewer``: the caller itself and its own tokens (tokens with filter.userId =
subject), under the same bindings as ``tokens``."""

from __future__ import annotations

import pytest

from tests.conftest import Gateway
from tests.federation.conftest import clear_logs, mint, requests_to
from tokengate.gateway.demo import Simulated

pytestmark = pytest.mark.slow

BRAM = "bram.jansen"  # five listed tokens at the OAuth-style simulator
VIEWER = """query($first: Int, $after: String, $filter: TokenFilter) {
  viewer { subject scopes tokens(first: $first, after: $after, filter: $filter) {
    totalCount edges { cursor node { id provider owner { kind id } } }
    pageInfo { hasNextPage endCursor } failedSources { reason } } } }"""
LIST = """query($filter: TokenFilter) {
  tokens(first: 100, filter: $filter) { totalCount nodes { id } } }"""


def ids_of(connection: dict[str, object]) -> list[str]:
    edges = connection["edges"]
    assert isinstance(edges, list)
    return [e["node"]["id"] for e in edges]


def test_a_caller_bound_to_no_user_has_no_own_tokens(gw: Gateway) -> None:
    viewer = gw.data(VIEWER)["viewer"]
    assert viewer["subject"] is None
    assert viewer["scopes"] == ["tokens:admin"]
    assert viewer["tokens"] == {
        "totalCount": 0,
        "edges": [],
        "pageInfo": {"hasNextPage": False, "endCursor": None},
        "failedSources": [],
    }


def test_a_bound_caller_sees_its_users_tokens_as_tokens_would(
    gw: Gateway, sims: dict[str, Simulated]
) -> None:
    secret, own_id = mint(gw, scopes=["tokens:read", "tokens:write"], subject=BRAM)
    _, sibling = mint(gw, scopes=["tokens:read"], subject=BRAM)
    _, other = mint(gw, scopes=["tokens:read"], subject="someone.else")
    clear_logs(sims)
    viewer = gw.data(VIEWER, {"first": 50}, secret=secret)["viewer"]
    assert viewer["subject"] == BRAM
    assert viewer["scopes"] == ["tokens:read", "tokens:write"]
    mine = ids_of(viewer["tokens"])
    assert {own_id, sibling} <= set(mine)
    assert other not in mine
    assert {e["node"]["provider"] for e in viewer["tokens"]["edges"]} == {"INTERNAL", "OAUTH"}
    assert all(
        e["node"]["owner"] == {"kind": "USER", "id": BRAM} for e in viewer["tokens"]["edges"]
    )
    assert viewer["tokens"]["totalCount"] == len(mine) == 2 + 5
    # The same answer as `tokens` filtered by the caller's own user.
    listed = gw.data(LIST, {"filter": {"userId": BRAM}}, secret=secret)["tokens"]
    assert sorted(n["id"] for n in listed["nodes"]) == sorted(mine)
    # Only the OAuth-style source was asked, once for this user (then once by `tokens`).
    assert requests_to(sims["amper"]) == requests_to(sims["fleet"]) == []
    assert len(requests_to(sims["idp"])) == 2


def test_viewer_tokens_pages_with_its_own_cursors(gw: Gateway) -> None:
    secret, _ = mint(gw, scopes=["tokens:read"], subject=BRAM)
    first = gw.data(VIEWER, {"first": 4}, secret=secret)["viewer"]["tokens"]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = gw.data(VIEWER, {"first": 4, "after": first["pageInfo"]["endCursor"]}, secret=secret)[
        "viewer"
    ]["tokens"]
    assert rest["pageInfo"]["hasNextPage"] is False
    seen = ids_of(first) + ids_of(rest)
    assert len(seen) == len(set(seen)) == first["totalCount"] == 6


def test_a_filter_naming_another_user_is_forbidden(gw: Gateway, sims: dict[str, Simulated]) -> None:
    secret, _ = mint(gw, scopes=["tokens:read"], subject=BRAM)
    clear_logs(sims)
    body = gw.gql(VIEWER, {"filter": {"userId": "anna.de.vries@example.com"}}, secret=secret)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    assert body["errors"][0]["path"] == ["viewer", "tokens"]
    assert body["data"] is None
    assert all(requests_to(sim) == [] for sim in sims.values())
    # Naming its own user is allowed.
    own = gw.data(VIEWER, {"filter": {"userId": BRAM}}, secret=secret)["viewer"]["tokens"]
    assert own["totalCount"] == 6


def test_viewer_tokens_needs_the_read_scope(gw: Gateway, sims: dict[str, Simulated]) -> None:
    secret, _ = mint(gw, scopes=["tokens:write"], subject=BRAM)
    clear_logs(sims)
    body = gw.gql(VIEWER, secret=secret)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    assert all(requests_to(sim) == [] for sim in sims.values())
    # Who it is needs no scope: it is the caller's own credential.
    viewer = gw.data("{ viewer { subject scopes } }", secret=secret)["viewer"]
    assert viewer == {"subject": BRAM, "scopes": ["tokens:write"]}


def test_a_source_binding_still_applies(gw: Gateway, sims: dict[str, Simulated]) -> None:
    secret, own_id = mint(gw, scopes=["tokens:read"], subject=BRAM, allowedSources=["internal"])
    clear_logs(sims)
    tokens = gw.data(VIEWER, secret=secret)["viewer"]["tokens"]
    assert ids_of(tokens) == [own_id]
    assert all(requests_to(sim) == [] for sim in sims.values())


def test_bad_page_arguments_are_refused_without_a_subject_too(gw: Gateway) -> None:
    body = gw.gql(VIEWER, {"first": 0})
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]


def test_a_cursor_from_another_users_listing_shows_nothing_of_theirs(
    gw: Gateway, sims: dict[str, Simulated]
) -> None:
    """A cursor only says where to resume: under another caller it resumes that caller's
    own listing, never the listing it came from."""
    entities = """query($r: [_Any!]!) { _entities(representations: $r) {
      ... on User { tokens(first: 1) { pageInfo { endCursor } } } } }"""
    r = [{"__typename": "User", "id": "anna.de.vries@example.com"}]
    cursor = gw.data(entities, {"r": r})["_entities"][0]["tokens"]["pageInfo"]["endCursor"]
    secret, own_id = mint(gw, scopes=["tokens:read"], subject=BRAM)
    assert own_id not in cursor
    everything = ids_of(gw.data(VIEWER, {"first": 50}, secret=secret)["viewer"]["tokens"])
    resumed = gw.data(VIEWER, {"first": 50, "after": cursor}, secret=secret)["viewer"]["tokens"]
    assert resumed["edges"]
    assert all(e["node"]["owner"]["id"] == BRAM for e in resumed["edges"])
    assert set(ids_of(resumed)) <= set(everything)
