"""The merged connection over every source at once, against the simulators over loopback HTTP."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BOOTSTRAP, Gateway, gateway_config
from tests.seeding import seed
from tokengate.gateway.app import create_app
from tokengate.gateway.demo import PROVIDERS, Simulated, simulators
from tokengate.gateway.upstream_factory import build_upstreams, http_client
from tokengate.upstreams.loopback import serve_in_thread
from tokengate.upstreams.model import Direction, OrderField, Token, TokenFilter, TokenOrder
from tokengate.upstreams.oauth.simulator import WALK_USER
from tokengate.upstreams.principal import Principal
from tokengate.upstreams.service import PageArgs, TokenService
from tokengate.upstreams.store import SecretHasher, StoreSource, create_engine, migrate

ADMIN = Principal(token_id="t", scopes=frozenset({"tokens:admin"}))
ORDERS = [TokenOrder(f, d) for f in OrderField for d in Direction]
USER_FILTER = TokenFilter(user_id=WALK_USER)


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, Simulated]]:
    with simulators(PROVIDERS, count=40) as running:
        yield running


@pytest.fixture
async def service(sims: dict[str, Simulated], tmp_path: Path) -> AsyncIterator[TokenService]:
    engine = create_engine(f"sqlite:///{tmp_path / 'merged.db'}")
    await migrate(engine)
    store = StoreSource(engine, SecretHasher(secrets.token_bytes(32)))
    await seed(store, 30)
    client = http_client()
    upstreams = build_upstreams([s.source for s in sims.values()], client)
    svc = TokenService(store, upstreams, timeouts_s={s.source.key: 5.0 for s in sims.values()})
    for sim in sims.values():
        sim.state.control.faults = []
        sim.state.control.requests.clear()
    yield svc
    await svc.aclose()
    await client.aclose()


def _value(token: Token, field: OrderField) -> datetime | str | None:
    return {
        OrderField.CREATED_AT: token.created_at,
        OrderField.LAST_USED_AT: token.last_used_at,
        OrderField.EXPIRES_AT: token.expires_at,
        OrderField.NAME: token.name.casefold(),
    }[field]


def expected(tokens: list[Token], order: TokenOrder) -> list[tuple[str, str]]:
    """The merged order, computed here: value (nulls last in ASC), then source key, then id."""
    non_null = [t for t in tokens if _value(t, order.field) is not None]
    nulls = [t for t in tokens if _value(t, order.field) is None]
    ascending = sorted(non_null, key=lambda t: (_value(t, order.field), t.source, t.local_id))
    ascending += sorted(nulls, key=lambda t: (t.source, t.local_id))
    keys = [(t.source, t.local_id) for t in ascending]
    return keys if order.direction is Direction.ASC else keys[::-1]


async def everything(service: TokenService) -> list[Token]:
    """Every token of every source, read one source at a time."""
    out: list[Token] = []
    for key in service.sources:
        cursor = None
        while True:
            result = await service.list_tokens(
                ADMIN,
                dataclasses.replace(USER_FILTER, sources=frozenset({key})),
                TokenOrder(),
                PageArgs(first=100, after=cursor),
            )
            assert not result.failures, result.failures
            out.extend(e.token for e in result.page.edges)
            if not result.page.has_next_page:
                break
            cursor = result.page.edges[-1].cursor
    return out


async def walk(
    service: TokenService, order: TokenOrder, size: int, *, backward: bool
) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    cursor = None
    for _ in range(2000):
        args = (
            PageArgs(last=size, before=cursor) if backward else PageArgs(first=size, after=cursor)
        )
        result = await service.list_tokens(ADMIN, USER_FILTER, order, args)
        assert not result.failures, result.failures
        keys = [(e.token.source, e.token.local_id) for e in result.page.edges]
        assert len(keys) <= size
        seen = keys + seen if backward else seen + keys
        more = result.page.has_previous_page if backward else result.page.has_next_page
        if not more:
            return seen
        assert keys
        cursor = result.page.edges[0 if backward else -1].cursor
    raise AssertionError("the walk did not end")


@pytest.mark.slow
@pytest.mark.parametrize("size", [1, 7, 50])
@pytest.mark.parametrize("order", ORDERS, ids=lambda o: f"{o.field}-{o.direction}")
async def test_walks_equal_the_total_order(
    service: TokenService, order: TokenOrder, size: int
) -> None:
    tokens = await everything(service)
    assert {t.source for t in tokens} == set(service.sources), "every source contributes"
    want = expected(tokens, order)
    assert len(set(want)) == len(want)
    assert await walk(service, order, size, backward=False) == want
    assert await walk(service, order, size, backward=True) == want


async def test_total_count_is_exact_only_when_every_source_counts(service: TokenService) -> None:
    tokens = await everything(service)
    result = await service.list_tokens(ADMIN, USER_FILTER, TokenOrder(), PageArgs(first=5))
    uncountable = [k for k, s in service.sources.items() if not s.capabilities.can_count]
    assert uncountable, "the fixture must include a source that cannot count (Amper)"
    assert result.page.total_count is None, "one source without counts: no exact total"
    no_amper = dataclasses.replace(
        USER_FILTER,
        sources=frozenset(k for k, s in service.sources.items() if s.capabilities.can_count),
    )
    counted = await service.list_tokens(ADMIN, no_amper, TokenOrder(), PageArgs(first=5))
    assert counted.page.total_count == sum(
        1 for t in tokens if service.sources[t.source].capabilities.can_count
    )


async def test_oauth_source_without_user_is_skipped_not_failed(service: TokenService) -> None:
    result = await service.list_tokens(ADMIN, TokenFilter(), TokenOrder(), PageArgs(first=10))
    [skipped] = [f for f in result.failures if f.reason == "NEEDS_FILTER"]
    assert service.sources[skipped.source].capabilities.needs_user_filter
    assert skipped.error is None
    assert result.page.total_count is None
    assert all(e.token.source != skipped.source for e in result.page.edges)


def requests_to(sims: dict[str, Simulated]) -> int:
    return sum(len(s.state.control.requests) for s in sims.values())


async def test_page_ten_costs_what_page_one_costs(
    service: TokenService, sims: dict[str, Simulated]
) -> None:
    for order in ORDERS:
        for sim in sims.values():
            sim.state.control.requests.clear()
        first = await service.list_tokens(ADMIN, USER_FILTER, order, PageArgs(first=5))
        page_one = requests_to(sims)
        cursor = first.page.edges[-1].cursor
        for _ in range(8):
            page = await service.list_tokens(
                ADMIN, USER_FILTER, order, PageArgs(first=5, after=cursor)
            )
            cursor = page.page.edges[-1].cursor
        for sim in sims.values():
            sim.state.control.requests.clear()
        await service.list_tokens(ADMIN, USER_FILTER, order, PageArgs(first=5, after=cursor))
        page_ten = requests_to(sims)
        assert page_ten <= 1.5 * page_one, (order, page_one, page_ten)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_failing_source_yields_partial_data(
    service: TokenService, sims: dict[str, Simulated], provider: str
) -> None:
    [sim] = [s for s in sims.values() if s.provider == provider]
    sim.state.control.set_faults([{"kind": "status", "status": 500}])
    try:
        result = await service.list_tokens(ADMIN, USER_FILTER, TokenOrder(), PageArgs(first=50))
    finally:
        sim.state.control.faults = []
    [failure] = result.failures
    assert failure.source == sim.source.key and failure.reason == "UNAVAILABLE"
    assert failure.error is not None and failure.error.code == "UPSTREAM_UNAVAILABLE"
    assert result.page.edges and all(e.token.source != sim.source.key for e in result.page.edges)
    assert result.page.total_count is None


# -- over HTTP, through the schema ---------------------------------------------------------


@pytest.fixture
def demo_gateway(
    sims: dict[str, Simulated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    config = gateway_config(tmp_path, sources=tuple(s.source for s in sims.values()))
    for sim in sims.values():
        sim.state.control.faults = []
    with serve_in_thread(create_app(config)) as url:
        yield Gateway(url=url, admin_secret=BOOTSTRAP, config=config)
    for sim in sims.values():
        sim.state.control.faults = []


def test_failed_source_over_http(demo_gateway: Gateway, sims: dict[str, Simulated]) -> None:
    sim = sims["idp"]
    sim.state.control.set_faults([{"kind": "status", "status": 503}])
    response = demo_gateway.post(
        f'{{ tokens(first: 10, filter: {{userId: "{WALK_USER}"}}) {{ edges {{ node {{ provider }} }} failedSources {{ source {{ key }} reason message }} }} }}'
    )
    assert response.status_code == 200
    body = response.json()
    assert body["data"]["tokens"]["failedSources"] == [
        {
            "source": {"key": "idp"},
            "reason": "UNAVAILABLE",
            "message": body["data"]["tokens"]["failedSources"][0]["message"],
        }
    ]
    [error] = body["errors"]
    assert (
        error["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
        and error["extensions"]["source"] == "idp"
    )
    assert error["path"] == ["tokens"]
    assert {e["node"]["provider"] for e in body["data"]["tokens"]["edges"]} <= {
        "INTERNAL",
        "AMPER",
        "LOSANT",
    }


def test_needs_filter_adds_no_error(demo_gateway: Gateway) -> None:
    body = demo_gateway.gql(
        "{ tokens(first: 3) { failedSources { source { key } reason } totalCount } }"
    )
    assert "errors" not in body
    assert body["data"]["tokens"]["failedSources"] == [
        {"source": {"key": "idp"}, "reason": "NEEDS_FILTER"}
    ]
    assert body["data"]["tokens"]["totalCount"] is None


def test_nodes_of_many_sources_in_one_request(
    demo_gateway: Gateway, sims: dict[str, Simulated]
) -> None:
    demo_gateway.data(
        'mutation { createToken(input: {source: "internal", name: "n2"}) { secret } }'
    )
    picked: list[dict[str, Any]] = []
    for provider in ("INTERNAL", "AMPER", "OAUTH", "LOSANT"):
        page = demo_gateway.data(
            f'{{ tokens(first: 5, filter: {{userId: "{WALK_USER}", providers: [{provider}]}}) '
            "{ nodes { id provider name } } }"
        )
        nodes = page["tokens"]["nodes"]
        assert nodes and {n["provider"] for n in nodes} == {provider}
        picked.extend(nodes)
    for sim in sims.values():
        sim.state.control.requests.clear()
    data = demo_gateway.data(
        "query($ids: [ID!]!) { nodes(ids: $ids) { id ... on Token { name } } }",
        {"ids": [n["id"] for n in picked]},
    )
    assert [n["name"] for n in data["nodes"]] == [n["name"] for n in picked]
    # OAuth: one list call for the one user; the others: at most one call per id, concurrently.
    assert len(sims["idp"].state.control.requests) == 1
    for key in ("amper", "fleet"):
        assert len(sims[key].state.control.requests) <= 5


def test_mutations_on_every_source(demo_gateway: Gateway) -> None:
    create = """mutation($input: CreateTokenInput!) { createToken(input: $input) {
      secret token { id name provider status } } }"""
    made = {}
    for source, extra in (
        ("internal", {}),
        ("amper", {}),
        ("fleet", {"applicationId": "575ec8687ae143cd83dc4a97"}),
    ):
        payload = demo_gateway.data(
            create, {"input": {"source": source, "name": f"made-{source}", **extra}}
        )["createToken"]
        assert payload["secret"] and payload["token"]["name"] == f"made-{source}"
        made[source] = payload["token"]["id"]
    body = demo_gateway.gql(create, {"input": {"source": "idp", "name": "nope"}})
    assert body["errors"][0]["extensions"]["code"] == "UNSUPPORTED_OPERATION"
    update = (
        'mutation($id: ID!) { updateToken(input: {id: $id, name: "renamed"}) { token { name } } }'
    )
    assert (
        demo_gateway.data(update, {"id": made["fleet"]})["updateToken"]["token"]["name"]
        == "renamed"
    )
    assert (
        demo_gateway.gql(update, {"id": made["amper"]})["errors"][0]["extensions"]["code"]
        == "UNSUPPORTED_OPERATION"
    )
    revoke = "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }"
    for token_id in made.values():
        assert (
            demo_gateway.data(revoke, {"id": token_id})["revokeToken"]["revokedTokenId"] == token_id
        )
    assert (
        demo_gateway.data("query($id: ID!) { node(id: $id) { id } }", {"id": made["fleet"]})["node"]
        is None
    )
    oauth_token = demo_gateway.data(
        f'{{ tokens(first: 1, filter: {{userId: "{WALK_USER}", sources: ["idp"]}}) {{ nodes {{ id }} }} }}'
    )["tokens"]["nodes"][0]["id"]
    assert (
        demo_gateway.data(revoke, {"id": oauth_token})["revokeToken"]["revokedTokenId"]
        == oauth_token
    )
    assert (
        demo_gateway.data("query($id: ID!) { node(id: $id) { id } }", {"id": oauth_token})["node"]
        is None
    )
