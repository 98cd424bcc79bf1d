"""GraphiQL in Debian's chromium, headless, with every host but 127.0.0.1 unresolvable: the
page renders from the gateway's own files, a query typed with an Authorization header runs
and its result is on the page, and no secret is left in the browser.

The driver is tests/browser/js/graphiql.mjs (playwright-core, pinned in its
package-lock.json, pointed at $TOKENGATE_CHROMIUM); the assets come from
$TOKENGATE_GRAPHIQL_TEST_ASSETS, where tests/run.sh runs `tokengate graphiql install`.
Skipped where chromium, node or the assets are absent, unless TOKENGATE_REQUIRE_CHROMIUM
is set (CI), where that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import BOOTSTRAP, gateway_config
from tokengate.gateway.app import create_app
from tokengate.gateway.config import ServerConfig
from tokengate.gateway.graphiql_assets import is_installed, load_lock
from tokengate.upstreams.loopback import serve_in_thread

JS_DIR = Path(__file__).parent / "js"
ROOT = Path(__file__).parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
ASSETS_ENV = "TOKENGATE_GRAPHIQL_TEST_ASSETS"
REQUIRE_ENV = "TOKENGATE_REQUIRE_CHROMIUM"


def _missing(what: str) -> None:
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{REQUIRE_ENV} is set but {what}")
    pytest.skip(what)


@pytest.fixture
def assets_dir() -> Path:
    value = os.environ.get(ASSETS_ENV)
    if not value or not is_installed(Path(value), load_lock()):
        _missing(f"no GraphiQL assets installed in ${ASSETS_ENV} (tests/run.sh installs them)")
    return Path(str(value))


@pytest.fixture
def driver() -> list[str]:
    chromium = os.environ.get("TOKENGATE_CHROMIUM")
    if not chromium or not Path(chromium).exists():
        _missing("no chromium ($TOKENGATE_CHROMIUM)")
    node = shutil.which("node")
    if node is None:
        _missing("no node")
    if not (JS_DIR / "node_modules" / "playwright-core").is_dir():
        _missing("playwright-core is not installed (npm ci in tests/browser/js)")
    return [str(node), str(JS_DIR / "graphiql.mjs")]


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, assets_dir: Path) -> Iterator[str]:
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    monkeypatch.delenv("TOKENGATE_GRAPHIQL_ASSETS_DIR", raising=False)
    config = gateway_config(tmp_path, server=ServerConfig(graphiql_assets_dir=assets_dir))
    with serve_in_thread(create_app(config)) as url:
        yield url


def _drive(driver: list[str], url: str) -> dict[str, Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GATEWAY_URL": url,
        "BEARER": BOOTSTRAP,
        "ARTIFACTS": str(ARTIFACTS),
    }
    done = subprocess.run(
        driver, cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen: dict[str, Any] = json.loads(done.stdout)
    assert "error" not in seen, seen["error"]
    return seen


@pytest.mark.slow
def test_graphiql_runs_offline_and_keeps_no_secret(driver: list[str], served: str) -> None:
    seen = _drive(driver, served)
    assert seen["publicHostReached"] is False
    assert "ERR_NAME_NOT_RESOLVED" in seen["publicHostError"]
    assert seen["pageStatus"] == 200 and "script-src 'self'" in seen["pageCsp"]
    assert seen["rendered"]
    # The query was typed in and its result is on the page.
    assert "query Sources" in seen["queryText"]
    result = json.loads(seen["resultText"].replace("\u00a0", " "))
    assert {"key": "internal", "provider": "INTERNAL"} in result["data"]["sources"]
    assert "Root Types" in seen["docExplorer"]  # the schema came with the typed header
    # Nothing but the gateway was asked for anything.
    hosts = {urlsplit(u).netloc for u in seen["requests"] if not u.startswith(("data:", "blob:"))}
    assert hosts == {urlsplit(served).netloc}, hosts
    assert any("/graphiql/assets/graphiql.min.js" in u for u in seen["requests"])
    # The page needed nothing its CSP forbids, and ran without a script error.
    assert seen["cspViolations"] == []
    assert seen["pageErrors"] == []
    # No secret in any storage, before or after a reload; the query itself was kept.
    for storage in (seen["storage"], seen["storageAfterReload"]):
        text = json.dumps(storage)
        assert BOOTSTRAP not in text
        assert "authorization" not in text.lower()
        assert "query Sources" in storage["local"].get("graphiql:query", "")
    # Planted before the reload (as an older page could have left them), scrubbed by it.
    assert "graphiql:headers" not in seen["storageAfterReload"]["local"]
    assert "__typename" in seen["storageAfterReload"]["local"]["graphiql:favorites"]
    assert seen["cookies"] == []
    assert BOOTSTRAP not in seen["afterReload"]["headers"]
    assert "query Sources" in seen["afterReload"]["query"]
    assert (ARTIFACTS / "graphiql.png").stat().st_size > 10_000
