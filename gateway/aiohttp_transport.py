"""httpx's API over aiohttp, with every URL sent exactly as httpx encoded it.

``httpx_aiohttp.AiohttpTransport`` hands aiohttp ``str(request.url)``, which aiohttp parses
again with yarl. yarl normalises what it parses: it decodes escapes of characters it deems
safe in a path (``%3B`` becomes ``;``, likewise ``%40 %3A %21 %24 %26 %27 %28 %29 %2A %2C
%3D``) and resolves ``%2E%2E`` as a dot segment. An encoded path segment could then leave
as another path (``..%3B`` as ``..;``, which Java servers may treat as ``..``). Here the URL
is handed to aiohttp as a ``yarl.URL`` marked already encoded, which it sends as is.

Its failures are mapped here too, to the httpx exceptions httpx's own transport raises for
the same event: httpx_aiohttp's map turns every ``ClientConnectionError`` (a reset, a
server that closed the connection, even a refused one) into ``httpx.ConnectTimeout``, and
the gateway would report a connection dropped in milliseconds as a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager

import aiohttp
import httpx
import yarl
from aiohttp import ClientResponse, ClientSession, ClientTimeout
from aiohttp import http_exceptions as aiohttp_http
from httpx_aiohttp import AiohttpTransport

from tokengate.upstreams.http_edge import Answer, AnswerTooLarge, BoundedBody, CutShort


def exact_url(url: httpx.URL) -> yarl.URL:
    """``url`` for aiohttp, its percent-encoding and dot segments untouched."""
    return yarl.URL(str(url), encoded=True)


def httpx_error(exc: Exception) -> Exception:
    """The httpx exception for what an aiohttp exception says happened (``exc`` itself when
    it is no aiohttp failure). Most specific classes first: aiohttp's timeouts are also
    connection errors, a refused connect is also an ``OSError``."""
    message = str(exc) or type(exc).__name__
    mapped: type[httpx.HTTPError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        mapped = httpx.ConnectTimeout  # connecting, or waiting for a pooled connection
    elif isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        mapped = httpx.ReadTimeout  # the answer, or its next bytes, did not come in time
    elif isinstance(exc, aiohttp.InvalidURL):
        mapped = httpx.UnsupportedProtocol
    elif isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ServerFingerprintMismatch):
        mapped = httpx.ConnectError  # refused, unreachable, no such host, TLS refused
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        mapped = httpx.RemoteProtocolError  # closed before (all of) the answer came
    elif isinstance(exc, aiohttp.ClientPayloadError):
        # Cut short (fewer bytes than announced, a broken chunk), a body its
        # Content-Encoding cannot decode (the answer is bad, not the connection), or the
        # socket failed.
        cause = exc.__cause__ or exc.__context__
        cut = isinstance(
            cause, aiohttp_http.ContentLengthError | aiohttp_http.TransferEncodingError
        )
        if isinstance(cause, aiohttp_http.ContentEncodingError):
            mapped = httpx.DecodingError
        else:
            mapped = httpx.RemoteProtocolError if cut else httpx.ReadError
    elif isinstance(exc, aiohttp.ClientOSError):
        mapped = httpx.ReadError  # reset, broken pipe: the socket itself failed
    elif isinstance(exc, aiohttp.ClientResponseError):
        mapped = httpx.RemoteProtocolError  # an answer that is not HTTP
    elif isinstance(exc, aiohttp.ClientConnectionError):
        mapped = httpx.NetworkError
    elif isinstance(exc, aiohttp.ClientError):
        mapped = httpx.TransportError
    else:
        return exc
    error = mapped(message)
    error.__cause__ = exc
    return error


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        error = httpx_error(exc)
        if error is exc:
            raise
        raise error from exc


class _ResponseStream(httpx.AsyncByteStream):
    """An aiohttp response's body for httpx, failures mapped as above while it streams."""

    CHUNK_SIZE = 16 * 1024

    def __init__(self, response: ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for chunk in self._response.content.iter_chunked(self.CHUNK_SIZE):
                yield chunk

    async def aclose(self) -> None:
        with _httpx_errors():
            await self._response.__aexit__(None, None, None)


class ExactUrlAiohttpTransport(AiohttpTransport):
    """``AiohttpTransport`` whose requests keep httpx's encoding of the URL.

    The gateway uses no proxy, and its requests carry their whole body, so those branches
    of the parent's ``handle_async_request`` are left out.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(self.client, ClientSession):
            self.client = self.get_client()
        timeout = request.extensions.get("timeout", {})
        with _httpx_errors():
            data: bytes | httpx.AsyncByteStream | None
            try:
                data = request.content or None
            except httpx.RequestNotRead:
                data = request.stream  # type: ignore[assignment]
                request.headers.pop("transfer-encoding", None)  # aiohttp frames the body
            response = await self.client.request(
                method=request.method,
                url=exact_url(request.url),
                headers=request.headers,
                data=data,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=ClientTimeout(
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                    connect=timeout.get("pool"),
                ),
                server_hostname=request.extensions.get("sni_hostname"),
            ).__aenter__()
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_ResponseStream(response),
            request=request,
            extensions=extensions,
        )

    async def exchange(
        self,
        method: str,
        url: httpx.URL,
        headers: Mapping[str, str],
        content: bytes | None,
        limits: httpx.Timeout,
        max_bytes: int,
    ) -> Answer:
        """One request and its whole answer straight over aiohttp (``http_edge.Exchange``):
        no httpx request or response objects, and aiohttp decodes the body. Same URL
        handling, timeouts and failure mapping as ``handle_async_request``. A body longer
        than ``max_bytes`` is refused by its Content-Length, else read no further than
        that."""
        if not isinstance(self.client, ClientSession):
            self.client = self.get_client()
        with _httpx_errors():
            async with self.client.request(
                method,
                exact_url(url),
                headers=headers,
                data=content,
                allow_redirects=False,
                compress=False,
                timeout=ClientTimeout(
                    sock_connect=limits.connect, sock_read=limits.read, connect=limits.pool
                ),
            ) as response:
                status = response.status
                length = response.content_length
                if length is not None and length > max_bytes:
                    response.close()
                    raise AnswerTooLarge(max_bytes, status, response.headers)
                try:
                    if length is not None and "Content-Encoding" not in response.headers:
                        # The parser reads exactly Content-Length bytes and nothing decodes
                        # them: the check above bounds the body (most answers).
                        body = await response.read()
                    else:
                        body = await _read_at_most(response, max_bytes)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise CutShort(_as_httpx(exc)) from exc
                return Answer(status, response.headers, body)


async def _read_at_most(response: ClientResponse, max_bytes: int) -> bytes:
    """The body as it comes (decoded: aiohttp inflates no more than its buffer's size ahead
    of the reader), the connection closed once it passes ``max_bytes``."""
    body = BoundedBody(max_bytes, response.status, response.headers)
    try:
        while piece := await response.content.readany():
            body.add(piece)
    except AnswerTooLarge:
        response.close()
        raise
    return body.value()


def _as_httpx(exc: Exception) -> httpx.HTTPError:
    error = httpx_error(exc)
    if isinstance(error, httpx.HTTPError):
        return error
    return httpx.ReadError(str(exc) or type(exc).__name__)


__all__ = ["ExactUrlAiohttpTransport", "exact_url", "httpx_error"]
