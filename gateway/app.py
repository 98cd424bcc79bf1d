"""The Starlette application: /graphql, /healthz, /readyz; the lifespan owns store and clients."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokengate.gateway import request_facts
from tokengate.gateway.auth import BearerAuth
from tokengate.gateway.body_limit import BodyLimit
from tokengate.gateway.compression import Gzip
from tokengate.gateway.config import Config
from tokengate.gateway.drain import CloseWhileDraining, Drain
from tokengate.gateway.export import ExportEndpoint, timeout_from_env
from tokengate.gateway.graphiql import ASSETS_PATH, GraphiQLPage
from tokengate.gateway.jwt_auth import JwtAuthenticator
from tokengate.gateway.logs import FIELDS, request_id_var
from tokengate.gateway.metrics import Metrics
from tokengate.gateway.persisted import PersistedOperations, load_manifest
from tokengate.gateway.ratelimit import TokenBuckets
from tokengate.gateway.replicas import Replicas
from tokengate.gateway.tracing import TraceRequests, Tracing
from tokengate.gateway.upstream_factory import build_upstreams, http_client
from tokengate.gateway.view import GatewayView
from tokengate.schema.build import build_schema
from tokengate.schema.limits import Limits
from tokengate.schema.types import SourceCapabilities, SourceType
from tokengate.upstreams import ids
from tokengate.upstreams.cursor_codec import CursorCodec
from tokengate.upstreams.model import Provider
from tokengate.upstreams.secret_lookup import lookup_kind
from tokengate.upstreams.service import USER_OWNED_PROVIDERS, TokenService
from tokengate.upstreams.store import SecretHasher, StoreSource, create_engine, load_key, migrate

log = logging.getLogger("tokengate.app")
access = logging.getLogger("tokengate.access")
BOOTSTRAP_ENV = "TOKENGATE_BOOTSTRAP_TOKEN"
# Set by `tokengate serve --workers N` for its worker processes (not for users).
WORKER_LOG_LEVEL_ENV = "TOKENGATE_WORKER_LOG_LEVEL"


@dataclass
class Runtime:
    """What the lifespan builds and tears down."""

    store: StoreSource
    service: TokenService
    replicas: Replicas


# An incoming X-Request-Id is kept when it is what proxies send (UUIDs, ALB's
# "Root=1-...-..." ids, hex): no spaces, quotes, separators or control characters, which
# could forge log fields or headers.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=+/-]{0,127}")
GRAPHQL_PATH = "/graphql"
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestId:
    """Gives every request an id (or keeps a sane incoming X-Request-Id) for logs and errors;
    writes its access line (fields method, path, status, duration_ms, operation_name) and
    its GraphQL metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        facts = request_facts.RequestFacts()
        facts_token = request_facts.facts_var.set(facts)
        path = scope["path"]
        graphql_metrics = self.metrics if path == GRAPHQL_PATH else None
        if graphql_metrics is not None:
            graphql_metrics.in_flight.inc()
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            if graphql_metrics is not None:
                graphql_metrics.in_flight.dec()
                graphql_metrics.graphql_answered(facts, status, seconds)
            fields = {
                "method": scope["method"],
                "path": path,
                "status": status,
                "duration_ms": round(seconds * 1000, 1),
                # A GraphQL name, so nothing to escape; long ones cut.
                "operation_name": facts.operation_name and facts.operation_name[:100],
            }
            access.log(
                logging.DEBUG if path in QUIET_PATHS else logging.INFO,
                "%s %s %d",
                scope["method"],
                path,
                status,
                extra={FIELDS: fields},
            )
            request_facts.facts_var.reset(facts_token)
            request_id_var.reset(token)


async def open_store(config: Config, server_key: bytes | None = None) -> StoreSource:
    """Engine, migrations, server key (``server_key``, else loaded or made from the config):
    the store ready to use (also for the CLI)."""
    engine = create_engine(config.store.url, config.store.pool_size)
    await migrate(engine)
    hasher = SecretHasher(server_key or load_key(config.store.key_file))
    return StoreSource(
        engine,
        hasher,
        touch_interval_s=config.store.touch_interval_s,
        max_lineage_tokens=config.limits.max_lineage_tokens,
    )


async def prepare_store(config: Config) -> None:
    """Migrations, server key and bootstrap token, once, before worker processes start
    (each worker's own start then finds them done instead of racing to do them)."""
    store = await open_store(config)
    try:
        await _ensure_bootstrap(store)
    finally:
        await store.aclose()


async def _ensure_bootstrap(store: StoreSource) -> None:
    bootstrap = os.environ.get(BOOTSTRAP_ENV)
    if bootstrap:
        await store.ensure_bootstrap(bootstrap)


def worker_app() -> Starlette:
    """What each process of `tokengate serve --workers N` serves (uvicorn's app factory):
    the config from the environment the parent set up (TOKENGATE_CONFIG, _HOST, _PORT)."""
    from tokengate.gateway import config as config_module
    from tokengate.gateway import logs

    logs.setup(os.environ.get(WORKER_LOG_LEVEL_ENV, "INFO"))
    return create_app(config_module.load(None), freeze_heap=True, drain_on_sigterm=True)


def user_sources(config: Config) -> int:
    """How many sources a user's tokens can come from (``viewer``/``User`` tokens reach no
    other; the query cost counts these): the internal store and every configured source
    but those whose provider is known to own its tokens by account or application."""
    account_owned = {p.value for p in Provider if p not in USER_OWNED_PROVIDERS}
    return 1 + sum(s.provider.upper() not in account_owned for s in config.sources)


def source_types(service: TokenService) -> dict[str, SourceType]:
    return {
        key: SourceType(
            id=ids.source_id(key),  # type: ignore[arg-type]
            key=key,
            name=source.name,
            provider=source.provider,
            capabilities=SourceCapabilities.of(source.capabilities, lookup_kind(source)),
            source=source,
        )
        for key, source in service.sources.items()
    }


class _LazyGraphQL:
    """Routes to the GraphQL view built by the lifespan (the store is needed to build it)."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            response = JSONResponse({"errors": [{"message": "starting up"}]}, status_code=503)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


EXPORT_PATH = "/export"
ROUTES = frozenset({"/graphql", "/healthz", "/readyz", "/metrics", EXPORT_PATH})


def create_app(
    config: Config,
    *,
    freeze_heap: bool = False,
    drain_on_sigterm: bool = False,
    tracing: Tracing | None = None,
) -> Starlette:
    """The gateway as an ASGI app. ``freeze_heap`` (for a served process, not for tests
    that build many apps in one process): once started, move every object alive so far
    (schema, modules, pools) out of the garbage collector's sight with ``gc.freeze()``, so
    that collections during requests scan only what requests allocate: the long-lived heap
    is large next to a request's garbage. ``drain_on_sigterm`` (for a served process):
    SIGTERM drains first (gateway.drain). ``tracing``: where spans go (default: from the
    ``OTEL_*`` environment, gateway/tracing.py)."""
    tracing = Tracing.from_env() if tracing is None else tracing
    schema = build_schema(
        Limits(
            max_depth=config.limits.max_depth,
            max_aliases=config.limits.max_aliases,
            max_cost=config.limits.max_cost,
            max_selections=config.limits.max_selections,
            max_tokens=config.limits.max_tokens,
            max_document_chars=config.limits.max_document_chars,
            sources=len(config.sources) + 1,
            user_sources=user_sources(config),
        ),
        introspection=config.server.introspection,
    )
    graphql = _LazyGraphQL()
    export = _LazyGraphQL()
    export_timeout_s = timeout_from_env()
    state: dict[str, Runtime] = {}
    drain = Drain(config.server.shutdown_delay_s)
    metrics = Metrics() if config.server.metrics else None
    manifest_path = config.server.persisted_documents
    persisted = PersistedOperations(
        apq_cache_size=config.server.apq_cache_size,
        manifest=load_manifest(manifest_path) if manifest_path is not None else None,
        only_persisted=config.server.only_persisted,
    )
    graphiql_page = (
        GraphiQLPage(config.server.graphiql_assets_dir) if config.server.graphiql else None
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        server_key = load_key(config.store.key_file)
        store = await open_store(config, server_key)
        await _ensure_bootstrap(store)
        client = http_client()
        upstreams = build_upstreams(
            config.sources, client, on_breaker=metrics.circuit_changed if metrics else None
        )
        service = TokenService(
            store,
            upstreams,
            timeouts_s={s.key: s.deadline_s for s in config.sources},
            # From the server key: every worker and replica sharing the key accepts the
            # others' cursors, and a restart keeps them.
            cursors=CursorCodec.from_server_key(server_key),
            on_call=metrics.upstream_call if metrics else None,
            secret_lookup_limiter=TokenBuckets(
                config.limits.secret_lookups_per_minute / 60.0,
                config.limits.secret_lookups_per_minute,
            ).check,
        )
        if metrics is not None:
            metrics.watch_sources(service.sources)
        view = GatewayView(
            schema,
            service,
            source_types(service),
            graphiql=graphiql_page,
            persisted=persisted,
        )
        replicas = Replicas.start(
            config, store, metrics.local_limit_decisions.inc if metrics else None
        )
        if metrics is not None:
            metrics.watch_replicas(replicas.status)
        # [auth.jwt]: its key set is fetched at the first JWT a caller sends, not here.
        jwt = JwtAuthenticator(config.auth.jwt, client) if config.auth.jwt else None
        graphql.app = BearerAuth(view, store, replicas.limiter, metrics=metrics, jwt=jwt)
        # The same authentication and rate limit as /graphql; one request per export.
        export.app = BearerAuth(
            ExportEndpoint(service, schema, timeout_s=export_timeout_s),
            store,
            replicas.limiter,
            metrics=metrics,
            jwt=jwt,
            rate_limited_status=429,
        )
        state["runtime"] = Runtime(store=store, service=service, replicas=replicas)
        if drain_on_sigterm:
            drain.install()
        log.info("tokengate ready: %d source(s)", len(service.sources))
        if freeze_heap:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            graphql.app = None
            export.app = None
            if jwt is not None:
                await jwt.aclose()
            await replicas.aclose()
            await service.aclose()
            await client.aclose()
            if tracing.exporting:  # flushes the last spans: may wait on the collector
                await asyncio.to_thread(tracing.shutdown)

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> JSONResponse:
        if drain.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        runtime = state.get("runtime")
        sources = {
            key: getattr(source, "health", "ok")
            for key, source in (runtime.service.sources.items() if runtime else ())
            if key != "internal"
        }
        store_ok = runtime is not None and await runtime.store.ping()
        body = {
            "status": "ready" if store_ok else "unavailable",
            "store": "ok" if store_ok else "down",
            "sources": sources,
        }
        if runtime is not None:  # informative only: never a reason for a 503
            body.update(runtime.replicas.status())
        return JSONResponse(body, status_code=200 if store_ok else 503)

    middleware = [
        # Outermost: the access line and everything else run inside the request's span.
        Middleware(TraceRequests, tracing=tracing, routes=ROUTES),
        # Outside gzip: its header and access line see the final answer.
        Middleware(RequestId, metrics=metrics),
        Middleware(Gzip),
        Middleware(CloseWhileDraining, drain=drain),
        Middleware(BodyLimit, max_bytes=config.limits.max_body_bytes),
    ]
    if config.server.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(config.server.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=list(config.server.cors_allow_headers),
                # What a browser script may read of an answer: the id to quote in a report.
                expose_headers=["x-request-id"],
                max_age=config.server.cors_max_age_s,
            )
        )
    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route(GRAPHQL_PATH, graphql, methods=["GET", "POST"]),
        Route(EXPORT_PATH, export, methods=["GET"]),
    ]
    if metrics is not None:
        routes.append(Route("/metrics", metrics.endpoint, methods=["GET"]))
    if graphiql_page is not None:
        routes.append(
            Route(f"{ASSETS_PATH}/{{name}}", graphiql_page.asset, methods=["GET", "HEAD"])
        )
    return Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
    )
