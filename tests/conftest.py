"""Shared fixtures: real store files (and a real PostgreSQL when configured), a real gateway
served over loopback HTTP, and a log capture to prove secrets never reach the logs."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
import sqlalchemy as sa

from tokengate.gateway.app import create_app
from tokengate.gateway.config import Config, LimitsConfig, StoreConfig
from tokengate.upstreams.loopback import free_port, serve_in_thread
from tokengate.upstreams.store import SecretHasher, StoreSource, create_engine, migrate

PG_URL_ENV = "TOKENGATE_TEST_PG_URL"
REQUIRE_PG_ENV = "TOKENGATE_REQUIRE_PG"
BOOTSTRAP = "test-bootstrap-" + "x" * 24

# Gateways the tests start as processes (which inherit this environment) stop at SIGTERM
# without the drain delay: the drain tests (tests/gateway/test_drain.py) set their own.
os.environ.setdefault("TOKENGATE_SHUTDOWN_DELAY_S", "0")


def _pg_admin_url() -> str | None:
    url = os.environ.get(PG_URL_ENV)
    if not url and os.environ.get(REQUIRE_PG_ENV):
        pytest.fail(f"{REQUIRE_PG_ENV} is set but {PG_URL_ENV} is not: CI must test PostgreSQL")
    return url


def _fresh_pg_database(admin_url: str) -> str:
    """A new, empty database on the test server; returns its URL."""
    name = "tg_" + uuid.uuid4().hex[:16]

    async def create() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return str(sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False))


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL on an empty database: a SQLite file, and a real PostgreSQL when available."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    admin = _pg_admin_url()
    if not admin:
        pytest.skip(f"set {PG_URL_ENV} to run the store tests against PostgreSQL")
    return _fresh_pg_database(admin)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[StoreSource]:
    engine = create_engine(store_url)
    await migrate(engine)
    source = StoreSource(engine, SecretHasher(secrets.token_bytes(32)))
    yield source
    await source.aclose()


class LogCapture(logging.Handler):
    """Keeps every record (any logger, any level) as fully formatted text."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(text)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


H = TypeVar("H", bound=logging.Handler)


@contextmanager
def on_root_logger(handler: H, level: int = logging.DEBUG) -> Iterator[H]:
    """``handler`` behind the gateway's redaction filter on the root logger at ``level``
    for the ``with`` block (what a test reads is what a served process would write)."""
    from tokengate.gateway.logs import RedactingFilter

    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


@pytest.fixture
def captured_logs() -> Iterator[LogCapture]:
    with on_root_logger(LogCapture()) as handler:
        yield handler


@dataclass
class Gateway:
    """A running gateway on loopback and a way to call it as any bearer."""

    url: str
    admin_secret: str
    config: Config

    def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
        operation_name: str | None = None,
    ) -> httpx.Response:
        auth = {"Authorization": f"Bearer {secret or self.admin_secret}"}
        body: dict[str, Any] = {"query": query, "variables": variables or {}}
        if operation_name is not None:
            body["operationName"] = operation_name
        return httpx.post(
            f"{self.url}/graphql",
            json=body,
            headers={**auth, **(headers or {})},
            timeout=30,
        )

    def gql(
        self, query: str, variables: dict[str, Any] | None = None, *, secret: str | None = None
    ) -> dict[str, Any]:
        """POST and return the JSON body, asserting HTTP 200."""
        response = self.post(query, variables, secret=secret)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def data(
        self, query: str, variables: dict[str, Any] | None = None, *, secret: str | None = None
    ) -> dict[str, Any]:
        """POST and return ``data``, asserting there were no errors."""
        body = self.gql(query, variables, secret=secret)
        assert "errors" not in body, body["errors"]
        result: dict[str, Any] = body["data"]
        return result


# Tests hammer one token; rate limiting has its own tests with tight settings.
UNLIMITED = LimitsConfig(rate_per_s=1e6, burst=1_000_000, secret_lookups_per_minute=1_000_000)


def wait_until_up(
    url: str,
    process: subprocess.Popen[Any] | None = None,
    *,
    path: str = "/readyz",
    timeout_s: float = 30.0,
) -> None:
    """Poll ``url + path`` until it answers 200; fail if ``process`` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}{path}", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process is None or process.poll() is None, "the gateway exited during start-up"
        assert time.monotonic() < deadline, f"{url}{path} did not answer 200 in {timeout_s:g} s"
        time.sleep(0.1)


class DemoProcess:
    """``tokengate serve --demo`` on a free port, in ``workdir`` with ``env``, its output
    (stdout and stderr) in ``workdir/demo.log``; started and up (``/readyz``) on return."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._log = (workdir / "demo.log").open("w+")
        command = [sys.executable, "-m", "tokengate.gateway.cli", "serve", "--demo"]
        self.process = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=self._log,
            stderr=self._log,
        )
        try:
            wait_until_up(self.url, self.process, timeout_s=60)
        except BaseException:
            self.stop()
            raise

    def printed(self) -> str:
        self._log.seek(0)
        return self._log.read()

    def wait_printed(self, pattern: str, what: str, timeout_s: float = 30.0) -> re.Match[str]:
        """The first match of ``pattern`` in what the demo printed, once it has printed it."""
        deadline = time.monotonic() + timeout_s
        while not (found := re.search(pattern, self.printed())):
            assert time.monotonic() < deadline, f"the demo printed no {what}"
            time.sleep(0.2)
        return found

    def stop(self) -> int:
        """SIGTERM, then its exit status."""
        self.process.terminate()
        return self.process.wait(timeout=30)


def gateway_config(tmp_path: Path, store_url: str | None = None, **kwargs: Any) -> Config:
    url = store_url or f"sqlite:///{tmp_path / 'gateway.db'}"
    kwargs.setdefault("limits", UNLIMITED)
    return Config(store=StoreConfig(url=url, key_file=tmp_path / "gateway.key"), **kwargs)


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    config = gateway_config(tmp_path)
    with serve_in_thread(create_app(config)) as url:
        yield Gateway(url=url, admin_secret=BOOTSTRAP, config=config)


REQUIRE_NODE_ENV = "TOKENGATE_REQUIRE_NODE"


def node_or_skip(installed: Path, hint: str) -> str:
    """The ``node`` executable, once the npm package at ``installed`` (a directory under some
    node_modules) is there; else a skip, or a failure where tests/run.sh set
    TOKENGATE_REQUIRE_NODE (it installs node and runs ``npm ci`` itself)."""
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not installed"
    elif not installed.is_dir():
        missing = hint
    if missing is not None:
        if os.environ.get(REQUIRE_NODE_ENV):
            pytest.fail(f"{REQUIRE_NODE_ENV} is set but {missing}")
        pytest.skip(missing)
    assert node is not None
    return node
