"""Forged cursors, over loopback HTTP against the simulators: a cursor the gateway did not
issue is BAD_USER_INPUT before any upstream request, never an upstream failure that trips a
source's circuit breaker for every caller, never a 500."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BOOTSTRAP, Gateway, LogCapture, gateway_config
from tokengate.gateway.app import create_app
from tokengate.gateway.demo import Simulated
from tokengate.upstreams.loopback import serve_in_thread
from tokengate.upstreams.simulation import Fault

pytestmark = pytest.mark.slow

CREATE = """mutation($input: CreateTokenInput!) { createToken(input: $input) { secret } }"""
PAGE = """query($c: String, $n: Int) {
  tokens(first: $n, after: $c, orderBy: {field: CREATED_AT, direction: ASC}) {
    edges { node { id } } pageInfo { endCursor } } }"""
HEALTH = "{ sources { key health } }"
TAG_BYTES = 32  # HMAC-SHA256
FORGED_AMPER_OFFSET = 999999
FORGED_LOSANT_PAGE = 9999999


def _serve(
    sims: dict[str, Simulated], home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    # Each gateway's server key is its own key file (tests compare gateways' keys).
    monkeypatch.delenv("TOKENGATE_SECRET_KEY", raising=False)
    config = gateway_config(home, sources=tuple(s.source for s in sims.values()))
    with serve_in_thread(create_app(config)) as url:
        yield Gateway(url=url, admin_secret=BOOTSTRAP, config=config)


@pytest.fixture
def gw(
    sims: dict[str, Simulated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    for sim in sims.values():
        sim.state.control.faults = []
    yield from _serve(sims, tmp_path, monkeypatch)


def bound_reader(gw: Gateway, source: str) -> str:
    """A read-only internal token that may use ``source`` only."""
    created = gw.data(
        CREATE,
        {
            "input": {
                "source": "internal",
                "name": f"{source} reader",
                "scopes": ["tokens:read"],
                "allowedSources": [source],
            }
        },
    )
    secret: str = created["createToken"]["secret"]
    return secret


def first_cursor(gw: Gateway, secret: str, size: int = 4) -> str:
    page = gw.data(PAGE, {"n": size}, secret=secret)["tokens"]
    cursor: str = page["pageInfo"]["endCursor"]
    return cursor


# -- the attacker's side: no key, only the cursors the gateway handed out ---------------------


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_payload(cursor: str) -> dict[str, Any]:
    """The JSON inside a cursor, as anyone can read it (a signed cursor ends in its MAC)."""
    raw = _b64decode(cursor)
    try:
        payload: dict[str, Any] = json.loads(raw)
    except ValueError:
        payload = json.loads(raw[:-TAG_BYTES])
    return payload


def reencoded(payload: dict[str, Any]) -> str:
    """A payload encoded the way the gateway's cursors look, without any key."""
    return _b64encode(json.dumps(payload).encode())


def with_position(cursor: str, source: str, position: str) -> str:
    payload = read_payload(cursor)
    assert source in payload["p"], payload
    payload["p"][source] = position
    return reencoded(payload)


def amper_position(cursor: str, offset: int) -> str:
    sort, _, token_id = read_payload(cursor)["p"]["amper"].split(":")
    return f"{sort}:{offset}:{token_id}"


def losant_position_for_page(page: int, per_page: int = 100) -> str:
    # The adapter reads page (offset - 1) // perPage to check an offset hint.
    return f"0:{page * per_page + 1}"


def code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors")
    if not errors:
        return None
    value: str = errors[0]["extensions"]["code"]
    return value


def health(gw: Gateway) -> dict[str, str]:
    sources = gw.data(HEALTH)["sources"]
    return {s["key"]: s["health"] for s in sources}


# -- (a) forged resume hints never reach an upstream ------------------------------------------


def test_forged_amper_offset_is_refused_before_any_upstream_request(
    gw: Gateway, sims: dict[str, Simulated]
) -> None:
    reader = bound_reader(gw, "amper")
    cursor = first_cursor(gw, reader)
    forged = with_position(cursor, "amper", amper_position(cursor, FORGED_AMPER_OFFSET))
    sims["amper"].state.control.requests.clear()
    body = gw.gql(PAGE, {"c": forged, "n": 4}, secret=reader)
    assert code(body) == "BAD_USER_INPUT", body
    assert sims["amper"].state.control.requests == []


def test_forged_losant_page_is_refused_before_any_upstream_request(
    gw: Gateway, sims: dict[str, Simulated]
) -> None:
    reader = bound_reader(gw, "fleet")
    cursor = first_cursor(gw, reader, size=6)
    forged = with_position(cursor, "fleet", losant_position_for_page(FORGED_LOSANT_PAGE))
    control = sims["fleet"].state.control
    control.requests.clear()
    body = gw.gql(PAGE, {"c": forged, "n": 4}, secret=reader)
    asked = [r.query for r in control.requests]
    assert not any(f"page={FORGED_LOSANT_PAGE}" in q for q in asked), asked
    assert code(body) == "BAD_USER_INPUT", body
    assert asked == []


# -- (b) forged cursors never open a source's circuit for everyone ----------------------------


def test_forged_cursors_do_not_trip_the_breaker_for_other_callers(
    gw: Gateway, sims: dict[str, Simulated]
) -> None:
    reader = bound_reader(gw, "amper")
    cursor = first_cursor(gw, reader)
    forged = with_position(cursor, "amper", amper_position(cursor, FORGED_AMPER_OFFSET))
    codes = [code(gw.gql(PAGE, {"c": forged, "n": 4}, secret=reader)) for _ in range(7)]
    # Another caller, right after: Amper still answers, its circuit is closed.
    fine = gw.gql('{ tokens(first: 5, filter: {sources: ["amper"]}) { edges { node { id } } } }')
    assert "errors" not in fine, fine["errors"]
    assert len(fine["data"]["tokens"]["edges"]) == 5
    assert health(gw)["amper"] == "OK"
    assert codes == ["BAD_USER_INPUT"] * 7


def test_upstream_answers_the_caller_caused_do_not_trip_the_breaker(
    gw: Gateway, sims: dict[str, Simulated]
) -> None:
    """A 4xx other than 401/403/408/429 says the upstream is up: it never opens the circuit
    (the gateway's own 5xx-and-timeouts rule is unchanged: see the next test)."""
    amper = sims["amper"].state.control
    amper.faults = [Fault(kind="status", status=400, path_prefix="/v1/access_tokens", times=7)]
    query = '{ tokens(first: 5, filter: {sources: ["amper"]}) { totalCount } }'
    for _ in range(7):
        body = gw.gql(query)
        assert code(body) not in (None, "UPSTREAM_UNAVAILABLE"), body
    assert health(gw)["amper"] == "OK"
    assert "errors" not in gw.gql(query)


def test_upstream_failures_still_open_the_circuit(gw: Gateway, sims: dict[str, Simulated]) -> None:
    amper = sims["amper"].state.control
    amper.faults = [Fault(kind="status", status=500, path_prefix="/v1/access_tokens", times=5)]
    query = '{ tokens(first: 5, filter: {sources: ["amper"]}) { totalCount } }'
    for _ in range(5):
        assert code(gw.gql(query)) == "UPSTREAM_UNAVAILABLE"
    assert health(gw)["amper"] == "DOWN"


# -- (c) only the cursors this gateway issued ---------------------------------------------------


def _flip_in_payload(cursor: str) -> str:
    """One byte of the payload changed, still valid JSON: another token id."""
    raw = bytearray(_b64decode(cursor))
    token_id = read_payload(cursor)["k"][2].encode()
    at = bytes(raw).index(b'"' + token_id + b'"') + 1
    raw[at] = ord("a") if raw[at] != ord("a") else ord("b")
    return _b64encode(bytes(raw))


def _tampered(cursor: str) -> dict[str, str]:
    last = cursor[-1]
    payload = read_payload(cursor)
    payload["k"][2] = "0" + payload["k"][2][1:]
    return {
        "one payload byte": _flip_in_payload(cursor),
        "last character": cursor[:-1] + ("A" if last != "A" else "B"),
        "truncated": cursor[:-4],
        "re-encoded payload": reencoded(payload),
        "re-encoded as version 1": reencoded({**read_payload(cursor), "v": 1}),
        "padded": cursor + "==",
    }


def test_tampered_cursors_are_refused(gw: Gateway, sims: dict[str, Simulated]) -> None:
    reader = bound_reader(gw, "amper")
    cursor = first_cursor(gw, reader)
    assert "errors" not in gw.gql(PAGE, {"c": cursor, "n": 4}, secret=reader)
    sims["amper"].state.control.requests.clear()
    for how, forged in _tampered(cursor).items():
        body = gw.gql(PAGE, {"c": forged, "n": 4}, secret=reader)
        assert code(body) == "BAD_USER_INPUT", (how, body)
    assert sims["amper"].state.control.requests == []


def test_cursors_hold_across_gateways_sharing_the_server_key_only(
    sims: dict[str, Simulated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued: dict[str, str] = {}
    for name in ("first", "other"):
        home = tmp_path / name
        home.mkdir()
        for gateway in _serve(sims, home, monkeypatch):
            issued[name] = first_cursor(gateway, gateway.admin_secret)
    # A restart with the same key file: its cursors still hold.
    for gateway in _serve(sims, tmp_path / "first", monkeypatch):
        assert "errors" not in gateway.gql(PAGE, {"c": issued["first"], "n": 4})
        body = gateway.gql(PAGE, {"c": issued["other"], "n": 4})
        assert code(body) == "BAD_USER_INPUT", body


def test_audit_cursors_are_signed_too(gw: Gateway) -> None:
    for n in range(3):
        gw.data(CREATE, {"input": {"source": "internal", "name": f"audited {n}"}})
    query = "query($c: String) { auditEvents(first: 1, after: $c) { edges { cursor } } }"
    [edge] = gw.data(query)["auditEvents"]["edges"]
    assert "errors" not in gw.gql(query, {"c": edge["cursor"]})
    token_cursor = first_cursor(gw, gw.admin_secret)
    # One character changed (never to itself: "A" when it ends in "A" was the cursor again).
    altered = edge["cursor"][:-1] + ("B" if edge["cursor"].endswith("A") else "A")
    for forged in (_b64encode(b"audit:2"), token_cursor, altered):
        assert code(gw.gql(query, {"c": forged})) == "BAD_USER_INPUT", forged
    # Nor does an audit cursor pass as a token cursor.
    assert code(gw.gql(PAGE, {"c": edge["cursor"], "n": 2})) == "BAD_USER_INPUT"


# -- (d) extreme datetimes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "instant", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"], ids=["year1", "9999"]
)
def test_extreme_datetimes_are_bad_input_without_a_traceback(
    gw: Gateway, captured_logs: LogCapture, instant: str
) -> None:
    payload = read_payload(first_cursor(gw, gw.admin_secret))
    payload["k"][0] = {"t": instant}
    body = gw.gql(PAGE, {"c": reencoded(payload), "n": 4})
    assert code(body) == "BAD_USER_INPUT", body
    assert "Traceback" not in captured_logs.text
    assert "OverflowError" not in captured_logs.text


# -- defence in depth: even a cursor signed with the gateway's key (a leaked key, a bug) ------


def resealed(gw: Gateway, payload: dict[str, Any]) -> str:
    from tests.cursor_forgery import codec_of, sealed

    return sealed(codec_of(gw), payload)


def test_signed_impossible_hints_are_refused_before_any_upstream_request(
    gw: Gateway, sims: dict[str, Simulated]
) -> None:
    for source, size in (("amper", 4), ("fleet", 6)):
        reader = bound_reader(gw, source)
        cursor = first_cursor(gw, reader, size)
        payload = read_payload(cursor)
        if source == "amper":
            payload["p"]["amper"] = amper_position(cursor, FORGED_AMPER_OFFSET)
        else:
            payload["p"]["fleet"] = losant_position_for_page(FORGED_LOSANT_PAGE)
        forged = resealed(gw, payload)
        control = sims[source].state.control
        control.requests.clear()
        for _ in range(7):
            body = gw.gql(PAGE, {"c": forged, "n": 4}, secret=reader)
            assert code(body) == "BAD_USER_INPUT", (source, body)
        assert control.requests == [], source
    assert set(health(gw).values()) == {"OK"}


@pytest.mark.parametrize(
    ("instant", "valid"),
    [
        ("0001-01-01T00:00:00+14:00", False),
        ("9999-12-31T23:59:59-14:00", False),
        ("0001-01-01T00:00:00+00:00", True),
        ("9999-12-31T23:59:59.999999+00:00", True),
    ],
    ids=["year1+14", "9999-14", "year1-utc", "9999-utc"],
)
def test_signed_extreme_datetimes_never_overflow(
    gw: Gateway, captured_logs: LogCapture, instant: str, valid: bool
) -> None:
    payload = read_payload(first_cursor(gw, gw.admin_secret))
    payload["k"][0] = {"t": instant}
    payload["p"] = {}
    body = gw.gql(PAGE, {"c": resealed(gw, payload), "n": 4})
    assert code(body) == (None if valid else "BAD_USER_INPUT"), body
    assert "Traceback" not in captured_logs.text
    assert "OverflowError" not in captured_logs.text
