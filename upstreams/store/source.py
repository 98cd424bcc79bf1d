"""The gateway's own token store: a keyset-paginated ``TokenSource`` and the callers' credentials."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from tokengate.upstreams import errors
from tokengate.upstreams.model import (
    Capabilities,
    Created,
    CreateSpec,
    Direction,
    OrderField,
    Owner,
    OwnerKind,
    PageRequest,
    Provider,
    SortKey,
    SourceItem,
    SourcePage,
    Status,
    Token,
    TokenFilter,
    UpdateSpec,
    effective_status,
)
from tokengate.upstreams.ordering import DEFAULT_STATUSES
from tokengate.upstreams.principal import ADMIN, KNOWN_SCOPES, READ, Principal, Reach
from tokengate.upstreams.store import credentials
from tokengate.upstreams.store.tables import audit_events, token_scopes, token_sources, tokens

INTERNAL_KEY = "internal"
MAX_NAME = 255
MAX_DESCRIPTION = 4096
MIN_BOOTSTRAP_LENGTH = 16
# How long an authentication is reused in one process. A token revoked or switched off
# through this process stops working at once; through another replica, within this time.
AUTH_CACHE_S = 2.0
AUTH_CACHE_ENTRIES = 10_000
# Active tokens one minting lineage may hold (see ``StoreSource.create``).
DEFAULT_MAX_LINEAGE_TOKENS = 100
_ID_CHARS = frozenset("0123456789abcdef")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(value: datetime) -> int:
    delta = value.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int | None) -> datetime | None:
    if value is None:
        return None
    return _EPOCH + timedelta(microseconds=value)


def _now() -> datetime:
    return datetime.now(UTC)


def valid_local_id(local_id: str) -> bool:
    return len(local_id) == 32 and set(local_id) <= _ID_CHARS


_SORT_COLUMNS = {
    OrderField.CREATED_AT: tokens.c.created_at,
    OrderField.LAST_USED_AT: tokens.c.last_used_at,
    OrderField.NAME: tokens.c.name_key,
    OrderField.EXPIRES_AT: tokens.c.expires_at,
}


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def glob_to_like(pattern: str) -> str:
    """A case-folded glob (``*``, ``?``) as a LIKE pattern with ``\\`` as the escape."""
    out = []
    for ch in pattern.casefold():
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(_escape_like(ch))
    return "".join(out)


class StoreSource:
    """Internal tokens in SQLite or PostgreSQL. Lists seek by (sort column, id), never OFFSET."""

    def __init__(
        self,
        engine: AsyncEngine,
        hasher: credentials.SecretHasher,
        *,
        name: str = "Internal store",
        touch_interval_s: float = 60.0,
        auth_cache_s: float = AUTH_CACHE_S,
        max_lineage_tokens: int = DEFAULT_MAX_LINEAGE_TOKENS,
    ) -> None:
        self._engine = engine
        self._max_lineage_tokens = max_lineage_tokens
        self._hasher = hasher
        self._name = name
        self._touch_interval_s = touch_interval_s
        self._last_touch: dict[str, float] = {}
        # digest -> (monotonic expiry, caller): skips a store round trip before every request.
        self._auth_cache: dict[str, tuple[float, Principal]] = {}
        self._auth_cache_s = auth_cache_s

    key = INTERNAL_KEY
    provider = Provider.INTERNAL

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
        )

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    # -- listing -------------------------------------------------------------------------

    async def list_page(self, request: PageRequest) -> SourcePage:
        now = _now()
        where = self._filter_clause(request.filter, to_us(now))
        if where is None:
            return SourcePage(items=[], has_more=False, total_count=0)
        walk = request.walk_order
        column = _SORT_COLUMNS[walk.field]
        ascending = walk.direction is Direction.ASC
        page_where = where
        if request.after is not None:
            page_where = sa.and_(
                where, self._seek_clause(column, request.after, walk.field, ascending)
            )
        null_last = column.is_(None)
        order_by = (
            [null_last.asc(), column.asc(), tokens.c.id.asc()]
            if ascending
            else [null_last.desc(), column.desc(), tokens.c.id.desc()]
        )
        page_q = sa.select(tokens).where(page_where).order_by(*order_by).limit(request.limit + 1)
        count_q = sa.select(sa.func.count()).select_from(tokens).where(where)
        try:
            async with self._engine.connect() as conn:
                rows = (await conn.execute(page_q)).mappings().all()
                total = int((await conn.execute(count_q)).scalar_one())
        except SQLAlchemyError as exc:
            raise errors.UpstreamUnavailable(self.key, "the internal store is unreachable") from exc
        items = [SourceItem(self._token(r, now)) for r in rows[: request.limit]]
        return SourcePage(items=items, has_more=len(rows) > request.limit, total_count=total)

    def _filter_clause(self, flt: TokenFilter, now_us: int) -> sa.ColumnElement[bool] | None:
        """The filter as SQL, or None when nothing can match (e.g. an application owner)."""
        if flt.application_id is not None:
            return None
        clauses: list[sa.ColumnElement[bool]] = [self._status_clause(flt.statuses, now_us)]
        if flt.owner_user is not None:
            clauses.append(tokens.c.subject == flt.owner_user)
        if flt.within is not None:
            clauses.append(self._within_clause(flt.within))
        if flt.name_glob is not None:
            clauses.append(tokens.c.name_key.like(glob_to_like(flt.name_glob), escape="\\"))
        if flt.scope is not None:
            clauses.append(
                sa.exists().where(
                    token_scopes.c.token_id == tokens.c.id, token_scopes.c.scope == flt.scope
                )
            )
        if flt.created_after is not None:
            clauses.append(tokens.c.created_at > to_us(flt.created_after))
        if flt.created_before is not None:
            clauses.append(tokens.c.created_at < to_us(flt.created_before))
        return sa.and_(*clauses)

    @staticmethod
    def _within_clause(reach: Reach) -> sa.ColumnElement[bool]:
        """Tokens whose rights ``reach`` covers (``Reach.covers``, in SQL)."""
        clauses: list[sa.ColumnElement[bool]] = [sa.true()]
        if ADMIN not in reach.scopes:
            clauses.append(
                ~sa.exists().where(
                    token_scopes.c.token_id == tokens.c.id,
                    token_scopes.c.scope.not_in(sorted(reach.scopes)),
                )
            )
        if reach.subject is not None:
            clauses.append(tokens.c.subject == reach.subject)
        if reach.sources is not None:
            clauses.append(tokens.c.allowed_sources.is_not(None))
            clauses.append(
                ~sa.exists().where(
                    token_sources.c.token_id == tokens.c.id,
                    token_sources.c.source.not_in(sorted(reach.sources)),
                )
            )
        return sa.and_(*clauses)

    @staticmethod
    def _status_clause(statuses: frozenset[Status] | None, now_us: int) -> sa.ColumnElement[bool]:
        wanted = statuses if statuses is not None else DEFAULT_STATUSES
        not_expired = sa.or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > now_us)
        parts: list[sa.ColumnElement[bool]] = []
        if Status.ACTIVE in wanted:
            parts.append(sa.and_(tokens.c.status == Status.ACTIVE.value, not_expired))
        if Status.INACTIVE in wanted:
            parts.append(sa.and_(tokens.c.status == Status.INACTIVE.value, not_expired))
        if Status.EXPIRED in wanted:
            parts.append(
                sa.and_(
                    tokens.c.status.in_([Status.ACTIVE.value, Status.INACTIVE.value]),
                    tokens.c.expires_at <= now_us,
                )
            )
        if Status.REVOKED in wanted:
            parts.append(tokens.c.status == Status.REVOKED.value)
        return sa.or_(*parts) if parts else sa.false()

    def _seek_clause(
        self, column: sa.Column[Any], after: SortKey, field: OrderField, ascending: bool
    ) -> sa.ColumnElement[bool]:
        """Rows strictly after ``after`` in the walk (nulls last when ascending).

        ``after`` may belong to another source (the merge seeks every source from one
        boundary): among equal values, the tie-break compares (source key, id).
        """
        value = self._sql_value(after.value, field)
        if self.key != after.source:
            tie: sa.ColumnElement[bool] = (
                sa.true() if (self.key > after.source) == ascending else sa.false()
            )
        else:
            tie = tokens.c.id > after.local_id if ascending else tokens.c.id < after.local_id
        if ascending:
            if value is None:
                return sa.and_(column.is_(None), tie)
            return sa.or_(column > value, column.is_(None), sa.and_(column == value, tie))
        if value is None:
            return sa.or_(column.is_not(None), sa.and_(column.is_(None), tie))
        return sa.or_(column < value, sa.and_(column == value, tie))

    @staticmethod
    def _sql_value(value: object, field: OrderField) -> int | str | None:
        if value is None:
            return None
        if field is OrderField.NAME:
            if not isinstance(value, str):
                raise errors.InvalidCursor("the cursor does not match the order")
            return value
        if not isinstance(value, datetime):
            raise errors.InvalidCursor("the cursor does not match the order")
        return to_us(value)

    def _token(self, row: Any, now: datetime) -> Token:
        # Scopes are read from the row's JSON (kept in the caller's order); the token_scopes
        # table exists only for exact scope filtering in SQL.
        expires_at = from_us(row["expires_at"])
        subject = row["subject"]
        return Token(
            source=self.key,
            provider=Provider.INTERNAL,
            local_id=row["id"],
            external_id=row["id"],
            name=row["name"],
            description=row["description"],
            scopes=tuple(json.loads(row["scopes"])),
            status=effective_status(Status(row["status"]), expires_at, now),
            owner=Owner(OwnerKind.USER, subject) if subject is not None else None,
            created_at=from_us(row["created_at"]),
            updated_at=from_us(row["updated_at"]),
            last_used_at=from_us(row["last_used_at"]),
            expires_at=expires_at,
            secret_hint=credentials.hint(row["secret_hint"]),  # older rows kept 8 characters
            bound_sources=_sources(row["allowed_sources"]),
        )

    # -- lookups -------------------------------------------------------------------------

    def owner_in_id(self, local_id: str) -> str | None:
        return None  # the subject is in the row, not the id

    async def get_many(self, local_ids: Sequence[str]) -> dict[str, Token]:
        wanted = sorted({i for i in local_ids if valid_local_id(i)})
        if not wanted:
            return {}
        now = _now()
        try:
            async with self._engine.connect() as conn:
                rows = (
                    (await conn.execute(sa.select(tokens).where(tokens.c.id.in_(wanted))))
                    .mappings()
                    .all()
                )
        except SQLAlchemyError as exc:
            raise errors.UpstreamUnavailable(self.key, "the internal store is unreachable") from exc
        return {r["id"]: self._token(r, now) for r in rows}

    async def get(self, local_id: str) -> Token:
        found = await self.get_many([local_id])
        if local_id not in found:
            raise errors.NotFound("no such token")
        return found[local_id]

    # -- writes --------------------------------------------------------------------------

    async def create(
        self, spec: CreateSpec, *, created_by: str | None = None, lineage: str | None = None
    ) -> Created:
        """A new token. ``lineage`` (None: the new token is its own) is the token whose rate
        bucket it shares; a lineage holds at most ``max_lineage_tokens`` active tokens, so a
        caller cannot escape its rate limit, or fill the store, by minting."""
        name = _valid_name(spec.name)
        description = _valid_description(spec.description)
        scopes = tuple(dict.fromkeys(spec.scopes)) if spec.scopes is not None else (READ,)
        unknown = [s for s in scopes if s not in KNOWN_SCOPES]
        if unknown:
            raise errors.InvalidInput(
                f"unknown scope {unknown[0]!r}; internal tokens take {sorted(KNOWN_SCOPES)}",
                argument="scopes",
            )
        if not scopes:
            raise errors.InvalidInput(
                "an internal token needs at least one scope", argument="scopes"
            )
        if spec.application_id is not None:
            raise errors.InvalidInput(
                "applicationId applies to Losant tokens, not internal ones",
                argument="applicationId",
            )
        now = _now()
        if spec.expires_at is not None and spec.expires_at <= now:
            raise errors.InvalidInput("expiresAt must be in the future", argument="expiresAt")
        if spec.subject is not None and not (0 < len(spec.subject) <= 255):
            raise errors.InvalidInput("subject must be 1 to 255 characters", argument="subject")
        if lineage is not None:
            await self._check_lineage_quota(lineage)
        secret = credentials.new_secret()
        token_id = secrets.token_hex(16)
        await self._insert(
            token_id=token_id,
            name=name,
            description=description,
            scopes=scopes,
            subject=spec.subject,
            allowed_sources=spec.allowed_sources,
            expires_at=spec.expires_at,
            secret=secret,
            now=now,
            created_by=created_by,
            lineage=lineage,
        )
        return Created(token=await self.get(token_id), secret=secret)

    async def _check_lineage_quota(self, lineage: str) -> None:
        now_us = to_us(_now())
        active = sa.and_(
            tokens.c.status.in_([Status.ACTIVE.value, Status.INACTIVE.value]),
            sa.or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > now_us),
        )
        query = (
            sa.select(sa.func.count())
            .select_from(tokens)
            .where(sa.or_(tokens.c.lineage == lineage, tokens.c.id == lineage), active)
        )
        try:
            async with self._engine.connect() as conn:
                held = int((await conn.execute(query)).scalar_one())
        except SQLAlchemyError as exc:
            raise errors.UpstreamUnavailable(self.key, "the internal store is unreachable") from exc
        if held >= self._max_lineage_tokens:
            raise errors.Forbidden(
                f"this caller's tokens and those minted from it already hold "
                f"{self._max_lineage_tokens} live tokens: revoke some first"
            )

    async def _insert(
        self,
        *,
        token_id: str,
        name: str,
        description: str | None,
        scopes: Sequence[str],
        subject: str | None,
        allowed_sources: frozenset[str] | None,
        expires_at: datetime | None,
        secret: str,
        now: datetime,
        created_by: str | None,
        is_bootstrap: bool = False,
        lineage: str | None = None,
    ) -> None:
        now_us = to_us(now)
        values = {
            "id": token_id,
            "name": name,
            "name_key": name.casefold()[:MAX_NAME],
            "description": description,
            "scopes": json.dumps(list(scopes)),
            "subject": subject,
            "allowed_sources": None
            if allowed_sources is None
            else json.dumps(sorted(allowed_sources)),
            "status": Status.ACTIVE.value,
            "created_at": now_us,
            "updated_at": now_us,
            "last_used_at": None,
            "expires_at": None if expires_at is None else to_us(expires_at),
            "secret_hash": self._hasher.digest(secret),
            "secret_hint": credentials.hint(secret),
            "is_bootstrap": is_bootstrap,
            "created_by": created_by,
            "lineage": lineage,
        }
        try:
            async with self._engine.begin() as conn:
                await conn.execute(tokens.insert().values(**values))
                if scopes:
                    await conn.execute(
                        token_scopes.insert(), [{"token_id": token_id, "scope": s} for s in scopes]
                    )
                if allowed_sources:
                    await conn.execute(
                        token_sources.insert(),
                        [{"token_id": token_id, "source": k} for k in sorted(allowed_sources)],
                    )
        except SQLAlchemyError as exc:
            raise errors.UpstreamUnavailable(
                self.key, "the internal store refused the write"
            ) from exc

    async def update(self, local_id: str, spec: UpdateSpec) -> Token:
        current = await self.get(local_id)
        if current.status is Status.REVOKED:
            raise errors.InvalidInput("a revoked token cannot be changed", argument="id")
        values: dict[str, Any] = {}
        if spec.name is not None:
            values["name"] = _valid_name(spec.name)
            values["name_key"] = values["name"].casefold()[:MAX_NAME]
        if spec.description is not None:
            values["description"] = _valid_description(spec.description)
        if spec.status is not None:
            if spec.status not in (Status.ACTIVE, Status.INACTIVE):
                raise errors.InvalidInput(
                    "status may be set to ACTIVE or INACTIVE; use revokeToken to revoke",
                    argument="status",
                )
            values["status"] = spec.status.value
        if values:
            values["updated_at"] = to_us(_now())
            async with self._engine.begin() as conn:
                await conn.execute(
                    tokens.update()
                    .where(tokens.c.id == local_id, tokens.c.status != Status.REVOKED.value)
                    .values(**values)
                )
            self._forget(local_id)
        return await self.get(local_id)

    async def revoke(self, local_id: str) -> None:
        """Mark the token REVOKED (kept for audit). Revoking twice is not an error."""
        if not valid_local_id(local_id):
            raise errors.NotFound("no such token")
        async with self._engine.begin() as conn:
            result = await conn.execute(
                tokens.update()
                .where(tokens.c.id == local_id)
                .values(status=Status.REVOKED.value, updated_at=to_us(_now()))
            )
        if result.rowcount == 0:
            raise errors.NotFound("no such token")
        self._last_touch.pop(local_id, None)
        self._forget(local_id)

    async def aclose(self) -> None:
        await self._engine.dispose()

    # -- callers -------------------------------------------------------------------------

    async def authenticate(self, secret: str) -> Principal | None:
        """The caller holding ``secret``, or None. Also records (throttled) last use."""
        if not secret or len(secret) > 512:
            return None
        digest = self._hasher.digest(secret)
        now = time.monotonic()
        cached = self._auth_cache.get(digest)
        if cached is not None and cached[0] > now:
            await self._touch(cached[1].token_id)
            return cached[1]
        async with self._engine.connect() as conn:
            row = (
                (await conn.execute(sa.select(tokens).where(tokens.c.secret_hash == digest)))
                .mappings()
                .first()
            )
        if row is None or not self._hasher.verify(secret, row["secret_hash"]):
            return None
        expires_at = from_us(row["expires_at"])
        status = effective_status(Status(row["status"]), expires_at, _now())
        if status is not Status.ACTIVE:
            return None
        await self._touch(row["id"])
        principal = Principal(
            token_id=row["id"],
            scopes=frozenset(json.loads(row["scopes"])),
            subject=row["subject"],
            allowed_sources=_sources(row["allowed_sources"]),
            rate_key=row["lineage"] or row["id"],
        )
        ttl = self._auth_cache_s
        if expires_at is not None:
            ttl = min(ttl, (expires_at - _now()).total_seconds())
        if ttl > 0:
            if len(self._auth_cache) >= AUTH_CACHE_ENTRIES:
                self._auth_cache.clear()
            self._auth_cache[digest] = (now + ttl, principal)
        return principal

    def _forget(self, token_id: str) -> None:
        """Drop a changed token's cached authentication in this process at once."""
        stale = [d for d, (_, p) in self._auth_cache.items() if p.token_id == token_id]
        for digest in stale:
            del self._auth_cache[digest]

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
                    .values(last_used_at=to_us(_now()))
                )
        except SQLAlchemyError:
            # Last-use tracking must never fail a request.
            self._last_touch.pop(token_id, None)

    async def ensure_bootstrap(self, secret: str) -> str:
        """Make sure an admin token with exactly ``secret`` exists; retire older bootstrap ones."""
        if len(secret) < MIN_BOOTSTRAP_LENGTH:
            raise ValueError(
                f"TOKENGATE_BOOTSTRAP_TOKEN must be at least {MIN_BOOTSTRAP_LENGTH} characters"
            )
        digest = self._hasher.digest(secret)
        now = _now()
        async with self._engine.begin() as conn:
            await conn.execute(
                tokens.update()
                .where(tokens.c.is_bootstrap.is_(True), tokens.c.secret_hash != digest)
                .values(status=Status.REVOKED.value, updated_at=to_us(now))
            )
            existing = (
                await conn.execute(sa.select(tokens.c.id).where(tokens.c.secret_hash == digest))
            ).first()
            if existing is not None:
                await conn.execute(
                    tokens.update()
                    .where(tokens.c.id == existing[0])
                    .values(
                        status=Status.ACTIVE.value,
                        scopes=json.dumps(["tokens:admin"]),
                        subject=None,
                        allowed_sources=None,
                        expires_at=None,
                        is_bootstrap=True,
                        lineage=None,
                    )
                )
                await conn.execute(
                    token_sources.delete().where(token_sources.c.token_id == existing[0])
                )
                await conn.execute(
                    token_scopes.delete().where(token_scopes.c.token_id == existing[0])
                )
                await conn.execute(
                    token_scopes.insert().values(token_id=existing[0], scope="tokens:admin")
                )
                return str(existing[0])
        token_id = secrets.token_hex(16)
        try:
            await self._insert(
                token_id=token_id,
                name="bootstrap",
                description="Created from TOKENGATE_BOOTSTRAP_TOKEN at start-up.",
                scopes=("tokens:admin",),
                subject=None,
                allowed_sources=None,
                expires_at=None,
                secret=secret,
                now=now,
                created_by=None,
                is_bootstrap=True,
            )
        except errors.UpstreamUnavailable as exc:
            # Another replica inserted the same bootstrap token first.
            if not isinstance(exc.__cause__, IntegrityError):
                raise
        return token_id

    async def ping(self) -> bool:
        try:
            async with self._engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except (SQLAlchemyError, OSError):
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
    ) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                audit_events.insert().values(
                    at=to_us(_now()),
                    actor_token_id=actor_token_id,
                    action=action,
                    target_id=target_id,
                    source=source,
                    outcome=outcome,
                    detail=detail,
                )
            )

    async def list_audit(self, limit: int, before_id: int | None) -> tuple[list[AuditEvent], bool]:
        """Newest first, ``limit`` events older than ``before_id``: (events, has_more)."""
        query = sa.select(audit_events).order_by(audit_events.c.id.desc()).limit(limit + 1)
        if before_id is not None:
            query = query.where(audit_events.c.id < before_id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        events = [
            AuditEvent(
                id=r["id"],
                at=from_us(r["at"]) or _EPOCH,
                actor_token_id=r["actor_token_id"],
                action=r["action"],
                target_id=r["target_id"],
                source=r["source"],
                outcome=r["outcome"],
            )
            for r in rows[:limit]
        ]
        return events, len(rows) > limit


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    at: datetime
    actor_token_id: str | None
    action: str
    target_id: str
    source: str
    outcome: str


def _sources(raw: str | None) -> frozenset[str] | None:
    return None if raw is None else frozenset(json.loads(raw))


def _valid_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > MAX_NAME:
        raise errors.InvalidInput(f"name must be 1 to {MAX_NAME} characters", argument="name")
    if any(ord(c) < 32 for c in cleaned):
        raise errors.InvalidInput("name must not contain control characters", argument="name")
    return cleaned


def _valid_description(description: str | None) -> str | None:
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise errors.InvalidInput(
            f"description must be at most {MAX_DESCRIPTION} characters", argument="description"
        )
    return description
