"""A graphql-core executor that reads plain scalar fields without the general machinery.

A 20-token page resolves ~270 fields, ~200 of them scalars read straight off an
attribute (``name``, ``status``, ``createdAt``...). For each, graphql-core builds a
resolve-info object, checks for arguments, calls Strawberry's resolver wrapper (three
calls deep, ending in ``getattr``) and completes the value through the non-null, list
and leaf branches: ~3 µs a field, about a millisecond a page, spent after the upstream
answers arrived, so all of it is page latency.

For a field Strawberry resolves by plain attribute access (no resolver, no extension,
no arguments) whose type is a scalar or enum, or a list of them, this executor reads the
attribute and coerces the value itself. Anything unusual — a null where the schema
says non-null, a value the scalar refuses, an exception, a non-list where a list is due —
goes back through graphql-core's own path, so errors, their paths and messages are
exactly graphql-core's. Introspection fields, fields with resolvers and object fields
always take the general path.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    is_leaf_type,
)
from graphql.execution.collect_fields import GroupedFieldSet
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

STRAWBERRY_DEFINITION = "strawberry-definition"


class _LeafRead(NamedTuple):
    """How to read one plain scalar field: attribute, coercion, and nullability."""

    attribute: str
    coerce: Callable[[Any], Any]
    non_null: bool
    is_list: bool
    item_non_null: bool


_NOT_FAST = object()
_plans: weakref.WeakKeyDictionary[GraphQLObjectType, dict[str, _LeafRead]] = (
    weakref.WeakKeyDictionary()
)


def _leaf_read(field: GraphQLField) -> _LeafRead | None:
    """The plan for a field read by ``getattr`` alone, or None when it needs the general path."""
    if field.args or not getattr(field.resolve, "_is_default", False):
        return None
    definition = (field.extensions or {}).get(STRAWBERRY_DEFINITION)
    attribute = getattr(definition, "python_name", None)
    if (
        not isinstance(attribute, str)
        or getattr(definition, "default_resolver", None) is not getattr
    ):
        return None
    kind: GraphQLOutputType = field.type
    non_null = isinstance(kind, GraphQLNonNull)
    if non_null:
        kind = kind.of_type  # type: ignore[union-attr]
    is_list = isinstance(kind, GraphQLList)
    item_non_null = False
    if is_list:
        kind = kind.of_type  # type: ignore[union-attr]
        item_non_null = isinstance(kind, GraphQLNonNull)
        if item_non_null:
            kind = kind.of_type  # type: ignore[union-attr]
    if not is_leaf_type(kind):
        return None
    return _LeafRead(attribute, _coercion(kind), non_null, is_list, item_non_null)


def _coercion(leaf: GraphQLLeafType) -> Callable[[Any], Any]:
    """The leaf's output coercion; for a Strawberry enum, a lookup of its members' names.

    Strawberry's enum coercion scans every value of the enum for each member it returns
    (``status``, ``provider``, ``owner.kind``: 60 a page); the names are computed once here
    by that same coercion, and anything but an exact member still goes through it.
    """
    general = leaf.coerce_output_value
    members = getattr(leaf, "wrapped_cls", None)
    if not isinstance(leaf, GraphQLEnumType) or not (
        isinstance(members, type) and issubclass(members, enum.Enum)
    ):
        return general
    names = {member: general(member) for member in members}

    def coerce(value: Any) -> Any:
        return names[value] if type(value) is members else general(value)

    return coerce


def _plans_for(parent_type: GraphQLObjectType) -> dict[str, _LeafRead]:
    plans = _plans.get(parent_type)
    if plans is None:
        plans = {}
        for name, field in parent_type.fields.items():
            plan = _leaf_read(field)
            if plan is not None:
                plans[name] = plan
        _plans[parent_type] = plans
    return plans


def _coerce(plan: _LeafRead, value: Any) -> Any:
    """The completed value, or _NOT_FAST when graphql-core must decide (and report)."""
    if value is None:
        return _NOT_FAST if plan.non_null else None
    coerce = plan.coerce
    if plan.is_list:
        if type(value) is not list and type(value) is not tuple:
            return _NOT_FAST
        items: list[Any] = []
        for item in value:
            if item is None:
                if plan.item_non_null:
                    return _NOT_FAST
                items.append(None)
                continue
            coerced = coerce(item)
            if coerced is None or coerced is Undefined:
                return _NOT_FAST
            items.append(coerced)
        return items
    coerced = coerce(value)
    return _NOT_FAST if coerced is None or coerced is Undefined else coerced


class PlainFieldExecutor(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor, with plain scalar fields read directly (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        # Middleware must see every resolver call: with any, every field takes the general path.
        self._direct = manager is None or not manager.middlewares
        self._plans_seen: dict[GraphQLObjectType, dict[str, _LeafRead]] = {}

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> Any:
        plans = self._plans_seen.get(parent_type)
        if plans is None:
            plans = self._plans_seen[parent_type] = _plans_for(parent_type) if self._direct else {}
        if not plans:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        read: dict[str, Any] = {}
        rest: GroupedFieldSet = {}
        for response_name, field_details_list in grouped_field_set.items():
            plan = plans.get(field_details_list[0].node.name.value)
            if plan is not None:
                try:
                    completed = _coerce(plan, getattr(source_value, plan.attribute))
                except Exception:  # graphql-core's own path reports it, located
                    completed = _NOT_FAST
                if completed is not _NOT_FAST:
                    read[response_name] = completed
                    continue
            rest[response_name] = field_details_list
        if not rest:
            return read
        # Everything else (objects, resolvers, anything to report) the general way; its
        # answer may be awaitable, and the response keeps the query's field order.
        others = super().execute_fields(parent_type, source_value, path, rest, position_context)
        if isinstance(others, dict):
            return _in_order(grouped_field_set, read, others)
        return _in_order_later(grouped_field_set, read, others)


def _in_order(
    grouped_field_set: GroupedFieldSet, read: dict[str, Any], others: dict[str, Any]
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for response_name in grouped_field_set:
        if response_name in read:
            results[response_name] = read[response_name]
        elif response_name in others:  # absent: a field graphql-core skipped (Undefined)
            results[response_name] = others[response_name]
    return results


async def _in_order_later(
    grouped_field_set: GroupedFieldSet, read: dict[str, Any], others: Awaitable[dict[str, Any]]
) -> dict[str, Any]:
    return _in_order(grouped_field_set, read, await others)
