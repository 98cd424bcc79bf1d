"""Root mutations: create, update, revoke. Checks live in the service."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from tokengate.schema.context import Context
from tokengate.schema.inputs import (
    CreateTokenInput,
    RevokeTokenInput,
    UpdateTokenInput,
    to_create_spec,
    to_update_spec,
)
from tokengate.schema.security import RevokeTokensPayload, revoke_tokens
from tokengate.schema.types import TokenType, token_type


@strawberry.type
class CreateTokenPayload:
    token: TokenType
    secret: str = strawberry.field(
        description="The secret, returned exactly once. The gateway never stores or logs it in clear."
    )
    client_mutation_id: str | None


@strawberry.type
class UpdateTokenPayload:
    token: TokenType
    client_mutation_id: str | None


@strawberry.type
class RevokeTokenPayload:
    revoked_token_id: strawberry.ID
    client_mutation_id: str | None


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Issue a token at a source; its secret is returned once.")
    async def create_token(
        self,
        info: Info[Context, None],
        input: CreateTokenInput,
    ) -> CreateTokenPayload:
        ctx = info.context
        created = await ctx.service.create_token(ctx.principal, input.source, to_create_spec(input))
        return CreateTokenPayload(
            token=token_type(created.token, ctx.service_types[created.token.source]),
            secret=created.secret,
            client_mutation_id=input.client_mutation_id,
        )

    @strawberry.mutation(
        description="Rename, describe, or switch a token on (ACTIVE) or off (INACTIVE)."
    )
    async def update_token(
        self,
        info: Info[Context, None],
        input: UpdateTokenInput,
    ) -> UpdateTokenPayload:
        ctx = info.context
        token = await ctx.service.update_token(ctx.principal, str(input.id), to_update_spec(input))
        return UpdateTokenPayload(
            token=token_type(token, ctx.service_types[token.source]),
            client_mutation_id=input.client_mutation_id,
        )

    @strawberry.mutation(
        description=(
            "Revoke a token. Internal tokens are marked REVOKED and kept for audit; "
            "upstream tokens are deleted at their source."
        )
    )
    async def revoke_token(
        self,
        info: Info[Context, None],
        input: RevokeTokenInput,
    ) -> RevokeTokenPayload:
        ctx = info.context
        revoked = await ctx.service.revoke_token(ctx.principal, str(input.id))
        return RevokeTokenPayload(
            revoked_token_id=strawberry.ID(revoked), client_mutation_id=input.client_mutation_id
        )

    revoke_tokens: RevokeTokensPayload = strawberry.mutation(
        resolver=revoke_tokens,
        description=(
            "Revoke every token a filter selects among those the caller may revoke (as "
            "revokeToken decides), at most max per call, each at its source; a dry run by "
            "default. Continue with the returned cursor."
        ),
    )
