"""The simulated upstreams and a gateway over them, shared by the attack suites."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BOOTSTRAP, Gateway, gateway_config
from tokengate.gateway.app import create_app
from tokengate.gateway.demo import PROVIDERS, Simulated, simulators
from tokengate.upstreams.loopback import serve_in_thread


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, Simulated]]:
    with simulators(PROVIDERS, count=12) as running:
        yield running


@contextlib.contextmanager
def serving(sims: dict[str, Simulated], home: Path, **env: str) -> Iterator[Gateway]:
    """A gateway over ``sims`` with its store in ``home``, the bootstrap token and ``env``
    set while it runs."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
        for name, value in env.items():
            mp.setenv(name, value)
        config = gateway_config(home, sources=tuple(s.source for s in sims.values()))
        with serve_in_thread(create_app(config)) as url:
            yield Gateway(url=url, admin_secret=BOOTSTRAP, config=config)


@pytest.fixture
def gw(sims: dict[str, Simulated], tmp_path: Path) -> Iterator[Gateway]:
    """A fresh gateway; the simulators' request logs start empty and no fault is set."""
    for sim in sims.values():
        sim.state.control.requests.clear()
        sim.state.control.faults = []
    with serving(sims, tmp_path) as gateway:
        yield gateway
    for sim in sims.values():
        sim.state.control.faults = []
