"""Validation is Strawberry's own (its ValidationCache), reached only by documents within
the query limits: a refused document is never validated."""

from __future__ import annotations

from typing import Any

import pytest
import strawberry.schema.schema as strawberry_schema

from tests.conftest import Gateway


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The documents graphql-core's ``validate`` was called with (in the served process)."""
    calls: list[object] = []
    real = strawberry_schema.validate

    def counting(schema: Any, document: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(document)
        return real(schema, document, *args, **kwargs)

    monkeypatch.setattr(strawberry_schema, "validate", counting)
    return calls


@pytest.mark.parametrize(
    "query",
    [
        "{ " + " ".join(f"a{i}: sources {{ key }}" for i in range(31)) + " }",  # aliases
        "{ sources { " + "key " * 150 + "} }",  # one field repeated
        "{ " + " ".join(f"p{i}: tokens(first: 100) {{ totalCount }}" for i in range(11)) + " }",
    ],
    ids=["aliases", "repeats", "cost"],
)
def test_a_refused_document_is_never_validated(
    gateway: Gateway, validations: list[object], query: str
) -> None:
    body = gateway.gql(query)
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert validations == []


def test_a_document_is_validated_once_then_answered_from_the_cache(
    gateway: Gateway, validations: list[object]
) -> None:
    query = "{ sources { key name } validationPathProbe: __typename }"
    for _ in range(3):
        assert gateway.data(query)["validationPathProbe"] == "Query"
    assert len(validations) == 1
    refused = gateway.gql("{ sources { nope } }")["errors"]
    assert refused[0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert len(validations) == 2
