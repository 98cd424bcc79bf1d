"""What replicas share: rate-limit buckets (Redis, with ``[limits] storage_url``) and the
revocation bus (PostgreSQL ``NOTIFY``, else Redis pub/sub); both absent on a lone SQLite
gateway without ``storage_url``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from sqlalchemy.engine import make_url

from tokengate.gateway.config import Config
from tokengate.gateway.ratelimit import RateLimiter, TokenBuckets
from tokengate.gateway.revocation import ChangeBus, PgChangeBus, RedisChangeBus
from tokengate.gateway.shared_limits import RedisBuckets, redis_client
from tokengate.upstreams.store import StoreSource


class Replicas:
    def __init__(self, limiter: RateLimiter, bus: ChangeBus | None) -> None:
        self.limiter = limiter
        self.bus = bus
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def start(
        cls,
        config: Config,
        store: StoreSource,
        on_local_decision: Callable[[], None] | None = None,
    ) -> Replicas:
        """The limiter and, when there is one, the bus (listening in the background and
        told of every change ``store`` makes). ``on_local_decision``: called for each
        rate-limit decision made without Redis while it is unreachable."""
        limits = config.limits
        limiter: RateLimiter
        if limits.storage_url:
            client = redis_client(limits.storage_url)
            limiter = RedisBuckets(
                client, limits.rate_per_s, limits.burst, on_local_decision=on_local_decision
            )
        else:
            limiter = TokenBuckets(limits.rate_per_s, limits.burst)
        bus: PgChangeBus | RedisChangeBus | None = None
        if make_url(config.store.url).get_backend_name() == "postgresql":
            bus = PgChangeBus(config.store.url, store.engine, store.forget, store.forget_all)
        elif limits.storage_url:
            bus = RedisChangeBus(limits.storage_url, store.forget, store.forget_all)
        replicas = cls(limiter, bus)
        if bus is not None:
            store.announce_changes(bus.publish)
            replicas._task = asyncio.create_task(bus.run(), name="tokengate-revocations")
        return replicas

    def status(self) -> dict[str, str]:
        """For /readyz: whether the bus is listening and the limits are shared right now
        (keys present only when configured)."""
        status = {}
        if self.bus is not None:
            status["revocations"] = "listening" if self.bus.listening else "reconnecting"
        if isinstance(self.limiter, RedisBuckets):
            status["rate_limits"] = "shared" if self.limiter.shared else "per_replica"
        return status

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if isinstance(self.bus, RedisChangeBus):
            await self.bus.aclose()
        if isinstance(self.limiter, RedisBuckets):
            await self.limiter.aclose()
