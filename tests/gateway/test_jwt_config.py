"""[auth.jwt]: read with its defaults; what would weaken it is refused at load, naming key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokengate.gateway.config import ConfigError, JwtConfig, load

GOOD = """
[server]
port = 9000

[auth.jwt]
issuer = "https://idp.example.com"
audience = "tokengate"
jwks_url = "https://idp.example.com/jwks"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokengate.toml"
    path.write_text(text)
    return path


def test_defaults(tmp_path: Path) -> None:
    config = load(write(tmp_path, GOOD), environ={})
    assert config.auth.jwt == JwtConfig(
        issuer="https://idp.example.com",
        audience="tokengate",
        jwks_url="https://idp.example.com/jwks",
        algorithms=("RS256", "ES256"),
        subject_claim="sub",
        scope_claim="scope",
        default_scopes=("tokens:read",),
        leeway_s=30.0,
        jwks_timeout_s=5.0,
    )
    assert load(write(tmp_path, "[server]\nport = 9000\n"), environ={}).auth.jwt is None


def test_every_key(tmp_path: Path) -> None:
    text = GOOD + (
        'algorithms = ["ES384", "PS256", "EdDSA"]\nsubject_claim = "email"\n'
        'scope_claim = "scp"\ndefault_scopes = []\nleeway_s = 5\njwks_timeout_s = 2.5\n'
    )
    jwt = load(write(tmp_path, text), environ={}).auth.jwt
    assert jwt is not None
    assert jwt.algorithms == ("ES384", "PS256", "EdDSA")
    assert (jwt.subject_claim, jwt.scope_claim, jwt.default_scopes) == ("email", "scp", ())
    assert (jwt.leeway_s, jwt.jwks_timeout_s) == (5.0, 2.5)


def test_plain_http_on_loopback_only(tmp_path: Path) -> None:
    local = GOOD.replace("https://idp.example.com/jwks", "http://127.0.0.1:9999/jwks")
    assert load(write(tmp_path, local), environ={}).auth.jwt is not None
    remote = GOOD.replace("https://idp.example.com/jwks", "http://idp.example.com/jwks")
    with pytest.raises(ConfigError, match=r"tokengate.toml:8: jwks_url must use https"):
        load(write(tmp_path, remote), environ={})


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('algorithms = ["none"]', r":9: algorithm 'none' is refused"),
        ('algorithms = ["RS256", "HS256"]', r":9: algorithm 'HS256' is refused"),
        ('algorithms = ["hs512"]', r":9: algorithm 'hs512' is refused"),
        ('algorithms = ["RS1"]', r":9: unknown algorithm 'RS1'"),
        ("algorithms = []", r":9: algorithms must name at least one"),
        ('algorithms = "RS256"', r":9: algorithms must be a list"),
        ('default_scopes = ["tokens:admin"]', r":9: tokens:admin cannot be a default"),
        ('default_scopes = ["admin"]', r":9: unknown scope 'admin'"),
        ("leeway_s = -1", r":9: leeway_s must be between 0 and 300"),
        ("jwks_timeout_s = 0", r":9: jwks_timeout_s must be between 0 and 60"),
        ('subject_claim = ""', r":9: subject_claim must not be empty"),
        ('secret = "x"', r":9: unknown key auth.jwt.secret"),
    ],
)
def test_bad_jwt_config_names_key_and_line(tmp_path: Path, line: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load(write(tmp_path, GOOD + line + "\n"), environ={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace('issuer = "https://idp.example.com"\n', ""), r"needs 'issuer'"),
        (GOOD.replace('jwks_url = "https://idp.example.com/jwks"\n', ""), r"needs 'jwks_url'"),
        (GOOD.replace("https://idp.example.com/jwks", "ftp://x/jwks"), r"must be an http"),
        (
            GOOD.replace("https://idp.example.com/jwks", "https://u:p@idp.example.com/jwks"),
            "must not hold credentials",
        ),
        ("[auth]\noidc = 1\n", r"unknown key auth.oidc"),
        ("[auth]\njwt = 1\n", r"\[auth.jwt\] must be a table"),
    ],
)
def test_incomplete_jwt_config_is_refused(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load(write(tmp_path, text), environ={})
