"""Depth, alias and cost limits refuse hostile queries before anything executes."""

from __future__ import annotations

import pytest

from tests.conftest import Gateway
from upstreams.service import TokenService


def refused(gateway: Gateway, query: str, variables: dict[str, object] | None = None) -> str:
    body = gateway.gql(query, variables)
    assert body["data"] is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    message: str = error["message"]
    return message


@pytest.fixture
def no_execution(monkeypatch: pytest.MonkeyPatch) -> None:
    async def must_not_run(*_a: object, **_k: object) -> None:
        raise AssertionError("a refused operation executed")

    monkeypatch.setattr(TokenService, "list_tokens", must_not_run)
    monkeypatch.setattr(TokenService, "load_tokens", must_not_run)


def test_too_many_aliases(gateway: Gateway, no_execution: None) -> None:
    query = "{ " + " ".join(f"a{i}: sources {{ key }}" for i in range(31)) + " }"
    assert "31 aliases" in refused(gateway, query)


def test_too_deep(gateway: Gateway, no_execution: None) -> None:
    levels = (
        "{ __schema { types { fields { type "
        + "{ ofType " * 11
        + "{ name }"
        + " }" * 11
        + " } } } }"
    )
    assert "levels deep" in refused(gateway, levels)


def test_deep_but_allowed_introspection_runs(gateway: Gateway) -> None:
    # GraphiQL's own introspection must stay within the default depth.
    query = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { name } } } } } } } } }"
    assert gateway.data(query)["__schema"]["types"]


def test_cost_budget(gateway: Gateway, no_execution: None) -> None:
    # One source (the store): 10 pages of 100 is exactly the budget, 11 is over.
    over = "{ " + " ".join(f"p{i}: tokens(first: 100) {{ totalCount }}" for i in range(11)) + " }"
    assert "budget is 1000" in refused(gateway, over)
    by_variable = (
        "query($n: Int) { "
        + " ".join(f"p{i}: tokens(first: $n) {{ totalCount }}" for i in range(11))
        + " }"
    )
    assert "cost" in refused(gateway, by_variable, {"n": 100})
    ids = ["VG9rZW46aW50ZXJuYWw6MA"] * 60
    nodes = "query($ids: [ID!]!) { a: nodes(ids: $ids) { id } b: nodes(ids: $ids) { id } }"
    body = gateway.gql(nodes, {"ids": ids[:50]})
    assert (
        body["errors"][0]["extensions"]["code"] != "BAD_USER_INPUT"
        or "cost" not in body["errors"][0]["message"]
    )


def test_within_budget_runs(gateway: Gateway) -> None:
    ok = "{ " + " ".join(f"p{i}: tokens(first: 100) {{ totalCount }}" for i in range(10)) + " }"
    assert gateway.data(ok)["p9"]["totalCount"] >= 1
