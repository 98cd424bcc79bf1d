"""Exhaustive Relay walks over the store through the service: every order, both directions."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.seeding import Seeded, seed
from tokengate.upstreams.model import Direction, OrderField, TokenFilter, TokenOrder
from tokengate.upstreams.principal import Principal
from tokengate.upstreams.service import PageArgs, TokenService
from tokengate.upstreams.store import StoreSource

ADMIN = Principal(token_id="t", scopes=frozenset({"tokens:admin"}))
RW = ("tokens:read", "tokens:write")
ORDERS = [TokenOrder(f, d) for f in OrderField for d in Direction]


def expected_ids(rows: list[Seeded], order: TokenOrder) -> list[str]:
    """The order, computed without the gateway's code: nulls last in ASC, first in DESC."""

    def value(row: Seeded) -> datetime | str | None:
        return {
            OrderField.CREATED_AT: row.created_at,
            OrderField.LAST_USED_AT: row.last_used_at,
            OrderField.EXPIRES_AT: row.expires_at,
            OrderField.NAME: row.name.casefold(),
        }[order.field]

    non_null = sorted((r for r in rows if value(r) is not None), key=lambda r: (value(r), r.id))
    nulls = sorted((r for r in rows if value(r) is None), key=lambda r: r.id)
    ascending = [r.id for r in non_null + nulls]
    return ascending if order.direction is Direction.ASC else ascending[::-1]


async def walk(service: TokenService, order: TokenOrder, size: int, *, backward: bool) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        args = (
            PageArgs(last=size, before=cursor) if backward else PageArgs(first=size, after=cursor)
        )
        result = await service.list_tokens(ADMIN, TokenFilter(), order, args)
        page = result.page
        ids = [e.token.local_id for e in page.edges]
        assert len(ids) <= size
        more = page.has_previous_page if backward else page.has_next_page
        other_side = page.has_next_page if backward else page.has_previous_page
        assert other_side is (cursor is not None), (
            "the side we came from has items iff not the first page"
        )
        seen = ids + seen if backward else seen + ids
        pages += 1
        assert page.total_count is not None
        if not more:
            break
        assert ids, "a page that says more follows must not be empty"
        cursor = page.edges[0].cursor if backward else page.edges[-1].cursor
        assert pages < 1000
    return seen


@pytest.fixture
async def seeded(store: StoreSource) -> tuple[TokenService, list[Seeded]]:
    rows = await seed(store, 260)
    return TokenService(store), rows


@pytest.mark.slow
@pytest.mark.parametrize("size", [1, 3, 100])
@pytest.mark.parametrize("order", ORDERS, ids=lambda o: f"{o.field}-{o.direction}")
async def test_forward_and_backward_walks_cover_everything_once(
    seeded: tuple[TokenService, list[Seeded]], order: TokenOrder, size: int
) -> None:
    service, rows = seeded
    want = expected_ids(rows, order)
    assert len(set(want)) == 260
    forward = await walk(service, order, size, backward=False)
    assert forward == want
    backward = await walk(service, order, size, backward=True)
    assert backward == want


async def test_total_count_and_ends(seeded: tuple[TokenService, list[Seeded]]) -> None:
    service, _rows = seeded
    first = await service.list_tokens(ADMIN, TokenFilter(), TokenOrder(), PageArgs(first=100))
    assert first.page.total_count == 260
    assert first.page.has_next_page and not first.page.has_previous_page
    last = await service.list_tokens(ADMIN, TokenFilter(), TokenOrder(), PageArgs(last=100))
    assert last.page.has_previous_page and not last.page.has_next_page
    assert [e.token.local_id for e in last.page.edges] == [
        e.token.local_id
        for e in (
            await service.list_tokens(
                ADMIN, TokenFilter(), TokenOrder(direction=Direction.DESC), PageArgs(first=100)
            )
        ).page.edges
    ][::-1]


async def test_filters_in_sql_match_python(seeded: tuple[TokenService, list[Seeded]]) -> None:
    service, rows = seeded
    cases = [
        (TokenFilter(name_glob="ALPHA"), lambda r: r.name.casefold() == "alpha"),
        (TokenFilter(name_glob="ci-*"), lambda r: r.name.casefold().startswith("ci-")),
        (TokenFilter(name_glob="?eta"), lambda r: r.name.casefold() in ("beta", "zeta")),
        (TokenFilter(name_glob="beta_2"), lambda r: False),  # '_' is literal, not a wildcard
        (TokenFilter(scope="tokens:write"), lambda r: "tokens:write" in r.scopes),
        (TokenFilter(scope="TOKENS:WRITE"), lambda r: False),  # scopes match exactly
        (
            TokenFilter(created_after=rows[0].created_at),
            lambda r: r.created_at > rows[0].created_at,
        ),
        (
            TokenFilter(created_before=rows[0].created_at),
            lambda r: r.created_at < rows[0].created_at,
        ),
        (TokenFilter(application_id="575ec8687ae143cd83dc4a97"), lambda r: False),
    ]
    for flt, predicate in cases:
        want = sorted(r.id for r in rows if predicate(r))
        got: list[str] = []
        cursor = None
        while True:
            result = await service.list_tokens(
                ADMIN, flt, TokenOrder(), PageArgs(first=100, after=cursor)
            )
            got.extend(e.token.local_id for e in result.page.edges)
            assert result.page.total_count == len(want), flt
            if not result.page.has_next_page:
                break
            cursor = result.page.edges[-1].cursor
        assert sorted(got) == want, flt


async def test_a_user_bound_caller_sees_only_its_own_tokens(
    seeded: tuple[TokenService, list[Seeded]],
) -> None:
    service, rows = seeded
    bound = Principal(token_id="u", scopes=frozenset(RW), subject="user-a")
    # Even when it asks for the filter's owner_user itself, the binding decides.
    result = await service.list_tokens(
        bound, TokenFilter(owner_user="user-b"), TokenOrder(), PageArgs(first=100)
    )
    want = sorted(r.id for r in rows if r.subject == "user-a")
    assert sorted(e.token.local_id for e in result.page.edges) == want
    assert result.page.total_count == len(want)


async def test_a_caller_lists_no_token_wider_than_itself(
    seeded: tuple[TokenService, list[Seeded]],
) -> None:
    """The store applies ``Reach.covers`` in SQL: a reader bound to user-a lists user-a's
    read-only tokens, not its writers (which the seed mixes in), and the count agrees."""
    service, rows = seeded
    reader = Principal(token_id="u", scopes=frozenset({"tokens:read"}), subject="user-a")
    result = await service.list_tokens(reader, TokenFilter(), TokenOrder(), PageArgs(first=100))
    want = sorted(r.id for r in rows if r.subject == "user-a" and r.scopes == ("tokens:read",))
    assert want and len(want) < len([r for r in rows if r.subject == "user-a"])
    assert sorted(e.token.local_id for e in result.page.edges) == want
    assert result.page.total_count == len(want)
