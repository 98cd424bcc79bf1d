"""Request size limits at the ASGI layer, before any body is buffered or parsed.

A declared ``Content-Length`` over the limit is refused before a byte of the body is read; a
chunked body is counted as it streams in and refused at the first chunk that crosses the
limit. Either way the answer is HTTP 413 with a GraphQL-shaped body coded BAD_USER_INPUT and
``Connection: close``, so the server reads no further. A query string over the same limit
(GET requests carry their document there) answers 414 the same way.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """Raised from ``receive`` when the streamed body crosses the limit."""


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        if len(scope.get("query_string", b"")) > limit:
            await refuse(send, 414, f"the query string is over the limit of {limit} bytes")
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await refuse(send, 413, _too_large(limit))
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if started:  # an answer is under way: the server ends the connection
                return
            await refuse(send, 413, _too_large(limit))


def _too_large(limit: int) -> str:
    return f"the request body is over the limit of {limit} bytes"


async def refuse(send: Send, status: int, message: str) -> None:
    body = orjson.dumps(
        {"errors": [{"message": message, "extensions": {"code": "BAD_USER_INPUT"}}]}
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
