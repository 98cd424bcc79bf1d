"""The CLI as outside tools drive it, and data that survives a restart."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.conftest import gateway_config, wait_until_up
from tokengate.gateway.app import create_app
from tokengate.upstreams.loopback import serve_in_thread

pytestmark = pytest.mark.slow


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tokengate.gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def query(url: str, secret: str, text: str) -> httpx.Response:
    return httpx.post(
        f"{url}/graphql", json={"query": text}, headers={"Authorization": f"Bearer {secret}"}
    )


def test_token_create_json_then_serve_and_restart(tmp_path: Path, monkeypatch: object) -> None:
    config_file = tmp_path / "tg.toml"
    config_file.write_text('[store]\nurl = "sqlite:///tg.db"\n')
    made = cli(
        "token",
        "create",
        "--config",
        str(config_file),
        "--name",
        "ops",
        "--scope",
        "tokens:read",
        "--scope",
        "tokens:write",
        "--subject",
        "ops-user",
        "--json",
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    out = json.loads(made.stdout)
    assert {"id", "secret"} <= out.keys() and out["secret"].startswith("tg_")
    assert out["secret"] not in made.stderr
    assert (tmp_path / "tg.db").exists() and (tmp_path / "tokengate.key").exists()
    assert oct((tmp_path / "tokengate.key").stat().st_mode & 0o777) == "0o600"

    bad = cli(
        "token",
        "create",
        "--config",
        str(config_file),
        "--name",
        "x",
        "--scope",
        "tokens:root",
        cwd=tmp_path,
    )
    assert bad.returncode == 1 and "unknown scope" in bad.stderr

    from tokengate.gateway.config import load

    config = load(config_file, environ={})
    for _ in range(2):  # the second start proves the data (and key) survive a restart
        with serve_in_thread(create_app(config)) as url:
            response = query(
                url,
                out["secret"],
                "{ tokens { totalCount edges { node { id name owner { id } } } } }",
            )
            assert response.status_code == 200, response.text
            edges = response.json()["data"]["tokens"]["edges"]
            assert [e["node"]["id"] for e in edges] == [out["id"]]
            assert edges[0]["node"]["owner"] == {"id": "ops-user"}


def test_bootstrap_token_rotation(tmp_path: Path, monkeypatch: object) -> None:
    import pytest

    mp = pytest.MonkeyPatch()
    try:
        config = gateway_config(tmp_path)
        first, second = "first-bootstrap-secret-000000", "second-bootstrap-secret-11111"
        mp.setenv("TOKENGATE_BOOTSTRAP_TOKEN", first)
        with serve_in_thread(create_app(config)) as url:
            assert query(url, first, "{ sources { key } }").status_code == 200
        with serve_in_thread(create_app(config)) as url:  # same value: still one bootstrap token
            body = query(
                url, first, '{ tokens(filter: {name: "bootstrap"}) { totalCount } }'
            ).json()
            assert body["data"]["tokens"]["totalCount"] == 1
        mp.setenv("TOKENGATE_BOOTSTRAP_TOKEN", second)
        with serve_in_thread(create_app(config)) as url:
            assert query(url, first, "{ sources { key } }").status_code == 401
            body = query(
                url,
                second,
                '{ tokens(filter: {name: "bootstrap", statuses: [ACTIVE, REVOKED]}) { edges { node { status } } } }',
            ).json()
            assert sorted(e["node"]["status"] for e in body["data"]["tokens"]["edges"]) == [
                "ACTIVE",
                "REVOKED",
            ]
    finally:
        mp.undo()


def test_export_schema_and_migrate(tmp_path: Path) -> None:
    sdl = cli("export-schema", cwd=tmp_path)
    assert sdl.returncode == 0 and "type Token implements Node" in sdl.stdout
    config_file = tmp_path / "tg.toml"
    config_file.write_text('[store]\nurl = "sqlite:///m.db"\n')
    migrated = cli("migrate", "--config", str(config_file), cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert "revision 0003" in migrated.stdout


def test_health_endpoints(tmp_path: Path) -> None:
    with serve_in_thread(create_app(gateway_config(tmp_path))) as url:
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "store": "ok", "sources": {}}


def test_too_short_bootstrap_token_stops_serve(tmp_path: Path) -> None:
    result = cli("serve", "--port", "0", cwd=tmp_path, env={"TOKENGATE_BOOTSTRAP_TOKEN": "short"})
    assert result.returncode != 0
    assert "at least 16 characters" in result.stderr
    assert "short" not in result.stderr.replace("at least", "")


def _read_response(conn: socket.socket) -> bytes:
    """One whole HTTP/1.1 response (headers and a Content-Length body), however the
    server split it into segments; b"" when the connection closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = conn.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_serve_keeps_an_idle_connection_past_common_client_timeouts(tmp_path: Path) -> None:
    """A client (or load balancer) reusing a connection idle for 6 s finds it open: the
    gateway must not be the side that closes it (uvicorn's default is 5 s, which raced
    httpx's own 5 s idle expiry and reset requests under load)."""
    import time

    from tokengate.upstreams.loopback import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tokengate.gateway.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env={**os.environ, "TOKENGATE_BOOTSTRAP_TOKEN": "keep-alive-test-token-0123456789"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}", process, path="/healthz", timeout_s=60)
        request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(request)
            assert _read_response(conn).startswith(b"HTTP/1.1 200")
            time.sleep(6)
            conn.sendall(request)
            assert _read_response(conn).startswith(b"HTTP/1.1 200"), "the idle connection closed"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_with_worker_processes(tmp_path: Path) -> None:
    """`serve --workers 2`: the store prepared once, both workers up on one socket and
    answering with the same data."""
    import time

    from tokengate.upstreams.loopback import free_port

    secret = "workers-test-token-0123456789"
    config_file = tmp_path / "tg.toml"
    config_file.write_text('[store]\nurl = "sqlite:///tg.db"\n')
    port = free_port()
    log = (tmp_path / "serve.log").open("w+")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokengate.gateway.cli",
            "serve",
            "--config",
            str(config_file),
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        cwd=tmp_path,
        env={**os.environ, "TOKENGATE_BOOTSTRAP_TOKEN": secret},
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            log.seek(0)
            if log.read().count("tokengate ready") == 2:
                break
            assert process.poll() is None, "serve --workers exited"
            assert time.monotonic() < deadline, "the workers did not come up"
            time.sleep(0.2)
        # A worker logs "ready" from its lifespan start-up, before uvicorn listens on the
        # shared socket (uvicorn binds it in the parent and listens in each worker).
        wait_until_up(url, process)
        for _ in range(20):
            response = query(url, secret, "{ tokens { totalCount } }")
            assert response.status_code == 200, response.text
            assert response.json() == {"data": {"tokens": {"totalCount": 1}}}
        assert (tmp_path / "tg.db").exists() and (tmp_path / "tokengate.key").exists()
    finally:
        process.terminate()
        process.wait(timeout=30)
    log.seek(0)
    text = log.read()
    assert "Traceback" not in text, text[-2000:]
    assert secret not in text


def test_workers_are_refused_with_demo_and_out_of_range(tmp_path: Path) -> None:
    demo = cli("serve", "--demo", "--workers", "2", cwd=tmp_path)
    assert demo.returncode == 2 and "drop --workers" in demo.stderr
    zero = cli("serve", "--workers", "0", cwd=tmp_path)
    assert zero.returncode != 0 and "--workers must be between 1 and 64" in zero.stderr


def test_demo_metrics_show_every_source(tmp_path: Path) -> None:
    """`serve --demo`, a few queries, then /metrics: every source's upstream series is
    non-zero (what an operator trying the demo looks at first)."""
    import re
    import time

    from prometheus_client.parser import text_string_to_metric_families

    from tokengate.upstreams.loopback import free_port

    port = free_port()
    out = (tmp_path / "demo.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "tokengate.gateway.cli", "serve", "--demo", "--port", str(port)],
        cwd=tmp_path,
        env={**os.environ, "TOKENGATE_SHUTDOWN_DELAY_S": "0"},
        stdout=out,
        stderr=out,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, path="/readyz", timeout_s=60)
        deadline = time.monotonic() + 30
        while not (found := re.search(r"Bearer (tg_demo_[A-Za-z0-9_-]+)", _read(out))):
            assert time.monotonic() < deadline, "the demo printed no admin token"
            time.sleep(0.2)
        secret = found.group(1)
        page = '{ tokens(first: 20, filter: {userId: "anna.de.vries@example.com"}) '
        page += "{ edges { node { id } } failedSources { reason } } }"
        for _ in range(3):
            response = query(url, secret, page)
            assert response.status_code == 200, response.text
            assert response.json()["data"]["tokens"]["failedSources"] == []
        text = httpx.get(f"{url}/metrics").text
    finally:
        process.terminate()
        process.wait(timeout=30)
    calls: dict[str, float] = {}
    timed: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tokengate_upstream_requests_total":
                if sample.labels["outcome"] == "ok":
                    calls[sample.labels["source"]] = sample.value
            elif sample.name == "tokengate_upstream_request_duration_seconds_count":
                timed[sample.labels["source"]] = sample.value
    expected = {"internal": 3.0, "amper": 3.0, "idp": 3.0, "fleet": 3.0}
    assert calls == expected
    assert timed == expected
    assert secret not in text


def _read(log: IO[str]) -> str:
    log.seek(0)
    return log.read()
