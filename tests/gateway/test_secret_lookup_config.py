"""``[limits] secret_lookups_per_minute`` and ``TOKENGATE_SECRET_LOOKUPS_PER_MINUTE``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokengate.gateway.config import ConfigError, load


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokengate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_file_and_environment(tmp_path: Path) -> None:
    assert load(None, environ={}).limits.secret_lookups_per_minute == 10
    path = _file(tmp_path, "[limits]\nsecret_lookups_per_minute = 3\n")
    assert load(path, environ={}).limits.secret_lookups_per_minute == 3
    env = {"TOKENGATE_SECRET_LOOKUPS_PER_MINUTE": "7"}
    assert load(path, environ=env).limits.secret_lookups_per_minute == 7


@pytest.mark.parametrize("value", ["0", "-1", "ten", "1.5"])
def test_bad_environment_value(value: str) -> None:
    with pytest.raises(ConfigError, match="TOKENGATE_SECRET_LOOKUPS_PER_MINUTE"):
        load(None, environ={"TOKENGATE_SECRET_LOOKUPS_PER_MINUTE": value})


@pytest.mark.parametrize("value", ["0", '"10"'])
def test_bad_file_value(tmp_path: Path, value: str) -> None:
    path = _file(tmp_path, f"[limits]\nsecret_lookups_per_minute = {value}\n")
    with pytest.raises(ConfigError, match="secret_lookups_per_minute"):
        load(path, environ={})
