"""Callers' secrets -> ``Principal``: a short per-process cache in front of the store, and
the token's last use recorded at most once per interval."""

from __future__ import annotations

import enum
import json
import time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tokengate.upstreams.model import Status, effective_status
from tokengate.upstreams.principal import Principal
from tokengate.upstreams.store import credentials, failures, rows
from tokengate.upstreams.store.rows import from_us, to_us
from tokengate.upstreams.store.tables import tokens

MAX_SECRET_LENGTH = 512
# How long an authentication is reused in one process. A token revoked or switched off
# through this process stops working at once; through another replica, within this time.
AUTH_CACHE_S = 2.0
AUTH_CACHE_ENTRIES = 10_000


class Refusal(enum.StrEnum):
    """Why a secret authenticates nobody (for the operator's metrics, never the caller)."""

    MALFORMED = "malformed"  # empty or longer than any secret
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    INACTIVE = "inactive"


class Authenticator:
    def __init__(
        self,
        engine: AsyncEngine,
        hasher: credentials.SecretHasher,
        *,
        touch_interval_s: float = 60.0,
        cache_s: float | None = None,
    ) -> None:
        self._engine = engine
        self._hasher = hasher
        self._touch_interval_s = touch_interval_s
        self._last_touch: dict[str, float] = {}
        # digest -> (monotonic expiry, caller): skips a store round trip before every request.
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._cache_s = AUTH_CACHE_S if cache_s is None else cache_s

    async def authenticate(self, secret: str) -> Principal | None:
        """The caller holding ``secret``, or None. Also records (throttled) last use.

        A store it cannot read raises (``UpstreamUnavailable``): an outage must not look
        like a bad credential."""
        found = await self.identify(secret)
        return found if isinstance(found, Principal) else None

    async def identify(self, secret: str) -> Principal | Refusal:
        """``authenticate``, with the reason when nobody holds ``secret``."""
        if not secret or len(secret) > MAX_SECRET_LENGTH:
            return Refusal.MALFORMED
        digest = self._hasher.digest(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            await self._touch(cached[1].token_id)
            return cached[1]
        with failures.reading:
            async with self._engine.connect() as conn:
                row = (
                    (await conn.execute(sa.select(tokens).where(tokens.c.secret_hash == digest)))
                    .mappings()
                    .first()
                )
        if row is None or not self._hasher.verify(secret, row["secret_hash"]):
            return Refusal.UNKNOWN
        expires_at = from_us(row["expires_at"])
        status = effective_status(Status(row["status"]), expires_at, rows.now())
        if status is not Status.ACTIVE:
            return Refusal(status.lower())
        await self._touch(row["id"])
        principal = Principal(
            token_id=row["id"],
            scopes=frozenset(json.loads(row["scopes"])),
            subject=row["subject"],
            allowed_sources=rows.sources(row["allowed_sources"]),
            rate_key=row["lineage"] or row["id"],
        )
        ttl = self._cache_s
        if expires_at is not None:
            ttl = min(ttl, (expires_at - rows.now()).total_seconds())
        if ttl > 0:
            if len(self._cache) >= AUTH_CACHE_ENTRIES:
                self._cache.clear()
            self._cache[digest] = (now + ttl, principal)
        return principal

    def changed(self, token_id: str) -> None:
        """Drop a changed token's cached authentication in this process at once."""
        stale = [d for d, (_, p) in self._cache.items() if p.token_id == token_id]
        for digest in stale:
            del self._cache[digest]

    def clear(self) -> None:
        self._cache.clear()

    def revoked(self, token_id: str) -> None:
        self._last_touch.pop(token_id, None)
        self.changed(token_id)

    async def _touch(self, token_id: str) -> None:
        now = time.monotonic()
        last = self._last_touch.get(token_id)
        if last is not None and now - last < self._touch_interval_s:
            return
        self._last_touch[token_id] = now
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    tokens.update()
                    .where(tokens.c.id == token_id)
                    .values(last_used_at=to_us(rows.now()))
                )
        except failures.STORE_FAILURES:
            # Last-use tracking must never fail a request.
            self._last_touch.pop(token_id, None)
