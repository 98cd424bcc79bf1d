"""Every upstream answer's body is bounded once decoded (a source's ``max_answer_bytes``),
with either transport, and upstream requests name the gateway.

Real loopback HTTP: a gateway whose one source points at a hostile upstream that answers
as asked: a body over the bound (with its Content-Length, or chunked without one), a
Content-Length over the bound with hardly any body behind it, a gzip bomb (a few tens of
KB inflating to 64 MiB), or a genuine token page padded to just under the bound.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.types import Receive, Scope, Send

from tests.conftest import BOOTSTRAP, Gateway, gateway_config
from tokengate.gateway.app import create_app
from tokengate.gateway.config import ConfigError, load
from tokengate.gateway.demo import simulators
from tokengate.gateway.upstream_factory import TRANSPORT_ENV, http_client
from tokengate.upstreams import errors
from tokengate.upstreams.http_edge import USER_AGENT, BoundedDecoder, UpstreamHttp
from tokengate.upstreams.loopback import serve_in_thread

TRANSPORTS = ["aiohttp", "httpx"]
CAP = 1024 * 1024  # the source's max_answer_bytes
STREAMED = 64 * 1024 * 1024  # what the chunked answer would send if read to its end
BOMB_INFLATED = 64 * 1024 * 1024
STEP = 64 * 1024
TIMEOUT_S = 3.0


def gzip_bomb(inflated: int) -> bytes:
    """``inflated`` zero bytes, gzip-compressed (about a thousandth of that)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(1024 * 1024)
    parts = [compressor.compress(block) for _ in range(inflated // len(block))]
    parts.append(compressor.flush())
    return b"".join(parts)


BOMB = gzip_bomb(BOMB_INFLATED)


class Hostile:
    """An upstream answering every request as ``mode`` says; it records the User-Agent of
    each request and how many body bytes the last streamed answer got out."""

    def __init__(self, page: bytes) -> None:
        self.mode = "under"
        self.page = page
        self.agents: list[str | None] = []
        self.streamed = 0
        self.stream_ended = threading.Event()

    def under(self) -> bytes:
        """The genuine page padded with spaces (JSON whitespace) to just under the bound."""
        return self.page + b" " * (CAP - 16 - len(self.page))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = dict(scope["headers"])
        agent = headers.get(b"user-agent")
        self.agents.append(None if agent is None else agent.decode("latin-1"))
        json = [(b"content-type", b"application/json")]
        body, extra = b"", list[tuple[bytes, bytes]]()
        if self.mode == "under":
            body = self.under()
        elif self.mode == "under-gzip":
            body, extra = gzip.compress(self.under()), [(b"content-encoding", b"gzip")]
        elif self.mode in ("plain", "error-page"):
            body = b" " * (8 * CAP)
        elif self.mode == "bomb":
            body, extra = BOMB, [(b"content-encoding", b"gzip")]
        elif self.mode == "length":
            await self._length_lie(send, json)
            return
        elif self.mode == "chunked":
            await self._chunked(receive, send, json)
            return
        length = [(b"content-length", str(len(body)).encode())]
        status = 503 if self.mode == "error-page" else 200
        headers = json + extra + length
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _length_lie(self, send: Send, json: list[tuple[bytes, bytes]]) -> None:
        """A Content-Length of 1 GiB, a few bytes, then nothing: a reader that waited for
        the body would run into its time limit."""
        length = [(b"content-length", str(1024**3).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": json + length})
        await send({"type": "http.response.body", "body": b"[", "more_body": True})
        await asyncio.sleep(TIMEOUT_S + 2)

    async def _chunked(self, receive: Receive, send: Send, json: list[tuple[bytes, bytes]]) -> None:
        """``STREAMED`` bytes in chunks, no Content-Length, until the reader hangs up."""
        self.streamed = 0
        self.stream_ended.clear()
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": json})
            chunk = b" " * STEP
            while self.streamed < STREAMED and not gone.is_set():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                self.streamed += len(chunk)
                await asyncio.sleep(0)
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()
            self.stream_ended.set()


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[Hostile, str, Any]]:
    """The hostile upstream (its page a simulator's), its URL, and the simulator's source."""
    with simulators(("amper",), count=3) as running:
        [sim] = running.values()
        page = httpx.get(
            f"{sim.url}/v1/access_tokens",
            headers={"Authorization": f"Bearer {sim.info['token']}"},
        )
        assert page.status_code == 200 and len(page.json()["data"]) == 3
        upstream = Hostile(page.content)
        with serve_in_thread(upstream) as url:
            yield upstream, url, sim.source


@pytest.fixture(scope="module", params=TRANSPORTS)
def gateway(
    request: pytest.FixtureRequest,
    hostile: tuple[Hostile, str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    """A gateway whose one source is the hostile upstream (bound ``CAP``, no retries)."""
    _upstream, url, source = hostile
    home: Path = tmp_path_factory.mktemp(f"answer-cap-{request.param}")
    live = dataclasses.replace(
        source, base_url=url, max_answer_bytes=CAP, retries=0, timeout_s=TIMEOUT_S
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
        mp.setenv(TRANSPORT_ENV, request.param)
        config = gateway_config(home, sources=(live,))
        with serve_in_thread(create_app(config)) as gateway_url:
            yield Gateway(url=gateway_url, admin_secret=BOOTSTRAP, config=config)


PAGE = (
    "query ($sources: [String!]) { tokens(first: 5, filter: {sources: $sources}) "
    "{ edges { node { id } } failedSources { source { key } reason } } }"
)


def query(gateway: Gateway, upstream: Hostile, mode: str) -> tuple[dict[str, Any], float, int]:
    """The page over ``mode``'s answer: its body, seconds taken and the peak of memory
    allocated meanwhile (the gateway serves from a thread of this process)."""
    upstream.mode = mode
    tracemalloc.start()
    try:
        started = time.monotonic()
        response = gateway.post(PAGE, {"sources": [gateway.config.sources[0].key]})
        elapsed = time.monotonic() - started
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body, elapsed, peak


def assert_refused(gateway: Gateway, body: dict[str, Any]) -> None:
    [source] = gateway.config.sources
    tokens = body["data"]["tokens"]
    assert tokens["failedSources"] == [{"source": {"key": source.key}, "reason": "BAD_RESPONSE"}]
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_UPSTREAM_RESPONSE"
    assert error["extensions"]["source"] == source.key
    assert error["message"] == f"{source.name} sent an answer that exceeded {CAP} bytes"


@pytest.mark.parametrize("mode", ["plain", "length", "chunked", "bomb"])
def test_an_answer_over_the_bound_is_a_bad_answer_read_no_further(
    gateway: Gateway, hostile: tuple[Hostile, str, Any], mode: str
) -> None:
    upstream, _url, _source = hostile
    body, elapsed, peak = query(gateway, upstream, mode)
    assert_refused(gateway, body)
    # Refused up front by its Content-Length, not after waiting for a body never sent.
    assert elapsed < TIMEOUT_S / 2, f"answered after {elapsed:.2f} s"
    # Nothing near the body was held: the bomb inflates to 64 MiB, the chunked answer
    # would send as much.
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"
    if mode == "chunked":
        assert upstream.stream_ended.wait(5), "the upstream never saw the connection close"
        assert upstream.streamed < STREAMED // 2, f"{upstream.streamed} bytes got out"


@pytest.mark.parametrize("mode", ["under", "under-gzip"])
def test_an_answer_just_under_the_bound_is_read(
    gateway: Gateway, hostile: tuple[Hostile, str, Any], mode: str
) -> None:
    upstream, _url, _source = hostile
    assert CAP - 32 < len(upstream.under()) <= CAP
    body, _elapsed, _peak = query(gateway, upstream, mode)
    assert "errors" not in body, body["errors"]
    assert len(body["data"]["tokens"]["edges"]) == 3
    assert body["data"]["tokens"]["failedSources"] == []


def test_upstream_requests_name_the_gateway(
    gateway: Gateway, hostile: tuple[Hostile, str, Any]
) -> None:
    upstream, _url, _source = hostile
    upstream.agents.clear()
    query(gateway, upstream, "under")
    assert upstream.agents, "the upstream was asked"
    assert set(upstream.agents) == {USER_AGENT}
    name, _, version = USER_AGENT.partition("/")
    assert name == "tokengate" and version and version[0].isdigit()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_bound_holds_at_the_edge_whatever_the_source(
    hostile: tuple[Hostile, str, Any], monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    """``UpstreamHttp`` itself, over either transport: the default bound (16 MiB) lets a
    bomb of 64 MiB through no more than a smaller one."""
    upstream, url, _source = hostile
    monkeypatch.setenv(TRANSPORT_ENV, transport)
    async with http_client() as client:
        edge = UpstreamHttp(
            key="up", name="Upstream", client=client, timeout_s=TIMEOUT_S, headers={},
            credential="API token",
        )  # fmt: skip
        upstream.mode = "bomb"
        with pytest.raises(errors.BadUpstreamResponse) as caught:
            await edge.send("GET", f"{url}/v1/access_tokens")
        assert caught.value.message == "Upstream sent an answer that exceeded 16777216 bytes"
        assert caught.value.status == 200
        upstream.mode = "under-gzip"
        answer = await edge.send("GET", f"{url}/v1/access_tokens")
        assert answer.content == upstream.under()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_error_status_over_the_bound_still_says_what_failed(
    hostile: tuple[Hostile, str, Any], monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    """A 503 with a body over the bound is the upstream failing (retried, counted by the
    breaker as such), not a bad answer: its body is never read anyway."""
    upstream, url, _source = hostile
    monkeypatch.setenv(TRANSPORT_ENV, transport)
    async with http_client() as client:
        edge = UpstreamHttp(
            key="up", name="Upstream", client=client, timeout_s=TIMEOUT_S, headers={},
            credential="API token", max_answer_bytes=CAP,
        )  # fmt: skip
        upstream.mode = "error-page"
        with pytest.raises(errors.UpstreamUnavailable, match=r"^Upstream failed \(HTTP 503\)$"):
            await edge.send("GET", f"{url}/v1/access_tokens")


def test_bounded_decoder_steps_and_refusals() -> None:
    """The httpx path's decoder: no step over 64 KiB however compressed the input, every
    byte in the end, deflate with or without its zlib header, stacked codings, and an
    unknown coding refused."""
    raw = bytes(range(256)) * 4096 + bytes(3 * 1024 * 1024)
    for coding, encoded in [
        ("gzip", gzip.compress(raw)),
        ("deflate", zlib.compress(raw)),
        ("deflate", zlib.compress(raw, wbits=-zlib.MAX_WBITS)),
        ("gzip, gzip", gzip.compress(gzip.compress(raw))),
        ("identity", raw),
    ]:
        decoder = BoundedDecoder(coding)
        pieces = [
            p for i in range(0, len(encoded), 7000) for p in decoder.decode(encoded[i : i + 7000])
        ]
        pieces += list(decoder.flush())
        assert max(len(p) for p in pieces) <= 64 * 1024, coding
        assert b"".join(pieces) == raw, coding
    with pytest.raises(httpx.DecodingError):
        BoundedDecoder("br")
    with pytest.raises(httpx.DecodingError):
        list(BoundedDecoder("gzip").decode(b"not gzip at all"))


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("65536", True),
        ("1073741824", True),
        ("65535", False),
        ("1073741825", False),
        ('"1"', False),
    ],
)
def test_max_answer_bytes_bounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, ok: bool
) -> None:
    monkeypatch.setenv("AMPER_TOKEN", "t")
    path = tmp_path / "tokengate.toml"
    path.write_text(
        '[[sources]]\nkey = "music"\nprovider = "amper"\nbase_url = "https://amper.example"\n'
        f'token_env = "AMPER_TOKEN"\nmax_answer_bytes = {value}\n'
    )
    if ok:
        [source] = load(path).sources
        assert source.max_answer_bytes == int(value)
    else:
        with pytest.raises(ConfigError, match=r"tokengate.toml:6: .*max_answer_bytes"):
            load(path)


def test_the_bound_is_per_answer_not_per_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``GET /export`` walks every page of a source: each answer is bounded, not the walk."""
    bound = 64 * 1024
    with simulators(("amper",), count=400) as running:
        [sim] = running.values()
        monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
        config = gateway_config(
            tmp_path, sources=(dataclasses.replace(sim.source, max_answer_bytes=bound),)
        )
        with serve_in_thread(create_app(config)) as url:
            sim.state.control.requests.clear()
            response = httpx.get(
                f"{url}/export",
                headers={"Authorization": f"Bearer {BOOTSTRAP}", "Accept": "application/x-ndjson"},
                timeout=60,
            )
        # The answers the walk read, asked again: each under the bound, together far over.
        auth = {"Authorization": f"Bearer {sim.info['token']}"}
        sizes = [
            len(httpx.get(f"{sim.url}{r.path}", params=r.query, headers=auth).content)
            for r in list(sim.state.control.requests)
            if r.path == "/v1/access_tokens"
        ]
    assert response.status_code == 200, response.text
    *records, trailer = [orjson.loads(line) for line in response.content.splitlines()]
    assert trailer["failedSources"] == [] and trailer["complete"] is True
    assert sum(1 for r in records if r["source"] == sim.source.key) == 400
    assert max(sizes) <= bound < 2 * bound < sum(sizes), sizes
