"""Losant application API token JSON <-> Token records, request bodies and local ids.

Pure: no IO. Shapes follow the seed's schemas (``apiToken.json``, ``apiTokens.json``,
``apiTokenPost.json``, ``apiTokenPatch.json``, ``error.json``, ``success.json``); a body that
breaks them raises ``SchemaViolation``, whose message names fields, never their values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import overload

from tokengate.upstreams.errors import InvalidInput
from tokengate.upstreams.model import (
    CreateSpec,
    Owner,
    OwnerKind,
    Provider,
    Status,
    Token,
    UpdateSpec,
    effective_status,
    utc,
)

MAX_NAME = 255
MAX_DESCRIPTION = 32767
MAX_SCOPE = 1024
MAX_CREATOR_NAME = 1024
# The schemas' id pattern, ^[A-Fa-f\d]{24}$ (Mongo ObjectIds).
_OBJECT_ID = re.compile(r"[0-9A-Fa-f]{24}")
# RFC 3339 date-time ("format": "date-time"); fromisoformat alone would also take a bare
# date or the basic format, which the schema does not allow.
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")
_ERROR_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,39}")
_STATUSES = {"active": Status.ACTIVE, "inactive": Status.INACTIVE}
_OWNER_KINDS = {"application": OwnerKind.APPLICATION, "user": OwnerKind.USER}
_STATUS_NAMES = frozenset(_STATUSES)
_OWNER_KIND_NAMES = frozenset(_OWNER_KINDS)
_CREATOR_TYPES = frozenset({"apiToken", "user", "flow"})
_SORT_DIRECTIONS = frozenset({"asc", "desc", "ASC", "DESC", ""})


class SchemaViolation(ValueError):
    """The upstream's body is not what the seed documents; the message names fields only."""


def is_object_id(value: str) -> bool:
    return _OBJECT_ID.fullmatch(value) is not None


def local_id_for(application_id: str, token_id: str) -> str:
    """``{application id}/{token id}``, both lower-cased: ObjectIds are hex numbers, and one
    spelling per token keeps the gateway's string order equal to Losant's id order."""
    return f"{application_id.lower()}/{token_id.lower()}"


def parse_local_id(local_id: str) -> tuple[str, str] | None:
    """(application id, token id), lower-cased, or None unless ``local_id`` is two ObjectIds
    joined by one ``/`` (so nothing else can reach a URL path)."""
    application_id, slash, token_id = local_id.partition("/")
    if not slash or not is_object_id(application_id) or not is_object_id(token_id):
        return None
    return application_id.lower(), token_id.lower()


def parse_date(value: object, field: str) -> datetime:
    """An RFC 3339 date-time (Losant sends ``2016-06-13T04:00:00.000Z``) as aware UTC."""
    if not isinstance(value, str):
        raise SchemaViolation(f"'{field}' is not an ISO-8601 date-time")
    parsed = _date_time(value)
    if isinstance(parsed, str):
        raise SchemaViolation(f"'{field}' {parsed}")
    return parsed


@lru_cache(maxsize=4096)
def _date_time(value: str) -> datetime | str:
    """The UTC instant ``value`` names, or what is wrong with it. Memoised: the same
    tokens' dates come back on every page, and datetimes are immutable."""
    if _DATE_TIME.fullmatch(value) is None:
        return "is not an ISO-8601 date-time"
    try:
        parsed = datetime.fromisoformat(value.upper())
    except ValueError:
        return "is not a valid date-time"
    try:
        return utc(parsed)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00: before year 1 in UTC
        return "is out of range"


def format_date(value: datetime) -> str:
    """Losant's own spelling: UTC, milliseconds, ``Z`` (``2017-06-13T04:00:00.000Z``)."""
    value = utc(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def normalise_token(
    raw: object, *, source: str, application_id: str, now: datetime, where: str = "token"
) -> Token:
    """One API token (``apiToken.json``), field by field so that a refusal names the field.
    Its ``token`` field, the secret, is checked and dropped: a listed token never carries it
    on. A missing owner is the application."""
    if not isinstance(raw, Mapping):
        raise SchemaViolation(f"{where}: not a JSON object")
    token_id = _token_id(raw, where)
    name = _required_string(raw, "name", where, max_length=MAX_NAME)
    description = _string(raw, "description", where, max_length=MAX_DESCRIPTION)
    _string(raw, "creatorName", where, max_length=MAX_CREATOR_NAME)
    _string(raw, "token", where, min_length=1)
    _object_id(raw, "creatorId", where)
    _enum(raw, "creatorType", _CREATOR_TYPES, where)
    owner_id = _object_id(raw, "ownerId", where)
    owner_type = _enum(raw, "ownerType", _OWNER_KIND_NAMES, where)
    if owner_type == "user" and owner_id is None:
        raise SchemaViolation(f"{where}: 'ownerType' is user but 'ownerId' is missing")
    owner = Owner(_OWNER_KINDS[owner_type or "application"], (owner_id or application_id).lower())
    # Losant's tokens are active unless switched off; the schema does not require status.
    stored = _STATUSES[_enum(raw, "status", _STATUS_NAMES, where) or "active"]
    expires_at = _date(raw, "expirationDate", where)
    return Token(
        source=source,
        provider=Provider.LOSANT,
        local_id=local_id_for(application_id, token_id),
        external_id=token_id.lower(),
        name=name,
        status=effective_status(stored, expires_at, now),
        scopes=_scopes(raw, where),
        description=description,
        owner=owner,
        created_at=_date(raw, "creationDate", where),
        # lastUpdated is when the token was edited, not used: Losant records no last use.
        updated_at=_date(raw, "lastUpdated", where),
        expires_at=expires_at,
    )


class LazyTokens(Sequence[Token]):
    """A page's items, each normalised and checked when first read.

    A walk that settles its page after the first 20 of 100 items pays for those 20; an
    item never read is never judged. Reading a malformed or duplicated item raises
    ``SchemaViolation`` then, naming its index as the eager parse does.
    """

    __slots__ = ("_at", "_done", "_normalise", "_raw")

    def __init__(self, raw: list[object], normalise: Callable[[object, int], Token]) -> None:
        self._raw = raw
        self._normalise = normalise
        self._done: dict[int, Token] = {}
        self._at: dict[str, int] = {}  # local id -> index, for duplicates among those read

    def __len__(self) -> int:
        return len(self._raw)

    @overload
    def __getitem__(self, index: int) -> Token: ...

    @overload
    def __getitem__(self, index: slice) -> list[Token]: ...

    def __getitem__(self, index: int | slice) -> Token | list[Token]:
        if isinstance(index, slice):
            return [self._token(i) for i in range(*index.indices(len(self._raw)))]
        if index < 0:
            index += len(self._raw)
        if not 0 <= index < len(self._raw):
            raise IndexError(index)
        return self._token(index)

    def __iter__(self) -> Iterator[Token]:
        for index in range(len(self._raw)):
            yield self._token(index)

    def _token(self, index: int) -> Token:
        token = self._done.get(index)
        if token is None:
            token = self._normalise(self._raw[index], index)
            if self._at.setdefault(token.local_id, index) != index:
                raise SchemaViolation(f"item {index}: duplicate 'id'")
            self._done[index] = token
        return token


@dataclass(frozen=True, slots=True)
class TokenPage:
    """One ``GET .../tokens`` response (``apiTokens.json``), its tokens normalised."""

    tokens: Sequence[Token]
    total_count: int | None
    per_page: int | None
    page: int | None
    sort_field: str | None = None
    sort_direction: str | None = None


def parse_token_page(
    payload: object, *, source: str, application_id: str, now: datetime, lazy: bool = False
) -> TokenPage:
    """The page, its envelope checked at once; ``lazy``: its items as ``LazyTokens``."""
    if not isinstance(payload, Mapping):
        raise SchemaViolation("the list response is not a JSON object")
    items = payload.get("items")
    if not isinstance(items, list):
        raise SchemaViolation("the list response has no 'items' array")
    numbers = {f: _integer(payload, f) for f in ("count", "totalCount", "perPage", "page")}
    for f in ("filter", "filterField"):
        _string(payload, f, "the list response")
    sort_field = _string(payload, "sortField", "the list response")
    sort_direction = _enum(payload, "sortDirection", _SORT_DIRECTIONS, "the list response")
    _object_id(payload, "ownerId", "the list response")
    _enum(payload, "ownerType", _OWNER_KIND_NAMES, "the list response")

    def normalise(raw: object, index: int) -> Token:
        return normalise_token(
            raw, source=source, application_id=application_id, now=now, where=f"item {index}"
        )

    lazy_tokens = LazyTokens(items, normalise)
    tokens: Sequence[Token] = lazy_tokens if lazy else list(lazy_tokens)
    count = numbers["count"]
    if count is not None and count != len(tokens):
        raise SchemaViolation("'count' does not match the number of items")
    return TokenPage(
        tokens,
        numbers["totalCount"],
        numbers["perPage"],
        numbers["page"],
        sort_field or None,
        sort_direction.lower() if sort_direction else None,
    )


def parse_created(
    payload: object, *, source: str, application_id: str, now: datetime
) -> tuple[Token, str]:
    """The ``201`` body of a create: the token and its secret (``token``, shown once)."""
    token = normalise_token(
        payload, source=source, application_id=application_id, now=now, where="created token"
    )
    secret = payload.get("token") if isinstance(payload, Mapping) else None
    if not isinstance(secret, str):
        raise SchemaViolation("created token: 'token' (the secret) is missing")
    return token, secret


def error_type(payload: object) -> str | None:
    """The ``type`` of an ``error.json`` body when it is a short plain word, else None.

    Only the type is ever passed on: ``message`` is free text that could quote input."""
    if not isinstance(payload, Mapping):
        return None
    kind = payload.get("type")
    if isinstance(kind, str) and _ERROR_TYPE.fullmatch(kind):
        return kind
    return None


def is_success(payload: object) -> bool:
    """Whether a body is ``success.json``'s ``{"success": true}``."""
    return isinstance(payload, Mapping) and payload.get("success") is True


def post_body(spec: CreateSpec) -> dict[str, object]:
    """The ``apiTokenPost.json`` body for ``spec`` (name, description, expirationDate,
    scope; no other keys: the schema forbids them)."""
    if spec.subject is not None:
        raise InvalidInput("subject applies to internal tokens only", argument="subject")
    if spec.allowed_sources is not None:
        raise InvalidInput(
            "allowedSources applies to internal tokens only", argument="allowedSources"
        )
    body: dict[str, object] = {"name": _checked_name(spec.name)}
    if spec.description is not None:
        body["description"] = _checked_description(spec.description)
    if spec.expires_at is not None:
        try:
            body["expirationDate"] = format_date(spec.expires_at)
        except ValueError:
            raise InvalidInput(
                "expiresAt must carry a time zone offset", argument="expiresAt"
            ) from None
    if spec.scopes is not None:
        scopes: list[str] = []
        for scope in spec.scopes:
            if not 1 <= len(scope) <= MAX_SCOPE:
                raise InvalidInput(
                    f"each scope must be 1 to {MAX_SCOPE} characters", argument="scopes"
                )
            # The schema wants unique items; a repeated scope adds nothing.
            if scope not in scopes:
                scopes.append(scope)
        body["scope"] = scopes
    return body


def patch_body(spec: UpdateSpec) -> dict[str, object]:
    """The ``apiTokenPatch.json`` body: name, description, status (active or inactive)."""
    if spec.is_empty():
        raise InvalidInput("nothing to change: give a name, description or status")
    body: dict[str, object] = {}
    if spec.name is not None:
        body["name"] = _checked_name(spec.name)
    if spec.description is not None:
        body["description"] = _checked_description(spec.description)
    if spec.status is not None:
        if spec.status is Status.ACTIVE:
            body["status"] = "active"
        elif spec.status is Status.INACTIVE:
            body["status"] = "inactive"
        else:
            raise InvalidInput(
                "a Losant token can only be set ACTIVE or INACTIVE (revoke deletes it)",
                argument="status",
            )
    return body


def _checked_name(name: str) -> str:
    if not 1 <= len(name) <= MAX_NAME:
        raise InvalidInput(f"name must be 1 to {MAX_NAME} characters", argument="name")
    return name


def _checked_description(description: str) -> str:
    if len(description) > MAX_DESCRIPTION:
        raise InvalidInput(
            f"description must be at most {MAX_DESCRIPTION} characters", argument="description"
        )
    return description


def _token_id(raw: Mapping[str, object], where: str) -> str:
    token_id = _object_id(raw, "id", where)
    alias = _object_id(raw, "apiTokenId", where)
    if token_id is None and alias is None:
        raise SchemaViolation(f"{where}: neither 'id' nor 'apiTokenId' is present")
    if token_id is not None and alias is not None and token_id.lower() != alias.lower():
        raise SchemaViolation(f"{where}: 'id' and 'apiTokenId' disagree")
    return token_id or alias or ""


def _required_string(raw: Mapping[str, object], field: str, where: str, *, max_length: int) -> str:
    value = _string(raw, field, where, min_length=1, max_length=max_length)
    if value is None:
        raise SchemaViolation(f"{where}: '{field}' is missing")
    return value


def _string(
    raw: Mapping[str, object],
    field: str,
    where: str,
    *,
    min_length: int = 0,
    max_length: int | None = None,
) -> str | None:
    if field not in raw:
        return None
    value = raw[field]
    if not isinstance(value, str):
        raise SchemaViolation(f"{where}: '{field}' is not a string")
    if len(value) < min_length or (max_length is not None and len(value) > max_length):
        raise SchemaViolation(f"{where}: '{field}' has a length the schema does not allow")
    return value


def _object_id(raw: Mapping[str, object], field: str, where: str) -> str | None:
    value = _string(raw, field, where)
    if value is not None and not is_object_id(value):
        raise SchemaViolation(f"{where}: '{field}' is not a 24-hex id")
    return value


def _enum(raw: Mapping[str, object], field: str, allowed: frozenset[str], where: str) -> str | None:
    value = _string(raw, field, where)
    if value is not None and value not in allowed:
        raise SchemaViolation(f"{where}: '{field}' is not one of the documented values")
    return value


def _date(raw: Mapping[str, object], field: str, where: str) -> datetime | None:
    if field not in raw:
        return None
    try:
        return parse_date(raw[field], field)
    except SchemaViolation as exc:
        raise SchemaViolation(f"{where}: {exc}") from None


def _scopes(raw: Mapping[str, object], where: str) -> tuple[str, ...]:
    if "scope" not in raw:
        return ()
    value = raw["scope"]
    if not isinstance(value, list) or not all(
        isinstance(s, str) and 1 <= len(s) <= MAX_SCOPE for s in value
    ):
        raise SchemaViolation(f"{where}: 'scope' is not an array of scope names")
    return tuple(value)


def _integer(raw: Mapping[str, object], field: str) -> int | None:
    if field not in raw:
        return None
    value = raw[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SchemaViolation(f"the list response: '{field}' is not a count")
    return value


__all__ = [
    "LazyTokens",
    "SchemaViolation",
    "TokenPage",
    "error_type",
    "format_date",
    "is_object_id",
    "is_success",
    "local_id_for",
    "normalise_token",
    "parse_created",
    "parse_date",
    "parse_local_id",
    "parse_token_page",
    "patch_body",
    "post_body",
]
