"""OAuthSource over loopback HTTP against the simulator and a few deliberately broken apps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
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

import tokengate.upstreams.oauth
from tokengate.upstreams import errors, ordering
from tokengate.upstreams.base import TokenSource
from tokengate.upstreams.loopback import free_port, serve_in_thread
from tokengate.upstreams.model import (
    CreateSpec,
    Direction,
    OrderField,
    PageRequest,
    Provider,
    SourcePage,
    Status,
    Token,
    TokenFilter,
    TokenOrder,
    UpdateSpec,
)
from tokengate.upstreams.oauth import OAuthSource
from tokengate.upstreams.oauth.client import retry_after_seconds
from tokengate.upstreams.oauth.normalise import local_id_for, normalise_token
from tokengate.upstreams.oauth.simulator import (
    ODD_USER,
    VANISHED_USER,
    WALK_USER,
    OAuthSimState,
    build_app,
    sample_state,
)

KEY = "idp"
CLIENT_ID = "gateway-client"
CLIENT_SECRET = "s3cr3t-Value-that-must-not-leak"
WALK_COUNT = 64
API = "/oauth/api/v1/users/"
MISSING_UUID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def walk_sim() -> Iterator[tuple[OAuthSimState, str]]:
    """Read-only: shared by every walk and filter test of this module."""
    state = sample_state(WALK_COUNT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with serve_in_thread(build_app(state)) as url:
        yield state, url


def _fresh_state() -> OAuthSimState:
    return sample_state(12, seed=7, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


@pytest.fixture(scope="module")
def _mutable_sim() -> Iterator[tuple[OAuthSimState, str]]:
    state = _fresh_state()
    with serve_in_thread(build_app(state)) as url:
        yield state, url


@pytest.fixture
def sim(_mutable_sim: tuple[OAuthSimState, str]) -> tuple[OAuthSimState, str]:
    """A simulator reset to fresh data, no faults and an empty log: for tests that revoke,
    inject faults or add latency. One server for the module; the state is reset in place."""
    state, url = _mutable_sim
    state.users = _fresh_state().users
    state.control.faults = []
    state.control.latency_ms = 0.0
    state.control.requests.clear()
    return state, url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def make_source(
    url: str, http: httpx.AsyncClient, *, secret: str = CLIENT_SECRET, timeout_s: float = 5.0
) -> OAuthSource:
    return OAuthSource(
        key=KEY,
        name="Corporate IdP",
        base_url=url,
        client=http,
        client_id=CLIENT_ID,
        client_secret=secret,
        timeout_s=timeout_s,
    )


def expected_tokens(state: OAuthSimState, user_id: str, flt: TokenFilter) -> list[Token]:
    """The simulator's own data for ``user_id``, normalised and filtered, in no order."""
    now = datetime.now(UTC)
    tokens = [
        normalise_token(t.to_json(), source=KEY, user_id=user_id, now=now)
        for t in state.listed(user_id)
    ]
    return [t for t in tokens if ordering.matches(t, flt)]


def expected_ids(
    state: OAuthSimState, user_id: str, flt: TokenFilter, order: TokenOrder
) -> list[str]:
    return [t.local_id for t in ordering.order_tokens(expected_tokens(state, user_id, flt), order)]


async def walk(
    source: OAuthSource, flt: TokenFilter, order: TokenOrder, size: int, *, backward: bool
) -> list[str]:
    """Every page of a walk, following the contract's cursor rules; ids in walk order."""
    seen: list[str] = []
    after = None
    position = None
    for _ in range(500):
        page = await source.list_page(
            PageRequest(flt, order, size, after=after, position=position, backward=backward)
        )
        assert len(page.items) <= size
        assert page.items or not seen, "has_more promised an item that never came"
        seen.extend(item.token.local_id for item in page.items)
        if not page.has_more:
            return seen
        last = page.items[-1]
        after = ordering.sort_key(last.token, order.field)
        position = last.position
    raise AssertionError("the walk never ended")


def test_exports_are_pinned() -> None:
    assert tokengate.upstreams.oauth.__all__ == ["OAuthSource"]


async def test_is_a_token_source(http: httpx.AsyncClient) -> None:
    source: TokenSource = make_source("http://127.0.0.1:9", http)
    assert source.provider is Provider.OAUTH
    assert source.key == KEY
    assert source.name == "Corporate IdP"
    caps = source.capabilities
    assert (caps.can_create, caps.can_update, caps.can_revoke) == (False, False, True)
    assert caps.native_sort_fields == frozenset()
    assert caps.can_count
    assert caps.needs_user_filter
    await source.aclose()
    assert not http.is_closed, "the app owns the shared client"


async def test_credentials_stay_out_of_repr(http: httpx.AsyncClient) -> None:
    text = repr(make_source("http://127.0.0.1:9", http))
    assert CLIENT_SECRET not in text
    assert "Basic" not in text
    assert KEY in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"base_url": "idp.example.com"}, "absolute", id="relative-base-url"),
        pytest.param({"base_url": "ftp://idp.example.com"}, "absolute", id="ftp-base-url"),
        pytest.param({"client_id": "a:b"}, "':'", id="colon-in-client-id"),
    ],
)
async def test_constructor_refuses_bad_config(
    http: httpx.AsyncClient, kwargs: dict[str, str], message: str
) -> None:
    config: dict[str, Any] = {
        "key": KEY,
        "name": "n",
        "base_url": "https://idp.example.com",
        "client": http,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        OAuthSource(**config)


@pytest.mark.slow
@pytest.mark.parametrize("size", [1, 7, 50])
@pytest.mark.parametrize("direction", list(Direction))
@pytest.mark.parametrize("field", list(OrderField))
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
async def test_exhaustive_walks(
    walk_sim: tuple[OAuthSimState, str],
    http: httpx.AsyncClient,
    field: OrderField,
    direction: Direction,
    size: int,
    backward: bool,
) -> None:
    state, url = walk_sim
    flt = TokenFilter(user_id=WALK_USER)
    order = TokenOrder(field, direction)
    got = await walk(make_source(url, http), flt, order, size, backward=backward)
    expected = expected_ids(state, WALK_USER, flt, order)
    assert len(expected) == WALK_COUNT
    assert len(set(got)) == len(got), "a token came twice"
    assert (list(reversed(got)) if backward else got) == expected


async def test_walks_cross_an_upstream_order_that_is_not_the_gateways(
    walk_sim: tuple[OAuthSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = walk_sim
    flt = TokenFilter(user_id=WALK_USER)
    order = TokenOrder(OrderField.CREATED_AT, Direction.ASC)
    upstream = [local_id_for(WALK_USER, t.id) for t in reversed(state.listed(WALK_USER))]
    # The proof is only worth something if the simulator's order differs from ours.
    assert upstream != expected_ids(state, WALK_USER, flt, order)
    page = await make_source(url, http).list_page(PageRequest(flt, order, WALK_COUNT))
    assert [i.token.local_id for i in page.items] == expected_ids(state, WALK_USER, flt, order)


async def test_ties_and_nulls_are_walked_by_local_id(
    walk_sim: tuple[OAuthSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = walk_sim
    flt = TokenFilter(user_id=WALK_USER)
    # OAuth tokens have no last use: every value is null, so local id alone orders them.
    page = await make_source(url, http).list_page(
        PageRequest(flt, TokenOrder(OrderField.LAST_USED_AT, Direction.DESC), WALK_COUNT)
    )
    ids = [i.token.local_id for i in page.items]
    assert ids == sorted(ids, reverse=True)
    created = [t.created_at for t in expected_tokens(state, WALK_USER, flt)]
    assert len(set(created)) < len(created), "the sample must hold created_at ties"


async def test_first_page_counts_and_flags(
    walk_sim: tuple[OAuthSimState, str], http: httpx.AsyncClient
) -> None:
    _, url = walk_sim
    flt = TokenFilter(user_id=WALK_USER)
    source = make_source(url, http)
    page = await source.list_page(PageRequest(flt, TokenOrder(), 10))
    assert (len(page.items), page.has_more, page.total_count) == (10, True, WALK_COUNT)
    whole = await source.list_page(PageRequest(flt, TokenOrder(), WALK_COUNT))
    assert (len(whole.items), whole.has_more) == (WALK_COUNT, False)
    none = await source.list_page(PageRequest(flt, TokenOrder(), 0))
    assert (none.items, none.has_more, none.total_count) == ([], True, WALK_COUNT)


def _created_range(state: OAuthSimState) -> tuple[datetime, datetime]:
    stamps = sorted({t.created_at for t in state.listed(WALK_USER)})
    low, high = stamps[1], stamps[-2]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + timedelta(milliseconds=low), epoch + timedelta(milliseconds=high)


@pytest.mark.parametrize(
    "case",
    [
        "statuses-default-keeps-expired",
        "expired-only",
        "active-only",
        "revoked-only",
        "name-glob-case-insensitive",
        "name-glob-question-mark",
        "scope",
        "created-range",
        "combined",
        "owner-user-same",
    ],
)
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
async def test_filters(
    walk_sim: tuple[OAuthSimState, str], http: httpx.AsyncClient, case: str, backward: bool
) -> None:
    state, url = walk_sim
    base = TokenFilter(user_id=WALK_USER)
    after, before = _created_range(state)
    raw = state.listed(WALK_USER)
    # Each expectation is also computed by hand from the raw simulator data.
    flt, by_hand = {
        "statuses-default-keeps-expired": (base, len(raw)),
        "expired-only": (
            replace(base, statuses=frozenset({Status.EXPIRED})),
            sum(bool(t.expired) for t in raw),
        ),
        "active-only": (
            replace(base, statuses=frozenset({Status.ACTIVE})),
            sum(not t.expired for t in raw),
        ),
        "revoked-only": (replace(base, statuses=frozenset({Status.REVOKED})), 0),
        "name-glob-case-insensitive": (
            replace(base, name_glob="acme*"),
            sum(t.client_name.lower().startswith("acme") for t in raw),
        ),
        "name-glob-question-mark": (
            replace(base, name_glob="?cme mobile"),
            sum(t.client_name.lower() == "acme mobile" for t in raw),
        ),
        "scope": (replace(base, scope="email"), sum("email" in t.scopes for t in raw)),
        "created-range": (
            replace(base, created_after=after, created_before=before),
            sum(after.timestamp() * 1000 < t.created_at < before.timestamp() * 1000 for t in raw),
        ),
        "combined": (
            replace(base, name_glob="*MOBILE", statuses=frozenset({Status.ACTIVE})),
            sum(t.client_name.lower().endswith("mobile") and not t.expired for t in raw),
        ),
        "owner-user-same": (replace(base, owner_user=WALK_USER), len(raw)),
    }[case]
    order = TokenOrder(OrderField.NAME, Direction.ASC)
    got = await walk(make_source(url, http), flt, order, 7, backward=backward)
    expected = expected_ids(state, WALK_USER, flt, order)
    assert len(expected) == by_hand
    assert (list(reversed(got)) if backward else got) == expected
    if case.startswith("name-glob"):
        assert {"Acme Mobile", "ACME mobile"} <= {t.client_name for t in raw}
    if case not in {"revoked-only", "statuses-default-keeps-expired", "owner-user-same"}:
        assert 0 < by_hand < len(raw), "a filter test must keep some tokens and drop some"
    page = await make_source(url, http).list_page(PageRequest(flt, order, 3))
    assert page.total_count == by_hand


async def test_owner_user_of_someone_else_lists_nothing_without_asking(
    sim: tuple[OAuthSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    flt = TokenFilter(user_id=WALK_USER, owner_user="mallory")
    page = await make_source(url, http).list_page(PageRequest(flt, TokenOrder(), 10))
    assert page == SourcePage(items=[], has_more=False, total_count=0)
    assert state.control.count() == 0


async def test_list_without_user_needs_the_filter(
    sim: tuple[OAuthSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    with pytest.raises(errors.InvalidInput, match="userId") as info:
        await make_source(url, http).list_page(PageRequest(TokenFilter(), TokenOrder(), 10))
    assert info.value.argument == "userId"
    assert state.control.count() == 0


@pytest.mark.parametrize("user_id", ["", "..", ".", "a\nb", "x" * 257])
async def test_list_refuses_bad_user_ids_before_any_request(
    sim: tuple[OAuthSimState, str], http: httpx.AsyncClient, user_id: str
) -> None:
    state, url = sim
    source = make_source(url, http)
    with pytest.raises(errors.InvalidInput):
        await source.list_page(PageRequest(TokenFilter(user_id=user_id), TokenOrder(), 10))
    # Refused even when the caller's binding would have emptied the page anyway.
    bound = TokenFilter(user_id=user_id, owner_user="someone-else")
    with pytest.raises(errors.InvalidInput):
        await source.list_page(PageRequest(bound, TokenOrder(), 10))
    assert state.control.count() == 0


async def test_negative_limit_is_refused(
    sim: tuple[OAuthSimState, str], http: httpx.AsyncClient
) -> None:
    _, url = sim
    with pytest.raises(errors.InvalidInput):
        await make_source(url, http).list_page(
            PageRequest(TokenFilter(user_id=WALK_USER), TokenOrder(), -1)
        )


@pytest.mark.parametrize(
    "user_id", [VANISHED_USER, "nobody@example.com"], ids=["vanished", "unknown"]
)
async def test_404_no_tokens_found_is_an_empty_list(
    sim: tuple[OAuthSimState, str], http: httpx.AsyncClient, user_id: str
) -> None:
    state, url = sim
    page = await make_source(url, http).list_page(
        PageRequest(TokenFilter(user_id=user_id), TokenOrder(), 10)
    )
    assert page == SourcePage(items=[], has_more=False, total_count=0)
    assert state.control.count("GET") == 1


async def test_user_id_is_percent_encoded(
    sim: tuple[OAuthSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    source = make_source(url, http)
    page = await source.list_page(PageRequest(TokenFilter(user_id=ODD_USER), TokenOrder(), 10))
    assert len(page.items) == 3
    assert {i.token.external_id for i in page.items} == {t.id for t in state.listed(ODD_USER)}
    assert all(i.token.owner is not None and i.token.owner.id == ODD_USER for i in page.items)
    ids = [i.token.local_id for i in page.items]
    assert (await source.get_many(ids)).keys() == set(ids)
    await source.revoke(ids[0])
    assert len(state.listed(ODD_USER)) == 2


async def test_every_page_reads_the_list_again(
    sim: tuple[OAuthSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    source = make_source(url, http)
    flt = TokenFilter(user_id=WALK_USER)
    first = await source.list_page(PageRequest(flt, TokenOrder(), 100))
    gone = first.items[0].token
    state.delete(WALK_USER, gone.external_id)
    second = await source.list_page(PageRequest(flt, TokenOrder(), 100))
    assert gone.local_id not in {i.token.local_id for i in second.items}
    assert len(second.items) == len(first.items) - 1
    assert state.control.count("GET") == 2


async def test_deep_page_costs_what_page_one_costs(
    walk_sim: tuple[OAuthSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = walk_sim
    source = make_source(url, http)
    flt = TokenFilter(user_id=WALK_USER)
    order = TokenOrder(OrderField.NAME, Direction.DESC)
    costs: list[int] = []
    after = None
    position = None
    for _ in range(10):
        before = state.control.count()
        page = await source.list_page(PageRequest(flt, order, 5, after=after, position=position))
        costs.append(state.control.count() - before)
        after = ordering.sort_key(page.items[-1].token, order.field)
        position = page.items[-1].position
    assert page.has_more
    assert costs[9] <= 1.5 * costs[0]
    assert costs[0] == 1


async def test_seek_without_position_hint(
    walk_sim: tuple[OAuthSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = walk_sim
    flt = TokenFilter(user_id=WALK_USER)
    order = TokenOrder(OrderField.CREATED_AT, Direction.DESC)
    ids = expected_ids(state, WALK_USER, flt, order)
    tokens = {t.local_id: t for t in expected_tokens(state, WALK_USER, flt)}
    after = ordering.sort_key(tokens[ids[20]], order.field)
    page = await make_source(url, http).list_page(PageRequest(flt, order, 5, after=after))
    assert [i.token.local_id for i in page.items] == ids[21:26]


async def test_get_many_one_call_per_user_concurrently(
    sim: tuple[OAuthSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    users = [WALK_USER, "bram.jansen", ODD_USER]
    present = {local_id_for(u, t.id) for u in users for t in state.listed(u)[:2]}
    missing = [
        local_id_for(WALK_USER, MISSING_UUID),
        local_id_for("nobody", MISSING_UUID),
        local_id_for(VANISHED_USER, state.users[VANISHED_USER][0].id),
    ]
    malformed = ["", "no-slash", "user/not-a-uuid", f"../{MISSING_UUID}", f"a%2fb/{MISSING_UUID}"]
    state.control.latency_ms = 300
    started = time.monotonic()
    found = await make_source(url, http).get_many([*present, *missing, *malformed, *present])
    elapsed = time.monotonic() - started
    assert found.keys() == present
    assert all(token.local_id == local_id for local_id, token in found.items())
    # One list per distinct well-formed user (five of them), all at once: not 5 x 300 ms.
    assert state.control.count("GET") == 5
    assert elapsed < 0.9


async def test_get_many_of_nothing_asks_nothing(
    sim: tuple[OAuthSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    assert await make_source(url, http).get_many([]) == {}
    assert await make_source(url, http).get_many(["junk"]) == {}
    assert state.control.count() == 0


async def test_get_many_raises_when_a_user_list_fails(
    sim: tuple[OAuthSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    good = local_id_for(WALK_USER, state.listed(WALK_USER)[0].id)
    bad = local_id_for("bram.jansen", state.listed("bram.jansen")[0].id)
    state.control.set_faults([{"kind": "status", "status": 503, "path_prefix": API + "bram"}])
    with pytest.raises(errors.UpstreamUnavailable):
        await make_source(url, http).get_many([good, bad])


async def test_revoke_deletes_and_is_idempotent(
    sim: tuple[OAuthSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    source = make_source(url, http)
    target = state.listed(WALK_USER)[3]
    local_id = local_id_for(WALK_USER, target.id)
    await source.revoke(local_id)
    assert target.id not in {t.id for t in state.listed(WALK_USER)}
    assert await source.get_many([local_id]) == {}
    await source.revoke(local_id)
    await source.revoke(local_id_for("nobody", MISSING_UUID))
    assert state.control.count("DELETE") == 3


@pytest.mark.parametrize(
    "local_id",
    ["", "x", f"../{MISSING_UUID}", "user/../../admin", f"user/{MISSING_UUID}?x=1", "u/%2e%2e"],
)
async def test_revoke_refuses_malformed_ids_before_any_request(
    sim: tuple[OAuthSimState, str], http: httpx.AsyncClient, local_id: str
) -> None:
    state, url = sim
    with pytest.raises(errors.InvalidInput):
        await make_source(url, http).revoke(local_id)
    assert state.control.count() == 0


async def test_create_and_update_are_unsupported(
    sim: tuple[OAuthSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    source = make_source(url, http)
    with pytest.raises(errors.Unsupported):
        await source.create(CreateSpec(name="new"))
    with pytest.raises(errors.Unsupported):
        await source.update(
            local_id_for(WALK_USER, state.listed(WALK_USER)[0].id), UpdateSpec(name="x")
        )
    assert state.control.count() == 0


FAULTS = [
    pytest.param({"kind": "status", "status": 401}, errors.UpstreamUnauthorized, id="401"),
    pytest.param({"kind": "status", "status": 403}, errors.UpstreamUnauthorized, id="403"),
    pytest.param({"kind": "status", "status": 429}, errors.UpstreamRateLimited, id="429"),
    pytest.param({"kind": "status", "status": 500}, errors.UpstreamUnavailable, id="500"),
    pytest.param({"kind": "status", "status": 502}, errors.UpstreamUnavailable, id="502"),
    pytest.param({"kind": "status", "status": 503}, errors.UpstreamUnavailable, id="503"),
    pytest.param({"kind": "status", "status": 400}, errors.BadUpstreamResponse, id="400"),
    pytest.param({"kind": "status", "status": 302}, errors.BadUpstreamResponse, id="302"),
    pytest.param({"kind": "malformed"}, errors.BadUpstreamResponse, id="malformed-json"),
    pytest.param({"kind": "reset"}, errors.UpstreamUnavailable, id="connection-reset"),
    pytest.param({"kind": "hang", "hang_s": 1.0}, errors.UpstreamTimeout, id="hang"),
]


# A DELETE answer's body is never read, so a malformed one is no failure for revoke.
FAULT_CASES = [
    pytest.param(operation, *case.values, id=f"{operation}-{case.id}")
    for operation in ("list", "get_many", "revoke")
    for case in FAULTS
    if not (operation == "revoke" and case.id == "malformed-json")
]


@pytest.mark.parametrize(("operation", "fault", "error"), FAULT_CASES)
async def test_upstream_failures_are_translated(
    sim: tuple[OAuthSimState, str],
    http: httpx.AsyncClient,
    fault: dict[str, Any],
    error: type[errors.UpstreamError],
    operation: str,
) -> None:
    state, url = sim
    state.control.set_faults([fault])
    source = make_source(url, http, timeout_s=0.3)
    local_id = local_id_for(WALK_USER, state.listed(WALK_USER)[0].id)
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "list": lambda: source.list_page(
            PageRequest(TokenFilter(user_id=WALK_USER), TokenOrder(), 5)
        ),
        "get_many": lambda: source.get_many([local_id]),
        "revoke": lambda: source.revoke(local_id),
    }
    with pytest.raises(error) as info:
        await calls[operation]()
    assert type(info.value) is error
    assert info.value.source == KEY
    assert CLIENT_SECRET not in info.value.message
    assert "simulated" not in info.value.message, "upstream bodies never reach messages"


async def test_retry_after_is_passed_on(
    sim: tuple[OAuthSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = sim
    state.control.set_faults([{"kind": "status", "status": 429, "retry_after": 7}])
    with pytest.raises(errors.UpstreamRateLimited) as info:
        await make_source(url, http).list_page(
            PageRequest(TokenFilter(user_id=WALK_USER), TokenOrder(), 5)
        )
    assert info.value.retry_after_s == 7.0


async def test_wrong_client_secret_is_unauthorized(
    sim: tuple[OAuthSimState, str], http: httpx.AsyncClient
) -> None:
    _, url = sim
    wrong = "wrong-secret-also-private"
    with pytest.raises(errors.UpstreamUnauthorized) as info:
        await make_source(url, http, secret=wrong).list_page(
            PageRequest(TokenFilter(user_id=WALK_USER), TokenOrder(), 5)
        )
    assert wrong not in info.value.message
    assert "Bad client credentials" not in info.value.message


async def test_nothing_listening_is_unavailable(http: httpx.AsyncClient) -> None:
    source = make_source(f"http://127.0.0.1:{free_port()}", http)
    with pytest.raises(errors.UpstreamUnavailable):
        await source.list_page(PageRequest(TokenFilter(user_id=WALK_USER), TokenOrder(), 5))


# Bodies a broken or misconfigured server might send; the simulator never does.
BROKEN: dict[str, tuple[int, bytes, str]] = {
    "tokens-not-array": (200, b'{"tokens": {"id": "x"}}', "application/json"),
    "bare-array": (200, b"[]", "application/json"),
    "token-missing-id": (
        200,
        b'{"tokens": [{"client_name": "SECRETBODY", "created_at": 1, "scopes": [], '
        b'"type": "DEFAULT"}]}',
        "application/json",
    ),
    "iso-created-at": (
        200,
        b'{"tokens": [{"id": "7d507b7e-6221-4f06-a75e-ef6e6f06d32b", "client_name": "SECRETBODY",'
        b' "created_at": "2013-10-09T12:34:14Z", "scopes": [], "type": "DEFAULT"}]}',
        "application/json",
    ),
    "html-200": (200, b"<html>SECRETBODY</html>", "text/html"),
    "html-404": (404, b"<html>SECRETBODY Not Found</html>", "text/html"),
    "json-404-other-shape": (404, b'{"message": "SECRETBODY"}', "application/json"),
    "not-utf8": (200, b'{"tokens": ["\xff"]}', "application/json"),
}


@pytest.fixture(scope="module")
def broken_url() -> Iterator[str]:
    async def answer(request: Request) -> Response:
        case = request.path_params["case"]
        if request.method == "DELETE":
            return Response(b'{"error": "No tokens found"}', status_code=404)
        status, body, media_type = BROKEN[case]
        return Response(body, status_code=status, media_type=media_type)

    app = Starlette(routes=[Route(API + "{case}/{rest:path}", answer, methods=["GET", "DELETE"])])
    with serve_in_thread(app) as url:
        yield url


@pytest.mark.parametrize("case", list(BROKEN))
async def test_malformed_list_bodies(broken_url: str, http: httpx.AsyncClient, case: str) -> None:
    with pytest.raises(errors.BadUpstreamResponse) as info:
        await make_source(broken_url, http).list_page(
            PageRequest(TokenFilter(user_id=case), TokenOrder(), 5)
        )
    assert "SECRETBODY" not in info.value.message


async def test_delete_answering_404_is_unexpected(broken_url: str, http: httpx.AsyncClient) -> None:
    with pytest.raises(errors.BadUpstreamResponse, match="404"):
        await make_source(broken_url, http).revoke(local_id_for("bare-array", MISSING_UUID))


async def test_auth_header_is_basic_client_credentials(
    sim: tuple[OAuthSimState, str], http: httpx.AsyncClient
) -> None:
    # The simulator accepts only Basic base64(client_id:client_secret); a page proves it.
    state, url = sim
    page = await make_source(url, http).list_page(
        PageRequest(TokenFilter(user_id="bram.jansen"), TokenOrder(), 10)
    )
    assert len(page.items) == len(state.listed("bram.jansen")) == 5
    assert state.control.requests[0].path == API + "bram.jansen/tokens"


def test_retry_after_parsing() -> None:
    soon = datetime.now(UTC) + timedelta(seconds=120)
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(" 30 ") == 30.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("\u00b2") is None
    assert retry_after_seconds("-5") is None
    assert 100 < (retry_after_seconds(format_datetime(soon, usegmt=True)) or 0) <= 120
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    # "-0000" means "no zone information": refused rather than guessed.
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 -0000") is None


async def test_concurrent_list_pages_share_nothing(
    walk_sim: tuple[OAuthSimState, str], http: httpx.AsyncClient
) -> None:
    state, url = walk_sim
    source = make_source(url, http)
    requests = [
        PageRequest(TokenFilter(user_id=user), TokenOrder(), 100)
        for user in (WALK_USER, "bram.jansen", "chloe@example.org", ODD_USER)
    ]
    pages = await asyncio.gather(*(source.list_page(r) for r in requests))
    for request, page in zip(requests, pages, strict=True):
        assert request.filter.user_id is not None
        assert [i.token.local_id for i in page.items] == expected_ids(
            state, request.filter.user_id, request.filter, TokenOrder()
        )
