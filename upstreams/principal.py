"""Who is calling: what an authenticated internal token may see and do."""

from __future__ import annotations

from dataclasses import dataclass

READ = "tokens:read"
WRITE = "tokens:write"
ADMIN = "tokens:admin"
KNOWN_SCOPES = frozenset({READ, WRITE, ADMIN})


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``subject`` binds it to one user's tokens; ``allowed_sources``
    (None: all) to some sources. ``tokens:admin`` implies read and write on every owner."""

    token_id: str
    scopes: frozenset[str]
    subject: str | None = None
    allowed_sources: frozenset[str] | None = None

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    def has(self, scope: str) -> bool:
        return self.is_admin or scope in self.scopes

    def may_use_source(self, key: str) -> bool:
        return self.allowed_sources is None or key in self.allowed_sources

    @property
    def owner_user(self) -> str | None:
        """The user this caller is confined to, or None when it sees every owner."""
        return None if self.is_admin else self.subject
