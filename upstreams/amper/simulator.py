"""A loopback stand-in for Amper Music's access-token API (seed 000).

What it enforces, as documented: Basic auth with an API token as the user name and an
empty password, or Bearer (401 otherwise; any of the account's tokens is a credential);
``offset`` 0..1000, ``length`` (or its later name ``limit``) 1..100 with 10 by default,
``cursor`` 1..100 (accepted, never explained, ignored), ``sort`` from the six documented
values joined by commas (400 otherwise); JSON:API documents in ``application/vnd.api+json``
with a weak ``ETag`` on every data response; ``DELETE`` needs ``If-Match`` with the token's
current ETag (428 without, 412 when stale); ``access_token_plaintext`` only in the ``201``
of a create. Its ``links.next`` drops the page size, as in the seed.

Deliberately unlike the gateway's order: ties come in reverse insertion order, names sort
case-sensitively (by code point), and never-used tokens come first in ascending and last
in descending ``date_access`` order (``null_placement`` can move them).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tokengate.upstreams.simulation import SimulatorControl, SimulatorMiddleware

MEDIA_TYPE = "application/vnd.api+json"
API_PATH = "/v1/access_tokens"
MAX_OFFSET = 1000
MAX_LENGTH = 100
DEFAULT_LENGTH = 10
MAX_CURSOR = 100
MAX_NAME_LENGTH = 255
SORT_FIELDS = ("date_access", "date_create", "display_name")

NullPlacement = Literal["first_in_asc", "last_in_asc", "last"]
_ID_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
_OFFSETS = (
    UTC,
    timezone(timedelta(hours=2)),
    timezone(timedelta(hours=-5)),
    timezone(timedelta(hours=5, minutes=30)),
    timezone(timedelta(hours=9)),
)
# Realistic names with ties under case-folding ("CI pipeline"/"ci pipeline",
# "Straße app"/"STRASSE APP") that a case-sensitive sort keeps apart.
NAMES = (
    "Studio render farm",
    "Mobile app (iOS)",
    "Mobile app (Android)",
    "CI pipeline",
    "ci pipeline",
    "Podcast intro generator",
    "Game soundtrack service",
    "Video editor plugin",
    "video editor plugin",
    "Staging",
    "staging",
    "Ad jingle batch job",
    "Marketing site",
    "Partner integration",
    "Backup worker",
    "Éclair app",
    "Straße app",
    "STRASSE APP",
    "zapier bridge",
)
GATEWAY_NAME = "tokengate gateway"


@dataclass
class SimToken:
    """One access token as the server stores it; dates keep the offset they are shown in."""

    id: str
    secret: str
    display_name: str
    date_create: datetime
    date_access: datetime | None = None
    version: int = 1

    @property
    def redacted(self) -> str:
        return f"{self.secret[:8]}***"

    @property
    def etag(self) -> str:
        digest = hashlib.sha1(f"{self.id}:{self.version}".encode(), usedforsecurity=False)
        return f'W/"{digest.hexdigest()}"'

    def changed(self) -> None:
        self.version += 1

    def to_json(self, base: str, *, plaintext: bool = False) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "access_token_redacted": self.redacted,
            "display_name": self.display_name,
            "date_create": _render(self.date_create),
            "date_access": None if self.date_access is None else _render(self.date_access),
        }
        if plaintext:
            attributes["access_token_plaintext"] = self.secret
        return {
            "type": "access_tokens",
            "id": self.id,
            "attributes": attributes,
            "links": {"self": f"{base}{API_PATH}/{self.id}"},
        }


@dataclass
class AmperSimState:
    """The account's tokens in insertion order, the credential the gateway uses, and knobs."""

    tokens: list[SimToken]
    api_token: str
    control: SimulatorControl = field(default_factory=SimulatorControl)
    null_placement: NullPlacement = "first_in_asc"
    # Links point here instead of at the request's own origin (a proxy, a misconfiguration).
    link_base: str | None = None
    # A broken server: dates sorted by their text, so mixed offsets come out of order.
    sort_dates_as_text: bool = False
    # A server whose real page cap is below the documented 100: it sends at most this many
    # rows, whatever was asked for (its links still say where the next page starts).
    page_cap: int | None = None
    # Each use of a credential sets its date_access, as the real API does.
    touch_on_use: bool = False
    # id -> how many more times the token changes (a concurrent edit) right after a GET.
    concurrent_edits: dict[str, int] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(0))  # noqa: S311

    def find(self, token_id: str) -> SimToken | None:
        return next((t for t in self.tokens if t.id == token_id), None)

    def new_id(self) -> str:
        taken = {t.id for t in self.tokens}
        while True:
            candidate = "".join(self.rng.choice(_ID_ALPHABET) for _ in range(8))
            if candidate not in taken:
                return candidate

    def add(
        self,
        name: str,
        *,
        date_create: datetime | None = None,
        date_access: datetime | None = None,
        secret: str | None = None,
    ) -> SimToken:
        token_id = self.new_id()
        token = SimToken(
            id=token_id,
            secret=secret or token_id + _random_text(self.rng, 32),
            display_name=name,
            date_create=date_create or datetime.now(UTC),
            date_access=date_access,
        )
        self.tokens.append(token)
        return token

    def credential_token(self) -> SimToken | None:
        return next((t for t in self.tokens if t.secret == self.api_token), None)

    def ordered(self, sort: list[tuple[str, bool]]) -> list[SimToken]:
        """The tokens in ``sort`` order (field, descending); ties in reverse insertion order."""
        rows = list(reversed(self.tokens))
        for name, descending in reversed(sort):
            if name == "date_access":
                rows = self._by_access(rows, descending)
            elif name == "date_create":
                rows.sort(key=lambda t: self._date_key(t.date_create), reverse=descending)
            else:
                rows.sort(key=lambda t: t.display_name, reverse=descending)
        return rows

    def _date_key(self, value: datetime) -> Any:
        return _render(value) if self.sort_dates_as_text else value

    def _by_access(self, rows: list[SimToken], descending: bool) -> list[SimToken]:
        used = [t for t in rows if t.date_access is not None]
        never = [t for t in rows if t.date_access is None]
        used.sort(key=lambda t: self._date_key(t.date_access or t.date_create), reverse=descending)
        nulls_first = {
            "first_in_asc": not descending,
            "last_in_asc": descending,
            "last": False,
        }[self.null_placement]
        return never + used if nulls_first else used + never


def _render(value: datetime) -> str:
    # The seed's style: microseconds and a numeric offset, 2018-10-04T00:00:00.000000+00:00.
    return value.isoformat(timespec="microseconds")


def _random_text(rng: random.Random, size: int) -> str:
    return "".join(rng.choice(_SECRET_ALPHABET) for _ in range(size))


def sample_state(count: int = 30, seed: int = 1, *, api_token: str | None = None) -> AmperSimState:
    """``count`` tokens: the gateway's own credential, the seed's two examples, then
    generated ones with ties on every sort field, never-used tokens and mixed offsets."""
    if count < 1:
        raise ValueError("count must be at least 1: the gateway's credential is a token")
    rng = random.Random(seed)  # noqa: S311 - sample data, not secrets
    state = AmperSimState(tokens=[], api_token="", rng=rng)
    gateway = state.add(
        GATEWAY_NAME,
        date_create=datetime(2019, 1, 15, 9, 30, tzinfo=_OFFSETS[1]),
        date_access=datetime(2021, 6, 1, 12, 0, 0, 250000, tzinfo=UTC),
        secret=api_token,
    )
    state.api_token = gateway.secret
    seed_day = datetime(2018, 10, 4, tzinfo=UTC)
    for token_id, name in (
        ("abcd1234", "Token for my very first app"),
        ("efgh5678", "Token for my very second app"),
    ):
        if len(state.tokens) < count:
            state.tokens.append(
                SimToken(
                    id=token_id,
                    secret=token_id + _random_text(rng, 32),
                    display_name=name,
                    date_create=seed_day,
                )
            )
    while len(state.tokens) < count:
        created, accessed = _sample_dates(rng, state.tokens, seed_day)
        state.add(rng.choice(NAMES), date_create=created, date_access=accessed)
    if count >= 6:
        # Whatever the seed: a case-folded name tie and a last-use tie shown in two offsets.
        first, second, third = state.tokens[3:6]
        first.display_name, second.display_name = "CI pipeline", "ci pipeline"
        used = max(first.date_create, second.date_create) + timedelta(days=3)
        first.date_access = used.astimezone(_OFFSETS[2])
        second.date_access = used.astimezone(_OFFSETS[3])
        third.date_access = None
    return state


def _sample_dates(
    rng: random.Random, earlier: list[SimToken], start: datetime
) -> tuple[datetime, datetime | None]:
    tz = rng.choice(_OFFSETS)
    if rng.random() < 0.2:
        # The same instant as another token, often shown with another offset.
        created = rng.choice(earlier).date_create.astimezone(tz)
    else:
        created = start + timedelta(
            hours=rng.randrange(24 * 700),
            microseconds=rng.randrange(1_000_000) if rng.random() < 0.5 else 0,
        )
        created = created.astimezone(tz)
    accessed: datetime | None = None
    if rng.random() >= 0.3:
        used = [t.date_access for t in earlier if t.date_access and t.date_access > created]
        if used and rng.random() < 0.25:
            accessed = rng.choice(used)
        else:
            accessed = created + timedelta(minutes=rng.randrange(1, 60 * 24 * 200))
        accessed = accessed.astimezone(rng.choice(_OFFSETS))
    return created, accessed


# -- the app ---------------------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


def _document(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body), status_code=status, media_type=MEDIA_TYPE, headers=headers or {}
    )


def _error(refused: _Refused) -> Response:
    body = {
        "errors": [
            {"status": str(refused.status), "title": refused.title, "detail": refused.detail}
        ]
    }
    headers = {"WWW-Authenticate": 'Basic realm="Amper"'} if refused.status == 401 else {}
    return _document(refused.status, body, headers)


def _bad_request(detail: str) -> _Refused:
    return _Refused(400, "Bad Request", detail)


def build_app(state: AmperSimState) -> ASGIApp:
    def base_of(request: Request) -> str:
        return state.link_base or str(request.base_url).rstrip("/")

    def authenticate(request: Request) -> None:
        presented = _credential(request.headers.get("authorization", ""))
        token = next((t for t in state.tokens if t.secret == presented), None)
        if presented is None or token is None:
            raise _Refused(401, "Unauthorized", "a valid API token is required")
        if state.touch_on_use:
            token.date_access = datetime.now(UTC)
            token.changed()

    def with_etag(status: int, body: dict[str, Any], etag: str | None = None) -> Response:
        text = json.dumps(body)
        tag = etag or f'W/"{hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()}"'
        return Response(text, status_code=status, media_type=MEDIA_TYPE, headers={"ETag": tag})

    async def tokens(request: Request) -> Response:
        try:
            authenticate(request)
            if request.method == "POST":
                return await create(request)
            return listing(request)
        except _Refused as refused:
            return _error(refused)

    def listing(request: Request) -> Response:
        query = request.query_params
        offset = _int_param(query.get("offset"), "offset", 0, MAX_OFFSET, 0)
        if "length" in query and "limit" in query:
            raise _bad_request("pass length or limit, not both")
        raw_length = query.get("length", query.get("limit"))
        length = _int_param(raw_length, "length", 1, MAX_LENGTH, DEFAULT_LENGTH)
        _int_param(query.get("cursor"), "cursor", 1, MAX_CURSOR, None)
        raw_sort = query.get("sort")
        sort = _sort_terms(raw_sort)
        rows = state.ordered(sort)
        if state.page_cap is not None:
            length = min(length, state.page_cap)
        page = rows[offset : offset + length]
        base = base_of(request)
        here = f"{base}{API_PATH}"
        sort_suffix = f"&sort={raw_sort}" if raw_sort else ""
        self_link = here if not request.url.query else f"{here}?{request.url.query}"
        body = {
            "data": [t.to_json(base) for t in page],
            "links": {
                "self": self_link,
                "first": f"{here}?sort={raw_sort}" if raw_sort else here,
                "prev": None
                if offset == 0
                else f"{here}?offset={max(0, offset - length)}{sort_suffix}",
                # As in the seed, the next link keeps the offset and drops the page size.
                "next": None
                if offset + length >= len(rows)
                else f"{here}?offset={offset + length}{sort_suffix}",
            },
        }
        return with_etag(200, body)

    async def create(request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != MEDIA_TYPE:
            raise _Refused(415, "Unsupported Media Type", f"send {MEDIA_TYPE}")
        try:
            payload = json.loads(await request.body())
        except ValueError:
            raise _bad_request("the body is not JSON") from None
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict) or data.get("type") != "access_tokens":
            raise _Refused(409, "Conflict", "data.type must be access_tokens")
        attributes = data.get("attributes")
        if not isinstance(attributes, dict) or set(attributes) != {"display_name"} or "id" in data:
            raise _bad_request("only attributes.display_name can be set")
        name = attributes["display_name"]
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
            raise _Refused(422, "Unprocessable Entity", "display_name must be 1..255 characters")
        token = state.add(name)
        base = base_of(request)
        body = {"data": token.to_json(base, plaintext=True), "links": {"self": f"{base}{API_PATH}"}}
        response = with_etag(201, body, token.etag)
        response.headers["Location"] = f"{base}{API_PATH}/{token.id}"
        return response

    async def one_token(request: Request) -> Response:
        try:
            authenticate(request)
            token = state.find(request.path_params["token_id"])
            if token is None:
                raise _Refused(404, "Not Found", "no such access token")
            if request.method == "DELETE":
                return delete(request, token)
            response = with_etag(
                200,
                {"data": token.to_json(base_of(request)), "links": {"self": str(request.url)}},
                token.etag,
            )
            edits = state.concurrent_edits.get(token.id, 0)
            if edits > 0:
                state.concurrent_edits[token.id] = edits - 1
                token.changed()
            return response
        except _Refused as refused:
            return _error(refused)

    def delete(request: Request, token: SimToken) -> Response:
        if_match = request.headers.get("if-match")
        if if_match is None:
            raise _Refused(428, "Precondition Required", "send If-Match with the token's ETag")
        if if_match != token.etag:
            raise _Refused(412, "Precondition Failed", "the token changed: read it again")
        state.tokens.remove(token)
        return Response(status_code=204)

    app = Starlette(
        routes=[
            Route(API_PATH, tokens, methods=["GET", "POST"]),
            Route(API_PATH + "/{token_id}", one_token, methods=["GET", "DELETE"]),
        ]
    )
    return SimulatorMiddleware(app, state.control)


def _credential(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    # The token is the user name; the password is empty, yet the colon is required.
    user, colon, password = decoded.partition(":")
    if not colon or password or not user:
        return None
    return user


def _int_param(raw: str | None, name: str, low: int, high: int, default: int | None) -> int:
    if raw is None:
        if default is None:
            return low
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise _bad_request(f"{name} must be a number between {low} and {high}")
    return int(raw)


def _sort_terms(raw: str | None) -> list[tuple[str, bool]]:
    if raw is None or raw == "":
        return []
    terms: list[tuple[str, bool]] = []
    for part in raw.split(","):
        descending = part.startswith("-")
        name = part[1:] if descending else part
        if name not in SORT_FIELDS:
            raise _bad_request(f"unknown sort value {part!r}")
        if any(existing == name for existing, _ in terms):
            # "Combinations that do not make logical sense are not allowed."
            raise _bad_request(f"{name} appears twice in sort")
        terms.append((name, descending))
    return terms
