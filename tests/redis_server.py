"""Redis for the tests: the shared server of ``tests/run.sh`` (``TOKENGATE_TEST_REDIS_URL``),
or a throwaway ``redis-server`` a test owns so that it can stop it mid-run."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tokengate.upstreams.loopback import free_port

REDIS_URL_ENV = "TOKENGATE_TEST_REDIS_URL"
REQUIRE_REDIS_ENV = "TOKENGATE_REQUIRE_REDIS"


def _missing(what: str) -> None:
    if os.environ.get(REQUIRE_REDIS_ENV):
        pytest.fail(f"{REQUIRE_REDIS_ENV} is set but {what}")
    pytest.skip(what)


def shared_redis_url() -> str:
    """The run's Redis; skips the test without one (fails in CI, where it must be there)."""
    url = os.environ.get(REDIS_URL_ENV)
    if not url:
        _missing(f"{REDIS_URL_ENV} is not set (tests/run.sh starts a redis-server)")
    assert url is not None
    return url


class RedisServer:
    """One redis-server on 127.0.0.1 in a private directory, no persistence."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self._root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert self._process.poll() is None, "redis-server exited at start"
                assert time.monotonic() < deadline, "redis-server did not listen in 10 s"
                time.sleep(0.02)

    def stop(self) -> None:
        """An abrupt stop, as a crash would look to the gateway."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None


@contextmanager
def throwaway_redis() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        _missing("no redis-server here")
    root = Path(tempfile.mkdtemp(prefix="tokengate-redis-"))
    server = RedisServer(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
