"""Migration 0003: audit events gain ``actor_subject`` on a store that already has events,
on SQLite and PostgreSQL alike."""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import command

from tokengate.upstreams.store import SecretHasher, StoreSource, create_engine, migrate
from tokengate.upstreams.store.migrate import _config, current_revision


async def test_an_older_store_gains_actor_subject(store_url: str) -> None:
    engine = create_engine(store_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(_config(c), "0002"))
            await conn.execute(
                sa.text(
                    "INSERT INTO audit_events (at, actor_token_id, action, target_id, source, "
                    "outcome) VALUES (1, 'a', 'revoke', 't', 'internal', 'ok')"
                )
            )
        await migrate(engine)
        assert await current_revision(engine) == "0003"
        store = StoreSource(engine, SecretHasher(secrets.token_bytes(32)))
        await store.record_audit(
            actor_token_id=None,
            actor_subject="anna@example.com",
            action="create",
            target_id="x",
            source="internal",
            outcome="ok",
        )
        events, more = await store.list_audit(10, None)
        assert not more
        assert [(e.actor_token_id, e.actor_subject) for e in events] == [
            (None, "anna@example.com"),
            ("a", None),
        ]
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(_config(c), "0002"))
        assert await current_revision(engine) == "0002"
    finally:
        await engine.dispose()
