"""The store's connection pool: a busy process reuses its SQLite connections instead of
opening (a file, pragmas, aiosqlite's thread) and closing one per request."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from sqlalchemy import event

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
    """Sixteen lists at once, again and again: connections are opened by the first burst
    only (a pool smaller than the concurrency opened and closed some on every burst)."""
    engine = create_engine(f"sqlite:///{tmp_path / 'pool.db'}")
    opened: list[object] = []
    event.listen(engine.sync_engine, "connect", lambda conn, _record: opened.append(conn))
    await migrate(engine)
    store = StoreSource(engine, SecretHasher(os.urandom(32)))
    try:
        for i in range(25):
            await store.create(CreateSpec(name=f"t{i}", subject="u1"))
        request = PageRequest(
            filter=TokenFilter(),
            order=TokenOrder(OrderField.CREATED_AT, Direction.DESC),
            limit=20,
        )
        await asyncio.gather(*(store.list_page(request) for _ in range(16)))
        after_first = len(opened)
        assert 1 <= after_first <= 16
        for _ in range(5):
            pages = await asyncio.gather(*(store.list_page(request) for _ in range(16)))
            assert all(len(p.items) == 20 for p in pages)
        assert len(opened) == after_first
    finally:
        await store.aclose()
