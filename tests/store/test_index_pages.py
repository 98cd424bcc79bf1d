"""A store page after a cursor, ordered by a never-null column, is read from the
(column, id) index, not sorted: page k costs page 1 (what lets the export walk 100,000
tokens). Checked on SQLite's own plan for the statement the store runs; the same rows as
before the range form are checked by the exhaustive walks in test_pagination.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from tests.seeding import seed
from tokengate.upstreams.model import (
    Direction,
    OrderField,
    PageRequest,
    SortKey,
    TokenFilter,
    TokenOrder,
)
from tokengate.upstreams.store import SecretHasher, StoreSource, create_engine, migrate


@pytest.mark.parametrize("field", [OrderField.CREATED_AT, OrderField.NAME])
@pytest.mark.parametrize("direction", list(Direction))
@pytest.mark.parametrize("count", [False, True])
async def test_a_page_after_a_cursor_reads_the_index(
    tmp_path: Path, field: OrderField, direction: Direction, count: bool
) -> None:
    path = tmp_path / "store.db"
    engine = create_engine(f"sqlite:///{path}")
    await migrate(engine)
    store = StoreSource(engine, SecretHasher(b"k" * 32))
    try:
        rows = await seed(store, 60)
        first = await store.list_page(
            PageRequest(TokenFilter(), TokenOrder(field, direction), limit=10, count=count)
        )
        last = first.items[-1].token
        value = last.created_at if field is OrderField.CREATED_AT else last.name.casefold()
        after = SortKey(value, "internal", last.local_id)
        statements: list[tuple[str, Any]] = []

        def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT"):
                statements.append((statement, parameters))

        event.listen(store.reads_engine, "before_cursor_execute", grab)
        request = PageRequest(
            TokenFilter(), TokenOrder(field, direction), limit=10, after=after, count=count
        )
        second = await store.list_page(request)
        event.remove(store.reads_engine, "before_cursor_execute", grab)
        assert len(second.items) == 10 and len(rows) == 60
        assert not {i.token.local_id for i in first.items} & {
            i.token.local_id for i in second.items
        }
    finally:
        await store.aclose()
    page_statement = next(s for s in statements if "LIMIT" in s[0].upper())
    with sqlite3.connect(path) as db:
        plan = db.execute("EXPLAIN QUERY PLAN " + page_statement[0], page_statement[1]).fetchall()
    details = " | ".join(str(row[-1]) for row in plan)
    assert "USING INDEX" in details, details
    assert "TEMP B-TREE" not in details, details
