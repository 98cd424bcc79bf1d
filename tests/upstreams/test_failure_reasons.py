"""Honest failure reasons: each way an upstream connection fails x both transports.

Real loopback HTTP to a simulator whose faults cut the connection the way a failing server
does (a TCP reset, a clean close, an answer cut short), a closed port for a refused
connection, and a hang for the one real timeout. A dropped connection is UNAVAILABLE and
says how it dropped, within milliseconds; only a time limit that ran out is TIMEOUT.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BOOTSTRAP, Gateway, gateway_config
from tokengate.gateway.app import create_app
from tokengate.gateway.demo import Simulated, simulators
from tokengate.gateway.upstream_factory import TRANSPORT_ENV, http_client
from tokengate.upstreams import errors
from tokengate.upstreams.http_edge import UpstreamHttp
from tokengate.upstreams.loopback import free_port, serve_in_thread

TRANSPORTS = ["aiohttp", "httpx"]
CLOSED, SIM, FULL = "closed port", "simulator", "full backlog"
TIMEOUT_S = 5.0  # far above what a dropped connection may take to be reported
HANG_TIMEOUT_S = 0.3
DROPPED_WITHIN_S = 0.5


@dataclasses.dataclass(frozen=True)
class Case:
    fault: dict[str, Any] | None
    error: type[errors.UpstreamError]
    reason: str
    code: str
    says: str  # the message after the source's name
    # Where the request goes: the simulator (with ``fault``), a port nothing listens on, or
    # a listener whose backlog is full (a connection attempt gets no answer).
    target: str = SIM


CASES: dict[str, Case] = {
    "refused": Case(
        None,
        errors.UpstreamUnavailable,
        "UNAVAILABLE",
        "UPSTREAM_UNAVAILABLE",
        "refused the connection",
        target=CLOSED,
    ),
    "reset": Case(
        {"kind": "reset"},
        errors.UpstreamUnavailable,
        "UNAVAILABLE",
        "UPSTREAM_UNAVAILABLE",
        "reset the connection",
    ),
    "close": Case(
        {"kind": "close"},
        errors.UpstreamUnavailable,
        "UNAVAILABLE",
        "UPSTREAM_UNAVAILABLE",
        "closed the connection before answering",
    ),
    "mid_reply": Case(
        {"kind": "mid_reply"},
        errors.UpstreamUnavailable,
        "UNAVAILABLE",
        "UPSTREAM_UNAVAILABLE",
        "closed the connection before its answer was complete",
    ),
    "hang": Case(
        {"kind": "hang", "hang_s": 1.5},
        errors.UpstreamTimeout,
        "TIMEOUT",
        "UPSTREAM_TIMEOUT",
        f"did not answer within {HANG_TIMEOUT_S:g} s",
    ),
    "stalled-mid-reply": Case(
        {"kind": "mid_reply", "stall_s": 1.5},
        errors.UpstreamTimeout,
        "TIMEOUT",
        "UPSTREAM_TIMEOUT",
        f"did not finish its answer within {HANG_TIMEOUT_S:g} s",
    ),
    "connect-timeout": Case(
        None,
        errors.UpstreamTimeout,
        "TIMEOUT",
        "UPSTREAM_TIMEOUT",
        f"did not accept a connection within {HANG_TIMEOUT_S:g} s",
        target=FULL,
    ),
}


@pytest.fixture(scope="module")
def full_backlog() -> Iterator[str]:
    """The URL of a listener that never accepts and whose backlog is full: Linux drops
    further connection attempts unanswered, so connecting runs into its time limit."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            for filler in fillers:
                filler.close()


@pytest.fixture(scope="module")
def amper() -> Iterator[Simulated]:
    with simulators(("amper",), count=3) as running:
        [sim] = running.values()
        yield sim


@pytest.fixture
def sim(amper: Simulated) -> Iterator[Simulated]:
    """The simulator with an empty log and no faults, before and after the test."""
    amper.state.control.requests.clear()
    amper.state.control.set_faults([])
    yield amper
    amper.state.control.set_faults([])


def _timeout(case: Case) -> float:
    return HANG_TIMEOUT_S if case.reason == "TIMEOUT" else TIMEOUT_S


def _url(case: Case, sim: Simulated, full_backlog: str) -> str:
    base = {SIM: sim.url, CLOSED: f"http://127.0.0.1:{free_port()}", FULL: full_backlog}
    return f"{base[case.target]}/v1/access_tokens"


# Each case on a new connection; the simulator's also on a kept-alive one from an earlier
# answer (how most upstream requests go out).
EDGE_CASES = [
    pytest.param(name, pooled, id=f"{name}-{'pooled' if pooled else 'new'}-connection")
    for name, case in CASES.items()
    for pooled in ((False, True) if case.target == SIM else (False,))
]


@pytest.mark.parametrize(("case_name", "pooled"), EDGE_CASES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_edge_reports_what_happened(
    sim: Simulated,
    full_backlog: str,
    monkeypatch: pytest.MonkeyPatch,
    transport: str,
    case_name: str,
    pooled: bool,
) -> None:
    case = CASES[case_name]
    monkeypatch.setenv(TRANSPORT_ENV, transport)
    client = http_client()
    name = sim.source.name
    edge = UpstreamHttp(
        key="music",
        name=name,
        client=client,
        timeout_s=_timeout(case),
        connect_timeout_s=_timeout(case),
        headers={},
        credential="API token",
    )
    url = _url(case, sim, full_backlog)
    try:
        if pooled:
            assert (await client.get(f"{sim.url}/v1/access_tokens")).status_code == 401
        sim.state.control.requests.clear()
        sim.state.control.set_faults([case.fault] if case.fault else [])
        started = time.monotonic()
        with pytest.raises(errors.UpstreamError) as caught:
            await edge.send("GET", url)
        elapsed = time.monotonic() - started
    finally:
        await client.aclose()
    error = caught.value
    assert type(error) is case.error
    assert (error.reason, error.code, error.source) == (case.reason, case.code, "music")
    assert error.message == f"{name} {case.says}"
    assert error.status is None, "no answer came, so no status"
    if case.reason == "TIMEOUT":
        assert HANG_TIMEOUT_S * 0.9 <= elapsed < HANG_TIMEOUT_S + 1.5
    else:
        assert elapsed < DROPPED_WITHIN_S, f"reported after {elapsed * 1000:.0f} ms"
    # Sent once: no transport asks again behind the retry policy's back.
    assert len(sim.state.control.requests) == (1 if case.fault else 0)


def test_unfaulted_request_succeeds(sim: Simulated) -> None:
    """The control: without a fault the same request is answered (so the cases above fail
    because of the fault, not the request)."""
    token = sim.info["token"]
    response = httpx.get(
        f"{sim.url}/v1/access_tokens", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200 and response.json()["data"]


# The source each target is: the simulator's own, or one of these two.
KEYS = {CLOSED: "gone", FULL: "stuck"}


@pytest.fixture(scope="module", params=TRANSPORTS)
def gateway(
    request: pytest.FixtureRequest,
    amper: Simulated,
    full_backlog: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    """A gateway over the simulator (no retries: one attempt, timed), a source whose port
    nothing listens on and one that accepts no connection, with either transport."""
    home: Path = tmp_path_factory.mktemp(f"reasons-{request.param}")
    # The call's own deadline (total_timeout_s) later than the request's time limit: the
    # limit that runs out is the request's, whose message the test reads.
    limits = {
        "timeout_s": HANG_TIMEOUT_S,
        "connect_timeout_s": HANG_TIMEOUT_S,
        "total_timeout_s": HANG_TIMEOUT_S + 2,
        "retries": 0,
    }
    live = dataclasses.replace(amper.source, **limits)
    gone = dataclasses.replace(live, key=KEYS[CLOSED], base_url=f"http://127.0.0.1:{free_port()}")
    stuck = dataclasses.replace(live, key=KEYS[FULL], base_url=full_backlog)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
        mp.setenv(TRANSPORT_ENV, request.param)
        config = gateway_config(home, sources=(live, gone, stuck))
        with serve_in_thread(create_app(config)) as url:
            gateway = Gateway(url=url, admin_secret=BOOTSTRAP, config=config)
            # One page first, over the live source: the timed cases then measure how a
            # failure is reported, not a new process's first request (a second or more on
            # a busy machine).
            warm = gateway.post(PAGE, {"sources": [live.key]})
            assert warm.status_code == 200 and "errors" not in warm.json(), warm.text
            yield gateway


PAGE = (
    "query ($sources: [String!]) { tokens(first: 5, filter: {sources: $sources}) "
    "{ edges { node { id } } failedSources { source { key } reason } } }"
)


@pytest.mark.parametrize("case_name", list(CASES))
def test_graphql_reports_reason_code_and_message(
    gateway: Gateway, sim: Simulated, case_name: str
) -> None:
    case = CASES[case_name]
    key = KEYS.get(case.target, sim.source.key)
    sim.state.control.set_faults([case.fault] if case.fault else [])
    started = time.monotonic()
    response = gateway.post(PAGE, {"sources": [key]})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    body = response.json()
    tokens = body["data"]["tokens"]
    assert tokens["failedSources"] == [{"source": {"key": key}, "reason": case.reason}]
    [error] = body["errors"]
    assert error["extensions"]["code"] == case.code
    assert error["extensions"]["source"] == key
    assert error["message"] == f"{sim.source.name} {case.says}"
    assert "127.0.0.1" not in response.text, "no upstream address reaches the caller"
    if case.reason == "TIMEOUT":
        assert HANG_TIMEOUT_S * 0.9 <= elapsed < HANG_TIMEOUT_S + 1.5
    else:
        assert elapsed < DROPPED_WITHIN_S, f"answered after {elapsed * 1000:.0f} ms"


def test_simulator_refuses_an_unknown_fault_kind(sim: Simulated) -> None:
    """A misspelt kind is refused (HTTP 400), not silently served as an HTTP 500 fault."""
    faults = f"{sim.url}/_sim/faults"
    assert httpx.post(faults, json={"faults": [{"kind": "closed"}]}).status_code == 400
    assert sim.state.control.faults == []
    kinds = [{"kind": k} for k in ("reset", "close", "mid_reply")]
    assert httpx.post(faults, json={"faults": kinds}).status_code == 204
    assert [f.kind for f in sim.state.control.faults] == ["reset", "close", "mid_reply"]
