"""The shared upstream client keeps no cookies: one caller's upstream session must not
ride along on requests made for another. Real loopback HTTP, both transports."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.upstream_factory import TRANSPORT_ENV, http_client
from upstreams.loopback import serve_in_thread


async def echo(request: Request) -> JSONResponse:
    response = JSONResponse({"cookie": request.headers.get("cookie")})
    response.set_cookie("session", "upstream-session-value", path="/")
    return response


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_set_cookie_is_never_sent_back(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TRANSPORT_ENV, transport)
    app = Starlette(routes=[Route("/", echo)])
    with serve_in_thread(app) as url:
        async with http_client() as client:
            first = await client.get(f"{url}/")
            assert "upstream-session-value" in first.headers["set-cookie"]
            second = await client.get(f"{url}/")
            assert second.json() == {"cookie": None}
            assert len(client.cookies) == 0
            with pytest.raises(TypeError):
                client.cookies.set("a", "b")


async def test_a_plain_client_would_send_it_back() -> None:
    """Guard the guard: httpx's default jar replays the cookie, so the test above can fail."""
    app = Starlette(routes=[Route("/", echo)])
    with serve_in_thread(app) as url:
        async with httpx.AsyncClient() as client:
            await client.get(f"{url}/")
            second = await client.get(f"{url}/")
            assert second.json() == {"cookie": "session=upstream-session-value"}
