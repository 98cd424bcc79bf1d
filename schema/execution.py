"""A graphql-core executor that completes plain fields without the general machinery.

A 20-token page resolves some 270 fields, nearly all of them read straight off an
attribute (``name``, ``status``, ``edges``, ``node``, ``owner``...). For each, graphql-core
builds a path and a resolve-info object, checks for arguments, calls Strawberry's resolver
wrapper (three calls deep, ending in ``getattr``) and completes the value through its
non-null, list, leaf and object branches, all after the upstream answers arrived, so all
of it is page latency and CPU. It stays only while ``benchmarks/saturation.py
--stock-executor`` shows it saving CPU per request, and
tests/schema/test_execution_differential.py holds it to the stock executor's answers.

A field is *plain* when Strawberry resolves it by attribute access alone (no resolver, no
arguments, no permission classes, no field extension, no schema directive) and its type is
a scalar, an enum or an object type, or a list of them; a field written with any directive
in the query (``@include``, ``@skip``, ``@stream``...) is never read here. Strawberry's own
"default resolver" flag is not enough: it is also set on a field whose permission classes
or extensions wrap the attribute read. This executor completes a plain field itself: it
reads the attribute, coerces scalars, and for objects recurses into their selections, as
long as every field met on the way is plain. Anything else (a field with a resolver, a
null where the schema says non-null, a value a scalar refuses, an exception, a non-list
where a list is due, ``@defer``, middleware) sends that field back through graphql-core's
own path from the start. Reading an attribute has no side effect, so doing it twice is
harmless, and errors, their paths and messages are exactly graphql-core's.
"""

from __future__ import annotations

import asyncio
import enum
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfoHelpers,
    is_leaf_type,
)
from graphql.execution.collect_fields import FieldDetailsList, GroupedFieldSet
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.field import StrawberryField

STRAWBERRY_DEFINITION = "strawberry-definition"
TYPENAME = "__typename"


class _PlainRead(NamedTuple):
    """How to complete one plain field: its attribute, and either a scalar coercion or
    the object type to recurse into, with the nullability of the value and its items."""

    attribute: str
    coerce: Callable[[Any], Any] | None  # scalars and enums
    object_type: GraphQLObjectType | None  # objects
    non_null: bool
    is_list: bool
    item_non_null: bool


_NOT_FAST: Any = object()
_PLANS_BY_TYPE: weakref.WeakKeyDictionary[GraphQLObjectType, dict[str, _PlainRead]] = (
    weakref.WeakKeyDictionary()
)


def _plain_read(field: GraphQLField) -> _PlainRead | None:
    """The plan for a field read by ``getattr`` alone, or None when it needs the general path."""
    if field.args or not getattr(field.resolve, "_is_default", False):
        return None
    definition = (field.extensions or {}).get(STRAWBERRY_DEFINITION)
    if (
        not isinstance(definition, StrawberryField)
        or definition.base_resolver is not None
        or definition.permission_classes
        or definition.extensions
        or definition.directives
        or definition.default_resolver is not getattr
    ):
        return None
    attribute = definition.python_name
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
    if is_leaf_type(kind):
        return _PlainRead(attribute, _coercion(kind), None, non_null, is_list, item_non_null)
    if isinstance(kind, GraphQLObjectType):
        return _PlainRead(attribute, None, kind, non_null, is_list, item_non_null)
    return None  # interfaces, unions, lists of lists


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


def _plans_for(parent_type: GraphQLObjectType) -> dict[str, _PlainRead]:
    plans = _PLANS_BY_TYPE.get(parent_type)
    if plans is None:
        plans = {}
        for name, field in parent_type.fields.items():
            plan = _plain_read(field)
            if plan is not None:
                plans[name] = plan
        _PLANS_BY_TYPE[parent_type] = plans
    return plans


def _coerce(coerce: Callable[[Any], Any], value: Any) -> Any:
    coerced = coerce(value)
    return _NOT_FAST if coerced is None or coerced is Undefined else coerced


def _weak_helpers(executor: StrawberryGraphQLCoreExecutionContext) -> GraphQLResolveInfoHelpers:
    """graphql-core's resolver helpers for ``executor``, holding it weakly.

    graphql-core keeps them as bound methods of the executor on the executor: a reference
    cycle, so the executor and everything it reached (the context, the request, every
    value of the page) waited for the cyclic garbage collector instead of going when the
    request ended, and the collector's passes over them were a share of every request's
    CPU (benchmarks/README.md). The executor outlives every resolver call it makes.
    """
    ref = weakref.ref(executor)

    def gather(values: Sequence[Awaitable[Any]]) -> Awaitable[list[Any]]:
        live = ref()
        if live is None:
            return asyncio.gather(*values)
        return live.gather_async_work(values)

    def track(values: Sequence[Any]) -> None:
        live = ref()
        if live is not None:
            live.track_async_work(values)

    return GraphQLResolveInfoHelpers(gather=gather, track=track)


class PlainFieldExecutor(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor, with plain fields completed directly (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.async_helpers = _weak_helpers(self)
        manager = self.middleware_manager
        # Middleware must see every resolver call: with any, every field takes the general path.
        self._direct = manager is None or not manager.middlewares
        self._plans_seen: dict[GraphQLObjectType, dict[str, _PlainRead]] = {}
        self._selections: dict[
            tuple[GraphQLObjectType, int],
            tuple[FieldDetailsList, list[tuple[str, _PlainRead | None, FieldDetailsList]] | None],
        ] = {}

    def _plans(self, parent_type: GraphQLObjectType) -> dict[str, _PlainRead]:
        plans = self._plans_seen.get(parent_type)
        if plans is None:
            plans = self._plans_seen[parent_type] = _plans_for(parent_type) if self._direct else {}
        return plans

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> Any:
        plans = self._plans(parent_type)
        if not plans:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        read: dict[str, Any] = {}
        rest: GroupedFieldSet = {}
        for response_name, field_details_list in grouped_field_set.items():
            plan = plans.get(field_details_list[0].node.name.value)
            if plan is not None and not _directed(field_details_list):
                completed = self._complete(plan, field_details_list, source_value)
                if completed is not _NOT_FAST:
                    read[response_name] = completed
                    continue
            rest[response_name] = field_details_list
        if not rest:
            return read
        # Everything else (resolvers, anything to report) the general way; its answer may
        # be awaitable, and the response keeps the query's field order.
        others = super().execute_fields(parent_type, source_value, path, rest, position_context)
        if isinstance(others, dict):
            return _in_order(grouped_field_set, read, others)
        return _in_order_later(grouped_field_set, read, others)

    def _complete(self, plan: _PlainRead, field_details_list: FieldDetailsList, source: Any) -> Any:
        """The completed value of a plain field of ``source``, or _NOT_FAST."""
        try:
            value = getattr(source, plan.attribute)
            if value is None:
                return _NOT_FAST if plan.non_null else None
            coerce = plan.coerce
            if not plan.is_list:
                if coerce is not None:
                    return _coerce(coerce, value)
                return self._complete_object(plan, field_details_list, value)
            if type(value) is not list and type(value) is not tuple:
                return _NOT_FAST
            items: list[Any] = []
            for item in value:
                if item is None:
                    if plan.item_non_null:
                        return _NOT_FAST
                    items.append(None)
                    continue
                if coerce is not None:
                    completed = _coerce(coerce, item)
                else:
                    completed = self._complete_object(plan, field_details_list, item)
                if completed is _NOT_FAST:
                    return _NOT_FAST
                items.append(completed)
            return items
        except Exception:  # graphql-core's own path reports it, located
            return _NOT_FAST

    def _complete_object(
        self, plan: _PlainRead, field_details_list: FieldDetailsList, value: Any
    ) -> Any:
        object_type = plan.object_type
        assert object_type is not None
        selection = self._selection(object_type, field_details_list)
        if selection is None:
            return _NOT_FAST
        # Strawberry's is_type_of ignores its info argument; anything but True is for
        # graphql-core to judge (and report).
        is_type_of: Callable[[Any, Any], Any] | None = object_type.is_type_of
        if is_type_of is not None and is_type_of(value, None) is not True:
            return _NOT_FAST
        results: dict[str, Any] = {}
        for response_name, sub_plan, sub_details in selection:
            if sub_plan is None:
                results[response_name] = object_type.name  # __typename
                continue
            completed = self._complete(sub_plan, sub_details, value)
            if completed is _NOT_FAST:
                return _NOT_FAST
            results[response_name] = completed
        return results

    def _selection(
        self, object_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> list[tuple[str, _PlainRead | None, FieldDetailsList]] | None:
        """What to read for each object of this selection (None: not all plain), worked out
        once per selection: the 20 edges of a page share theirs. Kept with the list it is
        keyed by, as graphql-core's own memo is, so the list's id cannot be reused."""
        key = (object_type, id(field_details_list))
        cached = self._selections.get(key)
        if cached is not None:
            return cached[1]
        reads: list[tuple[str, _PlainRead | None, FieldDetailsList]] = []
        grouped_field_set, new_defer_usages, _forbidden = self.collect_subfields(
            object_type, field_details_list
        )
        plans = self._plans(object_type)
        plain = not new_defer_usages  # @defer: graphql-core's business
        for response_name, sub_details in grouped_field_set.items():
            name = sub_details[0].node.name.value
            sub_plan = plans.get(name)
            if (sub_plan is None and name != TYPENAME) or _directed(sub_details):
                plain = False
                break
            reads.append((response_name, sub_plan, sub_details))
        selection = reads if plain else None
        self._selections[key] = (field_details_list, selection)
        return selection


def _directed(field_details_list: FieldDetailsList) -> bool:
    """Whether the query puts any directive on this field (``@stream`` and the like are
    graphql-core's business, custom ones Strawberry's)."""
    return any(details.node.directives for details in field_details_list)


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
