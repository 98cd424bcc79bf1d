"""What every upstream simulator shares: a request log and fault injection, as ASGI middleware.

Control endpoints (never logged, never faulted), on every simulator:
    GET    /_sim/requests   -> {"requests": [{"method", "path", "query", "headers_seen"}...]}
    DELETE /_sim/requests   -> clears the log
    POST   /_sim/faults     <- {"faults": [Fault fields...]} replaces the fault plan
    DELETE /_sim/faults     -> no faults
``latency_ms`` makes every answer leave that long after its request arrived (the
simulator's own work included). ``vary_bytes`` (true/false) makes each JSON answer differ in
its bytes from the one before (trailing whitespace: the same JSON), as a busy upstream's
lists do: a gateway cannot reuse the decoding of an earlier answer. Faults apply to
matching requests (method and path prefix), ``times`` times (null: forever), and with
``every`` = N only to every N-th matching request (N=2: half of them).

Fault kinds, each the way a failing server really behaves on the wire:
    status     an answer with ``status`` (and ``retry_after``)
    hang       no answer for ``hang_s`` (a client's time limit runs out first)
    latency    the real answer, ``latency_ms`` late
    malformed  a complete answer whose JSON is cut short
    reset      a TCP reset (RST) before any answer
    close      the connection closed cleanly (FIN) before any answer
    mid_reply  the status line, headers and part of the body, then (after ``stall_s``) the
               connection closed
A refused connection needs no fault: nothing listens on a closed port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokengate.upstreams.loopback import transport_of

FaultKind = Literal["status", "hang", "malformed", "reset", "close", "mid_reply", "latency"]
MAX_HANG_S = 60.0


@dataclass
class Fault:
    kind: FaultKind
    status: int = 500
    retry_after: int | None = None
    hang_s: float = 30.0
    latency_ms: float = 0.0
    stall_s: float = 0.0
    method: str | None = None
    path_prefix: str = "/"
    times: int | None = None
    every: int = 1
    seen: int = 0

    def applies(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        if not path.startswith(self.path_prefix):
            return False
        if self.times is not None and self.times <= 0:
            return False
        self.seen += 1
        if self.seen % max(1, self.every) != 0:
            return False
        if self.times is not None:
            self.times -= 1
        return True


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str] = field(default_factory=dict)
    # The path as sent, still percent-encoded (``path`` is decoded, as ASGI gives it).
    raw_path: str = ""


@dataclass
class SimulatorControl:
    """Shared by a simulator's routes and its middleware: the log and the fault plan."""

    requests: list[LoggedRequest] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    latency_ms: float = 0.0
    vary_bytes: bool = False
    answers: int = 0

    def set_faults(self, specs: list[dict[str, Any]]) -> None:
        allowed = set(Fault.__dataclass_fields__) - {"seen"}
        unknown = {s.get("kind") for s in specs} - set(get_args(FaultKind))
        if unknown:  # a misspelt kind would otherwise be a plain HTTP 500
            raise ValueError(f"unknown fault kind(s) {sorted(map(str, unknown))}")
        self.faults = [Fault(**{k: v for k, v in s.items() if k in allowed}) for s in specs]

    def count(self, method: str | None = None, path_prefix: str = "/") -> int:
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method) and r.path.startswith(path_prefix)
        )


_LOGGED_HEADERS = ("if-match", "content-type", "accept", "traceparent", "x-request-id")


class SimulatorMiddleware:
    """Logs each request, then applies the first matching fault (latency applies to all)."""

    def __init__(self, app: ASGIApp, control: SimulatorControl) -> None:
        self.app = app
        self.control = control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith("/_sim/"):
            await self._control(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.control.requests.append(
            LoggedRequest(
                method=method,
                path=path,
                query=scope.get("query_string", b"").decode("latin-1"),
                headers={k: headers[k] for k in _LOGGED_HEADERS if k in headers},
                raw_path=(scope.get("raw_path") or path.encode()).decode("latin-1"),
            )
        )
        if self.control.vary_bytes:
            self.control.answers += 1
            send = _padded(send, self.control.answers % 4096)
        if self.control.latency_ms > 0:
            send = _answer_at(
                send, asyncio.get_running_loop().time() + self.control.latency_ms / 1000
            )
        fault = next((f for f in self.control.faults if f.applies(method, path)), None)
        if fault is None:
            await self.app(scope, receive, send)
            return
        await self._inject(fault, scope, receive, send)

    async def _inject(self, fault: Fault, scope: Scope, receive: Receive, send: Send) -> None:
        if fault.kind == "latency":
            await asyncio.sleep(fault.latency_ms / 1000)
            await self.app(scope, receive, send)
        elif fault.kind == "hang":
            await asyncio.sleep(min(fault.hang_s, MAX_HANG_S))
            await _send(send, 504, b'{"error": "simulated hang ended"}')
        elif fault.kind == "malformed":
            await _send(send, 200, b'{"data": [{"type": "trunc', "application/json")
        elif fault.kind in {"reset", "close"}:
            await _drop(scope, receive, reset=fault.kind == "reset")
        elif fault.kind == "mid_reply":
            headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            part = b'{"data": [{"id": "cut-short"'
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(min(fault.stall_s, MAX_HANG_S))
            await _drop(scope, receive, reset=False)
        else:
            extra = []
            if fault.retry_after is not None:
                extra.append((b"retry-after", str(fault.retry_after).encode()))
            body = json.dumps({"error": f"simulated HTTP {fault.status}"}).encode()
            await _send(send, fault.status, body, extra_headers=extra)

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path == "/_sim/requests" and method == "GET":
            body = json.dumps({"requests": [asdict(r) for r in self.control.requests]})
            await _send(send, 200, body.encode())
        elif path == "/_sim/requests" and method == "DELETE":
            self.control.requests.clear()
            await _send(send, 204, b"")
        elif path == "/_sim/faults" and method == "POST":
            raw = await _read_body(receive)
            try:
                payload = json.loads(raw or b"{}")
                self.control.set_faults(list(payload.get("faults", [])))
                self.control.latency_ms = float(payload.get("latency_ms", 0.0))
                self.control.vary_bytes = payload.get("vary_bytes", False) is True
            except (ValueError, TypeError, AttributeError) as exc:
                await _send(send, 400, json.dumps({"error": str(exc)}).encode())
                return
            await _send(send, 204, b"")
        elif path == "/_sim/faults" and method == "DELETE":
            self.control.faults = []
            self.control.latency_ms = 0.0
            self.control.vary_bytes = False
            await _send(send, 204, b"")
        else:
            await _send(send, 404, b'{"error": "unknown control endpoint"}')


async def _drop(scope: Scope, receive: Receive, *, reset: bool) -> None:
    """Cut the request's connection: a TCP reset (SO_LINGER 0, then close) or a clean close.

    Then wait for the server to notice, so it neither answers 500 in the dead connection's
    place nor logs the request as unanswered.
    """
    transport = transport_of(scope)
    if transport is None:  # not served by serve_in_thread: the server closes it itself
        raise ConnectionAbortedError("simulated connection drop")
    if reset:
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(1.0):
            while (await receive())["type"] != "http.disconnect":
                pass


def _answer_at(send: Send, due: float) -> Send:
    """``send`` that starts the response no earlier than ``due`` (loop time): the simulator
    answers a fixed time after the request arrived, its own work included."""

    async def delayed(message: Message) -> None:
        if message["type"] == "http.response.start":
            delay = due - asyncio.get_running_loop().time()
            if delay > 0:
                await asyncio.sleep(delay)
        await send(message)

    return delayed


def _padded(send: Send, spaces: int) -> Send:
    """``send`` that ends a JSON answer with ``spaces`` spaces (content-length adjusted)."""
    padding = b" " * spaces
    json_answer = False

    async def padded(message: Message) -> None:
        nonlocal json_answer
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            json_answer = any(
                k.lower() == b"content-type" and b"json" in v.lower() for k, v in headers
            )
            if json_answer:
                headers = [
                    (k, str(int(v) + spaces).encode()) if k.lower() == b"content-length" else (k, v)
                    for k, v in headers
                ]
                message = {**message, "headers": headers}
        elif (
            message["type"] == "http.response.body"
            and json_answer
            and not message.get("more_body", False)
        ):
            message = {**message, "body": message.get("body", b"") + padding}
        await send(message)

    return padded


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(
    send: Send,
    status: int,
    body: bytes,
    content_type: str = "application/json",
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    headers.extend(extra_headers or [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
