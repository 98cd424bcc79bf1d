"""Persisted-operation settings: a bad manifest stops start-up naming the key's line (and
`tokengate serve` exits non-zero before serving); good ones load both manifest formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokengate.gateway import cli, logs
from tokengate.gateway.config import ConfigError, load
from tokengate.gateway.persisted import load_manifest, sha256_hex

DOC = "query One { sources { key } }"


def write_config(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "tokengate.toml"
    path.write_text(f'[store]\nurl = "sqlite:///tg.db"\n\n[server]\nport = 9000\n{server}\n')
    return path


def test_defaults() -> None:
    config = load(None, environ={})
    assert config.server.apq_cache_size == 1000
    assert config.server.persisted_documents is None
    assert config.server.only_persisted is False


def test_a_manifest_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "relay.json").write_text(json.dumps({"a1": DOC}))
    config = load(
        write_config(
            tmp_path,
            'persisted_documents = "ops/relay.json"\nonly_persisted = true\napq_cache_size = 0',
        ),
        environ={},
    )
    assert config.server.persisted_documents == tmp_path / "ops" / "relay.json"
    assert config.server.only_persisted is True
    assert config.server.apq_cache_size == 0


def test_both_formats_load(tmp_path: Path) -> None:
    relay = tmp_path / "relay.json"
    relay.write_text(json.dumps({"a1": DOC}))
    assert load_manifest(relay).by_id == {"a1": DOC}
    apollo = tmp_path / "apollo.json"
    apollo.write_text(
        json.dumps(
            {
                "format": "apollo-persisted-query-manifest",
                "version": 1,
                "operations": [
                    {"id": sha256_hex(DOC), "body": DOC, "name": "One", "type": "query"}
                ],
            }
        )
    )
    manifest = load_manifest(apollo)
    assert manifest.by_id == {sha256_hex(DOC): DOC}
    assert manifest.by_hash == {sha256_hex(DOC): DOC}


APOLLO = '{"format": "apollo-persisted-query-manifest", '


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "cannot read"),
        ("{", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ("{}", "holds no documents"),
        ('{"a": 5}', "not a Relay manifest"),
        ('{"a": "query { sources { key "}', "'a' is not valid GraphQL"),
        (APOLLO + '"version": 2, "operations": []}', "only version 1"),
        (APOLLO + '"version": 1, "operations": {}}', "operations must be a list"),
        (APOLLO + '"version": 1, "operations": [5]}', "operations[0] must be an object"),
        (APOLLO + '"version": 1, "operations": [{"body": "{ a }"}]}', "operations[0].id"),
        (APOLLO + '"version": 1, "operations": [{"id": "x", "body": 1}]}', "operations[0].body"),
        (
            APOLLO + '"version": 1, "operations": [{"id": "x", "body": "{ a }"}, '
            '{"id": "x", "body": "{ b }"}]}',
            "names two different documents",
        ),
    ],
)
def test_a_bad_manifest_is_a_config_error_naming_the_line(
    tmp_path: Path, content: str | None, words: str
) -> None:
    if content is not None:
        (tmp_path / "m.json").write_text(content)
    path = write_config(tmp_path, 'persisted_documents = "m.json"')
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert "tokengate.toml:6" in str(caught.value)
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("only_persisted = true", "only_persisted needs persisted_documents"),
        ("apq_cache_size = -1", "apq_cache_size must be from 0"),
        ('apq_cache_size = "big"', "apq_cache_size must be a int"),
        ("only_persisted = 1", "only_persisted must be a bool"),
        ("persisted_documents = 3", "persisted_documents must be a str"),
    ],
)
def test_bad_settings(tmp_path: Path, line: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load(write_config(tmp_path, line), environ={})


def test_serve_exits_non_zero_on_a_bad_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # serve's log set-up would put a handler on pytest's captured stderr on the root logger,
    # which later tests' threads then write to after it is closed.
    monkeypatch.setattr(logs, "setup", lambda level="INFO": None)
    (tmp_path / "m.json").write_text('{"a": "not graphql {"}')
    path = write_config(tmp_path, 'persisted_documents = "m.json"')
    assert cli.main(["serve", "--config", str(path)]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "config error" in err
    assert "m.json" in err
    assert "'a' is not valid GraphQL" in err
