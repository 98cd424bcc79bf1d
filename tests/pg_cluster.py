"""A throwaway PostgreSQL cluster a test owns, so it can stop the server mid-run.

The shared server of ``tests/run.sh`` (``TOKENGATE_TEST_PG_URL``) must stay up for the other
tests; an outage test starts its own cluster with the same binaries, the same way.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tokengate.upstreams.loopback import free_port

REQUIRE_PG_ENV = "TOKENGATE_REQUIRE_PG"


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PgCluster:
    """One PostgreSQL server on 127.0.0.1 in a private directory (trust auth, no password)."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self._bin = bin_dir
        self._root = root
        self._data = root / "data"
        self.port = free_port()
        self.url = f"postgresql://tokengate@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self._bin / tool), *args]
        if os.getuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self._data),
            "-U",
            "tokengate",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -c port={self.port} -k {self._root}"
        self._run(
            "pg_ctl", "-D", str(self._data), "-l", str(self._root / "log"), "-w", "-o", options,
            "start",
        )  # fmt: skip

    def stop(self) -> None:
        """An abrupt stop, as a crash or a lost network would look to the gateway."""
        self._run("pg_ctl", "-D", str(self._data), "-m", "immediate", "-w", "stop")


@contextmanager
def throwaway_cluster() -> Iterator[PgCluster]:
    """A started cluster, removed at the end; skips the test where PostgreSQL is missing
    (fails instead when ``TOKENGATE_REQUIRE_PG`` says it must be there, as in CI)."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        if os.environ.get(REQUIRE_PG_ENV):
            pytest.fail(f"{REQUIRE_PG_ENV} is set but no PostgreSQL binaries (initdb) were found")
        pytest.skip("no PostgreSQL binaries (initdb) here")
    root = Path(tempfile.mkdtemp(prefix="tokengate-pg-outage-"))
    root.chmod(0o755)
    if os.getuid() == 0:
        shutil.chown(root, "postgres")
    cluster = PgCluster(bin_dir, root)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
