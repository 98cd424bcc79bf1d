"""Amper Music's JSON:API access-token documents -> ``Token`` records, and the seed's quirks.

Pure: no IO. Every shape the seed documents is checked; anything else is a
``SchemaViolation`` that the client turns into ``BadUpstreamResponse``. The secret in a
create response is handed back separately and never becomes part of a ``Token``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from tokengate.upstreams import hints
from tokengate.upstreams.model import (
    Direction,
    OrderField,
    Provider,
    Status,
    Token,
    effective_status,
    utc,
)

MEDIA_TYPE = "application/vnd.api+json"
RESOURCE_TYPE = "access_tokens"
# The seed shows ids like "abcd1234"; this pattern also keeps every id safe in a URL path.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
# A redacted prefix shorter than this could match the gateway's credential by chance.
MIN_PREFIX_FOR_SELF_CHECK = 4

# The seed's six sort values; EXPIRES_AT has none (Amper tokens never expire).
SORT_PARAMS: dict[OrderField, str] = {
    OrderField.CREATED_AT: "date_create",
    OrderField.LAST_USED_AT: "date_access",
    OrderField.NAME: "display_name",
}


class SchemaViolation(ValueError):
    """A document that does not have the shape the seed documents."""


@dataclass(frozen=True, slots=True)
class ListDocument:
    """One list response: its tokens in upstream order and ``links.next``.

    ``next_link`` is None when the server says there is no next page, and ``next_known``
    is False when the document has no usable ``links.next`` at all.
    """

    tokens: list[Token]
    next_link: str | None
    next_known: bool


def sort_param(field: OrderField, direction: Direction) -> str | None:
    """The ``sort`` value for ``field`` in ``direction``; None where Amper cannot sort."""
    name = SORT_PARAMS.get(field)
    if name is None:
        return None
    return name if direction is Direction.ASC else f"-{name}"


def is_valid_id(value: str) -> bool:
    return ID_PATTERN.fullmatch(value) is not None


def parse_timestamp(value: object, where: str) -> datetime:
    """An ISO-8601 date-time with an offset (``2018-10-04T00:00:00.000000+00:00``) in UTC."""
    if not isinstance(value, str):
        raise SchemaViolation(f"{where} is not a date-time string")
    parsed = _timestamp(value)
    if isinstance(parsed, str):
        raise SchemaViolation(f"{where} {parsed}")
    return parsed


@lru_cache(maxsize=4096)
def _timestamp(value: str) -> datetime | str:
    """The UTC instant ``value`` names, or what is wrong with it. Memoised: the same
    tokens' dates come back on every page, and datetimes are immutable."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return "is not an ISO-8601 date-time"
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return "has no UTC offset"
    try:
        return utc(parsed)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00: before year 1 in UTC
        return "is out of range"


def normalise_token(resource: object, *, source: str, now: datetime) -> Token:
    """One ``data`` resource of type ``access_tokens`` as a ``Token``."""
    if not isinstance(resource, dict):
        raise SchemaViolation("a resource is not an object")
    if resource.get("type") != RESOURCE_TYPE:
        raise SchemaViolation(f"a resource's type is not {RESOURCE_TYPE!r}")
    token_id = resource.get("id")
    if not isinstance(token_id, str) or not is_valid_id(token_id):
        raise SchemaViolation("a resource has no valid id")
    attributes = resource.get("attributes")
    if not isinstance(attributes, dict):
        raise SchemaViolation(f"token {token_id}: attributes is not an object")
    name = attributes.get("display_name")
    if not isinstance(name, str):
        raise SchemaViolation(f"token {token_id}: display_name is not a string")
    created = parse_timestamp(attributes.get("date_create"), f"token {token_id}: date_create")
    raw_access = attributes.get("date_access")
    # Null (or absent) when the token was never used.
    accessed = (
        None
        if raw_access is None
        else parse_timestamp(raw_access, f"token {token_id}: date_access")
    )
    snippet = attributes.get("access_token_redacted")
    if snippet is not None and not isinstance(snippet, str):
        raise SchemaViolation(f"token {token_id}: access_token_redacted is not a string")
    return Token(
        source=source,
        provider=Provider.AMPER,
        local_id=token_id,
        external_id=token_id,
        name=name,
        # No status and no expiry at Amper: every listed token is active.
        status=effective_status(Status.ACTIVE, None, now),
        # The credential's account owns its tokens; the seed names no owner, so none is set.
        owner=None,
        created_at=created,
        last_used_at=accessed,
        secret_hint=shown_hint(snippet),
    )


def parse_list(payload: object, *, source: str, now: datetime) -> ListDocument:
    """``GET /v1/access_tokens``: ``{"data": [...], "links": {..., "next": url | null}}``."""
    if not isinstance(payload, dict):
        raise SchemaViolation("the list document is not an object")
    data = payload.get("data")
    if not isinstance(data, list):
        raise SchemaViolation("the list document has no data array")
    tokens = [normalise_token(item, source=source, now=now) for item in data]
    links = payload.get("links")
    next_link: str | None = None
    next_known = False
    if isinstance(links, dict) and "next" in links:
        raw_next = links["next"]
        if raw_next is None or isinstance(raw_next, str):
            next_link, next_known = raw_next, True
    return ListDocument(tokens=tokens, next_link=next_link, next_known=next_known)


def parse_single(payload: object, *, source: str, now: datetime) -> Token:
    """``GET /v1/access_tokens/{id}``: ``{"data": {...}}``."""
    return normalise_token(_data_object(payload), source=source, now=now)


def parse_created(payload: object, *, source: str, now: datetime) -> tuple[Token, str]:
    """The ``201`` of a create: the token and its ``access_token_plaintext``, shown once."""
    resource = _data_object(payload)
    token = normalise_token(resource, source=source, now=now)
    secret = resource["attributes"].get("access_token_plaintext")
    if not isinstance(secret, str) or not secret:
        raise SchemaViolation("the created token has no access_token_plaintext")
    return token, secret


def _data_object(payload: object) -> dict[str, Any]:
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise SchemaViolation("the document has no data object")
    data: dict[str, Any] = payload["data"]
    return data


def create_document(name: str) -> dict[str, Any]:
    return {"data": {"type": RESOURCE_TYPE, "attributes": {"display_name": name}}}


def redacted_prefix(snippet: str | None) -> str | None:
    """The visible beginning of Amper's redacted secret (``abcd1234***`` -> ``abcd1234``)."""
    if snippet is None:
        return None
    prefix = snippet.rstrip("*")
    return prefix or None


def shown_hint(snippet: str | None) -> str | None:
    """What callers see of Amper's snippet: its first 4 characters (``abcd…``), no more."""
    prefix = redacted_prefix(snippet)
    return None if prefix is None else hints.shown(prefix)


def redacted_snippet(payload: object) -> str | None:
    """Amper's whole redacted snippet in a single-token document ``parse_single`` accepted.

    Never shown (the hint shows less); it tells the gateway's own credential apart.
    """
    snippet = _data_object(payload)["attributes"].get("access_token_redacted")
    return snippet if isinstance(snippet, str) else None


def is_own_credential(snippet: str | None, api_token: str) -> bool:
    """Whether a token's redacted snippet (the whole of it, as Amper sent it: not the hint)
    is the beginning of the gateway's own credential."""
    prefix = redacted_prefix(snippet)
    if prefix is None or len(prefix) < MIN_PREFIX_FOR_SELF_CHECK:
        return False
    return api_token.startswith(prefix)


def encode_position(sort: str, offset: int, token_id: str) -> str:
    """The resume hint for one listed token: where it sat in the list sorted by ``sort``."""
    return f"{sort}:{offset}:{token_id}"


def decode_position(position: str | None) -> tuple[str, int, str] | None:
    """(sort, offset, id) of a hint from ``encode_position``; None for anything else."""
    if position is None:
        return None
    parts = position.split(":", 2)
    if len(parts) != 3:
        return None
    sort, offset, token_id = parts
    if sort not in _ALL_SORTS or not offset.isascii() or not offset.isdigit():
        return None
    if len(offset) > 6 or not is_valid_id(token_id):
        return None
    return sort, int(offset), token_id


_ALL_SORTS = frozenset(
    p for f in SORT_PARAMS for d in Direction if (p := sort_param(f, d)) is not None
)
