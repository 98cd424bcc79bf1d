"""Token secrets: generated, hashed with a server key, compared in constant time.

A secret is ``tg_`` + 43 URL-safe characters (32 random bytes). At rest the store keeps only
HMAC-SHA256(server key, secret) and a short hint (``tg_`` and 4 characters: upstreams/hints.py),
so a stolen database file is useless without the key, and the key alone reveals no secret.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from hashlib import sha256
from pathlib import Path

from tokengate.upstreams import hints

PREFIX = "tg_"
SECRET_BYTES = 32
SECRET_PATTERN = re.compile(r"tg_[A-Za-z0-9_-]{43}")
KEY_ENV = "TOKENGATE_SECRET_KEY"
MIN_KEY_BYTES = 32


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def hint(secret: str) -> str:
    """``tg_abcd…`` for a generated secret; the first 4 characters and ``…`` for any other
    (a bootstrap secret). Also applied to a stored hint when read: older versions stored
    8 characters, and a hint made again from a hint is the same hint."""
    if secret.startswith(PREFIX):
        return hints.shown(secret.removeprefix(PREFIX), public_prefix=PREFIX)
    return hints.shown(secret)


class SecretHasher:
    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the server key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def __repr__(self) -> str:
        return "SecretHasher(<key hidden>)"

    def digest(self, secret: str) -> str:
        return hmac.new(self._key, secret.encode("utf-8"), sha256).hexdigest()

    def verify(self, secret: str, stored_digest: str) -> bool:
        return hmac.compare_digest(self.digest(secret), stored_digest)


def load_key(key_file: Path) -> bytes:
    """The server key: ``TOKENGATE_SECRET_KEY`` if set, else ``key_file`` (created 0600 once).

    Replicas sharing one PostgreSQL must share the key: set the variable on all of them.
    """
    from_env = os.environ.get(KEY_ENV)
    if from_env:
        key = from_env.encode("utf-8")
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"{KEY_ENV} must hold at least {MIN_KEY_BYTES} characters")
        return key
    if key_file.exists():
        key = key_file.read_bytes().strip()
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the key file {key_file.name} is too short; delete it or fix it")
        return key
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48).encode("ascii")
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return key_file.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    return key
