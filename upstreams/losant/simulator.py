"""A loopback stand-in for Losant's application API tokens (seed 002), for tests and demos.

Enforced as documented: ``Authorization: Bearer <api token>`` (401 otherwise); the list's
0-based ``page``, ``perPage`` (default 100, at most 1000: 400 above), ``sortField`` (name,
status, id, creationDate, lastUpdated, expirationDate; default name), ``sortDirection``
(asc, desc) and ``filterField`` (name, status) with a ``filter`` glob (``*``, ``?``), each
400 when unknown; POST bodies checked against ``apiTokenPost.json`` and PATCH bodies against
``apiTokenPatch.json`` (unknown keys: 400); DELETE answers ``{"success": true}``; unknown
applications and tokens answer ``404 {"type": "NotFound", ...}``. Listed and fetched tokens
carry their secret ``token``, so tests prove the adapter drops it.

Choices where Losant documents nothing, each the worst case for the gateway:
- the ``filter`` glob is CASE-SENSITIVE (the gateway matches case-insensitively);
- ties come in reverse insertion order in both directions (not the gateway's local-id order);
- a missing value (no expirationDate) sorts FIRST ascending and LAST descending, as MongoDB
  does: the opposite of the gateway's nulls-last-ascending (``nulls="largest"``: the
  gateway's own placement, for tests that the adapter handles both);
- names sort by ``str.lower()`` (``name_sort="binary"``: by code point, capitals first);
- ``totalCount`` counts the filter's matches.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tokengate.upstreams.losant.normalise import (
    SchemaViolation,
    format_date,
    is_object_id,
    parse_date,
)
from tokengate.upstreams.losant.scopes import ALL_SCOPES
from tokengate.upstreams.simulation import SimulatorControl, SimulatorMiddleware

DEFAULT_APPLICATIONS = ("575ec8687ae143cd83dc4a97", "5b9f2e6c1e2d3a0012ab34cd")
DEFAULT_API_TOKEN = "losant-sim-api-token"  # noqa: S105 (the simulator's fake credential)
DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 1000
SORT_FIELDS = ("name", "status", "id", "creationDate", "lastUpdated", "expirationDate")
FILTER_FIELDS = ("name", "status")
_POST_KEYS = frozenset({"name", "description", "expirationDate", "scope", "status"})
_PATCH_KEYS = frozenset({"name", "description", "status"})
_STATUSES = ("active", "inactive")

NameSort = Literal["insensitive", "binary"]
NullSort = Literal["smallest", "largest"]
SimToken = dict[str, Any]


@dataclass
class LosantSimState:
    """Each application's tokens in insertion order, as Losant's JSON (secret included)."""

    applications: dict[str, list[SimToken]]
    api_token: str = DEFAULT_API_TOKEN
    control: SimulatorControl = field(default_factory=SimulatorControl)
    name_sort: NameSort = "insensitive"
    nulls: NullSort = "smallest"
    seed: int = 1
    serial: int = 0

    def new_id(self) -> str:
        self.serial += 1
        return _object_id(f"new:{self.seed}:{self.serial}")


def _object_id(text: str) -> str:
    return hashlib.sha256(f"losant-sim:{text}".encode()).hexdigest()[:24]


_NAMES = (
    "Fleet gateway",
    "fleet gateway",
    "Grafana reader",
    "CI deploy",
    "ci deploy",
    "Node-RED bridge",
    "Édge relay",
    "edge relay",
    "backup-2019",
    "Backup-2019",
    "Alpha probe",
    "zeta probe",
    "Dashboard kiosk",
    "MQTT ingest 2",
    "mqtt ingest 10",
)
_SCOPES: tuple[list[str], ...] = (
    ["all.Application"],
    ["all.Application.read"],
    ["device.get", "devices.get", "device.sendState"],
    ["applicationApiTokens.get"],
    [],
    ["data.timeSeriesQuery", "data.lastValueQuery"],
)
_CREATORS = (
    ("user", "Ada Lovelace"),
    ("apiToken", "Provisioning token"),
    ("flow", "Nightly rotation flow"),
)
_EPOCH = datetime(2016, 6, 13, 4, 0, tzinfo=UTC)


def sample_state(
    count: int = 30,
    seed: int = 1,
    *,
    api_token: str = DEFAULT_API_TOKEN,
    application_ids: tuple[str, ...] = DEFAULT_APPLICATIONS,
    name_sort: NameSort = "insensitive",
    nulls: NullSort = "smallest",
) -> LosantSimState:
    """``count`` tokens over the applications (two thirds in the first), deterministic.

    Every sort field has ties (names equal but for case, or equal outright; three tokens per
    creation instant, across and within applications; shared expiry dates), some tokens
    are inactive, some expired, some never expire, and one is both inactive and expired.
    """
    apps: dict[str, list[SimToken]] = {a.lower(): [] for a in application_ids}
    app_list = list(apps)
    for i in range(count):
        app = (
            app_list[0]
            if len(app_list) == 1 or i % 3 != 2
            else app_list[1 + i % (len(app_list) - 1)]
        )
        n = i + seed * 7
        # Creation instants shared three ways (two tokens in the first application, one in
        # the second), and the second application's tokens share theirs in pairs too.
        group = i // 3 - (i // 3) % 2 if i % 3 == 2 else i // 3
        created = _EPOCH + timedelta(days=group * 11 + seed, hours=seed % 5)
        creator_type, creator_name = _CREATORS[n % len(_CREATORS)]
        token: SimToken = {
            "id": _object_id(f"{seed}:{i}"),
            "apiTokenId": _object_id(f"{seed}:{i}"),
            "ownerId": app,
            "ownerType": "application",
            "creatorId": _object_id(f"creator:{n % 4}"),
            "creatorType": creator_type,
            "creatorName": creator_name,
            "name": _NAMES[(n * 5 + i // 3) % len(_NAMES)],
            "creationDate": format_date(created),
            "lastUpdated": format_date(created + timedelta(hours=i % 2)),
            "scope": list(_SCOPES[n % len(_SCOPES)]),
            "status": "inactive" if i % 7 == 3 or i % 10 == 6 else "active",
            "token": "sim." + hashlib.sha256(f"secret:{seed}:{i}".encode()).hexdigest(),
        }
        if i % 4 == 1:
            token["description"] = f"Used by the {_NAMES[(n + 3) % len(_NAMES)]} service"
        expiry = i % 5
        if expiry == 1:
            token["expirationDate"] = "2019-01-01T00:00:00.000Z"  # expired, and a tie
        elif expiry == 2:
            token["expirationDate"] = "2090-01-01T00:00:00.000Z"  # a tie in the future
        elif expiry == 4:
            token["expirationDate"] = format_date(_EPOCH + timedelta(days=26000 + i * 3))
        # expiry 0 and 3: no expirationDate at all (the token never expires)
        apps[app].append(token)
    return LosantSimState(
        applications=apps, api_token=api_token, name_sort=name_sort, nulls=nulls, seed=seed
    )


def glob_matches(pattern: str, value: str) -> bool:
    """The simulator's filter: ``*`` any run, ``?`` one character, case-sensitive, whole."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


class _BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"type": kind, "message": message}, status_code=status)


def build_app(state: LosantSimState) -> ASGIApp:
    """The simulator as an ASGI app, wrapped in the shared request log and fault injection."""

    def guarded(
        handler: Callable[[Request, list[SimToken]], Any],
    ) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            if request.headers.get("authorization") != f"Bearer {state.api_token}":
                return _error(401, "Unauthorized", "Authorization header is missing or invalid")
            app_id = request.path_params["application_id"].lower()
            tokens = state.applications.get(app_id) if is_object_id(app_id) else None
            if tokens is None:
                return _error(404, "NotFound", "Application was not found")
            try:
                response: Response = await handler(request, tokens)
            except _BadRequest as exc:
                return _error(400, "Validation", exc.message)
            return response

        return endpoint

    async def list_tokens(request: Request, tokens: list[SimToken]) -> Response:
        q = request.query_params
        page = _int_param(q.get("page"), "page", 0, minimum=0)
        per_page = _int_param(q.get("perPage"), "perPage", DEFAULT_PER_PAGE, minimum=1)
        if per_page > MAX_PER_PAGE:
            raise _BadRequest(f"perPage must be at most {MAX_PER_PAGE}")
        sort_field = q.get("sortField") or "name"
        if sort_field not in SORT_FIELDS:
            raise _BadRequest("sortField is not one of " + ", ".join(SORT_FIELDS))
        direction = (q.get("sortDirection") or "asc").lower()
        if direction not in ("asc", "desc"):
            raise _BadRequest("sortDirection must be asc or desc")
        filter_field = q.get("filterField") or ""
        pattern = q.get("filter") or ""
        if filter_field and filter_field not in FILTER_FIELDS:
            raise _BadRequest("filterField must be name or status")
        if filter_field and pattern:
            tokens = [t for t in tokens if glob_matches(pattern, str(t.get(filter_field, "")))]
        ordered = _sorted(tokens, sort_field, direction == "desc", state)
        items = ordered[page * per_page : (page + 1) * per_page]
        body: dict[str, Any] = {
            "items": items,
            "count": len(items),
            "totalCount": len(ordered),
            "perPage": per_page,
            "page": page,
            "sortField": sort_field,
            "sortDirection": direction,
            "ownerId": request.path_params["application_id"].lower(),
            "ownerType": "application",
        }
        if filter_field:
            body["filterField"] = filter_field
            body["filter"] = pattern
        return JSONResponse(body)

    async def create_token(request: Request, tokens: list[SimToken]) -> Response:
        body = await _json_object(request)
        _check_body(body, _POST_KEYS)
        if "name" not in body:
            raise _BadRequest("name is required")
        now = format_date(datetime.now(UTC))
        app_id = request.path_params["application_id"].lower()
        token_id = state.new_id()
        token: SimToken = {
            "id": token_id,
            "apiTokenId": token_id,
            "ownerId": app_id,
            "ownerType": "application",
            "creatorId": _object_id(f"gateway:{state.api_token}"),
            "creatorType": "apiToken",
            "creatorName": "Gateway token",
            "name": body["name"],
            "creationDate": now,
            "lastUpdated": now,
            "scope": list(body.get("scope", [])),
            "status": body.get("status", "active"),
            "token": "sim." + secrets.token_urlsafe(32),
        }
        if "description" in body:
            token["description"] = body["description"]
        if "expirationDate" in body:
            token["expirationDate"] = format_date(parse_date(body["expirationDate"], "x"))
        tokens.append(token)
        return JSONResponse(token, status_code=201)

    def with_token(
        handler: Callable[[Request, list[SimToken], SimToken], Any],
    ) -> Callable[[Request, list[SimToken]], Any]:
        async def inner(request: Request, tokens: list[SimToken]) -> Response:
            token_id = request.path_params["token_id"].lower()
            token = next((t for t in tokens if t["id"] == token_id), None)
            if token is None:
                return _error(404, "NotFound", "ApiToken was not found")
            response: Response = await handler(request, tokens, token)
            return response

        return inner

    async def get_token(request: Request, tokens: list[SimToken], token: SimToken) -> Response:
        return JSONResponse(token)

    async def patch_token(request: Request, tokens: list[SimToken], token: SimToken) -> Response:
        body = await _json_object(request)
        _check_body(body, _PATCH_KEYS)
        token.update(body)
        token["lastUpdated"] = format_date(datetime.now(UTC))
        return JSONResponse(token)

    async def delete_token(request: Request, tokens: list[SimToken], token: SimToken) -> Response:
        tokens.remove(token)
        return JSONResponse({"success": True})

    collection = "/applications/{application_id}/tokens"
    routes = [
        Route(collection, guarded(list_tokens), methods=["GET"]),
        Route(collection, guarded(create_token), methods=["POST"]),
        Route(collection + "/{token_id}", guarded(with_token(get_token)), methods=["GET"]),
        Route(collection + "/{token_id}", guarded(with_token(patch_token)), methods=["PATCH"]),
        Route(collection + "/{token_id}", guarded(with_token(delete_token)), methods=["DELETE"]),
    ]
    return SimulatorMiddleware(Starlette(routes=routes), state.control)


def _sorted(
    tokens: list[SimToken], sort_field: str, descending: bool, state: LosantSimState
) -> list[SimToken]:
    def key(token: SimToken) -> str:
        value = str(token[sort_field])
        insensitive = sort_field == "name" and state.name_sort == "insensitive"
        return value.lower() if insensitive else value

    # Reverse insertion order among equals, in both directions (sorted() is stable).
    newest_first = list(reversed(tokens))
    present = sorted((t for t in newest_first if sort_field in t), key=key, reverse=descending)
    missing = [t for t in newest_first if sort_field not in t]
    if descending == (state.nulls == "smallest"):
        return present + missing
    return missing + present


def _int_param(raw: str | None, name: str, default: int, *, minimum: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) < minimum:
        raise _BadRequest(f"{name} must be an integer of at least {minimum}")
    return int(raw)


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise _BadRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest("the body must be a JSON object")
    return body


def _check_body(body: dict[str, Any], allowed: frozenset[str]) -> None:
    """The subset of JSON Schema that apiTokenPost.json and apiTokenPatch.json use."""
    extra = sorted(set(body) - allowed)
    if extra:
        raise _BadRequest(f"additional property not allowed: {extra[0]}")
    if "name" in body and not (isinstance(body["name"], str) and 1 <= len(body["name"]) <= 255):
        raise _BadRequest("name must be a string of 1 to 255 characters")
    description = body.get("description")
    if "description" in body and not (isinstance(description, str) and len(description) <= 32767):
        raise _BadRequest("description must be a string of at most 32767 characters")
    if "status" in body and body["status"] not in _STATUSES:
        raise _BadRequest("status must be active or inactive")
    if "expirationDate" in body:
        try:
            parse_date(body["expirationDate"], "expirationDate")
        except SchemaViolation:
            raise _BadRequest("expirationDate must be a date-time") from None
    if "scope" in body:
        scope = body["scope"]
        if not isinstance(scope, list) or not all(isinstance(s, str) for s in scope):
            raise _BadRequest("scope must be an array of strings")
        if len(set(scope)) != len(scope):
            raise _BadRequest("scope items must be unique")
        unknown = [s for s in scope if s not in ALL_SCOPES]
        if unknown:
            raise _BadRequest("scope contains an unknown scope")


__all__ = [
    "DEFAULT_APPLICATIONS",
    "LosantSimState",
    "build_app",
    "glob_matches",
    "sample_state",
]
