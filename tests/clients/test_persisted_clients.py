"""Persisted operations with the real clients frontend teams use (node, no browser):

- relay-compiler (persistConfig) compiles a sample page's operations against the served
  schema (`tokengate export-schema`); its persisted-query file is the gateway's manifest with
  only_persisted = true, and relay-runtime runs the page by id (list, next page, revoke);
  a document that is not in the manifest is refused and reaches no upstream.
- @apollo/client with its persisted-queries link: a paginated list (fetchMore), a revoke,
  the list again, against a gateway with APQ; its first request is hash only
  (PersistedQueryNotFound, then the retry with the text).
- Apollo's trusted documents: generate-persisted-query-manifest writes Apollo's manifest
  of the same page, the gateway loads it with only_persisted = true, and the client sends
  only the manifest's ids (generatePersistedQueryIdsFromManifest).

The packages are pinned in tests/clients/js/package-lock.json (tests/run.sh runs npm ci).
Without node or those packages the tests skip, unless TOKENGATE_REQUIRE_NODE=1 (CI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BOOTSTRAP, gateway_config, node_or_skip
from tokengate.gateway.app import create_app
from tokengate.gateway.config import ServerConfig
from tokengate.gateway.demo import PROVIDERS, Simulated, simulators
from tokengate.upstreams.loopback import serve_in_thread

JS = Path(__file__).parent / "js"
pytestmark = pytest.mark.slow


def _node() -> str:
    return node_or_skip(
        JS / "node_modules" / "relay-compiler",
        f"the npm packages are not installed: run npm ci in {JS}",
    )


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, Simulated]]:
    with simulators(PROVIDERS, count=6) as running:
        yield running


def upstream_calls(sims: dict[str, Simulated]) -> int:
    return sum(len(sim.state.control.requests) for sim in sims.values())


def run_node(node: str, script: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [node, str(JS / script), *args],
        cwd=JS,
        env={**os.environ, "TOKENGATE_TEST_SECRET": BOOTSTRAP},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def relay_compile(node: str, project: Path) -> dict[str, str]:
    """The sample page compiled by relay-compiler against the served schema; returns the
    persisted-query file ({id: text})."""
    shutil.copytree(JS / "src" / "relay", project / "src")
    sdl = subprocess.run(
        [sys.executable, "-m", "tokengate.gateway.cli", "export-schema"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    (project / "schema.graphql").write_text(sdl)
    # relay-compiler wants the file and the artifact directory to exist; the generated
    # artifacts are ES modules.
    (project / "persisted-queries.json").write_text("{}")
    (project / "__generated__").mkdir()
    (project / "package.json").write_text('{"type": "module"}')
    (project / "relay.config.json").write_text(
        json.dumps(
            {
                "src": "./src",
                "schema": "./schema.graphql",
                "language": "javascript",
                "artifactDirectory": "./__generated__",
                "persistConfig": {"file": "./persisted-queries.json"},
            }
        )
    )
    compiler = JS / "node_modules" / "relay-compiler" / "cli.js"
    done = subprocess.run(
        [node, str(compiler), "relay.config.json"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    persisted: dict[str, str] = json.loads((project / "persisted-queries.json").read_text())
    return persisted


def test_relay_compiler_manifest_with_only_persisted(
    sims: dict[str, Simulated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = _node()
    project = tmp_path / "relay"
    persisted = relay_compile(node, project)
    names = sorted(text.split("(")[0] for text in persisted.values())
    assert names == [
        "mutation RevokeTokenMutation",
        "query TokensPagePaginationQuery",
        "query TokensPageQuery",
    ]
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    server = ServerConfig(
        persisted_documents=project / "persisted-queries.json", only_persisted=True
    )
    sources = tuple(s.source for s in sims.values())
    config = gateway_config(tmp_path, sources=sources, server=server)
    with serve_in_thread(create_app(config)) as url:
        run = run_node(node, "relay-run.mjs", url, str(project / "__generated__"))
        exchanges = run["exchanges"]
        assert [e["name"] for e in exchanges] == [
            "TokensPageQuery",
            "TokensPagePaginationQuery",
            "RevokeTokenMutation",
            "TokensPageQuery",
        ]
        for exchange in exchanges:
            assert set(exchange["request"]) == {"doc_id", "variables"}  # ids, never text
            assert exchange["request"]["doc_id"] in persisted
            assert exchange["status"] == 200
            assert "errors" not in exchange["result"], exchange
        pages = [
            [edge["node"]["id"] for edge in e["result"]["data"]["tokens"]["edges"]]
            for e in exchanges
            if e["name"] != "RevokeTokenMutation"
        ]
        assert len(pages[0]) == len(pages[1]) == 2
        assert not set(pages[0]) & set(pages[1])
        assert run["victim"] == pages[0][0]
        assert exchanges[2]["result"]["data"]["revokeToken"]["revokedTokenId"] == run["victim"]
        assert run["victim"] not in pages[2]

        # Anything else is refused and reaches no upstream: a query's text (even the
        # manifest's own), an APQ registration, an unknown id.
        before = upstream_calls(sims)
        page_text = next(t for t in persisted.values() if "TokensPageQuery" in t)
        auth = {"Authorization": f"Bearer {BOOTSTRAP}"}
        for body, code in (
            ({"query": "{ tokens(first: 5) { nodes { id secretHint } } }"}, "REQUIRED"),
            ({"query": page_text, "variables": {"first": 2}}, "REQUIRED"),
            ({"doc_id": "0" * 32, "variables": {"first": 2}}, "NOT_FOUND"),
        ):
            refused = httpx.post(f"{url}/graphql", json=body, headers=auth, timeout=30)
            assert refused.status_code == 200
            error = refused.json()["errors"][0]
            assert error["extensions"]["code"] == f"PERSISTED_QUERY_{code}"
            assert "data" not in refused.json()
        assert upstream_calls(sims) == before


def test_apollo_client_persisted_queries_link(
    sims: dict[str, Simulated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = _node()
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    sources = tuple(s.source for s in sims.values())
    config = gateway_config(tmp_path, sources=sources)
    with serve_in_thread(create_app(config)) as url:
        run = run_node(node, "apollo-run.mjs", url)
    exchanges = run["exchanges"]

    def hashed(exchange: dict[str, Any]) -> tuple[str | None, bool]:
        """(the persisted query's hash, whether the text went along)."""
        if exchange["method"] == "GET":
            extensions = json.loads(exchange["params"].get("extensions", "{}"))
            has_text = "query" in exchange["params"]
        else:
            extensions = exchange["body"].get("extensions") or {}
            has_text = "query" in exchange["body"]
        return extensions.get("persistedQuery", {}).get("sha256Hash"), has_text

    def code(exchange: dict[str, Any]) -> str | None:
        errors = exchange["result"].get("errors") or []
        return errors[0]["extensions"]["code"] if errors else None

    # First page: hash only over GET, PersistedQueryNotFound (HTTP 200), then the text
    # with the hash (POST), which runs and registers it.
    first, retry = exchanges[0], exchanges[1]
    digest, has_text = hashed(first)
    assert first["method"] == "GET" and digest and not has_text
    assert first["status"] == 200
    assert first["result"]["errors"][0]["message"] == "PersistedQueryNotFound"
    assert code(first) == "PERSISTED_QUERY_NOT_FOUND"
    assert retry["method"] == "POST" and hashed(retry) == (digest, True)
    assert code(retry) is None
    # Second page (fetchMore): the hash alone now runs.
    second = exchanges[2]
    assert second["method"] == "GET" and hashed(second) == (digest, False)
    assert second["status"] == 200 and code(second) is None
    assert len(run["secondPage"]) == 2
    assert len(run["merged"]) == 4 and len(set(run["merged"])) == 4
    # The revoke: hash only (POST: a mutation), not found, then with its text.
    revoke, revoke_retry = exchanges[3], exchanges[4]
    assert revoke["method"] == "POST" and hashed(revoke)[1] is False
    assert code(revoke) == "PERSISTED_QUERY_NOT_FOUND"
    assert hashed(revoke_retry)[1] is True and code(revoke_retry) is None
    assert run["revokedTokenId"] == run["victim"]
    # The list again, hash only, without the revoked token.
    last = exchanges[5]
    assert last["method"] == "GET" and hashed(last) == (digest, False)
    assert run["victim"] not in run["afterRevoke"]
    assert len(exchanges) == 6


def test_apollo_manifest_with_only_persisted(
    sims: dict[str, Simulated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = _node()
    manifest = tmp_path / "persisted-query-manifest.json"
    settings = tmp_path / "persisted-query-manifest.config.json"
    settings.write_text(json.dumps({"documents": ["src/apollo/**/*.js"], "output": str(manifest)}))
    generator = JS / "node_modules" / "@apollo" / "generate-persisted-query-manifest" / "cli.js"
    done = subprocess.run(
        [node, str(generator), "--config", str(settings)],
        cwd=JS,  # the documents' globs are relative to the working directory
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    operations = json.loads(manifest.read_text())["operations"]
    assert sorted(op["name"] for op in operations) == ["MyTokens", "RevokeOne"]
    ids = {op["id"] for op in operations}
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    server = ServerConfig(persisted_documents=manifest, only_persisted=True)
    sources = tuple(s.source for s in sims.values())
    config = gateway_config(tmp_path, sources=sources, server=server)
    with serve_in_thread(create_app(config)) as url:
        run = run_node(node, "apollo-run.mjs", url, str(manifest))
        # A document the manifest does not hold is refused.
        refused = httpx.post(
            f"{url}/graphql",
            json={"query": "{ sources { key } }"},
            headers={"Authorization": f"Bearer {BOOTSTRAP}"},
            timeout=30,
        )
        assert refused.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_REQUIRED"
    exchanges = run["exchanges"]
    # Page, next page, revoke, page again: ids only, each answered at once.
    assert [e["method"] for e in exchanges] == ["GET", "GET", "POST", "GET"]
    for exchange in exchanges:
        if exchange["method"] == "GET":
            extensions = json.loads(exchange["params"]["extensions"])
            assert "query" not in exchange["params"]
        else:
            extensions = exchange["body"]["extensions"]
            assert "query" not in exchange["body"]
        assert extensions["persistedQuery"]["sha256Hash"] in ids
        assert exchange["status"] == 200 and "errors" not in exchange["result"], exchange
    assert len(run["merged"]) == 4
    assert run["revokedTokenId"] == run["victim"]
    assert run["victim"] not in run["afterRevoke"]
