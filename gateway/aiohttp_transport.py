"""httpx's API over aiohttp, with every URL sent exactly as httpx encoded it.

``httpx_aiohttp.AiohttpTransport`` hands aiohttp ``str(request.url)``, which aiohttp parses
again with yarl. yarl normalises what it parses: it decodes escapes of characters it deems
safe in a path (``%3B`` becomes ``;``, likewise ``%40 %3A %21 %24 %26 %27 %28 %29 %2A %2C
%3D``) and resolves ``%2E%2E`` as a dot segment. An encoded path segment could then leave
as another path (``..%3B`` as ``..;``, which Java servers may treat as ``..``). Here the URL
is handed to aiohttp as a ``yarl.URL`` marked already encoded, which it sends as is.
"""

from __future__ import annotations

import httpx
import yarl
from aiohttp import ClientSession, ClientTimeout
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import AiohttpResponseStream, map_aiohttp_exceptions


def exact_url(url: httpx.URL) -> yarl.URL:
    """``url`` for aiohttp, its percent-encoding and dot segments untouched."""
    return yarl.URL(str(url), encoded=True)


class ExactUrlAiohttpTransport(AiohttpTransport):
    """``AiohttpTransport`` whose requests keep httpx's encoding of the URL.

    The gateway uses no proxy, and its requests carry their whole body, so those branches
    of the parent's ``handle_async_request`` are left out.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(self.client, ClientSession):
            self.client = self.get_client()
        timeout = request.extensions.get("timeout", {})
        with map_aiohttp_exceptions():
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
            stream=AiohttpResponseStream(response),
            request=request,
            extensions=extensions,
        )


__all__ = ["ExactUrlAiohttpTransport", "exact_url"]
