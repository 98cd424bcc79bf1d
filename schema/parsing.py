"""Parsing with bounded work: the document's tokens and characters are counted first.

graphql-core's lexer walks the text one character at a time in Python, and its own token
limit only stops it after the tokens it has already read, each as long as the caller wants
(a string literal of a megabyte is one token). So the text is measured first, by one regular
expression that matches whole tokens and whole runs of ignored characters at C speed and
stops counting at the limit; the same pass counts the selections written in the text and
how deep their sets nest, so a document with too many or too deep is refused unparsed.
Only a document within these limits reaches the parser. Parsed documents are kept in a
per-schema LRU keyed by their text (refusals are not kept).

Why not Strawberry's ``MaxTokensLimiter``: it only sets graphql-core's ``max_tokens`` parse
option, which ``parse_bounded`` passes too; that bound is the lexer's, reached after the
Python lexer has read every token up to it, whatever their length, and it answers a syntax
error (``GRAPHQL_PARSE_FAILED``, "Document contains more than 10000 tokens") where the
run-contract asks for ``BAD_USER_INPUT``. Nor is this Strawberry's ``ParserCache``: a
refusal must be told apart from a syntax error, and the cache must belong to one schema
(its limits), not to every schema with the same cache size.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from graphql import DocumentNode, GraphQLError, GraphQLSyntaxError, OperationDefinitionNode, parse
from strawberry.extensions import SchemaExtension

# Whole lexical tokens (as graphql-core's lexer splits them) and whole runs of ignored
# characters; possessive quantifiers, so no input makes the expression backtrack.
_LEXEME = re.compile(
    r"""
    (?P<ignored>(?:[\t\n\r ,\ufeff]++|\#[^\n\r]*+)++)
    | (?P<string>\"\"\"(?:[^"\\]++|\\\"\"\"|\\|"(?!""))*+(?:\"\"\"|\Z)
      | "(?:[^"\\\n\r]++|\\.)*+"?)
    | (?P<name>[_A-Za-z][_0-9A-Za-z]*+)
    | (?P<number>-?[0-9]++(?:\.[0-9]++)?+(?:[eE][+-]?[0-9]++)?+)
    | (?P<punctuator>\.\.\.|.)
    """,
    re.VERBOSE | re.DOTALL,
)
_NESTED = "nested too deeply"
_TOO_MANY = "tokens. Parsing aborted"
# A name right after these is not a field: a directive, a spread's fragment or `on`, a type.
_NOT_BEFORE_FIELD = frozenset({"@", "...", "on"})


def refusal(message: str) -> GraphQLError:
    """A limit refusal: executes nothing, answered as BAD_USER_INPUT."""
    return GraphQLError(message, extensions={"code": "BAD_USER_INPUT"})


def selections_problem(amount: str, limit: int) -> str:
    return f"the document has {amount} selections once fragments are expanded; the limit is {limit}"


def tokens_problem(limit: int) -> str:
    return f"the document has more than {limit} lexical tokens; the limit is {limit}"


@dataclass(frozen=True, slots=True)
class Scan:
    """What one pass of ``_LEXEME`` tells before parsing: lexical tokens (comments and
    ignored characters not counted), and the selections (fields, spreads, inline fragments)
    and definitions written in the text, a lower bound of the expanded count that
    schema/limits.py checks (exact when no fragment is spread)."""

    tokens: int
    selections: int
    nesting: int  # selection sets nested in each other: the depth of the deepest fields


def scan(text: str, max_tokens: int) -> Scan:
    """Counts up to ``max_tokens + 1`` tokens, then stops."""
    tokens = selections = braces = parens = nesting = 0
    previous = ""
    for match in _LEXEME.finditer(text):
        kind = match.lastgroup
        if kind == "ignored":
            continue
        tokens += 1
        if tokens > max_tokens:
            break
        lexeme = match.group()
        if parens == 0 and braces > 0:  # inside a selection set, outside any arguments
            if (kind == "name" and previous not in _NOT_BEFORE_FIELD) or lexeme == "...":
                selections += 1
            elif lexeme == ":":  # the name before was an alias of the field that follows
                selections -= 1
        if lexeme == "(":
            parens += 1
        elif lexeme == ")":
            parens = max(parens - 1, 0)
        elif parens == 0 and lexeme == "{":
            selections += braces == 0  # a definition's selection set
            braces += 1
            nesting = max(nesting, braces)
        elif parens == 0 and lexeme == "}":
            braces = max(braces - 1, 0)
        previous = lexeme
    return Scan(tokens, selections, nesting)


@dataclass(frozen=True, slots=True)
class ParseLimits:
    max_tokens: int
    max_chars: int
    max_selections: int
    max_depth: int


def parse_bounded(text: str, limits: ParseLimits) -> DocumentNode:
    """``text`` parsed, or a BAD_USER_INPUT ``GraphQLError`` raised before any costly step
    when it is over a limit (other syntax errors are graphql-core's, as usual)."""
    max_tokens, max_chars = limits.max_tokens, limits.max_chars
    measured = scan(text, max_tokens)
    if measured.tokens > max_tokens:
        raise refusal(tokens_problem(max_tokens))
    if len(text) > max_chars:
        raise refusal(
            f"the document is {len(text)} characters long; the limit is {max_chars} "
            "(send long values as variables)"
        )
    if measured.selections > limits.max_selections:
        amount = f"at least {measured.selections}"
        raise refusal(selections_problem(amount, limits.max_selections))
    if measured.nesting > limits.max_depth:
        raise refusal(
            f"the query is at least {measured.nesting} levels deep; the limit is {limits.max_depth}"
        )
    try:
        return parse(text, max_lexical_tokens=max_tokens)
    except GraphQLSyntaxError as error:
        if _NESTED in error.message:
            raise refusal("the document nests selections or values too deeply") from None
        if _TOO_MANY in error.message:
            raise refusal(tokens_problem(max_tokens)) from None
        raise


class DocumentParser(SchemaExtension):
    """Strawberry's parsing step through ``parse_bounded`` and a cache (bound by
    ``document_parser``)."""

    parse_cached: Callable[[str], DocumentNode]

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is None and context.query:
            context.graphql_document = self.parse_cached(context.query)
        if context.graphql_document is not None and hasattr(context.context, "operation_name"):
            context.context.operation_name = operation_name(
                context.graphql_document, context.operation_name
            )
        yield


def operation_name(document: DocumentNode, requested: str | None) -> str | None:
    """``requested`` (the request's ``operationName``, else Strawberry's pick: the first
    operation's name) when ``document`` has an operation of that name, else None: a label
    is only ever a name written in a parsed document."""
    if requested is None:
        return None
    for definition in document.definitions:
        if (
            isinstance(definition, OperationDefinitionNode)
            and definition.name is not None
            and definition.name.value == requested
        ):
            return requested
    return None


def document_parser(limits: ParseLimits, maxsize: int) -> type[DocumentParser]:
    """A ``DocumentParser`` class with its limits and its own cache (one per built schema)."""

    @lru_cache(maxsize=maxsize)
    def parse_cached(text: str) -> DocumentNode:
        return parse_bounded(text, limits)

    return type("DocumentParser", (DocumentParser,), {"parse_cached": staticmethod(parse_cached)})
