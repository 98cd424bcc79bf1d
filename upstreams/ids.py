"""Opaque global IDs: ``base64url("Token:<source key>:<local id>")``, likewise for sources."""

from __future__ import annotations

import base64
import binascii
import re

from tokengate.upstreams.errors import InvalidInput

SOURCE_KEY_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,63}")
MAX_ID_LENGTH = 1024


def encode(type_name: str, source: str, local_id: str = "") -> str:
    raw = f"{type_name}:{source}:{local_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def token_id(source: str, local_id: str) -> str:
    return encode("Token", source, local_id)


def source_id(key: str) -> str:
    return encode("Source", key)


def decode(global_id: str) -> tuple[str, str, str]:
    """(type name, source key, local id) of a global ID; ``InvalidInput`` when it is not one."""
    if not global_id or len(global_id) > MAX_ID_LENGTH:
        raise InvalidInput("not a valid ID", argument="id")
    try:
        raw = base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4))
        text = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("not a valid ID", argument="id") from exc
    parts = text.split(":", 2)
    if len(parts) != 3 or parts[0] not in ("Token", "Source"):
        raise InvalidInput("not a valid ID", argument="id")
    type_name, source, local_id = parts
    if not SOURCE_KEY_PATTERN.fullmatch(source) or any(ord(c) < 32 for c in local_id):
        raise InvalidInput("not a valid ID", argument="id")
    if type_name == "Token" and not local_id:
        raise InvalidInput("not a valid ID", argument="id")
    return type_name, source, local_id
