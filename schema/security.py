"""``tokensBySecret`` and ``revokeTokens``: thin resolvers over ``upstreams.security_ops``."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from tokengate.schema.context import Context
from tokengate.schema.inputs import TokenFilterInput, to_filter
from tokengate.schema.types import SourceType, TokenType, token_type
from tokengate.upstreams import security_ops
from tokengate.upstreams.model import Token
from tokengate.upstreams.secret_lookup import SecretMatchKind
from tokengate.upstreams.security_ops import SkipReason


@strawberry.type(description="A token whose secret is, or may be, the one looked up.")
class SecretMatch:
    token: TokenType
    match: SecretMatchKind = strawberry.field(
        description=(
            "EXACT: the whole secret was compared. HINT: only the source's redacted prefix "
            "matched (Amper): several tokens may match, at most one is the secret's."
        )
    )


def _token(info: Info[Context, None], token: Token) -> TokenType:
    return token_type(token, info.context.service_types[token.source])


async def tokens_by_secret(info: Info[Context, None], secret: str) -> list[SecretMatch]:
    ctx = info.context
    result = await security_ops.find_by_secret(
        ctx.service, ctx.principal, secret, limiter=ctx.service.secret_lookup_limiter
    )
    for failure in result.failures:
        ctx.extra_errors.append((failure, info.path.as_list()))
    return [SecretMatch(token=_token(info, f.token), match=f.match) for f in result.found]


@strawberry.input(description="Which tokens to revoke, and how many at once.")
class RevokeTokensInput:
    filter: TokenFilterInput = strawberry.field(
        description=(
            "The tokens to revoke, among those the caller may revoke. userId selects that "
            "user's tokens: its OAuth-style tokens and the internal tokens bound to it."
        )
    )
    dry_run: bool = strawberry.field(
        default=True, description="Only say what would be revoked (the default)."
    )
    max: int = strawberry.field(
        default=security_ops.DEFAULT_REVOKE,
        description=f"Tokens handled in this call, 1..{security_ops.MAX_REVOKE}.",
    )
    after: str | None = strawberry.field(
        default=None,
        description="The cursor of the previous call (same filter and dryRun), to continue.",
    )
    client_mutation_id: str | None = None


@strawberry.type
class SkippedToken:
    token: TokenType
    reason: SkipReason
    message: str


@strawberry.type
class FailedRevocation:
    token: TokenType
    code: str = strawberry.field(description="The error code revokeToken would have answered.")
    message: str


@strawberry.type(description="One source's share of a revokeTokens call.")
class SourceRevocation:
    source: SourceType
    revoked: list[TokenType] = strawberry.field(
        description="Revoked now (in a dry run: what would be revoked)."
    )
    skipped: list[SkippedToken]
    failed: list[FailedRevocation]
    complete: bool = strawberry.field(
        description="False when the source could not take its whole share (see error)."
    )
    error_code: str | None = strawberry.field(
        description="Why not: NEEDS_FILTER, or the code of the source's failure."
    )
    error_message: str | None


@strawberry.type
class RevokeTokensPayload:
    dry_run: bool
    sources: list[SourceRevocation]
    revoked_count: int = strawberry.field(description="Over all sources (dry run: would be).")
    has_more: bool = strawberry.field(
        description="Tokens are left (or a source must be retried): call again with cursor."
    )
    cursor: str | None = strawberry.field(description="Pass as input.after to continue.")
    client_mutation_id: str | None


async def revoke_tokens(info: Info[Context, None], input: RevokeTokensInput) -> RevokeTokensPayload:
    ctx = info.context
    result = await security_ops.revoke_matching(
        ctx.service,
        ctx.principal,
        to_filter(input.filter),
        dry_run=input.dry_run,
        max_count=input.max,
        after=input.after,
    )
    sources = [
        SourceRevocation(
            source=ctx.service_types[o.source],
            revoked=[_token(info, t) for t in o.revoked],
            skipped=[
                SkippedToken(token=_token(info, s.token), reason=s.reason, message=s.message)
                for s in o.skipped
            ],
            failed=[
                FailedRevocation(token=_token(info, f.token), code=f.code, message=f.message)
                for f in o.failed
            ],
            complete=o.complete,
            error_code=o.problem[0] if o.problem else None,
            error_message=o.problem[1] if o.problem else None,
        )
        for o in result.sources
    ]
    return RevokeTokensPayload(
        dry_run=result.dry_run,
        sources=sources,
        revoked_count=sum(len(o.revoked) for o in result.sources),
        has_more=result.cursor is not None,
        cursor=result.cursor,
        client_mutation_id=input.client_mutation_id,
    )
