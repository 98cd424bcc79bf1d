"""Root query fields: thin resolvers that call the service and map its results."""

from __future__ import annotations

import asyncio

import strawberry
from strawberry.types import Info

from tokengate.schema.audit import AuditEventConnection, audit_events
from tokengate.schema.connection import token_connection
from tokengate.schema.context import Context
from tokengate.schema.inputs import TokenFilterInput, TokenOrderInput, to_filter, to_order
from tokengate.schema.security import SecretMatch, tokens_by_secret
from tokengate.schema.types import Node, SourceType, TokenConnection, TokenType
from tokengate.schema.users import Viewer
from tokengate.upstreams import errors
from tokengate.upstreams import ids as global_ids
from tokengate.upstreams.principal import READ
from tokengate.upstreams.service import MAX_NODE_IDS, PageArgs, may_read_source, require


def _source_type(info: Info[Context, None], key: str) -> SourceType:
    return info.context.service_types[key]


async def _node(info: Info[Context, None], global_id: str) -> Node | None:
    type_name, key, _ = global_ids.decode(global_id)
    if type_name == "Source":
        principal = info.context.principal
        require(principal, READ)
        source = info.context.service.sources.get(key)
        if source is None or not may_read_source(principal, source):
            return None
        return _source_type(info, key)
    result: TokenType | None = await info.context.token_loader.load(global_id)
    return result


@strawberry.type
class Query:
    @strawberry.field(description="Fetches an object given its ID.")
    async def node(self, info: Info[Context, None], id: strawberry.ID) -> Node | None:
        return await _node(info, str(id))

    @strawberry.field(description="Fetches objects given their IDs (at most 100).")
    async def nodes(
        self,
        info: Info[Context, None],
        ids: list[strawberry.ID],
    ) -> list[Node | None]:
        if len(ids) > MAX_NODE_IDS:
            raise errors.InvalidInput(f"nodes takes at most {MAX_NODE_IDS} ids", argument="ids")
        for gid in ids:
            global_ids.decode(str(gid))
        return list(await asyncio.gather(*(_node(info, str(gid)) for gid in ids)))

    @strawberry.field(
        description=(
            "Tokens of every source the caller may read, in one order, as a Relay connection. "
            "first/last: 1..100 (default first: 20)."
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
        result = await ctx.service.list_tokens(
            ctx.principal,
            to_filter(filter),
            to_order(order_by),
            PageArgs(first=first, after=after, last=last, before=before),
        )
        return token_connection(info, result)

    @strawberry.field(description="The caller itself: its user, scopes and own tokens.")
    def viewer(self, info: Info[Context, None]) -> Viewer:
        principal = info.context.principal
        return Viewer(subject=principal.subject, scopes=sorted(principal.scopes))

    audit_events: AuditEventConnection = strawberry.field(
        resolver=audit_events,
        description="Every mutation attempt, newest first. Needs tokens:admin.",
    )

    tokens_by_secret: list[SecretMatch] = strawberry.field(
        resolver=tokens_by_secret,
        description=(
            "The tokens behind a leaked secret, from every source that can tell (see "
            "sources { capabilities { secretLookup } }). Unbound admins only; rate limited "
            "per caller; audited without the secret. Pass the secret as a variable."
        ),
    )

    @strawberry.field(description="The sources the caller may read.")
    def sources(self, info: Info[Context, None]) -> list[SourceType]:
        principal = info.context.principal
        require(principal, READ)
        return [_source_type(info, s.key) for s in info.context.service.visible_sources(principal)]
