"""A list request's filter, order and seek position as SQL over the ``tokens`` table.

Building a SQLAlchemy statement costs far more than running it (hundreds of microseconds
for the status clause alone), so a statement is built once per *shape*: which filters are
set, which statuses are wanted, the order and the kind of seek, never a value. The values
travel as bound parameters (``list_params``); requests of one shape share one statement,
and with it SQLAlchemy's compiled form.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

from tokengate.upstreams import errors
from tokengate.upstreams.model import Direction, OrderField, PageRequest, Status
from tokengate.upstreams.ordering import DEFAULT_STATUSES
from tokengate.upstreams.principal import ADMIN
from tokengate.upstreams.store.rows import INTERNAL_KEY, to_us
from tokengate.upstreams.store.tables import token_scopes, token_sources, tokens

# Sort fields whose column is never null: their seek is a range on the (column, id) index.
NOT_NULL_FIELDS = frozenset({OrderField.CREATED_AT, OrderField.NAME})
SORT_COLUMNS = {
    OrderField.CREATED_AT: tokens.c.created_at,
    OrderField.LAST_USED_AT: tokens.c.last_used_at,
    OrderField.NAME: tokens.c.name_key,
    OrderField.EXPIRES_AT: tokens.c.expires_at,
}
# A first page's count, read beside its rows (``count(*) OVER ()``).
TOTAL_COLUMN = "total_matching"
# Distinct shapes kept built; one more is built again when needed (a hostile caller cycling
# filters costs what every request cost before the cache, no memory).
SHAPES_KEPT = 256

_B = sa.bindparam


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


@dataclass(frozen=True, slots=True)
class WithinShape:
    """Which parts of a caller's reach constrain the list (``within_clause``)."""

    scopes: bool  # not an admin: no scope beyond the reach's
    subject: bool
    sources: bool


@dataclass(frozen=True, slots=True)
class SeekShape:
    """Where a page after a cursor starts: the cursor's value null or not, and how rows
    equal to it are tie-broken: ``"after"`` (every one comes after it), ``"before"`` (none
    does: the cursor's source sorts after the store's) or ``"id"`` (by id: the cursor is
    the store's own)."""

    null: bool
    tie: str


@dataclass(frozen=True, slots=True)
class ListShape:
    """Everything of a list request that decides its SQL text, and nothing else."""

    statuses: frozenset[Status]
    owner: bool
    within: WithinShape | None
    name_glob: bool
    scope: bool
    created_after: bool
    created_before: bool
    expires_before: bool
    expires_after: bool
    never_used: bool | None
    last_used_before: bool
    field: OrderField
    ascending: bool
    seek: SeekShape | None


def list_shape(request: PageRequest) -> ListShape | None:
    """The request's shape, or None when nothing can match (e.g. an application owner)."""
    flt = request.filter
    if flt.application_id is not None:
        return None
    walk = request.walk_order
    ascending = walk.direction is Direction.ASC
    seek = None
    if request.after is not None:
        after = request.after
        if after.source == INTERNAL_KEY:
            tie = "id"
        else:
            tie = "after" if (after.source < INTERNAL_KEY) == ascending else "before"
        seek = SeekShape(null=after.value is None, tie=tie)
    within = None
    if flt.within is not None:
        within = WithinShape(
            scopes=ADMIN not in flt.within.scopes,
            subject=flt.within.subject is not None,
            sources=flt.within.sources is not None,
        )
    return ListShape(
        statuses=flt.statuses if flt.statuses is not None else DEFAULT_STATUSES,
        owner=flt.owner_user is not None,
        within=within,
        name_glob=flt.name_glob is not None,
        scope=flt.scope is not None,
        created_after=flt.created_after is not None,
        created_before=flt.created_before is not None,
        expires_before=flt.expires_before is not None,
        expires_after=flt.expires_after is not None,
        never_used=flt.never_used,
        last_used_before=flt.last_used_before is not None,
        field=walk.field,
        ascending=ascending,
        seek=seek,
    )


def list_params(request: PageRequest, now_us: int) -> dict[str, Any]:
    """The values of the bound parameters of ``request``'s statements."""
    flt = request.filter
    params: dict[str, Any] = {"now_us": now_us, "limit": request.limit + 1}
    if flt.owner_user is not None:
        params["owner_user"] = flt.owner_user
    if flt.within is not None:
        params["reach_scopes"] = sorted(flt.within.scopes)
        if flt.within.subject is not None:
            params["reach_subject"] = flt.within.subject
        if flt.within.sources is not None:
            params["reach_sources"] = sorted(flt.within.sources)
    if flt.name_glob is not None:
        params["name_like"] = glob_to_like(flt.name_glob)
    if flt.scope is not None:
        params["scope"] = flt.scope
    for name in (
        "created_after",
        "created_before",
        "expires_before",
        "expires_after",
        "last_used_before",
    ):
        value = getattr(flt, name)
        if value is not None:
            params[name] = to_us(value)
    if request.after is not None:
        value = _sql_value(request.after.value, request.walk_order.field)
        if value is not None:
            params["after_value"] = value
        if request.after.source == INTERNAL_KEY:
            params["after_id"] = request.after.local_id
    return params


@lru_cache(maxsize=SHAPES_KEPT)
def page_statement(shape: ListShape, with_total: bool) -> sa.Select[Any]:
    """The page's rows (``limit`` + 1 of them), after the seek if any; ``with_total`` adds
    every match's count beside each row (a first page only: the window counts before the
    seek would)."""
    where = filter_clause(shape)
    if shape.seek is not None:
        where = sa.and_(where, seek_clause(shape))
    column = SORT_COLUMNS[shape.field]
    if shape.field in NOT_NULL_FIELDS:
        # No null to place: the order is the (column, id) index's, and a page reads from
        # the cursor on in it instead of sorting every match.
        order_by = (
            [column.asc(), tokens.c.id.asc()]
            if shape.ascending
            else [column.desc(), tokens.c.id.desc()]
        )
    else:
        null_last = column.is_(None)
        order_by = (
            [null_last.asc(), column.asc(), tokens.c.id.asc()]
            if shape.ascending
            else [null_last.desc(), column.desc(), tokens.c.id.desc()]
        )
    columns: list[Any] = [tokens]
    if with_total:
        columns.append(sa.func.count().over().label(TOTAL_COLUMN))
    return sa.select(*columns).where(where).order_by(*order_by).limit(_B("limit"))


def count_statement(shape: ListShape) -> sa.Select[Any]:
    """Every match's count, whatever the seek and order."""
    return _count_statement(replace(shape, seek=None, field=OrderField.CREATED_AT, ascending=True))


@lru_cache(maxsize=SHAPES_KEPT)
def _count_statement(shape: ListShape) -> sa.Select[Any]:
    return sa.select(sa.func.count()).select_from(tokens).where(filter_clause(shape))


def filter_clause(shape: ListShape) -> sa.ColumnElement[bool]:
    clauses: list[sa.ColumnElement[bool]] = [status_clause(shape.statuses)]
    if shape.owner:
        clauses.append(tokens.c.subject == _B("owner_user"))
    if shape.within is not None:
        clauses.append(within_clause(shape.within))
    if shape.name_glob:
        clauses.append(tokens.c.name_key.like(_B("name_like"), escape="\\"))
    if shape.scope:
        clauses.append(
            sa.exists().where(
                token_scopes.c.token_id == tokens.c.id, token_scopes.c.scope == _B("scope")
            )
        )
    if shape.created_after:
        clauses.append(tokens.c.created_at > _B("created_after"))
    if shape.created_before:
        clauses.append(tokens.c.created_at < _B("created_before"))
    clauses.extend(use_and_expiry_clauses(shape))
    return sa.and_(*clauses)


def use_and_expiry_clauses(shape: ListShape) -> list[sa.ColumnElement[bool]]:
    """``ordering.matches``' use and expiry filters in SQL (the same meaning, on the
    indexed ``expires_at`` and ``last_used_at``)."""
    clauses: list[sa.ColumnElement[bool]] = []
    if shape.expires_before:
        clauses.append(tokens.c.expires_at < _B("expires_before"))
    if shape.expires_after:
        clauses.append(tokens.c.expires_at > _B("expires_after"))
    if shape.never_used is True:
        clauses.append(tokens.c.last_used_at.is_(None))
    elif shape.never_used is False:
        clauses.append(tokens.c.last_used_at.is_not(None))
    if shape.last_used_before:
        used = tokens.c.last_used_at < _B("last_used_before")
        if shape.never_used is False:
            clauses.append(used)
        else:
            unused = sa.and_(
                tokens.c.last_used_at.is_(None), tokens.c.created_at < _B("last_used_before")
            )
            clauses.append(sa.or_(used, unused))
    return clauses


def within_clause(within: WithinShape) -> sa.ColumnElement[bool]:
    """Tokens whose rights the caller's reach covers (``Reach.covers``, in SQL)."""
    clauses: list[sa.ColumnElement[bool]] = [sa.true()]
    if within.scopes:
        clauses.append(
            ~sa.exists().where(
                token_scopes.c.token_id == tokens.c.id,
                token_scopes.c.scope.not_in(_B("reach_scopes", expanding=True)),
            )
        )
    if within.subject:
        clauses.append(tokens.c.subject == _B("reach_subject"))
    if within.sources:
        clauses.append(tokens.c.allowed_sources.is_not(None))
        clauses.append(
            ~sa.exists().where(
                token_sources.c.token_id == tokens.c.id,
                token_sources.c.source.not_in(_B("reach_sources", expanding=True)),
            )
        )
    return sa.and_(*clauses)


def status_clause(statuses: frozenset[Status]) -> sa.ColumnElement[bool]:
    now_us: sa.BindParameter[int] = _B("now_us")
    not_expired = sa.or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > now_us)
    parts: list[sa.ColumnElement[bool]] = []
    if Status.ACTIVE in statuses:
        parts.append(sa.and_(tokens.c.status == Status.ACTIVE.value, not_expired))
    if Status.INACTIVE in statuses:
        parts.append(sa.and_(tokens.c.status == Status.INACTIVE.value, not_expired))
    if Status.EXPIRED in statuses:
        parts.append(
            sa.and_(
                tokens.c.status.in_([Status.ACTIVE.value, Status.INACTIVE.value]),
                tokens.c.expires_at <= now_us,
            )
        )
    if Status.REVOKED in statuses:
        parts.append(tokens.c.status == Status.REVOKED.value)
    return sa.or_(*parts) if parts else sa.false()


def seek_clause(shape: ListShape) -> sa.ColumnElement[bool]:
    """Rows strictly after the cursor in the walk (nulls last when ascending).

    The cursor may belong to another source (the merge seeks every source from one
    boundary): among equal values, the tie-break compares (source key, id).
    """
    assert shape.seek is not None
    column = SORT_COLUMNS[shape.field]
    ascending = shape.ascending
    tie: sa.ColumnElement[bool]
    if shape.seek.tie == "after":
        tie = sa.true()
    elif shape.seek.tie == "before":
        tie = sa.false()
    else:
        after_id: sa.BindParameter[str] = _B("after_id")
        tie = tokens.c.id > after_id if ascending else tokens.c.id < after_id
    if shape.seek.null:
        if ascending:
            return sa.and_(column.is_(None), tie)
        return sa.or_(column.is_not(None), sa.and_(column.is_(None), tie))
    value: sa.BindParameter[Any] = _B("after_value")
    if shape.field in NOT_NULL_FIELDS:
        # The same rows as below (the column has no null), written as a range an index
        # can start from: the or-clause alone makes the database scan from the first row.
        if ascending:
            return sa.and_(column >= value, sa.or_(column > value, sa.and_(column == value, tie)))
        return sa.and_(column <= value, sa.or_(column < value, sa.and_(column == value, tie)))
    if ascending:
        return sa.or_(column > value, column.is_(None), sa.and_(column == value, tie))
    return sa.or_(column < value, sa.and_(column == value, tie))


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
