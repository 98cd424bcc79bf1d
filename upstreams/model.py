"""The one token model every source is normalised into, and the shapes of list requests."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TypeVar, dataclass_transform

from tokengate.upstreams.principal import Reach

_C = TypeVar("_C")


@dataclass_transform(frozen_default=True)
def _record(cls: type[_C]) -> type[_C]:
    """A frozen dataclass to the type checker, a plain slotted one at run time: for the
    records built by the hundred per page (tokens, owners, sort keys, page items).

    A frozen dataclass sets each field in ``__init__`` through ``object.__setattr__``,
    several times the cost of a plain slotted one, and a four-source page builds a few
    hundred tokens on its critical path. mypy (strict, in CI)
    still refuses any assignment to a field; equality and hashing stay those of a frozen
    dataclass.
    """
    return dataclass(slots=True, unsafe_hash=True)(cls)


class Provider(enum.StrEnum):
    INTERNAL = "INTERNAL"
    AMPER = "AMPER"
    OAUTH = "OAUTH"
    LOSANT = "LOSANT"


class Status(enum.StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"


class OwnerKind(enum.StrEnum):
    USER = "USER"
    APPLICATION = "APPLICATION"


class OrderField(enum.StrEnum):
    CREATED_AT = "CREATED_AT"
    LAST_USED_AT = "LAST_USED_AT"
    NAME = "NAME"
    EXPIRES_AT = "EXPIRES_AT"


class FilterField(enum.StrEnum):
    """The filters on a token's use and expiry, named as in ``TokenFilter`` (GraphQL)."""

    EXPIRES_BEFORE = "EXPIRES_BEFORE"
    EXPIRES_AFTER = "EXPIRES_AFTER"
    LAST_USED_BEFORE = "LAST_USED_BEFORE"
    NEVER_USED = "NEVER_USED"


class Direction(enum.StrEnum):
    ASC = "ASC"
    DESC = "DESC"

    def flipped(self) -> Direction:
        return Direction.DESC if self is Direction.ASC else Direction.ASC


@_record
class Owner:
    kind: OwnerKind
    id: str


def utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime; naive values are refused, never guessed."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: every timestamp must carry its offset")
    return value.astimezone(UTC)


@_record
class Token:
    """A token from any source, normalised.

    ``local_id`` is what the source needs to find the token again (for the OAuth-style
    server it carries the user id as well); ``external_id`` is the token's own id there.
    Timestamps are aware UTC datetimes. The secret is never part of this record.
    """

    source: str
    provider: Provider
    local_id: str
    external_id: str
    name: str
    status: Status
    scopes: tuple[str, ...] = ()
    description: str | None = None
    client_name: str | None = None
    device_name: str | None = None
    auth_method: str | None = None
    owner: Owner | None = None
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    updated_at: datetime | None = None
    expires_at: datetime | None = None
    secret_hint: str | None = None
    # Internal tokens only: the sources the token is bound to (None: unbound). Not served;
    # the service compares it with the caller's own binding.
    bound_sources: frozenset[str] | None = None

    def with_status(self, status: Status) -> Token:
        return replace(self, status=status)


def effective_status(
    stored: Status, expires_at: datetime | None, now: datetime, *, expired_flag: bool = False
) -> Status:
    """The one status rule for all sources: REVOKED > EXPIRED > INACTIVE > ACTIVE."""
    if stored is Status.REVOKED:
        return Status.REVOKED
    if expired_flag or (expires_at is not None and expires_at <= now):
        return Status.EXPIRED
    if stored is Status.INACTIVE:
        return Status.INACTIVE
    return Status.ACTIVE


@dataclass(frozen=True, slots=True)
class TokenOrder:
    field: OrderField = OrderField.CREATED_AT
    direction: Direction = Direction.ASC


@dataclass(frozen=True, slots=True)
class TokenFilter:
    """What a caller asked for, already validated. ``None`` means "no constraint".

    ``statuses`` None means every status except REVOKED (revoked internal tokens are kept
    for audit but left out of lists unless asked for).
    """

    sources: frozenset[str] | None = None
    providers: frozenset[Provider] | None = None
    statuses: frozenset[Status] | None = None
    name_glob: str | None = None
    scope: str | None = None
    user_id: str | None = None
    application_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    # Stale and expiring (``upstreams.ordering.matches`` says exactly what each selects).
    expires_before: datetime | None = None
    expires_after: datetime | None = None
    last_used_before: datetime | None = None
    never_used: bool | None = None
    # Set by the gateway from the caller's binding, never from client input: only tokens
    # whose owner is this user (internal tokens: their subject).
    owner_user: str | None = None
    # Set by the gateway for every caller but an unbound admin, never from client input:
    # only internal tokens whose rights this reach covers.
    within: Reach | None = None


SortValue = datetime | str | None


@_record
class SortKey:
    """A token's place in a total order: the sort value, then (source key, local id)."""

    value: SortValue
    source: str
    local_id: str


@dataclass(frozen=True, slots=True)
class PageRequest:
    """One source's share of a page.

    The source returns up to ``limit`` items that come strictly after ``after`` when the
    items are walked in ``walk_order`` (the requested order, reversed when ``backward``),
    in that walk order. ``position`` is the source's own resume hint from the cursor (an
    offset, a page number...), matching ``after``; keyset sources can ignore it.
    """

    filter: TokenFilter
    order: TokenOrder
    limit: int
    after: SortKey | None = None
    position: str | None = None
    backward: bool = False
    # False: the caller will not show ``total_count`` (the export), so a source may skip
    # counting (the store's count is a scan of every match, per page).
    count: bool = True

    @property
    def walk_order(self) -> TokenOrder:
        if not self.backward:
            return self.order
        return TokenOrder(self.order.field, self.order.direction.flipped())


@_record
class SourceItem:
    """A listed token and the source's resume hint for "after this item" (or None)."""

    token: Token
    position: str | None = None


@dataclass(frozen=True, slots=True)
class SourcePage:
    items: Sequence[SourceItem]
    has_more: bool
    # Every match of the filter at the source, regardless of cursor; None if it cannot say.
    total_count: int | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    can_create: bool = False
    can_update: bool = False
    can_revoke: bool = False
    native_sort_fields: frozenset[OrderField] = frozenset()
    can_count: bool = False
    # The OAuth-style server lists one user at a time: without filter.user_id it is skipped.
    needs_user_filter: bool = False
    # Whether the source says when a token was last used / when it expires (a source that
    # says "never", as Amper for expiry, reports it). A filter on what a source does not
    # report skips it (``FILTER_UNSUPPORTED``) rather than reading its null as "never".
    reports_last_used: bool = True
    reports_expiry: bool = True
    # The filters of ``FilterField`` the source applies itself (in SQL) or bounds by its
    # own sort when the list is ordered by that date; the others are the gateway's.
    native_filters: frozenset[FilterField] = frozenset()


@dataclass(frozen=True, slots=True)
class CreateSpec:
    name: str
    description: str | None = None
    scopes: tuple[str, ...] | None = None
    expires_at: datetime | None = None
    application_id: str | None = None
    subject: str | None = None
    allowed_sources: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class UpdateSpec:
    name: str | None = None
    description: str | None = None
    status: Status | None = None

    def is_empty(self) -> bool:
        return self.name is None and self.description is None and self.status is None


@dataclass(frozen=True, slots=True)
class Created:
    token: Token
    secret: str = field(repr=False)
