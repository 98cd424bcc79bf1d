"""The audit log as a connection: who did what to which token, newest first (admins only)."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from tokengate.schema.context import Context
from tokengate.schema.types import PageInfo
from tokengate.upstreams import errors, ids
from tokengate.upstreams.cursor_codec import CursorCodec
from tokengate.upstreams.service import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, require_unbound_admin
from tokengate.upstreams.store.source import AuditEvent as AuditRecord


@strawberry.type(description="One mutation attempt, kept even after its target is revoked.")
class AuditEvent:
    at: datetime
    actor_token_id: strawberry.ID | None = strawberry.field(
        description="Global ID of the internal token that made the call."
    )
    action: str = strawberry.field(
        description="create, update, revoke, or lookup_secret (a tokensBySecret call)."
    )
    target_id: str = strawberry.field(
        description=(
            "Global ID of the token acted on (for a failed create: of the source; for "
            "lookup_secret: the matched tokens' ids, space-separated, or -)."
        )
    )
    source: str
    outcome: str = strawberry.field(description="ok, or the error code the caller received.")
    actor_subject: str | None = strawberry.field(
        default=None,
        description=(
            "The user of a caller signed in at the identity provider (null for internal tokens)."
        ),
    )


@strawberry.type
class AuditEventEdge:
    cursor: str
    node: AuditEvent


@strawberry.type
class AuditEventConnection:
    edges: list[AuditEventEdge]
    nodes: list[AuditEvent]
    page_info: PageInfo


# Audit cursors are sealed like token cursors, under their own kind: neither passes as the
# other, and only ids the gateway listed come back.
AUDIT_CURSOR_KIND = b"audit"
_MAX_EVENT_ID = 2**63 - 1


def _cursor(codec: CursorCodec, event_id: int) -> str:
    return codec.seal(str(event_id).encode("ascii"), kind=AUDIT_CURSOR_KIND)


def _decode(codec: CursorCodec, cursor: str) -> int:
    raw = codec.open(cursor, kind=AUDIT_CURSOR_KIND)
    if not raw.isdigit() or len(raw) > 19 or int(raw) > _MAX_EVENT_ID:
        raise errors.InvalidCursor("the cursor is not valid: use one from a previous page")
    return int(raw)


def _event(record: AuditRecord) -> AuditEvent:
    actor = record.actor_token_id
    return AuditEvent(
        at=record.at,
        actor_token_id=strawberry.ID(ids.token_id("internal", actor)) if actor else None,
        action=record.action,
        target_id=record.target_id,
        source=record.source,
        outcome=record.outcome,
        actor_subject=record.actor_subject,
    )


async def audit_events(
    info: Info[Context, None], first: int | None = None, after: str | None = None
) -> AuditEventConnection:
    require_unbound_admin(info.context.principal)
    size = DEFAULT_PAGE_SIZE if first is None else first
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise errors.InvalidInput(f"first must be between 1 and {MAX_PAGE_SIZE}", argument="first")
    codec = info.context.service.cursors
    before_id = _decode(codec, after) if after is not None else None
    records, more = await info.context.service.store.list_audit(size, before_id)
    edges = [AuditEventEdge(cursor=_cursor(codec, r.id), node=_event(r)) for r in records]
    return AuditEventConnection(
        edges=edges,
        nodes=[e.node for e in edges],
        page_info=PageInfo(
            has_next_page=more,
            has_previous_page=after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )
