"""Query limits checked before validation, so nothing costly runs on an over-limit document.

Depth, aliases and cost are those of the operation that would run; depth counts nested
fields and inline fragments. Cost (run-contract): a
connection field costs its page size (``first``/``last``, default 20) times the number of
sources it may reach; ``nodes`` costs the number of ids and ``_entities`` the number of
representations; ``revokeTokens`` its ``input.max`` (default 100); costs of nested
selections multiply by their parent's. ``tokens`` is
``Query.tokens`` where its selection set is of type Query, else ``Viewer.tokens`` or
``User.tokens``, which reach only the sources whose tokens can belong to a user
(``user_sources``). Selections bound the
work of validation: every field, fragment spread and inline fragment once fragments are
expanded, plus one per definition, over the whole document. Variables count their JSON
values against the token limit.

Each selection set (so each fragment) is measured once and its tally reused wherever it is
spread: a tally is composable (depth adds, cost scales with its parent's multiplier), so the
work is linear in the document however many times fragments are spread. The walk is
iterative: no document can exhaust the interpreter's stack. A refused operation executes
nothing, is never validated, and answers ``BAD_USER_INPUT``.

Why not Strawberry's ``QueryDepthLimiter`` and ``MaxAliasesLimiter``: both are validation
rules, so they run inside validation, next to the rules (OverlappingFieldsCanBeMerged)
whose work the selection and repeat limits here exist to bound; both walk the document
recursively and expand a fragment again at every spread, so their own work doubles with
each level of ``...F ...F`` fragments; their refusals are validation errors
(``GRAPHQL_VALIDATION_FAILED``, "'anonymous' exceeds maximum operation depth of 15",
"31 aliases found. Allowed: 30") where the run-contract asks for ``BAD_USER_INPUT``; the
depth limiter does not count inline fragments as a level, and the alias limiter counts
every operation of the document instead of the one that runs. There is no Strawberry
counterpart of the cost rule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
)
from strawberry.extensions import SchemaExtension

from tokengate.schema.parsing import refusal, selections_problem

DEFAULT_PAGE = 20
CONNECTION_FIELDS = frozenset({"tokens", "auditEvents"})
LIST_FIELDS = {"nodes": "ids", "_entities": "representations"}
# revokeTokens costs its input.max (the tokens it may revoke), default 100.
BULK_FIELD = "revokeTokens"
BULK_DEFAULT = 100
# Counts above this are reported as "more than" it (exponential fragments reach 2^n).
_SHOWN = 10**9
# How often one response name may be selected in one selection set (fragments expanded):
# graphql-core compares every such pair when it validates (OverlappingFieldsCanBeMerged).
MAX_REPEATS = 100
# The same rule also compares, pair by pair, the fields that answer at one response path
# under different parents (``a { b } a { b }``): the sum over response paths of the square
# of their field counts bounds that work for the whole document.
MAX_PATH_PAIRS = 50_000


@dataclass(frozen=True, slots=True)
class Limits:
    max_depth: int = 15
    max_aliases: int = 30
    max_cost: int = 1000
    max_selections: int = 2000
    max_tokens: int = 10_000
    max_document_chars: int = 65_536
    sources: int = 1
    # Sources a user's tokens can come from (viewer/User tokens); None: every source.
    user_sources: int | None = None


@dataclass(frozen=True, slots=True)
class Tally:
    """One selection set's measure, as if it were at depth 0 under a multiplier of 1."""

    depth: int = 0
    aliases: int = 0
    cost: int = 0
    selections: int = 0
    # Response names selected at this set's own level (spreads and inline fragments
    # merged in), and the most times one name is selected in any set within.
    level: Mapping[str, int] = field(default_factory=dict)
    repeats: int = 0


_EMPTY = Tally()


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


def _field_cost(field: FieldNode, variables: Mapping[str, Any], sources: int) -> tuple[int, int]:
    """(the field's own cost, the multiplier of its selections); ``sources``: how many
    sources a ``tokens`` field here may reach."""
    name = field.name.value
    if name in CONNECTION_FIELDS:
        size = _arg(field, "first", variables) or _arg(field, "last", variables)
        page = size if isinstance(size, int) and size > 0 else DEFAULT_PAGE
        return page * (sources if name == "tokens" else 1), page
    if name in LIST_FIELDS:
        items = _arg(field, LIST_FIELDS[name], variables)
        count = len(items) if isinstance(items, list) else 1
        return count, max(count, 1)
    if name == BULK_FIELD:
        return _bulk_max(field, variables), 1
    return 0, 1


def _bulk_max(field: FieldNode, variables: Mapping[str, Any]) -> int:
    """``revokeTokens``' ``input.max`` (default 100): it costs the tokens it may revoke."""
    for argument in field.arguments or ():
        if argument.name.value != "input":
            continue
        value = argument.value
        if isinstance(value, VariableNode):
            given = variables.get(value.name.value)
            found = given.get("max") if isinstance(given, dict) else None
        elif isinstance(value, ObjectValueNode):
            found = None
            for item in value.fields:
                if item.name.value == "max":
                    raw = item.value
                    if isinstance(raw, IntValueNode):
                        found = int(raw.value)
                    elif isinstance(raw, VariableNode):
                        found = variables.get(raw.name.value)
        else:
            found = None
        if isinstance(found, int) and not isinstance(found, bool) and found > 0:
            return found
    return BULK_DEFAULT


def _inner(
    selection: Any, fragments: Mapping[str, FragmentDefinitionNode]
) -> SelectionSetNode | None:
    if isinstance(selection, FragmentSpreadNode):
        fragment = fragments.get(selection.name.value)
        return fragment.selection_set if fragment is not None else None
    inner: SelectionSetNode | None = selection.selection_set
    return inner


class Measure:
    """Tallies of every selection set of one document under one set of variables."""

    def __init__(
        self,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        sources: int,
        user_sources: int | None = None,
        query_sets: frozenset[int] = frozenset(),
    ) -> None:
        self.fragments = fragments
        self.variables = variables
        self.sources = sources
        self.user_sources = sources if user_sources is None else min(user_sources, sources)
        # ids of the selection sets of type Query (see ``query_typed``).
        self.query_sets = query_sets
        self.done: dict[int, Tally] = {}

    def tally(self, root: SelectionSetNode) -> Tally:
        """Post-order over the selection sets under ``root``, each one once. A selection
        set met again while it is being measured is a fragment cycle (refused later by
        validation): it counts as empty."""
        done, started = self.done, set()
        stack: list[tuple[SelectionSetNode, bool]] = [(root, False)]
        while stack:
            node, ready = stack.pop()
            key = id(node)
            if ready:
                done[key] = self._combine(node)
                continue
            if key in done or key in started:
                continue
            started.add(key)
            stack.append((node, True))
            for selection in node.selections:
                inner = _inner(selection, self.fragments)
                if inner is not None and id(inner) not in done and id(inner) not in started:
                    stack.append((inner, False))
        return done[id(root)]

    def _combine(self, node: SelectionSetNode) -> Tally:
        depth = aliases = cost = selections = repeats = 0
        level: Counter[str] = Counter()
        sources = self.sources if id(node) in self.query_sets else self.user_sources
        for selection in node.selections:
            inner = _inner(selection, self.fragments)
            child = self.done.get(id(inner), _EMPTY) if inner is not None else _EMPTY
            selections += 1 + child.selections
            aliases += child.aliases
            repeats = max(repeats, child.repeats)
            if isinstance(selection, FieldNode):
                own, multiplier = _field_cost(selection, self.variables, sources)
                depth = max(depth, 1 + child.depth)
                aliases += selection.alias is not None
                cost += own + multiplier * child.cost
                level[(selection.alias or selection.name).value] += 1
            else:
                # An inline fragment nests a level (deep nests of them cost the parser and
                # validation as much as fields do); a named fragment stands for its fields.
                nests = isinstance(selection, InlineFragmentNode)
                depth = max(depth, nests + child.depth)
                cost += child.cost
                level.update(child.level)
        repeats = max(repeats, max(level.values(), default=0))
        return Tally(depth, aliases, cost, selections, level, repeats)


def json_values(value: Any, limit: int) -> int:
    """Values in a decoded JSON document (each scalar, list and object), counted up to
    ``limit + 1`` at most, without recursion."""
    count, stack = 0, [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict | list):
            if count + len(item) > limit:  # over already: no need to look inside
                return count + len(item)
            stack.extend(item.values() if isinstance(item, dict) else item)
    return count


def _amount(value: int) -> str:
    return str(value) if value <= _SHOWN else f"more than {_SHOWN}"


def problem(
    limits: Limits,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any],
) -> str | None:
    """Why ``document`` (with ``variables``) is over a limit, or None."""
    values = json_values(variables, limits.max_tokens)
    if values > limits.max_tokens:
        return (
            f"the variables hold more than {limits.max_tokens} values; "
            f"the limit is {limits.max_tokens}"
        )
    fragments: dict[str, FragmentDefinitionNode] = {}
    operations: list[OperationDefinitionNode] = []
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            fragments.setdefault(definition.name.value, definition)
        elif isinstance(definition, OperationDefinitionNode):
            operations.append(definition)
    roots = [op.selection_set for op in operations]
    measure = Measure(
        fragments,
        variables,
        limits.sources,
        limits.user_sources,
        query_typed(roots, fragments.values()),
    )
    spread = _spread_names(document)
    # Fragments spread nowhere are expanded nowhere else, but validation still walks them.
    roots += [f.selection_set for name, f in fragments.items() if name not in spread]
    tallies = [measure.tally(root) for root in roots]
    selections = len(document.definitions) + sum(t.selections for t in tallies)
    if selections > limits.max_selections:
        return selections_problem(_amount(selections), limits.max_selections)
    repeats = max((t.repeats for t in tallies), default=0)
    if repeats > MAX_REPEATS:
        return (
            f"a selection set selects the same field {_amount(repeats)} times once fragments "
            f"are expanded; the limit is {MAX_REPEATS}"
        )
    pairs = path_pairs(roots, fragments, limits.max_selections)
    if pairs > MAX_PATH_PAIRS:
        return (
            f"the document selects the same response paths too often ({_amount(pairs)} pairs "
            f"of fields to compare, the limit is {MAX_PATH_PAIRS}): select each field once"
        )
    chosen = [
        op
        for op in operations
        if operation_name is None or (op.name is not None and op.name.value == operation_name)
    ]
    if not chosen:
        return None
    tally = measure.tally(chosen[0].selection_set)
    if tally.depth > limits.max_depth:
        return f"the query is {tally.depth} levels deep; the limit is {limits.max_depth}"
    if tally.aliases > limits.max_aliases:
        return f"the query uses {_amount(tally.aliases)} aliases; the limit is {limits.max_aliases}"
    if tally.cost > limits.max_cost:
        return (
            f"the query would cost {_amount(tally.cost)} (page sizes x sources, ids for "
            f"nodes); the budget is {limits.max_cost}: ask for smaller pages or fewer fields"
        )
    return None


def path_pairs(
    roots: list[SelectionSetNode],
    fragments: Mapping[str, FragmentDefinitionNode],
    max_fields: int,
) -> int:
    """The sum over response paths of (fields answering there)^2, fragments expanded.

    Called once the expanded selections are known to be at most ``max_fields``, so this
    walk expands everything; a fragment already being expanded on the way down (a cycle,
    refused later by validation) is not expanded again, and the walk stops past
    ``max_fields`` fields whatever happens.
    """
    counts: Counter[tuple[str, ...]] = Counter()
    visited = 0
    stack: list[tuple[SelectionSetNode, tuple[str, ...], frozenset[str]]] = [
        (root, (), frozenset()) for root in roots
    ]
    while stack and visited <= max_fields:
        node, path, active = stack.pop()
        for selection in node.selections:
            visited += 1
            if isinstance(selection, FieldNode):
                here = (*path, (selection.alias or selection.name).value)
                counts[here] += 1
                if selection.selection_set is not None:
                    stack.append((selection.selection_set, here, active))
            elif isinstance(selection, InlineFragmentNode):
                stack.append((selection.selection_set, path, active))
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is not None and name not in active:
                    stack.append((fragment.selection_set, path, active | {name}))
    return sum(n * n for n in counts.values())


def query_typed(
    roots: list[SelectionSetNode], fragments: Iterable[FragmentDefinitionNode]
) -> frozenset[int]:
    """ids of the selection sets whose type is an operation's root type: the operations'
    own, fragments on Query, and inline fragments within those that name no other type.
    No field returns Query, so every other selection set (``_entities``, ``viewer``) is of
    another type. Mutation roots count too: they hold no ``tokens`` field, so the
    assumption costs nothing (over-counting is the safe side anyway)."""
    found: set[int] = set()
    stack = list(roots)
    stack += [f.selection_set for f in fragments if f.type_condition.name.value == "Query"]
    while stack:
        node = stack.pop()
        if id(node) in found:
            continue
        found.add(id(node))
        for selection in node.selections:
            if isinstance(selection, InlineFragmentNode) and (
                selection.type_condition is None or selection.type_condition.name.value == "Query"
            ):
                stack.append(selection.selection_set)
    return frozenset(found)


def _spread_names(document: DocumentNode) -> set[str]:
    """Names of the fragments spread anywhere in ``document`` (an iterative walk)."""
    names: set[str] = set()
    stack = [d.selection_set for d in document.definitions if hasattr(d, "selection_set")]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        for selection in node.selections:
            if isinstance(selection, FragmentSpreadNode):
                names.add(selection.name.value)
            else:
                stack.append(selection.selection_set)
    return names


class QueryLimits(SchemaExtension):
    """Refuses over-limit documents before validation: placed ahead of Strawberry's
    ``ValidationCache`` in the schema's extensions, it raises the refusal, so neither that
    hook nor validation runs (Strawberry answers the raised error as a pre-execution error)."""

    limits = Limits()

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.pre_execution_errors is None:
            reason = problem(self.limits, document, context.operation_name, context.variables or {})
            if reason is not None:
                raise refusal(reason)
        yield


def limits_extension(limits: Limits) -> type[QueryLimits]:
    """A QueryLimits class bound to ``limits`` (a class, not an instance: see #4369)."""
    return type("BoundQueryLimits", (QueryLimits,), {"limits": limits})
