"""Validation results remembered per parsed document, found by the document's identity.

Strawberry's ``ValidationCache`` keys an ``lru_cache`` by the document AST, and graphql-core's
AST nodes hash recursively: every request re-hashes its whole query (~128 node hashes, ~35 us
on these machines for the fan-out page's query) before the first upstream request can
leave. ``ParserCache`` already hands back the same ``DocumentNode`` object for the same query
text, so the document's identity is the key here, checked with ``is`` against the document
the entry keeps alive (an ``id`` is only unique while its object lives).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from graphql import ASTValidationRule, DocumentNode, GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

_Key = tuple[int, tuple[type[ASTValidationRule], ...]]
_Entry = tuple[DocumentNode, list[GraphQLError]]


class ValidatedDocuments:
    """A bounded LRU of validation results for one schema (see module docstring)."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        self._maxsize = maxsize

    def __len__(self) -> int:
        return len(self._entries)

    def errors(
        self,
        extension: SchemaExtension,
        document: DocumentNode,
        rules: tuple[type[ASTValidationRule], ...],
    ) -> list[GraphQLError]:
        key = (id(document), rules)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is document:
            self._entries.move_to_end(key)
            return entry[1]
        schema = extension.execution_context.schema._schema
        errors = validate_document(schema, document, rules)
        self._entries[key] = (document, errors)
        if len(self._entries) > self._maxsize:
            self._entries.popitem(last=False)
        return errors


class ValidationByDocument(SchemaExtension):
    """Strawberry's validation step, answered from ``ValidatedDocuments`` (set by
    ``validation_by_document``); Strawberry skips its own validation once
    ``pre_execution_errors`` is set. A document an earlier extension already refused (the
    query limits) is not validated at all."""

    validated: ValidatedDocuments

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.pre_execution_errors is None:
            context.pre_execution_errors = self.validated.errors(
                self, document, tuple(context.validation_rules)
            )
        yield


def validation_by_document(maxsize: int) -> type[ValidationByDocument]:
    """A ``ValidationByDocument`` class with its own cache: one per built schema, so no
    result can be shared between two schemas."""
    return type(
        "ValidationByDocument",
        (ValidationByDocument,),
        {"validated": ValidatedDocuments(maxsize)},
    )
