"""gzip: answers over 1 KiB are compressed for clients that accept it, nothing else is.

Real loopback HTTP; bodies are read raw (not decoded by the client) and decompressed here.
"""

from __future__ import annotations

import gzip
import json
import platform
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import BOOTSTRAP, Gateway, LogCapture, gateway_config
from tokengate.gateway import compression
from tokengate.gateway.app import create_app
from tokengate.gateway.compression import GZIP_OVER_BYTES, accepts_gzip
from tokengate.upstreams.loopback import serve_in_thread

# A large answer that needs no writes to set up: the schema's types and their fields.
LARGE = "{ __schema { types { name description fields { name description } } } }"
SMALL = "{ __typename }"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
        config = gateway_config(tmp_path_factory.mktemp("gzip"))
        with serve_in_thread(create_app(config)) as url:
            yield Gateway(url=url, admin_secret=BOOTSTRAP, config=config)


@pytest.fixture
def raw_client() -> Iterator[httpx.Client]:
    """A client that sends no Accept-Encoding of its own (httpx adds one by default)."""
    with httpx.Client(timeout=30) as client:
        del client.headers["accept-encoding"]
        yield client


def post(
    client: httpx.Client, gw: Gateway, query: str, headers: dict[str, str] | None = None
) -> tuple[httpx.Response, bytes]:
    """The answer and its body as it came over the wire (not decoded)."""
    request = client.build_request(
        "POST",
        f"{gw.url}/graphql",
        json={"query": query},
        headers={"Authorization": f"Bearer {gw.admin_secret}", **(headers or {})},
    )
    response = client.send(request, stream=True)
    try:
        wire = b"".join(response.iter_raw())
    finally:
        response.close()
    return response, wire


def data(body: bytes) -> Any:
    payload = json.loads(body)
    assert "errors" not in payload, payload["errors"]
    return payload["data"]


def test_large_answer_is_gzipped_when_accepted(gw: Gateway, raw_client: httpx.Client) -> None:
    _, plain_wire = post(raw_client, gw, LARGE)
    zipped, zipped_wire = post(
        raw_client, gw, LARGE, {"Accept-Encoding": "gzip, deflate", "X-Request-Id": "req-gz-1"}
    )
    assert len(plain_wire) > GZIP_OVER_BYTES
    assert zipped.status_code == 200
    assert zipped.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in zipped.headers["vary"].lower()
    assert int(zipped.headers["content-length"]) == len(zipped_wire) < len(plain_wire) / 2
    assert zipped.headers["x-request-id"] == "req-gz-1", "the request id survives compression"
    unzipped = gzip.decompress(zipped_wire)
    assert data(unzipped) == data(plain_wire)


def test_no_accept_encoding_gets_identity(gw: Gateway, raw_client: httpx.Client) -> None:
    for headers in (
        {},
        {"Accept-Encoding": "identity"},
        {"Accept-Encoding": "br"},
        {"Accept-Encoding": "gzip;q=0, identity"},
    ):
        response, wire = post(raw_client, gw, LARGE, headers)
        assert response.status_code == 200
        assert "content-encoding" not in response.headers, headers
        assert len(wire) > GZIP_OVER_BYTES
        assert data(wire)["__schema"]["types"]
        assert response.headers["x-request-id"]


def test_small_answer_is_not_gzipped(gw: Gateway, raw_client: httpx.Client) -> None:
    response, wire = post(raw_client, gw, SMALL, {"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert len(wire) <= GZIP_OVER_BYTES
    assert data(wire) == {"__typename": "Query"}


def test_access_log_sees_compressed_answers(
    gw: Gateway, raw_client: httpx.Client, captured_logs: LogCapture
) -> None:
    response, _ = post(raw_client, gw, LARGE, {"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    access = [line for line in captured_logs.lines if line.startswith("tokengate.access")]
    assert any("POST /graphql 200" in line for line in access), access


def _sized(raw_client: httpx.Client, gw: Gateway, size: int) -> str:
    """A query whose answer is ``size`` bytes: one aliased field, the alias padding it."""
    _, wire = post(raw_client, gw, "{ a: __typename }")
    return "{ a" + "a" * (size - len(wire)) + ": __typename }"


def test_threshold_is_over_one_kib(gw: Gateway, raw_client: httpx.Client) -> None:
    accepts = {"Accept-Encoding": "gzip"}
    for size, compressed in ((GZIP_OVER_BYTES, False), (GZIP_OVER_BYTES + 1, True)):
        plain = post(raw_client, gw, _sized(raw_client, gw, size))[1]
        assert len(plain) == size
        response, wire = post(raw_client, gw, _sized(raw_client, gw, size), accepts)
        assert (response.headers.get("content-encoding") == "gzip") is compressed, size
        assert (gzip.decompress(wire) if compressed else wire) == plain


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.8", True),
        ("x-gzip", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("gzip;q=nonsense", False),
        ("deflate, br", False),
        ("identity", False),
        ("", False),
        ("gzipped", False),
    ],
)
def test_accept_encoding_is_read_with_its_weights(header: str, accepted: bool) -> None:
    assert accepts_gzip(header) is accepted


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64", "aarch64", "arm64"),
    reason="isal has wheels for x86-64 and ARM64 only",
)
def test_answers_are_deflated_by_isal_where_it_has_wheels() -> None:
    """The dependency's marker installs isal on these machines: a missing or broken wheel
    must not silently fall back to the stdlib's slower zlib."""
    assert compression.deflate.__name__ == "isal.isal_zlib"
    assert compression.GZIP_LEVEL == 2
