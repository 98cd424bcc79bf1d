"""The plain-field executor answers exactly as Strawberry's own executor does, errors included."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import pytest
import strawberry
from strawberry.extensions import SchemaExtension

from schema import execution
from schema.execution import PlainFieldExecutor


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type
class Inner:
    label: str
    count: int | None


@strawberry.type
class Thing:
    name: str
    maybe: str | None
    number: int
    colour: Colour
    when: datetime | None
    tags: list[str]
    loose_tags: list[str | None] | None
    inner: Inner | None

    @strawberry.field
    def shout(self, suffix: str = "!") -> str:
        return self.name.upper() + suffix


THINGS: list[Any] = []


@strawberry.type
class Query:
    @strawberry.field
    def things(self) -> list[Thing]:
        return THINGS


QUERY = (
    '{ things { name maybe number colour when tags looseTags shout(suffix: "?") '
    "inner { label count } __typename } }"
)


def _thing(**overrides: Any) -> Thing:
    values: dict[str, Any] = {
        "name": "a",
        "maybe": None,
        "number": 1,
        "colour": Colour.RED,
        "when": datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
        "tags": ["x", "y"],
        "loose_tags": ["p", None],
        "inner": Inner(label="i", count=None),
    }
    values.update(overrides)
    return Thing(**values)


def _both(things: list[Any]) -> tuple[Any, Any]:
    """The same query through Strawberry's executor and through ours."""
    THINGS[:] = things
    plain = strawberry.Schema(query=Query)
    ours = strawberry.Schema(query=Query, execution_context_class=PlainFieldExecutor)
    return plain.execute_sync(QUERY), ours.execute_sync(QUERY)


def _errors(result: Any) -> list[tuple[str, list[Any] | None]]:
    return [(e.message, e.path) for e in result.errors or []]


def test_good_values_match_and_take_the_direct_path(monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[str] = []
    original = execution._coerce

    def counting(plan: Any, value: Any) -> Any:
        read.append(plan.attribute)
        return original(plan, value)

    monkeypatch.setattr(execution, "_coerce", counting)
    things = [_thing(), _thing(name="b", maybe="m", colour=Colour.BLUE, when=None, tags=())]
    expected, got = _both(things)
    assert got.errors is None and expected.errors is None
    assert got.data == expected.data
    assert got.data["things"][0]["when"] == "2026-11-30T12:00:00+00:00"
    assert got.data["things"][1]["colour"] == "BLUE"
    # Scalars, enums and lists of them are read directly; resolvers and objects are not.
    assert set(read) == {"name", "maybe", "number", "colour", "when", "tags", "loose_tags"} | {
        "label",
        "count",
    }


@pytest.mark.parametrize(
    "overrides",
    [
        {"name": None},  # null for a non-null field
        {"number": "not a number"},  # a value the scalar refuses
        {"number": 2**40},  # out of Int's range
        {"colour": "purple"},  # not an enum value
        {"colour": "red"},  # an enum's raw value, not its member
        {"tags": ["ok", None]},  # null item where items are non-null
        {"tags": "not a list"},  # a string where a list is due
        {"tags": None},  # null list, non-null field
        {"loose_tags": [None, None]},  # nullable items: fine
        {"inner": Inner(label=None, count=None)},  # type: ignore[arg-type]  # nested non-null
    ],
)
def test_bad_values_give_graphql_cores_own_errors(overrides: dict[str, Any]) -> None:
    things = [_thing(), _thing(**overrides)]
    expected, got = _both(things)
    assert got.data == expected.data
    assert _errors(got) == _errors(expected)


def test_a_missing_attribute_is_the_same_error() -> None:
    class Broken:
        name = "a"

    expected, got = _both([Broken()])
    assert got.errors and _errors(got) == _errors(expected)


def test_field_middleware_sees_every_field() -> None:
    """An extension with a resolve hook is middleware: every field must still reach it."""
    seen: list[str] = []

    class Record(SchemaExtension):
        def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(info.field_name)
            return _next(root, info, *args, **kwargs)

    THINGS[:] = [_thing()]
    schema = strawberry.Schema(
        query=Query, extensions=[Record], execution_context_class=PlainFieldExecutor
    )
    result = schema.execute_sync("{ things { name number tags } }")
    assert result.errors is None
    assert seen == ["things", "name", "number", "tags"]


def test_the_gateway_schema_uses_it() -> None:
    from schema.build import build_schema

    assert build_schema().execution_context_class is PlainFieldExecutor
