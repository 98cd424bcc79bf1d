"""A loopback stand-in for the OAuth-style token server's end-user token API (seed 001).

What it enforces, as documented: Basic auth with the API client's credentials (401
otherwise); ``404 {"error": "No tokens found"}`` for an unknown user and for a user without
listed tokens; ``Cache-Control: no-store`` and ``Pragma: no-cache`` on the list; ``DELETE``
always ``204``; expired tokens without a refresh token are not listed. The list comes in
reverse insertion order, deliberately unlike the gateway's tie-break.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tokengate.upstreams.simulation import SimulatorControl, SimulatorMiddleware

API_PREFIX = "/oauth/api/v1/users/"
WALK_USER = "anna.de.vries@example.com"
# Percent-encoding matters: a slash, a percent sign, a query mark, a space, non-ASCII.
ODD_USER = "ext/partner%42?x=1 #Zoë"
# Every token of this user expired without a refresh token: the server answers 404.
VANISHED_USER = "carl.expired"
_JSON = "application/json;charset=UTF-8"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass
class SimToken:
    """One access token as the server stores it; ``None`` flags are not sent (older server)."""

    id: str
    client_name: str
    created_at: int
    scopes: list[str]
    type: str = "DEFAULT"
    device_name: str | None = None
    expired: bool | None = None
    refresh_token_issued: bool | None = None

    @property
    def listed(self) -> bool:
        # Newer servers: once expired, a token without a refresh token vanishes.
        return not (self.expired and not self.refresh_token_issued)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "client_name": self.client_name}
        if self.device_name is not None:
            body["device_name"] = self.device_name
        body.update(created_at=self.created_at, scopes=list(self.scopes), type=self.type)
        if self.refresh_token_issued is not None:
            body["refresh_token_issued"] = self.refresh_token_issued
        if self.expired is not None:
            body["expired"] = self.expired
        return body


@dataclass
class OAuthSimState:
    client_id: str
    client_secret: str
    users: dict[str, list[SimToken]] = field(default_factory=dict)
    control: SimulatorControl = field(default_factory=SimulatorControl)

    def listed(self, user_id: str) -> list[SimToken]:
        return [t for t in self.users.get(user_id, []) if t.listed]

    def delete(self, user_id: str, token_id: str) -> None:
        tokens = self.users.get(user_id)
        if tokens is not None:
            self.users[user_id] = [t for t in tokens if t.id != token_id]

    def authorised(self, header: str | None) -> bool:
        if header is None or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        client_id, colon, client_secret = decoded.partition(":")
        return bool(colon) and (
            secrets.compare_digest(client_id.encode(), self.client_id.encode())
            & secrets.compare_digest(client_secret.encode(), self.client_secret.encode())
        )


_CLIENTS = [
    ("Acme Mobile", "DEFAULT", True),
    ("ACME mobile", "FINGER_PRINT", True),
    ("Acme Web Portal", "DEFAULT", False),
    ("Customer Self-Service", "DEFAULT", False),
    ("Zorgdossier App", "FINGER_PRINT", True),
    ("bank-cli", "DEFAULT", False),
]
_DEVICES = ["my iPad", "Anna's iPhone 15", "Pixel 8 Pro", "Galaxy Tab S9", "work laptop"]
_SCOPES = ["openid", "email", "profile", "accounts:read", "payments:write"]
_BASE_MS = 1_381_321_302_000  # the seed's second example, October 2013


def _token(rng: random.Random, created_slot: int, *, newer: bool) -> SimToken:
    client_name, auth_type, dynamic = rng.choice(_CLIENTS)
    token = SimToken(
        id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        client_name=client_name,
        # Few distinct slots, so created_at ties are common.
        created_at=_BASE_MS + created_slot * 3_600_000,
        scopes=sorted(rng.sample(_SCOPES, rng.randint(0, 3))),
        type=auth_type,
        device_name=rng.choice(_DEVICES) if dynamic else None,
    )
    if newer:
        token.refresh_token_issued = rng.random() < 0.5
        token.expired = rng.random() < 0.25
    return token


def sample_state(count: int = 30, seed: int = 1, **creds: str) -> OAuthSimState:
    """Deterministic users and tokens: ``WALK_USER`` has ``count`` listed tokens (use 60 or
    more for page walks), a few users have a handful, ``ODD_USER`` needs percent-encoding,
    ``VANISHED_USER`` has only vanished tokens. ``creds``: client_id, client_secret."""
    unknown = set(creds) - {"client_id", "client_secret"}
    if unknown:
        raise TypeError(f"unknown credentials: {sorted(unknown)}")
    rng = random.Random(seed)  # noqa: S311 - reproducible sample data, not a secret
    state = OAuthSimState(
        client_id=creds.get("client_id", "tokengate-api-client"),
        client_secret=creds.get("client_secret", "sim-client-secret"),
    )
    slots = max(2, count // 4)

    def fill(user_id: str, listed: int, *, newer: bool = True) -> None:
        tokens = state.users.setdefault(user_id, [])
        while sum(t.listed for t in tokens) < listed:
            tokens.append(_token(rng, rng.randrange(slots), newer=newer))

    fill(WALK_USER, count)
    # An older server's tokens sit next to newer ones: no expired/refresh_token_issued.
    fill("bram.jansen", 5, newer=False)
    fill("chloe@example.org", 1)
    fill(ODD_USER, 3)
    vanished = _token(rng, 0, newer=True)
    vanished.expired, vanished.refresh_token_issued = True, False
    state.users[VANISHED_USER] = [vanished]
    return state


def _json_response(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status_code=status, media_type=_JSON, headers=headers)


def build_app(state: OAuthSimState) -> ASGIApp:
    """The simulator as an ASGI app, wrapped in the shared log/fault middleware."""

    async def tokens(request: Request) -> Response:
        if not state.authorised(request.headers.get("authorization")):
            return _json_response(
                401,
                {"error": "unauthorized", "error_description": "Bad client credentials"},
                {"WWW-Authenticate": 'Basic realm="oauth-api"'},
            )
        # Read the still-encoded path: a user id may hold an encoded slash.
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        parts = raw_path.decode("latin-1").removeprefix(API_PREFIX).split("/")
        if len(parts) not in {2, 3} or parts[1] != "tokens":
            return PlainTextResponse("Not Found", status_code=404)
        if len(parts) == 2:
            if request.method == "DELETE":
                return PlainTextResponse("Method Not Allowed", status_code=405)
            listed = state.listed(unquote(parts[0]))
            if not listed:
                return _json_response(404, {"error": "No tokens found"}, _NO_STORE)
            body = {"tokens": [t.to_json() for t in reversed(listed)]}
            return _json_response(200, body, _NO_STORE)
        if request.method != "DELETE":
            return PlainTextResponse("Method Not Allowed", status_code=405)
        state.delete(unquote(parts[0]), unquote(parts[2]))
        return Response(status_code=204)

    routes = [Route(API_PREFIX + "{rest:path}", tokens, methods=["GET", "DELETE"])]
    return SimulatorMiddleware(Starlette(routes=routes), state.control)
