"""Secrets: generated strong, stored only as a keyed hash, compared in constant time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from tokengate.upstreams.model import CreateSpec
from tokengate.upstreams.store import SecretHasher, StoreSource, load_key
from tokengate.upstreams.store.credentials import SECRET_PATTERN, hint, new_secret
from tokengate.upstreams.store.tables import tokens


def test_secret_format_and_entropy() -> None:
    secrets = {new_secret() for _ in range(200)}
    assert len(secrets) == 200
    assert all(SECRET_PATTERN.fullmatch(s) for s in secrets)


@pytest.mark.parametrize(
    ("secret", "shown"),
    [
        ("tg_abcdefghijklmnop", "tg_abcd…"),
        ("tg_abcde", "tg_abcd…"),  # a hint stored by an older version
        ("tg_abcd…", "tg_abcd…"),  # a hint is its own hint
        ("bootstrap-secret-value", "boot…"),
        ("boot…", "boot…"),
        ("tg_ab", "tg_ab…"),
        ("tg_ab…", "tg_ab…"),
    ],
)
def test_hint_shows_four_characters_after_the_prefix(secret: str, shown: str) -> None:
    assert hint(secret) == shown and len(shown) <= 16  # the column's width


def test_hasher_is_keyed() -> None:
    a, b = SecretHasher(b"a" * 32), SecretHasher(b"b" * 32)
    secret = new_secret()
    assert a.digest(secret) != b.digest(secret)
    assert a.verify(secret, a.digest(secret)) and not a.verify(secret, b.digest(secret))
    assert "a" * 32 not in repr(a)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        SecretHasher(b"short")


def test_key_file_created_private_and_env_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOKENGATE_SECRET_KEY", raising=False)
    path = tmp_path / "k" / "tokengate.key"
    key = load_key(path)
    assert len(key) >= 32 and oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_key(path) == key
    monkeypatch.setenv("TOKENGATE_SECRET_KEY", "e" * 40)
    assert load_key(path) == b"e" * 40
    monkeypatch.setenv("TOKENGATE_SECRET_KEY", "short")
    with pytest.raises(ValueError, match="TOKENGATE_SECRET_KEY"):
        load_key(path)
    assert os.environ["TOKENGATE_SECRET_KEY"] == "short"


async def test_only_the_hash_is_stored(store: StoreSource) -> None:
    created = await store.create(CreateSpec(name="hashed", scopes=("tokens:read",)))
    async with store.engine.connect() as conn:
        row = (await conn.execute(sa.select(tokens))).mappings().one()
    assert created.secret not in str(dict(row))
    assert row["secret_hash"] != created.secret and len(row["secret_hash"]) == 64
    assert row["secret_hint"] == f"tg_{created.secret[3:7]}…"


async def test_authentication_and_throttled_last_use(store: StoreSource) -> None:
    created = await store.create(CreateSpec(name="caller", scopes=("tokens:read",), subject="u1"))
    principal = await store.authenticate(created.secret)
    assert (
        principal is not None and principal.subject == "u1" and principal.scopes == {"tokens:read"}
    )
    first_use = (await store.get(created.token.local_id)).last_used_at
    assert first_use is not None
    for _ in range(5):
        assert await store.authenticate(created.secret) is not None
    # Within the interval (60 s by default) no further write happens.
    assert (await store.get(created.token.local_id)).last_used_at == first_use
    assert await store.authenticate(created.secret + "x") is None
    assert await store.authenticate(created.secret[:-1]) is None
    assert await store.authenticate("") is None


async def test_authentication_cache_forgets_changed_tokens(store: StoreSource) -> None:
    from tokengate.upstreams.model import Status, UpdateSpec

    created = await store.create(CreateSpec(name="cached", scopes=("tokens:read",)))
    assert await store.authenticate(created.secret) is not None
    assert await store.authenticate(created.secret) is not None  # from the cache
    await store.update(created.token.local_id, UpdateSpec(status=Status.INACTIVE))
    assert await store.authenticate(created.secret) is None, "switched off: refused at once"
    await store.update(created.token.local_id, UpdateSpec(status=Status.ACTIVE))
    assert await store.authenticate(created.secret) is not None
    await store.revoke(created.token.local_id)
    assert await store.authenticate(created.secret) is None, "revoked: refused at once"
