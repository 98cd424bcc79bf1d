"""examples/my-sessions in headless chromium against ``tokengate serve --demo``.

The page is built with esbuild and served from its own loopback origin (so every gateway
call is cross-origin: CORS as a browser does it). In chromium it signs in at the demo
identity provider, pages, revokes one of the user's OAuth-style sessions, pages on to the
end, revokes an internal token; then Python asks ``viewer { tokens }`` again with the same
JWT. Other users, a hostile token name and lure links are checked on the way. Every host but
127.0.0.1 is unresolvable in the browser, and every request it makes is checked.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from tests.conftest import wait_until_up
from tokengate.upstreams.loopback import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "my-sessions"
DRIVER = Path(__file__).resolve().parent / "js"
ARTIFACTS = ROOT / "test-artifacts"
USER = "anna.de.vries@example.com"  # the demo user with OAuth-style sessions
OTHER = "bram.jansen"  # a few sessions: one page
NOBODY = "nobody@example.com"
HOSTILE = '<img src=x onerror="window.__tokengatePwned=true">'
CREATE = "mutation($input: CreateTokenInput!) { createToken(input: $input) { token { id } } }"
# Every status: revoked tokens are left out by default.
VIEWER = """query($after: String) { viewer { subject tokens(first: 100, after: $after,
  filter: {statuses: [ACTIVE, INACTIVE, EXPIRED, REVOKED]}) {
  edges { node { id status source { key } } } pageInfo { hasNextPage endCursor } } } }"""


def _need(what: str, found: object, require_env: str) -> None:
    if found:
        return
    if os.environ.get(require_env):
        pytest.fail(f"{require_env} is set but {what} is missing")
    pytest.skip(f"{what} is missing")


@pytest.fixture(scope="module")
def tools() -> dict[str, str]:
    node = shutil.which("node")
    _need("node", node, "TOKENGATE_REQUIRE_NODE")
    for package in (EXAMPLE, DRIVER):
        _need(
            f"{package.name}/node_modules (npm ci)",
            (package / "node_modules").is_dir(),
            "TOKENGATE_REQUIRE_NODE",
        )
    chromium = os.environ.get("TOKENGATE_CHROMIUM") or shutil.which("chromium")
    _need("chromium", chromium and Path(chromium).is_file(), "TOKENGATE_REQUIRE_CHROMIUM")
    assert node and chromium
    return {"node": node, "chromium": chromium}


@pytest.fixture(scope="module")
def site(tools: dict[str, str]) -> Iterator[str]:
    """The built page on its own loopback origin."""
    built = subprocess.run(
        [tools["node"], "build.mjs"], cwd=EXAMPLE, capture_output=True, text=True, timeout=120
    )
    assert built.returncode == 0, built.stderr
    handler = functools.partial(_QuietHandler, directory=str(EXAMPLE / "dist"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``tokengate serve --demo``: the gateway URL, the IdP URL and the admin secret."""
    workdir = tmp_path_factory.mktemp("demo")
    port = free_port()
    log = (workdir / "demo.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "tokengate.gateway.cli", "serve", "--demo", "--port", str(port)],
        cwd=workdir,
        # XDG_CACHE_HOME: where the demo announces itself (for `tokengate demo jwt`).
        env={**os.environ, "TOKENGATE_SHUTDOWN_DELAY_S": "0", "XDG_CACHE_HOME": str(workdir)},
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, path="/readyz", timeout_s=60)
        yield {"gateway": f"{url}/graphql", **_announced(log)}
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _announced(log: IO[str]) -> dict[str, str]:
    deadline = time.monotonic() + 30
    while True:
        log.seek(0)
        text = log.read()
        admin = re.search(r"Bearer (tg_demo_[A-Za-z0-9_-]+)", text)
        idp = re.search(r"(?m)^Identity provider[^\n]*?(http://127\.0\.0\.1:\d+)", text)
        if admin and idp:
            return {"admin": admin.group(1), "idp": idp.group(1)}
        assert time.monotonic() < deadline, f"serve --demo announced no IdP/admin token: {log.name}"
        time.sleep(0.2)


def _admin(demo: dict[str, str], text: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        demo["gateway"],
        json={"query": text, "variables": variables},
        headers={"Authorization": f"Bearer {demo['admin']}"},
    )
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def _viewer_tokens(gateway: str, jwt: str) -> dict[str, dict[str, Any]]:
    """Every token ``viewer.tokens`` returns for this caller, by id."""
    found: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        response = httpx.post(
            gateway,
            json={"query": VIEWER, "variables": {"after": after}},
            headers={"Authorization": f"Bearer {jwt}"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        page = body["data"]["viewer"]["tokens"]
        found.update({e["node"]["id"]: e["node"] for e in page["edges"]})
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


def _drive(tools: dict[str, str], plan: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    plan_file, result_file = tmp_path / "plan.json", tmp_path / "result.json"
    plan_file.write_text(json.dumps({"chromium": tools["chromium"], **plan}))
    ran = subprocess.run(
        [tools["node"], "my-sessions.mjs", str(plan_file), str(result_file)],
        cwd=DRIVER,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert ran.returncode == 0, ran.stderr
    result: dict[str, Any] = json.loads(result_file.read_text())
    assert "failure" not in result, result["failure"]
    return result


def test_sign_in_page_revoke_in_chromium(
    tools: dict[str, str], site: str, demo: dict[str, str], tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    # A session whose name is markup: the page must show it as text, never run it.
    hostile = _admin(
        demo, CREATE, {"input": {"source": "internal", "name": HOSTILE, "subject": USER}}
    )["createToken"]["token"]["id"]
    # The admin's view of the user's live tokens: what the page should list.
    admin_view = _admin_listing(demo, USER)
    assert hostile in admin_view
    oauth_ids = [i for i, node in admin_view.items() if node["source"]["key"] == "idp"]
    assert len(oauth_ids) > 10, admin_view
    query = urlencode({"gateway": demo["gateway"], "idp": demo["idp"]})
    lure = urlencode({"gateway": "http://gateway.attacker.example/graphql", "idp": demo["idp"]})
    result = _drive(
        tools,
        {
            "pageUrl": f"{site}/?{query}",
            "refusedUrls": [f"{site}/?{lure}", f"{site}/?gateway={demo['gateway']}"],
            "idp": demo["idp"],
            "subject": USER,
            "revokePrefer": oauth_ids,
            "revokeSecond": hostile,
            "otherUsers": [OTHER, NOBODY],
            "screenshot": str(ARTIFACTS / "my-sessions.png"),
        },
        tmp_path,
    )
    steps = result["steps"]
    jwt = result.pop("accessToken", None)  # kept out of assertion messages
    assert result["pageErrors"] == [] and result["consoleErrors"] == [], result
    # Every request the browser made went to 127.0.0.1 (the page, the IdP, the gateway).
    hosts = {urlsplit(u).hostname for u in result["requests"] if not u.startswith("data:")}
    assert hosts == {"127.0.0.1"}, result["requests"]
    assert {urlsplit(u).port for u in result["requests"]} >= {
        urlsplit(site).port,
        urlsplit(demo["gateway"]).port,
        urlsplit(demo["idp"]).port,
    }

    signed_in = steps["signedIn"]
    assert signed_in["whoami"] == f"Signed in as {USER}"
    assert len(signed_in["ids"]) == 5 and signed_in["moreVisible"]
    paged = steps["more"]["ids"]
    assert paged[:5] == signed_in["ids"] and len(paged) == 10 == len(set(paged))
    assert set(paged) <= set(admin_view), "the page showed a token that is not the user's"

    revoked = steps["revoked"]
    assert revoked["id"] in oauth_ids
    assert revoked["ids"] == [i for i in paged if i != revoked["id"]]
    assert revoked["status"].startswith("Revoked ")
    # Paging on past the revoke (with the cursor taken before it) reaches every other token.
    everything = steps["all"]["ids"]
    assert len(everything) == len(set(everything)), "a token was listed twice"
    assert set(everything) == set(admin_view) - {revoked["id"]}, steps["all"]["status"]
    assert HOSTILE in steps["texts"] and steps["injected"] is False

    second = steps["revokedSecond"]
    assert second["ids"] == [i for i in everything if i != hostile]
    assert second["status"] == f"Revoked {HOSTILE}."

    # The same JWT, from Python, every status: the OAuth-style session is gone at its source
    # (revoke deletes it there); the internal token is kept, REVOKED.
    assert jwt and not jwt.startswith("tg_"), "the page did not sign in with a JWT"
    mine = _viewer_tokens(demo["gateway"], jwt)
    assert set(mine) == set(admin_view) - {revoked["id"]}
    assert mine[hostile]["status"] == "REVOKED"
    assert {n["status"] for i, n in mine.items() if i != hostile} <= {"ACTIVE", "EXPIRED"}
    live = _admin_listing(demo, USER)
    assert set(live) == set(admin_view) - {revoked["id"], hostile}

    # Another user sees exactly their own tokens; a user without any is told so.
    other = steps["others"][OTHER]
    assert other["whoami"] == f"Signed in as {OTHER}" and not other["moreVisible"]
    assert other["ids"] and set(other["ids"]) == set(_admin_listing(demo, OTHER))
    nobody = steps["others"][NOBODY]
    assert nobody["whoami"] == f"Signed in as {NOBODY}"
    assert nobody["ids"] == [] and nobody["status"] == "No tokens."

    # A link pointing the page at another gateway, an address without the IdP: refused,
    # saying why, and no request leaves the page's own origin.
    lured, no_idp = steps["refused"]
    assert "loopback" in lured["status"] and "Add ?idp=" in no_idp["status"]
    for refused in (lured, no_idp):
        assert refused["signInDisabled"]
        assert all(u.startswith(site) for u in refused["requests"]), refused["requests"]
    assert (ARTIFACTS / "my-sessions.png").stat().st_size > 1000


def _admin_listing(demo: dict[str, str], user: str) -> dict[str, dict[str, Any]]:
    """The user's tokens but revoked ones, as the demo admin sees them: those owned by the
    user (``userId`` filters the OAuth-style source only)."""
    text = """query($user: String!, $after: String) { tokens(first: 100, after: $after,
      filter: {userId: $user}) {
      edges { node { id status source { key } owner { kind id } } }
      pageInfo { hasNextPage endCursor } } }"""
    found: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        page = _admin(demo, text, {"user": user, "after": after})["tokens"]
        mine = [
            e["node"] for e in page["edges"] if e["node"]["owner"] == {"kind": "USER", "id": user}
        ]
        found.update({node["id"]: node for node in mine})
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]
