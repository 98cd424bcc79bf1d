"""CORS for browser clients on other origins: a preflight exactly as Chromium sends it for
Apollo Client with trace context, the answer cached (Access-Control-Max-Age), X-Request-Id
readable by the script, and origins or headers outside the allow-lists refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import BOOTSTRAP, gateway_config
from tokengate.gateway.app import create_app
from tokengate.gateway.config import DEFAULT_CORS_ALLOW_HEADERS, ConfigError, ServerConfig, load
from tokengate.upstreams.loopback import serve_in_thread

APP = "https://app.example.com"
EVIL = "https://evil.example.net"
# What Chromium sends before Apollo Client's POST with a traceparent (header names sorted,
# lowercase, comma-separated without spaces).
PREFLIGHT = {
    "Origin": APP,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type,traceparent,apollographql-client-name",
    "Sec-Fetch-Mode": "cors",
    "Sec-Fetch-Site": "cross-site",
    "Sec-Fetch-Dest": "empty",
    "Referer": f"{APP}/",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0.0.0 Safari/537.36",
    "Accept": "*/*",
}


@pytest.fixture
def cors_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    config = gateway_config(tmp_path, server=ServerConfig(cors_origins=(APP,)))
    with serve_in_thread(create_app(config)) as url:
        yield url


def listed(value: str | None) -> set[str]:
    return {item.strip().lower() for item in (value or "").split(",") if item.strip()}


def test_browser_preflight_is_allowed_and_cached(cors_url: str) -> None:
    answer = httpx.options(f"{cors_url}/graphql", headers=PREFLIGHT)
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == APP
    assert "POST" in answer.headers["access-control-allow-methods"].split(", ")
    allowed = listed(answer.headers["access-control-allow-headers"])
    assert {"authorization", "content-type", "traceparent", "apollographql-client-name"} <= allowed
    assert answer.headers["access-control-max-age"] == "600"
    assert "origin" in listed(answer.headers.get("vary"))
    # No credentials mode: the bearer travels in a header, never a cookie.
    assert "access-control-allow-credentials" not in answer.headers


def test_every_default_header_passes_a_preflight(cors_url: str) -> None:
    for header in DEFAULT_CORS_ALLOW_HEADERS:
        answer = httpx.options(
            f"{cors_url}/graphql",
            headers={**PREFLIGHT, "Access-Control-Request-Headers": header},
        )
        assert answer.status_code == 200, header
    assert {
        "tracestate",
        "x-request-id",
        "apollographql-client-version",
    } <= set(DEFAULT_CORS_ALLOW_HEADERS)


def test_the_actual_request_exposes_the_request_id(cors_url: str) -> None:
    answer = httpx.post(
        f"{cors_url}/graphql",
        json={"query": "{ sources { key } }"},
        headers={
            "Origin": APP,
            "Authorization": f"Bearer {BOOTSTRAP}",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "apollographql-client-name": "web",
        },
    )
    assert answer.status_code == 200 and answer.json()["data"]["sources"]
    assert answer.headers["access-control-allow-origin"] == APP
    assert "x-request-id" in listed(answer.headers["access-control-expose-headers"])
    assert answer.headers["x-request-id"]


def test_other_origins_and_headers_are_refused(cors_url: str) -> None:
    evil = httpx.options(f"{cors_url}/graphql", headers={**PREFLIGHT, "Origin": EVIL})
    assert evil.status_code == 400
    assert "access-control-allow-origin" not in evil.headers
    # A header outside the list: the preflight fails, so the browser never sends the request.
    odd = httpx.options(
        f"{cors_url}/graphql",
        headers={**PREFLIGHT, "Access-Control-Request-Headers": "authorization,x-forwarded-host"},
    )
    assert odd.status_code == 400
    # A method outside the list.
    put = httpx.options(
        f"{cors_url}/graphql", headers={**PREFLIGHT, "Access-Control-Request-Method": "PUT"}
    )
    assert put.status_code == 400
    # A simple request from another origin gets no CORS header: the browser hides the answer.
    answer = httpx.post(
        f"{cors_url}/graphql",
        json={"query": "{ __typename }"},
        headers={"Origin": EVIL, "Authorization": f"Bearer {BOOTSTRAP}"},
    )
    assert "access-control-allow-origin" not in answer.headers


def test_configured_headers_and_max_age(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tokengate.toml"
    path.write_text(
        "[server]\n"
        f'cors_origins = ["{APP}"]\n'
        'cors_allow_headers = ["Authorization", "Content-Type", "X-Tenant", "authorization"]\n'
        "cors_max_age_s = 7200\n"
    )
    server = load(path, environ={}).server
    assert server.cors_allow_headers == ("authorization", "content-type", "x-tenant")
    assert server.cors_max_age_s == 7200
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    with serve_in_thread(create_app(gateway_config(tmp_path, server=server))) as url:
        ok = httpx.options(
            f"{url}/graphql",
            headers={**PREFLIGHT, "Access-Control-Request-Headers": "authorization,x-tenant"},
        )
        assert ok.status_code == 200 and ok.headers["access-control-max-age"] == "7200"
        # The list replaces the defaults.
        assert httpx.options(f"{url}/graphql", headers=PREFLIGHT).status_code == 400


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('cors_allow_headers = ["x y"]', "cors_allow_headers must list header names"),
        ('cors_allow_headers = ["a:b"]', "cors_allow_headers must list header names"),
        ("cors_allow_headers = [1]", "cors_allow_headers must list header names"),
        ('cors_allow_headers = "authorization"', "cors_allow_headers must be a list"),
        ("cors_max_age_s = -1", "cors_max_age_s must be between 0 and 86400"),
        ("cors_max_age_s = 86401", "cors_max_age_s must be between 0 and 86400"),
        ("cors_max_age_s = 1.5", "cors_max_age_s must be a int"),
    ],
)
def test_bad_cors_config_names_key_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "tokengate.toml"
    path.write_text(f"[server]\nport = 8000\n{line}\n")
    with pytest.raises(ConfigError) as error:
        load(path, environ={})
    assert str(error.value).startswith(f"tokengate.toml:3: {message}")


def test_defaults() -> None:
    server = load(None, environ={}).server
    assert server.cors_origins == () and server.cors_max_age_s == 600
    assert server.cors_allow_headers == DEFAULT_CORS_ALLOW_HEADERS
