"""LosantSource over loopback HTTP against the simulator and a few deliberately broken
upstreams; every expected order is computed here from the simulator's own data."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import tokengate.upstreams.losant
from tokengate.upstreams import errors, ordering
from tokengate.upstreams.base import TokenSource
from tokengate.upstreams.loopback import free_port, serve_in_thread
from tokengate.upstreams.losant import LosantSource
from tokengate.upstreams.losant.client import MAX_TOKENS_READ, retry_after_seconds
from tokengate.upstreams.losant.normalise import normalise_token
from tokengate.upstreams.losant.simulator import (
    DEFAULT_APPLICATIONS,
    LosantSimState,
    build_app,
    sample_state,
)
from tokengate.upstreams.model import (
    CreateSpec,
    Direction,
    OrderField,
    Owner,
    OwnerKind,
    PageRequest,
    Provider,
    SortKey,
    SortValue,
    SourcePage,
    Status,
    Token,
    TokenFilter,
    TokenOrder,
    UpdateSpec,
)

KEY = "fleet"
API_TOKEN = "losant-api-token-that-must-not-leak"
APP1, APP2 = DEFAULT_APPLICATIONS
OTHER_APP = "0123456789abcdef01234567"
MISSING_TOKEN = "fedcba9876543210fedcba98"
WALK_COUNT = 48
WALK_PER_PAGE = 10
ORDERS = [TokenOrder(f, d) for f in OrderField for d in Direction]
ORDER_IDS = [f"{o.field.value}-{o.direction.value}" for o in ORDERS]


def _walk_state(**options: Any) -> LosantSimState:
    return sample_state(WALK_COUNT, api_token=API_TOKEN, **options)


@pytest.fixture(scope="module")
def walk_sim() -> Iterator[tuple[LosantSimState, str]]:
    """Read-only: shared by the walk and filter tests."""
    state = _walk_state()
    with serve_in_thread(build_app(state)) as url:
        yield state, url


@pytest.fixture(scope="module")
def _mutable_sim() -> Iterator[tuple[LosantSimState, str]]:
    state = _walk_state()
    with serve_in_thread(build_app(state)) as url:
        yield state, url


@pytest.fixture
def sim(_mutable_sim: tuple[LosantSimState, str]) -> tuple[LosantSimState, str]:
    """One server for the module, reset in place: fresh data, no faults, an empty log."""
    state, url = _mutable_sim
    fresh = _walk_state()
    state.applications = fresh.applications
    state.name_sort = fresh.name_sort
    state.nulls = fresh.nulls
    state.control.faults = []
    state.control.latency_ms = 0.0
    state.control.requests.clear()
    return state, url


# Built once: loading the CA bundle for every test's client would dominate the run.
_TLS = ssl.create_default_context()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, verify=_TLS) as client:
        yield client


def make_source(
    url: str,
    http: httpx.AsyncClient,
    *,
    apps: tuple[str, ...] = DEFAULT_APPLICATIONS,
    per_page: int = WALK_PER_PAGE,
    token: str = API_TOKEN,
    timeout_s: float = 5.0,
) -> LosantSource:
    return LosantSource(
        key=KEY,
        name="Losant fleet",
        base_url=url,
        client=http,
        api_token=token,
        application_ids=apps,
        timeout_s=timeout_s,
        per_page=per_page,
    )


def sim_tokens(state: LosantSimState) -> list[Token]:
    now = datetime.now(UTC)
    return [
        normalise_token(raw, source=KEY, application_id=app, now=now)
        for app, raws in state.applications.items()
        for raw in raws
    ]


def expected_ids(state: LosantSimState, flt: TokenFilter, order: TokenOrder) -> list[str]:
    """The simulator's own data, normalised, filtered and sorted by the gateway's order."""
    matching = [t for t in sim_tokens(state) if ordering.matches(t, flt)]
    return [t.local_id for t in ordering.order_tokens(matching, order)]


async def walk(
    source: LosantSource,
    flt: TokenFilter,
    order: TokenOrder,
    size: int,
    *,
    backward: bool = False,
) -> tuple[list[str], list[SourcePage]]:
    """Every page, as the gateway asks for them; ids in ``order`` (flipped back if backward)."""
    ids: list[str] = []
    pages: list[SourcePage] = []
    after: SortKey | None = None
    position: str | None = None
    for _ in range(WALK_COUNT * 4):
        page = await source.list_page(
            PageRequest(flt, order, size, after=after, position=position, backward=backward)
        )
        pages.append(page)
        assert len(page.items) <= size
        ids.extend(item.token.local_id for item in page.items)
        if not page.has_more:
            break
        assert page.items, "has_more without items"
        last = page.items[-1]
        after = ordering.sort_key(last.token, order.field)
        position = last.position
    assert len(ids) == len(set(ids)), "a token came twice"
    return (ids[::-1] if backward else ids), pages


# -- shape and construction -----------------------------------------------------------------


def test_exports_are_pinned() -> None:
    assert tokengate.upstreams.losant.__all__ == ["LosantSource"]


async def test_is_a_token_source(http: httpx.AsyncClient) -> None:
    source: TokenSource = make_source("http://127.0.0.1:9", http)
    assert source.key == KEY
    assert source.name == "Losant fleet"
    assert source.provider is Provider.LOSANT
    caps = source.capabilities
    assert (caps.can_create, caps.can_update, caps.can_revoke, caps.can_count) == (True,) * 4
    # NAME is served by a full read (undocumented collation), so it is not native.
    assert caps.native_sort_fields == {OrderField.CREATED_AT, OrderField.EXPIRES_AT}
    assert not caps.needs_user_filter
    await source.aclose()


async def test_credentials_stay_out_of_repr(http: httpx.AsyncClient) -> None:
    source = make_source("http://127.0.0.1:9", http, apps=(APP1.upper(),))
    assert API_TOKEN not in repr(source)
    assert APP1 in repr(source)
    assert source.application_ids == (APP1,)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"base_url": "ftp://x"}, "base_url"),
        ({"base_url": "/relative"}, "base_url"),
        ({"application_ids": APP1}, "non-empty list"),
        ({"application_ids": ()}, "non-empty list"),
        ({"application_ids": ("575ec8687ae143cd83dc4a9",)}, "24-hex"),
        ({"application_ids": (APP1, "../admin")}, "24-hex"),
        ({"application_ids": (APP1, APP1.upper())}, "twice"),
        ({"per_page": 0}, "per_page"),
        ({"per_page": 1001}, "per_page"),
        ({"api_token": ""}, "api_token"),
        ({"api_token": "abc\r\nX-Evil: 1"}, "api_token"),
        ({"timeout_s": 0}, "timeout_s"),
    ],
)
async def test_constructor_refuses_bad_config(
    http: httpx.AsyncClient, changes: dict[str, Any], message: str
) -> None:
    kwargs: dict[str, Any] = {
        "key": KEY,
        "name": "n",
        "base_url": "https://api.losant.com",
        "client": http,
        "api_token": API_TOKEN,
        "application_ids": (APP1,),
    }
    kwargs.update(changes)
    with pytest.raises(ValueError, match=message) as caught:
        LosantSource(**kwargs)
    assert API_TOKEN not in str(caught.value)


# -- walks ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("size", [1, 7, 50])
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("order", ORDERS, ids=ORDER_IDS)
async def test_exhaustive_walks(
    walk_sim: tuple[LosantSimState, str],
    http: httpx.AsyncClient,
    order: TokenOrder,
    backward: bool,
    size: int,
) -> None:
    state, url = walk_sim
    ids, pages = await walk(make_source(url, http), TokenFilter(), order, size, backward=backward)
    assert ids == expected_ids(state, TokenFilter(), order)
    assert len(ids) == WALK_COUNT
    assert all(p.total_count == WALK_COUNT for p in pages)


@pytest.mark.parametrize(
    ("options", "order"),
    [
        *(({"nulls": "largest"}, o) for o in ORDERS if o.field is not OrderField.NAME),
        *(({"name_sort": "binary"}, o) for o in ORDERS if o.field is OrderField.NAME),
        *(({"seed": 5}, o) for o in ORDERS),
    ],
    ids=[
        *(f"nulls-where-the-gateway-puts-them-{i}" for i in ORDER_IDS if "NAME" not in i),
        *(f"names-by-code-point-{i}" for i in ORDER_IDS if "NAME" in i),
        *(f"other-data-{i}" for i in ORDER_IDS),
    ],
)
async def test_walks_do_not_depend_on_the_upstream_collation(
    sim: tuple[LosantSimState, str],
    http: httpx.AsyncClient,
    order: TokenOrder,
    options: dict[str, Any],
) -> None:
    state, url = sim
    other = _walk_state(**options)
    state.applications, state.name_sort, state.nulls = (
        other.applications,
        other.name_sort,
        other.nulls,
    )
    source = make_source(url, http, per_page=7)
    for backward in (False, True):
        ids, _ = await walk(source, TokenFilter(), order, 6, backward=backward)
        assert ids == expected_ids(state, TokenFilter(), order)


async def test_the_upstream_order_is_not_the_gateways(walk_sim: tuple[LosantSimState, str]) -> None:
    """Proof that the walks above prove something: raw upstream order differs in ties."""
    state, url = walk_sim
    async with httpx.AsyncClient(base_url=url, trust_env=False) as client:
        answer = await client.get(
            f"/applications/{APP1}/tokens",
            params={"sortField": "creationDate", "perPage": 1000},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        )
    upstream = [f"{APP1}/{t['id']}" for t in answer.json()["items"]]
    order = TokenOrder(OrderField.CREATED_AT, Direction.ASC)
    mine = [i for i in expected_ids(state, TokenFilter(), order) if i.startswith(APP1)]
    assert sorted(upstream) == sorted(mine)
    assert upstream != mine


async def test_one_application_is_a_source_of_its_own(
    walk_sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = walk_sim
    source = make_source(url, http, apps=(APP2,))
    order = TokenOrder(OrderField.EXPIRES_AT, Direction.DESC)
    ids, pages = await walk(source, TokenFilter(), order, 4)
    assert ids == expected_ids(state, TokenFilter(application_id=APP2), order)
    assert pages[0].total_count == len(state.applications[APP2])


async def test_first_page_flags_and_limit_zero(
    walk_sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = walk_sim
    source = make_source(url, http)
    order = TokenOrder(OrderField.CREATED_AT, Direction.DESC)
    page = await source.list_page(PageRequest(TokenFilter(), order, 0))
    assert (list(page.items), page.has_more, page.total_count) == ([], True, WALK_COUNT)
    everything = await source.list_page(PageRequest(TokenFilter(), order, WALK_COUNT))
    assert not everything.has_more
    assert [i.token.local_id for i in everything.items] == expected_ids(state, TokenFilter(), order)


async def test_listed_tokens_never_carry_the_secret(
    walk_sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = walk_sim
    secrets = {raw["token"] for raws in state.applications.values() for raw in raws}
    page = await make_source(url, http).list_page(
        PageRequest(TokenFilter(), TokenOrder(), WALK_COUNT)
    )
    assert len(page.items) == WALK_COUNT
    for item in page.items:
        text = repr(item)
        assert not any(secret in text for secret in secrets)
        assert item.token.owner is not None
        assert item.token.owner.kind is OwnerKind.APPLICATION
        assert item.token.last_used_at is None


# -- filters --------------------------------------------------------------------------------

FILTERS = {
    "active": TokenFilter(statuses=frozenset({Status.ACTIVE})),
    "inactive": TokenFilter(statuses=frozenset({Status.INACTIVE})),
    "expired": TokenFilter(statuses=frozenset({Status.EXPIRED})),
    "active-or-inactive": TokenFilter(statuses=frozenset({Status.ACTIVE, Status.INACTIVE})),
    "every-status": TokenFilter(statuses=frozenset(Status)),
    "name-any-case": TokenFilter(name_glob="*GATEWAY*"),
    "name-question-mark": TokenFilter(name_glob="?dge relay"),
    "name-digits-pushed": TokenFilter(name_glob="*-2019"),
    "name-and-status": TokenFilter(name_glob="*-2019", statuses=frozenset({Status.ACTIVE})),
    "scope": TokenFilter(scope="all.Application"),
    "created-range": TokenFilter(
        created_after=datetime(2016, 8, 1, tzinfo=UTC),
        created_before=datetime(2017, 1, 1, tzinfo=UTC),
    ),
    "application": TokenFilter(application_id=APP2.upper()),
}


@pytest.mark.slow
@pytest.mark.parametrize("flt_name", list(FILTERS))
async def test_filtered_walks(
    walk_sim: tuple[LosantSimState, str], http: httpx.AsyncClient, flt_name: str
) -> None:
    state, url = walk_sim
    flt = FILTERS[flt_name]
    # Pages bigger than the walks': a filtered page may need several upstream pages.
    source = make_source(url, http, per_page=25)
    for order in ORDERS:
        expected = expected_ids(
            state, replace(flt, application_id=flt.application_id and APP2), order
        )
        assert expected, "a filter that matches nothing proves little"
        ids, pages = await walk(source, flt, order, 5, backward=True)
        assert ids == expected, order
        ids, pages = await walk(source, flt, order, 5)
        assert ids == expected, order
        exact = flt_name in {"every-status", "application"} or order.field is OrderField.NAME
        assert pages[0].total_count == (len(expected) if exact else None), order


@pytest.mark.parametrize(
    ("flt", "query"),
    [
        (FILTERS["active"], "filterField=status&filter=active"),
        (FILTERS["inactive"], "filterField=status&filter=inactive"),
        (FILTERS["name-digits-pushed"], "filterField=name&filter=%2A-2019"),
        (FILTERS["name-and-status"], "filterField=name&filter=%2A-2019"),
        (FILTERS["expired"], None),
        (FILTERS["active-or-inactive"], None),
        (FILTERS["name-any-case"], None),
        (FILTERS["name-question-mark"], None),
        (TokenFilter(name_glob="*"), None),
        (TokenFilter(name_glob="*[0-9]*"), None),
    ],
)
async def test_what_is_pushed_down(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient, flt: TokenFilter, query: str | None
) -> None:
    state, url = sim
    await make_source(url, http).list_page(PageRequest(flt, TokenOrder(), 5))
    queries = [r.query for r in state.control.requests]
    assert queries
    for q in queries:
        if query is None:
            assert "filter" not in q
        else:
            assert query in q


async def test_a_case_sensitive_upstream_glob_would_have_dropped_matches(
    walk_sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    """Why letters stay local: the simulator's own glob misses other cases."""
    state, url = walk_sim
    async with httpx.AsyncClient(base_url=url, trust_env=False) as client:
        answer = await client.get(
            f"/applications/{APP1}/tokens",
            params={"filterField": "name", "filter": "*fleet*"},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        )
    upstream = {f"{APP1}/{t['id']}" for t in answer.json()["items"]}
    flt = TokenFilter(name_glob="*fleet*", application_id=APP1)
    gateway = set(expected_ids(state, flt, TokenOrder()))
    assert upstream < gateway
    ids, _ = await walk(make_source(url, http), flt, TokenOrder(), 50)
    assert set(ids) == gateway


@pytest.mark.parametrize(
    "flt",
    [
        TokenFilter(application_id=OTHER_APP),
        TokenFilter(statuses=frozenset({Status.REVOKED})),
        TokenFilter(statuses=frozenset()),
    ],
    ids=["not-our-application", "revoked-only", "no-status"],
)
async def test_filters_nothing_can_match_ask_nothing(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient, flt: TokenFilter
) -> None:
    state, url = sim
    page = await make_source(url, http).list_page(PageRequest(flt, TokenOrder(), 5))
    assert (list(page.items), page.has_more, page.total_count) == ([], False, 0)
    assert state.control.requests == []


async def test_application_filter_asks_only_that_application(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    page = await make_source(url, http).list_page(
        PageRequest(TokenFilter(application_id=APP1), TokenOrder(), 5)
    )
    assert page.total_count == len(state.applications[APP1])
    assert {r.path for r in state.control.requests} == {f"/applications/{APP1}/tokens"}


async def test_owner_user_matches_no_application_token(
    walk_sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    _, url = walk_sim
    page = await make_source(url, http).list_page(
        PageRequest(TokenFilter(owner_user="user-1"), TokenOrder(), 5)
    )
    assert (list(page.items), page.has_more, page.total_count) == ([], False, None)


async def test_a_token_owned_by_a_user_is_listed_as_theirs(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    raw = state.applications[APP2][0]
    raw["ownerType"], raw["ownerId"] = "user", OTHER_APP
    flt = TokenFilter(owner_user=OTHER_APP)
    ids, _ = await walk(make_source(url, http), flt, TokenOrder(), 3)
    assert ids == [f"{APP2}/{raw['id']}"]


# -- position hints and cost ----------------------------------------------------------------


def _requests(state: LosantSimState) -> int:
    return state.control.count("GET", "/applications/")


@pytest.mark.parametrize(
    "order",
    [o for o in ORDERS if o.field is not OrderField.NAME],
    ids=[i for i in ORDER_IDS if not i.startswith("NAME")],
)
async def test_deep_page_costs_what_page_one_costs(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient, order: TokenOrder
) -> None:
    state, url = sim
    big = sample_state(600, api_token=API_TOKEN)
    state.applications = big.applications
    source = make_source(url, http, per_page=25)
    costs: list[int] = []
    after: SortKey | None = None
    position: str | None = None
    for _ in range(10):
        before = _requests(state)
        page = await source.list_page(PageRequest(TokenFilter(), order, 10, after, position))
        costs.append(_requests(state) - before)
        after = ordering.sort_key(page.items[-1].token, order.field)
        position = page.items[-1].position
    assert costs[9] <= 1.5 * costs[0], costs
    # Any deep page: at most two more reads per application than page one (the hint's check
    # may read the page before, and the window may cross a page boundary).
    assert max(costs) <= costs[0] + 2 * len(DEFAULT_APPLICATIONS), costs
    assert after is not None
    if after.value is None and order.field is not OrderField.LAST_USED_AT:
        # Still in the group without expiry (first when descending): it is read whole each
        # time, as on page one; there is nothing to skip and no hint.
        assert order == TokenOrder(OrderField.EXPIRES_AT, Direction.DESC)
        return
    assert position is not None
    # Page 10 starts around item 90: seeking by ``after`` alone reads up to it.
    before = _requests(state)
    blind = await source.list_page(PageRequest(TokenFilter(), order, 10, after, None))
    blind_cost = _requests(state) - before
    hinted = await source.list_page(PageRequest(TokenFilter(), order, 10, after, position))
    assert [i.token for i in blind.items] == [i.token for i in hinted.items]
    assert blind_cost > costs[9], (blind_cost, costs)


async def test_name_order_reads_each_application_whole(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    await make_source(url, http).list_page(
        PageRequest(TokenFilter(), TokenOrder(OrderField.NAME), 3)
    )
    queries = [r.query for r in state.control.requests]
    # 32 + 16 tokens at 10 a page: 4 + 2 pages, the last ones short.
    assert len(queries) == 6
    assert all("sortField=id&sortDirection=asc" in q for q in queries)


@pytest.mark.parametrize(
    "position", ["0:1", "1:5", "1:1000000", "0:25,1:9999", "1:9999,0:400", "0:600"]
)
async def test_a_wrong_position_hint_costs_only_requests(
    walk_sim: tuple[LosantSimState, str], http: httpx.AsyncClient, position: str
) -> None:
    state, url = walk_sim
    source = make_source(url, http)
    for order in ORDERS:
        expected = expected_ids(state, TokenFilter(), order)
        after_token = next(t for t in sim_tokens(state) if t.local_id == expected[30])
        after = ordering.sort_key(after_token, order.field)
        page = await source.list_page(PageRequest(TokenFilter(), order, 12, after, position))
        assert [i.token.local_id for i in page.items] == expected[31:43], order


@pytest.mark.parametrize(
    "position",
    [
        "",
        "garbage",
        "0:x",
        "9:5",
        "2:5",
        "0:0",
        "0:99999999999",
        "0:1000001",
        "0:9999999",
        "0:5,",
        ":",
        "0:-1",
        "-1:5",
        "0:+5",
        "0:1e3",
        "0:5,0:6",
        "0:5,1:6,0:7",
        "0:\u0665",
    ],
)
async def test_a_hint_no_walk_can_make_is_refused_before_any_request(
    walk_sim: tuple[LosantSimState, str], http: httpx.AsyncClient, position: str
) -> None:
    state, url = walk_sim
    source = make_source(url, http)
    state.control.requests.clear()
    for order in ORDERS:
        expected = expected_ids(state, TokenFilter(), order)
        after_token = next(t for t in sim_tokens(state) if t.local_id == expected[30])
        after = ordering.sort_key(after_token, order.field)
        with pytest.raises(errors.InvalidCursor):
            await source.list_page(PageRequest(TokenFilter(), order, 12, after, position))
    assert state.control.requests == []


async def test_stale_hint_after_deletes_and_creates(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    source = make_source(url, http)
    for order in [o for o in ORDERS if o.field is not OrderField.NAME]:
        fresh = _walk_state()
        state.applications = fresh.applications
        first = await source.list_page(PageRequest(TokenFilter(), order, 25))
        last = first.items[-1]
        after = ordering.sort_key(last.token, order.field)
        # Tokens before the cursor vanish (offsets shrink), new ones arrive.
        consumed = {i.token.external_id for i in first.items[:20]}
        for app in state.applications.values():
            app[:] = [t for t in app if t["id"] not in consumed]
        for n in range(3):
            await source.create(CreateSpec(name=f"new {n}", application_id=APP1))
        page = await source.list_page(PageRequest(TokenFilter(), order, 50, after, last.position))
        expected = expected_ids(state, TokenFilter(), order)
        start = expected.index(last.token.local_id) + 1
        assert [i.token.local_id for i in page.items] == expected[start : start + 50], order


@pytest.mark.parametrize(
    ("after", "direction", "all_ours_follow"),
    [
        (SortKey(None, "amper", "x/y"), Direction.ASC, True),
        (SortKey(None, "zzz", "x/y"), Direction.ASC, False),
        (SortKey(None, "amper", "x/y"), Direction.DESC, False),
        (SortKey(None, "zzz", "x/y"), Direction.DESC, True),
        (SortKey(datetime(2020, 1, 1, tzinfo=UTC), "amper", "x"), Direction.ASC, True),
        (SortKey(datetime(2020, 1, 1, tzinfo=UTC), "zzz", "x"), Direction.DESC, False),
    ],
    ids=["null-before-us", "null-after-us", "desc-null", "desc-null-2", "used", "desc-used"],
)
async def test_last_used_walk_after_another_sources_key(
    walk_sim: tuple[LosantSimState, str],
    http: httpx.AsyncClient,
    after: SortKey,
    direction: Direction,
    all_ours_follow: bool,
) -> None:
    """No Losant token has a last use: after another source's token (with a last use, or
    none and its own key) either all of ours follow, or none does."""
    state, url = walk_sim
    order = TokenOrder(OrderField.LAST_USED_AT, direction)
    page = await make_source(url, http).list_page(PageRequest(TokenFilter(), order, 5, after))
    ids = [i.token.local_id for i in page.items]
    if all_ours_follow:
        assert ids == expected_ids(state, TokenFilter(), order)[:5]
        assert page.has_more
    else:
        assert (ids, page.has_more) == ([], False)
    assert page.total_count == WALK_COUNT


async def test_a_cursor_of_another_order_is_refused(
    walk_sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    _, url = walk_sim
    source = make_source(url, http)
    cases: list[tuple[OrderField, SortValue]] = [
        (OrderField.CREATED_AT, "a name"),
        (OrderField.NAME, datetime(2020, 1, 1, tzinfo=UTC)),
        (OrderField.LAST_USED_AT, "x"),
        (OrderField.LAST_USED_AT, datetime(2020, 1, 1)),  # naive
        (OrderField.EXPIRES_AT, datetime(2020, 1, 1)),  # naive
    ]
    for order_field, value in cases:
        after = SortKey(value, KEY, f"{APP1}/{MISSING_TOKEN}")
        with pytest.raises(errors.InvalidCursor):
            await source.list_page(PageRequest(TokenFilter(), TokenOrder(order_field), 5, after))
    with pytest.raises(errors.InvalidInput):
        await source.list_page(PageRequest(TokenFilter(), TokenOrder(), -1))


# -- out-of-order and broken upstreams ------------------------------------------------------

Edit = Callable[[Request, int, Any], tuple[int, Any]]


@pytest.fixture(scope="module")
def _proxy_server(
    _mutable_sim: tuple[LosantSimState, str],
) -> Iterator[tuple[str, list[Edit]]]:
    state, _ = _mutable_sim
    inner = build_app(state)
    edits: list[Edit] = []

    async def forward(request: Request) -> Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=inner), base_url="http://sim"
        ) as client:
            answer = await client.request(
                request.method,
                request.url.path,
                params=request.query_params,
                content=await request.body(),
                headers={k: v for k, v in request.headers.items() if k != "host"},
            )
        body: Any = answer.json() if answer.content else None
        status = answer.status_code
        for edit in edits:
            status, body = edit(request, status, body)
        return Response(json.dumps(body), status_code=status, media_type="application/json")

    app = Starlette(
        routes=[Route("/{path:path}", forward, methods=["GET", "POST", "PATCH", "DELETE"])]
    )
    with serve_in_thread(app) as url:
        yield url, edits


@pytest.fixture
def proxy(
    sim: tuple[LosantSimState, str], _proxy_server: tuple[str, list[Edit]]
) -> Callable[[Edit], str]:
    """A loopback upstream that forwards to the (fresh) simulator and lets a test edit its
    answers: ``proxy(edit)`` installs ``edit`` and returns the upstream's URL."""
    url, edits = _proxy_server
    edits.clear()

    def start(edit: Edit) -> str:
        edits.append(edit)
        return url

    return start


def _reverse_dates(request: Request, status: int, body: Any) -> tuple[int, Any]:
    if request.query_params.get("sortField") in {"creationDate", "expirationDate"}:
        body["items"].reverse()
    return status, body


@pytest.mark.parametrize("order", ORDERS, ids=ORDER_IDS)
async def test_upstream_out_of_order_falls_back_to_a_whole_read(
    sim: tuple[LosantSimState, str],
    proxy: Callable[[Edit], str],
    http: httpx.AsyncClient,
    order: TokenOrder,
) -> None:
    state, _ = sim
    url = proxy(_reverse_dates)
    ids, pages = await walk(make_source(url, http), TokenFilter(), order, 12)
    assert ids == expected_ids(state, TokenFilter(), order)
    if order.field in {OrderField.CREATED_AT, OrderField.EXPIRES_AT}:
        assert all(p.total_count == WALK_COUNT for p in pages)
        assert any("sortField=id" in r.query for r in state.control.requests)


def _lying_total(request: Request, status: int, body: Any) -> tuple[int, Any]:
    if request.method == "GET" and "items" in body:
        body["totalCount"] += 15
    return status, body


@pytest.mark.parametrize("direction", list(Direction))
async def test_a_total_count_that_does_not_fit_the_pages_is_survived(
    sim: tuple[LosantSimState, str],
    proxy: Callable[[Edit], str],
    http: httpx.AsyncClient,
    direction: Direction,
) -> None:
    state, _ = sim
    url = proxy(_lying_total)
    order = TokenOrder(OrderField.EXPIRES_AT, direction)
    ids, _ = await walk(make_source(url, http), TokenFilter(), order, 9)
    assert ids == expected_ids(state, TokenFilter(), order)


def _no_total(request: Request, status: int, body: Any) -> tuple[int, Any]:
    if request.method == "GET" and "items" in body:
        del body["totalCount"]
    return status, body


@pytest.mark.parametrize("order", ORDERS, ids=ORDER_IDS)
async def test_pages_without_a_total_count(
    sim: tuple[LosantSimState, str],
    proxy: Callable[[Edit], str],
    http: httpx.AsyncClient,
    order: TokenOrder,
) -> None:
    state, _ = sim
    url = proxy(_no_total)
    ids, pages = await walk(make_source(url, http), TokenFilter(), order, 9)
    assert ids == expected_ids(state, TokenFilter(), order)
    # Unknown, or exact where the call fell back to a whole read (nulls need totalCount).
    assert {p.total_count for p in pages} <= {None, WALK_COUNT}
    if order == TokenOrder(OrderField.LAST_USED_AT):
        assert {p.total_count for p in pages} == {None}


async def test_a_token_seen_on_two_pages_of_a_whole_read_is_listed_once(
    sim: tuple[LosantSimState, str], proxy: Callable[[Edit], str], http: httpx.AsyncClient
) -> None:
    last_of_page_zero: dict[str, Any] = {}

    def shift(request: Request, status: int, body: Any) -> tuple[int, Any]:
        """As if a token were deleted between two reads: page 1 repeats page 0's last."""
        path, page = request.url.path, request.query_params.get("page")
        if page == "0":
            last_of_page_zero[path] = body["items"][-1]
        elif page == "1":
            body["items"] = [last_of_page_zero[path], *body["items"][:-1]]
        return status, body

    url = proxy(shift)
    order = TokenOrder(OrderField.NAME)
    page = await make_source(url, http).list_page(PageRequest(TokenFilter(), order, WALK_COUNT))
    ids = [i.token.local_id for i in page.items]
    assert len(ids) == len(set(ids))
    # Each application's tenth token (sortField=id) was pushed off page 1 by the repeat.
    assert len(ids) == WALK_COUNT - 2


@pytest.mark.parametrize("order", ORDERS, ids=ORDER_IDS)
async def test_empty_application_and_tokens_without_any_expiry(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient, order: TokenOrder
) -> None:
    state, url = sim
    state.applications[APP2] = []
    for raw in state.applications[APP1]:
        raw.pop("expirationDate", None)
    for backward in (False, True):
        ids, pages = await walk(make_source(url, http), TokenFilter(), order, 11, backward=backward)
        assert ids == expected_ids(state, TokenFilter(), order)
        assert pages[0].total_count == len(state.applications[APP1])
    empty = make_source(url, http, apps=(APP2,))
    page = await empty.list_page(PageRequest(TokenFilter(), order, 5))
    assert (list(page.items), page.has_more, page.total_count) == ([], False, 0)


def _sort_echo(request: Request, status: int, body: Any) -> tuple[int, Any]:
    if request.method == "GET" and "items" in body:
        body["sortField"] = "name"
    return status, body


async def test_a_sort_echo_that_differs_means_a_whole_read(
    sim: tuple[LosantSimState, str], proxy: Callable[[Edit], str], http: httpx.AsyncClient
) -> None:
    state, _ = sim
    url = proxy(_sort_echo)
    order = TokenOrder(OrderField.CREATED_AT, Direction.DESC)
    ids, _ = await walk(make_source(url, http), TokenFilter(), order, 20)
    assert ids == expected_ids(state, TokenFilter(), order)
    assert any("sortField=id" in r.query for r in state.control.requests)


@pytest.mark.parametrize(
    "edit",
    [
        lambda body: body.update(page=body["page"] + 1),
        lambda body: body.update(perPage=5),
        lambda body: body.update(count=body["count"] + 1),
        lambda body: (
            body["items"].append(dict(body["items"][0], id="f" * 24, apiTokenId="f" * 24))
            if body["items"]
            else None
        ),
        lambda body: body.update(items=None),
        lambda body: body["items"][0].update(creationDate="13/06/2016") if body["items"] else None,
    ],
    ids=["wrong-page", "wrong-per-page", "wrong-count", "page-too-long", "no-items", "bad-date"],
)
async def test_list_bodies_that_break_the_schema_are_bad_responses(
    proxy: Callable[[Edit], str], http: httpx.AsyncClient, edit: Callable[[Any], None]
) -> None:
    def apply(request: Request, status: int, body: Any) -> tuple[int, Any]:
        if request.method == "GET":
            edit(body)
        return status, body

    url = proxy(apply)
    with pytest.raises(errors.BadUpstreamResponse) as caught:
        await make_source(url, http).list_page(PageRequest(TokenFilter(), TokenOrder(), 5))
    assert caught.value.source == KEY
    assert API_TOKEN not in caught.value.message
    assert "13/06/2016" not in caught.value.message


def _ten_dated_items(bad_index: int) -> Edit:
    """A list answer of ten tokens with distinct, rising creation dates (one page at
    WALK_PER_PAGE), the one at ``bad_index`` nameless (which the schema forbids)."""

    def apply(request: Request, status: int, body: Any) -> tuple[int, Any]:
        if request.method == "GET" and body.get("items"):
            template = body["items"][0]
            items = []
            for i in range(10):
                token_id = f"{i + 1:024x}"
                item = dict(
                    template, id=token_id, creationDate=f"2020-01-{i + 1:02d}T00:00:00.000Z"
                )
                if "apiTokenId" in item:
                    item["apiTokenId"] = token_id
                item.pop("expirationDate", None)
                if i == bad_index:
                    item["name"] = ""
                items.append(item)
            body.update(items=items, count=10, totalCount=10, page=0, perPage=WALK_PER_PAGE)
        return status, body

    return apply


async def test_items_a_page_does_not_need_are_not_judged(
    proxy: Callable[[Edit], str], http: httpx.AsyncClient
) -> None:
    # The walk settles three tokens early in the upstream page and reads no further, so a
    # broken item at its end does not fail the page.
    url = proxy(_ten_dated_items(bad_index=9))
    source = make_source(url, http, apps=(APP1,))
    order = TokenOrder(OrderField.CREATED_AT, Direction.ASC)
    page = await source.list_page(PageRequest(TokenFilter(), order, 2))
    assert [item.token.external_id for item in page.items] == [f"{i:024x}" for i in (1, 2)]
    assert page.has_more


async def test_a_broken_item_a_page_needs_is_a_bad_response(
    proxy: Callable[[Edit], str], http: httpx.AsyncClient
) -> None:
    url = proxy(_ten_dated_items(bad_index=9))
    source = make_source(url, http, apps=(APP1,))
    order = TokenOrder(OrderField.CREATED_AT, Direction.ASC)
    with pytest.raises(errors.BadUpstreamResponse, match="item 9") as caught:
        await source.list_page(PageRequest(TokenFilter(), order, 9))
    assert caught.value.source == KEY


async def test_a_schema_violating_token_in_the_simulator(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    state.applications[APP2][3]["status"] = "revoked"
    with pytest.raises(errors.BadUpstreamResponse, match="'status'"):
        await make_source(url, http).list_page(PageRequest(TokenFilter(), TokenOrder(), 5))


async def test_unknown_configured_application_is_unavailable(
    walk_sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    _, url = walk_sim
    source = make_source(url, http, apps=(APP1, OTHER_APP))
    with pytest.raises(errors.UpstreamUnavailable, match=OTHER_APP):
        await source.list_page(PageRequest(TokenFilter(), TokenOrder(), 5))
    with pytest.raises(errors.UpstreamUnavailable, match=OTHER_APP):
        await source.create(CreateSpec(name="n", application_id=OTHER_APP))


async def test_too_many_tokens_to_read_whole_fails_the_source(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = sim
    monkeypatch.setattr("tokengate.upstreams.losant.client.MAX_TOKENS_READ", 20)
    assert MAX_TOKENS_READ > 20
    with pytest.raises(errors.UpstreamUnavailable, match="more than 20 tokens"):
        await make_source(url, http).list_page(
            PageRequest(TokenFilter(), TokenOrder(OrderField.NAME), 5)
        )


# -- single tokens --------------------------------------------------------------------------


async def test_get_many_concurrent_gets(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    wanted = [f"{APP1}/{t['id']}" for t in state.applications[APP1][:4]]
    wanted += [f"{APP2.upper()}/{state.applications[APP2][0]['id'].upper()}"]
    asked = [
        *wanted,
        wanted[0],  # twice
        f"{APP1}/{MISSING_TOKEN}",  # missing
        f"{OTHER_APP}/{MISSING_TOKEN}",  # not our application
        "not-an-id",
        f"{APP1}/../tokens",
    ]
    state.control.latency_ms = 300
    started = time.monotonic()
    found = await make_source(url, http).get_many(asked)
    elapsed = time.monotonic() - started
    assert set(found) == set(wanted)
    assert found[wanted[-1]].local_id == wanted[-1].lower()
    assert found[wanted[0]].local_id == wanted[0]
    # Six distinct valid ids of ours, one GET each, all at once.
    assert state.control.count("GET") == 6
    assert elapsed < 1.2
    secrets = {raw["token"] for raws in state.applications.values() for raw in raws}
    assert not any(s in repr(found) for s in secrets)


async def test_get_many_of_nothing_asks_nothing(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    assert await make_source(url, http).get_many(["x", f"{OTHER_APP}/{MISSING_TOKEN}"]) == {}
    assert state.control.requests == []


async def test_get_many_fails_when_one_get_fails(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    state.control.set_faults([{"kind": "status", "status": 503, "every": 2}])
    ids = [f"{APP1}/{t['id']}" for t in state.applications[APP1][:4]]
    with pytest.raises(errors.UpstreamUnavailable):
        await make_source(url, http).get_many(ids)


async def test_create_update_revoke_round_trip(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    source = make_source(url, http)
    expires = datetime.now(UTC) + timedelta(days=30)
    created = await source.create(
        CreateSpec(
            name="Deploy bot",
            description="CI",
            scopes=("device.get", "devices.get"),
            expires_at=expires,
            application_id=APP2.upper(),
        )
    )
    token = created.token
    raw = state.applications[APP2][-1]
    assert created.secret == raw["token"]
    assert created.secret not in repr(created)
    assert token.local_id == f"{APP2}/{raw['id']}"
    assert (token.name, token.description, token.scopes) == (
        "Deploy bot",
        "CI",
        ("device.get", "devices.get"),
    )
    assert token.status is Status.ACTIVE
    assert token.owner == Owner(OwnerKind.APPLICATION, APP2)
    assert token.expires_at == expires.replace(microsecond=expires.microsecond // 1000 * 1000)
    posted = state.control.requests[-1]
    assert (posted.method, posted.path) == ("POST", f"/applications/{APP2}/tokens")
    assert posted.headers["content-type"] == "application/json"

    updated = await source.update(
        token.local_id, UpdateSpec(name="Renamed", status=Status.INACTIVE)
    )
    assert (updated.name, updated.status) == ("Renamed", Status.INACTIVE)
    assert updated.updated_at is not None and updated.created_at is not None
    assert (await source.get_many([token.local_id]))[token.local_id] == updated

    await source.revoke(token.local_id)
    assert await source.get_many([token.local_id]) == {}
    with pytest.raises(errors.NotFound):
        await source.revoke(token.local_id)
    with pytest.raises(errors.NotFound):
        await source.update(token.local_id, UpdateSpec(name="x"))


async def test_create_in_the_only_application_needs_no_id(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    created = await make_source(url, http, apps=(APP1,)).create(CreateSpec(name="n"))
    assert created.token.local_id.startswith(APP1 + "/")
    assert state.applications[APP1][-1]["id"] == created.token.external_id


@pytest.mark.parametrize(
    ("spec", "argument"),
    [
        (CreateSpec(name="n"), "applicationId"),
        (CreateSpec(name="n", application_id=OTHER_APP), "applicationId"),
        (CreateSpec(name="n", application_id="../x"), "applicationId"),
        (CreateSpec(name="n", application_id=APP1, subject="u1"), "subject"),
        (
            CreateSpec(name="n", application_id=APP1, allowed_sources=frozenset({"x"})),
            "allowedSources",
        ),
        (CreateSpec(name="", application_id=APP1), "name"),
    ],
)
async def test_create_refusals_ask_nothing(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient, spec: CreateSpec, argument: str
) -> None:
    state, url = sim
    with pytest.raises(errors.InvalidInput) as caught:
        await make_source(url, http).create(spec)
    assert caught.value.argument == argument
    assert state.control.requests == []


async def test_create_rejected_by_losant_is_invalid_input(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    _, url = sim
    with pytest.raises(errors.InvalidInput, match=r"\(Validation\)") as caught:
        await make_source(url, http).create(
            CreateSpec(name="n", scopes=("all.Everything",), application_id=APP1)
        )
    assert "all.Everything" not in caught.value.message


@pytest.mark.parametrize(
    ("local_id", "spec", "error"),
    [
        ("not-an-id", UpdateSpec(name="x"), errors.InvalidInput),
        (f"{APP1}/..%2f", UpdateSpec(name="x"), errors.InvalidInput),
        (f"{APP1}/{MISSING_TOKEN}?x=1", UpdateSpec(name="x"), errors.InvalidInput),
        (f"{OTHER_APP}/{MISSING_TOKEN}", UpdateSpec(name="x"), errors.NotFound),
        (f"{APP1}/{MISSING_TOKEN}", UpdateSpec(status=Status.REVOKED), errors.InvalidInput),
        (f"{APP1}/{MISSING_TOKEN}", UpdateSpec(status=Status.EXPIRED), errors.InvalidInput),
        (f"{APP1}/{MISSING_TOKEN}", UpdateSpec(), errors.InvalidInput),
    ],
)
async def test_update_refusals_ask_nothing(
    sim: tuple[LosantSimState, str],
    http: httpx.AsyncClient,
    local_id: str,
    spec: UpdateSpec,
    error: type[Exception],
) -> None:
    state, url = sim
    with pytest.raises(error):
        await make_source(url, http).update(local_id, spec)
    assert state.control.requests == []


@pytest.mark.parametrize(
    ("local_id", "error"),
    [
        ("not-an-id", errors.InvalidInput),
        (f"{APP1}/../{MISSING_TOKEN}", errors.InvalidInput),
        (f"{APP1}/{MISSING_TOKEN}#", errors.InvalidInput),
        (f"{OTHER_APP}/{MISSING_TOKEN}", errors.NotFound),
    ],
)
async def test_revoke_refusals_ask_nothing(
    sim: tuple[LosantSimState, str],
    http: httpx.AsyncClient,
    local_id: str,
    error: type[Exception],
) -> None:
    state, url = sim
    with pytest.raises(error):
        await make_source(url, http).revoke(local_id)
    assert state.control.requests == []


async def test_update_and_revoke_of_a_missing_token_are_not_found(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    _, url = sim
    source = make_source(url, http)
    with pytest.raises(errors.NotFound):
        await source.update(f"{APP1}/{MISSING_TOKEN}", UpdateSpec(name="x"))
    with pytest.raises(errors.NotFound):
        await source.revoke(f"{APP1}/{MISSING_TOKEN}")


async def test_patch_rejected_by_losant_is_invalid_input(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    state.control.set_faults([{"kind": "status", "status": 400, "method": "PATCH"}])
    local_id = f"{APP1}/{state.applications[APP1][0]['id']}"
    with pytest.raises(errors.InvalidInput, match="no error type"):
        await make_source(url, http).update(local_id, UpdateSpec(name="x"))


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, {"success": False}), (200, {}), (202, {"success": True})],
)
async def test_delete_without_the_documented_success_is_a_bad_response(
    sim: tuple[LosantSimState, str],
    proxy: Callable[[Edit], str],
    http: httpx.AsyncClient,
    status: int,
    body: Any,
) -> None:
    state, _ = sim
    url = proxy(lambda r, s, b: (status, body) if r.method == "DELETE" else (s, b))
    local_id = f"{APP1}/{state.applications[APP1][0]['id']}"
    with pytest.raises(errors.BadUpstreamResponse):
        await make_source(url, http).revoke(local_id)


async def test_a_get_answering_another_token_is_a_bad_response(
    sim: tuple[LosantSimState, str], proxy: Callable[[Edit], str], http: httpx.AsyncClient
) -> None:
    state, _ = sim
    other = state.applications[APP1][1]
    url = proxy(lambda r, s, b: (s, other) if r.method == "GET" else (s, b))
    with pytest.raises(errors.BadUpstreamResponse, match="another token"):
        await make_source(url, http).get_many([f"{APP1}/{state.applications[APP1][0]['id']}"])


async def test_a_created_token_without_its_secret_is_a_bad_response(
    proxy: Callable[[Edit], str], http: httpx.AsyncClient
) -> None:
    def drop(request: Request, status: int, body: Any) -> tuple[int, Any]:
        if request.method == "POST":
            body.pop("token")
        return status, body

    url = proxy(drop)
    with pytest.raises(errors.BadUpstreamResponse, match="'token'"):
        await make_source(url, http).create(CreateSpec(name="n", application_id=APP1))


# -- failures at the edge -------------------------------------------------------------------

OPERATIONS: dict[str, Callable[[LosantSource, LosantSimState], Any]] = {
    "list": lambda s, st: s.list_page(PageRequest(TokenFilter(), TokenOrder(), 5)),
    "list-by-name": lambda s, st: s.list_page(
        PageRequest(TokenFilter(), TokenOrder(OrderField.NAME), 5)
    ),
    "get_many": lambda s, st: s.get_many([f"{APP1}/{st.applications[APP1][0]['id']}"]),
    "create": lambda s, st: s.create(CreateSpec(name="n", application_id=APP1)),
    "update": lambda s, st: s.update(
        f"{APP1}/{st.applications[APP1][0]['id']}", UpdateSpec(name="n")
    ),
    "revoke": lambda s, st: s.revoke(f"{APP1}/{st.applications[APP1][0]['id']}"),
}


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"kind": "status", "status": 401}, errors.UpstreamUnauthorized),
        ({"kind": "status", "status": 403}, errors.UpstreamUnauthorized),
        ({"kind": "status", "status": 429, "retry_after": 7}, errors.UpstreamRateLimited),
        ({"kind": "status", "status": 500}, errors.UpstreamUnavailable),
        ({"kind": "status", "status": 502}, errors.UpstreamUnavailable),
        ({"kind": "status", "status": 503}, errors.UpstreamUnavailable),
        ({"kind": "status", "status": 409}, errors.BadUpstreamResponse),
        ({"kind": "reset"}, errors.UpstreamUnavailable),
        ({"kind": "malformed"}, errors.BadUpstreamResponse),
        ({"kind": "hang", "hang_s": 0.6}, errors.UpstreamTimeout),
    ],
    ids=lambda v: str(v.get("status", v.get("kind"))) if isinstance(v, dict) else v.__name__,
)
async def test_upstream_failures_are_translated(
    sim: tuple[LosantSimState, str],
    http: httpx.AsyncClient,
    fault: dict[str, Any],
    error: type[errors.UpstreamError],
) -> None:
    state, url = sim
    state.control.set_faults([fault])
    source = make_source(url, http, timeout_s=0.2)
    for operation, call in OPERATIONS.items():
        with pytest.raises(error) as caught:
            await call(source, state)
        assert type(caught.value) is error, operation
        assert caught.value.source == KEY
        assert API_TOKEN not in caught.value.message
        assert "simulated" not in caught.value.message  # no upstream body
        if isinstance(caught.value, errors.UpstreamRateLimited):
            assert caught.value.retry_after_s == 7
        if fault.get("status", 0) >= 500:
            assert caught.value.status == fault["status"]


async def test_a_400_without_a_json_body_on_create(
    proxy: Callable[[Edit], str], http: httpx.AsyncClient
) -> None:
    url = proxy(lambda r, s, b: (400, "<html>") if r.method == "POST" else (s, b))
    with pytest.raises(errors.InvalidInput, match="no error type"):
        await make_source(url, http).create(CreateSpec(name="n", application_id=APP1))


async def test_a_malformed_single_token_is_a_bad_response(
    sim: tuple[LosantSimState, str], proxy: Callable[[Edit], str], http: httpx.AsyncClient
) -> None:
    state, _ = sim
    url = proxy(lambda r, s, b: (s, {**b, "scope": "all"}) if r.method == "PATCH" else (s, b))
    local_id = f"{APP1}/{state.applications[APP1][0]['id']}"
    with pytest.raises(errors.BadUpstreamResponse, match="'scope'"):
        await make_source(url, http).update(local_id, UpdateSpec(name="x"))


async def test_an_unreadable_response_is_a_bad_response() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.DecodingError("garbled", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(broken)) as client:
        source = make_source("http://upstream.invalid", client)
        with pytest.raises(errors.BadUpstreamResponse, match="unreadable"):
            await source.list_page(PageRequest(TokenFilter(), TokenOrder(), 5))


async def test_a_400_on_a_list_is_a_bad_response(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    state.control.set_faults([{"kind": "status", "status": 400}])
    with pytest.raises(errors.BadUpstreamResponse, match="refused the list request"):
        await make_source(url, http).list_page(PageRequest(TokenFilter(), TokenOrder(), 5))


async def test_wrong_api_token_is_unauthorized(
    walk_sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    _, url = walk_sim
    source = make_source(url, http, token="wrong-token")
    with pytest.raises(errors.UpstreamUnauthorized) as caught:
        await source.list_page(PageRequest(TokenFilter(), TokenOrder(), 5))
    assert "wrong-token" not in caught.value.message


async def test_nothing_listening_is_unavailable(http: httpx.AsyncClient) -> None:
    source = make_source(f"http://127.0.0.1:{free_port()}", http)
    with pytest.raises(errors.UpstreamUnavailable):
        await source.list_page(PageRequest(TokenFilter(), TokenOrder(), 5))


async def test_bearer_header_and_absolute_urls(
    sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request)

    async with httpx.AsyncClient(trust_env=False, event_hooks={"request": [record]}) as client:
        await make_source(url + "/", client, apps=(APP1,)).list_page(
            PageRequest(TokenFilter(), TokenOrder(OrderField.EXPIRES_AT, Direction.DESC), 5)
        )
    assert seen
    for request in seen:
        assert request.headers["authorization"] == f"Bearer {API_TOKEN}"
        assert str(request.url).startswith(f"{url}/applications/{APP1}/tokens?")
        assert "sortField=expirationDate&sortDirection=desc" in str(request.url)
        assert "perPage=10" in str(request.url)
    assert len(state.control.requests) == len(seen)


async def test_concurrent_list_pages_share_nothing(
    walk_sim: tuple[LosantSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = walk_sim
    source = make_source(url, http)
    pages = await asyncio.gather(
        *(source.list_page(PageRequest(TokenFilter(), order, 9)) for order in ORDERS)
    )
    for order, page in zip(ORDERS, pages, strict=True):
        assert [i.token.local_id for i in page.items] == expected_ids(state, TokenFilter(), order)[
            :9
        ]


def test_retry_after_parsing() -> None:
    assert retry_after_seconds(None) is None
    assert retry_after_seconds(" 12 ") == 12.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00") is None  # no zone
    later = datetime.now(UTC) + timedelta(seconds=90)
    parsed = retry_after_seconds(format_datetime(later, usegmt=True))
    assert parsed is not None and 80 <= parsed <= 90
    assert retry_after_seconds(format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True)) == 0
