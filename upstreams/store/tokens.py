"""The internal tokens themselves: keyset-paginated lists, lookups, create, update, revoke."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tokengate.upstreams import errors
from tokengate.upstreams.model import (
    Created,
    CreateSpec,
    PageRequest,
    SourceItem,
    SourcePage,
    Status,
    Token,
    UpdateSpec,
)
from tokengate.upstreams.principal import KNOWN_SCOPES, READ
from tokengate.upstreams.store import credentials, failures, queries, rows
from tokengate.upstreams.store.reads import Reads
from tokengate.upstreams.store.rows import to_us
from tokengate.upstreams.store.tables import token_scopes, token_sources, tokens

MAX_NAME = 255
MAX_DESCRIPTION = 4096
# Active tokens one minting lineage may hold (see ``TokenStore.create``).
DEFAULT_MAX_LINEAGE_TOKENS = 100
_BY_IDS = sa.select(tokens).where(tokens.c.id.in_(sa.bindparam("ids", expanding=True)))


class ChangeListener(Protocol):
    """Told once a token's row was written, so that what was derived from the old row (a
    cached authentication) is dropped in this process at once."""

    def changed(self, token_id: str) -> None: ...

    def revoked(self, token_id: str) -> None: ...


class _NoListener:
    def changed(self, token_id: str) -> None:
        pass

    def revoked(self, token_id: str) -> None:
        pass


class TokenStore:
    """Internal tokens in SQLite or PostgreSQL. Lists seek by (sort column, id), never OFFSET."""

    def __init__(
        self,
        engine: AsyncEngine,
        hasher: credentials.SecretHasher,
        *,
        reads: Reads | None = None,
        max_lineage_tokens: int = DEFAULT_MAX_LINEAGE_TOKENS,
        listener: ChangeListener | None = None,
    ) -> None:
        self._engine = engine
        self._reads = reads if reads is not None else Reads(engine)
        self._hasher = hasher
        self._max_lineage_tokens = max_lineage_tokens
        self._listener = listener or _NoListener()

    # -- listing -------------------------------------------------------------------------

    async def list_page(self, request: PageRequest) -> SourcePage:
        shape = queries.list_shape(request)
        if shape is None:
            return SourcePage(items=[], has_more=False, total_count=0)
        now = rows.now()
        params = queries.list_params(request, to_us(now))
        # A first page reads its rows and their count in one statement (no row: a count
        # of 0); a later page counts apart (the window would count from the seek on).
        with_total = request.count and request.after is None
        page_q = queries.page_statement(shape, with_total)
        count_q = queries.count_statement(shape) if request.count and not with_total else None

        def read(conn: sa.Connection) -> tuple[Sequence[sa.RowMapping], int | None]:
            found = conn.execute(page_q, params).mappings().all()
            if with_total:
                return found, int(found[0][queries.TOTAL_COLUMN]) if found else 0
            if count_q is not None:
                return found, int(conn.execute(count_q, params).scalar_one())
            return found, None

        with failures.reading:
            found, total = await self._reads.run(read)
        items = [SourceItem(rows.token(r, now)) for r in found[: request.limit]]
        return SourcePage(items=items, has_more=len(found) > request.limit, total_count=total)

    # -- lookups -------------------------------------------------------------------------

    async def get_many(self, local_ids: Sequence[str]) -> dict[str, Token]:
        wanted = sorted({i for i in local_ids if rows.valid_local_id(i)})
        if not wanted:
            return {}
        now = rows.now()

        def read(conn: sa.Connection) -> Sequence[sa.RowMapping]:
            return conn.execute(_BY_IDS, {"ids": wanted}).mappings().all()

        with failures.reading:
            found = await self._reads.run(read)
        return {r["id"]: rows.token(r, now) for r in found}

    async def find_by_secret(self, secret: str) -> Token | None:
        """The token whose secret is ``secret``, whatever its status: looked up by its HMAC
        (the store keeps nothing else of it)."""
        digest = self._hasher.digest(secret)
        with failures.reading:
            async with self._engine.connect() as conn:
                row = (
                    (await conn.execute(sa.select(tokens).where(tokens.c.secret_hash == digest)))
                    .mappings()
                    .first()
                )
        if row is None or not self._hasher.verify(secret, row["secret_hash"]):
            return None
        return rows.token(row, rows.now())

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
        now = rows.now()
        if spec.expires_at is not None and spec.expires_at <= now:
            raise errors.InvalidInput("expiresAt must be in the future", argument="expiresAt")
        if spec.subject is not None and not (0 < len(spec.subject) <= 255):
            raise errors.InvalidInput("subject must be 1 to 255 characters", argument="subject")
        if lineage is not None:
            await self._check_lineage_quota(lineage)
        secret = credentials.new_secret()
        token_id = secrets.token_hex(16)
        await self.insert(
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
        now_us = to_us(rows.now())
        active = sa.and_(
            tokens.c.status.in_([Status.ACTIVE.value, Status.INACTIVE.value]),
            sa.or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > now_us),
        )
        query = (
            sa.select(sa.func.count())
            .select_from(tokens)
            .where(sa.or_(tokens.c.lineage == lineage, tokens.c.id == lineage), active)
        )
        with failures.reading:
            async with self._engine.connect() as conn:
                held = int((await conn.execute(query)).scalar_one())
        if held >= self._max_lineage_tokens:
            raise errors.Forbidden(
                f"this caller's tokens and those minted from it already hold "
                f"{self._max_lineage_tokens} live tokens: revoke some first"
            )

    async def insert(
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
        """One new row, its scopes and its sources, in one transaction (values checked)."""
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
        with failures.writing:
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
            values["updated_at"] = to_us(rows.now())
            with failures.writing:
                async with self._engine.begin() as conn:
                    await conn.execute(
                        tokens.update()
                        .where(tokens.c.id == local_id, tokens.c.status != Status.REVOKED.value)
                        .values(**values)
                    )
            self._listener.changed(local_id)
        return await self.get(local_id)

    async def revoke(self, local_id: str) -> None:
        """Mark the token REVOKED (kept for audit). Revoking twice is not an error."""
        if not rows.valid_local_id(local_id):
            raise errors.NotFound("no such token")
        with failures.writing:
            async with self._engine.begin() as conn:
                result = await conn.execute(
                    tokens.update()
                    .where(tokens.c.id == local_id)
                    .values(status=Status.REVOKED.value, updated_at=to_us(rows.now()))
                )
        if result.rowcount == 0:
            raise errors.NotFound("no such token")
        self._listener.revoked(local_id)


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
