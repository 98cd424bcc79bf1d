"""How the store keeps values in its rows: times as integer microseconds, ids as 32 hex
characters, scope and source lists as JSON; and a ``tokens`` row read back as a ``Token``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tokengate.upstreams.model import Owner, OwnerKind, Provider, Status, Token, effective_status
from tokengate.upstreams.store import credentials

INTERNAL_KEY = "internal"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ID_CHARS = frozenset("0123456789abcdef")


def to_us(value: datetime) -> int:
    delta = value.astimezone(UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int | None) -> datetime | None:
    if value is None:
        return None
    return EPOCH + timedelta(microseconds=value)


def now() -> datetime:
    return datetime.now(UTC)


def valid_local_id(local_id: str) -> bool:
    return len(local_id) == 32 and set(local_id) <= _ID_CHARS


def sources(raw: str | None) -> frozenset[str] | None:
    return None if raw is None else frozenset(json.loads(raw))


def token(row: Any, at: datetime) -> Token:
    """The row as the gateway's ``Token``, its status as of ``at``."""
    # Scopes are read from the row's JSON (kept in the caller's order); the token_scopes
    # table exists only for exact scope filtering in SQL.
    expires_at = from_us(row["expires_at"])
    subject = row["subject"]
    return Token(
        source=INTERNAL_KEY,
        provider=Provider.INTERNAL,
        local_id=row["id"],
        external_id=row["id"],
        name=row["name"],
        description=row["description"],
        scopes=tuple(json.loads(row["scopes"])),
        status=effective_status(Status(row["status"]), expires_at, at),
        owner=Owner(OwnerKind.USER, subject) if subject is not None else None,
        created_at=from_us(row["created_at"]),
        updated_at=from_us(row["updated_at"]),
        last_used_at=from_us(row["last_used_at"]),
        expires_at=expires_at,
        secret_hint=credentials.hint(row["secret_hint"]),  # older rows kept 8 characters
        bound_sources=sources(row["allowed_sources"]),
    )
