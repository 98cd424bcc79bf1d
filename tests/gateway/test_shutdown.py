"""SIGTERM: requests in flight finish, new connections are refused, the process exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import BOOTSTRAP, wait_until_up
from tokengate.gateway.demo import simulators
from tokengate.upstreams.loopback import free_port
from tokengate.upstreams.oauth.simulator import WALK_USER

pytestmark = pytest.mark.slow


def test_sigterm_drains_in_flight_requests(tmp_path: Path) -> None:
    with simulators(("oauth",), count=5) as sims:
        sim = sims["idp"]
        sim.state.control.latency_ms = 1500  # a slow upstream keeps the request in flight
        config = tmp_path / "tg.toml"
        config.write_text(
            f"""[store]\nurl = "sqlite:///tg.db"\n[[sources]]\nkey = "idp"\nprovider = "oauth"
base_url = "{sim.url}"\nclient_id_env = "SIM_ID"\nclient_secret_env = "SIM_SECRET"\ntimeout_s = 10\n"""
        )
        port = free_port()
        env = {
            **os.environ,
            "TOKENGATE_BOOTSTRAP_TOKEN": BOOTSTRAP,
            # No drain delay: the listener closes at the signal (test_drain.py: with one).
            "TOKENGATE_SHUTDOWN_DELAY_S": "0",
            "SIM_ID": sim.source.credentials["client_id"],
            "SIM_SECRET": sim.source.credentials["client_secret"],
        }
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
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(url)
            results: list[httpx.Response] = []

            def slow_request() -> None:
                results.append(
                    httpx.post(
                        f"{url}/graphql",
                        json={
                            "query": f'{{ tokens(filter: {{userId: "{WALK_USER}"}}) {{ totalCount }} }}'
                        },
                        headers={"Authorization": f"Bearer {BOOTSTRAP}"},
                        timeout=30,
                    )
                )

            worker = threading.Thread(target=slow_request)
            worker.start()
            time.sleep(0.5)  # the request is now waiting on the slow upstream
            process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            refused = False
            try:
                httpx.get(f"{url}/healthz", timeout=2)
            except httpx.TransportError:
                refused = True
            worker.join(timeout=30)
            assert refused, "a new connection was accepted during shutdown"
            [response] = results
            assert response.status_code == 200
            assert "errors" not in response.json()
            assert response.json()["data"]["tokens"]["totalCount"] >= 5
            # uvicorn re-raises SIGTERM after its graceful shutdown, as supervisors expect.
            assert process.wait(timeout=20) in (0, -signal.SIGTERM)
        finally:
            if process.poll() is None:
                process.kill()
