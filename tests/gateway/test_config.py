"""Config: a bad file stops start-up with a message naming the key and the line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tokengate.gateway.config import ConfigError, load

GOOD = """
[server]
host = "127.0.0.1"
port = 9000

[store]
url = "sqlite:///data/tg.db"

[[sources]]
key = "amper"
provider = "amper"
name = "Amper Music"
base_url = "https://api.ampermusic.com"
token_env = "AMPER_API_TOKEN"

[[sources]]
key = "fleet"
provider = "losant"
base_url = "https://api.losant.com"
application_id = "575ec8687ae143cd83dc4a97"
token_env = "LOSANT_API_TOKEN"
timeout_s = 3
"""
ENV = {"AMPER_API_TOKEN": "amper-secret-value", "LOSANT_API_TOKEN": "losant-secret-value"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokengate.toml"
    path.write_text(text)
    return path


def test_good_config(tmp_path: Path) -> None:
    config = load(write(tmp_path, GOOD), environ=ENV)
    assert config.server.port == 9000
    # Relative SQLite paths resolve against the config file's directory.
    assert config.store.url == f"sqlite:///{tmp_path / 'data' / 'tg.db'}"
    amper, fleet = config.sources
    assert amper.credentials == {"token": "amper-secret-value"}
    assert fleet.application_ids == ("575ec8687ae143cd83dc4a97",) and fleet.timeout_s == 3.0
    assert "amper-secret-value" not in repr(config)
    # Longer than clients' and load balancers' idle timeouts (httpx 5 s, ALB 60 s).
    assert config.server.keep_alive_s == 75
    custom = load(
        write(tmp_path, GOOD.replace("port = 9000", "port = 9000\nkeep_alive_s = 120")), environ=ENV
    )
    assert custom.server.keep_alive_s == 120
    assert config.server.metrics is True
    off = load(
        write(tmp_path, GOOD.replace("port = 9000", "port = 9000\nmetrics = false")), environ=ENV
    )
    assert off.server.metrics is False


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    env = {**ENV, "TOKENGATE_PORT": "9100", "TOKENGATE_CONFIG": str(path)}
    assert load(None, environ=env).server.port == 9100
    assert load(None, environ=env, port=9200).server.port == 9200
    assert (
        load(path, environ={**ENV, "TOKENGATE_STORE_URL": "sqlite:///elsewhere.db"}).store.url
        == "sqlite:///elsewhere.db"
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda t: t.replace("port = 9000", "port = 9000\nprot = 1"),
            r"tokengate.toml:5: unknown key server.prot",
        ),
        (
            lambda t: t.replace("timeout_s = 3", "timeout = 3"),
            r"tokengate.toml:22: unknown key sources.timeout",
        ),
        (
            lambda t: t.replace('"https://api.losant.com"', '"ftp://x"'),
            r"tokengate.toml:19: base_url must be an http",
        ),
        (
            lambda t: t.replace('"LOSANT_API_TOKEN"', '"NOPE_UNSET_VAR"'),
            r"tokengate.toml:21: the environment variable NOPE_UNSET_VAR",
        ),
        (
            lambda t: t.replace('provider = "amper"', 'provider = "github"'),
            r"tokengate.toml:11: provider must be one of",
        ),
        (
            lambda t: t.replace('"sqlite:///data/tg.db"', '"mysql://x"'),
            r"tokengate.toml:7: the store URL",
        ),
        (lambda t: t.replace("port = 9000", 'port = "x"'), r"tokengate.toml:4: port must be a int"),
        (
            lambda t: t.replace('key = "fleet"', 'key = "amper"'),
            r"tokengate.toml:17: source key 'amper' is used twice",
        ),
        (lambda t: t + "\n[extra]\n", r"tokengate.toml:24: unknown section \[extra\]"),
        (
            lambda t: t.replace("port = 9000", "port = 9000\nkeep_alive_s = 0"),
            r"tokengate.toml:5: keep_alive_s must be whole seconds",
        ),
        (
            lambda t: t.replace("port = 9000", "port = 9000\nkeep_alive_s = 7.5"),
            r"tokengate.toml:5: keep_alive_s must be a int",
        ),
        (
            lambda t: t.replace("port = 9000", 'port = 9000\nmetrics = "yes"'),
            r"tokengate.toml:5: metrics must be a bool",
        ),
        (lambda t: t + "\nnot toml = = =\n", r"not valid TOML"),
        (
            lambda t: t.replace('"575ec8687ae143cd83dc4a97"', '"../../etc"'),
            r"is not a 24-hex Losant id",
        ),
    ],
)
def test_bad_config_names_key_and_line(tmp_path: Path, change: object, expected: str) -> None:
    text = change(GOOD)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=expected):
        load(write(tmp_path, text), environ=ENV)


def test_secrets_never_in_the_file_or_errors(tmp_path: Path) -> None:
    text = GOOD.replace('token_env = "AMPER_API_TOKEN"', 'token = "amper-secret-value"')
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text), environ=ENV)
    assert "unknown key sources.token" in str(info.value)
    assert "amper-secret-value" not in str(info.value)


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("port = 9000", "port = 9000\nbogus = true"))
    result = subprocess.run(
        [sys.executable, "-m", "tokengate.gateway.cli", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **ENV},
    )
    assert result.returncode == 2
    assert "tokengate.toml:5: unknown key server.bogus" in result.stderr
    assert "Traceback" not in result.stderr


def test_credentials_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "amper.secret").write_text("from-a-file\n")
    text = GOOD.replace('token_env = "AMPER_API_TOKEN"', 'token_file = "amper.secret"')
    config = load(write(tmp_path, text), environ=ENV)
    assert config.sources[0].credentials == {"token": "from-a-file"}
    both = GOOD.replace(
        'token_env = "AMPER_API_TOKEN"', 'token_env = "AMPER_API_TOKEN"\ntoken_file = "x"'
    )
    with pytest.raises(ConfigError, match="exactly one of 'token_env' or 'token_file'"):
        load(write(tmp_path, both), environ=ENV)
    missing = GOOD.replace('token_env = "AMPER_API_TOKEN"', 'token_file = "nope.secret"')
    with pytest.raises(ConfigError, match="cannot read token_file"):
        load(write(tmp_path, missing), environ=ENV)


def test_timeouts(tmp_path: Path) -> None:
    text = GOOD.replace(
        "timeout_s = 3", "timeout_s = 3\nconnect_timeout_s = 0.5\ntotal_timeout_s = 8"
    )
    amper, fleet = load(write(tmp_path, text), environ=ENV).sources
    assert (fleet.timeout_s, fleet.connect_timeout_s, fleet.deadline_s) == (3.0, 0.5, 8.0)
    assert (amper.timeout_s, amper.connect_timeout_s, amper.deadline_s) == (10.0, 3.0, 10.0)
    bad = GOOD.replace("timeout_s = 3", "timeout_s = 3\ntotal_timeout_s = 0")
    with pytest.raises(ConfigError, match="total_timeout_s must be between 0 and 300"):
        load(write(tmp_path, bad), environ=ENV)


def test_lineage_limit(tmp_path: Path) -> None:
    assert load(write(tmp_path, GOOD), environ=ENV).limits.max_lineage_tokens == 100
    text = GOOD.replace(
        'url = "sqlite:///data/tg.db"',
        'url = "sqlite:///data/tg.db"\n\n[limits]\nmax_lineage_tokens = 7',
    )
    assert load(write(tmp_path, text), environ=ENV).limits.max_lineage_tokens == 7
    with pytest.raises(ConfigError, match="max_lineage_tokens"):
        load(write(tmp_path, text.replace("= 7", "= 0")), environ=ENV)


def test_request_limits(tmp_path: Path) -> None:
    defaults = load(write(tmp_path, GOOD), environ=ENV).limits
    assert (defaults.max_body_bytes, defaults.max_tokens) == (1_048_576, 10_000)
    assert (defaults.max_selections, defaults.max_document_chars) == (2000, 65_536)
    section = (
        "\n[limits]\nmax_body_bytes = 65536\nmax_tokens = 500\nmax_selections = 300\n"
        "max_document_chars = 4096\n"
    )
    custom = load(write(tmp_path, GOOD + section), environ=ENV).limits
    assert (custom.max_body_bytes, custom.max_tokens) == (65536, 500)
    assert (custom.max_selections, custom.max_document_chars) == (300, 4096)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("max_body_bytes = 10", r"tokengate.toml:25: max_body_bytes must be at least 1024"),
        ("max_body_bytes = 1.5", r"tokengate.toml:25: max_body_bytes must be a int"),
        ("max_tokens = 99", r"tokengate.toml:25: max_tokens must be at least 100"),
        ("max_selections = 0", r"tokengate.toml:25: max_selections must be at least 1"),
        ('max_selections = "many"', r"tokengate.toml:25: max_selections must be a int"),
        ("max_document_chars = 1", r"tokengate.toml:25: max_document_chars must be at least 1024"),
        ("max_document_bytes = 1", r"tokengate.toml:25: unknown key limits.max_document_bytes"),
    ],
)
def test_bad_request_limits_name_key_and_line(tmp_path: Path, line: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load(write(tmp_path, GOOD + "\n[limits]\n" + line + "\n"), environ=ENV)


@pytest.mark.parametrize(
    ("provider", "foreign"),
    [
        ("oauth", 'page_size_param = "limit"'),
        ("losant", 'page_size_param = "length"'),
        ("amper", 'application_id = "575ec8687ae143cd83dc4a97"'),
        ("amper", 'client_id_env = "X"'),
    ],
)
def test_another_providers_key_is_refused(tmp_path: Path, provider: str, foreign: str) -> None:
    """A key that only another provider reads would silently do nothing: it stops start-up."""
    path = tmp_path / "tokengate.toml"
    path.write_text(
        f'[[sources]]\nkey = "s"\nprovider = "{provider}"\nbase_url = "https://x.example"\n'
        f"{foreign}\n"
    )
    key = foreign.split(" ")[0]
    with pytest.raises(
        ConfigError,
        match=rf"^tokengate.toml:5: sources.{key} is not a setting of provider {provider} \(its own: ",
    ):
        load(path, environ={})
