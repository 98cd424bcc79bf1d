"""The demo identity provider: ``serve --demo`` signs users in, ``tokengate demo jwt`` prints
tokens the running demo accepts; the IdP app itself refuses what a page should not get."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import DemoProcess
from tokengate.gateway import demo_idp
from tokengate.upstreams.loopback import free_port, serve_in_thread
from tokengate.upstreams.oauth.simulator import WALK_USER

MINE = """query($user: String) { tokens(first: 5, filter: {userId: $user}) {
  totalCount nodes { name provider owner { id } } failedSources { reason } } }"""


# -- the IdP app, in process -----------------------------------------------------------------


@pytest.fixture
def idp_url() -> Iterator[tuple[demo_idp.DemoIdp, str]]:
    port = free_port()
    idp = demo_idp.DemoIdp.create(f"http://127.0.0.1:{port}")
    with serve_in_thread(demo_idp.app(idp), port) as url:
        yield idp, url


def test_token_endpoint_signs_what_the_jwks_verifies(
    idp_url: tuple[demo_idp.DemoIdp, str],
) -> None:
    idp, url = idp_url
    answer = httpx.post(
        f"{url}/token",
        json={"subject": "anna@example.com", "scope": "openid tokens:read"},
        headers={"Origin": "http://pages.example"},
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    keys = jwt.PyJWKSet.from_dict(httpx.get(f"{url}/jwks").json())
    claims = jwt.decode(
        body["access_token"],
        keys[idp.kid].key,
        algorithms=["ES256"],
        audience="tokengate",
        issuer=url,
    )
    assert (claims["sub"], claims["scope"]) == ("anna@example.com", "openid tokens:read")
    preflight = httpx.options(
        f"{url}/token",
        headers={
            "Origin": "http://pages.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"subject": "anna@example.com", "scope": "tokens:admin"},
        {"subject": ""},
        {"subject": "x" * 256},
        {"subject": 5},
        {"scope": "tokens:read"},
        ["not", "an", "object"],
    ],
)
def test_token_endpoint_refuses(idp_url: tuple[demo_idp.DemoIdp, str], body: Any) -> None:
    _, url = idp_url
    answer = httpx.post(f"{url}/token", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"
    assert "access_token" not in answer.text
    assert httpx.post(f"{url}/token", content=b"{not json").status_code == 400


def test_key_file_round_trip_is_private(tmp_path: Path) -> None:
    idp = demo_idp.DemoIdp.create("http://127.0.0.1:1")
    path = idp.save(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600
    again = demo_idp.DemoIdp.load(tmp_path)
    assert (again.issuer, again.kid) == (idp.issuer, idp.kid)
    token = again.token("u", "tokens:read")
    public = idp.key.public_key()
    assert jwt.decode(token, public, algorithms=["ES256"], audience="tokengate")["sub"] == "u"


@pytest.mark.slow
def test_demo_jwt_without_a_running_demo_says_what_to_do(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tokengate.gateway.cli", "demo", "jwt", "--subject", "u"],
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "tokengate serve --demo" in result.stderr
    assert result.stdout == ""


# -- serve --demo, end to end ------------------------------------------------------------------


def _query(url: str, token: str, query: str, **variables: Any) -> httpx.Response:
    return httpx.post(
        f"{url}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


@pytest.mark.slow
def test_serve_demo_signs_users_in(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "TOKENGATE_SHUTDOWN_DELAY_S": "0", "XDG_CACHE_HOME": str(cache)}
    env.pop("TOKENGATE_BOOTSTRAP_TOKEN", None)
    demo = DemoProcess(tmp_path, env)
    url = demo.url
    try:
        found = demo.wait_printed(
            r"Identity provider \(demo, no password\): (\S+)", "identity provider"
        )
        idp = found.group(1)
        printed = re.search(r"Signed in as (\S+) \(JWT, 1 h\): .*Bearer ([\w.-]+)", demo.printed())
        assert printed is not None and printed.group(1) == WALK_USER

        # The printed sample signs in as the demo user with OAuth-style tokens.
        sample = _query(url, printed.group(2), MINE)
        assert sample.status_code == 200, sample.text
        tokens = sample.json()["data"]["tokens"]
        assert tokens["totalCount"] > 5 and tokens["failedSources"] == []
        assert {n["owner"]["id"] for n in tokens["nodes"]} == {WALK_USER}
        assert {n["provider"] for n in tokens["nodes"]} <= {"OAUTH", "INTERNAL"}

        # A page on another origin: a token from POST /token, then the gateway.
        origin = {"Origin": "http://my-sessions.example"}
        signed = httpx.post(
            f"{idp}/token",
            json={"subject": WALK_USER, "scope": "tokens:read tokens:write"},
            headers=origin,
        )
        assert signed.status_code == 200 and signed.headers["access-control-allow-origin"] == "*"
        token = signed.json()["access_token"]
        mine = _query(url, token, MINE, user=WALK_USER)
        assert mine.json()["data"]["tokens"]["totalCount"] == tokens["totalCount"]
        other = _query(url, token, MINE, user="someone.else@example.com").json()
        assert other["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        sources = _query(url, token, "{ sources { key } }").json()["data"]["sources"]
        assert {s["key"] for s in sources} == {"internal", "idp"}  # where a user's tokens are
        preflight = httpx.options(
            f"{url}/graphql",
            headers={
                **origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] in ("*", origin["Origin"])

        # `tokengate demo jwt` signs for the running demo, found through the cache dir.
        made = subprocess.run(
            [
                sys.executable,
                "-m",
                "tokengate.gateway.cli",
                "demo",
                "jwt",
                "--subject",
                "bob@example.com",
                "--scope",
                "tokens:read",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        bob = made.stdout.strip()
        listed = _query(url, bob, MINE).json()
        assert "errors" not in listed, listed
        assert {n["owner"]["id"] for n in listed["data"]["tokens"]["nodes"]} <= {"bob@example.com"}
        create = _query(
            url,
            bob,
            'mutation { createToken(input: {source: "internal", name: "x"}) { secret } }',
        ).json()
        assert create["errors"][0]["extensions"]["code"] == "FORBIDDEN"  # read only
        pointer = json.loads((cache / "tokengate" / "demo.json").read_text())
        assert pointer["idp_url"] == idp
    finally:
        status = demo.stop()
    assert status == 0, demo.printed()
    assert not (cache / "tokengate" / "demo.json").exists()
