"""The GraphiQL page, served from the gateway alone: our HTML (no inline script), our init
script, and the pinned third-party files installed by ``tokengate graphiql install``.

Every response carries a Content-Security-Policy that lets scripts come only from the
gateway and lets the page talk only to the gateway; a browser with no internet access
gets the whole page. Where the files are not installed, the page says how to install them
(HTTP 200: the page works, it is what it has to say) instead of a blank "Loading...".
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import html
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from tokengate.gateway.graphiql_assets import Lock, candidate_dirs, is_installed, load_lock

ASSETS_PATH = "/graphiql/assets"
# Our own files, committed beside this module.
OWN_DIR = "graphiql_static"
OWN_FILES = ("tokengate-graphiql.js", "tokengate-graphiql.css")
# Scripts from the gateway only (no inline script, no eval); the page talks to the gateway
# only. Styles allow 'unsafe-inline': GraphiQL 3's dialogs (Radix, react-remove-scroll)
# inject <style> elements whose text depends on the browser's scrollbar width, so no hash
# fits them (seen in the browser test); styles cannot run code. GraphiQL's fonts and icons
# are data: URIs inside its CSS.
CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'none'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
# Asset URLs carry ?v=<version of the lock and of our files>: with the current version a
# browser may keep them a year; any other version is revalidated.
IMMUTABLE = "public, max-age=31536000, immutable"
CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# The order the page loads the scripts in (React, React DOM, GraphiQL, ours).
SCRIPT_ORDER = (
    "react.production.min.js",
    "react-dom.production.min.js",
    "graphiql.min.js",
    "tokengate-graphiql.js",
)

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>tokengate GraphiQL</title>
{styles}
</head>
<body>
<div id="graphiql" data-tokengate-graphiql="1"><p class="tg-loading">Loading GraphiQL&hellip;</p></div>
<noscript><p class="tg-message">GraphiQL needs JavaScript. Without it, POST queries to this
URL (see the tokengate README).</p></noscript>
{scripts}
</body>
</html>
"""

_MISSING = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tokengate GraphiQL: not installed</title>
<link rel="stylesheet" href="{css}">
</head>
<body>
<main class="tg-message" id="graphiql-missing">
<h1>GraphiQL is not installed on this gateway</h1>
<p>This gateway serves GraphiQL's files itself, so that the page works without internet
access, but they are not installed here yet (tokengate does not ship them: it fetches pinned
versions from the npm registry, checked against the hashes in its lock file).</p>
<p>On the machine running the gateway, run:</p>
<pre><code>tokengate graphiql install</code></pre>
<p>then reload this page. With <code>[server] graphiql_assets_dir</code> or
<code>$TOKENGATE_GRAPHIQL_ASSETS_DIR</code> set, add <code>--config FILE</code> (or keep the
variable set) so that the files land where the gateway looks; behind a registry mirror, set
<code>TOKENGATE_NPM_REGISTRY</code>.</p>
<p>Queries work without GraphiQL: POST them to this URL with
<code>Authorization: Bearer &lt;token&gt;</code>.</p>
</main>
</body>
</html>
"""


def _own_bytes(name: str) -> bytes:
    return resources.files("tokengate.gateway").joinpath(OWN_DIR, name).read_bytes()


class GraphiQLPage:
    """The page at ``GET /graphql`` (Accept: text/html) and its files under
    ``/graphiql/assets/``; the directory is looked up on every page load, so files installed
    while the gateway runs are picked up by a reload."""

    def __init__(self, configured_dir: Path | None, lock: Lock | None = None) -> None:
        self.lock = lock or load_lock()
        self.configured_dir = configured_dir
        self.own = {name: _Encoded.of(_own_bytes(name)) for name in OWN_FILES}
        digest = hashlib.sha256(self.lock.digest.encode())
        for name in OWN_FILES:
            digest.update(self.own[name].raw)
        self.version = digest.hexdigest()[:16]
        self.vendor = frozenset(self.lock.served)
        self._vendor_cache: dict[str, tuple[tuple[int, int, int], _Encoded]] = {}
        self._vendor_lock = asyncio.Lock()

    def directory(self) -> Path | None:
        """The first place the files are installed, or None."""
        for candidate in candidate_dirs(self.configured_dir):
            if is_installed(candidate, self.lock):
                return candidate
        return None

    def _url(self, name: str) -> str:
        # Relative to /graphql, so the page also works under a path prefix.
        return f"graphiql/assets/{name}?v={self.version}"

    def page(self) -> Response:
        if self.directory() is None:
            body = _MISSING.format(css=html.escape(self._url("tokengate-graphiql.css")))
            return HTMLResponse(body, headers=SECURITY_HEADERS)
        styles = "\n".join(
            f'<link rel="stylesheet" href="{html.escape(self._url(name))}">'
            for name in ("graphiql.min.css", "tokengate-graphiql.css")
        )
        scripts = "\n".join(
            f'<script src="{html.escape(self._url(name))}"></script>' for name in SCRIPT_ORDER
        )
        return HTMLResponse(_PAGE.format(styles=styles, scripts=scripts), headers=SECURITY_HEADERS)

    async def asset(self, request: Request) -> Response:
        """One known file; anything else (other names, traversal, encoded slashes) 404."""
        name = request.path_params.get("name", "")
        content_type = CONTENT_TYPES.get(Path(name).suffix) if "/" not in name else None
        body: _Encoded | None = None
        if content_type is not None and name in self.own:
            body = self.own[name]
        elif content_type is not None and name in self.vendor:
            directory = self.directory()
            if directory is not None:
                body = await self._vendor_file(directory / name)
        if content_type is None or body is None:
            return PlainTextResponse(
                "not found", status_code=404, headers={"X-Content-Type-Options": "nosniff"}
            )
        headers = {
            "X-Content-Type-Options": "nosniff",
            "Vary": "Accept-Encoding",
            "Cache-Control": IMMUTABLE
            if request.query_params.get("v") == self.version
            else "no-cache",
        }
        if "gzip" in request.headers.get("accept-encoding", ""):
            # Compressed once, not per request (gzip middleware passes it through).
            headers["Content-Encoding"] = "gzip"
            return Response(body.gzipped, media_type=content_type, headers=headers)
        return Response(body.raw, media_type=content_type, headers=headers)

    async def _vendor_file(self, path: Path) -> _Encoded | None:
        """The file, read and gzipped once per version on disk (GraphiQL's script is 3.5 MB:
        gzipping it per request would cost a quarter of a second of CPU each time, for
        anyone)."""
        try:
            stat = await asyncio.to_thread(path.stat)
        except OSError:
            return None
        key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        cached = self._vendor_cache.get(path.name)
        if cached is not None and cached[0] == key:
            return cached[1]
        async with self._vendor_lock:
            cached = self._vendor_cache.get(path.name)
            if cached is not None and cached[0] == key:
                return cached[1]
            try:
                raw = await asyncio.to_thread(path.read_bytes)
            except OSError:
                return None
            encoded = await asyncio.to_thread(_Encoded.of, raw)
            self._vendor_cache[path.name] = (key, encoded)
            return encoded


@dataclass(frozen=True, slots=True)
class _Encoded:
    raw: bytes
    gzipped: bytes

    @classmethod
    def of(cls, raw: bytes) -> _Encoded:
        return cls(raw, gzip.compress(raw, compresslevel=6, mtime=0))
