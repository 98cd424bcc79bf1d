"""The gateway's total order over tokens and its own filter matching.

Every source, and the merge, orders by the same key: the sort value (names compared
case-folded; nulls after every value in ASC, hence first in DESC, as PostgreSQL does), then
the source key, then the local id. Sources that cannot sort or filter natively use these
functions so that their pages agree exactly with the merge.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache

from tokengate.upstreams.model import (
    Direction,
    OrderField,
    SortKey,
    SortValue,
    Status,
    Token,
    TokenFilter,
    TokenOrder,
)

MAX_GLOB_LENGTH = 100
DEFAULT_STATUSES = frozenset({Status.ACTIVE, Status.INACTIVE, Status.EXPIRED})


def sort_value(token: Token, field: OrderField) -> SortValue:
    if field is OrderField.CREATED_AT:
        return token.created_at
    if field is OrderField.LAST_USED_AT:
        return token.last_used_at
    if field is OrderField.EXPIRES_AT:
        return token.expires_at
    return token.name.casefold()


def sort_key(token: Token, field: OrderField) -> SortKey:
    return SortKey(sort_value(token, field), token.source, token.local_id)


def _ascending_tuple(key: SortKey) -> tuple[int, SortValue, str, str]:
    # Null sorts after every value in ascending order.
    if key.value is None:
        return (1, "", key.source, key.local_id)
    return (0, key.value, key.source, key.local_id)


def comes_before(a: SortKey, b: SortKey, direction: Direction) -> bool:
    """True when ``a`` precedes ``b`` in ``direction``."""
    ta, tb = _ascending_tuple(a), _ascending_tuple(b)
    return ta < tb if direction is Direction.ASC else ta > tb


def order_tuple(token: Token, field: OrderField) -> tuple[int, SortValue, str, str]:
    """``token``'s place in the ascending total order, as a tuple that compares with
    ``<``: ``_ascending_tuple(sort_key(token, field))`` without building the SortKey."""
    value = sort_value(token, field)
    if value is None:
        return (1, "", token.source, token.local_id)
    return (0, value, token.source, token.local_id)


def order_tokens(tokens: Iterable[Token], order: TokenOrder) -> list[Token]:
    """Tokens sorted in ``order`` by the gateway's total order."""
    field = order.field
    return sorted(
        tokens,
        key=lambda t: order_tuple(t, field),
        reverse=order.direction is Direction.DESC,
    )


def after_key(tokens: Iterable[Token], order: TokenOrder, after: SortKey | None) -> list[Token]:
    """The tokens that come strictly after ``after`` in ``order`` (all of them when None)."""
    if after is None:
        return list(tokens)
    return [t for t in tokens if comes_before(after, sort_key(t, order.field), order.direction)]


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*")
        elif ch == "?":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts), re.DOTALL)


def glob_matches(pattern: str, name: str) -> bool:
    """Case-insensitive glob where ``*`` is any run of characters and ``?`` one character.

    Both sides are case-folded first (as the store's SQL LIKE on its folded name column
    does), so every source agrees on what matches.
    """
    return _glob_regex(pattern.casefold()).fullmatch(name.casefold()) is not None


def matches(token: Token, flt: TokenFilter) -> bool:
    """Whether ``token`` satisfies every constraint of ``flt`` that concerns a token's fields.

    Source selection (``sources``, ``providers``) and ``user_id`` (which picks the user the
    OAuth-style server lists) are the router's and adapters' business, not this function's.
    """
    statuses = flt.statuses if flt.statuses is not None else DEFAULT_STATUSES
    if token.status not in statuses:
        return False
    if flt.name_glob is not None and not glob_matches(flt.name_glob, token.name):
        return False
    if flt.scope is not None and flt.scope not in token.scopes:
        return False
    if flt.application_id is not None and (
        token.owner is None
        or token.owner.kind != "APPLICATION"
        or token.owner.id != flt.application_id
    ):
        return False
    if flt.owner_user is not None and (
        token.owner is None or token.owner.kind != "USER" or token.owner.id != flt.owner_user
    ):
        return False
    if not _created_within(token.created_at, flt.created_after, flt.created_before):
        return False
    if (
        flt.expires_before is None
        and flt.expires_after is None
        and flt.last_used_before is None
        and flt.never_used is None
    ):
        return True
    return _stale_or_expiring(token, flt)


def _stale_or_expiring(token: Token, flt: TokenFilter) -> bool:
    """The use and expiry filters, one meaning for every source and the store's SQL:

    - ``expires_before``/``expires_after``: an expiry strictly before/after the instant; a
      token without an expiry never matches either.
    - ``never_used``: True, no recorded use; False, a recorded use.
    - ``last_used_before`` ("not used since"): a last use strictly before the instant, or
      no use at all and a creation strictly before it (a token made since was not idle
      that long). With ``never_used`` False only the first half remains.

    Sources that do not report a date are never asked (the service skips them).
    """
    expires = token.expires_at
    if flt.expires_before is not None and (expires is None or not expires < flt.expires_before):
        return False
    if flt.expires_after is not None and (expires is None or not expires > flt.expires_after):
        return False
    used = token.last_used_at
    if flt.never_used is not None and (used is None) is not flt.never_used:
        return False
    bound = flt.last_used_before
    if bound is None:
        return True
    if used is not None:
        return used < bound
    return token.created_at is not None and token.created_at < bound


def _created_within(
    created: datetime | None, after: datetime | None, before: datetime | None
) -> bool:
    if after is None and before is None:
        return True
    if created is None:
        return False
    if after is not None and not created > after:
        return False
    return before is None or created < before


def local_page(
    tokens: Iterable[Token], flt: TokenFilter, order: TokenOrder, after: SortKey | None, limit: int
) -> tuple[list[Token], bool, int]:
    """Filter, order, seek and slice an in-memory list: (page, has_more, total matches)."""
    matching = [t for t in tokens if matches(t, flt)]
    ordered = order_tokens(matching, order)
    rest = after_key(ordered, order, after)
    return rest[:limit], len(rest) > limit, len(matching)
