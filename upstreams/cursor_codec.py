"""Signed cursors: the gateway accepts back only the cursors it issued.

A cursor carries resume hints that the gateway turns into upstream requests (offsets,
page numbers), so a cursor made up by a caller must never reach an adapter. Every cursor is
``base64url(payload || HMAC-SHA256(cursor key, kind || 0 || payload))``: opaque, URL-safe,
bounded in length, checked in constant time. The cursor key is derived from the server key
with HKDF-SHA256 under its own label, so the key that hashes token secrets is never used
for anything else, and a cursor of one kind (a token list) is refused as another (the
audit log). Changing the server key invalidates every cursor, which only restarts walks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets

from tokengate.upstreams.errors import InvalidCursor

MAX_CURSOR_LENGTH = 4096
TAG_BYTES = hashlib.sha256().digest_size
MIN_KEY_BYTES = 32
_HKDF_SALT = b"tokengate cursor key salt"
_HKDF_INFO = b"tokengate/cursor-mac/v1"
_TEXT = re.compile(r"[A-Za-z0-9_-]+")
INVALID = "the cursor is not valid: use a cursor from a previous page"


def hkdf_sha256(key_material: bytes, *, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 HKDF with SHA-256: extract, then expand to ``length`` bytes."""
    prk = hmac.new(salt, key_material, hashlib.sha256).digest()
    out, block = b"", b""
    counter = 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


class CursorCodec:
    """Seals cursor payloads with a MAC and opens only sealed ones (see the module)."""

    __slots__ = ("_kinds", "_mac")

    def __init__(self, cursor_key: bytes) -> None:
        if len(cursor_key) < MIN_KEY_BYTES:
            raise ValueError(f"a cursor key must be at least {MIN_KEY_BYTES} bytes")
        # Keyed states copied per cursor (one per kind, its prefix already absorbed): the
        # key schedule is paid once, not once per edge of every page.
        self._mac = hmac.new(cursor_key, digestmod=hashlib.sha256)
        self._kinds: dict[bytes, hmac.HMAC] = {}

    @classmethod
    def from_server_key(cls, server_key: bytes) -> CursorCodec:
        """The codec of a gateway whose server key (TOKENGATE_SECRET_KEY or the key file)
        is ``server_key``: every replica and worker sharing that key accepts the others'."""
        return cls(hkdf_sha256(server_key, salt=_HKDF_SALT, info=_HKDF_INFO))

    @classmethod
    def ephemeral(cls) -> CursorCodec:
        """A codec with a random key: its cursors are valid in this process only."""
        return cls(secrets.token_bytes(MIN_KEY_BYTES))

    def __repr__(self) -> str:
        return "CursorCodec(<key hidden>)"

    def _tag(self, kind: bytes, payload: bytes) -> bytes:
        base = self._kinds.get(kind)
        if base is None:
            if b"\x00" in kind:
                raise ValueError("a cursor kind holds no NUL byte")
            base = self._mac.copy()
            base.update(kind + b"\x00")
            self._kinds[kind] = base
        mac = base.copy()
        mac.update(payload)
        return mac.digest()

    def seal(self, payload: bytes, *, kind: bytes) -> str:
        """The cursor text for ``payload``."""
        raw = payload + self._tag(kind, payload)
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def open(self, text: str, *, kind: bytes) -> bytes:
        """The payload of a cursor this codec sealed for ``kind``; ``InvalidCursor`` for
        anything else (truncated, altered, another key or kind, not base64url)."""
        if not text or len(text) > MAX_CURSOR_LENGTH or not _TEXT.fullmatch(text):
            raise InvalidCursor(INVALID)
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (ValueError, binascii.Error):
            raise InvalidCursor(INVALID) from None
        # One text per cursor: unused trailing bits must be zero, as ``seal`` makes them.
        if len(raw) <= TAG_BYTES or base64.urlsafe_b64encode(raw).decode().rstrip("=") != text:
            raise InvalidCursor(INVALID)
        payload, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(kind, payload)):
            raise InvalidCursor(INVALID)
        return payload


__all__ = ["MAX_CURSOR_LENGTH", "CursorCodec", "hkdf_sha256"]
