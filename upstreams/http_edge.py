"""The HTTP edge the upstream adapters share: one request, its failures as ``errors``."""

from __future__ import annotations

import asyncio
import json as stdlib_json
import unicodedata
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from importlib import metadata
from typing import Protocol
from urllib.parse import quote

import httpx
import orjson
from opentelemetry.trace import Span, SpanKind, StatusCode

from tokengate.upstreams import errors
from tokengate.upstreams.trace_context import PROPAGATING, outbound_headers, tracer_var


def _user_agent() -> str:
    try:
        return f"tokengate/{metadata.version('tokengate')}"
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        return "tokengate/0"


# What every upstream request names the gateway as (not the HTTP library's default).
USER_AGENT = _user_agent()
# The default bound on one upstream answer's body, once decoded (``max_answer_bytes``).
DEFAULT_MAX_ANSWER_BYTES = 16 * 1024 * 1024


def base_url(value: str) -> str:
    """An adapter's configured base URL, checked: absolute http(s), no trailing slash."""
    url = httpx.URL(value)
    if url.scheme not in {"http", "https"} or not url.host:
        raise ValueError("base_url must be an absolute http(s) URL")
    return str(url).rstrip("/")


# Segments HTTP clients and servers resolve as "this" and "parent" directory whatever the
# encoding of the rest: no percent-encoding makes them plain data.
_DOT_SEGMENTS = frozenset({".", ".."})
# Control characters, and lone surrogates (JSON can spell them; UTF-8 cannot encode them).
_NOT_IN_IDS = frozenset({"Cc", "Cs"})


def path_segment(value: str, *, argument: str = "id") -> str:
    """``value`` as exactly one URL path segment: every character but letters, digits and
    ``-._~`` percent-encoded (UTF-8), so ``/ ? # ; %`` and spaces stay data.

    The one way a caller-provided value enters an upstream path. Refuses with
    ``InvalidInput`` what no encoding keeps a plain segment: empty, ``.``, ``..``, and
    control characters or lone surrogates (never part of an id).
    """
    if (
        not value
        or value in _DOT_SEGMENTS
        or any(unicodedata.category(c) in _NOT_IN_IDS for c in value)
    ):
        raise errors.InvalidInput(
            f"{argument} cannot be part of an upstream URL", argument=argument
        )
    return quote(value, safe="")


@dataclass(frozen=True, slots=True)
class Answer:
    """An upstream's whole answer, as the adapters read it: its body already read (and
    decoded from any ``Content-Encoding``), its headers case-insensitive."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300


class CutShort(Exception):
    """An exchange failed after the answer's status line and headers had come: ``error``
    says how (a failure before any answer is raised as the ``httpx.HTTPError`` itself)."""

    def __init__(self, error: httpx.HTTPError) -> None:
        super().__init__(str(error))
        self.error = error


class AnswerTooLarge(Exception):
    """An answer whose body, decoded, is longer than ``limit`` bytes (by its Content-Length,
    or as it was read): reading stopped there and its connection was closed."""

    def __init__(self, limit: int, status: int, headers: Mapping[str, str]) -> None:
        super().__init__(f"the answer exceeded {limit} bytes")
        self.limit = limit
        self.status = status
        self.headers = headers


class Exchange(Protocol):
    """One request sent and its whole answer read, failures raised as httpx's exceptions
    (after the headers: wrapped in ``CutShort``). The shared client may offer one as its
    ``exchange`` attribute: the aiohttp transport's skips httpx's request and response
    machinery (gateway/aiohttp_transport.py).

    A body (decoded) longer than ``max_bytes`` raises ``AnswerTooLarge``: refused by its
    Content-Length before any of it is read, else as soon as the bytes read pass the bound,
    holding at most ``max_bytes`` and one chunk."""

    async def __call__(
        self,
        method: str,
        url: httpx.URL,
        headers: Mapping[str, str],
        content: bytes | None,
        limits: httpx.Timeout,
        max_bytes: int,
    ) -> Answer: ...


def declared_length(value: str | None) -> int | None:
    """A Content-Length header's value (None when absent or not a number)."""
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() else None


# Decoded bytes produced per step: a few KB of gzip can inflate to gigabytes, so no step
# decodes more than this at once.
DECODE_STEP = 64 * 1024


class BoundedDecoder:
    """A body's ``Content-Encoding`` (identity, gzip, deflate, in any stack) undone in
    steps of at most ``DECODE_STEP`` output bytes, so that a reader can stop at its bound
    before a compressed bomb is inflated. Another coding is refused (``httpx.DecodingError``):
    httpx asks for no other."""

    def __init__(self, content_encoding: str | None) -> None:
        codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
        self._layers: list[_Inflater] = []
        for coding in reversed(codings):  # the last coding applied is undone first
            if coding in ("", "identity"):
                continue
            if coding not in ("gzip", "x-gzip", "deflate"):
                raise httpx.DecodingError(f"unsupported Content-Encoding {coding!r}")
            self._layers.append(_Inflater(coding))

    def decode(self, data: bytes) -> Iterator[bytes]:
        """``data``'s decoded bytes, step by step."""
        return self._through(0, data, final=False)

    def flush(self) -> Iterator[bytes]:
        """What the layers still hold once the body has ended."""
        return self._through(0, b"", final=True)

    def _through(self, index: int, data: bytes, *, final: bool) -> Iterator[bytes]:
        if index == len(self._layers):
            if data:
                yield data
            return
        layer = self._layers[index]
        for piece in layer.feed(data):
            yield from self._through(index + 1, piece, final=False)
        if final:
            yield from self._through(index + 1, b"", final=True)


class _Inflater:
    """One gzip or deflate layer (deflate: zlib-wrapped, or raw as some servers send it)."""

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._zlib: zlib._Decompress | None = None

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            if self._zlib is None:
                if not data:
                    return
                if self._coding == "deflate":
                    # RFC 1950 header: compression method 8; else a raw deflate stream.
                    wbits = zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS
                else:
                    wbits = zlib.MAX_WBITS | 16
                self._zlib = zlib.decompressobj(wbits)
            decompressor = self._zlib
            pending = data
            while True:
                out = decompressor.decompress(pending, DECODE_STEP)
                pending = decompressor.unconsumed_tail
                if out:
                    yield out
                if not out or (len(out) < DECODE_STEP and not pending):
                    return
        except zlib.error as exc:
            raise httpx.DecodingError(f"cannot decode Content-Encoding {self._coding}") from exc


def json_body(value: object) -> bytes:
    """A JSON request body, encoded as httpx encodes ``json=``."""
    return stdlib_json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")


class UpstreamHttp:
    """One upstream's requests over the gateway's shared ``httpx.AsyncClient``.

    ``send`` turns every transport failure and every 401, 403, 429 and 5xx answer into an
    ``errors.UpstreamError`` naming ``key``; any other status is returned for the adapter
    to judge. ``credential`` names what a 401/403 refused ("API token", "client
    credentials"). Every error from an answer carries its HTTP ``status``; transport
    failures carry none.
    """

    def __init__(
        self,
        *,
        key: str,
        name: str,
        client: httpx.AsyncClient,
        timeout_s: float,
        headers: Mapping[str, str],
        credential: str,
        connect_timeout_s: float | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        self._key = key
        self._name = name
        self._client = client
        self._timeout_s = timeout_s
        # Read/write/pool wait timeout_s each; connecting may have a shorter budget.
        connect = timeout_s if connect_timeout_s is None else min(connect_timeout_s, timeout_s)
        self._connect_s = connect
        self._timeout = httpx.Timeout(timeout_s, connect=connect)
        self._max_bytes = max_answer_bytes
        self._headers = {"User-Agent": USER_AGENT, **headers}
        self._credential = credential
        exchange: Exchange | None = getattr(client, "exchange", None)
        self._exchange: Exchange = exchange or self._httpx_exchange

    async def send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: object = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """The answer to one request (``headers`` add to the constructor's).

        One client span per request (so per attempt under retries), child of the request's
        server span, named ``METHOD key``; the request carries it as ``traceparent``, and
        the request's ``X-Request-Id``. The span holds no URL: paths and queries can carry
        user ids and a caller's filters.
        """
        target = request_url(url, None if params is None else tuple(params.items()))
        sent = {**self._headers, **headers} if headers else self._headers
        if json is not None:
            content = json_body(json)
            sent = {**sent, "Content-Type": "application/json"}
        tracer = tracer_var.get()
        if tracer is PROPAGATING:  # nothing records: only the headers, no span object
            return await self._send(None, method, target, sent, content)
        span = tracer.start_span(
            f"{method} {self._key}",
            kind=SpanKind.CLIENT,
            attributes={"tokengate.source": self._key, "http.request.method": method},
        )
        try:
            response = await self._send(span, method, target, sent, content)
        except errors.UpstreamError as exc:
            if span.is_recording():
                if exc.status is not None:
                    span.set_attribute("http.response.status_code", exc.status)
                span.set_attribute("tokengate.outcome", exc.reason.lower())
                span.set_status(StatusCode.ERROR, exc.message)
            raise
        except BaseException as exc:  # cancelled (a deadline, a client gone), or a bug
            if span.is_recording():
                cancelled = isinstance(exc, asyncio.CancelledError)
                span.set_attribute("tokengate.outcome", "cancelled" if cancelled else "error")
                span.set_status(StatusCode.ERROR, type(exc).__name__)
            raise
        else:
            if span.is_recording():
                span.set_attribute("http.response.status_code", response.status_code)
                span.set_attribute("tokengate.outcome", "ok")
        finally:
            span.end()
        return response

    async def _send(
        self,
        span: Span | None,
        method: str,
        url: httpx.URL,
        headers: Mapping[str, str],
        content: bytes | None,
    ) -> Answer:
        """A failure says whether any answer had begun (``CutShort``)."""
        sent = outbound_headers(headers, span)
        too_large: AnswerTooLarge | None = None
        try:
            response = await self._exchange(
                method, url, sent, content, self._timeout, self._max_bytes
            )
        except AnswerTooLarge as exc:
            # Judged by its status first (a refusal or failure whose body nobody reads).
            too_large = exc
            response = Answer(exc.status, exc.headers, b"")
        except CutShort as exc:
            raise self._failure(exc.error, answered=True) from None
        except httpx.HTTPError as exc:
            raise self._failure(exc, answered=False) from None
        status = response.status_code
        if status in {401, 403}:
            raise errors.UpstreamUnauthorized(
                self._key,
                f"{self._name} refused the gateway's {self._credential} (HTTP {status})",
                status=status,
            )
        if status == 429:
            raise errors.UpstreamRateLimited(
                self._key,
                f"{self._name} is rate limiting the gateway",
                retry_after_s=retry_after_seconds(response.headers.get("retry-after")),
            )
        if status >= 500:
            raise errors.UpstreamUnavailable(
                self._key, f"{self._name} failed (HTTP {status})", status=status
            )
        if too_large is not None:
            raise errors.BadUpstreamResponse(
                self._key,
                f"{self._name} sent an answer that exceeded {too_large.limit} bytes",
                status=status,
            )
        return response

    async def _httpx_exchange(
        self,
        method: str,
        url: httpx.URL,
        headers: Mapping[str, str],
        content: bytes | None,
        limits: httpx.Timeout,
        max_bytes: int,
    ) -> Answer:
        """The exchange over httpx's API (any transport: its own, a mock in unit tests).

        The raw body is decoded here, not by httpx: httpx inflates each chunk it reads
        whole, and one chunk of a gzip bomb can inflate to gigabytes."""
        request = self._client.build_request(
            method, url, content=content, headers=headers, timeout=limits
        )
        response = await self._client.send(request, stream=True)
        try:
            status = response.status_code
            length = declared_length(response.headers.get("content-length"))
            if length is not None and length > max_bytes:
                raise AnswerTooLarge(max_bytes, status, response.headers)
            if response.is_stream_consumed:  # read by its transport (httpx.MockTransport)
                body = response.content
                if len(body) > max_bytes:
                    raise AnswerTooLarge(max_bytes, status, response.headers)
            else:
                body = await _read_at_most(response, max_bytes)
        except httpx.HTTPError as exc:
            raise CutShort(exc) from exc
        finally:
            await response.aclose()
        return Answer(status, response.headers, body)

    def _failure(self, exc: httpx.HTTPError, *, answered: bool) -> errors.UpstreamError:
        """What happened, in words free of URLs and secrets: only a time limit that ran out
        is a timeout; a refused, reset or closed connection is ``UpstreamUnavailable``."""
        name = self._name
        if isinstance(exc, httpx.ConnectTimeout):
            return errors.UpstreamTimeout(
                self._key, f"{name} did not accept a connection within {self._connect_s:g} s"
            )
        if isinstance(exc, httpx.PoolTimeout):  # the gateway's own connections all busy
            return errors.UpstreamTimeout(
                self._key, f"no connection to {name} came free within {self._timeout_s:g} s"
            )
        if isinstance(exc, httpx.TimeoutException):
            what = "finish its answer" if answered else "answer"
            return errors.UpstreamTimeout(
                self._key, f"{name} did not {what} within {self._timeout_s:g} s"
            )
        if not isinstance(exc, httpx.TransportError):
            return errors.BadUpstreamResponse(self._key, f"{name} sent an unreadable response")
        return errors.UpstreamUnavailable(self._key, f"{name} {_dropped(exc, answered)}")

    def json(self, response: Answer) -> object:
        """The response body parsed as JSON, or ``BadUpstreamResponse``."""
        try:
            payload: object = orjson.loads(response.content)
        except ValueError:
            raise errors.BadUpstreamResponse(self._key, f"{self._name} sent invalid JSON") from None
        return payload

    def unexpected(self, response: Answer) -> errors.BadUpstreamResponse:
        """The error for a status the adapter has no meaning for."""
        status = response.status_code
        return errors.BadUpstreamResponse(
            self._key,
            f"{self._name} answered with unexpected HTTP {status}",
            status=status,
        )


class BoundedBody:
    """An answer's body gathered as it is read, ``AnswerTooLarge`` as soon as it passes
    ``limit`` bytes (both exchanges read through one)."""

    def __init__(self, limit: int, status: int, headers: Mapping[str, str]) -> None:
        self._limit = limit
        self._status = status
        self._headers = headers
        self._pieces: list[bytes] = []
        self._size = 0

    def add(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._size > self._limit:
            raise AnswerTooLarge(self._limit, self._status, self._headers)
        self._pieces.append(piece)

    def value(self) -> bytes:
        pieces = self._pieces
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


async def _read_at_most(response: httpx.Response, max_bytes: int) -> bytes:
    """A streamed answer's body, decoded here in bounded steps (httpx inflates each chunk
    it reads whole), ``AnswerTooLarge`` as soon as it passes ``max_bytes``."""
    decoder = BoundedDecoder(response.headers.get("content-encoding"))
    body = BoundedBody(max_bytes, response.status_code, response.headers)
    async for raw in response.aiter_raw():
        for piece in decoder.decode(raw):
            body.add(piece)
    for piece in decoder.flush():
        body.add(piece)
    return body.value()


def _dropped(exc: httpx.TransportError, answered: bool) -> str:
    """How a connection failed, read from the exception and its causes (the OS error under
    the transport's, with either transport)."""
    causes: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(causes) < 10:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "refused the connection"
    if any(isinstance(c, ConnectionResetError) for c in causes):
        return "reset the connection"
    if isinstance(exc, httpx.ConnectError):
        return "could not be reached"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.ProxyError):
        return "could not be reached"
    if answered:
        return "closed the connection before its answer was complete"
    return "closed the connection before answering"


@lru_cache(maxsize=2048)
def request_url(url: str, params: tuple[tuple[str, str], ...] | None) -> httpx.URL:
    """``url`` with ``params`` as its query, exactly as httpx would send it (httpx replaces
    a query already in ``url`` with ``params``).

    Memoised (URLs are immutable): building a URL with its query is paid before the request
    leaves, and the same list page (first pages above all) is asked for again and again.
    """
    return httpx.URL(url) if params is None else httpx.URL(url, params=dict(params))


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


__all__ = [
    "DEFAULT_MAX_ANSWER_BYTES",
    "USER_AGENT",
    "Answer",
    "AnswerTooLarge",
    "BoundedBody",
    "BoundedDecoder",
    "CutShort",
    "Exchange",
    "UpstreamHttp",
    "declared_length",
    "json_body",
    "path_segment",
    "request_url",
    "retry_after_seconds",
]
