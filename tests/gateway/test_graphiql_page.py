"""The GraphiQL page over loopback HTTP: its Content-Security-Policy, no inline script, only
the known files served (with their content types and cache headers), traversal refused, and
the page that says how to install the files where they are absent."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import BOOTSTRAP, gateway_config
from tokengate.gateway import graphiql
from tokengate.gateway.app import create_app
from tokengate.gateway.config import ConfigError, ServerConfig, load
from tokengate.gateway.graphiql import CSP, OWN_FILES
from tokengate.gateway.graphiql_assets import ASSETS_DIR_ENV, MANIFEST_NAME, Lock, load_lock
from tokengate.upstreams.loopback import serve_in_thread

HTML = {"Accept": "text/html"}
# One client for every request (httpx.get makes a client, TLS context included, per call).
web = httpx.Client(timeout=10)


def fake_install(directory: Path, lock: Lock, digest: str | None = None) -> dict[str, bytes]:
    """Files as `tokengate graphiql install` leaves them (made-up contents)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {name: f"/* {name} */\n".encode() for name in lock.served}
    files["graphiql.LICENSE.txt"] = b"MIT"
    for name, content in files.items():
        (directory / name).write_bytes(content)
    (directory / MANIFEST_NAME).write_text(json.dumps({"lock": digest or lock.digest}))
    return files


@contextmanager
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: ServerConfig) -> Iterator[str]:
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    monkeypatch.delenv(ASSETS_DIR_ENV, raising=False)
    with serve_in_thread(create_app(gateway_config(tmp_path, server=server))) as url:
        yield url


@pytest.fixture
def installed(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    directory = tmp_path / "assets"
    return directory, fake_install(directory, load_lock())


@pytest.fixture
def gateway_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installed: tuple[Path, dict[str, bytes]]
) -> Iterator[str]:
    with serve(tmp_path, monkeypatch, ServerConfig(graphiql_assets_dir=installed[0])) as url:
        yield url


@pytest.fixture
def bare_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A gateway whose asset directory is empty."""
    (tmp_path / "empty").mkdir()
    with serve(tmp_path, monkeypatch, ServerConfig(graphiql_assets_dir=tmp_path / "empty")) as url:
        yield url


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET with the path sent byte for byte (httpx would normalise ../)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def directives(csp: str) -> dict[str, list[str]]:
    found = {}
    for part in csp.split(";"):
        name, *values = part.split()
        found[name] = values
    return found


def test_page_csp_and_headers(gateway_url: str) -> None:
    page = web.get(f"{gateway_url}/graphql", headers=HTML)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CSP
    csp = directives(page.headers["content-security-policy"])
    assert csp["default-src"] == ["'self'"]
    # Scripts from the gateway only: no inline script, no eval, no other host.
    assert csp["script-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"


def test_page_has_no_inline_script_and_loads_from_the_gateway_only(gateway_url: str) -> None:
    text = web.get(f"{gateway_url}/graphql", headers=HTML).text
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", text, re.S)
    assert len(scripts) == 4
    for attributes, body in scripts:
        assert body.strip() == "" and 'src="graphiql/assets/' in attributes
    assert re.search(r"<[^>]*\son\w+\s*=", text, re.I) is None  # no onload=, onerror=
    assert "http://" not in text and "https://" not in text and "//" not in text
    # Every file the page names is served.
    for ref in re.findall(r'(?:src|href)="([^"]+)"', text):
        answer = web.get(f"{gateway_url}/{ref}")
        assert answer.status_code == 200, ref


def test_assets_are_served_with_types_and_cache_headers(
    gateway_url: str, installed: tuple[Path, dict[str, bytes]]
) -> None:
    page = web.get(f"{gateway_url}/graphql", headers=HTML).text
    version = re.search(r"\?v=([0-9a-f]+)", page)
    assert version is not None
    files = installed[1]
    for name in (*load_lock().served, *OWN_FILES):
        versioned = web.get(f"{gateway_url}/graphiql/assets/{name}?v={version[1]}")
        assert versioned.status_code == 200
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        assert versioned.headers["content-type"] == f"{kind}; charset=utf-8"
        assert versioned.headers["x-content-type-options"] == "nosniff"
        assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
        if name in files:
            assert versioned.content == files[name]
        # Compressed once for every client that takes gzip; as is for the others.
        assert versioned.headers["content-encoding"] == "gzip"
        assert versioned.headers["vary"] == "Accept-Encoding"
        plain = web.get(
            f"{gateway_url}/graphiql/assets/{name}", headers={"Accept-Encoding": "identity"}
        )
        assert "content-encoding" not in plain.headers
        assert plain.content == versioned.content
        # Without the current version a browser revalidates.
        bare = web.get(f"{gateway_url}/graphiql/assets/{name}")
        assert bare.status_code == 200 and bare.headers["cache-control"] == "no-cache"
        stale = web.get(f"{gateway_url}/graphiql/assets/{name}?v=0000")
        assert stale.headers["cache-control"] == "no-cache"
    own = web.get(f"{gateway_url}/graphiql/assets/tokengate-graphiql.js").text
    assert "shouldPersistHeaders: false" in own and "showPersistHeadersSettings: false" in own


REFUSED_PATHS = [
    "/graphiql/assets/unknown.js",
    f"/graphiql/assets/{MANIFEST_NAME}",
    "/graphiql/assets/graphiql.LICENSE.txt",  # on disk, but not a file the page loads
    "/graphiql/assets/",
    "/graphiql/assets/../../gateway.key",
    "/graphiql/assets/..%2f..%2fgateway.key",
    "/graphiql/assets/%2e%2e/%2e%2e/gateway.key",
    "/graphiql/assets/..%5c..%5cgateway.key",
    "/graphiql/assets/%2Fetc%2Fpasswd",
    "/graphiql/assets/graphiql.min.js%00.css",
    "/graphiql/assets/graphiql.min.js/../react.production.min.js",
    "/graphiql/assets/GRAPHIQL.MIN.JS",
    "/graphiql/assets/tokengate-graphiql.js%2f..%2f..%2f..%2fconfig.py",
    "/graphiql/assets/graphiql_assets.lock.json",
    "/graphiql/assets/.",
    "/graphiql/assets/..",
]


def test_unknown_files_and_traversal_are_404(gateway_url: str) -> None:
    for path in REFUSED_PATHS:
        status, body = raw_get(gateway_url, path)
        assert status == 404, (path, body[:200])
        assert b"MIT" not in body and b"lock" not in body


def test_only_get_and_head(gateway_url: str) -> None:
    url = f"{gateway_url}/graphiql/assets/tokengate-graphiql.js"
    assert web.head(url).status_code == 200
    assert web.post(url, content=b"x").status_code == 405
    assert web.put(url, content=b"x").status_code == 405


def test_missing_assets_page_says_how_to_install(bare_url: str, tmp_path: Path) -> None:
    page = web.get(f"{bare_url}/graphql", headers=HTML)
    assert page.status_code == 200
    assert "tokengate graphiql install" in page.text
    assert "<script" not in page.text  # nothing to hang on
    assert page.headers["content-security-policy"] == CSP
    # The vendor files are absent; our own still load (the page's style).
    assert web.get(f"{bare_url}/graphiql/assets/graphiql.min.js").status_code == 404
    assert web.get(f"{bare_url}/graphiql/assets/tokengate-graphiql.css").status_code == 200
    # The page never says where on the server it looked.
    assert str(Path.home()) not in page.text and str(tmp_path) not in page.text


def test_files_installed_from_another_lock_are_not_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "old"
    fake_install(directory, load_lock(), digest="0" * 64)
    with serve(tmp_path, monkeypatch, ServerConfig(graphiql_assets_dir=directory)) as url:
        page = web.get(f"{url}/graphql", headers=HTML)
        assert "tokengate graphiql install" in page.text
        assert web.get(f"{url}/graphiql/assets/graphiql.min.js").status_code == 404


def test_files_installed_while_running_are_picked_up(bare_url: str, tmp_path: Path) -> None:
    assert "tokengate graphiql install" in web.get(f"{bare_url}/graphql", headers=HTML).text
    fake_install(tmp_path / "empty", load_lock())
    page = web.get(f"{bare_url}/graphql", headers=HTML).text
    assert "tokengate graphiql install" not in page and "graphiql.min.js" in page
    assert web.get(f"{bare_url}/graphiql/assets/graphiql.min.js").status_code == 200


def test_environment_variable_names_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "from-env"
    fake_install(directory, load_lock())
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    monkeypatch.setenv(ASSETS_DIR_ENV, str(directory))
    # The variable wins over the config file's (empty) directory.
    config = gateway_config(tmp_path, server=ServerConfig(graphiql_assets_dir=tmp_path / "nope"))
    with serve_in_thread(create_app(config)) as url:
        assert web.get(f"{url}/graphiql/assets/graphiql.min.js").status_code == 200


def test_graphiql_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "assets"
    fake_install(directory, load_lock())
    server = ServerConfig(graphiql=False, graphiql_assets_dir=directory)
    with serve(tmp_path, monkeypatch, server) as url:
        page = web.get(f"{url}/graphql", headers=HTML)
        assert "graphiql" not in page.text.lower()
        assert web.get(f"{url}/graphiql/assets/graphiql.min.js").status_code == 404
        assert web.get(f"{url}/graphiql/assets/tokengate-graphiql.js").status_code == 404


def test_page_needs_no_token_but_assets_never_see_credentials_checked(gateway_url: str) -> None:
    # A wrong bearer on the page or an asset changes nothing: they are public files.
    bad = {"Authorization": "Bearer not-a-token", **HTML}
    assert web.get(f"{gateway_url}/graphql", headers=bad).status_code == 200
    asset = web.get(f"{gateway_url}/graphiql/assets/tokengate-graphiql.js", headers=bad)
    assert asset.status_code == 200
    # The page is no way around authentication for queries.
    query = web.get(f"{gateway_url}/graphql", params={"query": "{ __typename }"}, headers=HTML)
    assert query.status_code == 401


def test_config_key(tmp_path: Path) -> None:
    path = tmp_path / "tokengate.toml"
    path.write_text('[server]\ngraphiql_assets_dir = "ui/assets"\n')
    assert load(path, environ={}).server.graphiql_assets_dir == tmp_path / "ui" / "assets"
    path.write_text('[server]\ngraphiql_assets_dir = ""\n')
    with pytest.raises(ConfigError, match="graphiql_assets_dir"):
        load(path, environ={})
    path.write_text("[server]\ngraphiql_assets_dir = 3\n")
    with pytest.raises(ConfigError, match=r"tokengate\.toml:2: graphiql_assets_dir must be a str"):
        load(path, environ={})
    assert load(None, environ={}).server.graphiql_assets_dir is None


def test_a_vendor_file_is_read_and_compressed_once_per_version_on_disk(
    gateway_url: str, installed: tuple[Path, dict[str, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """GraphiQL's script is 3.5 MB: gzipping it per request would let anyone spend a
    quarter of a second of the gateway's CPU per GET."""
    calls: list[int] = []
    real = graphiql._Encoded.of.__func__  # type: ignore[attr-defined]

    def counting(cls: type, raw: bytes) -> object:
        calls.append(len(raw))
        return real(cls, raw)

    monkeypatch.setattr(graphiql._Encoded, "of", classmethod(counting))
    url = f"{gateway_url}/graphiql/assets/graphiql.min.js"
    for _ in range(5):
        assert web.get(url).status_code == 200
    assert len(calls) == 1
    # Installed again (another file on disk): read again.
    path = installed[0] / "graphiql.min.js"
    path.write_bytes(b"/* new */ " * 100)
    assert web.get(url).content == b"/* new */ " * 100
    assert len(calls) == 2


def test_serve_says_when_the_files_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tokengate.gateway.cli import _announce

    monkeypatch.delenv(ASSETS_DIR_ENV, raising=False)
    (tmp_path / "empty").mkdir()
    _announce(gateway_config(tmp_path, server=ServerConfig(graphiql_assets_dir=tmp_path / "empty")))
    assert "run `tokengate graphiql install`" in capsys.readouterr().err
    fake_install(tmp_path / "ok", load_lock())
    _announce(gateway_config(tmp_path, server=ServerConfig(graphiql_assets_dir=tmp_path / "ok")))
    _announce(gateway_config(tmp_path, server=ServerConfig(graphiql=False)))
    assert "graphiql install" not in capsys.readouterr().err
