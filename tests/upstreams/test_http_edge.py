"""The adapters' shared HTTP edge: one mapping from answers and transport failures to errors.

Unit tests over ``httpx.MockTransport`` (no network), and the same refusal through each of
the three adapters, so that an expired upstream credential reads alike whichever source
it is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from tokengate.upstreams import errors
from tokengate.upstreams.amper import AmperSource
from tokengate.upstreams.base import TokenSource
from tokengate.upstreams.http_edge import UpstreamHttp, path_segment, retry_after_seconds
from tokengate.upstreams.losant import LosantSource
from tokengate.upstreams.model import PageRequest, TokenFilter, TokenOrder
from tokengate.upstreams.oauth import OAuthSource

SECRET = "s3cr3t-upstream-credential-value"
BASE = "http://upstream.test"
APP = "5b9062f5c5f4c50006b8a5d7"


def edge(handler: Callable[[httpx.Request], httpx.Response]) -> UpstreamHttp:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return UpstreamHttp(
        key="src",
        name="Upstream",
        client=client,
        timeout_s=1.0,
        headers={"Authorization": f"Bearer {SECRET}"},
        credential="API token",
    )


def answering(status: int, **headers: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _request: httpx.Response(status, headers=headers, content=b"{}")


def failing(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(_request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("handler", "error", "status"),
    [
        (answering(401), errors.UpstreamUnauthorized, 401),
        (answering(403), errors.UpstreamUnauthorized, 403),
        (answering(429, **{"Retry-After": "3"}), errors.UpstreamRateLimited, 429),
        (answering(500), errors.UpstreamUnavailable, 500),
        (answering(503), errors.UpstreamUnavailable, 503),
        (failing(httpx.ConnectError("refused")), errors.UpstreamUnavailable, None),
        (failing(httpx.ReadTimeout("slow")), errors.UpstreamTimeout, None),
        (failing(httpx.RemoteProtocolError("cut")), errors.UpstreamUnavailable, None),
    ],
)
async def test_answers_and_failures_map_to_errors(
    handler: Callable[[httpx.Request], httpx.Response],
    error: type[errors.UpstreamError],
    status: int | None,
) -> None:
    with pytest.raises(errors.UpstreamError) as caught:
        await edge(handler).send("GET", f"{BASE}/x")
    assert type(caught.value) is error
    assert caught.value.source == "src"
    assert caught.value.status == status
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("status", [200, 204, 404, 409, 412])
async def test_other_statuses_are_the_adapters_to_judge(status: int) -> None:
    response = await edge(answering(status)).send("GET", f"{BASE}/x")
    assert response.status_code == status


async def test_unexpected_carries_the_status() -> None:
    http = edge(answering(418))
    response = await http.send("GET", f"{BASE}/x")
    problem = http.unexpected(response)
    assert isinstance(problem, errors.BadUpstreamResponse)
    assert problem.status == 418
    assert "418" in str(problem)


async def test_json_refuses_what_is_not_json() -> None:
    http = edge(lambda _r: httpx.Response(200, content=b'{"data": [trunc'))
    with pytest.raises(errors.BadUpstreamResponse):
        http.json(await http.send("GET", f"{BASE}/x"))


def test_retry_after_forms() -> None:
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(" 12 ") == 12.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("-1") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = retry_after_seconds(later)
    assert seconds is not None and 25 <= seconds <= 30
    earlier = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(earlier) == 0.0


SourceMaker = Callable[[httpx.AsyncClient], TokenSource]
SOURCES: dict[str, tuple[SourceMaker, str]] = {
    "amper": (
        lambda c: AmperSource(key="src", name="Amper", base_url=BASE, client=c, api_token=SECRET),
        "API token",
    ),
    "oauth": (
        lambda c: OAuthSource(
            key="src",
            name="IdP",
            base_url=BASE,
            client=c,
            client_id="gateway",
            client_secret=SECRET,
        ),
        "client credentials",
    ),
    "losant": (
        lambda c: LosantSource(
            key="src",
            name="Fleet",
            base_url=BASE,
            client=c,
            api_token=SECRET,
            application_ids=[APP],
        ),
        "API token",
    ),
}


def list_call(source: TokenSource) -> Awaitable[object]:
    return source.list_page(PageRequest(TokenFilter(user_id="anna"), TokenOrder(), 5))


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("provider", list(SOURCES))
async def test_every_adapter_reports_a_refused_credential_alike(provider: str, status: int) -> None:
    make, credential = SOURCES[provider]
    client = httpx.AsyncClient(transport=httpx.MockTransport(answering(status)))
    with pytest.raises(errors.UpstreamUnauthorized) as caught:
        await list_call(make(client))
    assert caught.value.status == status
    assert caught.value.code == "UPSTREAM_UNAUTHORIZED"
    assert str(caught.value).endswith(f"refused the gateway's {credential} (HTTP {status})")
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "params"),
    [
        (f"{BASE}/v1/access_tokens", {"offset": "0", "length": "21", "sort": "-date_create"}),
        (f"{BASE}/applications/{APP}/tokens", {"filter": "ci *bot?[a-z] é&=+", "page": "0"}),
        (f"{BASE}/v1/access_tokens?offset=20&length=20", {"length": "50"}),  # links.next
        (f"{BASE}/oauth/api/v1/users/a%2Fb%20c/tokens", None),
    ],
)
async def test_request_url_is_what_httpx_sends(url: str, params: dict[str, str] | None) -> None:
    sent: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(200, content=b"{}")

    async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as client:
        await client.get(url, params=params)
        await edge(record).send("GET", url, params=params)
        await edge(record).send("GET", url, params=params)  # the memoised URL
    assert sent[1] == sent[0] and sent[2] == sent[0]


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("abcd1234", "abcd1234"),
        ("~a.b-c_d", "~a.b-c_d"),
        ("user;x", "user%3Bx"),
        ("..;", "..%3B"),
        ("%2E%2E", "%252E%252E"),
        ("a/b?c#d e", "a%2Fb%3Fc%23d%20e"),
        ("Zoë", "Zo%C3%AB"),
        ("a@b:c!$&'()*+,=", "a%40b%3Ac%21%24%26%27%28%29%2A%2B%2C%3D"),
    ],
)
def test_path_segment_encodes_everything_but_unreserved(value: str, segment: str) -> None:
    assert path_segment(value) == segment


@pytest.mark.parametrize("value", ["", ".", "..", "a\nb", "a\x00", "\x7f", "a\x85", "\ud800"])
def test_path_segment_refuses_what_no_encoding_keeps_one_segment(value: str) -> None:
    with pytest.raises(errors.InvalidInput) as info:
        path_segment(value, argument="userId")
    assert info.value.argument == "userId"
