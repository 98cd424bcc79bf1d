"""Draining on SIGTERM: /readyz 503 at once, serving on for the delay, then the listener
closes and requests in flight finish; real processes over loopback HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.conftest import BOOTSTRAP, wait_until_up
from tokengate.gateway.config import ConfigError, load
from tokengate.gateway.demo import simulators
from tokengate.gateway.drain import Drain
from tokengate.upstreams.loopback import free_port
from tokengate.upstreams.oauth.simulator import WALK_USER

AUTH = {"Authorization": f"Bearer {BOOTSTRAP}"}
FAST_QUERY = "{ sources { key } }"  # answered by the gateway alone, no upstream call
SLOW_QUERY = f'{{ tokens(filter: {{userId: "{WALK_USER}"}}) {{ totalCount }} }}'


# --- the setting ---------------------------------------------------------------------------


def test_shutdown_delay_defaults_to_3_s_and_reads_file_then_environment(tmp_path: Path) -> None:
    assert load(None, environ={}).server.shutdown_delay_s == 3.0
    path = tmp_path / "tg.toml"
    path.write_text("[server]\nshutdown_delay_s = 7.5\n")
    assert load(path, environ={}).server.shutdown_delay_s == 7.5
    env = {"TOKENGATE_SHUTDOWN_DELAY_S": "0"}
    assert load(path, environ=env).server.shutdown_delay_s == 0.0
    assert load(None, environ={"TOKENGATE_SHUTDOWN_DELAY_S": "12"}).server.shutdown_delay_s == 12


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "shutdown_delay_s = -1",
            r"tg.toml:3: shutdown_delay_s must be a number of seconds from 0 to 300",
        ),
        ("shutdown_delay_s = 301", r"tg.toml:3: shutdown_delay_s must be .* from 0 to 300"),
        ('shutdown_delay_s = "3"', r"tg.toml:3: shutdown_delay_s must be a int or float"),
        ("shutdown_delay_s = true", r"tg.toml:3: shutdown_delay_s must be a int or float"),
        ("shutdown_delay_s = nan", r"tg.toml:3: shutdown_delay_s must be .* from 0 to 300"),
    ],
)
def test_bad_shutdown_delay_in_the_file(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "tg.toml"
    path.write_text(f"[server]\nport = 9000\n{line}\n")
    with pytest.raises(ConfigError, match=expected):
        load(path, environ={})


@pytest.mark.parametrize("raw", ["-0.5", "301", "inf", "nan", "three", "3s"])
def test_bad_shutdown_delay_in_the_environment(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"^TOKENGATE_SHUTDOWN_DELAY_S: shutdown_delay_s"):
        load(None, environ={"TOKENGATE_SHUTDOWN_DELAY_S": raw})


# --- the signal handling, in this process ------------------------------------------------


@contextmanager
def _server_handler() -> Iterator[list[int]]:
    """Stands in for uvicorn's handler (one callable for SIGTERM and SIGINT), recording
    the signals it gets; the previous handlers come back afterwards."""
    received: list[int] = []

    def handler(sig: int, _frame: object) -> None:
        received.append(sig)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


async def test_first_sigterm_waits_for_the_delay_second_goes_through_at_once() -> None:
    with _server_handler() as received:
        drain = Drain(0.3)
        assert drain.install()
        signal.raise_signal(signal.SIGTERM)
        assert drain.draining and received == []
        await asyncio.sleep(0.1)
        assert received == [], "the server stopped before the delay ran out"
        await asyncio.sleep(0.4)
        assert received == [signal.SIGTERM]

        skipped = Drain(30)
        assert skipped.install()
        signal.raise_signal(signal.SIGTERM)
        await asyncio.sleep(0.05)
        assert skipped.draining and received == [signal.SIGTERM]
        signal.raise_signal(signal.SIGTERM)
        assert received == [signal.SIGTERM, signal.SIGTERM]


async def test_sigint_and_a_zero_delay_stop_at_once() -> None:
    with _server_handler() as received:
        drain = Drain(30)
        assert drain.install()
        signal.raise_signal(signal.SIGINT)
        assert received == [signal.SIGINT] and drain.draining
    with _server_handler() as received:
        assert Drain(0).install()
        signal.raise_signal(signal.SIGTERM)
        assert received == [signal.SIGTERM]


async def test_install_refuses_without_the_servers_handler() -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        assert not Drain(3).install()
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- real processes ------------------------------------------------------------------------


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str
    log: IO[str]

    def log_text(self) -> str:
        self.log.seek(0)
        return self.log.read()


@contextmanager
def serve(tmp_path: Path, sim: Any, *, workers: int, delay_s: float) -> Iterator[Served]:
    """`tokengate serve` against the OAuth-style simulator, up and ready (every worker)."""
    config = tmp_path / "tg.toml"
    config.write_text(
        f"""[store]\nurl = "sqlite:///tg.db"\n[[sources]]\nkey = "idp"\nprovider = "oauth"
base_url = "{sim.url}"\nclient_id_env = "SIM_ID"\nclient_secret_env = "SIM_SECRET"\ntimeout_s = 10\n"""
    )
    port = free_port()
    env = {
        **os.environ,
        "TOKENGATE_BOOTSTRAP_TOKEN": BOOTSTRAP,
        "TOKENGATE_SHUTDOWN_DELAY_S": str(delay_s),
        "SIM_ID": sim.source.credentials["client_id"],
        "SIM_SECRET": sim.source.credentials["client_secret"],
    }
    argv = [sys.executable, "-m", "tokengate.gateway.cli", "serve", "--config", str(config)]
    argv += ["--port", str(port), "--workers", str(workers)]
    log = (tmp_path / "serve.log").open("w+")
    process = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=log, stderr=log)
    served = Served(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 60
        # Each worker logs "ready" once its lifespan (which installs the drain) has run.
        while served.log_text().count("tokengate ready") < workers:
            assert process.poll() is None, served.log_text()[-2000:]
            assert time.monotonic() < deadline, "the gateway did not come up"
            time.sleep(0.1)
        wait_until_up(served.url, process)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _connection_refused(url: str) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=1)
    except httpx.ConnectError:
        return True
    except httpx.TransportError:
        return False
    return False


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drains_for_the_delay_then_closes_and_finishes(
    tmp_path: Path, workers: int
) -> None:
    delay_s = 2.5
    with (
        simulators(("oauth",), count=5) as sims,
        serve(tmp_path, sims["idp"], workers=workers, delay_s=delay_s) as served,
    ):
        url = served.url
        # Keeps the slow query in flight past the delay and past the listener's closing.
        sims["idp"].state.control.latency_ms = 5500
        slow: list[tuple[float, httpx.Response]] = []

        def slow_request() -> None:
            response = httpx.post(
                f"{url}/graphql", json={"query": SLOW_QUERY}, headers=AUTH, timeout=30
            )
            slow.append((time.monotonic(), response))

        in_flight = threading.Thread(target=slow_request)
        in_flight.start()
        time.sleep(0.5)  # the query now waits on the slow upstream
        served.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()

        # /readyz says 503 at once (the supervisor passes SIGTERM on within its 0.5 s tick).
        while (ready := httpx.get(f"{url}/readyz", timeout=2)).status_code == 200:
            assert time.monotonic() - signalled < (0.5 if workers == 1 else 1.5), "not draining"
            time.sleep(0.02)
        assert ready.status_code == 503 and ready.json() == {"status": "draining"}

        # Until the delay is nearly over, new connections are accepted and served: every
        # httpx call below opens its own.
        rounds = 0
        while time.monotonic() - signalled < delay_s - 0.4:
            ready = httpx.get(f"{url}/readyz", timeout=2)
            assert ready.status_code == 503 and ready.json() == {"status": "draining"}
            assert httpx.get(f"{url}/healthz", timeout=2).json() == {"status": "ok"}
            answer = httpx.post(
                f"{url}/graphql", json={"query": FAST_QUERY}, headers=AUTH, timeout=2
            )
            assert answer.status_code == 200
            assert answer.json() == {"data": {"sources": [{"key": "internal"}, {"key": "idp"}]}}
            # Keep-alive clients are told to reconnect (to a ready replica).
            assert answer.headers["connection"] == "close"
            with socket.create_connection(url.removeprefix("http://").split(":"), timeout=2):
                pass
            rounds += 1
            time.sleep(0.1)
        assert rounds >= 2

        # Then the listener closes while the slow query is still in flight: new connections
        # are refused, not left hanging in a backlog nobody accepts from.
        while not _connection_refused(url):
            assert time.monotonic() - signalled < delay_s + 1.5, "still accepting after the delay"
            time.sleep(0.05)
        assert time.monotonic() - signalled >= delay_s - 0.4
        assert in_flight.is_alive() and not slow

        # The query in flight through all of it finishes, after the delay, in full.
        in_flight.join(timeout=30)
        [(finished, response)] = slow
        assert finished - signalled > delay_s
        assert response.status_code == 200, response.text
        assert "errors" not in response.json()
        assert response.json()["data"]["tokens"]["totalCount"] >= 5
        assert served.process.wait(timeout=20) == 0
        text = served.log_text()
        assert "Traceback" not in text, text[-2000:]
        assert "draining" in text


@pytest.mark.slow
@pytest.mark.parametrize(
    ("workers", "second"),
    [(1, signal.SIGTERM), (1, signal.SIGINT), (2, signal.SIGTERM)],
    ids=["sigterm", "sigint", "workers-sigterm"],
)
def test_a_second_signal_skips_the_rest_of_the_delay(
    tmp_path: Path, workers: int, second: signal.Signals
) -> None:
    with (
        simulators(("oauth",), count=5) as sims,
        serve(tmp_path, sims["idp"], workers=workers, delay_s=60) as served,
    ):
        served.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        while httpx.get(f"{served.url}/readyz", timeout=2).status_code == 200:
            assert time.monotonic() - signalled < 1.5, "not draining"
            time.sleep(0.02)
        # Serving on, then stopped by the second signal well before the 60 s.
        assert httpx.get(f"{served.url}/healthz", timeout=2).status_code == 200
        served.process.send_signal(second)
        assert served.process.wait(timeout=15) == 0
        assert time.monotonic() - signalled < 15
        assert "Traceback" not in served.log_text()
