"""The README's "For security teams: stale tokens and the inventory export" blocks, run as
written against `tokengate serve --demo` (only the demo's URL differs: it listens on a
free port here)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DemoProcess
from tokengate.gateway.export import CSV_TRAILER_PREFIX

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- tested: tests/gateway/test_security_readme_export.py runs this block -->"


def readme_blocks() -> list[str]:
    text = README.read_text()
    blocks = []
    for part in text.split(MARKER)[1:]:
        found = re.match(r"\s*```sh\n(.*?)```", part, re.DOTALL)
        assert found, "a tested block must follow its marker"
        blocks.append(found.group(1))
    return blocks


@pytest.mark.slow
def test_the_security_sections_run_as_written(tmp_path: Path) -> None:
    unused, export = readme_blocks()
    demo = DemoProcess(
        tmp_path, {**os.environ, "TOKENGATE_SHUTDOWN_DELAY_S": "0", "HOME": str(tmp_path)}
    )
    url = demo.url
    try:
        found = demo.wait_printed(r"Bearer (tg_demo_[A-Za-z0-9_-]+)", "admin token")
        env = {
            **os.environ,
            "TOKENGATE_TOKEN": found.group(1),
            "TOKENGATE_EXPORT_URL": url,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }

        def run(block: str) -> subprocess.CompletedProcess[str]:
            script = block.replace("http://127.0.0.1:8000", url)
            return subprocess.run(
                ["bash", "-c", script],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        answer = run(unused)
        assert answer.returncode == 0, answer.stderr
        assert answer.stdout.startswith("{"), (answer.stdout, answer.stderr)
        page = json.loads(answer.stdout)["data"]["tokens"]
        nodes = [e["node"] for e in page["edges"]]
        assert nodes and {n["provider"] for n in nodes} <= {"AMPER", "INTERNAL"}
        assert any(n["provider"] == "AMPER" for n in nodes)
        assert {f["source"]["key"]: f["reason"] for f in page["failedSources"]} == {
            "idp": "FILTER_UNSUPPORTED",
            "fleet": "FILTER_UNSUPPORTED",
        }
        # Ascending by last use, never-used ones (created long ago) last.
        used = [n["lastUsedAt"] for n in nodes if n["lastUsedAt"] is not None]
        assert used == sorted(used)

        exported = run(export)
        # The OAuth-style source needs a user: skipped, so not everything, but nothing failed.
        assert exported.returncode == 3, exported.stderr
        assert "skipped: source idp (NEEDS_FILTER" in exported.stderr
        text = (tmp_path / "inventory.csv").read_bytes().decode()
        body, _, last = text.rstrip("\r\n").rpartition("\r\n")
        trailer = json.loads(last.removeprefix(CSV_TRAILER_PREFIX))
        rows = list(csv.DictReader(io.StringIO(body + "\r\n")))
        assert trailer["count"] == len(rows) > 0
        assert {r["source"] for r in rows} == {"internal", "amper", "fleet"}
    finally:
        demo.stop()
