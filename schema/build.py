"""The served schema: Strawberry + Apollo Federation v2, with our error handling and caches."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError, NoSchemaIntrospectionCustomRule
from strawberry.extensions import AddValidationRules, ParserCache, ValidationCache
from strawberry.types import ExecutionContext

from schema.errors import log_unexpected
from schema.limits import Limits, limits_extension
from schema.mutation import Mutation
from schema.query import Query
from schema.types import SourceType, TokenType

CACHE_SIZE = 512


class GatewaySchema(strawberry.federation.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Expected errors are answers, not crashes: only the unexpected are logged, without
        # the query text (it may hold secrets in literals).
        context: Any = execution_context.context if execution_context is not None else None
        log_unexpected(errors, getattr(context, "request_id", None))


def build_schema(limits: Limits | None = None, *, introspection: bool = True) -> GatewaySchema:
    extensions: list[Any] = [
        lambda: ParserCache(maxsize=CACHE_SIZE),
        lambda: ValidationCache(maxsize=CACHE_SIZE),
        limits_extension(limits or Limits()),
    ]
    if not introspection:
        extensions.append(lambda: AddValidationRules([NoSchemaIntrospectionCustomRule]))
    return GatewaySchema(
        query=Query,
        mutation=Mutation,
        types=[TokenType, SourceType],
        extensions=extensions,
    )
