"""Finding a token by its secret, and telling the gateway's own credentials apart.

Two optional abilities a ``TokenSource`` may have (checked with ``isinstance``):

- ``SecretSearchable.find_secret``: the tokens whose secret is the one given. ``EXACT``
  where the source can compare the whole secret (the store by its HMAC, Losant by the
  ``token`` field of its list answers, compared in constant time, in memory only, never
  kept); ``HINT`` where only a redacted snippet can be compared (Amper: several tokens may
  match). Each search walks at most ``max_pages`` list pages per application or account.
- ``OwnCredentialAware.own_credentials``: which of some tokens are the credential the
  gateway itself uses to reach that source (a bulk revoke skips them).

The secret is an argument, never an attribute: nothing here keeps it past the call.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from tokengate.upstreams.model import Token

# Leaked strings longer than this are no secret any source issues.
MAX_SECRET_LENGTH = 4096
# List pages one search reads per Losant application (at its per_page, default 100).
DEFAULT_MAX_PAGES = 50


class SecretMatchKind(enum.StrEnum):
    EXACT = "EXACT"
    HINT = "HINT"


class SecretLookup(enum.StrEnum):
    """What a source can do with a secret (``sources { capabilities { secretLookup } }``)."""

    EXACT = "EXACT"
    HINT = "HINT"
    NONE = "NONE"


@dataclass(frozen=True, slots=True)
class SecretFound:
    token: Token
    match: SecretMatchKind


@dataclass(frozen=True, slots=True)
class SecretSearch:
    """A source's matches; ``complete`` is False when the page bound stopped the search."""

    found: list[SecretFound] = field(default_factory=list)
    complete: bool = True


@runtime_checkable
class SecretSearchable(Protocol):
    secret_lookup: SecretLookup

    async def find_secret(self, secret: str, *, max_pages: int) -> SecretSearch: ...


@runtime_checkable
class OwnCredentialAware(Protocol):
    async def own_credentials(self, tokens: Sequence[Token]) -> set[str]:
        """The local ids among ``tokens`` that are the gateway's own credential here."""
        ...


def same_secret(given: str, held: object) -> bool:
    """Whether ``held`` (an upstream's field) is exactly ``given``, in constant time."""
    if not isinstance(held, str):
        return False
    return hmac.compare_digest(given.encode("utf-8"), held.encode("utf-8"))


def lookup_kind(source: object) -> SecretLookup:
    if isinstance(source, SecretSearchable):
        return source.secret_lookup
    return SecretLookup.NONE


__all__ = [
    "DEFAULT_MAX_PAGES",
    "MAX_SECRET_LENGTH",
    "OwnCredentialAware",
    "SecretFound",
    "SecretLookup",
    "SecretMatchKind",
    "SecretSearch",
    "SecretSearchable",
    "lookup_kind",
    "same_secret",
]
