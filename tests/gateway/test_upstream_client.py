"""The shared upstream client keeps no cookies (one caller's upstream session must not ride
along on requests made for another) and sends URLs exactly as encoded. Real loopback HTTP,
both transports."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from tokengate.gateway.upstream_factory import TRANSPORT_ENV, http_client
from tokengate.upstreams.loopback import serve_in_thread


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


async def raw_target(request: Request) -> PlainTextResponse:
    """The request line's target as it arrived, still percent-encoded."""
    query = request.scope["query_string"]
    raw: bytes = request.scope["raw_path"] + (b"?" + query if query else b"")
    return PlainTextResponse(raw.decode("latin-1"))


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
@pytest.mark.parametrize(
    "target",
    [
        "/users/user%3Bx/tokens",
        "/users/..%3B/tokens",
        "/users/%2E%2E/tokens",
        "/users/%2e%2E%3b/tokens",
        "/users/a%2Fb/tokens",
        "/users/a%40b%3Ac%21%24%26%27%28%29%2A%2B%2C%3D/tokens",
        "/users/%C3%A9%20%3F%23/tokens",
        "/list?filter=a%3Bb%2Bc%26d&next=%2F..%2F",
    ],
)
async def test_urls_leave_exactly_as_encoded(
    transport: str, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither transport decodes an escape nor resolves an encoded dot segment."""
    monkeypatch.setenv(TRANSPORT_ENV, transport)
    app = Starlette(routes=[Route("/{rest:path}", raw_target)])
    with serve_in_thread(app) as url:
        async with http_client() as client:
            response = await client.get(f"{url}{target}")
    assert response.text == target
