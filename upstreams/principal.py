"""Who is calling, and the one rule for comparing the rights of two internal tokens.

A caller (``Principal``) and every internal token carry the same three kinds of rights:
scopes, a ``subject`` binding (one user's tokens) and a source binding. ``Reach.covers`` says
when one set of rights is no wider than another; the service uses it for every decision
about internal tokens (see the README's authorization table).
"""

from __future__ import annotations

from dataclasses import dataclass

READ = "tokens:read"
WRITE = "tokens:write"
ADMIN = "tokens:admin"
KNOWN_SCOPES = frozenset({READ, WRITE, ADMIN})


def effective_scopes(scopes: frozenset[str] | tuple[str, ...]) -> frozenset[str]:
    """``tokens:admin`` implies read and write; unknown scopes grant nothing."""
    known = frozenset(scopes) & KNOWN_SCOPES
    return known | {READ, WRITE} if ADMIN in known else known


@dataclass(frozen=True, slots=True)
class Reach:
    """The rights of an internal token: effective scopes, subject and source bindings
    (None: unbound)."""

    scopes: frozenset[str]
    subject: str | None = None
    sources: frozenset[str] | None = None

    def covers(self, other: Reach) -> bool:
        """Whether ``other`` is no wider than this: no scope it lacks, the same user when
        this one is bound to a user, and only sources it may use when it is bound to some."""
        if not other.scopes <= self.scopes:
            return False
        if self.subject is not None and other.subject != self.subject:
            return False
        if self.sources is not None:
            return other.sources is not None and other.sources <= self.sources
        return True


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``subject`` binds it to one user's tokens and
    ``allowed_sources`` (None: all) to some sources, whatever its scopes: ``tokens:admin``
    implies read and write, and only an unbound admin acts beyond every binding.
    ``rate_key`` names the bucket its requests count against (see ``lineage`` in the
    store): the token itself, or the token whose minting it descends from.

    A caller signed in at the identity provider (a JWT, gateway/jwt_auth.py) has no
    ``token_id``; ``jwt_subject`` is its user, whatever its binding (an admin's subject is
    unbound), so that audit records who acted."""

    token_id: str
    scopes: frozenset[str]
    subject: str | None = None
    allowed_sources: frozenset[str] | None = None
    rate_key: str = ""
    jwt_subject: str | None = None

    @property
    def is_admin(self) -> bool:
        """Holds ``tokens:admin`` (bound or not)."""
        return ADMIN in self.scopes

    @property
    def is_unbound_admin(self) -> bool:
        """``tokens:admin`` with no binding: sees and acts on every token of every owner."""
        return self.is_admin and self.subject is None and self.allowed_sources is None

    def has(self, scope: str) -> bool:
        return self.is_admin or scope in self.scopes

    def may_use_source(self, key: str) -> bool:
        return self.allowed_sources is None or key in self.allowed_sources

    @property
    def reach(self) -> Reach:
        return Reach(effective_scopes(self.scopes), self.subject, self.allowed_sources)

    @property
    def bucket(self) -> str:
        return self.rate_key or self.token_id
