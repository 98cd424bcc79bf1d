"""Schema-driven fuzzing: queries and mutations generated from the served schema.

No response may be an HTTP 5xx, hold a traceback, or be a masked crash
(INTERNAL_SERVER_ERROR). A few thousand operations in CI; set TOKENGATE_FUZZ_EXAMPLES
for a longer run by hand.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import graphql
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema, nodes

from gateway.app import create_app
from gateway.demo import PROVIDERS, simulators
from schema.build import build_schema
from tests.conftest import BOOTSTRAP, gateway_config
from upstreams.loopback import serve_in_thread

EXAMPLES = int(os.environ.get("TOKENGATE_FUZZ_EXAMPLES", "2400"))
SCHEMA = build_schema()._schema


def _representation(typename: str, id_: str) -> graphql.ObjectValueNode:
    def field(name: str, value: str) -> graphql.ObjectFieldNode:
        return graphql.ObjectFieldNode(name=graphql.NameNode(value=name), value=nodes.String(value))

    return nodes.Object([field("__typename", typename), field("id", id_)])


SCALARS = {
    "DateTime": st.one_of(
        st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
        st.datetimes().map(lambda d: d.isoformat()),  # naive: must be refused cleanly
        st.text(max_size=30),
    ).map(nodes.String),
    "_Any": st.builds(
        _representation,
        st.sampled_from(["Token", "Source", "Nope"]),
        st.one_of(st.text(max_size=60), st.just("VG9rZW46aW50ZXJuYWw6MA")),
    ),
}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, str]]:
    """A gateway over the store and all three simulated upstreams."""
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    mp = pytest.MonkeyPatch()
    mp.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    try:
        with simulators(PROVIDERS, count=10) as sims:
            config = gateway_config(tmp, sources=tuple(s.source for s in sims.values()))
            with (
                serve_in_thread(create_app(config)) as url,
                httpx.Client(
                    headers={"Authorization": f"Bearer {BOOTSTRAP}"}, timeout=30
                ) as client,
            ):
                client.post(
                    f"{url}/graphql",
                    json={
                        "query": 'mutation { createToken(input: {source: "internal", name: "seed"}) { secret } }'
                    },
                )
                yield client, url
    finally:
        mp.undo()


def check(client: httpx.Client, url: str, query: str) -> None:
    response = client.post(f"{url}/graphql", json={"query": query})
    assert response.status_code < 500, (query, response.text)
    text = response.text
    assert "Traceback" not in text and 'File "' not in text, (query, text)
    body = response.json()
    codes = {e.get("extensions", {}).get("code") for e in body.get("errors", [])}
    assert "INTERNAL_SERVER_ERROR" not in codes, (query, json.dumps(body)[:2000])
    assert None not in codes, (query, body)


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    database=None,
)


@FUZZ
@given(data=st.data())
def test_generated_operations(target: tuple[httpx.Client, str], data: st.DataObject) -> None:
    """Valid queries and mutations of every shape the schema allows."""
    operation = data.draw(from_schema(SCHEMA, custom_scalars=SCALARS, allow_x00=False))
    check(*target, str(operation))


@settings(FUZZ, max_examples=max(EXAMPLES // 3, 50))
@given(data=st.data())
def test_invalid_operations(target: tuple[httpx.Client, str], data: st.DataObject) -> None:
    """Operations that break the schema's rules: refused with a code, never a crash."""
    operation = data.draw(
        from_schema(SCHEMA, custom_scalars=SCALARS, allow_x00=False, mode=Mode.NEGATIVE)
    )
    check(*target, str(operation))
