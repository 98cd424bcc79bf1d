"""The served schema: Strawberry + Apollo Federation v2, with our error handling and caches."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError, NoSchemaIntrospectionCustomRule
from strawberry.extensions import AddValidationRules, ValidationCache
from strawberry.federation.schema import FederationAny
from strawberry.types import ExecutionContext, Info

from tokengate.schema.errors import log_unexpected
from tokengate.schema.execution import PlainFieldExecutor
from tokengate.schema.limits import Limits, limits_extension
from tokengate.schema.mutation import Mutation
from tokengate.schema.parsing import ParseLimits, document_parser
from tokengate.schema.query import Query
from tokengate.schema.types import SourceType, TokenType
from tokengate.schema.users import UserType, user_references
from tokengate.upstreams.errors import InvalidInput

CACHE_SIZE = 512


class GatewaySchema(strawberry.federation.Schema):
    def entities_resolver(
        self, info: Info, representations: list[FederationAny]
    ) -> list[FederationAny]:
        """``_entities`` for Token references, through the per-request batched loader, and
        for User references (the user's ``tokens`` are listed when selected, one listing per
        user: at most one request per user and source).

        Anything that is not ``{__typename: "Token" | "User", id: String}`` answers
        BAD_USER_INPUT for that entry instead of reaching Strawberry's generic resolver
        (which crashes on unknown or non-entity type names).
        """
        loader = info.context.token_loader
        user_reference = user_references()
        results: list[Any] = []
        for index, representation in enumerate(representations):
            fields: dict[str, Any] = representation if isinstance(representation, dict) else {}
            typename = fields.get("__typename")
            if typename == "Token" and isinstance(fields.get("id"), str):
                results.append(loader.load(fields["id"]))
            elif typename == "User" and "id" in fields:
                results.append(user_reference(index, fields["id"]))
            else:
                results.append(
                    InvalidInput(
                        f"representations[{index}] is not a Token or User reference "
                        '({__typename: "Token" or "User", id: ...})',
                        argument="representations",
                    )
                )
        return results

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Expected errors are answers, not crashes: only the unexpected are logged, without
        # the query text (it may hold secrets in literals).
        context: Any = execution_context.context if execution_context is not None else None
        log_unexpected(errors, getattr(context, "request_id", None))


def build_schema(limits: Limits | None = None, *, introspection: bool = True) -> GatewaySchema:
    limits = limits or Limits()
    # Order matters: every document is parsed within the token and length limits, then
    # measured against the query limits, and only a document within them is validated
    # (a refusal raises, so no later hook runs).
    extensions: list[Any] = [
        document_parser(
            ParseLimits(
                max_tokens=limits.max_tokens,
                max_chars=limits.max_document_chars,
                max_selections=limits.max_selections,
                max_depth=limits.max_depth,
            ),
            CACHE_SIZE,
        ),
        limits_extension(limits),
        lambda: ValidationCache(maxsize=CACHE_SIZE),
    ]
    if not introspection:
        extensions.append(lambda: AddValidationRules([NoSchemaIntrospectionCustomRule]))
    return GatewaySchema(
        query=Query,
        mutation=Mutation,
        types=[TokenType, SourceType, UserType],
        extensions=extensions,
        execution_context_class=PlainFieldExecutor,
    )
