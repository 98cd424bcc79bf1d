"""How the store runs its hot reads: one synchronous function on a connection.

On a SQLite file, a read runs whole on a synchronous engine in a worker thread: one
thread hop per read, where aiosqlite takes one per cursor step (execute, fetch, close,
the pool's reset) and SQLAlchemy's async layer a greenlet switch around each. Elsewhere
(PostgreSQL, an in-memory SQLite) the same function runs on the async engine through
``run_sync``. Writes stay on the async engine either way; SQLite's WAL lets the two
engines' connections read and write the one file side by side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tokengate.upstreams.store.engine import sqlite_pragmas

T = TypeVar("T")
Read = Callable[[sa.Connection], T]


class Reads:
    """Runs reads on the async engine (PostgreSQL, in-memory SQLite)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @property
    def engine(self) -> sa.Engine:
        """The synchronous engine the reads' statements go through (for its events)."""
        return self._engine.sync_engine

    async def run(self, read: Read[T]) -> T:
        async with self._engine.connect() as conn:
            return await conn.run_sync(read)

    def close(self) -> None:
        pass


class ThreadedSQLiteReads(Reads):
    """Runs reads on a synchronous engine over the same SQLite file, in worker threads."""

    def __init__(self, engine: AsyncEngine, url: sa.URL, pool_size: int) -> None:
        super().__init__(engine)
        self._sync = sa.create_engine(
            url.set(drivername="sqlite+pysqlite"),
            pool_size=pool_size,
            max_overflow=0,
            connect_args={"check_same_thread": False},
        )
        event.listen(self._sync, "connect", sqlite_pragmas)
        # As many threads as pooled connections: a thread never waits for a connection.
        self._threads = ThreadPoolExecutor(pool_size, thread_name_prefix="tokengate-store")

    @property
    def engine(self) -> sa.Engine:
        return self._sync

    async def run(self, read: Read[T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._run, read)

    def _run(self, read: Read[T]) -> T:
        with self._sync.connect() as conn:
            return read(conn)

    def close(self) -> None:
        self._threads.shutdown(wait=False)
        self._sync.dispose()


def reads_for(engine: AsyncEngine) -> Reads:
    url = engine.url
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return Reads(engine)
    size = getattr(engine.pool, "size", None)
    return ThreadedSQLiteReads(engine, url, size() if callable(size) else 5)
