"""Filter and order inputs built straight from graphql-core's values equal Strawberry's own
conversion, for every field and for literals, variables and defaults alike."""

from __future__ import annotations

from typing import Any

import pytest
import strawberry

from tokengate.schema.inputs import TokenFilterInput, TokenOrderInput, built_from_leaves
from tokengate.upstreams.model import Provider

RECEIVED: list[Any] = []


@strawberry.type
class Query:
    @strawberry.field
    def probe(
        self,
        filter: TokenFilterInput | None = None,
        order: TokenOrderInput | None = None,
    ) -> int:
        RECEIVED.append((filter, order))
        return 1


def _received(query: str, variables: dict[str, Any] | None, *, hook: bool) -> Any:
    saved = [c.__strawberry_definition__.from_input for c in (TokenFilterInput, TokenOrderInput)]
    if not hook:
        for c in (TokenFilterInput, TokenOrderInput):
            c.__strawberry_definition__.from_input = None
    try:
        RECEIVED.clear()
        result = strawberry.Schema(query=Query).execute_sync(query, variable_values=variables)
        assert result.errors is None, result.errors
        return RECEIVED[0]
    finally:
        for c, hook_fn in zip((TokenFilterInput, TokenOrderInput), saved, strict=True):
            c.__strawberry_definition__.from_input = hook_fn


FULL = {
    "sources": ["amper", "idp"],
    "providers": ["LOSANT", "OAUTH"],
    "statuses": ["ACTIVE", "REVOKED"],
    "name": "ci-*",
    "scope": "read",
    "userId": "u-1",
    "applicationId": "5b9062f5c5f4c50006b8a5d7",
    "createdAfter": "2026-01-01T00:00:00Z",
    "createdBefore": "2026-02-01T00:00:00+02:00",
}


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("{ probe }", None),
        ('{ probe(filter: {userId: "u"}) }', None),
        ("{ probe(filter: {}, order: {field: NAME, direction: DESC}) }", None),
        (
            "query($f: TokenFilter, $o: TokenOrder) { probe(filter: $f, order: $o) }",
            {"f": FULL, "o": {"field": "EXPIRES_AT", "direction": "ASC"}},
        ),
        ("query($f: TokenFilter) { probe(filter: $f) }", {"f": {"statuses": None, "name": None}}),
        ('{ probe(filter: {providers: [AMPER], statuses: [], sources: "one"}) }', None),
    ],
)
def test_same_as_strawberrys_conversion(query: str, variables: dict[str, Any] | None) -> None:
    ours = _received(query, variables, hook=True)
    theirs = _received(query, variables, hook=False)
    assert ours == theirs
    for mine, strawberrys in zip(ours, theirs, strict=True):
        assert type(mine) is type(strawberrys)
        if mine is not None:
            assert vars(mine) == vars(strawberrys)
            providers = getattr(mine, "providers", None)
            if providers:
                assert all(isinstance(p, Provider) for p in providers)


@built_from_leaves
@strawberry.input
class WithDefault:
    tags: list[str] = strawberry.field(default_factory=lambda: ["a"])


SEEN_DEFAULTS: list[Any] = []


@strawberry.type
class DefaultQuery:
    @strawberry.field
    def probe(self, value: WithDefault = WithDefault()) -> int:  # noqa: B008
        SEEN_DEFAULTS.append(value)
        return 1


def test_lists_are_copies() -> None:
    """graphql-core shares a default value between requests: a list must be a fresh copy."""

    seen = SEEN_DEFAULTS
    seen.clear()
    schema = strawberry.Schema(query=DefaultQuery)
    for _ in range(2):
        assert schema.execute_sync("{ probe(value: {}) }").errors is None
        seen[-1].tags.append("mutated")
    assert [v.tags for v in seen] == [["a", "mutated"], ["a", "mutated"]]


def test_refuses_a_type_it_cannot_build() -> None:
    @strawberry.input
    class Inner:
        x: int

    @strawberry.input
    class Outer:
        inner: Inner | None = None

    with pytest.raises(TypeError, match=r"Outer\.inner"):
        built_from_leaves(Outer)

    @strawberry.input
    class WithId:
        id: strawberry.ID

    with pytest.raises(TypeError, match=r"WithId\.id"):
        built_from_leaves(WithId)
