"""OAuth-style token server JSON -> Token records, and the ids that find a token again."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

from tokengate.upstreams.errors import InvalidInput
from tokengate.upstreams.http_edge import path_segment
from tokengate.upstreams.model import Owner, OwnerKind, Provider, Status, Token, effective_status

MAX_USER_ID_LENGTH = 256
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The seed documents token ids as UUIDs; the case is kept as sent, since DELETE needs it.
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


class SchemaViolation(ValueError):
    """The upstream's body is not what the seed documents; the message names fields only."""


def check_user_id(user_id: str) -> str:
    """``user_id`` if it can go into the list/revoke path, else ``InvalidInput``."""
    problem = _user_id_problem(user_id)
    if problem is not None:
        raise InvalidInput(f"invalid user id: {problem}", argument="userId")
    return user_id


def _user_id_problem(user_id: str) -> str | None:
    if not user_id:
        return "it is empty"
    if len(user_id) > MAX_USER_ID_LENGTH:
        return f"it is longer than {MAX_USER_ID_LENGTH} characters"
    if any(unicodedata.category(ch) in {"Cc", "Cs"} for ch in user_id):
        return "it contains control characters or lone surrogates"
    # Percent-encoding leaves dots alone and HTTP clients resolve dot segments: "." or ".."
    # would address another path.
    if user_id in {".", ".."}:
        return "it is a dot segment"
    return None


def user_path_segment(user_id: str) -> str:
    return path_segment(check_user_id(user_id), argument="userId")


def is_token_id(token_id: str) -> bool:
    return _UUID.fullmatch(token_id) is not None


def local_id_for(user_id: str, token_id: str) -> str:
    """The gateway's id for a token: the percent-encoded user id, ``/``, the token UUID.

    The server has no single-token endpoint, so the id must carry the user to list again.
    """
    return quote(user_id, safe="") + "/" + token_id


def parse_local_id(local_id: str) -> tuple[str, str] | None:
    """(user id, token id) from ``local_id``, or None unless it is exactly what
    ``local_id_for`` makes for a valid user and UUID (one spelling per token)."""
    encoded_user, slash, token_id = local_id.partition("/")
    if not slash or not is_token_id(token_id):
        return None
    try:
        user_id = unquote(encoded_user, errors="strict")
    except UnicodeDecodeError:
        return None
    if _user_id_problem(user_id) is not None or quote(user_id, safe="") != encoded_user:
        return None
    return user_id, token_id


def is_no_tokens_body(payload: object) -> bool:
    """Whether a 404 body is the documented ``{"error": "No tokens found"}`` shape.

    The seed answers 404 for an unknown user and for a user without valid tokens alike; the
    message text is not matched, only the shape, so a reworded message still counts.
    """
    return isinstance(payload, Mapping) and isinstance(payload.get("error"), str)


def parse_token_list(payload: object, *, source: str, user_id: str, now: datetime) -> list[Token]:
    """The tokens of a ``200 {"tokens": [...]}`` list response for ``user_id``."""
    if not isinstance(payload, Mapping):
        raise SchemaViolation("the list response is not a JSON object")
    raw_tokens = payload.get("tokens")
    if not isinstance(raw_tokens, list):
        raise SchemaViolation("the list response has no 'tokens' array")
    tokens: list[Token] = []
    seen: set[str] = set()
    # Every token of the list shares its user: quote the id and build the owner once.
    id_prefix = quote(user_id, safe="") + "/"
    owner = Owner(OwnerKind.USER, user_id)
    for index, raw in enumerate(raw_tokens):
        token = _normalise(raw, source, id_prefix, owner, now, index)
        if token.external_id in seen:
            raise SchemaViolation(f"token {index}: duplicate 'id'")
        seen.add(token.external_id)
        tokens.append(token)
    return tokens


def normalise_token(
    raw: object, *, source: str, user_id: str, now: datetime, index: int = 0
) -> Token:
    """One listed token; extra fields are ignored, ``refresh_token_issued`` included."""
    return _normalise(
        raw, source, quote(user_id, safe="") + "/", Owner(OwnerKind.USER, user_id), now, index
    )


def _normalise(
    raw: object, source: str, id_prefix: str, owner: Owner, now: datetime, index: int
) -> Token:
    """``normalise_token`` with the user's share precomputed (``local_id_for``'s prefix),
    field by field so that a refusal names the field."""
    if not isinstance(raw, Mapping):
        raise SchemaViolation(f"token {index}: not a JSON object")
    token_id = _required_str(raw, "id", index)
    if not is_token_id(token_id):
        raise SchemaViolation(f"token {index}: 'id' is not a UUID")
    client_name = _required_str(raw, "client_name", index)
    device_name = raw.get("device_name")
    if device_name is not None and not isinstance(device_name, str):
        raise SchemaViolation(f"token {index}: 'device_name' is not a string")
    scopes = raw.get("scopes")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise SchemaViolation(f"token {index}: 'scopes' is not an array of strings")
    # Newer servers only; older ones never list an expired token at all.
    expired = raw.get("expired", False)
    if expired is None:
        expired = False
    if not isinstance(expired, bool):
        raise SchemaViolation(f"token {index}: 'expired' is not a boolean")
    return Token(
        source=source,
        provider=Provider.OAUTH,
        local_id=id_prefix + token_id,
        external_id=token_id,
        name=client_name,
        status=effective_status(Status.ACTIVE, None, now, expired_flag=expired),
        scopes=tuple(scopes),
        client_name=client_name,
        device_name=device_name,
        auth_method=_required_str(raw, "type", index),
        owner=owner,
        created_at=_epoch_millis(raw.get("created_at"), index),
    )


def _required_str(raw: Mapping[str, object], field: str, index: int) -> str:
    value = raw.get(field)
    if not isinstance(value, str):
        raise SchemaViolation(f"token {index}: '{field}' is missing or not a string")
    return value


def _epoch_millis(value: object, index: int) -> datetime:
    # The seed's created_at is epoch MILLISECONDS (1381322054000 is October 2013).
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SchemaViolation(f"token {index}: 'created_at' is not epoch milliseconds")
    if isinstance(value, float) and not math.isfinite(value):
        raise SchemaViolation(f"token {index}: 'created_at' is not a finite number")
    try:
        return _EPOCH + timedelta(milliseconds=value)
    except OverflowError:
        raise SchemaViolation(f"token {index}: 'created_at' is out of range") from None
