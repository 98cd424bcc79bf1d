"""Bulk seeding of the store with deliberate ties and nulls on every sort field."""

from __future__ import annotations

import json
import random
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tokengate.upstreams.store import StoreSource
from tokengate.upstreams.store.source import to_us
from tokengate.upstreams.store.tables import token_scopes, tokens

BASE = datetime(2025, 1, 1, tzinfo=UTC)
NAMES = [
    "alpha",
    "Alpha",
    "ALPHA",
    "beta",
    "Beta-2",
    "ci-deploy",
    "CI-deploy",
    "gamma",
    "Zeta",
    "zeta",
]


@dataclass(frozen=True)
class Seeded:
    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    subject: str | None
    scopes: tuple[str, ...]


async def seed(store: StoreSource, count: int, *, seed: int = 7) -> list[Seeded]:
    """``count`` tokens: few distinct values per field (ties), a third null where nullable."""
    rng = random.Random(seed)
    rows, scope_rows, out = [], [], []
    for i in range(count):
        token_id = secrets.token_hex(16)
        name = rng.choice(NAMES)
        created = BASE + timedelta(hours=rng.randrange(25))
        last_used = None if i % 3 == 0 else BASE + timedelta(days=rng.randrange(15))
        expires = (
            None
            if i % 3 == 1
            else datetime(2099, 1, 1, tzinfo=UTC) + timedelta(days=rng.randrange(10))
        )
        subject = rng.choice([None, "user-a", "user-b"])
        scopes = tuple(rng.sample(["tokens:read", "tokens:write"], k=rng.randint(1, 2)))
        rows.append(
            {
                "id": token_id,
                "name": name,
                "name_key": name.casefold(),
                "description": None,
                "scopes": json.dumps(list(scopes)),
                "subject": subject,
                "allowed_sources": None,
                "status": "ACTIVE",
                "created_at": to_us(created),
                "updated_at": to_us(created),
                "last_used_at": None if last_used is None else to_us(last_used),
                "expires_at": None if expires is None else to_us(expires),
                "secret_hash": secrets.token_hex(32),
                "secret_hint": "tg_seed0",
                "is_bootstrap": False,
                "created_by": None,
            }
        )
        scope_rows.extend({"token_id": token_id, "scope": s} for s in scopes)
        out.append(Seeded(token_id, name, created, last_used, expires, subject, scopes))
    async with store.engine.begin() as conn:
        await conn.execute(tokens.insert(), rows)
        await conn.execute(token_scopes.insert(), scope_rows)
    return out
