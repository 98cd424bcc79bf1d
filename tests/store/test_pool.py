"""The store's connection pool: a busy process reuses its SQLite connections instead of
opening (a file, pragmas, a thread) and closing one per request; and its list reads run on
a SQLite file in one thread hop each, on their own synchronous engine."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from tokengate.gateway.config import ConfigError, load
from tokengate.upstreams.model import (
    CreateSpec,
    Direction,
    OrderField,
    PageRequest,
    TokenFilter,
    TokenOrder,
)
from tokengate.upstreams.store import SecretHasher, StoreSource, create_engine, migrate
from tokengate.upstreams.store.engine import DEFAULT_POSTGRES_POOL_SIZE, DEFAULT_SQLITE_POOL_SIZE
from tokengate.upstreams.store.reads import reads_for


def test_default_pool_sizes(tmp_path: Path) -> None:
    sqlite = create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    postgres = create_engine("postgresql://tg@127.0.0.1:1/tg")
    sized = create_engine(f"sqlite:///{tmp_path / 'b.db'}", 7)
    assert sqlite.pool.size() == DEFAULT_SQLITE_POOL_SIZE == 20  # type: ignore[attr-defined]
    assert postgres.pool.size() == DEFAULT_POSTGRES_POOL_SIZE == 10  # type: ignore[attr-defined]
    assert sized.pool.size() == 7  # type: ignore[attr-defined]


def test_pool_size_in_the_config(tmp_path: Path) -> None:
    path = tmp_path / "tokengate.toml"
    path.write_text("[store]\npool_size = 32\n")
    assert load(path, environ={}).store.pool_size == 32
    path.write_text("[store]\n")
    assert load(path, environ={}).store.pool_size is None
    for bad in ("0", "501", '"many"'):
        path.write_text(f"[store]\npool_size = {bad}\n")
        with pytest.raises(ConfigError, match=r"pool_size"):
            load(path, environ={})


async def test_concurrent_lists_reuse_connections(tmp_path: Path) -> None:
    """Sixteen lists at once, again and again: at most the pool's connections are ever
    opened, and none is closed (a pool smaller than the concurrency opened and closed some
    on every burst)."""
    engine = create_engine(f"sqlite:///{tmp_path / 'pool.db'}")
    await migrate(engine)
    store = StoreSource(engine, SecretHasher(os.urandom(32)))
    opened: list[object] = []
    closed: list[object] = []
    event.listen(store.reads_engine, "connect", lambda conn, _record: opened.append(conn))
    event.listen(store.reads_engine, "close", lambda conn, _record: closed.append(conn))
    try:
        for i in range(25):
            await store.create(CreateSpec(name=f"t{i}", subject="u1"))
        request = PageRequest(
            filter=TokenFilter(),
            order=TokenOrder(OrderField.CREATED_AT, Direction.DESC),
            limit=20,
        )
        for _ in range(8):
            pages = await asyncio.gather(*(store.list_page(request) for _ in range(16)))
            assert all(len(p.items) == 20 for p in pages)
        assert 1 <= len(opened) <= 16
        assert closed == []
    finally:
        await store.aclose()


async def test_sqlite_reads_run_on_their_own_engine_in_threads(tmp_path: Path) -> None:
    """On a SQLite file, a list reads through the synchronous engine (in a worker thread),
    never through aiosqlite; it sees at once what the async engine just wrote."""
    engine = create_engine(f"sqlite:///{tmp_path / 'reads.db'}", 4)
    await migrate(engine)
    store = StoreSource(engine, SecretHasher(os.urandom(32)))
    through_async: list[str] = []
    through_reads: list[str] = []
    event.listen(
        engine.sync_engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_: through_async.append(statement),
    )
    event.listen(
        store.reads_engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_: through_reads.append(threading.current_thread().name),
    )
    try:
        assert store.reads_engine is not engine.sync_engine
        created = await store.create(CreateSpec(name="fresh", subject="u1"))
        through_async.clear()
        request = PageRequest(
            filter=TokenFilter(), order=TokenOrder(OrderField.CREATED_AT, Direction.DESC), limit=5
        )
        page = await store.list_page(request)
        assert [i.token.local_id for i in page.items] == [created.token.local_id]
        assert page.total_count == 1
        assert (await store.get(created.token.local_id)).name == "fresh"
        assert through_async == []
        assert through_reads and all(n.startswith("tokengate-store") for n in through_reads)
        assert store.reads_engine.pool.size() == 4  # type: ignore[attr-defined]
    finally:
        await store.aclose()


async def test_in_memory_sqlite_reads_through_the_async_engine() -> None:
    """An in-memory database exists once per connection: its reads cannot move to another
    engine, and stay on the async one."""
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    try:
        assert reads_for(engine).engine is engine.sync_engine
    finally:
        await engine.dispose()
