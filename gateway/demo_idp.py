"""The demo identity provider of ``tokengate serve --demo``: sign-in without a real IdP.

A small Starlette app on loopback publishes one EC key (ES256) at ``GET /jwks`` and signs
tokens at ``POST /token`` (JSON ``{"subject": ..., "scope": ...}``), with permissive CORS so
that a page on another origin can sign in. Demo only: it asks for no password.

The private key lives in the demo's state directory (``idp-key.json``, 0600), and a pointer
to that directory in the user's cache directory (``$XDG_CACHE_HOME/tokengate/demo.json``):
``tokengate demo jwt --subject USER`` reads both and signs a token the running demo accepts.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

AUDIENCE = "tokengate"
ALGORITHM = "ES256"
TOKEN_TTL_S = 3600
DEFAULT_SCOPE = "tokens:read tokens:write"
KEY_FILE = "idp-key.json"
POINTER_ENV = "XDG_CACHE_HOME"
MAX_SUBJECT_CHARS = 255
# What POST /token grants: any page may call it (CORS), so never tokens:admin; the CLI,
# which reads the key file, may.
WEB_SCOPES = frozenset({"tokens:read", "tokens:write"})
_SCOPE_WORD = re.compile(r"[!#-\[\]-~]+")


class DemoIdpError(Exception):
    """The running demo (or its key) cannot be found, or a request is not one it signs."""


@dataclass(frozen=True)
class DemoIdp:
    """The demo IdP's identity and signing key."""

    issuer: str
    kid: str
    key: ec.EllipticCurvePrivateKey
    audience: str = AUDIENCE

    @classmethod
    def create(cls, issuer: str) -> DemoIdp:
        return cls(issuer, "demo-" + secrets.token_hex(4), ec.generate_private_key(ec.SECP256R1()))

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    def jwks(self) -> dict[str, Any]:
        public = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": ALGORITHM}]}

    def token(self, subject: str, scope: str = DEFAULT_SCOPE, ttl_s: int = TOKEN_TTL_S) -> str:
        if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_CHARS:
            raise DemoIdpError(f"subject must be 1 to {MAX_SUBJECT_CHARS} characters")
        words = scope.split()
        if not all(_SCOPE_WORD.fullmatch(w) for w in words):
            raise DemoIdpError("scope must be space-separated scope names")
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "scope": " ".join(words),
            "iat": now,
            "nbf": now,
            "exp": now + ttl_s,
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self.key, algorithm=ALGORITHM, headers={"kid": self.kid})

    # -- the key file ------------------------------------------------------------------------

    def save(self, state_dir: Path) -> Path:
        """Write the key file (0600) into ``state_dir``."""
        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        body = {"issuer": self.issuer, "audience": self.audience, "kid": self.kid, "key": pem}
        path = state_dir / KEY_FILE
        _write_private(path, json.dumps(body, indent=2))
        return path

    @classmethod
    def load(cls, state_dir: Path) -> DemoIdp:
        path = state_dir / KEY_FILE
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            key = serialization.load_pem_private_key(body["key"].encode(), password=None)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DemoIdpError(f"cannot read the demo's key file {path}: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise DemoIdpError(f"{path} does not hold an EC key")
        return cls(body["issuer"], body["kid"], key, body.get("audience", AUDIENCE))


def _write_private(path: Path, text: str) -> None:
    """Create or replace ``path`` readable by its owner only (never through a symlink)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def pointer_file(environ: dict[str, str] | os._Environ[str] | None = None) -> Path:
    """Where ``serve --demo`` notes its state directory for ``tokengate demo jwt``."""
    env = os.environ if environ is None else environ
    cache = env.get(POINTER_ENV) or str(Path.home() / ".cache")
    return Path(cache) / "tokengate" / "demo.json"


def announce(state_dir: Path, idp_url: str, gateway_url: str) -> Path:
    """Point ``tokengate demo jwt`` at this demo (the latest one started wins)."""
    path = pointer_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = {
        "state_dir": str(state_dir),
        "idp_url": idp_url,
        "gateway_url": gateway_url,
        "pid": os.getpid(),
    }
    _write_private(path, json.dumps(body, indent=2))
    return path


def withdraw(state_dir: Path) -> None:
    """Remove the pointer if it still names this demo."""
    path = pointer_file()
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("state_dir") == str(state_dir):
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def running_demo_dir() -> Path:
    """The state directory of the demo started last (``announce``)."""
    path = pointer_file()
    try:
        state = json.loads(path.read_text(encoding="utf-8"))["state_dir"]
    except (OSError, ValueError, KeyError, TypeError):
        raise DemoIdpError(
            f"no running demo found ({path} is missing): start `tokengate serve --demo` first, "
            "or pass --state-dir"
        ) from None
    return Path(state)


def app(idp: DemoIdp) -> Starlette:
    """``GET /jwks`` and ``POST /token``, callable from any origin."""

    async def jwks(_request: Request) -> JSONResponse:
        return JSONResponse(idp.jwks(), headers={"cache-control": "max-age=300"})

    async def token(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _bad_request('send JSON: {"subject": "USER", "scope": "tokens:read"}')
        subject, scope = body.get("subject"), body.get("scope", DEFAULT_SCOPE)
        if not isinstance(subject, str) or not isinstance(scope, str):
            return _bad_request("subject and scope must be strings")
        asked = set(scope.split())
        if not asked <= WEB_SCOPES | {"openid", "profile", "email"}:
            return _bad_request(f"this demo grants only {' '.join(sorted(WEB_SCOPES))}")
        try:
            signed = idp.token(subject, scope)
        except DemoIdpError as exc:
            return _bad_request(str(exc))
        return JSONResponse(
            {"access_token": signed, "token_type": "Bearer", "expires_in": TOKEN_TTL_S},
            headers={"cache-control": "no-store"},
        )

    return Starlette(
        routes=[Route("/jwks", jwks, methods=["GET"]), Route("/token", token, methods=["POST"])],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["GET", "POST"],
                allow_headers=["content-type"],
            )
        ],
    )


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"error": "invalid_request", "error_description": message}, status_code=400)
