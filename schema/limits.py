"""Query limits checked before execution: depth, aliases, and a cost budget.

Cost (run-contract): a connection field costs its page size (``first``/``last``, default 20)
times the number of sources it may reach; ``nodes`` costs the number of ids and
``_entities`` the number of representations; costs of nested selections multiply by their
parent's. A refused operation executes nothing and answers ``BAD_USER_INPUT``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
)
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult

DEFAULT_PAGE = 20
CONNECTION_FIELDS = frozenset({"tokens", "auditEvents"})
LIST_FIELDS = {"nodes": "ids", "_entities": "representations"}


@dataclass(frozen=True, slots=True)
class Limits:
    max_depth: int = 15
    max_aliases: int = 30
    max_cost: int = 1000
    sources: int = 1


@dataclass
class _Tally:
    depth: int = 0
    aliases: int = 0
    cost: int = 0


def _arg(node: FieldNode, name: str, variables: Mapping[str, Any]) -> Any:
    for argument in node.arguments or ():
        if argument.name.value != name:
            continue
        value = argument.value
        if isinstance(value, VariableNode):
            return variables.get(value.name.value)
        if isinstance(value, IntValueNode):
            return int(value.value)
        if isinstance(value, ListValueNode):
            return list(value.values)
        return None
    return None


def _fields(
    selection_set: SelectionSetNode | None,
    fragments: Mapping[str, FragmentDefinitionNode],
    seen: frozenset[str] = frozenset(),
) -> Iterator[FieldNode]:
    if selection_set is None:
        return
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in seen or name not in fragments:
                continue
            yield from _fields(fragments[name].selection_set, fragments, seen | {name})


def measure(
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
    sources: int,
) -> _Tally:
    tally = _Tally()

    def visit(selection_set: SelectionSetNode | None, depth: int, multiplier: int) -> None:
        for field in _fields(selection_set, fragments):
            tally.depth = max(tally.depth, depth)
            if field.alias is not None:
                tally.aliases += 1
            name = field.name.value
            inner = multiplier
            if name in CONNECTION_FIELDS:
                size = _arg(field, "first", variables) or _arg(field, "last", variables)
                page = size if isinstance(size, int) and size > 0 else DEFAULT_PAGE
                reach = sources if name == "tokens" else 1
                tally.cost += multiplier * page * reach
                inner = multiplier * page
            elif name in LIST_FIELDS:
                items = _arg(field, LIST_FIELDS[name], variables)
                count = len(items) if isinstance(items, list) else 1
                tally.cost += multiplier * count
                inner = multiplier * max(count, 1)
            if field.selection_set is not None:
                visit(field.selection_set, depth + 1, inner)

    visit(operation.selection_set, 1, 1)
    return tally


class QueryLimits(SchemaExtension):
    """Refuses over-limit operations after validation, before anything executes."""

    limits = Limits()

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        document = ctx.graphql_document
        problem = None
        if document is not None:
            fragments = {
                d.name.value: d
                for d in document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            chosen = [
                op
                for op in operations
                if ctx.operation_name is None or (op.name and op.name.value == ctx.operation_name)
            ]
            for op in chosen[:1]:
                tally = measure(op, fragments, ctx.variables or {}, self.limits.sources)
                problem = self._problem(tally)
        if problem is not None:
            ctx.result = ExecutionResult(
                data=None,
                errors=[GraphQLError(problem, extensions={"code": "BAD_USER_INPUT"})],
            )
        yield

    def _problem(self, tally: _Tally) -> str | None:
        limits = self.limits
        if tally.depth > limits.max_depth:
            return f"the query is {tally.depth} levels deep; the limit is {limits.max_depth}"
        if tally.aliases > limits.max_aliases:
            return f"the query uses {tally.aliases} aliases; the limit is {limits.max_aliases}"
        if tally.cost > limits.max_cost:
            return (
                f"the query would cost {tally.cost} (page sizes x sources, ids for nodes); "
                f"the budget is {limits.max_cost}: ask for smaller pages or fewer fields"
            )
        return None


def limits_extension(limits: Limits) -> type[QueryLimits]:
    """A QueryLimits class bound to ``limits`` (a class, not an instance: see #4369)."""
    return type("BoundQueryLimits", (QueryLimits,), {"limits": limits})
