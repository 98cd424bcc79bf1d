"""The internal store as one object: the ``TokenSource`` the gateway lists and changes, the
callers' authentication, the bootstrap token and the audit log, each kept in its own module
(``tokens``, ``authentication``, ``bootstrap``, ``audit``) over one engine."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tokengate.upstreams.model import (
    Capabilities,
    Created,
    CreateSpec,
    FilterField,
    OrderField,
    PageRequest,
    Provider,
    SourcePage,
    Token,
    UpdateSpec,
)
from tokengate.upstreams.principal import Principal
from tokengate.upstreams.secret_lookup import (
    SecretFound,
    SecretLookup,
    SecretMatchKind,
    SecretSearch,
)
from tokengate.upstreams.store import bootstrap, credentials, failures
from tokengate.upstreams.store.audit import AuditEvent, AuditLog
from tokengate.upstreams.store.authentication import Authenticator, Refusal
from tokengate.upstreams.store.reads import reads_for
from tokengate.upstreams.store.rows import INTERNAL_KEY, to_us
from tokengate.upstreams.store.tokens import DEFAULT_MAX_LINEAGE_TOKENS, TokenStore

__all__ = ["INTERNAL_KEY", "Announcer", "AuditEvent", "StoreSource", "to_us"]

# Told the id of a token just revoked or changed, once the write is committed, to tell the
# other replicas (their cached authentications of it must go). Must not raise.
Announcer = Callable[[str], Awaitable[None]]


class StoreSource:
    """Internal tokens in SQLite or PostgreSQL, and everything else the gateway keeps there."""

    def __init__(
        self,
        engine: AsyncEngine,
        hasher: credentials.SecretHasher,
        *,
        name: str = "Internal store",
        touch_interval_s: float = 60.0,
        auth_cache_s: float | None = None,
        max_lineage_tokens: int = DEFAULT_MAX_LINEAGE_TOKENS,
    ) -> None:
        self._engine = engine
        self._hasher = hasher
        self._name = name
        self._auth = Authenticator(
            engine, hasher, touch_interval_s=touch_interval_s, cache_s=auth_cache_s
        )
        self._reads = reads_for(engine)
        self._tokens = TokenStore(
            engine,
            hasher,
            reads=self._reads,
            max_lineage_tokens=max_lineage_tokens,
            listener=self._auth,
        )
        self._audit = AuditLog(engine)
        self._announce: Announcer | None = None

    key = INTERNAL_KEY
    provider = Provider.INTERNAL
    secret_lookup = SecretLookup.EXACT

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            can_create=True,
            can_update=True,
            can_revoke=True,
            native_sort_fields=frozenset(OrderField),
            can_count=True,
            native_filters=frozenset(FilterField),
        )

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    # -- the TokenSource -----------------------------------------------------------------

    async def list_page(self, request: PageRequest) -> SourcePage:
        return await self._tokens.list_page(request)

    def owner_in_id(self, local_id: str) -> str | None:
        return None  # the subject is in the row, not the id

    async def get_many(self, local_ids: Sequence[str]) -> dict[str, Token]:
        return await self._tokens.get_many(local_ids)

    async def get(self, local_id: str) -> Token:
        return await self._tokens.get(local_id)

    async def create(
        self, spec: CreateSpec, *, created_by: str | None = None, lineage: str | None = None
    ) -> Created:
        """A new token; see ``TokenStore.create`` for ``lineage``."""
        return await self._tokens.create(spec, created_by=created_by, lineage=lineage)

    async def update(self, local_id: str, spec: UpdateSpec) -> Token:
        token = await self._tokens.update(local_id, spec)
        if self._announce is not None:
            await self._announce(local_id)
        return token

    async def revoke(self, local_id: str) -> None:
        """Mark the token REVOKED (kept for audit). Revoking twice is not an error."""
        await self._tokens.revoke(local_id)
        if self._announce is not None:
            await self._announce(local_id)

    @property
    def reads_engine(self) -> sa.Engine:
        """The engine list and lookup reads go through (a synchronous one over a SQLite
        file: ``reads``), for its events."""
        return self._reads.engine

    async def aclose(self) -> None:
        self._reads.close()
        await self._engine.dispose()

    async def find_secret(self, secret: str, *, max_pages: int) -> SecretSearch:
        """The token with this secret (by its HMAC: one indexed read, no pages)."""
        token = await self._tokens.find_by_secret(secret)
        found = [SecretFound(token, SecretMatchKind.EXACT)] if token is not None else []
        return SecretSearch(found)

    # -- callers -------------------------------------------------------------------------

    async def authenticate(self, secret: str) -> Principal | None:
        """The caller holding ``secret``, or None. Also records (throttled) last use."""
        return await self._auth.authenticate(secret)

    def announce_changes(self, announce: Announcer | None) -> None:
        """Tell ``announce`` every token revoked or changed through this process."""
        self._announce = announce

    def forget(self, token_id: str) -> None:
        """Drop the cached authentication of a token another replica changed."""
        self._auth.changed(token_id)

    def forget_all(self) -> None:
        """Drop every cached authentication (changes may have been missed)."""
        self._auth.clear()

    async def identify(self, secret: str) -> Principal | Refusal:
        """``authenticate``, with the reason when nobody holds ``secret``."""
        return await self._auth.identify(secret)

    async def ensure_bootstrap(self, secret: str) -> str:
        """Make sure an admin token with exactly ``secret`` exists; retire older bootstrap ones."""
        return await bootstrap.ensure_bootstrap(self._engine, self._hasher, self._tokens, secret)

    async def ping(self) -> bool:
        try:
            async with self._engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except failures.STORE_FAILURES:
            return False
        return True

    # -- audit ---------------------------------------------------------------------------

    async def record_audit(
        self,
        *,
        actor_token_id: str | None,
        action: str,
        target_id: str,
        source: str,
        outcome: str,
        detail: str | None = None,
        actor_subject: str | None = None,
    ) -> None:
        await self._audit.record(
            actor_token_id=actor_token_id,
            actor_subject=actor_subject,
            action=action,
            target_id=target_id,
            source=source,
            outcome=outcome,
            detail=detail,
        )

    async def list_audit(self, limit: int, before_id: int | None) -> tuple[list[AuditEvent], bool]:
        """Newest first, ``limit`` events older than ``before_id``: (events, has_more)."""
        return await self._audit.page(limit, before_id)
