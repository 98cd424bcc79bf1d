"""Users as the caller sees them: ``Viewer`` (the caller itself) and the federated ``User``
entity, whose key another subgraph owns and to which this gateway adds the user's tokens.

Both list tokens through the service's user listing: the OAuth-style tokens listed for the
user and the internal tokens whose subject it is, under the caller's bindings (a caller
bound to another user is refused before any source is asked).
"""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from tokengate.schema.connection import token_connection
from tokengate.schema.context import Context
from tokengate.schema.inputs import TokenFilterInput, TokenOrderInput, to_filter, to_order
from tokengate.schema.types import TokenConnection
from tokengate.upstreams.errors import InvalidInput
from tokengate.upstreams.service import PageArgs

# A user id in an entity representation: the longest the OAuth-style source takes.
MAX_USER_ID = 256


@strawberry.type(description="The caller itself: its user, scopes and own tokens.")
class Viewer:
    subject: str | None = strawberry.field(
        description="The user the caller is bound to; null for a caller bound to no user."
    )
    scopes: list[str]

    @strawberry.field(
        description=(
            "The caller's own tokens (tokens with filter.userId = subject); empty without a "
            "subject. A filter naming another user answers FORBIDDEN."
        )
    )
    async def tokens(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: TokenFilterInput | None = None,
        order_by: TokenOrderInput | None = None,
    ) -> TokenConnection:
        ctx = info.context
        result = await ctx.service.list_own_tokens(
            ctx.principal,
            to_filter(filter),
            to_order(order_by),
            PageArgs(first=first, after=after, last=last, before=before),
        )
        return token_connection(info, result)


@strawberry.federation.type(
    name="User",
    keys=["id"],
    description="A user owned by another subgraph; this gateway contributes the user's tokens.",
)
class UserType:
    id: strawberry.ID

    @strawberry.field(
        description=(
            "The user's tokens (tokens with filter.userId = id): OAuth-style tokens and "
            "internal tokens whose subject is this user. FORBIDDEN for a caller bound to "
            "another user."
        )
    )
    async def tokens(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: TokenFilterInput | None = None,
        order_by: TokenOrderInput | None = None,
    ) -> TokenConnection:
        ctx = info.context
        result = await ctx.service.list_user_tokens(
            ctx.principal,
            str(self.id),
            to_filter(filter),
            to_order(order_by),
            PageArgs(first=first, after=after, last=last, before=before),
        )
        return token_connection(info, result)


def user_reference(index: int, user_id: object) -> UserType | InvalidInput:
    """The ``User`` of a representation's id, or why it is not one (no source is asked)."""
    if (
        not isinstance(user_id, str)
        or not user_id
        or len(user_id) > MAX_USER_ID
        or any(ord(c) < 32 for c in user_id)
    ):
        return InvalidInput(
            f"representations[{index}].id must be 1 to {MAX_USER_ID} characters without "
            "control characters",
            argument="representations",
        )
    return UserType(id=strawberry.ID(user_id))
