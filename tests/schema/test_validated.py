"""Validation remembered per parsed document answers exactly as Strawberry's own
validation, per schema and per rule set, and validates each document once."""

from __future__ import annotations

from typing import Any

import pytest
import strawberry
from graphql import NoSchemaIntrospectionCustomRule, parse, specified_rules
from strawberry.extensions import AddValidationRules, ParserCache, ValidationCache

import tokengate.schema.validated
from tokengate.schema.validated import ValidatedDocuments, validation_by_document


@strawberry.type
class Query:
    @strawberry.field
    def greeting(self, name: str) -> str:
        return f"hello {name}"


QUERIES = [
    '{ greeting(name: "a") }',
    "{ greeting }",  # missing argument
    "{ nope }",  # unknown field
    "query Q($n: Int) { greeting(name: $n) }",  # wrong variable type
    "{ __schema { queryType { name } } }",
    "{ ...F } fragment F on Query { greeting(name: 1) }",
]


def _schema(*extensions: Any) -> strawberry.Schema:
    return strawberry.Schema(query=Query, extensions=[lambda: ParserCache(maxsize=64), *extensions])


def _answers(schema: strawberry.Schema) -> list[tuple[Any, list[str] | None]]:
    results = []
    for query in QUERIES:
        result = schema.execute_sync(query, variable_values={"n": 1})
        errors = [e.message for e in result.errors] if result.errors else None
        results.append((result.data, errors))
    return results


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    calls: list[object] = []
    real = tokengate.schema.validated.validate_document

    def counting(*args: Any) -> Any:
        calls.append(args[1])
        return real(*args)

    monkeypatch.setattr(tokengate.schema.validated, "validate_document", counting)
    return calls


def test_answers_equal_strawberrys_validation_cache(validations: list[object]) -> None:
    ours = _schema(validation_by_document(16))
    theirs = _schema(lambda: ValidationCache(maxsize=16))
    expected = _answers(theirs)
    assert any(errors for _, errors in expected)  # the table holds refusals
    assert _answers(ours) == expected
    assert _answers(ours) == expected  # from memory the second time
    assert len(validations) == len(QUERIES)


def test_a_rule_set_or_a_schema_of_its_own_is_never_answered_for_another() -> None:
    closed = _schema(
        validation_by_document(16), lambda: AddValidationRules([NoSchemaIntrospectionCustomRule])
    )
    open_ = _schema(validation_by_document(16))
    query = "{ __schema { queryType { name } } }"
    for _ in range(2):
        # ParserCache shares the parsed document between both schemas.
        assert open_.execute_sync(query).errors is None
        refused = closed.execute_sync(query).errors
        assert refused and "introspection" in refused[0].message.lower()


def test_only_the_same_document_object_is_answered_from_memory(
    validations: list[object],
) -> None:
    schema_ = _schema()
    validated = ValidatedDocuments(8)

    class Extension:
        execution_context = type("Ctx", (), {"schema": schema_})()

    rules = tuple(specified_rules)
    first = parse("{ greeting }")
    twin = parse("{ greeting }")  # equal, but another object
    validated.errors(Extension(), first, rules)  # type: ignore[arg-type]
    validated.errors(Extension(), first, rules)  # type: ignore[arg-type]
    assert len(validations) == 1
    # An entry whose key names ``twin``'s id but keeps another document is not trusted.
    key = (id(twin), rules)
    validated._entries[key] = (first, [])
    assert validated.errors(Extension(), twin, rules) != []  # type: ignore[arg-type]
    assert len(validations) == 2


def test_the_memory_is_bounded(validations: list[object]) -> None:
    schema_ = _schema(validation_by_document(1))
    for _ in range(2):
        schema_.execute_sync('{ greeting(name: "a") }')
        schema_.execute_sync('{ greeting(name: "b") }')
    assert len(validations) == 4
    with pytest.raises(ValueError, match="at least 1"):
        ValidatedDocuments(0)


def test_each_rule_set_is_validated_apart() -> None:
    schema_ = _schema()
    validated = ValidatedDocuments(8)

    class Extension:
        execution_context = type("Ctx", (), {"schema": schema_})()

    document = parse("{ __schema { queryType { name } } }")
    rules = tuple(specified_rules)
    closed = (*rules, NoSchemaIntrospectionCustomRule)
    assert validated.errors(Extension(), document, rules) == []  # type: ignore[arg-type]
    assert validated.errors(Extension(), document, closed) != []  # type: ignore[arg-type]
    assert validated.errors(Extension(), document, rules) == []  # type: ignore[arg-type]
