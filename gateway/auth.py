"""Bearer credentials -> a Principal. The only place where an HTTP 401 is decided.

A store that cannot be read answers HTTP 503 (coded ``UPSTREAM_UNAVAILABLE``, source
``internal``), never 401: an outage is not the caller's fault, and a client that drops its
credential on a 401 must keep it.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from tokengate.gateway import request_facts
from tokengate.gateway.jwt_auth import JwtAuthenticator, looks_like_jwt
from tokengate.gateway.ratelimit import RateLimiter
from tokengate.upstreams import errors
from tokengate.upstreams.principal import Principal
from tokengate.upstreams.store.source import StoreSource

if TYPE_CHECKING:
    from tokengate.gateway.metrics import Metrics

log = logging.getLogger("tokengate.auth")
# RFC 6750: no error code when no bearer credential came; ``invalid_token`` when one came
# and authenticates nobody (an internal secret or a JWT alike).
CHALLENGE = b'Bearer realm="tokengate"'
INVALID_TOKEN_CHALLENGE = b'Bearer realm="tokengate", error="invalid_token"'
# What a client is told to wait before it retries during a store outage.
STORE_RETRY_AFTER_S = 1


def bearer_secret(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


# Why a request's credentials were refused (metrics only), beyond the store's reasons.
MISSING = "missing"
MALFORMED = "malformed"


async def identify(
    store: StoreSource, authorization: str | None, jwt: JwtAuthenticator | None = None
) -> Principal | str:
    """The caller, or why nobody: missing, malformed (not ``Bearer <secret>``), unknown,
    expired, revoked or inactive; for a JWT (when ``[auth.jwt]`` is configured) the reasons
    of ``jwt_auth``."""
    if authorization is None:
        return MISSING
    secret = bearer_secret(authorization)
    if secret is None:
        return MALFORMED
    if jwt is not None and looks_like_jwt(secret):
        return await jwt.identify(secret)
    return await store.identify(secret)


def _wants_graphiql(scope: Scope, headers: dict[bytes, bytes]) -> bool:
    if scope["method"] != "GET" or scope.get("query_string"):
        return False
    return b"text/html" in headers.get(b"accept", b"")


class BearerAuth:
    """Authenticates every GraphQL request before Strawberry sees it.

    Missing or bad credentials answer HTTP 401 with a GraphQL-shaped JSON body whose error
    code is UNAUTHENTICATED. The GraphiQL page itself (a static HTML page) needs no token;
    the queries it sends do.
    """

    def __init__(
        self,
        app: ASGIApp,
        store: StoreSource,
        limiter: RateLimiter | None = None,
        *,
        metrics: Metrics | None = None,
        jwt: JwtAuthenticator | None = None,
        rate_limited_status: int = 200,
    ) -> None:
        self.app = app
        # GraphQL refuses at HTTP 200 (the run contract); other routes may say 429.
        self.rate_limited_status = rate_limited_status
        self.store = store
        self.limiter = limiter
        self.metrics = metrics
        self.jwt = jwt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if _wants_graphiql(scope, headers):
            await self.app(scope, receive, send)
            return
        raw = headers.get(b"authorization")
        try:
            principal = await identify(self.store, raw.decode("latin-1") if raw else None, self.jwt)
        except errors.UpstreamError as exc:
            log.warning("authentication could not read the store: %s", exc.message)
            await _store_unavailable(send, exc)
            return
        if not isinstance(principal, Principal):
            request_facts.current().outcome = request_facts.REFUSED
            if self.metrics is not None:
                self.metrics.auth_failed(principal)
            if raw is None or bearer_secret(raw.decode("latin-1")) is None:  # no bearer value
                await _unauthenticated(
                    send, "missing credentials: send Authorization: Bearer <token>", CHALLENGE
                )
            else:
                await _unauthenticated(send, "invalid credentials", INVALID_TOKEN_CHALLENGE)
            return
        if self.limiter is not None:
            wait = await self.limiter.check(principal.bucket)
            if wait is not None:
                request_facts.current().outcome = request_facts.REFUSED
                if self.metrics is not None:
                    self.metrics.rate_limited.inc()
                await _rate_limited(send, wait, self.rate_limited_status)
                return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


async def _unauthenticated(send: Send, message: str, challenge: bytes) -> None:
    await _refuse(
        send,
        401,
        {"errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]},
        (b"www-authenticate", challenge),
    )


async def _store_unavailable(send: Send, error: errors.UpstreamError) -> None:
    extensions = {"code": error.code, "source": error.source, "reason": error.reason}
    await _refuse(
        send,
        503,
        {"errors": [{"message": error.message, "extensions": extensions}]},
        (b"retry-after", str(STORE_RETRY_AFTER_S).encode()),
    )


async def _rate_limited(send: Send, wait_s: float, status: int = 200) -> None:
    """HTTP 200 (a GraphQL-level refusal, per the run contract; ``status`` elsewhere) that
    executed nothing."""
    retry_after = max(1, math.ceil(wait_s))
    message = f"too many requests for this token: retry in {retry_after} s"
    await _refuse(
        send,
        status,
        {
            "data": None,
            "errors": [
                {
                    "message": message,
                    "extensions": {"code": "RATE_LIMITED", "retryAfter": retry_after},
                }
            ],
        },
        (b"retry-after", str(retry_after).encode()),
    )


async def _refuse(send: Send, status: int, payload: object, header: tuple[bytes, bytes]) -> None:
    """A GraphQL-shaped JSON answer sent before the request reaches Strawberry."""
    body = orjson.dumps(payload)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        header,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
