"""The audit log as a connection: who did what to which token, newest first (admins only)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

import strawberry
from strawberry.types import Info

from schema.context import Context
from schema.types import PageInfo
from upstreams import errors, ids
from upstreams.service import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, require_unbound_admin
from upstreams.store.source import AuditEvent as AuditRecord


@strawberry.type(description="One mutation attempt, kept even after its target is revoked.")
class AuditEvent:
    at: datetime
    actor_token_id: strawberry.ID | None = strawberry.field(
        description="Global ID of the internal token that made the call."
    )
    action: str = strawberry.field(description="create, update or revoke.")
    target_id: str = strawberry.field(
        description="Global ID of the token acted on (for a failed create: of the source)."
    )
    source: str
    outcome: str = strawberry.field(description="ok, or the error code the caller received.")


@strawberry.type
class AuditEventEdge:
    cursor: str
    node: AuditEvent


@strawberry.type
class AuditEventConnection:
    edges: list[AuditEventEdge]
    nodes: list[AuditEvent]
    page_info: PageInfo


def _cursor(event_id: int) -> str:
    return base64.urlsafe_b64encode(f"audit:{event_id}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "audit" or not number.isdigit() or len(number) > 18:
            raise ValueError(cursor)
        return int(number)
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise errors.InvalidCursor("the cursor is not valid: use one from a previous page") from exc


def _event(record: AuditRecord) -> AuditEvent:
    actor = record.actor_token_id
    return AuditEvent(
        at=record.at,
        actor_token_id=strawberry.ID(ids.token_id("internal", actor)) if actor else None,
        action=record.action,
        target_id=record.target_id,
        source=record.source,
        outcome=record.outcome,
    )


async def audit_events(
    info: Info[Context, None], first: int | None = None, after: str | None = None
) -> AuditEventConnection:
    require_unbound_admin(info.context.principal)
    size = DEFAULT_PAGE_SIZE if first is None else first
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise errors.InvalidInput(f"first must be between 1 and {MAX_PAGE_SIZE}", argument="first")
    before_id = _decode(after) if after is not None else None
    records, more = await info.context.service.store.list_audit(size, before_id)
    edges = [AuditEventEdge(cursor=_cursor(r.id), node=_event(r)) for r in records]
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
