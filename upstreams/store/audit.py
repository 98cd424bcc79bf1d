"""The audit log: one row per mutation, whatever its outcome, read newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tokengate.upstreams.store import failures, rows
from tokengate.upstreams.store.rows import EPOCH, from_us, to_us
from tokengate.upstreams.store.tables import audit_events


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    at: datetime
    actor_token_id: str | None
    action: str
    target_id: str
    source: str
    outcome: str
    actor_subject: str | None = None


class AuditLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(
        self,
        *,
        actor_token_id: str | None,
        action: str,
        target_id: str,
        source: str,
        outcome: str,
        detail: str | None = None,
        actor_subject: str | None = None,
    ) -> None:
        with failures.writing:
            async with self._engine.begin() as conn:
                await conn.execute(
                    audit_events.insert().values(
                        at=to_us(rows.now()),
                        actor_token_id=actor_token_id,
                        actor_subject=actor_subject,
                        action=action,
                        target_id=target_id,
                        source=source,
                        outcome=outcome,
                        detail=detail,
                    )
                )

    async def page(self, limit: int, before_id: int | None) -> tuple[list[AuditEvent], bool]:
        """Newest first, ``limit`` events older than ``before_id``: (events, has_more)."""
        query = sa.select(audit_events).order_by(audit_events.c.id.desc()).limit(limit + 1)
        if before_id is not None:
            query = query.where(audit_events.c.id < before_id)
        with failures.reading:
            async with self._engine.connect() as conn:
                found = (await conn.execute(query)).mappings().all()
        events = [
            AuditEvent(
                id=r["id"],
                at=from_us(r["at"]) or EPOCH,
                actor_token_id=r["actor_token_id"],
                action=r["action"],
                target_id=r["target_id"],
                source=r["source"],
                outcome=r["outcome"],
                actor_subject=r["actor_subject"],
            )
            for r in found[:limit]
        ]
        return events, len(found) > limit
