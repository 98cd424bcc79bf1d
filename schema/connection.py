"""One mapping from the service's token lists to ``TokenConnection``, shared by every field
that lists tokens (``tokens``, ``viewer.tokens``, ``User.tokens``)."""

from __future__ import annotations

from strawberry.types import Info

from tokengate.schema.context import Context
from tokengate.schema.enums import SourceFailureReason
from tokengate.schema.types import (
    PageInfo,
    SourceFailure,
    TokenConnection,
    TokenEdge,
    token_type,
)
from tokengate.upstreams.service import TokenList


def token_connection(info: Info[Context, None], result: TokenList) -> TokenConnection:
    """The connection for ``result``; each failed source's error is reported next to the
    data at this field's path."""
    ctx = info.context
    page = result.page
    edges = [
        TokenEdge(cursor=e.cursor, node=token_type(e.token, ctx.service_types[e.token.source]))
        for e in page.edges
    ]
    failures = []
    for failure in result.failures:
        failures.append(
            SourceFailure(
                source=ctx.service_types[failure.source],
                reason=SourceFailureReason(failure.reason),
                message=failure.message,
            )
        )
        if failure.error is not None:
            ctx.extra_errors.append((failure.error, info.path.as_list()))
    return TokenConnection(
        edges=edges,
        nodes=[e.node for e in edges],
        page_info=PageInfo(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        total_count=page.total_count,
        failed_sources=failures,
    )
