"""Serve an ASGI app on 127.0.0.1 in a background thread: simulators in tests and demos."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp, Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# Each open connection's transport by its two ends (server and client address; a client
# port alone may be reused towards another server): what a simulator needs to cut a
# connection the way a failing server does (a reset, a close).
_Ends = tuple[tuple[str, int | None], tuple[str, int]]
_CONNECTIONS: dict[_Ends, asyncio.Transport] = {}


class _TrackedHttpTools(HttpToolsProtocol):
    """uvicorn's default HTTP protocol, its transport findable from a request's scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.server is not None and self.client is not None:
            _CONNECTIONS[self.server, self.client] = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.server is not None and self.client is not None:
            ends = (self.server, self.client)
            if _CONNECTIONS.get(ends) is self.transport:
                del _CONNECTIONS[ends]
        super().connection_lost(exc)


def transport_of(scope: Scope) -> asyncio.Transport | None:
    """The connection a request served by ``serve_in_thread`` arrived on (None elsewhere)."""
    server, client = scope.get("server"), scope.get("client")
    if server is None or client is None:
        return None
    return _CONNECTIONS.get(((server[0], server[1]), (client[0], client[1])))


class _QuietServer(uvicorn.Server):
    """uvicorn in a thread, stoppable at once: uvicorn's own loop looks for an exit request
    every 0.1 s, which a test suite starting hundreds of servers pays at every stop."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def install_signal_handlers(self) -> None:  # the thread is not the main thread
        pass

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            try:
                await asyncio.wait_for(self._stop.wait(), 0.1)
            except TimeoutError:
                continue

    def stop(self) -> None:
        """From any thread: exit now."""
        self.should_exit = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)


@contextmanager
def serve_in_thread(app: ASGIApp, port: int | None = None) -> Iterator[str]:
    """Run ``app`` on loopback until the block ends; yields its base URL (no trailing /)."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        http=_TrackedHttpTools,
    )
    server = _QuietServer(config)
    thread = threading.Thread(target=server.run, name=f"loopback-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"server on 127.0.0.1:{port} did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        thread.join(timeout=10)
