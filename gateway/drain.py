"""Draining on SIGTERM: /readyz answers 503 at once, the process keeps serving for
``[server] shutdown_delay_s``, then uvicorn's own graceful shutdown runs (the listener
closes, requests in flight finish).

A load balancer notices a failing health check only at its next probe, seconds later; until
then it keeps sending new connections. Closing the listener at the signal would turn those
into refusals, so the gateway first says "not ready" and keeps answering.

How it hooks in: uvicorn takes SIGTERM and SIGINT (``signal.signal``) before it starts the
application's lifespan, in the serving process (the only one, or each ``--workers`` worker).
The lifespan then puts :meth:`Drain.install`'s handler in front of uvicorn's: the first
SIGTERM starts the delay and reaches uvicorn when it ends; a second SIGTERM, or any SIGINT
(Ctrl+C), reaches uvicorn at once, which skips what is left of the delay.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("tokengate.drain")

_Handler = Callable[[int, FrameType | None], Any]


class Drain:
    """One serving process's draining state: ``draining`` is read by /readyz."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.draining = False
        # Set once a signal has been passed on to uvicorn (its shutdown has begun).
        self._stopping = False
        self._uvicorn: _Handler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self) -> bool:
        """Put the drain in front of uvicorn's SIGTERM/SIGINT handler; call from the
        lifespan (main thread, running loop). False, with a warning, where uvicorn's
        handler is not in place (then SIGTERM stops the process as uvicorn alone does)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        term, interrupt = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
        if not callable(term) or term != interrupt:
            log.warning("draining off: the server's SIGTERM handler is not in place")
            return False
        self._uvicorn = term
        self._loop = asyncio.get_running_loop()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        return True

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes, possibly inside the event loop's
        # own code: only flags here, and call_soon_threadsafe to reach the loop.
        if (
            sig == signal.SIGTERM
            and not self.draining
            and not self._stopping
            and self.delay_s > 0
            and self._loop is not None
        ):
            self.draining = True
            self._loop.call_soon_threadsafe(self._start_delay)
            return
        self.draining = True
        self._pass_on(sig, frame)

    def _start_delay(self) -> None:
        assert self._loop is not None
        log.info(
            "SIGTERM: draining, /readyz answers 503; the listener closes in %g s",
            self.delay_s,
        )
        self._loop.call_later(self.delay_s, self._end_delay)

    def _end_delay(self) -> None:
        if not self._stopping:
            log.info("drain delay over: closing the listener, finishing requests in flight")
            self._pass_on(signal.SIGTERM, None)

    def _pass_on(self, sig: int, frame: FrameType | None) -> None:
        self._stopping = True
        if self._uvicorn is not None:
            self._uvicorn(sig, frame)


class CloseWhileDraining:
    """Answers ``Connection: close`` while draining: clients and proxies holding idle
    keep-alive connections open new ones (to a ready replica, once the load balancer has
    noticed) instead of reusing one that the end of the delay would close under them."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.drain.draining or scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        await self.app(scope, receive, send_closing)
