"""Amper's token lists as rows by (sort, offset), and one page of a walk over them.

The walk itself is ``upstreams.paged_walk``'s; this module is what it needs of Amper: rows
read on demand in as few requests as a page allows, the lists' moves noticed, the resume
hint ``"<sort>:<offset>:<id>"`` made and found again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from tokengate.upstreams import errors, ordering
from tokengate.upstreams.amper.normalise import decode_position, encode_position, sort_param
from tokengate.upstreams.model import OrderField, PageRequest, SourceItem, SourcePage, Token
from tokengate.upstreams.paged_walk import OrderBroken, PagedWalk

MAX_PAGE_LENGTH = 100
MAX_OFFSET = 1000
# The last row any read can reach: a page of MAX_PAGE_LENGTH from the last offset.
MAX_ROW = MAX_OFFSET + MAX_PAGE_LENGTH - 1
# Rows read before a resume point (to see where its tie group starts) and past what a page
# needs (ties, filtered-out tokens): one request usually covers a whole page.
_LOOK_BEHIND = 8
_LOOK_AHEAD = 8

# One list request: (sort, offset, length) -> (tokens from offset, whether the list ends).
FetchRows = Callable[[str, int, int], Awaitable[tuple[list[Token], bool]]]


class ListMoved(OrderBroken):
    """The list changed between two requests of one call (a row moved)."""


class AmperRows:
    """One ``list_page`` call's view of Amper's lists: rows by (sort, offset), read on demand.

    The first request asks for ``first_length`` rows, later ones for the maximum. Each
    request also re-reads a neighbouring row already seen: if it moved, or a token shows
    up at two offsets, the list changed mid-call and the read is not trusted.
    """

    def __init__(self, fetch: FetchRows, *, first_length: int) -> None:
        self._fetch_rows = fetch
        self._length = max(1, min(MAX_PAGE_LENGTH, first_length))
        self._rows: dict[str, dict[int, Token]] = {}
        self._ids: dict[str, dict[str, int]] = {}
        self._ends: dict[str, int] = {}

    def sorted_by(self, sort: str) -> SortedList:
        """The list sorted by ``sort``, as ``paged_walk.Rows``."""
        return SortedList(self, sort)

    async def row(self, sort: str, offset: int, *, toward_start: bool = False) -> Token | None:
        """The row at ``offset`` of the list sorted by ``sort``; None past its end.

        ``toward_start`` reads the chunk that ends at ``offset`` (walking back to a tie
        group's start) instead of the one that begins there.
        """
        rows = self._rows.setdefault(sort, {})
        token = rows.get(offset)
        if token is not None:
            return token
        if not self._past_end(sort, offset):
            length = self._next_length()
            start = max(0, offset - length + 1) if toward_start else offset
            await self._fetch(sort, start, length)
        if offset not in rows and not self._past_end(sort, offset):
            # Fewer rows than asked for, yet not the end: Amper caps pages below 100.
            await self._fetch(sort, offset, self._next_length(), overlap=False)
        if self._past_end(sort, offset):
            return None
        return rows[offset]

    def _next_length(self) -> int:
        length, self._length = self._length, MAX_PAGE_LENGTH
        return length

    def loaded(self, sort: str, offset: int) -> Token | None:
        """The row at ``offset`` if it was read already."""
        return self._rows.get(sort, {}).get(offset)

    def widen(self) -> None:
        """Ask for the maximum number of rows from now on."""
        self._length = MAX_PAGE_LENGTH

    def _past_end(self, sort: str, offset: int) -> bool:
        end = self._ends.get(sort)
        return end is not None and offset >= end

    async def _fetch(self, sort: str, start: int, length: int, *, overlap: bool = True) -> None:
        rows = self._rows.setdefault(sort, {})
        ids = self._ids.setdefault(sort, {})
        if overlap and start > 0 and start - 1 in rows:
            start, length = start - 1, length + 1
        if overlap and start + length in rows:
            length += 1
        length = min(length, MAX_PAGE_LENGTH)
        tokens, at_end = await self._fetch_rows(sort, start, length)
        for index, token in enumerate(tokens, start):
            known = rows.get(index)
            seen_at = ids.get(token.local_id)
            if (known is not None and known.local_id != token.local_id) or (
                seen_at is not None and seen_at != index
            ):
                raise ListMoved
            ids[token.local_id] = index
            rows[index] = token
        if at_end:
            self._ends[sort] = start + len(tokens)


class SortedList:
    """One of ``AmperRows``' lists, as the walk reads it (``paged_walk.Rows``)."""

    def __init__(self, rows: AmperRows, sort: str) -> None:
        self._rows = rows
        self._sort = sort

    async def row(self, offset: int, *, toward_start: bool = False) -> Token | None:
        return await self._rows.row(self._sort, offset, toward_start=toward_start)

    async def length(self) -> int | None:
        return None  # Amper counts nothing: only reading to the end tells

    def loaded(self, offset: int) -> Token | None:
        return self._rows.loaded(self._sort, offset)

    def widen(self) -> None:
        self._rows.widen()


async def read_all(fetch: FetchRows, sort: str) -> list[Token]:
    """Every token of the list sorted by ``sort``, in its order; ``ListMoved`` if it moved."""
    rows = AmperRows(fetch, first_length=MAX_PAGE_LENGTH)
    tokens: list[Token] = []
    while (token := await rows.row(sort, len(tokens))) is not None:
        tokens.append(token)
    return tokens


async def walk_page(fetch: FetchRows, request: PageRequest) -> SourcePage:
    """One page of a CREATED_AT or LAST_USED_AT walk over Amper's own sort.

    Amper's list for the walk's sort holds the valued tokens in value order and the
    never-used ones (``date_access`` null, LAST_USED_AT only) as one block at its start or
    its end; ``OrderBroken`` when it does not.
    """
    order = request.walk_order
    sort = sort_param(order.field, order.direction)
    opposite = sort_param(order.field, order.direction.flipped())
    assert sort is not None and opposite is not None
    hint = check_position(request.position)
    # The first request covers the page plus a tie group running past it, and the rows
    # before a resume hint when there is one (no hint: the walk starts at offset 0).
    behind = _LOOK_BEHIND if hint is not None else 0
    rows = AmperRows(fetch, first_length=request.limit + 1 + behind + _LOOK_AHEAD)
    after = request.after
    seek = after.value if after is not None else None
    assert seek is None or not isinstance(seek, str)
    walk = PagedWalk(
        main=rows.sorted_by(sort),
        opposite=rows.sorted_by(opposite),
        value=lambda token: _date(token, order.field),
        order=order,
        flt=request.filter,
        after=after,
        seek=seek,
        need=request.limit + 1,
        near=await _find_hinted(rows, sort, hint) if seek is not None else None,
        # date_create is never null; only LAST_USED_AT has never-used tokens.
        nullable=order.field is OrderField.LAST_USED_AT,
        nulls_in_opposite_first=hint is not None and hint[0] == opposite,
    )
    taken = await walk.items()
    items = [
        SourceItem(
            item.token,
            encode_position(
                opposite if item.in_opposite else sort, item.offset, item.token.local_id
            ),
        )
        for item in taken[: request.limit]
    ]
    return SourcePage(items=items, has_more=len(taken) > request.limit)


async def _find_hinted(rows: AmperRows, sort: str, hint: tuple[str, int, str] | None) -> int | None:
    """Where the hint's token is now, looked for at and around its offset (rows may have
    been added or removed before it); None when it is not there."""
    if hint is None or hint[0] != sort:
        return None
    _, offset, token_id = hint
    low = max(0, offset - _LOOK_BEHIND)
    if await rows.row(sort, low) is None:  # the window around the hint, in one request
        return None
    probes: list[int] = [offset, *range(low, offset + _LOOK_AHEAD + 1)]
    for probe in probes:
        token = await rows.row(sort, probe)
        if token is not None and token.local_id == token_id:
            return probe
    return None


def _date(token: Token, field: OrderField) -> datetime | None:
    value = ordering.sort_value(token, field)
    assert value is None or isinstance(value, datetime)
    return value


def check_position(position: str | None) -> tuple[str, int, str] | None:
    """A resume hint this adapter can have made, decoded; ``InvalidCursor`` otherwise.

    Only walks make hints, and only ``encode_position`` ones for rows the API can list.
    """
    if position is None:
        return None
    hint = decode_position(position)
    if hint is None or not 0 <= hint[1] <= MAX_ROW:
        raise errors.InvalidCursor("the cursor is not valid: use a cursor from a previous page")
    return hint


__all__ = [
    "MAX_OFFSET",
    "MAX_PAGE_LENGTH",
    "MAX_ROW",
    "AmperRows",
    "ListMoved",
    "check_position",
    "read_all",
    "walk_page",
]
