"""The federated ``User`` entity: ``_entities`` resolves User representations and
``User.tokens`` lists each user's tokens under the caller's bindings, at most one upstream
request per user and source."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Gateway
from tests.federation.conftest import clear_logs, mint, requests_to
from tokengate.gateway.demo import Simulated
from tokengate.upstreams.oauth.simulator import WALK_USER

pytestmark = pytest.mark.slow

BRAM = "bram.jansen"  # five listed tokens at the OAuth-style simulator
ENTITIES = """query($r: [_Any!]!, $first: Int, $filter: TokenFilter) {
  _entities(representations: $r) { ... on User { id
    tokens(first: $first, filter: $filter) { totalCount
      nodes { id provider owner { kind id } } } } } }"""


def users(*ids: Any) -> list[dict[str, Any]]:
    return [{"__typename": "User", "id": i} for i in ids]


def test_sdl_has_the_user_entity(gw: Gateway) -> None:
    sdl = gw.data("{ _service { sdl } }")["_service"]["sdl"]
    assert 'type User @key(fields: "id")' in sdl


def test_a_users_tokens_are_its_oauth_and_internal_tokens(
    gw: Gateway, sims: dict[str, Simulated]
) -> None:
    _, bound = mint(gw, scopes=["tokens:read"], subject=BRAM)
    _, unbound = mint(gw, scopes=["tokens:read"])
    _, other = mint(gw, scopes=["tokens:read"], subject="someone.else")
    clear_logs(sims)
    [user] = gw.data(ENTITIES, {"r": users(BRAM), "first": 50})["_entities"]
    assert user["id"] == BRAM
    nodes = user["tokens"]["nodes"]
    ids = {n["id"] for n in nodes}
    assert bound in ids
    assert unbound not in ids and other not in ids
    assert sorted(n["provider"] for n in nodes) == ["INTERNAL"] + ["OAUTH"] * 5
    assert all(n["owner"] == {"kind": "USER", "id": BRAM} for n in nodes)
    assert user["tokens"]["totalCount"] == 6
    # Account- and application-owned sources are not asked at all.
    assert requests_to(sims["amper"]) == requests_to(sims["fleet"]) == []
    assert len(requests_to(sims["idp"])) == 1


def test_fifty_users_cost_one_upstream_request_each(
    gw: Gateway, sims: dict[str, Simulated]
) -> None:
    names = [BRAM, WALK_USER] + [f"user-{n:02d}" for n in range(48)]
    clear_logs(sims)
    # 50 + 50 x (a page of 5 x the 2 sources a user's tokens can come from, + 5 for
    # nodes) = 800: within the budget of 1,000 (Amper and Losant are not counted).
    found = gw.data(ENTITIES, {"r": users(*names), "first": 5})["_entities"]
    assert [u["id"] for u in found] == names
    assert found[0]["tokens"]["totalCount"] == 5
    assert found[1]["tokens"]["totalCount"] == 12
    assert all(u["tokens"]["totalCount"] == 0 for u in found[2:])
    asked = requests_to(sims["idp"])
    assert len(asked) == 50
    assert len({path for _, path in asked}) == 50
    assert requests_to(sims["amper"]) == requests_to(sims["fleet"]) == []


def test_a_user_named_many_times_is_asked_for_once(gw: Gateway, sims: dict[str, Simulated]) -> None:
    clear_logs(sims)
    found = gw.data(ENTITIES, {"r": users(*[BRAM] * 40, WALK_USER), "first": 3})["_entities"]
    assert [u["tokens"]["totalCount"] for u in found] == [5] * 40 + [12]
    assert len(requests_to(sims["idp"])) == 2
    # Other arguments are another listing (aliases): one more request, no more.
    clear_logs(sims)
    both = """query($r: [_Any!]!) { _entities(representations: $r) { ... on User {
      a: tokens(first: 2) { totalCount } b: tokens(first: 3) { totalCount } } } }"""
    found = gw.data(both, {"r": users(BRAM, BRAM)})["_entities"]
    assert found == [{"a": {"totalCount": 5}, "b": {"totalCount": 5}}] * 2
    assert len(requests_to(sims["idp"])) == 2


def test_the_cost_of_many_users_tokens_is_bounded(gw: Gateway, sims: dict[str, Simulated]) -> None:
    """50 + 50 x (a page of 10 x 2 sources + 10) = 1,550 is over the budget of 1,000:
    refused unrun."""
    clear_logs(sims)
    body = gw.gql(ENTITIES, {"r": users(*(f"u{n}" for n in range(50))), "first": 10})
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    assert "cost 1550 " in body["errors"][0]["message"]
    assert "data" not in body or body["data"] is None
    assert all(requests_to(sim) == [] for sim in sims.values())


def test_a_caller_bound_to_another_user_is_refused_on_that_field_only(
    gw: Gateway, sims: dict[str, Simulated]
) -> None:
    secret, own = mint(gw, scopes=["tokens:read"], subject=WALK_USER)
    clear_logs(sims)
    body = gw.gql(ENTITIES, {"r": users(BRAM, WALK_USER), "first": 50}, secret=secret)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    assert body["errors"][0]["path"] == ["_entities", 0, "tokens"]
    bram, walk = body["data"]["_entities"]
    assert bram is None
    assert walk["tokens"]["totalCount"] == 13
    assert own in {n["id"] for n in walk["tokens"]["nodes"]}
    # Bram's tokens were never asked for.
    paths = [path for _, path in requests_to(sims["idp"])]
    assert len(paths) == 1 and "bram" not in paths[0]


def test_a_source_bound_caller_reads_only_its_sources(
    gw: Gateway, sims: dict[str, Simulated]
) -> None:
    secret, _ = mint(gw, scopes=["tokens:read"], allowedSources=["internal"])
    # Internal tokens are seen only when no wider than the caller: bound to its sources too.
    _, wider = mint(gw, scopes=["tokens:read"], subject=BRAM)
    _, bound = mint(gw, scopes=["tokens:read"], subject=BRAM, allowedSources=["internal"])
    clear_logs(sims)
    [user] = gw.data(ENTITIES, {"r": users(BRAM)}, secret=secret)["_entities"]
    assert [n["id"] for n in user["tokens"]["nodes"]] == [bound]
    assert wider != bound
    assert all(requests_to(sim) == [] for sim in sims.values())


def test_user_tokens_needs_the_read_scope(gw: Gateway, sims: dict[str, Simulated]) -> None:
    secret, _ = mint(gw, scopes=["tokens:write"])
    clear_logs(sims)
    body = gw.gql(ENTITIES, {"r": users(BRAM)}, secret=secret)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    assert all(requests_to(sim) == [] for sim in sims.values())


def test_a_filter_naming_another_user_is_bad_input(gw: Gateway, sims: dict[str, Simulated]) -> None:
    clear_logs(sims)
    body = gw.gql(ENTITIES, {"r": users(BRAM), "filter": {"userId": WALK_USER}})
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    assert all(requests_to(sim) == [] for sim in sims.values())
    same = gw.data(ENTITIES, {"r": users(BRAM), "filter": {"userId": BRAM}})
    assert same["_entities"][0]["tokens"]["totalCount"] == 5


def test_filters_still_apply(gw: Gateway, sims: dict[str, Simulated]) -> None:
    _, bound = mint(gw, scopes=["tokens:read"], subject=BRAM)
    clear_logs(sims)
    only_internal = {"providers": ["INTERNAL"]}
    [user] = gw.data(ENTITIES, {"r": users(BRAM), "filter": only_internal})["_entities"]
    assert [n["id"] for n in user["tokens"]["nodes"]] == [bound]
    assert all(requests_to(sim) == [] for sim in sims.values())


@pytest.mark.parametrize("bad_id", [None, 7, "", "x" * 257, "a\nb", {"nested": "object"}, ["list"]])
def test_bad_user_ids_are_bad_input_and_ask_nothing(
    gw: Gateway, sims: dict[str, Simulated], bad_id: Any
) -> None:
    clear_logs(sims)
    body = gw.gql(ENTITIES, {"r": [*users(bad_id), *users(BRAM)]})
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    assert body["errors"][0]["path"] == ["_entities", 0]
    assert body["data"]["_entities"][0] is None
    assert body["data"]["_entities"][1]["tokens"]["totalCount"] == 5
    assert len(requests_to(sims["idp"])) == 1


def test_a_user_reference_without_an_id_is_bad_input(gw: Gateway) -> None:
    body = gw.gql(ENTITIES, {"r": [{"__typename": "User"}, {"__typename": "User", "email": "x"}]})
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"] * 2
    assert body["data"]["_entities"] == [None, None]


def test_odd_user_ids_reach_the_source_encoded(gw: Gateway, sims: dict[str, Simulated]) -> None:
    """A user id is data, not a path: a dot segment is refused unasked, and slashes leave
    percent-encoded (they cannot walk the upstream's paths)."""
    clear_logs(sims)
    body = gw.gql(ENTITIES, {"r": users("..", "../admin/x")})
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    assert body["errors"][0]["path"] == ["_entities", 0, "tokens"]
    dots, slash = body["data"]["_entities"]
    assert dots is None
    assert slash["tokens"]["totalCount"] == 0
    raw = [r.raw_path for r in sims["idp"].state.control.requests]
    assert raw == ["/oauth/api/v1/users/..%2Fadmin%2Fx/tokens"]
