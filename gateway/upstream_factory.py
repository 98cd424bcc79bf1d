"""Configured upstream sources -> adapter instances sharing one pooled HTTP client."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import httpx

from tokengate.gateway.config import SourceConfig
from tokengate.upstreams import providers
from tokengate.upstreams.base import TokenSource
from tokengate.upstreams.http_edge import USER_AGENT, Exchange
from tokengate.upstreams.resilience import BreakerState, ResilientSource, TrafficPolicy


def build_upstreams(
    configs: Sequence[SourceConfig],
    client: httpx.AsyncClient,
    *,
    on_breaker: Callable[[str, BreakerState], None] | None = None,
) -> list[TokenSource]:
    """One adapter per configured source, each behind retries, a breaker and a bulkhead
    (``on_breaker`` is told when a breaker opens or closes)."""
    return [
        ResilientSource(
            adapter,
            TrafficPolicy(retries=cfg.retries, max_concurrency=cfg.max_concurrency),
            on_breaker=on_breaker,
        )
        for cfg, adapter in zip(configs, build_adapters(configs, client), strict=True)
    ]


def build_adapters(configs: Sequence[SourceConfig], client: httpx.AsyncClient) -> list[TokenSource]:
    """Each source's adapter, built by its provider (upstreams.providers)."""
    return [providers.get(cfg.provider).build(cfg, client) for cfg in configs]


TRANSPORT_ENV = "TOKENGATE_HTTP_TRANSPORT"


class _NoCookies(httpx.Cookies):
    """A jar that never takes a cookie from an answer nor adds one to a request."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        raise TypeError("the upstream client keeps no cookies")


class CookielessClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` whose jar stays empty (see ``http_client``), and that offers
    its transport's direct ``exchange`` to ``UpstreamHttp`` when it has one."""

    exchange: Exchange | None = None

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        return None


_NO_COOKIES = _NoCookies()


def http_client(max_connections: int = 100) -> httpx.AsyncClient:
    """The shared upstream client: pooled, no base URL and no auth (adapters add their own).

    httpx's API over aiohttp's transport by default (less work per upstream call than
    httpx's own; benchmarks/README.md has the paired figures); ``TOKENGATE_HTTP_TRANSPORT=httpx``
    selects httpx's own transport. Either way a URL leaves exactly as httpx encoded it
    (gateway/aiohttp_transport.py: aiohttp alone would decode some escapes). Idle upstream
    connections are dropped after 4 s, before the 5 s keep-alive of common servers
    (uvicorn, Node) can close one under a new request.

    No cookies, on either layer: the client is shared by every caller and every source, so
    a ``Set-Cookie`` from one upstream answer must not ride along on later requests made
    for someone else (httpx and aiohttp both keep a jar by default).
    """
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=50, keepalive_expiry=4.0
    )
    transport: httpx.AsyncBaseTransport | None = None
    exchange: Exchange | None = None
    if os.environ.get(TRANSPORT_ENV, "aiohttp") in {"aiohttp", ""}:
        import aiohttp

        from tokengate.gateway.aiohttp_transport import ExactUrlAiohttpTransport

        def session() -> aiohttp.ClientSession:
            # What AiohttpTransport would build itself, with aiohttp's no-op cookie jar.
            connector = aiohttp.TCPConnector(
                limit=max_connections,
                keepalive_timeout=limits.keepalive_expiry,
                ssl=httpx.create_ssl_context(trust_env=False),
            )
            session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar()
            )
            # aiohttp sends an idempotent request a second time, unseen, when its connection
            # is reset or closed: a failing upstream would get twice the requests the retry
            # policy (upstreams/resilience.py) allows and counts. The policy alone retries,
            # as with httpx's transport. (No public switch: aiohttp 3.10+'s attribute.)
            session._retry_connection = False
            return session

        transport = ExactUrlAiohttpTransport(limits=limits, client=session)
        exchange = transport.exchange
    client = CookielessClient(
        transport=transport,
        # Upstream adapters send it themselves (http_edge.UpstreamHttp); this names the
        # gateway on the client's other requests too (a JWT key set).
        headers={"User-Agent": USER_AGENT},
        limits=limits,
        timeout=httpx.Timeout(10.0, connect=5.0),
        follow_redirects=False,
        trust_env=False,
    )
    if exchange is not None:
        # Upstream calls skip httpx's request and response objects: fewer layers of work
        # per call (benchmarks/README.md has the paired figures).
        client.exchange = exchange
    return client
