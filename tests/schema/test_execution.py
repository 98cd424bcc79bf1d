"""The plain-field executor answers exactly as Strawberry's own executor does, errors included."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import pytest
import strawberry
from graphql import GraphQLObjectType
from strawberry.extensions import FieldExtension, SchemaExtension
from strawberry.permission import BasePermission
from strawberry.schema_directive import Location

from tokengate.schema.execution import PlainFieldExecutor, _plans_for


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.interface
class Named:
    label: str


@strawberry.type
class Inner(Named):
    label: str
    count: int | None


@strawberry.type
class Leaf:
    value: int


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
    must: Inner
    leaves: list[Leaf]
    loose_leaves: list[Leaf | None] | None
    named: Named | None

    @strawberry.field
    def shout(self, suffix: str = "!") -> str:
        return self.name.upper() + suffix


@strawberry.type
class Holder:
    things: list[Thing]


THINGS: list[Any] = []


@strawberry.type
class Query:
    @strawberry.field
    def things(self) -> list[Thing]:
        return THINGS

    @strawberry.field
    def holder(self) -> Holder:
        return Holder(things=THINGS)


FIELDS = (
    'name maybe number colour when tags looseTags shout(suffix: "?") '
    "inner { label count } must { label count __typename } leaves { value } "
    "looseLeaves { value } named { label } __typename"
)
QUERY = f"{{ things {{ {FIELDS} }} holder {{ things {{ {FIELDS} }} }} }}"


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
        "must": Inner(label="m", count=3),
        "leaves": [Leaf(value=1), Leaf(value=2)],
        "loose_leaves": [Leaf(value=3), None],
        "named": Inner(label="n", count=0),
    }
    values.update(overrides)
    return Thing(**values)


class Lookalike:
    """Has Inner's attributes without being an Inner: graphql-core must refuse it."""

    label = "fake"
    count = 1


def _both(things: list[Any], query: str = QUERY) -> tuple[Any, Any]:
    """The same query through Strawberry's executor and through ours."""
    THINGS[:] = things
    plain = strawberry.Schema(query=Query, types=[Inner])
    ours = strawberry.Schema(query=Query, types=[Inner], execution_context_class=PlainFieldExecutor)
    return plain.execute_sync(query), ours.execute_sync(query)


def _errors(result: Any) -> list[tuple[str, list[Any] | None]]:
    return [(e.message, e.path) for e in result.errors or []]


def test_good_values_match_and_take_the_direct_path(monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[str] = []
    original = PlainFieldExecutor._complete

    def counting(self: PlainFieldExecutor, plan: Any, details: Any, source: Any) -> Any:
        read.append(plan.attribute)
        return original(self, plan, details, source)

    monkeypatch.setattr(PlainFieldExecutor, "_complete", counting)
    things = [
        _thing(),
        _thing(name="b", maybe="m", colour=Colour.BLUE, when=None, tags=(), leaves=[]),
    ]
    expected, got = _both(things)
    assert got.errors is None and expected.errors is None
    assert got.data == expected.data
    first = got.data["things"][0]
    assert first["when"] == "2026-11-30T12:00:00+00:00"
    assert got.data["things"][1]["colour"] == "BLUE"
    assert first["must"] == {"label": "m", "count": 3, "__typename": "Inner"}
    assert first["looseLeaves"] == [{"value": 3}, None]
    # Scalars, enums, objects (__typename included) and lists of them are completed
    # directly; resolvers (``shout``, ``things``) and interfaces (``named``) are not.
    assert {"name", "tags", "loose_tags", "inner", "must", "label", "leaves", "things"} <= set(read)
    assert "named" not in read


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
        {"must": None},  # null for a non-null object
        {"must": Leaf(value=1)},  # the wrong object type
        {"must": Lookalike()},  # the wrong type, with the right attributes
        {"must": Inner(label="m", count="three")},  # type: ignore[arg-type]  # deep bad scalar
        {"leaves": [Leaf(value=1), None]},  # null item in a list of non-null objects
        {"leaves": [Leaf(value=1), Leaf(value=None)]},  # type: ignore[arg-type]  # deep null
        {"leaves": Leaf(value=1)},  # an object where a list is due
        {"loose_leaves": [None, Leaf(value="x")]},  # type: ignore[arg-type]
        {"named": Leaf(value=1)},  # not a Named at all
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

    expected, got = _both([Broken()], "{ things { name number } }")
    assert got.errors and _errors(got) == _errors(expected)


def test_directives_on_object_fields_match() -> None:
    query = (
        "query($yes: Boolean!) { holder { things { name @include(if: $yes) "
        "must @skip(if: $yes) { label } inner @include(if: $yes) { count } } } }"
    )
    THINGS[:] = [_thing()]
    for yes in (True, False):
        plain = strawberry.Schema(query=Query, types=[Inner])
        ours = strawberry.Schema(
            query=Query, types=[Inner], execution_context_class=PlainFieldExecutor
        )
        expected = plain.execute_sync(query, variable_values={"yes": yes})
        got = ours.execute_sync(query, variable_values={"yes": yes})
        assert got.errors is None and got.data == expected.data


@pytest.mark.parametrize(
    "query",
    [
        "{ holder { things { name leaves @stream(initialCount: 1) { value } } } }",
        "{ holder { things { name tags @stream(initialCount: 1) } } }",
        "{ holder { things { name leaves { value } ... @defer { must { label } } } } }",
    ],
)
async def test_defer_and_stream_match(query: str) -> None:
    """Incremental delivery is graphql-core's: the same initial and subsequent payloads."""
    from strawberry.schema.config import StrawberryConfig

    THINGS[:] = [_thing(leaves=[Leaf(value=1), Leaf(value=2), Leaf(value=3)])]
    config = StrawberryConfig(enable_experimental_incremental_execution=True)
    payloads: list[list[Any]] = []
    for executor in ({}, {"execution_context_class": PlainFieldExecutor}):
        schema = strawberry.Schema(query=Query, types=[Inner], config=config, **executor)
        result: Any = await schema.execute(query)
        seen = [result.initial_result.formatted]
        async for later in result.subsequent_results:
            seen.append(later.formatted)
        payloads.append(seen)
    assert payloads[1] == payloads[0]
    assert payloads[0][0]["data"]["holder"]["things"][0]["name"] == "a"
    assert len(payloads[0]) > 1


def test_field_middleware_sees_every_field() -> None:
    """An extension with a resolve hook is middleware: every field must still reach it."""
    seen: list[str] = []

    class Record(SchemaExtension):
        def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(info.field_name)
            return _next(root, info, *args, **kwargs)

    THINGS[:] = [_thing()]
    schema = strawberry.Schema(
        query=Query, types=[Inner], extensions=[Record], execution_context_class=PlainFieldExecutor
    )
    result = schema.execute_sync("{ things { name number tags must { label } } }")
    assert result.errors is None
    assert seen == ["things", "name", "number", "tags", "must", "label"]


def test_the_gateway_schema_uses_it() -> None:
    from tokengate.schema.build import build_schema

    assert build_schema().execution_context_class is PlainFieldExecutor


class Deny(BasePermission):
    message = "denied"

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return False


class Upper(FieldExtension):
    def resolve(self, next_: Any, source: Any, info: Any, **kwargs: Any) -> Any:
        value = next_(source, info, **kwargs)
        return [item.upper() for item in value] if isinstance(value, list) else value.upper()


@strawberry.schema_directive(locations=[Location.FIELD_DEFINITION])
class Tagged:
    note: str


@strawberry.type
class Guarded:
    open: str
    secret: str = strawberry.field(permission_classes=[Deny])
    shouted: str = strawberry.field(extensions=[Upper()])
    tagged: str = strawberry.field(directives=[Tagged(note="x")])
    secret_inner: Inner = strawberry.field(permission_classes=[Deny])
    loud_tags: list[str] = strawberry.field(extensions=[Upper()])


@strawberry.type
class GuardedQuery:
    @strawberry.field
    def guarded(self) -> list[Guarded]:
        return [
            Guarded(
                open="o",
                secret="s",
                shouted="quiet",
                tagged="t",
                secret_inner=Inner(label="hidden", count=1),
                loud_tags=["a"],
            )
        ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("{ guarded { open secret } }", None),
        ("{ guarded { open secretInner { label } } }", None),
        ("{ guarded { open shouted } }", {"guarded": [{"open": "o", "shouted": "QUIET"}]}),
        ("{ guarded { open loudTags } }", {"guarded": [{"open": "o", "loudTags": ["A"]}]}),
    ],
)
def test_permission_classes_and_field_extensions_always_run(
    query: str, expected: dict[str, Any] | None
) -> None:
    """A field with permission classes or a field extension keeps Strawberry's resolver:
    the permission refuses and the extension transforms, as with Strawberry's executor."""
    plain = strawberry.Schema(query=GuardedQuery)
    ours = strawberry.Schema(query=GuardedQuery, execution_context_class=PlainFieldExecutor)
    stock, got = plain.execute_sync(query), ours.execute_sync(query)
    assert got.data == stock.data == expected
    assert _errors(got) == _errors(stock)
    assert [e.message for e in got.errors or []] == ([] if expected else ["denied"])


def test_only_fields_without_permissions_extensions_or_directives_are_plain() -> None:
    schema = strawberry.Schema(query=GuardedQuery, execution_context_class=PlainFieldExecutor)
    guarded = schema._schema.type_map["Guarded"]
    assert isinstance(guarded, GraphQLObjectType)
    assert set(_plans_for(guarded)) == {"open"}


def test_fields_with_query_directives_take_the_general_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read: list[str] = []
    original = PlainFieldExecutor._complete

    def counting(self: PlainFieldExecutor, plan: Any, details: Any, source: Any) -> Any:
        read.append(plan.attribute)
        return original(self, plan, details, source)

    monkeypatch.setattr(PlainFieldExecutor, "_complete", counting)
    THINGS[:] = [_thing()]
    ours = strawberry.Schema(query=Query, types=[Inner], execution_context_class=PlainFieldExecutor)
    query = (
        "{ holder { things { name number @include(if: true) must @skip(if: false) { label } } } }"
    )
    result = ours.execute_sync(query)
    assert result.errors is None
    assert result.data == {
        "holder": {"things": [{"name": "a", "number": 1, "must": {"label": "m"}}]}
    }
    assert "name" in read and "number" not in read and "must" not in read
