"""The plain-field executor against Strawberry's stock graphql-core execution, over the
served schema: queries generated from it (hypothesis-graphql), each sent twice to one
gateway over the simulated upstreams, once per executor, must get the same ``data`` and
the same ``errors``.

Arguments are drawn mostly from values that get past the resolvers' checks (ids of tokens
and sources that exist, source keys, small page sizes), so that most answers carry tokens
for the executors to complete; now and then anything goes, for the error paths."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import graphql
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import nodes, queries
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

import tokengate.gateway.app
from tests.conftest import BOOTSTRAP, gateway_config
from tests.security.test_fuzz import SCALARS, mostly
from tokengate.gateway.demo import PROVIDERS, simulators
from tokengate.schema.build import GatewaySchema, build_schema
from tokengate.schema.execution import PlainFieldExecutor
from tokengate.upstreams.loopback import serve_in_thread
from tokengate.upstreams.oauth.simulator import WALK_USER

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("TOKENGATE_DIFFERENTIAL_EXAMPLES", "300"))
SCHEMA = build_schema()._schema
SEED = """mutation($name: String!) {
  createToken(input: {source: "internal", name: $name, scopes: ["tokens:read"]}) { secret }
}"""
IDS = f"""{{ sources {{ id }}
  all: tokens(first: 100) {{ edges {{ node {{ id }} }} }}
  walk: tokens(first: 100, filter: {{userId: "{WALK_USER}"}}) {{ edges {{ node {{ id }} }} }} }}"""
TEXT = ["internal", "amper", "idp", "fleet", WALK_USER, "seed*", "*", "tokens:read"]
# Root fields the queries draw from. Not tokensBySecret: each call reads every page of the
# Amper and Losant lists (and is rate limited on its own), so the simulators' faults it
# meets open a source's breaker between the two executions of one query, and the answers
# then differ by the breaker's state, not by the executor. Its answer is made of the same
# Token fields as the others'.
ROOT_FIELDS = (
    sorted(set(SCHEMA.query_type.fields) - {"tokensBySecret"}) if SCHEMA.query_type else []
)


class Target:
    def __init__(self, client: httpx.Client, url: str, schema: GatewaySchema) -> None:
        self.client, self.url, self.schema = client, url, schema
        data = self.answer(PlainFieldExecutor, IDS)["data"]
        self.ids = sorted(
            {source["id"] for source in data["sources"]}
            | {edge["node"]["id"] for page in ("all", "walk") for edge in data[page]["edges"]}
        )
        assert len(self.ids) > 20

    def scalars(self) -> dict[str, st.SearchStrategy[Any]]:
        """Mostly values the resolvers accept (see the module doc)."""
        ids = st.sampled_from(self.ids)
        return {
            **SCALARS,
            "ID": mostly(ids, st.text(max_size=20), odds=20).map(nodes.String),
            "String": mostly(st.sampled_from(TEXT), st.text(max_size=20), odds=10).map(
                nodes.String
            ),
            "Int": mostly(st.integers(1, 25), st.integers(-5, 500), odds=10).map(nodes.Int),
            "_Any": ids.map(lambda id_: _token_reference(id_)),
        }

    def answer(self, executor: type[Any], query: str) -> dict[str, Any]:
        self.schema.execution_context_class = executor
        response = self.client.post(f"{self.url}/graphql", json={"query": query})
        assert response.status_code == 200, (query, response.text[:2000])
        body: dict[str, Any] = response.json()
        return body


def _token_reference(id_: str) -> Any:
    return nodes.Object(
        [
            graphql.ObjectFieldNode(name=graphql.NameNode(value=name), value=nodes.String(value))
            for name, value in (("__typename", "Token"), ("id", id_))
        ]
    )


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One gateway over the store (a few tokens in it) and all three simulated upstreams,
    with a handle on its schema to switch executors between requests."""
    tmp: Path = tmp_path_factory.mktemp("differential")
    built: list[GatewaySchema] = []

    def building(*args: Any, **kwargs: Any) -> GatewaySchema:
        built.append(build_schema(*args, **kwargs))
        return built[-1]

    with pytest.MonkeyPatch.context() as mp, simulators(PROVIDERS, count=10) as sims:
        mp.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
        mp.setattr(tokengate.gateway.app, "build_schema", building)
        config = gateway_config(tmp, sources=tuple(s.source for s in sims.values()))
        app = tokengate.gateway.app.create_app(config)
        [schema] = built
        assert schema.execution_context_class is PlainFieldExecutor
        with (
            serve_in_thread(app) as url,
            httpx.Client(headers={"Authorization": f"Bearer {BOOTSTRAP}"}, timeout=30) as client,
        ):
            for number in range(3):
                seed = {"query": SEED, "variables": {"name": f"seed {number}"}}
                assert "errors" not in client.post(f"{url}/graphql", json=seed).json()
            yield Target(client, url, schema)
            schema.execution_context_class = PlainFieldExecutor


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    database=None,
)
@given(data=st.data())
def test_same_answer_as_stock_execution(target: Target, data: st.DataObject) -> None:
    query = str(
        data.draw(
            queries(SCHEMA, fields=ROOT_FIELDS, custom_scalars=target.scalars(), allow_x00=False)
        )
    )
    stock = target.answer(StrawberryGraphQLCoreExecutionContext, query)
    ours = target.answer(PlainFieldExecutor, query)
    assert ours.get("data") == stock.get("data"), query
    assert ours.get("errors") == stock.get("errors"), query
