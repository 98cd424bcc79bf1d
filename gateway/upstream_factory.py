"""Configured upstream sources -> adapter instances sharing one pooled HTTP client."""

from __future__ import annotations

import os
from collections.abc import Sequence

import httpx

from gateway.config import SourceConfig
from upstreams.base import TokenSource
from upstreams.resilience import ResilientSource, TrafficPolicy


def build_upstreams(
    configs: Sequence[SourceConfig], client: httpx.AsyncClient
) -> list[TokenSource]:
    """One adapter per configured source, each behind retries, a breaker and a bulkhead."""
    return [
        ResilientSource(
            adapter, TrafficPolicy(retries=cfg.retries, max_concurrency=cfg.max_concurrency)
        )
        for cfg, adapter in zip(configs, build_adapters(configs, client), strict=True)
    ]


def build_adapters(configs: Sequence[SourceConfig], client: httpx.AsyncClient) -> list[TokenSource]:
    sources: list[TokenSource] = []
    for cfg in configs:
        if cfg.provider == "amper":
            from upstreams.amper import AmperSource

            sources.append(
                AmperSource(
                    key=cfg.key,
                    name=cfg.name,
                    base_url=cfg.base_url,
                    client=client,
                    api_token=cfg.credentials["token"],
                    page_size_param=cfg.page_size_param,
                    timeout_s=cfg.timeout_s,
                    connect_timeout_s=cfg.connect_timeout_s,
                )
            )
        elif cfg.provider == "oauth":
            from upstreams.oauth import OAuthSource

            sources.append(
                OAuthSource(
                    key=cfg.key,
                    name=cfg.name,
                    base_url=cfg.base_url,
                    client=client,
                    client_id=cfg.credentials["client_id"],
                    client_secret=cfg.credentials["client_secret"],
                    timeout_s=cfg.timeout_s,
                    connect_timeout_s=cfg.connect_timeout_s,
                )
            )
        else:
            from upstreams.losant import LosantSource

            sources.append(
                LosantSource(
                    key=cfg.key,
                    name=cfg.name,
                    base_url=cfg.base_url,
                    client=client,
                    api_token=cfg.credentials["token"],
                    application_ids=cfg.application_ids,
                    timeout_s=cfg.timeout_s,
                    connect_timeout_s=cfg.connect_timeout_s,
                )
            )
    return sources


TRANSPORT_ENV = "TOKENGATE_HTTP_TRANSPORT"


def http_client(max_connections: int = 100) -> httpx.AsyncClient:
    """The shared upstream client: pooled, no base URL and no auth (adapters add their own).

    httpx's API over aiohttp's transport by default (about 1.5 ms less per four-source page
    than httpx's own: benchmarks/fanout.py, README); ``TOKENGATE_HTTP_TRANSPORT=httpx``
    selects httpx's own transport. Idle upstream connections are dropped after 4 s, before
    the 5 s keep-alive of common servers (uvicorn, Node) can close one under a new request.
    """
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=50, keepalive_expiry=4.0
    )
    transport: httpx.AsyncBaseTransport | None = None
    if os.environ.get(TRANSPORT_ENV, "aiohttp") in {"aiohttp", ""}:
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport(limits=limits)
    return httpx.AsyncClient(
        transport=transport,
        limits=limits,
        timeout=httpx.Timeout(10.0, connect=5.0),
        follow_redirects=False,
        trust_env=False,
    )
