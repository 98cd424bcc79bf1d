"""Several replicas: one rate limit across them (Redis), revocations reaching every replica
within 1 s (PostgreSQL NOTIFY, Redis pub/sub), and Redis failing without a 500."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    BOOTSTRAP,
    LogCapture,
    _fresh_pg_database,
    _pg_admin_url,
    gateway_config,
    wait_until_up,
)
from tests.redis_server import shared_redis_url, throwaway_redis
from tokengate.gateway import shared_limits
from tokengate.gateway.app import create_app
from tokengate.gateway.config import ConfigError, LimitsConfig, load
from tokengate.gateway.shared_limits import RedisBuckets, redis_client
from tokengate.upstreams.loopback import free_port, serve_in_thread

CREATE = """mutation { createToken(input: {source: "internal", name: "replica-test",
  scopes: ["tokens:read"]}) { token { id } secret } }"""
REVOKE = """mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }"""
DEACTIVATE = """mutation($id: ID!) { updateToken(input: {id: $id, status: INACTIVE}) {
  token { status } } }"""
PING = "{ sources { key } }"
# Refusal must come well before the 2 s authentication cache would have expired by itself.
PROPAGATION_LIMIT_S = 1.0


def post(url: str, query: str, secret: str, variables: dict[str, Any] | None = None) -> Any:
    return httpx.post(
        f"{url}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=10,
    )


def data(url: str, query: str, secret: str, variables: dict[str, Any] | None = None) -> Any:
    response = post(url, query, secret, variables)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def assert_stopped_everywhere(a: str, b: str, mutation: str) -> float:
    """A token B has just cached is changed through A; B refuses it within 1 s of A's
    answer, and before B's own cache entry could have expired. Returns the delay."""
    made = data(a, CREATE, BOOTSTRAP)["createToken"]
    token_id, secret = made["token"]["id"], made["secret"]
    first_seen = time.monotonic()
    # B has never seen this secret: this request reads the store and caches the caller.
    assert post(b, PING, secret).status_code == 200
    data(a, mutation, BOOTSTRAP, {"id": token_id})
    answered = time.monotonic()
    while True:
        status = post(b, PING, secret).status_code
        now = time.monotonic()
        if status == 401:
            break
        assert status == 200
        assert now - answered < PROPAGATION_LIMIT_S, "replica B still accepts the token"
        time.sleep(0.01)
    assert now - first_seen < 2.0, "refused only once B's cache entry expired"
    return now - answered


# -- the limiter on its own -----------------------------------------------------------------


async def test_two_limiters_share_one_bucket() -> None:
    url = shared_redis_url()
    first = RedisBuckets(redis_client(url), rate_per_s=0.01, burst=3)
    second = RedisBuckets(redis_client(url), rate_per_s=0.01, burst=3)
    caller = uuid.uuid4().hex
    try:
        decisions = [await limiter.check(caller) for limiter in (first, second) * 3]
        assert decisions[:3] == [None, None, None]
        waits = decisions[3:]
        assert all(w is not None and 90 < w <= 100 for w in waits), waits
        assert await first.check(uuid.uuid4().hex) is None, "buckets are per caller"
        assert first.fallbacks == second.fallbacks == 0
    finally:
        await first.aclose()
        await second.aclose()


async def test_redis_down_then_back(captured_logs: LogCapture) -> None:
    """Redis stops: decisions fall back to in-process buckets (per replica), with one
    warning and a counter; Redis back: shared again once the retry pause is over."""
    now = [0.0]
    with throwaway_redis() as server:
        limiter = RedisBuckets(
            redis_client(server.url), rate_per_s=0.01, burst=2, clock=lambda: now[0]
        )
        try:
            assert await limiter.check("c") is None
            server.stop()
            decisions = [await limiter.check("c") for _ in range(3)]
            # The local bucket starts full: the limit is now per replica, not off.
            assert decisions[:2] == [None, None] and decisions[2] is not None
            assert limiter.fallbacks == 3 and not limiter.shared
            warnings = [line for line in captured_logs.lines if "Redis unreachable" in line]
            assert len(warnings) == 1 and "Traceback" not in captured_logs.text
            server.start()
            assert await limiter.check("c") is not None, "still local within the retry pause"
            assert limiter.fallbacks == 4
            now[0] += shared_limits.RETRY_AFTER_FAILURE_S
            # Redis's bucket (the restarted server kept nothing: full), not the empty local one.
            back = [await limiter.check("c") for _ in range(3)]
            assert back[:2] == [None, None] and back[2] is not None
            assert limiter.shared and limiter.fallbacks == 4
            assert "limits shared across replicas" in captured_logs.text
        finally:
            await limiter.aclose()


# -- config ---------------------------------------------------------------------------------


def test_storage_url_from_file_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "tg.toml"
    config.write_text('[limits]\nstorage_url = "redis://127.0.0.1:6379/2"\n')
    assert load(config, environ={}).limits.storage_url == "redis://127.0.0.1:6379/2"
    assert load(None, environ={}).limits.storage_url is None
    env = {"TOKENGATE_LIMITS_STORAGE_URL": "rediss://:pw@redis.internal:6380/0"}
    assert load(config, environ=env).limits.storage_url == env["TOKENGATE_LIMITS_STORAGE_URL"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('storage_url = "redis://:hunter2@127.0.0.1:6379"', "TOKENGATE_LIMITS_STORAGE_URL"),
        ('storage_url = "memcached://127.0.0.1"', "redis://"),
        ('storage_url = "redis://127.0.0.1:port"', "bad port"),
        ("storage_url = 5", "storage_url must be a str"),
    ],
)
def test_bad_storage_url(tmp_path: Path, line: str, expected: str) -> None:
    config = tmp_path / "tokengate.toml"
    config.write_text(f"[limits]\n{line}\n")
    with pytest.raises(ConfigError, match=expected) as raised:
        load(config, environ={})
    assert str(raised.value).startswith("tokengate.toml:2:")
    assert "hunter2" not in str(raised.value)


# -- replicas in one process (each app has its own store, cache, limiter and bus) ----------


@contextmanager
def two_replicas(tmp_path: Path, store_url: str, limits: LimitsConfig) -> Iterator[list[str]]:
    config = gateway_config(tmp_path, store_url, limits=limits)
    with ExitStack() as stack:
        urls = [stack.enter_context(serve_in_thread(create_app(config))) for _ in range(2)]
        yield urls


def test_sqlite_and_redis_revocation_reaches_the_other_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    limits = LimitsConfig(rate_per_s=1e6, burst=1_000_000, storage_url=shared_redis_url())
    with two_replicas(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", limits) as (a, b):
        _wait_listening(a, b)
        assert assert_stopped_everywhere(a, b, REVOKE) < PROPAGATION_LIMIT_S
        assert assert_stopped_everywhere(b, a, DEACTIVATE) < PROPAGATION_LIMIT_S
        for url in (a, b):
            scraped = scrape(url)
            assert scraped[("tokengate_replica_sharing", (("part", "rate_limits"),))] == 1
            assert scraped[("tokengate_replica_sharing", (("part", "revocations"),))] == 1
            assert scraped[("tokengate_rate_limit_local_decisions_total", ())] == 0


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
        for sample in family.samples
    }


def _wait_listening(*urls: str) -> None:
    """The bus subscribes in the background after start-up; a token cached before then is
    cleared when it does, but this test wants the message path itself."""
    deadline = time.monotonic() + 10
    for url in urls:
        while httpx.get(f"{url}/readyz").json().get("revocations", "listening") != "listening":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    time.sleep(0.2)


def test_unreachable_redis_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, captured_logs: LogCapture
) -> None:
    """storage_url names a port nobody listens on: every request is still answered (no 500),
    the limit holds per replica, and revoking still works."""
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    dead = f"redis://127.0.0.1:{free_port()}/0"
    limits = LimitsConfig(rate_per_s=0.01, burst=4, storage_url=dead)
    config = gateway_config(tmp_path, limits=limits)
    with serve_in_thread(create_app(config)) as url:
        made = data(url, CREATE, BOOTSTRAP)["createToken"]
        answers = [post(url, PING, made["secret"]) for _ in range(5)]
        assert [r.status_code for r in answers] == [200] * 5
        codes = [r.json().get("errors", [{}])[0].get("extensions", {}).get("code") for r in answers]
        assert codes == [None] * 4 + ["RATE_LIMITED"]
        revoked = data(url, REVOKE, BOOTSTRAP, {"id": made["token"]["id"]})
        assert revoked["revokeToken"]["revokedTokenId"] == made["token"]["id"]
        assert post(url, PING, made["secret"]).status_code == 401
        scraped = scrape(url)
    # Create, five pings, revoke: each decided by this replica alone (the last ping was
    # refused for its credentials before the limiter).
    assert scraped[("tokengate_rate_limit_local_decisions_total", ())] == 7
    assert scraped[("tokengate_replica_sharing", (("part", "rate_limits"),))] == 0
    assert scraped[("tokengate_replica_sharing", (("part", "revocations"),))] == 0
    assert "Redis unreachable" in captured_logs.text
    assert "could not notify other replicas" in captured_logs.text
    assert "Traceback" not in captured_logs.text
    assert made["secret"] not in captured_logs.text


# -- replicas as separate processes ---------------------------------------------------------


@contextmanager
def serve_processes(
    tmp_path: Path, config_text: str, count: int, env: dict[str, str] | None = None
) -> Iterator[list[str]]:
    """``count`` `tokengate serve` processes on one config (and so one store and key)."""
    config = tmp_path / "tg.toml"
    config.write_text(config_text)
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    logs = []
    try:
        for i in range(count):
            port = free_port()
            log = (tmp_path / f"replica-{i}.log").open("wb")
            logs.append(log)
            process = subprocess.Popen(
                [sys.executable, "-m", "tokengate.gateway.cli", "serve", "--config", str(config),
                 "--port", str(port)],
                cwd=tmp_path,
                env={**os.environ, "TOKENGATE_BOOTSTRAP_TOKEN": BOOTSTRAP, **(env or {})},
                stdout=log,
                stderr=log,
            )  # fmt: skip
            processes.append(process)
            urls.append(f"http://127.0.0.1:{port}")
            # One after the other: the first creates the server key the others read.
            wait_until_up(urls[-1], process, timeout_s=60)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        for log in logs:
            log.close()
    text = "\n".join(
        (tmp_path / f"replica-{i}.log").read_text(errors="replace") for i in range(count)
    )
    assert "Traceback" not in text, text[-3000:]


@pytest.mark.slow
def test_two_processes_on_one_redis_share_one_limit_and_revocations(tmp_path: Path) -> None:
    url = shared_redis_url()
    text = "[limits]\nrate_per_s = 0.01\nburst = 6\n"
    with serve_processes(tmp_path, text, 2, {"TOKENGATE_LIMITS_STORAGE_URL": url}) as (a, b):
        made = data(a, CREATE, BOOTSTRAP)["createToken"]
        secret = made["secret"]
        answers = [post(replica, PING, secret) for _ in range(5) for replica in (a, b)]
        assert {r.status_code for r in answers} == {200}
        limited = ["errors" in r.json() for r in answers]
        # Six in all, whichever replica served them; alone, each would have allowed six.
        assert limited.count(False) == 6, limited
        assert all(
            r.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
            for r in answers
            if "errors" in r.json()
        )
        # The same two processes on SQLite: revocations travel over Redis pub/sub.
        _wait_listening(a, b)
        assert assert_stopped_everywhere(a, b, REVOKE) < PROPAGATION_LIMIT_S


@pytest.mark.slow
@pytest.mark.postgres
def test_two_processes_on_one_postgresql_revoke_within_a_second(tmp_path: Path) -> None:
    admin = _pg_admin_url()
    if not admin:
        pytest.skip("set TOKENGATE_TEST_PG_URL to run the PostgreSQL replica tests")
    store_url = _fresh_pg_database(admin)
    text = f'[store]\nurl = "{store_url}"\n'
    with serve_processes(tmp_path, text, 2) as (a, b):
        _wait_listening(a, b)
        delays = [assert_stopped_everywhere(a, b, REVOKE) for _ in range(3)]
        delays.append(assert_stopped_everywhere(b, a, DEACTIVATE))
        assert max(delays) < PROPAGATION_LIMIT_S


@pytest.mark.slow
@pytest.mark.postgres
def test_postgresql_listener_reconnects_after_an_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, captured_logs: LogCapture
) -> None:
    """PostgreSQL stops under both replicas and comes back: the listeners reconnect on their
    own and revocations reach the other replica again."""
    from tests.pg_cluster import throwaway_cluster

    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    with throwaway_cluster() as cluster:
        limits = LimitsConfig(rate_per_s=1e6, burst=1_000_000)
        with two_replicas(tmp_path, cluster.url, limits) as (a, b):
            _wait_listening(a, b)
            assert assert_stopped_everywhere(a, b, REVOKE) < PROPAGATION_LIMIT_S
            cluster.stop()
            deadline = time.monotonic() + 15
            while httpx.get(f"{b}/readyz").json().get("revocations") != "reconnecting":
                assert time.monotonic() < deadline, "the lost listener went unnoticed"
                time.sleep(0.1)
            cluster.start()
            _wait_listening(a, b)
            assert assert_stopped_everywhere(a, b, REVOKE) < PROPAGATION_LIMIT_S
    assert "PostgreSQL listener down" in captured_logs.text


@pytest.mark.slow
def test_redis_listener_reconnects_after_an_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, captured_logs: LogCapture
) -> None:
    """Redis stops under two SQLite replicas and comes back: requests keep being answered
    meanwhile, the listeners reconnect and revocations reach the other replica again."""
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    with throwaway_redis() as server:
        limits = LimitsConfig(rate_per_s=1e6, burst=1_000_000, storage_url=server.url)
        with two_replicas(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", limits) as (a, b):
            _wait_listening(a, b)
            server.stop()
            deadline = time.monotonic() + 15
            while httpx.get(f"{b}/readyz").json().get("revocations") != "reconnecting":
                assert time.monotonic() < deadline, "the lost listener went unnoticed"
                time.sleep(0.05)
            assert data(b, PING, BOOTSTRAP)["sources"], "Redis down is no error"
            assert httpx.get(f"{b}/readyz").json()["rate_limits"] == "per_replica"
            server.start()
            _wait_listening(a, b)
            assert assert_stopped_everywhere(a, b, REVOKE) < PROPAGATION_LIMIT_S
            deadline = time.monotonic() + 10
            while httpx.get(f"{b}/readyz").json()["rate_limits"] != "shared":
                assert time.monotonic() < deadline, "the limits stayed per replica"
                data(b, PING, BOOTSTRAP)  # Redis is tried again by a request, once a second
                time.sleep(0.2)
    assert "Redis listener down" in captured_logs.text
    assert "Traceback" not in captured_logs.text
