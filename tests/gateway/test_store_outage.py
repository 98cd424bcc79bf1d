"""The store goes down under a serving gateway: authentication answers HTTP 503 with a code
(a store outage is not the caller's fault: not 401, not 500), the other calls answer their
coded GraphQL errors, and the gateway serves again once the store is back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

import tokengate.gateway.app
from tests.conftest import BOOTSTRAP, LogCapture, gateway_config
from tests.pg_cluster import throwaway_cluster
from tokengate.gateway.app import create_app
from tokengate.gateway.config import Config
from tokengate.upstreams.loopback import serve_in_thread
from tokengate.upstreams.store import StoreSource, authentication

pytestmark = pytest.mark.slow

CREATE = """mutation { createToken(input: {source: "internal", name: "victim",
  scopes: ["tokens:read"]}) { token { id } secret } }"""
LIST = """{ tokens(first: 5, filter: {sources: ["internal"]}) { totalCount
  edges { node { id name } } failedSources { source { key } reason } } }"""
UPDATE = """mutation($id: ID!) { updateToken(input: {id: $id, name: "renamed"}) {
  token { name } } }"""
REVOKE = """mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }"""
AUDIT = "{ auditEvents(first: 5) { nodes { action outcome } } }"


def post(url: str, query: str, secret: str, variables: dict[str, Any] | None = None) -> Any:
    return httpx.post(
        f"{url}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def data(url: str, query: str, secret: str, variables: dict[str, Any] | None = None) -> Any:
    response = post(url, query, secret, variables)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def assert_store_unavailable(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "UPSTREAM_UNAVAILABLE", error
    assert error["extensions"]["source"] == "internal", error


@pytest.fixture
def long_auth_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """The admin's authentication stays cached through the outage, so its calls reach the
    store's list, update and revoke instead of stopping at authentication."""
    monkeypatch.setattr(authentication, "AUTH_CACHE_S", 3600.0)


def exercise_outage(
    url: str, break_store: Callable[[], None], mend_store: Callable[[], None], logs: LogCapture
) -> None:
    made = data(url, CREATE, BOOTSTRAP)["createToken"]
    victim, victim_secret = made["token"]["id"], made["secret"]
    assert data(url, LIST, BOOTSTRAP)["tokens"]["totalCount"] == 2

    break_store()
    # Authentication must reach the store (this secret was never seen): 503, coded.
    for secret in (victim_secret, "tg_" + "x" * 43):
        refused = post(url, LIST, secret)
        assert_store_unavailable(refused, 503)
        assert "www-authenticate" not in refused.headers
        assert refused.headers["retry-after"] == "1"
    listed = post(url, LIST, BOOTSTRAP)
    assert_store_unavailable(listed, 200)
    assert listed.json()["data"]["tokens"]["failedSources"] == [
        {"source": {"key": "internal"}, "reason": "UNAVAILABLE"}
    ]
    assert_store_unavailable(post(url, UPDATE, BOOTSTRAP, {"id": victim}), 200)
    assert_store_unavailable(post(url, REVOKE, BOOTSTRAP, {"id": victim}), 200)
    assert_store_unavailable(post(url, AUDIT, BOOTSTRAP), 200)
    assert httpx.get(f"{url}/readyz").status_code == 503
    auth_lines = [line for line in logs.lines if line.startswith("tokengate.auth ")]
    assert auth_lines and all("Traceback" not in line for line in auth_lines), auth_lines
    assert victim_secret not in logs.text

    mend_store()
    assert httpx.get(f"{url}/readyz").status_code == 200
    # The store answers again: the secret refused during the outage is accepted (a
    # read-only token lists what its rights cover: itself).
    assert data(url, LIST, victim_secret)["tokens"]["totalCount"] == 1
    assert data(url, LIST, BOOTSTRAP)["tokens"]["totalCount"] == 2
    assert data(url, UPDATE, BOOTSTRAP, {"id": victim})["updateToken"]["token"]["name"] == (
        "renamed"
    )
    assert data(url, REVOKE, BOOTSTRAP, {"id": victim})["revokeToken"]["revokedTokenId"] == victim
    assert post(url, LIST, victim_secret).status_code == 401


@contextmanager
def serve(config: Config, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[Any]]]:
    """The gateway on loopback, and (once started) its store and the loop that serves it."""
    opened: list[Any] = []
    real_open_store = tokengate.gateway.app.open_store

    async def recording_open_store(*args: Any, **kwargs: Any) -> StoreSource:
        store = await real_open_store(*args, **kwargs)
        opened.append((store, asyncio.get_running_loop()))
        return store

    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    monkeypatch.setattr(tokengate.gateway.app, "open_store", recording_open_store)
    with serve_in_thread(create_app(config)) as url:
        yield url, opened


@pytest.mark.postgres
def test_postgresql_stopped_under_the_gateway(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    long_auth_cache: None,
    captured_logs: LogCapture,
) -> None:
    with throwaway_cluster() as cluster:
        config = gateway_config(tmp_path, cluster.url)
        with serve(config, monkeypatch) as (url, _):
            exercise_outage(url, cluster.stop, cluster.start, captured_logs)


def test_sqlite_file_gone_under_the_gateway(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    long_auth_cache: None,
    captured_logs: LogCapture,
) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    config = gateway_config(tmp_path, f"sqlite:///{folder / 'gateway.db'}")
    with serve(config, monkeypatch) as (url, opened):
        [(store, loop)] = opened

        def unmount() -> None:
            # Close the pooled connections (on the gateway's own loop; the list reads'
            # own engine too), then take the database away so that new ones cannot open
            # it.
            asyncio.run_coroutine_threadsafe(store.engine.dispose(), loop).result(timeout=10)
            store.reads_engine.dispose()
            folder.rename(tmp_path / "away")

        def remount() -> None:
            (tmp_path / "away").rename(folder)

        exercise_outage(url, unmount, remount, captured_logs)
