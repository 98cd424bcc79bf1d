"""The wheel carries the GraphiQL page's own files and the lock of its third-party files,
never the third-party files themselves unless `tokengate graphiql install --bundled` put
them there before the build."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.gateway.test_graphiql_page import fake_install
from tokengate.gateway.graphiql_assets import BUNDLED_DIR_NAME, load_lock

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "gateway", "schema", "upstreams")

pytestmark = pytest.mark.slow


def wheel_names(source: Path, out: Path) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def copy_sources(target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", BUNDLED_DIR_NAME)
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, target / name, ignore=ignore)
        else:
            target.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, target / name)


def test_wheel_has_the_page_files_and_the_bundled_assets_only_when_installed(
    tmp_path: Path,
) -> None:
    source = tmp_path / "src"
    copy_sources(source)
    names = wheel_names(source, tmp_path / "plain")
    for name in (
        "graphiql_assets.lock.json",
        "graphiql_static/tokengate-graphiql.js",
        "graphiql_static/tokengate-graphiql.css",
    ):
        assert f"tokengate/gateway/{name}" in names
    assert not any(BUNDLED_DIR_NAME in n or n.endswith("graphiql.min.js") for n in names)
    lock = load_lock()
    fake_install(source / "gateway" / BUNDLED_DIR_NAME, lock)
    bundled = wheel_names(source, tmp_path / "bundled")
    for name in (*lock.served, "installed.json"):
        assert f"tokengate/gateway/{BUNDLED_DIR_NAME}/{name}" in bundled
