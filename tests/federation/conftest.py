"""The simulated upstreams and a gateway over them, for the federation suites."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Gateway
from tests.security.conftest import serving
from tokengate.gateway.demo import PROVIDERS, Simulated, simulators

CREATE = """mutation($input: CreateTokenInput!) {
  createToken(input: $input) { secret token { id } } }"""


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, Simulated]]:
    with simulators(PROVIDERS, count=12) as running:
        yield running


@pytest.fixture
def gw(sims: dict[str, Simulated], tmp_path: Path) -> Iterator[Gateway]:
    """A fresh gateway over every simulator; their request logs start empty."""
    for sim in sims.values():
        sim.state.control.requests.clear()
        sim.state.control.faults = []
    with serving(sims, tmp_path) as gateway:
        yield gateway


def mint(gw: Gateway, **fields: Any) -> tuple[str, str]:
    """An internal token made by the admin: (secret, global id)."""
    data = gw.data(CREATE, {"input": {"source": "internal", "name": "fed", **fields}})
    created = data["createToken"]
    return created["secret"], created["token"]["id"]


def requests_to(sim: Simulated) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in sim.state.control.requests]


def clear_logs(sims: dict[str, Simulated]) -> None:
    for sim in sims.values():
        sim.state.control.requests.clear()
