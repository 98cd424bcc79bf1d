"""The shared upstream client keeps no cookies (one caller's upstream session must not ride
along on requests made for another) and sends URLs exactly as encoded. Real loopback HTTP,
both transports."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tokengate.gateway.upstream_factory import TRANSPORT_ENV, http_client
from tokengate.upstreams import errors
from tokengate.upstreams.http_edge import UpstreamHttp
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


def edge_over(client: httpx.AsyncClient) -> UpstreamHttp:
    return UpstreamHttp(
        key="up",
        name="Upstream",
        client=client,
        timeout_s=5.0,
        headers={"Authorization": "Bearer upstream-credential"},
        credential="API token",
    )


async def described(request: Request) -> Response:
    """What arrived (target, content type, body, cookie), gzip-encoded when asked for."""
    query = request.scope["query_string"]
    seen = {
        "target": (request.scope["raw_path"] + (b"?" + query if query else b"")).decode(),
        "method": request.method,
        "content_type": request.headers.get("content-type"),
        "body": (await request.body()).decode(),
        "cookie": request.headers.get("cookie"),
        "gzip": "gzip" in request.headers.get("accept-encoding", ""),
    }
    body = json.dumps(seen).encode()
    headers = {"ETag": '"v7"', "Set-Cookie": "session=upstream-session-value; Path=/"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type="application/json", headers=headers)


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_upstream_calls_read_alike_over_either_transport(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``UpstreamHttp`` over the default client takes the aiohttp transport's direct
    exchange (httpx's own transport: httpx's path); either way the URL leaves as encoded,
    a JSON body as httpx encodes it, a gzip answer is decoded, headers read
    case-insensitively, and no cookie comes back."""
    monkeypatch.setenv(TRANSPORT_ENV, transport)
    app = Starlette(routes=[Route("/{rest:path}", described, methods=["GET", "POST"])])
    with serve_in_thread(app) as url:
        async with http_client() as client:
            assert (getattr(client, "exchange", None) is not None) is (transport == "aiohttp")
            edge = edge_over(client)
            first = await edge.send("GET", f"{url}/users/..%3B/tokens", params={"q": "a;b"})
            second = await edge.send("POST", f"{url}/tokens", json={"name": "é", "n": [1]})
    assert first.status_code == 200 and first.is_success
    assert first.headers.get("etag") == first.headers.get("ETag") == '"v7"'
    assert edge.json(first) == {
        "target": "/users/..%3B/tokens?q=a%3Bb",
        "method": "GET",
        "content_type": None,
        "body": "",
        "cookie": None,
        "gzip": True,  # so the answer came gzip-encoded, and was decoded
    }
    seen = edge.json(second)
    assert isinstance(seen, dict)
    assert seen["content_type"] == "application/json"
    assert seen["body"] == '{"name":"é","n":[1]}'
    assert seen["cookie"] is None


async def undecodable(_request: Request) -> Response:
    return Response(
        b"not gzip at all", media_type="application/json", headers={"Content-Encoding": "gzip"}
    )


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_an_undecodable_body_is_a_bad_answer_not_a_dropped_connection(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body its Content-Encoding cannot decode: the same reason with either transport
    (aiohttp reports it as a payload error, like a connection cut mid-answer)."""
    monkeypatch.setenv(TRANSPORT_ENV, transport)
    app = Starlette(routes=[Route("/", undecodable)])
    with serve_in_thread(app) as url:
        async with http_client() as client:
            with pytest.raises(errors.BadUpstreamResponse, match="sent an unreadable response"):
                await edge_over(client).send("GET", f"{url}/")
