"""A store that fails mid-run: every call answers a coded error, nothing escapes raw, and
the store serves again once the database is back (SQLite and a real PostgreSQL)."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.pg_cluster import throwaway_cluster
from tokengate.upstreams import errors
from tokengate.upstreams.model import (
    CreateSpec,
    Direction,
    OrderField,
    PageRequest,
    TokenFilter,
    TokenOrder,
    UpdateSpec,
)
from tokengate.upstreams.store import SecretHasher, StoreSource, create_engine, engine, migrate

pytestmark = pytest.mark.slow


@asynccontextmanager
async def open_store(url: str) -> AsyncIterator[StoreSource]:
    store_engine = create_engine(url)
    await migrate(store_engine)
    store = StoreSource(store_engine, SecretHasher(secrets.token_bytes(32)))
    try:
        yield store
    finally:
        await store.aclose()


def page_request() -> PageRequest:
    order = TokenOrder(OrderField.CREATED_AT, Direction.DESC)
    return PageRequest(filter=TokenFilter(), order=order, limit=10)


async def assert_unavailable(call: Awaitable[object]) -> None:
    """``call`` fails with the store's coded error, not a driver exception."""
    with pytest.raises(errors.UpstreamUnavailable) as caught:
        await call
    assert caught.value.code == "UPSTREAM_UNAVAILABLE"
    assert caught.value.source == "internal"


async def assert_every_call_coded(store: StoreSource, used: str, fresh_secret: str) -> None:
    await assert_unavailable(store.authenticate(fresh_secret))
    await assert_unavailable(store.list_page(page_request()))
    await assert_unavailable(store.get_many([used]))
    await assert_unavailable(store.update(used, UpdateSpec(name="renamed")))
    await assert_unavailable(store.revoke(used))
    await assert_unavailable(store.create(CreateSpec(name="during the outage")))
    await assert_unavailable(store.list_audit(10, None))
    await assert_unavailable(
        store.record_audit(
            actor_token_id=None, action="revoke", target_id="x", source="internal", outcome="ok"
        )
    )
    assert await store.ping() is False


async def assert_recovered(store: StoreSource, used: str, fresh_secret: str) -> None:
    assert await store.ping() is True
    assert await store.authenticate(fresh_secret) is not None
    assert (await store.update(used, UpdateSpec(name="renamed"))).name == "renamed"
    await store.revoke(used)
    page = await store.list_page(page_request())
    assert page.total_count == 1  # the revoked one is left out by default
    await store.record_audit(
        actor_token_id=None, action="revoke", target_id=used, source="internal", outcome="ok"
    )
    events, _ = await store.list_audit(10, None)
    assert [e.target_id for e in events] == [used]


async def test_sqlite_file_gone_mid_run_answers_coded_errors_then_recovers(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    async with open_store(f"sqlite:///{folder / 'store.db'}") as store:
        used = await store.create(CreateSpec(name="used"))
        fresh = await store.create(CreateSpec(name="fresh"))
        assert await store.authenticate(used.secret) is not None
        # The database disappears (an unmounted volume): pooled connections are closed and
        # new ones cannot open the file.
        await store.engine.dispose()
        store.reads_engine.dispose()
        folder.rename(tmp_path / "away")
        await assert_every_call_coded(store, used.token.local_id, fresh.secret)
        (tmp_path / "away").rename(folder)
        await assert_recovered(store, used.token.local_id, fresh.secret)


async def test_sqlite_writes_refused_while_locked_are_coded_and_reads_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds the write lock past the busy timeout: the write fails after
    the store has already read the token (the window ``update`` used to leak through)."""
    monkeypatch.setattr(engine, "SQLITE_BUSY_TIMEOUT_MS", 100)
    path = tmp_path / "store.db"
    async with open_store(f"sqlite:///{path}") as store:
        made = await store.create(CreateSpec(name="locked"))
        local_id = made.token.local_id
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            assert (await store.get(local_id)).name == "locked"
            await assert_unavailable(store.update(local_id, UpdateSpec(name="renamed")))
            await assert_unavailable(store.revoke(local_id))
            await assert_unavailable(store.create(CreateSpec(name="blocked")))
            await assert_unavailable(
                store.record_audit(
                    actor_token_id=None,
                    action="revoke",
                    target_id=local_id,
                    source="internal",
                    outcome="ok",
                )
            )
            # Last-use tracking is a write too, but it never fails a request.
            assert await store.authenticate(made.secret) is not None
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert (await store.update(local_id, UpdateSpec(name="renamed"))).name == "renamed"


@pytest.mark.postgres
async def test_postgresql_stopped_mid_run_answers_coded_errors_then_recovers() -> None:
    with throwaway_cluster() as cluster:
        async with open_store(cluster.url) as store:
            used = await store.create(CreateSpec(name="used"))
            fresh = await store.create(CreateSpec(name="fresh"))
            assert await store.authenticate(used.secret) is not None
            cluster.stop()
            await assert_every_call_coded(store, used.token.local_id, fresh.secret)
            cluster.start()
            await assert_recovered(store, used.token.local_id, fresh.secret)
