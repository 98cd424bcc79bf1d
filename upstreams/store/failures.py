"""Every way the database under the store can fail, raised as the gateway's coded error.

A store call wraps its database work in ``with reading:`` or ``with writing:``; whatever the
driver or the network raises there (SQLAlchemy's errors, and what asyncpg and the OS raise
around them on connect, such as a refused connection) leaves the block as
``UpstreamUnavailable`` for the source ``internal`` (``UpstreamTimeout`` for a time limit that
ran out), with the original kept as ``__cause__`` for the server log.
"""

from __future__ import annotations

import sqlite3
from types import TracebackType

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.exc import SQLAlchemyError

from tokengate.upstreams import errors
from tokengate.upstreams.store.rows import INTERNAL_KEY

STORE_FAILURES: tuple[type[Exception], ...] = (
    SQLAlchemyError,
    OSError,  # includes ConnectionRefusedError and TimeoutError
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    sqlite3.Error,
)


class _Translate:
    __slots__ = ("_message",)

    def __init__(self, message: str) -> None:
        self._message = message

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, TimeoutError):
            raise errors.UpstreamTimeout(
                INTERNAL_KEY, "the internal store did not answer in time"
            ) from exc
        if isinstance(exc, STORE_FAILURES):
            raise errors.UpstreamUnavailable(INTERNAL_KEY, self._message) from exc


reading = _Translate("the internal store is unreachable")
writing = _Translate("the internal store refused the write")
