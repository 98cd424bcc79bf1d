"""Revocations reach every replica at once: a change bus between the replicas' auth caches.

A replica that revokes or changes an internal token announces its id; every replica (itself
included) drops its cached authentication of that token on the message, so the token stops
working everywhere within the message's delay instead of the 2 s cache lifetime.

- PostgreSQL store: ``NOTIFY`` on a channel; each replica keeps one asyncpg connection
  ``LISTEN``ing (its own, outside the store's pool).
- SQLite store with ``[limits] storage_url``: Redis pub/sub.

A listener that loses its connection reconnects with a growing pause and, once listening
again, clears its whole auth cache: messages sent meanwhile were lost. While it is cut off,
the cache's 2 s lifetime still bounds the delay. A failed announcement is logged and the
change stands (it is committed); other replicas then see it within the cache lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

import asyncpg  # type: ignore[import-untyped]
import redis.asyncio as aioredis
import sqlalchemy as sa
from redis.exceptions import RedisError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from tokengate.gateway.shared_limits import redis_client
from tokengate.upstreams.store.rows import valid_local_id

log = logging.getLogger("tokengate.revocation")

CHANNEL = "tokengate_auth_changes"
# An announcement gives up after this (the change itself is already committed).
PUBLISH_TIMEOUT_S = 1.0
CONNECT_TIMEOUT_S = 5.0
# How often an idle listener checks that its connection is still alive.
LIVENESS_INTERVAL_S = 2.0
RECONNECT_PAUSES_S = (0.1, 0.5, 1.0, 2.0, 5.0)


class ChangeBus(Protocol):
    listening: bool

    async def publish(self, token_id: str) -> None:
        """Announce a changed token to every replica; logs instead of raising."""
        ...

    async def run(self) -> None:
        """Listen until cancelled, reconnecting as needed."""
        ...


class _Listener:
    """What both buses share: the callbacks, the reconnect loop and its log lines."""

    kind = ""

    def __init__(self, on_change: Callable[[str], None], on_reset: Callable[[], None]) -> None:
        self._on_change = on_change
        self._on_reset = on_reset
        self.listening = False
        self._failures = 0
        # Messages that evicted a token (for tests and metrics).
        self.received = 0

    def _deliver(self, payload: str | bytes) -> None:
        token_id = payload.decode("ascii", "replace") if isinstance(payload, bytes) else payload
        if valid_local_id(token_id):
            self.received += 1
            self._on_change(token_id)

    def _connected(self) -> None:
        self._on_reset()
        self.listening = True
        self._failures = 0
        log.info("revocations: listening on %s", self.kind)

    async def run(self) -> None:
        while True:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any driver error: reconnect, never die
                if self.listening or self._failures == 0:
                    log.warning(
                        "revocations: %s listener down (%s); reconnecting, other replicas' "
                        "revocations take up to the auth cache lifetime meanwhile",
                        self.kind,
                        type(exc).__name__,
                    )
                self._failures += 1
            finally:
                self.listening = False
            pause = RECONNECT_PAUSES_S[min(self._failures, len(RECONNECT_PAUSES_S)) - 1]
            await asyncio.sleep(pause)

    async def _listen_once(self) -> None:
        raise NotImplementedError


def asyncpg_dsn(store_url: str) -> str:
    """The store's SQLAlchemy URL as asyncpg takes it."""
    url = make_url(store_url).set(drivername="postgresql")
    return str(url.render_as_string(hide_password=False))


class PgChangeBus(_Listener):
    """``NOTIFY``/``LISTEN`` on the PostgreSQL store itself."""

    kind = "PostgreSQL"

    def __init__(
        self,
        store_url: str,
        engine: AsyncEngine,
        on_change: Callable[[str], None],
        on_reset: Callable[[], None],
    ) -> None:
        super().__init__(on_change, on_reset)
        self._dsn = asyncpg_dsn(store_url)
        self._engine = engine

    async def publish(self, token_id: str) -> None:
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S), self._engine.begin() as conn:
                await conn.execute(sa.select(sa.func.pg_notify(CHANNEL, token_id)))
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.warning("revocations: could not notify other replicas (%s)", type(exc).__name__)

    async def _listen_once(self) -> None:
        conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_S)
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(CHANNEL, self._on_notify)
            self._connected()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), LIVENESS_INTERVAL_S)
                if not lost.is_set():
                    await conn.execute("SELECT 1", timeout=CONNECT_TIMEOUT_S)
            raise ConnectionError("the listening connection closed")
        finally:
            conn.terminate()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._deliver(payload)


class RedisChangeBus(_Listener):
    """Redis pub/sub (a SQLite store has no notifications of its own)."""

    kind = "Redis"

    def __init__(
        self, redis_url: str, on_change: Callable[[str], None], on_reset: Callable[[], None]
    ) -> None:
        super().__init__(on_change, on_reset)
        self._url = redis_url
        # Fails fast (no retries, short timeouts): a revocation's answer must not wait on
        # an unreachable Redis.
        self._publisher = redis_client(redis_url)

    async def publish(self, token_id: str) -> None:
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                await self._publisher.publish(CHANNEL, token_id)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("revocations: could not notify other replicas (%s)", type(exc).__name__)

    async def _listen_once(self) -> None:
        # Pings the idle connection every LIVENESS_INTERVAL_S, so a silent loss shows up.
        client = aioredis.Redis.from_url(
            self._url,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            health_check_interval=int(LIVENESS_INTERVAL_S),
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(CHANNEL)
            self._connected()
            while True:
                message = await pubsub.get_message(timeout=LIVENESS_INTERVAL_S)
                if message is not None and message.get("type") == "message":
                    self._deliver(message["data"])
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    async def aclose(self) -> None:
        await self._publisher.aclose()
