"""Users as the caller sees them: ``Viewer`` (the caller itself) and the federated ``User``
entity, whose key another subgraph owns and to which this gateway adds the user's tokens.

Both list tokens through the service's user listing: the OAuth-style tokens listed for the
user and the internal tokens whose subject it is, under the caller's bindings (a caller
bound to another user is refused before any source is asked).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Hashable

import strawberry
from strawberry.types import Info

from tokengate.schema.connection import token_connection
from tokengate.schema.context import Context
from tokengate.schema.inputs import TokenFilterInput, TokenOrderInput, to_filter, to_order
from tokengate.schema.types import TokenConnection
from tokengate.upstreams.errors import InvalidInput
from tokengate.upstreams.service import PageArgs, TokenList

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
    # One listing per set of arguments, shared by every representation of this user in one
    # ``_entities`` call (they resolve to this one object): a user named twice is asked
    # for once.
    listings: strawberry.Private[dict[Hashable, asyncio.Task[TokenList]]] = dataclasses.field(
        default_factory=dict
    )

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
        flt, order = to_filter(filter), to_order(order_by)
        args = PageArgs(first=first, after=after, last=last, before=before)
        key = (flt, order, args)
        listing = self.listings.get(key)
        if listing is None:
            listing = asyncio.ensure_future(
                ctx.service.list_user_tokens(ctx.principal, str(self.id), flt, order, args)
            )
            self.listings[key] = listing
        # Shielded: one field cancelled must not cancel the listing the others await.
        return token_connection(info, await asyncio.shield(listing))


def user_references() -> Callable[[int, object], UserType | InvalidInput]:
    """Turns the representations of one ``_entities`` call into ``User`` objects, one per
    distinct id."""
    seen: dict[str, UserType] = {}

    def reference(index: int, user_id: object) -> UserType | InvalidInput:
        user = user_reference(index, user_id)
        if isinstance(user, UserType):
            user = seen.setdefault(str(user.id), user)
        return user

    return reference


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
