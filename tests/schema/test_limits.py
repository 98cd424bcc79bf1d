"""Depth, alias and cost limits refuse hostile queries before anything executes."""

from __future__ import annotations

import time

import pytest
from graphql import Lexer, Source, TokenKind, parse

from tests.conftest import Gateway
from tokengate.schema.limits import Limits, problem
from tokengate.schema.parsing import scan
from tokengate.upstreams.service import TokenService


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


def _measured(query: str, variables: dict[str, object] | None = None, **limits: int) -> str | None:
    return problem(Limits(**limits), parse(query), None, variables or {})


def test_fragments_are_measured_once_each() -> None:
    # 2^60 expansions: measured in linear time, reported without the exact figure.
    levels = 60
    parts = ["query { ...F0 }"]
    parts += [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)]
    parts.append(f"fragment F{levels} on Query {{ sources {{ key }} }}")
    started = time.perf_counter()
    message = _measured(" ".join(parts))
    assert time.perf_counter() - started < 1
    assert message is not None and "more than 1000000000 selections" in message


def test_fragment_tallies_compose_like_inline_selections() -> None:
    inline = "{ tokens(first: 30) { edges { node { id } } } a: tokens(first: 30) { totalCount } }"
    spread = (
        "query { ...Page a: tokens(first: 30) { ...Count } } "
        "fragment Page on Query { tokens(first: 30) { edges { node { ...Id } } } } "
        "fragment Id on Token { id } fragment Count on TokenConnection { totalCount }"
    )
    for query in (inline, spread):
        assert _measured(query, max_cost=59) == _measured(inline, max_cost=59)
        assert "cost 60 " in str(_measured(query, max_cost=59))
        assert _measured(query, max_depth=3) == "the query is 4 levels deep; the limit is 3"
        assert _measured(query, max_aliases=0) == "the query uses 1 aliases; the limit is 0"


def test_fragment_cycles_are_left_to_validation(gateway: Gateway) -> None:
    cycle = "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A __typename }"
    assert _measured(cycle) is None
    [error] = gateway.gql(cycle)["errors"]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


def test_inline_fragments_nest_a_level() -> None:
    assert _measured("{ ... on Query { ... on Query { sources { key } } } }", max_depth=3)
    assert not _measured("{ ... { sources { key } } }", max_depth=3)


def test_only_the_chosen_operation_is_held_to_depth_and_cost() -> None:
    document = parse("query Cheap { __typename } query Dear { tokens(first: 100) { totalCount } }")
    assert problem(Limits(max_cost=10), document, "Cheap", {}) is None
    assert "cost" in str(problem(Limits(max_cost=10), document, "Dear", {}))


@pytest.mark.parametrize(
    "text",
    [
        '{ a(s: "x\\"y\\u00e9", b: """block "" \\""" end""") { ...F ... on T @skip(if: $v) { c } } }',
        "query Q($a: [Int!] = [1, -2.5e3]) { x: a(b: {c: $a}) } # comment { ( \n fragment F on T { d }",
        "\ufeff{ a,,, b }",
    ],
)
def test_scan_counts_tokens_as_graphql_core(text: str) -> None:
    lexer, count = Lexer(Source(text)), 0
    while lexer.advance().kind != TokenKind.EOF:
        count += 1
    assert scan(text, 10_000).tokens == count
    assert scan(text, 3).tokens == 4  # stops right after the limit


def test_scan_selections_are_those_written() -> None:
    # Definitions, fields, spreads, inline fragments; not arguments, aliases, directives, types.
    text = "query Q($v: T = {a: 1}) { x: a(b: {c: 1}) @d(e: 1) { ...F ... on T { g } } } fragment F on T { h }"
    measured = scan(text, 10_000)
    assert (measured.selections, measured.nesting) == (7, 3)


def test_path_pairs_count_fields_answering_at_one_path() -> None:
    from graphql import FragmentDefinitionNode, OperationDefinitionNode, parse

    from tokengate.schema.limits import path_pairs

    document = parse(
        "{ a { b b } ...F } fragment F on Q { a { b } c ...F } fragment G on Q { ...G x }"
    )
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    [operation] = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    # a: 2 fields, a.b: 3, c: 1 (F spread in F is a cycle: expanded once)
    assert path_pairs([operation.selection_set], fragments, 100) == 4 + 9 + 1
    # a fragment spreading itself is expanded once more, then the walk ends (no loop)
    assert path_pairs([fragments["G"].selection_set], fragments, 100) == 4


def test_user_and_viewer_tokens_cost_only_the_sources_a_user_can_reach() -> None:
    """Query.tokens may reach every source; viewer/User tokens only the user-owned ones."""
    limits = {"max_cost": 0, "sources": 4, "user_sources": 2}
    root = "{ tokens(first: 10) { totalCount } }"
    assert "cost 40 " in str(_measured(root, **limits))
    spread = (
        "{ ...Q } fragment Q on Query { ... { ... on Query { tokens(first: 10) { totalCount } } } }"
    )
    assert "cost 40 " in str(_measured(spread, **limits))
    viewer = "{ viewer { tokens(first: 10) { totalCount } } }"
    assert "cost 20 " in str(_measured(viewer, **limits))
    entities = """query($r: [_Any!]!) { _entities(representations: $r) {
      ...U ... on User { a: tokens(first: 10) { totalCount } } } }
      fragment U on User { tokens(first: 10) { totalCount } }"""
    reps = {"r": [{"__typename": "User", "id": str(n)} for n in range(5)]}
    # 5 representations + 5 x (10 x 2 + 10 x 2)
    assert "cost 205 " in str(_measured(entities, reps, **limits))
    # Without user_sources (or with more than there are sources), every source counts.
    assert "cost 40 " in str(_measured(viewer, max_cost=0, sources=4))
    assert "cost 40 " in str(_measured(viewer, max_cost=0, sources=4, user_sources=9))
