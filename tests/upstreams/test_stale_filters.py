"""expiresBefore / expiresAfter / lastUsedBefore / neverUsed over loopback HTTP: every source
(the store seeded with ties and nulls, the three simulators), walked page by page with
cursors, against a reference computed here from an unfiltered walk in the same order.

The reference predicate is written out below, independently of ``upstreams.ordering``: a
filter pushed down (the store's SQL, a paged walk stopping at its bound, a segment of
nulls skipped) that selects, orders or pages differently from it fails here.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BOOTSTRAP, Gateway, gateway_config
from tests.seeding import seed
from tokengate.gateway.app import create_app, open_store
from tokengate.gateway.demo import PROVIDERS, Simulated, simulators
from tokengate.upstreams.loopback import serve_in_thread
from tokengate.upstreams.oauth.simulator import WALK_USER

NODE = "id source { key } lastUsedAt createdAt expiresAt"
LIST = (
    "query($first: Int, $after: String, $filter: TokenFilter, $order: TokenOrder) {"
    " tokens(first: $first, after: $after, filter: $filter, orderBy: $order) {"
    f" edges {{ cursor node {{ {NODE} }} }} pageInfo {{ hasNextPage endCursor }}"
    " failedSources { source { key } reason message } } }"
)
# Every status: the filters are checked on expired and inactive tokens too.
ALL = ["ACTIVE", "INACTIVE", "EXPIRED", "REVOKED"]

FILTERS: dict[str, dict[str, Any]] = {
    "idle-since-mid-amper": {"lastUsedBefore": "2019-06-01T00:00:00Z"},
    "idle-since-mid-store": {"lastUsedBefore": "2025-01-08T00:00:00Z"},
    # Splits the store's never-used tokens by creation too (made over 25 hours from 01-01).
    "idle-since-early-store": {"lastUsedBefore": "2025-01-01T12:00:00Z"},
    "never-used": {"neverUsed": True},
    "used-but-idle": {"neverUsed": False, "lastUsedBefore": "2025-01-05T00:00:00+02:00"},
    "expires-before-mid": {"expiresBefore": "2099-01-05T00:00:00Z"},
    "expires-after": {"expiresAfter": "2088-06-01T00:00:00Z"},
    "expires-window": {
        "expiresAfter": "2018-01-01T00:00:00Z",
        "expiresBefore": "2088-06-01T00:00:00Z",
    },
}
ORDERS = [
    ("CREATED_AT", "ASC"),
    ("LAST_USED_AT", "ASC"),
    ("LAST_USED_AT", "DESC"),
    ("EXPIRES_AT", "ASC"),
    ("EXPIRES_AT", "DESC"),
]
# The quick loop's share of the matrix; the whole of it is marked slow.
QUICK = {
    ("idle-since-early-store", ("CREATED_AT", "ASC")),
    ("idle-since-mid-amper", ("LAST_USED_AT", "ASC")),
    ("expires-window", ("EXPIRES_AT", "DESC")),
    ("used-but-idle", ("CREATED_AT", "ASC")),
}


def _instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def reference(node: dict[str, Any], flt: dict[str, Any]) -> bool:
    """The documented meaning, from the served fields."""
    expires, used = _instant(node["expiresAt"]), _instant(node["lastUsedAt"])
    created = _instant(node["createdAt"])
    if "expiresBefore" in flt and not (expires and expires < _instant(flt["expiresBefore"])):
        return False
    if "expiresAfter" in flt and not (expires and expires > _instant(flt["expiresAfter"])):
        return False
    if "neverUsed" in flt and (used is None) != flt["neverUsed"]:
        return False
    if "lastUsedBefore" in flt:
        bound = _instant(flt["lastUsedBefore"])
        assert bound is not None
        if used is not None:
            return used < bound
        return created is not None and created < bound
    return True


def uses_last_use(flt: dict[str, Any]) -> bool:
    return "lastUsedBefore" in flt or "neverUsed" in flt


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, Simulated]]:
    with simulators(PROVIDERS, count=45) as running:
        yield running


@pytest.fixture(scope="module")
def gw(sims: dict[str, Simulated], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("stale")
    config = gateway_config(tmp, sources=tuple(s.source for s in sims.values()))

    async def seeded() -> None:
        store = await open_store(config)
        try:
            await seed(store, 90)
        finally:
            await store.aclose()

    asyncio.run(seeded())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
        with serve_in_thread(create_app(config)) as url:
            yield Gateway(url=url, admin_secret=BOOTSTRAP, config=config)


def walk(
    gw: Gateway, flt: dict[str, Any], order: tuple[str, str], first: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Every node of a forward walk, the failed sources of its first page, and its pages."""
    nodes: list[dict[str, Any]] = []
    after: str | None = None
    failures: list[dict[str, Any]] = []
    pages = 0
    while True:
        variables = {
            "first": first,
            "after": after,
            "filter": {"statuses": ALL, **flt},
            "order": {"field": order[0], "direction": order[1]},
        }
        data = gw.data(LIST, variables)["tokens"]
        if pages == 0:
            failures = data["failedSources"]
        pages += 1
        nodes.extend({**e["node"], "source": e["node"]["source"]["key"]} for e in data["edges"])
        if not data["pageInfo"]["hasNextPage"]:
            return nodes, failures, pages
        after = data["pageInfo"]["endCursor"]
        assert pages < 200


_REFERENCE: dict[tuple[str, str], list[dict[str, Any]]] = {}


def unfiltered(gw: Gateway, order: tuple[str, str]) -> list[dict[str, Any]]:
    if order not in _REFERENCE:
        _REFERENCE[order] = walk(gw, {}, order, 100)[0]
    return _REFERENCE[order]


CASES = [
    pytest.param(
        name,
        order,
        id=f"{name}-{order[0]}-{order[1]}",
        marks=() if (name, order) in QUICK else (pytest.mark.slow,),
    )
    for name in FILTERS
    for order in ORDERS
]


@pytest.mark.parametrize(("name", "order"), CASES)
def test_filter_pages_equal_the_reference(gw: Gateway, name: str, order: tuple[str, str]) -> None:
    flt = FILTERS[name]
    everything = unfiltered(gw, order)
    sources = {n["source"] for n in everything}
    assert sources == {"internal", "amper", "fleet"}  # idp needs userId: not in this walk
    skipped = {"fleet"} if uses_last_use(flt) else set()
    expected = [n for n in everything if n["source"] not in skipped and reference(n, flt)]
    got, failures, pages = walk(gw, flt, order, 9)
    assert [n["id"] for n in got] == [n["id"] for n in expected]
    assert pages >= 2 or len(expected) <= 9
    # The OAuth-style source reports neither date: skipped for what it cannot answer
    # before it would be skipped for the missing userId.
    reasons = {f["source"]["key"]: f["reason"] for f in failures}
    assert reasons["idp"] == "FILTER_UNSUPPORTED"
    if uses_last_use(flt):
        assert reasons["fleet"] == "FILTER_UNSUPPORTED"
    else:
        assert "fleet" not in reasons


def test_every_source_has_matches_in_the_matrix(gw: Gateway) -> None:
    """The fixture data makes each filter select some but not all of each source that
    reports the field it reads (else the matrix would prove little)."""
    everything = unfiltered(gw, ("CREATED_AT", "ASC"))
    split = {
        "idle-since-mid-amper": ["amper"],
        "idle-since-mid-store": ["internal"],
        "idle-since-early-store": ["internal"],
        "never-used": ["internal", "amper"],
        "used-but-idle": ["internal"],
        "expires-before-mid": ["internal"],
        "expires-after": ["fleet"],
        "expires-window": ["fleet"],
    }
    assert split.keys() == FILTERS.keys()
    for name, keys in split.items():
        for key in keys:
            mine = [n for n in everything if n["source"] == key]
            matching = [n for n in mine if reference(n, FILTERS[name])]
            assert 0 < len(matching) < len(mine), (name, key)
    # Never-used store tokens on both sides of the early bound.
    never = [n for n in everything if n["source"] == "internal" and n["lastUsedAt"] is None]
    early = FILTERS["idle-since-early-store"]
    assert 0 < sum(reference(n, early) for n in never) < len(never)


def test_sources_that_do_not_report_a_date_are_named_not_read(
    gw: Gateway, sims: dict[str, Simulated]
) -> None:
    idp = sims["idp"].state.control
    before = idp.count("GET")
    data = gw.data(
        LIST,
        {"first": 50, "filter": {"userId": WALK_USER, "neverUsed": True}, "order": None},
    )["tokens"]
    reasons = {f["source"]["key"]: f["reason"] for f in data["failedSources"]}
    assert reasons == {"idp": "FILTER_UNSUPPORTED", "fleet": "FILTER_UNSUPPORTED"}
    assert "last used" in data["failedSources"][0]["message"]
    assert idp.count("GET") == before  # not asked: its nulls are not "never used"
    assert all(n["node"]["lastUsedAt"] is None for n in data["edges"])
    data = gw.data(
        LIST, {"first": 5, "filter": {"userId": WALK_USER, "expiresAfter": "2000-01-01T00:00:00Z"}}
    )["tokens"]
    reasons = {f["source"]["key"]: f["reason"] for f in data["failedSources"]}
    assert reasons == {"idp": "FILTER_UNSUPPORTED"}
    # Without a date filter the OAuth-style source is read as usual.
    data = gw.data(LIST, {"first": 5, "filter": {"userId": WALK_USER}})["tokens"]
    assert data["failedSources"] == []


def test_capabilities_say_what_is_native_and_reported(gw: Gateway) -> None:
    caps = {
        s["key"]: s["capabilities"]
        for s in gw.data(
            "{ sources { key capabilities { reportsLastUsed reportsExpiry nativeFilters } } }"
        )["sources"]
    }
    both = ["EXPIRES_BEFORE", "EXPIRES_AFTER", "LAST_USED_BEFORE", "NEVER_USED"]
    assert caps["internal"] == {
        "reportsLastUsed": True,
        "reportsExpiry": True,
        "nativeFilters": both,
    }
    assert caps["amper"]["reportsLastUsed"] is True
    assert caps["fleet"] == {
        "reportsLastUsed": False,
        "reportsExpiry": True,
        "nativeFilters": ["EXPIRES_BEFORE", "EXPIRES_AFTER"],
    }
    assert caps["idp"] == {"reportsLastUsed": False, "reportsExpiry": False, "nativeFilters": []}


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("9999-12-31T23:59:59Z", True),
        ("0001-01-01T00:00:00Z", True),
        ("9999-12-31T23:59:59-14:00", False),  # past year 9999 in UTC
        ("0001-01-01T00:00:00+14:00", False),  # before year 1 in UTC
        ("+275760-09-13T00:00:00Z", False),
        ("2026-01-01T00:00:00", False),  # no offset
        ("not a date", False),
    ],
)
@pytest.mark.parametrize("field", ["expiresBefore", "expiresAfter", "lastUsedBefore"])
def test_huge_and_bad_dates(gw: Gateway, field: str, value: str, accepted: bool) -> None:
    body = gw.gql(LIST, {"first": 3, "filter": {field: value}})
    if accepted:
        assert "errors" not in body, body
    else:
        assert body["data"] is None or body["data"]["tokens"] is None
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body


@pytest.fixture(scope="module")
def amper_only() -> Iterator[Simulated]:
    with simulators(("amper",), count=400) as running:
        yield running["amper"]


def test_amper_last_use_walk_stops_at_the_bound_and_page_k_costs_page_one(
    amper_only: Simulated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """date_access bounds a LAST_USED_AT ASC walk: a bound near the start reads a
    request or two (not the 400-row list), and page 3 costs what page 1 costs."""
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    source = dataclasses.replace(amper_only.source)
    config = gateway_config(tmp_path, sources=(source,))
    control = amper_only.state.control
    with serve_in_thread(create_app(config)) as url:
        gw = Gateway(url=url, admin_secret=BOOTSTRAP, config=config)
        order = {"field": "LAST_USED_AT", "direction": "ASC"}
        everything = walk(gw, {"sources": ["amper"]}, ("LAST_USED_AT", "ASC"), 100)[0]
        used = [n for n in everything if n["lastUsedAt"] is not None]
        assert len(used) > 200
        # Early bound: only the first few used tokens (and never-used ones made before).
        early = {"sources": ["amper"], "neverUsed": False, "lastUsedBefore": used[5]["lastUsedAt"]}
        start = control.count("GET", "/v1/access_tokens")
        data = gw.data(LIST, {"first": 50, "filter": early, "order": order})["tokens"]
        assert len(data["edges"]) >= 5 and not data["pageInfo"]["hasNextPage"]
        assert control.count("GET", "/v1/access_tokens") - start <= 2
        # Deep pages: a bound past most of the list, pages of 10.
        late = {"sources": ["amper"], "lastUsedBefore": used[-20]["lastUsedAt"]}
        costs = []
        after = None
        for _page in range(3):
            start = control.count("GET", "/v1/access_tokens")
            variables = {"first": 10, "after": after, "filter": late, "order": order}
            data = gw.data(LIST, variables)["tokens"]
            costs.append(control.count("GET", "/v1/access_tokens") - start)
            after = data["pageInfo"]["endCursor"]
        assert costs[2] <= costs[0], costs
