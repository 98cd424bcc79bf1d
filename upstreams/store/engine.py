"""Store URLs -> async engines: SQLite (WAL, busy timeout) by default, PostgreSQL at scale."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Connections a process keeps open (as many again are opened for a burst, then closed).
# SQLite's are cheap (a file handle and aiosqlite's thread) and opening one per request
# under load costs more than the query: the pool covers a busy process's concurrency.
# PostgreSQL's are server processes, shared by every worker and replica.
DEFAULT_SQLITE_POOL_SIZE = 20
DEFAULT_POSTGRES_POOL_SIZE = 10


def async_url(url: str) -> sa.URL:
    """``sqlite:///f.db`` and ``postgresql://...`` -> their async-driver URLs."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(
        f"unsupported store URL scheme {parsed.drivername!r}: use sqlite or postgresql"
    )


def default_pool_size(url: str) -> int:
    if make_url(url).get_backend_name() == "sqlite":
        return DEFAULT_SQLITE_POOL_SIZE
    return DEFAULT_POSTGRES_POOL_SIZE


def create_engine(url: str, pool_size: int | None = None) -> AsyncEngine:
    """An engine keeping ``pool_size`` connections (default: ``default_pool_size``) and
    opening as many again for a burst."""
    target = async_url(url)
    size = default_pool_size(url) if pool_size is None else pool_size
    if target.get_backend_name() == "sqlite":
        engine = create_async_engine(target, pool_size=size, max_overflow=size, pool_pre_ping=False)
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        return engine
    return create_async_engine(target, pool_size=size, max_overflow=size, pool_pre_ping=True)


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()
