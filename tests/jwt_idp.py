"""An identity provider for tests: keys the tests make (RSA and EC), tokens signed with them,
and a loopback JWKS server that counts its fetches and can hang, fail or rotate its keys."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.conftest import BOOTSTRAP, Gateway, gateway_config
from tokengate.gateway.app import create_app
from tokengate.gateway.config import AuthConfig, JwtConfig, LimitsConfig, SourceConfig
from tokengate.upstreams.loopback import serve_in_thread

ISSUER = "https://idp.test.example"
AUDIENCE = "tokengate"
# How long the gateway under test waits for its JWKS: short, so that hanging tests are quick.
JWKS_TIMEOUT_S = 1.0

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: PrivateKey

    @classmethod
    def rsa(cls, kid: str | None = None) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(kid or f"rsa-{uuid.uuid4().hex[:8]}", "RS256", key)

    @classmethod
    def ec(cls, kid: str | None = None) -> SigningKey:
        return cls(
            kid or f"ec-{uuid.uuid4().hex[:8]}", "ES256", ec.generate_private_key(ec.SECP256R1())
        )

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            raw = RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            raw = ECAlgorithm.to_jwk(public, as_dict=True)
        return {**raw, "kid": self.kid, "use": "sig", "alg": self.alg}

    def public_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def claims(subject: str = "alice@example.com", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: SigningKey, body: dict[str, Any], *, headers: dict[str, Any] | None = None) -> str:
    return jwt.encode(
        body, key.private, algorithm=key.alg, headers={"kid": key.kid, **(headers or {})}
    )


@dataclass
class JwksState:
    """What the JWKS server publishes and how it behaves; every GET /jwks is counted."""

    keys: list[SigningKey]
    fetches: int = 0
    hang: bool = False
    status: int = 200
    extra: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def document(self) -> dict[str, Any]:
        return {"keys": [k.jwk() for k in self.keys] + self.extra}


def jwks_app(state: JwksState) -> Starlette:
    async def jwks(_request: Request) -> Response:
        with state.lock:
            state.fetches += 1
        deadline = time.monotonic() + 30
        # A flag set from the test's thread: polled, since an asyncio.Event is one loop's.
        while state.hang and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if state.status != 200:
            return JSONResponse({"error": "down"}, status_code=state.status)
        return JSONResponse(state.document())

    return Starlette(routes=[Route("/jwks", jwks)])


@dataclass
class Idp:
    url: str
    state: JwksState

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks"


@contextlib.contextmanager
def idp(*keys: SigningKey) -> Iterator[Idp]:
    state = JwksState(keys=list(keys))
    with serve_in_thread(jwks_app(state)) as url:
        try:
            yield Idp(url, state)
        finally:
            state.hang = False  # before the server stops: it waits for a hanging answer


def jwt_config(provider: Idp, **overrides: Any) -> JwtConfig:
    settings: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_url": provider.jwks_url,
        "jwks_timeout_s": JWKS_TIMEOUT_S,
    }
    settings.update(overrides)
    return JwtConfig(**settings)


@contextlib.contextmanager
def jwt_gateway(
    home: Path,
    provider: Idp,
    *,
    sources: tuple[SourceConfig, ...] = (),
    limits: LimitsConfig | None = None,
    **overrides: Any,
) -> Iterator[Gateway]:
    """A gateway accepting the tokens of ``provider`` beside internal ones (the bootstrap
    admin secret set while it runs)."""
    with contextlib.ExitStack() as stack:
        mp = stack.enter_context(_monkeypatch())
        mp.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
        extra: dict[str, Any] = {} if limits is None else {"limits": limits}
        config = gateway_config(
            home, sources=sources, auth=AuthConfig(jwt=jwt_config(provider, **overrides)), **extra
        )
        url = stack.enter_context(serve_in_thread(create_app(config)))
        yield Gateway(url=url, admin_secret=BOOTSTRAP, config=config)


def _monkeypatch() -> contextlib.AbstractContextManager[Any]:
    import pytest

    return pytest.MonkeyPatch.context()


def decoded(token: str) -> dict[str, Any]:
    """The claims of a token, unchecked (for assertions on what an issuer made)."""
    body: dict[str, Any] = json.loads(jwt.api_jws.base64url_decode(token.split(".")[1]))
    return body
