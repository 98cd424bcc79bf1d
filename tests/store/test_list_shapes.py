"""The store's list statements are built once per shape and shared: a caller's values are
bound per call, never kept in a shared statement; a cursor whose value does not fit the
order is refused before any SQL; the kept shapes are bounded."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tokengate.upstreams import errors
from tokengate.upstreams.model import (
    CreateSpec,
    Direction,
    OrderField,
    PageRequest,
    SortKey,
    Status,
    TokenFilter,
    TokenOrder,
)
from tokengate.upstreams.store import SecretHasher, StoreSource, create_engine, migrate, queries

ORDER = TokenOrder(OrderField.CREATED_AT, Direction.DESC)


async def test_one_statement_per_shape_values_per_call(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'shapes.db'}")
    await migrate(engine)
    store = StoreSource(engine, SecretHasher(os.urandom(32)))
    try:
        for user in ("alice", "bob", "bob"):
            await store.create(CreateSpec(name=f"{user}'s", subject=user))
        seen = {}
        for user, count in (("alice", 1), ("bob", 2), ("alice", 1), ("mallory", 0)):
            request = PageRequest(TokenFilter(owner_user=user), ORDER, limit=10)
            page = await store.list_page(request)
            assert [i.token.owner.id for i in page.items if i.token.owner] == [user] * count
            assert page.total_count == count
            shape = queries.list_shape(request)
            assert shape is not None
            seen[user] = queries.page_statement(shape, True)
        # The same shape, the same statement: the users are bound, not built in.
        assert seen["alice"] is seen["bob"] is seen["mallory"]
    finally:
        await store.aclose()


async def test_a_cursor_value_unlike_the_order_is_refused(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'cursor.db'}")
    await migrate(engine)
    store = StoreSource(engine, SecretHasher(os.urandom(32)))
    try:
        wrong = [
            (OrderField.CREATED_AT, "2026-01-01"),  # text where a date belongs
            (OrderField.NAME, datetime(2026, 1, 1, tzinfo=UTC)),  # a date where a name belongs
        ]
        for field, value in wrong:
            request = PageRequest(
                TokenFilter(),
                TokenOrder(field, Direction.ASC),
                limit=5,
                after=SortKey(value, "internal", "0" * 32),
            )
            with pytest.raises(errors.InvalidCursor):
                await store.list_page(request)
    finally:
        await store.aclose()


def test_the_kept_shapes_are_bounded() -> None:
    """A caller cycling filters cannot grow the cache: shapes past the bound are built
    again, not kept."""
    statuses = [frozenset(s) for s in ({Status.ACTIVE}, {Status.REVOKED}, {Status.EXPIRED})]
    for i in range(queries.SHAPES_KEPT + 50):
        flt = TokenFilter(
            statuses=statuses[i % 3],
            name_glob="x*" if i & 1 else None,
            scope="s" if i & 2 else None,
            never_used=(None, True, False)[i % 3],
            created_after=datetime(2026, 1, 1, tzinfo=UTC) if i & 4 else None,
            expires_before=datetime(2027, 1, 1, tzinfo=UTC) if i & 8 else None,
            owner_user="u" if i & 16 else None,
        )
        field = list(OrderField)[i % len(OrderField)]
        direction = Direction.ASC if i & 32 else Direction.DESC
        shape = queries.list_shape(PageRequest(flt, TokenOrder(field, direction), limit=5))
        assert shape is not None
        queries.page_statement(shape, bool(i & 64))
    assert queries.page_statement.cache_info().currsize <= queries.SHAPES_KEPT
