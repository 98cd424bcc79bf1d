"""One page of a walk over an upstream's own sort order: the algorithm the paged adapters
(Amper, Losant) share, behind ``Rows``, the small interface each of them implements.

The walk's order, restricted to one upstream list, is segment A (tokens with a value, in
value order; ties re-sorted by local id) and segment B (tokens without a value, ordered by
local id): A then B in ASC, B then A in DESC, as ``upstreams.ordering`` puts nulls. The
upstream's list in the walk's sort is trusted for the values only: each tie group is read
whole and re-sorted here, and items up to ``after`` are dropped. Where the upstream puts B
is not documented anywhere, so it is found: one block at the start or at the end of the
list, or at the start of the list sorted the other way. Anything read that breaks this
model (values going backwards, nulls at both ends or inside A) raises ``OrderBroken``; the
adapter then answers the call from a bounded full read instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from tokengate.upstreams import ordering
from tokengate.upstreams.model import Direction, OrderField, SortKey, Token, TokenFilter, TokenOrder

# What a tie group shares: a date, or (for an order with a unique key) a local id.
GroupValue = datetime | str


class OrderBroken(Exception):
    """The upstream's list broke the walk's model: read everything instead."""


class Rows(Protocol):
    """One upstream list in one sort, addressed by offset from its start."""

    async def row(self, offset: int, *, toward_start: bool = False) -> Token | None:
        """The token at ``offset``; None past the list's end. ``toward_start``: the walk is
        reading backwards from here (an adapter may fetch the rows that end at it)."""
        ...

    async def length(self) -> int | None:
        """How many rows the list holds, where the upstream says so at the cost of a request
        or two; None when only reading to the end would tell."""
        ...

    def loaded(self, offset: int) -> Token | None:
        """The token at ``offset`` if this call has read it already (never a request)."""
        ...

    def widen(self) -> None:
        """A whole block is read next: ask for as many rows per request as allowed."""
        ...


@dataclass(frozen=True, slots=True)
class WalkItem:
    """A token of the page, where it was read: ``offset`` in ``main`` or in ``opposite``."""

    token: Token
    offset: int
    in_opposite: bool = False


class PagedWalk:
    """One ``list_page`` call's walk over one upstream list.

    ``main`` is the list in the walk's sort, ``opposite`` the same list sorted the other
    way (read only to find B). ``value`` reads a token's group value (None: the token is in
    B; a walk with ``nullable=False`` has no B). ``seek`` is the cursor's group value, and
    ``near`` an offset in ``main`` at or after the start of that value's tie group, if the
    adapter has one from a resume hint: it is checked, and ignored when wrong, so that a
    stale hint costs requests, never a gap.
    """

    def __init__(
        self,
        *,
        main: Rows,
        opposite: Rows,
        value: Callable[[Token], GroupValue | None],
        order: TokenOrder,
        flt: TokenFilter,
        after: SortKey | None,
        seek: GroupValue | None,
        need: int,
        near: int | None = None,
        nullable: bool = True,
        nulls_in_opposite_first: bool = False,
    ) -> None:
        self._main = main
        self._opposite = opposite
        self._value = value
        self._order = order
        self._filter = flt
        self._after = after
        self._seek = seek
        self._need = need
        self._near = near
        self._nullable = nullable
        self._opposite_first = nulls_in_opposite_first
        self._ascending = order.direction is Direction.ASC
        self._stop_at = self._filter_bound()
        # What ``main`` was seen to hold: nulls at its top, nulls closing it.
        self._nulls_on_top = False
        self._trailing_nulls_at: int | None = None
        # The values scan: where it started, the (offset, value) rows it read, where A ended.
        self._scan_start: int | None = None
        self._read: list[tuple[int, GroupValue]] = []
        self._values_end: int | None = None

    async def items(self) -> list[WalkItem]:
        """At least ``need`` items after the cursor in the walk's order, or all there are.

        Tie groups are never cut, so there may be more than ``need``.
        """
        taken: list[WalkItem] = []
        segments: tuple[str, ...] = ("A", "B") if self._ascending else ("B", "A")
        if not self._nullable:
            segments = ("A",)
        for segment in segments:
            if (
                len(taken) >= self._need
                or self._segment_is_behind(segment)
                or self._segment_is_filtered_out(segment)
            ):
                continue
            if segment == "A":
                taken.extend(await self._values(self._need - len(taken)))
            else:
                taken.extend(await self._nulls())
        return taken

    def resume_offset(self, token: Token) -> int | None:
        """An offset in ``main`` before which every valued row sorts strictly before
        ``token``'s value (None: no such offset is known, or the token has no value)."""
        value = self._value(token)
        if value is None or self._scan_start is None:
            return None
        for offset, seen in self._read:
            if not self._before(seen, value):
                # Values read never go backwards: every row before this one is smaller.
                return offset
        if self._values_end is not None:
            return self._values_end
        # The start of what was read is a safe answer for any token after the cursor.
        return self._scan_start

    def _segment_is_behind(self, segment: str) -> bool:
        """Whether every token of ``segment`` comes before the cursor in this walk."""
        if self._after is None:
            return False
        in_nulls = self._nullable and self._seek is None
        if segment == "A":
            return self._ascending and in_nulls
        return not self._ascending and not in_nulls

    def _keep(self, token: Token) -> bool:
        if not ordering.matches(token, self._filter):
            return False
        if self._after is None:
            return True
        key = ordering.sort_key(token, self._order.field)
        return ordering.comes_before(self._after, key, self._order.direction)

    def _settle(self, group: list[tuple[int, Token]], *, in_opposite: bool) -> list[WalkItem]:
        """A complete tie group in the gateway's order, filtered, with where each was."""
        offsets = {token.local_id: offset for offset, token in group}
        ordered = ordering.order_tokens((t for _, t in group), self._order)
        return [
            WalkItem(token, offsets[token.local_id], in_opposite)
            for token in ordered
            if self._keep(token)
        ]

    def _before(self, a: GroupValue, b: GroupValue) -> bool:
        """Whether value ``a`` comes strictly before ``b`` in the walk's direction."""
        if self._ascending:
            return a < b  # type: ignore[operator]
        return a > b  # type: ignore[operator]

    def _segment_is_filtered_out(self, segment: str) -> bool:
        """Whether the filter excludes every token of ``segment`` by the walk's own date:
        no expiry under an expiry filter, no use under ``never_used`` False, a use under
        ``never_used`` True (``ordering.matches``)."""
        flt, field = self._filter, self._order.field
        if field is OrderField.EXPIRES_AT:
            return segment == "B" and (
                flt.expires_before is not None or flt.expires_after is not None
            )
        if field is OrderField.LAST_USED_AT and self._nullable and flt.never_used is not None:
            return (segment == "B") is not flt.never_used
        return False

    def _filter_bound(self) -> datetime | None:
        """The bound of the walk's own date no token at or beyond can match: a created-at,
        last-use or expiry range, where the walk runs toward it."""
        flt, field = self._filter, self._order.field
        if field is OrderField.CREATED_AT:
            return flt.created_before if self._ascending else flt.created_after
        if field is OrderField.LAST_USED_AT:
            # Never-used tokens (segment B) are judged by their creation, not by this.
            return flt.last_used_before if self._ascending else None
        if field is OrderField.EXPIRES_AT:
            return flt.expires_before if self._ascending else flt.expires_after
        return None

    def _past_filter(self, value: GroupValue) -> bool:
        """No token at or beyond ``value`` in this walk can match the filter's range."""
        bound = self._stop_at
        if bound is None or not isinstance(value, datetime):
            return False
        return value >= bound if self._ascending else value <= bound

    def _trailing_nulls(self, offset: int) -> None:
        if self._nulls_on_top:  # nulls at both ends: not one block
            raise OrderBroken
        self._trailing_nulls_at = offset
        self._expect_loaded(self._main, offset + 1, 1, valued=False)

    def _expect_loaded(self, rows: Rows, offset: int, step: int, *, valued: bool) -> None:
        """Rows already read from ``offset`` on (``step`` 1: forward, -1: backward) must all
        have a value (``valued``) or none: what one block of nulls leaves on either side."""
        for token in _loaded_run(rows, offset, step):
            if (self._value(token) is not None) is not valued:
                raise OrderBroken

    # -- segment A -------------------------------------------------------------------------

    async def _values(self, want: int) -> list[WalkItem]:
        """At least ``want`` settled items of segment A after the cursor, or all there are."""
        start = await self._anchor()
        self._scan_start = start
        settled: list[WalkItem] = []
        group: list[tuple[int, Token]] = []
        group_value: GroupValue | None = None
        seen_value = False
        offset = start
        while True:
            token = await self._main.row(offset)
            if token is None:
                self._values_end = offset
                break
            value = self._value(token)
            if value is None:
                if seen_value:  # A then B: the rest is segment B
                    self._trailing_nulls(offset)
                    self._values_end = offset
                    break
                self._nulls_on_top = True  # B then A: segment A starts after the block
                offset += 1
                continue
            seen_value = True
            self._read.append((offset, value))
            if group_value is not None and value != group_value:
                if self._before(value, group_value):
                    raise OrderBroken
                settled.extend(self._settle(group, in_opposite=False))
                group = []
                if len(settled) >= want:
                    return settled
            if self._stop_at is not None and self._past_filter(value):
                return settled
            group.append((offset, token))
            group_value = value
            offset += 1
        settled.extend(self._settle(group, in_opposite=False))
        return settled

    async def _anchor(self) -> int:
        """Where to start reading: the start of the tie group at ``near``, else 0.

        ``near`` is only trusted when its row has a value that does not come after the
        cursor's; otherwise the walk reads from the start.
        """
        near, seek = self._near, self._seek
        if near is None or seek is None:
            return 0
        anchor = await self._main.row(near)
        if anchor is None:
            return 0
        value = self._value(anchor)
        if value is None or self._before(seek, value):
            return 0
        found = near
        while found > 0:
            previous = await self._main.row(found - 1, toward_start=True)
            if previous is None:  # the list shrank under the walk
                raise OrderBroken
            previous_value = self._value(previous)
            if previous_value != value:
                if previous_value is not None and self._before(value, previous_value):
                    raise OrderBroken
                break
            found -= 1
        return found

    # -- segment B -------------------------------------------------------------------------

    async def _nulls(self) -> list[WalkItem]:
        """Segment B after the cursor: every token without a value, read whole (one tie
        group), from whichever list it was found in."""
        rows, start, block = await self._null_block()
        in_opposite = rows is self._opposite
        return self._settle([(start + i, t) for i, t in enumerate(block)], in_opposite=in_opposite)

    async def _null_block(self) -> tuple[Rows, int, list[Token]]:
        self._main.widen()
        self._opposite.widen()
        if self._trailing_nulls_at is not None:
            return await self._run_of_nulls(self._main, self._trailing_nulls_at)
        lists = [self._main, self._opposite]
        if self._opposite_first:
            lists.reverse()
        for rows in lists:
            first = await rows.row(0)
            if first is None:
                return rows, 0, []
            if self._value(first) is None:
                if rows is self._main:
                    self._nulls_on_top = True
                return await self._run_of_nulls(rows, 0)
            if rows is self._main:
                end = await self._main.length()
                if end is not None:
                    return await self._tail_block(end)
        # Neither list starts with nulls: they close ``main``, or there are none.
        end = 0
        while (await self._main.row(end)) is not None:
            end += 1
        return await self._tail_block(end)

    async def _tail_block(self, end: int) -> tuple[Rows, int, list[Token]]:
        """The nulls that close ``main``, which holds ``end`` rows (none: an empty block)."""
        tail = end
        while tail > 0:
            token = await self._main.row(tail - 1, toward_start=True)
            if token is None:
                raise OrderBroken  # fewer rows than the list said it holds
            if self._value(token) is not None:
                break
            tail -= 1
        self._expect_loaded(self._main, tail - 2, -1, valued=True)
        if tail < end:
            self._trailing_nulls(tail)
        return await self._run_of_nulls(self._main, tail)

    async def _run_of_nulls(self, rows: Rows, start: int) -> tuple[Rows, int, list[Token]]:
        """The tokens without a value from ``start`` on; a value after a block that closes
        the list breaks the model."""
        block: list[Token] = []
        offset = start
        while (token := await rows.row(offset)) is not None:
            if self._value(token) is not None:
                if start > 0:  # a trailing block must run to the end of the list
                    raise OrderBroken
                self._expect_loaded(rows, offset + 1, 1, valued=True)
                break
            block.append(token)
            offset += 1
        return rows, start, block


def _loaded_run(rows: Rows, offset: int, step: int) -> Iterator[Token]:
    """The rows already read from ``offset`` on, in ``step`` direction, up to a gap."""
    while offset >= 0 and (token := rows.loaded(offset)) is not None:
        yield token
        offset += step


__all__ = ["GroupValue", "OrderBroken", "PagedWalk", "Rows", "WalkItem"]
