"""The store loses nothing: concurrent writes, SIGKILL mid-burst, replicas, outages."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import BOOTSTRAP, gateway_config, wait_until_up
from tokengate.gateway.app import create_app
from tokengate.upstreams.loopback import free_port, serve_in_thread

pytestmark = pytest.mark.slow

CREATE = """mutation($name: String!) { createToken(input: {source: "internal", name: $name}) {
  token { id } } }"""
COUNT = '{ tokens(first: 1, filter: {name: "burst-*"}) { totalCount } }'
AUTH = {"Authorization": f"Bearer {BOOTSTRAP}"}
NO_RATE_LIMIT = "[limits]\nrate_per_s = 1000000\nburst = 1000000\n"


async def create_many(url: str, names: list[str]) -> list[str]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as client:

        async def one(name: str) -> str:
            response = await client.post(
                f"{url}/graphql", json={"query": CREATE, "variables": {"name": name}}, headers=AUTH
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert "errors" not in body, body
            token_id: str = body["data"]["createToken"]["token"]["id"]
            return token_id

        return list(await asyncio.gather(*(one(n) for n in names)))


def count(url: str) -> int:
    body = httpx.post(f"{url}/graphql", json={"query": COUNT}, headers=AUTH, timeout=30).json()
    total: int = body["data"]["tokens"]["totalCount"]
    return total


def test_200_concurrent_creates_all_succeed_and_are_listed(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    with serve_in_thread(create_app(gateway_config(tmp_path, store_url))) as url:
        ids = asyncio.run(create_many(url, [f"burst-{i}" for i in range(200)]))
        assert len(set(ids)) == 200
        assert count(url) == 200
        listed: set[str] = set()
        cursor = None
        while True:
            query = """query($c: String) { tokens(first: 100, after: $c, filter: {name: "burst-*"}) {
              edges { node { id } } pageInfo { hasNextPage endCursor } } }"""
            page = httpx.post(
                f"{url}/graphql", json={"query": query, "variables": {"c": cursor}}, headers=AUTH
            ).json()["data"]["tokens"]
            listed.update(e["node"]["id"] for e in page["edges"])
            if not page["pageInfo"]["hasNextPage"]:
                break
            cursor = page["pageInfo"]["endCursor"]
        assert listed == set(ids)


@contextmanager
def gateway_process(
    config: Path, port: int, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokengate.gateway.cli",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
        ],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}", process)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=30)


def test_sigkill_mid_burst_loses_no_acknowledged_write(tmp_path: Path) -> None:
    config = tmp_path / "tg.toml"
    config.write_text('[store]\nurl = "sqlite:///tg.db"\n' + NO_RATE_LIMIT)
    env = {"TOKENGATE_BOOTSTRAP_TOKEN": BOOTSTRAP, "TOKENGATE_SECRET_KEY": "k" * 40}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    acknowledged: list[str] = []

    async def burst(process: subprocess.Popen[bytes]) -> None:
        async with httpx.AsyncClient(timeout=10) as client:

            async def writer(worker: int) -> None:
                for i in range(1000):
                    try:
                        response = await client.post(
                            f"{url}/graphql",
                            json={"query": CREATE, "variables": {"name": f"burst-{worker}-{i}"}},
                            headers=AUTH,
                        )
                    except httpx.TransportError:
                        return  # the server is gone: this write was never acknowledged
                    body = response.json()
                    acknowledged.append(body["data"]["createToken"]["token"]["id"])
                    if len(acknowledged) == 150:
                        process.send_signal(signal.SIGKILL)

            await asyncio.gather(*(writer(w) for w in range(16)))

    with gateway_process(config, port, env) as process:
        asyncio.run(burst(process))
        assert process.wait(timeout=10) == -signal.SIGKILL
    assert len(acknowledged) >= 150
    db = sqlite3.connect(tmp_path / "tg.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    with gateway_process(config, port, env):
        query = """query($ids: [ID!]!) { nodes(ids: $ids) { id } }"""
        for start in range(0, len(acknowledged), 100):
            chunk = acknowledged[start : start + 100]
            nodes = httpx.post(
                f"{url}/graphql", json={"query": query, "variables": {"ids": chunk}}, headers=AUTH
            ).json()["data"]["nodes"]
            assert [n and n["id"] for n in nodes] == chunk, "an acknowledged write was lost"


def _pg_only(store_url: str) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL-only behaviour")


def test_replicas_sharing_postgresql_see_each_others_writes(store_url: str, tmp_path: Path) -> None:
    _pg_only(store_url)
    config = tmp_path / "tg.toml"
    config.write_text(f'[store]\nurl = "{store_url}"\n' + NO_RATE_LIMIT)
    env = {"TOKENGATE_BOOTSTRAP_TOKEN": BOOTSTRAP, "TOKENGATE_SECRET_KEY": "s" * 40}
    port_a, port_b = free_port(), free_port()
    with gateway_process(config, port_a, env), gateway_process(config, port_b, env):
        a, b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
        for i in range(5):
            made = httpx.post(
                f"{a}/graphql",
                json={"query": CREATE, "variables": {"name": f"burst-{i}"}},
                headers=AUTH,
            ).json()["data"]["createToken"]["token"]["id"]
            seen = httpx.post(
                f"{b}/graphql",
                json={
                    "query": "query($id: ID!) { node(id: $id) { id } }",
                    "variables": {"id": made},
                },
                headers=AUTH,
            ).json()["data"]["node"]
            assert seen == {"id": made}
        assert count(a) == count(b) == 5


def test_readyz_follows_the_store(store_url: str, tmp_path: Path) -> None:
    _pg_only(store_url)
    database = sa.make_url(store_url).database
    admin = os.environ["TOKENGATE_TEST_PG_URL"]

    async def allow(flag: bool) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(flag).lower()}')
            if not flag:
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    database,
                )
        finally:
            await conn.close()

    with serve_in_thread(create_app(gateway_config(tmp_path, store_url))) as url:
        assert httpx.get(f"{url}/readyz").status_code == 200
        asyncio.run(allow(False))
        try:
            down = httpx.get(f"{url}/readyz", timeout=30)
            assert down.status_code == 503
            assert down.json()["store"] == "down"
        finally:
            asyncio.run(allow(True))
        deadline = time.monotonic() + 20
        while httpx.get(f"{url}/readyz", timeout=30).status_code != 200:
            assert time.monotonic() < deadline, "the gateway did not recover"
            time.sleep(0.2)
