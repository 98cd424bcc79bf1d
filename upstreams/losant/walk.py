"""A walk page over Losant's own sort: each application walked by ``upstreams.paged_walk``
(its list pages as rows), the applications merged, and the position hint
``"<app index>:<offset>,..."`` read and made (see ``upstreams.losant.client``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from tokengate.upstreams import errors, ordering
from tokengate.upstreams.losant.pages import AppRows, ListCall, LosantApi
from tokengate.upstreams.model import (
    OrderField,
    PageRequest,
    SortKey,
    SourceItem,
    SourcePage,
    Token,
    TokenFilter,
    TokenOrder,
)
from tokengate.upstreams.paged_walk import GroupValue, OrderBroken, PagedWalk

# The deepest resume offset accepted: a million tokens in one application, far past any
# application a walk pages through (each call reads at most MAX_TOKENS_READ past its hint),
# so that no hint asks Losant for a page that cannot exist.
MAX_HINT_OFFSET = 1_000_000
SORT_FIELDS = {
    OrderField.CREATED_AT: "creationDate",
    OrderField.EXPIRES_AT: "expirationDate",
    OrderField.LAST_USED_AT: "id",
}
T = TypeVar("T")


@dataclass
class _AppResult:
    items: list[Token]
    total: int | None
    offset_for: Callable[[Token], int | None] = lambda _token: None


async def walk_page(
    api: LosantApi,
    call: ListCall,
    apps: Sequence[tuple[int, str]],
    flt: TokenFilter,
    request: PageRequest,
    hints: dict[int, int],
    exact_count: bool,
) -> SourcePage:
    """One page over ``apps`` (each with its index among the configured applications)."""
    order = request.walk_order
    need = request.limit + 1
    results = await gather(
        [
            _walk_app(api, call, app, flt, order, request.after, hints.get(index), need)
            for index, app in apps
        ]
    )
    merged = ordering.order_tokens([t for r in results for t in r.items], order)
    page = merged[: request.limit]
    items = []
    for token in page:
        parts = []
        for (index, _app), result in zip(apps, results, strict=True):
            offset = result.offset_for(token)
            if offset:
                parts.append(f"{index}:{offset}")
        items.append(SourceItem(token, ",".join(parts) or None))
    total: int | None = None
    if exact_count and all(r.total is not None for r in results):
        total = sum(r.total or 0 for r in results)
    return SourcePage(items=items, has_more=len(merged) > request.limit, total_count=total)


async def _walk_app(
    api: LosantApi,
    call: ListCall,
    app: str,
    flt: TokenFilter,
    order: TokenOrder,
    after: SortKey | None,
    hint: int | None,
    need: int,
) -> _AppResult:
    """This application's first ``need`` matching tokens after ``after`` (or all that are
    left), in ``order``, and how to make its position hint for any page item."""
    sort_field = SORT_FIELDS[order.field]
    main = AppRows(api, call, app, sort_field, order.direction)
    opposite = AppRows(api, call, app, sort_field, order.direction.flipped())
    value: Callable[[Token], GroupValue | None]
    if order.field is OrderField.LAST_USED_AT:
        # Losant records no last use: every value is null and the order is the local id's
        # (``sortField=id``, unique, so no ties and no nulls to find).
        if after is not None and (after.source != api.key or after.value is not None):
            # Ours are all null: another source's key (or a last use) comes before or
            # after every one of them.
            mine = SortKey(None, api.key, "")
            if not ordering.comes_before(after, mine, order.direction):
                await main.page(0)  # for the count
                return _AppResult([], main.total)
            after = None
        value = _local_id
        seek: GroupValue | None = after.local_id if after is not None else None
    else:
        value = _date_value(order.field)
        seek = _date(after.value) if after is not None else None
    walk = PagedWalk(
        main=main,
        opposite=opposite,
        value=value,
        order=order,
        flt=flt,
        after=after,
        seek=seek,
        need=need,
        # A hint is the offset where the item's tie group starts (its first offset).
        near=hint if seek is not None else None,
        nullable=order.field is not OrderField.LAST_USED_AT,
    )
    items = [item.token for item in await walk.items()]
    total = main.total if main.total is not None else opposite.total
    return _AppResult(items, total, walk.resume_offset)


def _local_id(token: Token) -> GroupValue:
    return token.local_id


def _date_value(order_field: OrderField) -> Callable[[Token], GroupValue | None]:
    def value(token: Token) -> GroupValue | None:
        return ordering.sort_value(token, order_field)

    return value


def _date(value: object) -> GroupValue | None:
    assert value is None or isinstance(value, GroupValue)  # checked by check_after
    return value


def check_after(after: SortKey | None, order_field: OrderField) -> None:
    """``InvalidCursor`` for a cursor whose value cannot be of ``order_field``."""
    if after is None or after.value is None:
        return
    if order_field is OrderField.NAME:
        ok = isinstance(after.value, str)
    else:
        ok = isinstance(after.value, datetime) and after.value.utcoffset() is not None
    if not ok:
        raise errors.InvalidCursor("the cursor does not fit this order: start again")


def parse_position(position: str | None, app_count: int) -> dict[int, int]:
    """``{app index: offset}`` from a hint ``walk_page`` made; ``InvalidCursor`` for
    anything else (see the client's module docstring)."""
    if position is None:
        return {}
    invalid = errors.InvalidCursor("the cursor is not valid: use a cursor from a previous page")
    parts = position.split(",")
    if len(parts) > app_count:
        raise invalid
    hints: dict[int, int] = {}
    for part in parts:
        index, colon, offset = part.partition(":")
        if not (colon and _is_small_number(index) and _is_small_number(offset)):
            raise invalid
        app, at = int(index), int(offset)
        if app >= app_count or app in hints or not 1 <= at <= MAX_HINT_OFFSET:
            raise invalid
        hints[app] = at
    return hints


def _is_small_number(text: str) -> bool:
    return 0 < len(text) <= 10 and text.isascii() and text.isdigit()


async def gather(calls: Sequence[Awaitable[T]]) -> list[T]:
    """Run ``calls`` concurrently; all finish before the first failure is raised (an
    ``OrderBroken`` wins, so that the caller can fall back)."""
    if len(calls) == 1:
        # One application (the usual case): no task, so its request leaves at once.
        return [await calls[0]]
    results = await asyncio.gather(*calls, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise next((f for f in failures if isinstance(f, OrderBroken)), failures[0])
    return results  # type: ignore[return-value]


__all__ = ["MAX_HINT_OFFSET", "SORT_FIELDS", "check_after", "gather", "parse_position", "walk_page"]
