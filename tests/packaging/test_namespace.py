"""The installed package lives under one name: ``tokengate``.

A fresh virtual environment gets PyPI's ``schema`` first, then tokengate from a copy of the
files the Docker image copies: both must work side by side, and nothing of ours may sit at
the top of site-packages.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "gateway", "schema", "upstreams")

pytestmark = pytest.mark.slow


def run(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, cwd=cwd
    )
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


def test_installs_beside_pypi_schema(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    pip = (python, "-m", "pip", "install", "-q", "--disable-pip-version-check")
    run(*pip, "schema", cwd=tmp_path)
    run(*pip, source, cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"  # not the repository: nothing local shadows anything
    elsewhere.mkdir()
    site = Path(
        run(
            python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=elsewhere
        ).strip()
    )
    top = {p.name for p in site.iterdir()}
    assert "tokengate" in top
    assert not {"gateway", "upstreams"} & top
    assert {p.name for p in (site / "tokengate").iterdir()} >= {"gateway", "schema", "upstreams"}

    # PyPI's schema is the one `import schema` finds, and it works.
    check = "import schema; print(schema.__file__); print(schema.Schema(int).validate(5))"
    where, value = run(python, "-c", check, cwd=elsewhere).split()
    assert Path(where).parent == site / "schema" and value == "5"

    # The command works, with its package data (the migrations) and the served schema.
    tokengate = venv / "bin" / "tokengate"
    sdl = run(tokengate, "export-schema", cwd=elsewhere)
    assert sdl == (ROOT / "schema.graphql").read_text()
    config = elsewhere / "tg.toml"
    config.write_text('[store]\nurl = "sqlite:///tg.db"\n')
    run(tokengate, "migrate", "--config", config, cwd=elsewhere)
    assert (elsewhere / "tg.db").stat().st_size > 0
