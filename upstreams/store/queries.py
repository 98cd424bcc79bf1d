"""A list request's filter, order and seek position as SQL over the ``tokens`` table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from tokengate.upstreams import errors
from tokengate.upstreams.model import OrderField, SortKey, Status, TokenFilter
from tokengate.upstreams.ordering import DEFAULT_STATUSES
from tokengate.upstreams.principal import ADMIN, Reach
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


def filter_clause(flt: TokenFilter, now_us: int) -> sa.ColumnElement[bool] | None:
    """The filter as SQL, or None when nothing can match (e.g. an application owner)."""
    if flt.application_id is not None:
        return None
    clauses: list[sa.ColumnElement[bool]] = [status_clause(flt.statuses, now_us)]
    if flt.owner_user is not None:
        clauses.append(tokens.c.subject == flt.owner_user)
    if flt.within is not None:
        clauses.append(within_clause(flt.within))
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
    clauses.extend(use_and_expiry_clauses(flt))
    return sa.and_(*clauses)


def use_and_expiry_clauses(flt: TokenFilter) -> list[sa.ColumnElement[bool]]:
    """``ordering.matches``' use and expiry filters in SQL (the same meaning, on the
    indexed ``expires_at`` and ``last_used_at``)."""
    clauses: list[sa.ColumnElement[bool]] = []
    if flt.expires_before is not None:
        clauses.append(tokens.c.expires_at < to_us(flt.expires_before))
    if flt.expires_after is not None:
        clauses.append(tokens.c.expires_at > to_us(flt.expires_after))
    if flt.never_used is True:
        clauses.append(tokens.c.last_used_at.is_(None))
    elif flt.never_used is False:
        clauses.append(tokens.c.last_used_at.is_not(None))
    if flt.last_used_before is not None:
        bound = to_us(flt.last_used_before)
        used = tokens.c.last_used_at < bound
        if flt.never_used is False:
            clauses.append(used)
        else:
            unused = sa.and_(tokens.c.last_used_at.is_(None), tokens.c.created_at < bound)
            clauses.append(sa.or_(used, unused))
    return clauses


def within_clause(reach: Reach) -> sa.ColumnElement[bool]:
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


def status_clause(statuses: frozenset[Status] | None, now_us: int) -> sa.ColumnElement[bool]:
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


def seek_clause(
    column: sa.Column[Any], after: SortKey, field: OrderField, ascending: bool
) -> sa.ColumnElement[bool]:
    """Rows strictly after ``after`` in the walk (nulls last when ascending).

    ``after`` may belong to another source (the merge seeks every source from one
    boundary): among equal values, the tie-break compares (source key, id).
    """
    value = _sql_value(after.value, field)
    if after.source != INTERNAL_KEY:
        tie: sa.ColumnElement[bool] = (
            sa.true() if (after.source < INTERNAL_KEY) == ascending else sa.false()
        )
    else:
        tie = tokens.c.id > after.local_id if ascending else tokens.c.id < after.local_id
    if value is not None and field in NOT_NULL_FIELDS:
        # The same rows as below (the column has no null), written as a range an index
        # can start from: the or-clause alone makes the database scan from the first row.
        if ascending:
            return sa.and_(column >= value, sa.or_(column > value, sa.and_(column == value, tie)))
        return sa.and_(column <= value, sa.or_(column < value, sa.and_(column == value, tie)))
    if ascending:
        if value is None:
            return sa.and_(column.is_(None), tie)
        return sa.or_(column > value, column.is_(None), sa.and_(column == value, tie))
    if value is None:
        return sa.or_(column.is_not(None), sa.and_(column.is_(None), tie))
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
