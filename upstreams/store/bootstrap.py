"""The token named by ``TOKENGATE_BOOTSTRAP_TOKEN``: exactly one, admin, with that secret.

Runs at every start (in every replica, possibly at once): an earlier bootstrap token with
another secret is revoked, a row with this secret is reset to a plain admin token, and a
replica that loses the race to insert it leaves the winner's row in place.
"""

from __future__ import annotations

import json
import secrets

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tokengate.upstreams import errors
from tokengate.upstreams.model import Status
from tokengate.upstreams.store import credentials, failures, rows
from tokengate.upstreams.store.rows import to_us
from tokengate.upstreams.store.tables import token_scopes, token_sources, tokens
from tokengate.upstreams.store.tokens import TokenStore

MIN_BOOTSTRAP_LENGTH = 16
ADMIN_SCOPE = "tokens:admin"


async def ensure_bootstrap(
    engine: AsyncEngine, hasher: credentials.SecretHasher, token_store: TokenStore, secret: str
) -> str:
    """Make sure an admin token with exactly ``secret`` exists; retire older bootstrap ones."""
    if len(secret) < MIN_BOOTSTRAP_LENGTH:
        raise ValueError(
            f"TOKENGATE_BOOTSTRAP_TOKEN must be at least {MIN_BOOTSTRAP_LENGTH} characters"
        )
    digest = hasher.digest(secret)
    now = rows.now()
    with failures.writing:
        async with engine.begin() as conn:
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
                        scopes=json.dumps([ADMIN_SCOPE]),
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
                    token_scopes.insert().values(token_id=existing[0], scope=ADMIN_SCOPE)
                )
                return str(existing[0])
    token_id = secrets.token_hex(16)
    try:
        await token_store.insert(
            token_id=token_id,
            name="bootstrap",
            description="Created from TOKENGATE_BOOTSTRAP_TOKEN at start-up.",
            scopes=(ADMIN_SCOPE,),
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
