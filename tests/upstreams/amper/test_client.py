"""AmperSource over loopback HTTP against the simulator and a few deliberately broken apps."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

import tokengate.upstreams.amper
from tokengate.upstreams import errors, ordering
from tokengate.upstreams.amper import AmperSource
from tokengate.upstreams.amper.client import retry_after_seconds
from tokengate.upstreams.amper.normalise import normalise_token
from tokengate.upstreams.amper.simulator import (
    AmperSimState,
    NullPlacement,
    build_app,
    sample_state,
)
from tokengate.upstreams.base import TokenSource
from tokengate.upstreams.cursor_codec import CursorCodec
from tokengate.upstreams.loopback import free_port, serve_in_thread
from tokengate.upstreams.merge import decode_cursor, merge_pages, positions_for
from tokengate.upstreams.model import (
    CreateSpec,
    Direction,
    OrderField,
    PageRequest,
    Provider,
    SortKey,
    SourcePage,
    Status,
    Token,
    TokenFilter,
    TokenOrder,
    UpdateSpec,
)

KEY = "amper"
API = "/v1/access_tokens"
WALK_COUNT = 45
ORDERS = [TokenOrder(f, d) for f in OrderField for d in Direction]
NATIVE = {OrderField.CREATED_AT, OrderField.LAST_USED_AT}
T0 = datetime(2018, 10, 4, tzinfo=UTC)
NO_FILTER = TokenFilter()


def _order_id(order: TokenOrder) -> str:
    return f"{order.field.value}-{order.direction.value}"


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def walk_sim() -> Iterator[tuple[AmperSimState, str]]:
    """Shared by the walks and filters: only ``null_placement`` is switched, then restored."""
    state = sample_state(WALK_COUNT)
    with serve_in_thread(build_app(state)) as url:
        yield state, url


@pytest.fixture(scope="module")
def _mutable_sim() -> Iterator[tuple[AmperSimState, str]]:
    state = sample_state(12, seed=7)
    with serve_in_thread(build_app(state)) as url:
        yield state, url


@pytest.fixture
def sim(_mutable_sim: tuple[AmperSimState, str]) -> tuple[AmperSimState, str]:
    """The module's mutable server, reset to fresh data, no faults and an empty log."""
    state, url = _mutable_sim
    reset(state, sample_state(12, seed=7))
    return state, url


def reset(state: AmperSimState, fresh: AmperSimState) -> None:
    for f in fields(AmperSimState):
        if f.name != "control":
            setattr(state, f.name, getattr(fresh, f.name))
    state.control.faults = []
    state.control.latency_ms = 0.0
    state.control.requests.clear()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


@pytest.fixture
def full_reads(monkeypatch: pytest.MonkeyPatch) -> list[OrderField]:
    """The order field of every list_page answered by reading the whole list."""
    calls: list[OrderField] = []
    original = AmperSource._full_page

    async def spy(self: AmperSource, request: PageRequest) -> SourcePage:
        calls.append(request.order.field)
        return await original(self, request)

    monkeypatch.setattr(AmperSource, "_full_page", spy)
    return calls


def make_source(
    url: str,
    http: httpx.AsyncClient,
    state: AmperSimState,
    *,
    key: str = KEY,
    token: str | None = None,
    timeout_s: float = 5.0,
    page_size_param: str = "length",
) -> AmperSource:
    return AmperSource(
        key=key,
        name="Amper Music",
        base_url=url,
        client=http,
        api_token=token or state.api_token,
        page_size_param=page_size_param,
        timeout_s=timeout_s,
    )


def normalised(state: AmperSimState, key: str = KEY) -> list[Token]:
    """The simulator's own data as Token records, computed without the adapter."""
    now = datetime.now(UTC)
    return [normalise_token(t.to_json("http://x"), source=key, now=now) for t in state.tokens]


def expected_ids(
    state: AmperSimState, order: TokenOrder, flt: TokenFilter = NO_FILTER
) -> list[str]:
    tokens = [t for t in normalised(state) if ordering.matches(t, flt)]
    return [t.local_id for t in ordering.order_tokens(tokens, order)]


async def walk(
    source: TokenSource,
    order: TokenOrder,
    size: int,
    *,
    backward: bool = False,
    flt: TokenFilter = NO_FILTER,
    between_pages: Callable[[int], Awaitable[None]] | None = None,
) -> list[str]:
    """Every token, page by page, as the gateway walks one source; in ``order``."""
    seen: list[str] = []
    after = position = None
    for number in range(1, 1000):
        page = await source.list_page(
            PageRequest(flt, order, size, after=after, position=position, backward=backward)
        )
        assert len(page.items) <= size
        if number > 1:
            assert page.items, "has_more promised more, yet nothing followed"
        seen.extend(item.token.local_id for item in page.items)
        if not page.has_more:
            break
        assert len(page.items) == size, "has_more with a short page"
        last = page.items[-1]
        after, position = ordering.sort_key(last.token, order.field), last.position
        if between_pages is not None:
            await between_pages(number)
    return list(reversed(seen)) if backward else seen


# -- walks -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("size", [1, 7, 50])
@pytest.mark.parametrize("order", ORDERS, ids=_order_id)
async def test_exhaustive_walks(
    walk_sim: tuple[AmperSimState, str],
    http: httpx.AsyncClient,
    full_reads: list[OrderField],
    order: TokenOrder,
    size: int,
) -> None:
    state, url = walk_sim
    source = make_source(url, http, state)
    want = expected_ids(state, order)
    assert len(want) == WALK_COUNT == len(set(want))
    for backward in (False, True):
        got = await walk(source, order, size, backward=backward)
        assert got == want, ("backward" if backward else "forward", size)
    if order.field in NATIVE:
        assert full_reads == [], "a well-behaved upstream never needs a full read"
    else:
        assert full_reads and set(full_reads) == {order.field}


@pytest.mark.parametrize("placement", ["first_in_asc", "last_in_asc", "last"])
@pytest.mark.parametrize("direction", list(Direction))
async def test_never_used_tokens_wherever_amper_puts_them(
    walk_sim: tuple[AmperSimState, str],
    http: httpx.AsyncClient,
    full_reads: list[OrderField],
    placement: NullPlacement,
    direction: Direction,
) -> None:
    state, url = walk_sim
    order = TokenOrder(OrderField.LAST_USED_AT, direction)
    want = expected_ids(state, order)
    nulls = {t.id for t in state.tokens if t.date_access is None}
    # The gateway puts never-used tokens last in ASC, first in DESC.
    edge = want[-len(nulls) :] if direction is Direction.ASC else want[: len(nulls)]
    assert set(edge) == nulls and len(nulls) > 7
    state.null_placement = placement
    try:
        source = make_source(url, http, state)
        for size in (1, 7, 50):
            for backward in (False, True):
                assert await walk(source, order, size, backward=backward) == want
    finally:
        state.null_placement = "first_in_asc"
    assert full_reads == []


async def test_zero_and_negative_limits(
    walk_sim: tuple[AmperSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = walk_sim
    source = make_source(url, http, state)
    for order in ORDERS:
        page = await source.list_page(PageRequest(TokenFilter(), order, 0))
        assert page.items == [] and page.has_more and page.total_count is None
    with pytest.raises(errors.InvalidInput):
        await source.list_page(PageRequest(TokenFilter(), TokenOrder(), -1))


async def test_walk_from_another_sources_boundary(
    walk_sim: tuple[AmperSimState, str], http: httpx.AsyncClient
) -> None:
    """``after`` may be a key of another source, equal in value to one of ours."""
    state, url = walk_sim
    source = make_source(url, http, state)
    for order in ORDERS:
        want = expected_ids(state, order)
        tokens = {t.local_id: t for t in normalised(state)}
        pivot = tokens[want[len(want) // 2]]
        value = ordering.sort_value(pivot, order.field)
        for other_source in ("a-before", "zz-after"):
            after = SortKey(value, other_source, "x")
            page = await source.list_page(PageRequest(TokenFilter(), order, 100, after=after))
            rest = [
                t
                for t in want
                if ordering.comes_before(
                    after, ordering.sort_key(tokens[t], order.field), order.direction
                )
            ]
            assert [i.token.local_id for i in page.items] == rest


async def test_merged_walk_of_two_amper_accounts(http: httpx.AsyncClient) -> None:
    """The gateway's own merge over two Amper sources: hints survive interleaving."""
    states = {"amper": sample_state(23, seed=3), "amper-eu": sample_state(19, seed=4)}
    # Shared instants and names across the two accounts make cross-source ties.
    for a, b in zip(states["amper"].tokens[3:9], states["amper-eu"].tokens[3:9], strict=True):
        b.date_create, b.date_access, b.display_name = a.date_create, a.date_access, a.display_name
    with (
        serve_in_thread(build_app(states["amper"])) as url_a,
        serve_in_thread(build_app(states["amper-eu"])) as url_b,
    ):
        sources = {
            "amper": make_source(url_a, http, states["amper"], key="amper"),
            "amper-eu": make_source(url_b, http, states["amper-eu"], key="amper-eu"),
        }
        everything = normalised(states["amper"], "amper") + normalised(
            states["amper-eu"], "amper-eu"
        )
        for order in ORDERS:
            want = [(t.source, t.local_id) for t in ordering.order_tokens(everything, order)]
            assert await merged_walk(sources, order, 4, backward=False) == want
            assert await merged_walk(sources, order, 4, backward=True) == want


async def merged_walk(
    sources: dict[str, AmperSource], order: TokenOrder, size: int, *, backward: bool
) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    cursor = None
    codec = CursorCodec.ephemeral()
    for _ in range(200):
        pages = {}
        for key, source in sources.items():
            pages[key] = await source.list_page(
                PageRequest(
                    TokenFilter(),
                    order,
                    size,
                    after=cursor.key if cursor else None,
                    position=positions_for(cursor, backward, key),
                    backward=backward,
                )
            )
        merged = merge_pages(
            pages,
            order=order,
            limit=size,
            cursor=cursor,
            backward=backward,
            count_complete=False,
            codec=codec,
        )
        edges = [(e.token.source, e.token.local_id) for e in merged.edges]
        seen = edges + seen if backward else seen + edges
        more = merged.has_previous_page if backward else merged.has_next_page
        if not more:
            return seen
        boundary = merged.edges[0] if backward else merged.edges[-1]
        cursor = decode_cursor(boundary.cursor, order, codec)
    raise AssertionError("the walk did not end")


# -- filters ---------------------------------------------------------------------------------

FILTERS = [
    pytest.param(
        TokenFilter(
            statuses=frozenset({Status.ACTIVE}), user_id="someone", sources=frozenset({"x"})
        ),
        id="active-and-the-gateways-own-business",
    ),
    pytest.param(
        TokenFilter(statuses=frozenset({Status.ACTIVE, Status.REVOKED})), id="with-revoked"
    ),
    pytest.param(TokenFilter(name_glob="ci*"), id="glob-case-insensitive"),
    pytest.param(TokenFilter(name_glob="*APP*"), id="glob-contains"),
    pytest.param(TokenFilter(name_glob="strasse app"), id="glob-casefold-sharp-s"),
    pytest.param(TokenFilter(created_after=T0 + timedelta(days=200)), id="created-after"),
    pytest.param(TokenFilter(created_before=T0 + timedelta(days=300)), id="created-before"),
    pytest.param(
        TokenFilter(
            created_after=T0 + timedelta(days=100), created_before=T0 + timedelta(days=400)
        ),
        id="created-range",
    ),
    pytest.param(TokenFilter(created_after=T0), id="created-after-excludes-equal"),
]


@pytest.mark.parametrize("flt", FILTERS)
async def test_filters(
    walk_sim: tuple[AmperSimState, str], http: httpx.AsyncClient, flt: TokenFilter
) -> None:
    state, url = walk_sim
    source = make_source(url, http, state)
    some = False
    for order in ORDERS:
        want = expected_ids(state, order, flt)
        some = some or bool(want)
        assert await walk(source, order, 6, flt=flt) == want, order
        assert await walk(source, order, 6, flt=flt, backward=True) == want, order
    assert some


@pytest.mark.parametrize(
    "flt",
    [
        pytest.param(
            TokenFilter(statuses=frozenset({Status.INACTIVE, Status.EXPIRED})), id="not-active"
        ),
        pytest.param(TokenFilter(statuses=frozenset()), id="no-status"),
        pytest.param(TokenFilter(scope="all.Application"), id="scope"),
        pytest.param(TokenFilter(application_id="575ec8687ae143cd83dc4a97"), id="application"),
        pytest.param(TokenFilter(owner_user="anna"), id="user-bound-caller"),
        pytest.param(TokenFilter(name_glob="no such name*"), id="glob-without-match"),
    ],
)
async def test_filters_that_match_nothing(
    walk_sim: tuple[AmperSimState, str], http: httpx.AsyncClient, flt: TokenFilter
) -> None:
    state, url = walk_sim
    source = make_source(url, http, state)
    state.control.requests.clear()
    for order in ORDERS:
        page = await source.list_page(PageRequest(flt, order, 10))
        assert page.items == [] and not page.has_more
    # Amper tokens are all active, scope-less and owner-less: only a glob needs to look.
    if flt.name_glob is None:
        assert state.control.requests == []
    else:
        assert state.control.requests


async def test_created_range_stops_reading_early(http: httpx.AsyncClient) -> None:
    state = sample_state(400, seed=5)
    with serve_in_thread(build_app(state)) as url:
        source = make_source(url, http, state)
        early = TokenFilter(created_before=T0 + timedelta(days=30))
        late = TokenFilter(created_after=T0 + timedelta(days=670))
        for flt, direction in ((early, Direction.ASC), (late, Direction.DESC)):
            order = TokenOrder(OrderField.CREATED_AT, direction)
            want = expected_ids(state, order, flt)
            assert 0 < len(want) < 40
            state.control.requests.clear()
            page = await source.list_page(PageRequest(flt, order, 100))
            assert [i.token.local_id for i in page.items] == want and not page.has_more
            assert len(state.control.requests) == 1  # not the 4 of a full read


# -- cost of deep pages, hints ---------------------------------------------------------------


@pytest.fixture(scope="module")
def big_sim() -> Iterator[tuple[AmperSimState, str]]:
    state = sample_state(300, seed=2)
    with serve_in_thread(build_app(state)) as url:
        yield state, url


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("order", ORDERS, ids=_order_id)
async def test_page_ten_costs_what_page_one_costs(
    big_sim: tuple[AmperSimState, str], http: httpx.AsyncClient, order: TokenOrder, backward: bool
) -> None:
    state, url = big_sim
    source = make_source(url, http, state)
    costs: list[int] = []
    after = position = None
    seen: list[str] = []
    for _ in range(10):
        state.control.requests.clear()
        page = await source.list_page(
            PageRequest(TokenFilter(), order, 20, after=after, position=position, backward=backward)
        )
        costs.append(len(state.control.requests))
        seen.extend(i.token.local_id for i in page.items)
        after, position = (
            ordering.sort_key(page.items[-1].token, order.field),
            page.items[-1].position,
        )
    assert costs[9] <= 1.5 * costs[0], costs
    want = expected_ids(
        state, replace(order, direction=order.direction.flipped()) if backward else order
    )
    assert seen == want[:200]
    if order.field in NATIVE:
        # Seeking by the key alone reads every row before the page: more than 1 request.
        assert costs[9] == 1, costs
        state.control.requests.clear()
        blind = await source.list_page(
            PageRequest(TokenFilter(), order, 20, after=after, backward=backward)
        )
        assert [i.token.local_id for i in blind.items] == want[200:220]
        assert len(state.control.requests) > costs[9]


async def test_stale_and_forged_hints_never_cause_a_gap(
    big_sim: tuple[AmperSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = big_sim
    source = make_source(url, http, state)
    for order in [o for o in ORDERS if o.field in NATIVE]:
        want = expected_ids(state, order)
        first = await source.list_page(PageRequest(TokenFilter(), order, 30))
        last = first.items[-1]
        after = ordering.sort_key(last.token, order.field)
        assert last.position is not None
        sort, offset, token_id = last.position.split(":")
        other = want[100]
        for position in (
            last.position,
            None,
            f"{sort}:{int(offset) + 3}:{token_id}",  # rows were added before it
            f"{sort}:{max(0, int(offset) - 5)}:{token_id}",  # rows were removed
            f"{sort}:{int(offset) + 60}:{token_id}",  # far away: seek from the start
            f"{sort}:{offset}:zzzzzzzz",  # the row there is another token
            f"{sort}:200:{other}",  # a token after the cursor: ignored
            f"{sort.lstrip('-') if sort.startswith('-') else '-' + sort}:{offset}:{token_id}",
        ):
            page = await source.list_page(
                PageRequest(TokenFilter(), order, 25, after=after, position=position)
            )
            assert [i.token.local_id for i in page.items] == want[30:55], (order, position)


@pytest.mark.parametrize(
    "position",
    [
        "",
        "garbage",
        "date_create:999999:abcd1234",
        "date_create:1100:abcd1234",
        "date_create:-1:abcd1234",
        "date_create:+5:abcd1234",
        "date_create:\u0665:abcd1234",
        "date_create:5:",
        "date_create:5:../x",
        "no_such_sort:5:abcd1234",
        "date_create:5",
    ],
)
async def test_a_hint_no_walk_can_make_is_refused_before_any_request(
    sim: tuple[AmperSimState, str], http: httpx.AsyncClient, position: str
) -> None:
    state, url = sim
    source = make_source(url, http, state)
    state.control.requests.clear()
    for order in ORDERS:
        after = SortKey(datetime(2020, 1, 1, tzinfo=UTC), "amper", "abcd1234")
        if order.field is OrderField.NAME:
            after = SortKey("m", "amper", "abcd1234")
        with pytest.raises(errors.InvalidCursor):
            await source.list_page(
                PageRequest(TokenFilter(), order, 10, after=after, position=position)
            )
    assert state.control.requests == []


async def test_walk_survives_tokens_added_and_removed_between_pages(
    sim: tuple[AmperSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    reset(state, sample_state(60, seed=9))
    source = make_source(url, http, state)
    order = TokenOrder(OrderField.CREATED_AT, Direction.ASC)
    want = expected_ids(state, order)

    async def churn(page_number: int) -> None:
        if page_number == 2:
            for i in range(4):  # earlier than everything: lands before the cursor
                state.add(f"early {i}", date_create=T0 - timedelta(days=10 + i))
        if page_number == 4:
            # Remove two tokens already walked past: later rows shift left.
            for token_id in want[:2]:
                token = state.find(token_id)
                assert token is not None
                state.tokens.remove(token)

    got = await walk(source, order, 5, between_pages=churn)
    assert got == want


async def test_out_of_order_upstream_falls_back_to_a_full_read(
    sim: tuple[AmperSimState, str], http: httpx.AsyncClient, full_reads: list[OrderField]
) -> None:
    state, url = sim
    reset(state, AmperSimState(tokens=[], api_token=""))
    state.api_token = state.add("gateway", date_create=T0).secret
    # Hours apart, shown in offsets that make their text sort the other way round.
    for hour, offset in ((10, 0), (6, 5), (14, -5), (8, 2), (12, -3)):
        tz = timezone(timedelta(hours=offset))
        when = (T0 + timedelta(days=1, hours=hour)).astimezone(tz)
        state.add(f"t{hour}", date_create=when, date_access=when)
    state.sort_dates_as_text = True
    source = make_source(url, http, state)
    for order in ORDERS:
        for size in (1, 2, 10):
            assert await walk(source, order, size) == expected_ids(state, order)
    assert {OrderField.CREATED_AT, OrderField.LAST_USED_AT} <= set(full_reads)


class _Churning:
    """Adds a token before every list request (up to ``times``): the list moves mid-read."""

    def __init__(self, app: ASGIApp, state: AmperSimState, times: int) -> None:
        self.app, self.state, self.times = app, state, times

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == API and self.times > 0:
            self.times -= 1
            self.state.add("churn", date_create=T0 - timedelta(days=self.times + 1))
        await self.app(scope, receive, send)


@pytest.mark.parametrize(("times", "fails"), [(1, False), (2, False), (100, True)])
async def test_a_list_that_moves_while_read(
    http: httpx.AsyncClient, times: int, fails: bool
) -> None:
    state = sample_state(150, seed=6)
    churning = _Churning(build_app(state), state, times)
    with serve_in_thread(churning) as url:
        source = make_source(url, http, state)
        order = TokenOrder(OrderField.NAME, Direction.ASC)
        request = PageRequest(TokenFilter(), order, 200)
        if fails:
            with pytest.raises(errors.UpstreamUnavailable, match="kept changing"):
                await source.list_page(request)
            return
        page = await source.list_page(request)
        assert [i.token.local_id for i in page.items] == expected_ids(state, order)


async def test_more_tokens_than_the_api_can_list(http: httpx.AsyncClient) -> None:
    state = sample_state(1101, seed=8)
    with serve_in_thread(build_app(state)) as url:
        source = make_source(url, http, state)
        with pytest.raises(errors.BadUpstreamResponse, match="offsets stop at 1000"):
            await source.list_page(PageRequest(TokenFilter(), TokenOrder(OrderField.NAME), 10))
        page = await source.list_page(PageRequest(TokenFilter(), TokenOrder(), 10))
        assert len(page.items) == 10


async def test_links_elsewhere_are_not_trusted(
    sim: tuple[AmperSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    reset(state, sample_state(40, seed=7))
    state.link_base = "https://attacker.example"
    source = make_source(url, http, state, page_size_param="limit")
    for order in ORDERS:
        assert await walk(source, order, 6) == expected_ids(state, order)
    queries = [r.query for r in state.control.requests]
    assert all("limit=" in q and "length=" not in q for q in queries)
    assert all(
        r.headers.get("accept") == "application/vnd.api+json" for r in state.control.requests
    )


@pytest.mark.parametrize(
    ("links", "count", "length", "at_end"),
    [
        pytest.param(
            {"next": "{url}/v1/access_tokens?offset=1"}, 1, 10, False, id="own-link-short-page"
        ),
        pytest.param(
            {"next": "https://elsewhere.example/v1/access_tokens?offset=1"},
            1,
            10,
            True,
            id="foreign-link",
        ),
        pytest.param(
            {"next": "http://127.0.0.1:1/v1/access_tokens?offset=1"}, 1, 10, True, id="other-port"
        ),
        pytest.param({"next": "{url}/v2/access_tokens?offset=1"}, 1, 10, True, id="other-path"),
        pytest.param({"next": "http://[::1"}, 1, 10, True, id="unparseable-link"),
        pytest.param({"next": None}, 1, 1, True, id="null-next-on-a-full-page"),
        pytest.param({}, 1, 1, False, id="no-link-full-page"),
        pytest.param({}, 1, 2, True, id="no-link-short-page"),
        pytest.param({"next": "{url}/v1/access_tokens?offset=1"}, 0, 10, True, id="empty-page"),
    ],
)
async def test_end_of_list(
    raw: tuple[Canned, str],
    http: httpx.AsyncClient,
    links: dict[str, Any],
    count: int,
    length: int,
    at_end: bool,
) -> None:
    canned, url = raw
    link = links.get("next")
    body_links = {"next": link.format(url=url) if isinstance(link, str) else link} if links else {}
    canned.body = {"data": [GOOD] * count, "links": body_links}
    source = make_source(url, http, sample_state(3))
    tokens, end = await source.fetch_rows("date_create", 0, length)
    assert (len(tokens), end) == (count, at_end)


async def test_a_null_next_link_saves_a_request(
    sim: tuple[AmperSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    reset(state, sample_state(100, seed=7))
    source = make_source(url, http, state)
    page = await source.list_page(PageRequest(NO_FILTER, TokenOrder(OrderField.NAME), 100))
    assert len(page.items) == 100 and not page.has_more
    assert len(state.control.requests) == 1


# -- single tokens ---------------------------------------------------------------------------


async def test_get_many(sim: tuple[AmperSimState, str], http: httpx.AsyncClient) -> None:
    state, url = sim
    source = make_source(url, http, state)
    by_id = {t.local_id: t for t in normalised(state)}
    wanted = [t.id for t in state.tokens[:5]]
    asked = [*wanted, wanted[0], "missing1", "ab/cd", "..", "", "a%2Fb", "x?y"]
    found = await source.get_many(asked)
    assert found == {i: by_id[i] for i in wanted}
    assert len(state.control.requests) == 6  # 5 tokens and the missing one; once each
    assert await source.get_many([]) == {} and await source.get_many(["../x"]) == {}


async def test_get_many_is_concurrent(
    sim: tuple[AmperSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    source = make_source(url, http, state)
    state.control.latency_ms = 300
    started = time.monotonic()
    found = await source.get_many([t.id for t in state.tokens[:8]])
    assert len(found) == 8
    assert time.monotonic() - started < 8 * 0.3 / 2


async def test_get_many_fails_as_a_whole(
    sim: tuple[AmperSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    source = make_source(url, http, state)
    state.control.set_faults([{"kind": "status", "status": 503, "every": 2}])
    with pytest.raises(errors.UpstreamUnavailable):
        await source.get_many([t.id for t in state.tokens[:6]])


# -- create, update, revoke ------------------------------------------------------------------


async def test_create(sim: tuple[AmperSimState, str], http: httpx.AsyncClient) -> None:
    state, url = sim
    source = make_source(url, http, state)
    created = await source.create(CreateSpec(name="  Podcast studio  ", scopes=()))
    new = state.tokens[-1]
    assert created.secret == new.secret
    assert created.token.local_id == created.token.external_id == new.id
    assert created.token.name == "Podcast studio" and created.token.status is Status.ACTIVE
    assert created.token.provider is Provider.AMPER and created.token.last_used_at is None
    assert new.secret not in repr(created) and new.secret not in repr(created.token)
    [post] = [r for r in state.control.requests if r.method == "POST"]
    assert post.headers["content-type"] == "application/vnd.api+json"
    listed = await source.get_many([new.id])
    assert listed[new.id].secret_hint == f"{new.secret[:4]}…"  # Amper shows 8


@pytest.mark.parametrize(
    ("spec", "argument"),
    [
        (CreateSpec(name="x", scopes=("all.Application",)), "scopes"),
        (CreateSpec(name="x", expires_at=T0), "expiresAt"),
        (CreateSpec(name="x", description="d"), "description"),
        (CreateSpec(name="x", application_id="a"), "applicationId"),
        (CreateSpec(name="x", subject="anna"), "subject"),
        (CreateSpec(name="x", allowed_sources=frozenset({"amper"})), "allowedSources"),
        (CreateSpec(name="   "), "name"),
        (CreateSpec(name="x" * 256), "name"),
        (CreateSpec(name="line\nbreak"), "name"),
    ],
)
async def test_create_refuses_what_amper_cannot_hold(
    sim: tuple[AmperSimState, str], http: httpx.AsyncClient, spec: CreateSpec, argument: str
) -> None:
    state, url = sim
    source = make_source(url, http, state)
    with pytest.raises(errors.InvalidInput) as info:
        await source.create(spec)
    assert info.value.argument == argument
    assert state.control.requests == []


@pytest.mark.parametrize("status", [400, 409, 422])
async def test_create_refused_by_amper(
    sim: tuple[AmperSimState, str], http: httpx.AsyncClient, status: int
) -> None:
    state, url = sim
    state.control.set_faults([{"kind": "status", "status": status, "method": "POST"}])
    with pytest.raises(errors.InvalidInput, match=f"HTTP {status}"):
        await make_source(url, http, state).create(CreateSpec(name="x"))


async def test_update_is_unsupported(
    sim: tuple[AmperSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    with pytest.raises(errors.Unsupported):
        await make_source(url, http, state).update(state.tokens[1].id, UpdateSpec(name="n"))
    assert state.control.requests == []


async def test_revoke(sim: tuple[AmperSimState, str], http: httpx.AsyncClient) -> None:
    state, url = sim
    source = make_source(url, http, state)
    victim = state.tokens[4]
    etag = victim.etag
    await source.revoke(victim.id)
    assert state.find(victim.id) is None
    get, delete = state.control.requests
    assert (get.method, delete.method) == ("GET", "DELETE")
    assert delete.headers["if-match"] == etag and etag.startswith('W/"')
    with pytest.raises(errors.NotFound):
        await source.revoke(victim.id)


@pytest.mark.parametrize("bad", ["ab/cd", "..", "a?b", "a#b", "a%2e", "a\x00b", "", "x" * 200])
async def test_revoke_checks_the_id_first(
    sim: tuple[AmperSimState, str], http: httpx.AsyncClient, bad: str
) -> None:
    state, url = sim
    with pytest.raises(errors.InvalidInput):
        await make_source(url, http, state).revoke(bad)
    assert state.control.requests == []


async def test_revoke_refuses_the_gateways_own_credential(
    sim: tuple[AmperSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    mine = state.credential_token()
    assert mine is not None
    with pytest.raises(errors.Forbidden) as info:
        await make_source(url, http, state).revoke(mine.id)
    assert state.api_token not in str(info.value) and mine.redacted not in str(info.value)
    assert state.find(mine.id) is not None
    assert [r.method for r in state.control.requests] == ["GET"]


@pytest.mark.parametrize(("edits", "succeeds"), [(1, True), (2, False)])
async def test_revoke_rereads_a_token_that_changed(
    sim: tuple[AmperSimState, str], http: httpx.AsyncClient, edits: int, succeeds: bool
) -> None:
    state, url = sim
    victim = state.tokens[5]
    state.concurrent_edits[victim.id] = edits
    source = make_source(url, http, state)
    if succeeds:
        await source.revoke(victim.id)
        assert state.find(victim.id) is None
    else:
        with pytest.raises(errors.UpstreamUnavailable, match="try again") as info:
            await source.revoke(victim.id)
        assert info.value.status == 412
        assert state.find(victim.id) is not None
    assert [r.method for r in state.control.requests] == ["GET", "DELETE"] * 2


async def test_revoke_of_a_token_deleted_meanwhile(
    sim: tuple[AmperSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    state.control.set_faults([{"kind": "status", "status": 404, "method": "DELETE"}])
    with pytest.raises(errors.NotFound):
        await make_source(url, http, state).revoke(state.tokens[2].id)


# -- errors at the edge ----------------------------------------------------------------------

Operation = Callable[[AmperSource, AmperSimState], Awaitable[object]]
OPERATIONS: dict[str, Operation] = {
    "list": lambda s, st: s.list_page(PageRequest(TokenFilter(), TokenOrder(), 5)),
    "list-by-name": lambda s, st: s.list_page(
        PageRequest(TokenFilter(), TokenOrder(OrderField.NAME), 5)
    ),
    "get_many": lambda s, st: s.get_many([st.tokens[1].id, st.tokens[2].id]),
    "create": lambda s, st: s.create(CreateSpec(name="new")),
    "revoke": lambda s, st: s.revoke(st.tokens[3].id),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
@pytest.mark.parametrize(
    ("fault", "error", "status"),
    [
        ({"kind": "status", "status": 401}, errors.UpstreamUnauthorized, 401),
        ({"kind": "status", "status": 403}, errors.UpstreamUnauthorized, 403),
        ({"kind": "status", "status": 429, "retry_after": 7}, errors.UpstreamRateLimited, 429),
        ({"kind": "status", "status": 500}, errors.UpstreamUnavailable, 500),
        ({"kind": "status", "status": 502}, errors.UpstreamUnavailable, 502),
        ({"kind": "status", "status": 503}, errors.UpstreamUnavailable, 503),
        ({"kind": "status", "status": 418}, errors.BadUpstreamResponse, 418),
        ({"kind": "malformed"}, errors.BadUpstreamResponse, None),
        ({"kind": "reset"}, errors.UpstreamUnavailable, None),
    ],
    ids=["401", "403", "429", "500", "502", "503", "418", "malformed", "reset"],
)
async def test_upstream_failures_are_translated(
    sim: tuple[AmperSimState, str],
    http: httpx.AsyncClient,
    operation: str,
    fault: dict[str, Any],
    error: type[errors.UpstreamError],
    status: int | None,
) -> None:
    state, url = sim
    state.control.set_faults([fault])
    with pytest.raises(error) as info:
        await OPERATIONS[operation](make_source(url, http, state), state)
    assert type(info.value) is error and info.value.source == KEY
    assert info.value.status == status
    if isinstance(info.value, errors.UpstreamRateLimited):
        assert info.value.retry_after_s == 7
    message = str(info.value)
    assert state.api_token not in message and "simulated" not in message and "trunc" not in message


async def test_a_wrong_api_token(sim: tuple[AmperSimState, str], http: httpx.AsyncClient) -> None:
    state, url = sim
    source = make_source(url, http, state, token="not-the-token")
    with pytest.raises(errors.UpstreamUnauthorized) as info:
        await source.list_page(PageRequest(TokenFilter(), TokenOrder(), 5))
    assert "not-the-token" not in str(info.value)


async def test_timeout(sim: tuple[AmperSimState, str], http: httpx.AsyncClient) -> None:
    state, url = sim
    state.control.set_faults([{"kind": "hang", "hang_s": 1.0}])
    with pytest.raises(errors.UpstreamTimeout):
        await make_source(url, http, state, timeout_s=0.2).get_many([state.tokens[0].id])


async def test_nothing_listening(http: httpx.AsyncClient) -> None:
    state = sample_state(3)
    source = make_source(f"http://127.0.0.1:{free_port()}", http, state)
    with pytest.raises(errors.UpstreamUnavailable) as info:
        await source.list_page(PageRequest(TokenFilter(), TokenOrder(), 5))
    assert info.value.status is None


@dataclass
class Canned:
    """What the raw app answers to every request: any body, status and headers."""

    body: object = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delete_status: int | None = None


@pytest.fixture(scope="module")
def _raw_server() -> Iterator[tuple[Canned, str]]:
    canned = Canned()

    async def answer(request: Request) -> Response:
        body = canned.body
        text = body if isinstance(body, str) else json.dumps(body)
        status = canned.status
        if request.method == "DELETE" and canned.delete_status is not None:
            status = canned.delete_status
        return Response(text, status, media_type="application/vnd.api+json", headers=canned.headers)

    app = Starlette(
        routes=[
            Route(API, answer, methods=["GET", "POST"]),
            Route(API + "/{token_id}", answer, methods=["GET", "DELETE"]),
        ]
    )
    with serve_in_thread(app) as url:
        yield canned, url


@pytest.fixture
def raw(_raw_server: tuple[Canned, str]) -> tuple[Canned, str]:
    canned, url = _raw_server
    canned.body, canned.status, canned.headers, canned.delete_status = None, 200, {}, None
    return canned, url


GOOD = {
    "type": "access_tokens",
    "id": "abcd1234",
    "attributes": {
        "access_token_redacted": "abcd1234***",
        "display_name": "app",
        "date_create": "2018-10-04T00:00:00.000000+00:00",
        "date_access": None,
    },
}


@pytest.mark.parametrize(
    ("operation", "body", "headers"),
    [
        pytest.param("list", {"data": "nope"}, None, id="list-data-not-an-array"),
        pytest.param("list", {"data": [{**GOOD, "id": "../x"}]}, None, id="list-unsafe-id"),
        pytest.param("list", "<html>oops</html>", None, id="list-html"),
        pytest.param(
            "get_many", {"data": {**GOOD, "id": "efgh5678"}}, None, id="get-another-token"
        ),
        pytest.param("get_many", {"data": [GOOD]}, None, id="get-data-an-array"),
        pytest.param("create", {"data": GOOD}, None, id="create-without-plaintext"),
        pytest.param("revoke", {"data": GOOD}, None, id="revoke-without-etag"),
        pytest.param(
            "revoke", {"data": {**GOOD, "type": "songs"}}, {"ETag": 'W/"1"'}, id="revoke-bad-token"
        ),
    ],
)
async def test_schema_violations_are_bad_responses(
    raw: tuple[Canned, str],
    http: httpx.AsyncClient,
    operation: str,
    body: object,
    headers: dict[str, str] | None,
) -> None:
    canned, url = raw
    canned.body, canned.headers = body, headers or {}
    source = make_source(url, http, sample_state(3))
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "list": lambda: source.list_page(PageRequest(TokenFilter(), TokenOrder(), 5)),
        "get_many": lambda: source.get_many(["abcd1234"]),
        "create": lambda: source.create(CreateSpec(name="x")),
        "revoke": lambda: source.revoke("abcd1234"),
    }
    with pytest.raises(errors.BadUpstreamResponse) as info:
        await calls[operation]()
    assert "oops" not in str(info.value)


async def test_revoke_with_other_answers(raw: tuple[Canned, str], http: httpx.AsyncClient) -> None:
    canned, url = raw
    canned.body, canned.headers = {"data": GOOD}, {"ETag": 'W/"1"'}
    state = sample_state(3)
    # GET and DELETE both answer 200 with a body: 200 counts as a successful delete.
    await make_source(url, http, state).revoke("abcd1234")
    with pytest.raises(errors.Forbidden):
        await make_source(url, http, state, token="abcd1234-the-gateways-own").revoke("abcd1234")
    canned.delete_status = 202
    await make_source(url, http, state).revoke("abcd1234")
    canned.delete_status = 428  # If-Match was sent: Amper asking for it is unexpected
    with pytest.raises(errors.BadUpstreamResponse, match="HTTP 428"):
        await make_source(url, http, state).revoke("abcd1234")


# -- construction and contract ---------------------------------------------------------------


def test_constructor_checks_and_repr(http: httpx.AsyncClient) -> None:
    def build(**overrides: Any) -> AmperSource:
        options: dict[str, Any] = {
            "key": KEY,
            "name": "Amper",
            "base_url": "https://api.ampermusic.com/",
            "client": http,
            "api_token": "tok-secret-value",
        }
        options.update(overrides)
        return AmperSource(**options)

    source = build()
    assert "tok-secret-value" not in repr(source) and "api.ampermusic.com" in repr(source)
    assert (source.key, source.name, source.provider) == (KEY, "Amper", Provider.AMPER)
    caps = source.capabilities
    assert caps.can_create and caps.can_revoke and not caps.can_update and not caps.can_count
    assert caps.native_sort_fields == NATIVE  # NAME is a full read, so not native
    assert not caps.needs_user_filter
    for bad in (
        {"base_url": "api.ampermusic.com"},
        {"base_url": "ftp://api.ampermusic.com"},
        {"page_size_param": "size"},
        {"api_token": ""},
        {"api_token": "a:b"},
    ):
        with pytest.raises(ValueError, match=r"base_url|page_size_param|api_token") as info:
            build(**bad)
        assert "tok-secret-value" not in str(info.value)


async def test_aclose_leaves_the_shared_client_open(http: httpx.AsyncClient) -> None:
    source: TokenSource = AmperSource(
        key=KEY, name="Amper", base_url="http://127.0.0.1:1", client=http, api_token="t"
    )
    await source.aclose()
    assert not http.is_closed
    assert tokengate.upstreams.amper.__all__ == ["AmperSource"]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("7", 7.0),
        (" 120 ", 120.0),
        ("soon", None),
        ("-3", None),
        ("Wed, 21 Oct 2015 07:28:00", None),
        (format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True), 0.0),
    ],
)
def test_retry_after(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value) == seconds


def test_retry_after_http_date_in_the_future() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    seconds = retry_after_seconds(later)
    assert seconds is not None and 80 <= seconds <= 90


@pytest.mark.parametrize("cap", [1, 7])
async def test_a_server_with_a_lower_page_cap(
    sim: tuple[AmperSimState, str], http: httpx.AsyncClient, cap: int
) -> None:
    state, url = sim
    state.page_cap = cap
    source = make_source(url, http, state)
    for order in ORDERS:
        for backward in (False, True):
            assert await walk(source, order, 5, backward=backward) == expected_ids(state, order)


async def test_never_used_tokens_cost_one_request_per_page(
    big_sim: tuple[AmperSimState, str], http: httpx.AsyncClient
) -> None:
    """In DESC they come first; after page 1 the hint says which list holds them."""
    state, url = big_sim
    source = make_source(url, http, state)
    order = TokenOrder(OrderField.LAST_USED_AT, Direction.DESC)
    want = expected_ids(state, order)
    never_used = sum(1 for t in state.tokens if t.date_access is None)
    assert 50 < never_used < 100
    after = position = None
    seen: list[str] = []
    costs = []
    for _ in range(8):
        state.control.requests.clear()
        page = await source.list_page(
            PageRequest(NO_FILTER, order, 5, after=after, position=position)
        )
        costs.append(len(state.control.requests))
        seen.extend(i.token.local_id for i in page.items)
        after = ordering.sort_key(page.items[-1].token, order.field)
        position = page.items[-1].position
    assert seen == want[:40]
    assert costs[1:] == [1] * 7, costs
