"""GET /metrics over loopback HTTP: the counters are exactly the requests a test made (ok,
failed upstream, refused for credentials, limits and the rate limit), labels stay bounded
and free of secrets, and the failure of an upstream call is one structured warning line."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BOOTSTRAP, Gateway, gateway_config, on_root_logger
from tokengate.gateway.app import create_app
from tokengate.gateway.config import LimitsConfig, ServerConfig
from tokengate.gateway.demo import PROVIDERS, Simulated, simulators
from tokengate.gateway.logs import JsonFormatter, RedactingFilter
from tokengate.gateway.metrics import MAX_OPERATION_NAMES, version
from tokengate.upstreams.loopback import serve_in_thread
from tokengate.upstreams.oauth.simulator import WALK_USER

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

LIST = (
    "query ListAll($user: String!) { tokens(first: 30, filter: {userId: $user}) "
    "{ edges { node { id } } failedSources { source { key } reason } } }"
)


def scrape(url: str) -> Samples:
    """Every sample of /metrics by (name, sorted labels); the text must parse."""
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def values(samples: Samples, name: str) -> dict[tuple[str, ...], float]:
    """The non-zero samples of one series, keyed by their label values in label order."""
    return {
        tuple(v for _, v in labels): value
        for (sample, labels), value in samples.items()
        if sample == name and value
    }


class Records(logging.Handler):
    """Every record, and its JSON line as served (formatted when emitted, in the request)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.records: list[logging.LogRecord] = []
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def records() -> Iterator[Records]:
    with on_root_logger(Records()) as handler:
        yield handler


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, Simulated]]:
    with simulators(PROVIDERS, count=5) as running:
        yield running


BURST = 4


@pytest.fixture
def gateway_over(
    sims: dict[str, Simulated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    """The gateway over every simulator; the admin token may make ``BURST`` requests."""
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    for sim in sims.values():
        sim.state.control.set_faults([])
    sources = tuple(dataclasses.replace(s.source, retries=0) for s in sims.values())
    limits = LimitsConfig(rate_per_s=0.001, burst=BURST)
    config = gateway_config(tmp_path, sources=sources, limits=limits)
    with serve_in_thread(create_app(config)) as url:
        yield Gateway(url=url, admin_secret=BOOTSTRAP, config=config)
    for sim in sims.values():
        sim.state.control.set_faults([])


def test_counters_are_the_requests_made(
    gateway_over: Gateway, sims: dict[str, Simulated], records: Records
) -> None:
    gw = gateway_over
    keys = list(sims)
    [amper] = [k for k, s in sims.items() if s.provider == "amper"]
    before = scrape(gw.url)
    assert values(before, "tokengate_graphql_requests_total") == {}
    assert values(before, "tokengate_build_info") == {(version(),): 1.0}

    # Two answers from every source; then one with Amper failing (HTTP 500, not retried).
    for _ in range(2):
        body = gw.gql(LIST, {"user": WALK_USER})
        assert "errors" not in body and body["data"]["tokens"]["failedSources"] == []
    sims[amper].state.control.set_faults([{"kind": "status", "status": 500}])
    body = gw.gql(LIST, {"user": WALK_USER})
    sims[amper].state.control.set_faults([])
    assert body["data"]["tokens"]["failedSources"] == [
        {"source": {"key": amper}, "reason": "UNAVAILABLE"}
    ]
    # Refused before execution: a document that does not validate (the 4th request).
    assert gw.gql("{ nothingHere }")["errors"][0]["extensions"]["code"] == (
        "GRAPHQL_VALIDATION_FAILED"
    )
    # Refused for credentials: none, not a bearer, unknown.
    url = f"{gw.url}/graphql"
    query = {"query": "query Hidden { tokens { totalCount } }"}
    assert httpx.post(url, json=query).status_code == 401
    assert httpx.post(url, json=query, headers={"Authorization": "Basic abc"}).status_code == 401
    unknown = {"Authorization": "Bearer tg_" + "u" * 43}
    assert httpx.post(url, json=query, headers=unknown).status_code == 401
    # Over the rate limit (the burst is spent): twice.
    for _ in range(2):
        body = gw.gql(LIST, {"user": WALK_USER})
        assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"

    after = scrape(gw.url)
    assert values(after, "tokengate_graphql_requests_total") == {
        ("ListAll", "ok"): 2,
        ("ListAll", "error"): 1,
        ("anonymous", "refused"): 1 + 3 + 2,
    }
    assert values(after, "tokengate_graphql_request_duration_seconds_count") == {
        ("ListAll",): 3,
        ("anonymous",): 6,
    }
    assert values(after, "tokengate_graphql_requests_in_flight") == {}
    expected = {("ok", k): 3.0 for k in ["internal", *keys]}
    expected[("ok", amper)] = 2
    expected[("unavailable", amper)] = 1
    assert values(after, "tokengate_upstream_requests_total") == expected
    assert values(after, "tokengate_upstream_request_duration_seconds_count") == {
        (k,): 3.0 for k in ["internal", *keys]
    }
    # One failure so far: Amper is degraded (1), the others ok (0); the store has no breaker.
    health = {labels[0][1]: v for (n, labels), v in after.items() if n == "tokengate_source_health"}
    assert health == {k: (1.0 if k == amper else 0.0) for k in keys}
    assert values(after, "tokengate_auth_failures_total") == {
        ("missing",): 1,
        ("malformed",): 1,
        ("unknown",): 1,
    }
    assert values(after, "tokengate_rate_limited_total") == {(): 2}

    # The failed call is one warning line with its fields (request_id comes from the
    # formatter, as for every line within a request).
    [failed] = [r for r in records.records if r.name == "tokengate.upstream"]
    assert failed.levelno == logging.WARNING
    assert failed.fields == {  # type: ignore[attr-defined]
        "source": amper,
        "reason": "unavailable",
        "status": 500,
        "duration_ms": pytest.approx(failed.fields["duration_ms"]),  # type: ignore[attr-defined]
    }
    assert 0 < failed.fields["duration_ms"] < 5000  # type: ignore[attr-defined]
    line = records.lines[records.records.index(failed)]
    assert line["level"] == "warning" and line["source"] == amper and line["status"] == 500
    assert line["reason"] == "unavailable" and isinstance(line["duration_ms"], float)
    assert len(line["request_id"]) == 32
    # Access lines: structured fields, the operation's name from the parsed document.
    access = [line for line in records.lines if line["logger"] == "tokengate.access"]
    graphql = [a for a in access if a["path"] == "/graphql"]
    assert len(graphql) == 9
    assert {a["operation_name"] for a in graphql} == {"ListAll", None}
    assert {a["status"] for a in graphql} == {200, 401}
    assert all(a["method"] == "POST" and a["duration_ms"] >= 0 for a in graphql)
    assert line["request_id"] in {a["request_id"] for a in graphql}


def test_labels_hold_no_secret_user_or_query_text(gateway_over: Gateway) -> None:
    gw = gateway_over
    user = "secret-user-" + "q" * 8
    made = gw.data(
        'mutation { createToken(input: {source: "internal", name: "bound", '
        'scopes: ["tokens:read"], subject: "SUBJECT"}) { secret token { id } } }'.replace(
            "SUBJECT", user
        )
    )["createToken"]
    text = 'query Probe { tokens(first: 5, filter: {name: "needle-in-query-text"}) { totalCount } }'
    response = gw.post(text, secret=made["secret"])
    assert response.status_code == 200
    gw.post("{ __typename }", secret="tg_" + "z" * 43)  # unknown secret
    metrics = httpx.get(f"{gw.url}/metrics").text
    for forbidden in (
        made["secret"],
        made["token"]["id"],
        user,
        BOOTSTRAP,
        "needle-in-query-text",
        "tg_" + "z" * 43,
        "__typename",
    ):
        assert forbidden not in metrics
    assert 'operation_name="Probe"' in metrics


def test_operation_names_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    config = gateway_config(tmp_path)
    with serve_in_thread(create_app(config)) as url:
        auth = {"Authorization": f"Bearer {BOOTSTRAP}"}
        with httpx.Client(base_url=url, headers=auth) as client:

            def post(payload: dict[str, Any]) -> httpx.Response:
                return client.post("/graphql", json=payload)

            for n in range(MAX_OPERATION_NAMES + 5):
                body = post({"query": f"query Op{n} {{ __typename }}"}).json()
                assert body == {"data": {"__typename": "Query"}}
            assert post({"query": "{ __typename }"}).json() == {"data": {"__typename": "Query"}}
            body = post({"query": "query Real { __typename }"}).json()
            assert body == {"data": {"__typename": "Query"}}
            # An operationName that names no operation of the document is no label.
            response = post({"query": "query Real { __typename }", "operationName": "Invented"})
            assert response.status_code == 400 and "errors" in response.json()
        counts = values(scrape(url), "tokengate_graphql_requests_total")
    names = {name for name, _ in counts}
    assert len(names - {"anonymous", "other"}) == MAX_OPERATION_NAMES
    assert counts[("other", "ok")] == 5 + 1  # five more names, and Real
    assert counts[("anonymous", "ok")] == 1
    assert counts[("anonymous", "refused")] == 1
    assert "Invented" not in names


def test_metrics_off_is_404(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    config = gateway_config(tmp_path, server=ServerConfig(metrics=False))
    with serve_in_thread(create_app(config)) as url:
        assert httpx.get(f"{url}/metrics").status_code == 404
        gw = Gateway(url=url, admin_secret=BOOTSTRAP, config=config)
        assert gw.data("{ __typename }") == {"__typename": "Query"}


def test_structured_fields_are_redacted() -> None:
    secret = "tg_" + "s" * 43
    record = logging.LogRecord("tokengate.test", logging.WARNING, __file__, 1, "m", None, None)
    record.fields = {  # type: ignore[attr-defined]
        "detail": f"sent Bearer {secret}",
        "note": f"the key {secret} leaked",
        "client_secret": "plain-value-1234",
        "count": 3,
        "level": "forged",
    }
    assert RedactingFilter().filter(record)
    line = JsonFormatter().format(record)
    assert secret not in line and "plain-value-1234" not in line
    payload = json.loads(line)
    assert payload["detail"] == "sent Bearer [REDACTED]"
    assert payload["note"] == "the key tg_[REDACTED] leaked"
    assert payload["client_secret"] == "[REDACTED]"
    assert payload["count"] == 3
    assert payload["level"] == "warning"  # a field never replaces the line's own keys
    # The formatter redacts on its own too (a handler without the filter).
    bare = logging.LogRecord("tokengate.test", logging.INFO, __file__, 1, "m", None, None)
    bare.fields = {"detail": f"Bearer {secret}"}  # type: ignore[attr-defined]
    assert secret not in JsonFormatter().format(bare)


def _graphql_requests_per_worker(metrics_dir: Path) -> dict[int, float]:
    """Each worker's own count of GraphQL requests, read from its file in the directory."""
    from prometheus_client.mmap_dict import MmapedDict

    counts: dict[int, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        counts[pid] = sum(
            value
            for key, value, _ts, _pos in MmapedDict.read_all_values_from_file(str(path))
            if json.loads(key)[1] == "tokengate_graphql_requests_total"
        )
    return counts


@pytest.mark.slow
def test_workers_report_their_sum(tmp_path: Path) -> None:
    """`serve --workers 2`: a private (0700) multiprocess directory per run, removed after
    it; whichever worker answers /metrics shows the requests both served."""
    import os
    import subprocess
    import sys
    import time

    from tests.conftest import wait_until_up
    from tokengate.upstreams.loopback import free_port

    secret = "workers-metrics-token-0123456789"
    (tmp_path / "tg.toml").write_text('[store]\nurl = "sqlite:///tg.db"\n')
    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    log = (tmp_path / "serve.log").open("w+")
    env = {**os.environ, "TOKENGATE_BOOTSTRAP_TOKEN": secret, "TMPDIR": str(temp)}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "inherited")  # ignored: never inherited
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokengate.gateway.cli",
            "serve",
            "--config",
            "tg.toml",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60

        def ready() -> int:
            log.seek(0)
            return log.read().count("tokengate ready")

        while ready() < 2:
            assert process.poll() is None and time.monotonic() < deadline, "workers not up"
            time.sleep(0.2)
        wait_until_up(url, process)
        [metrics_dir] = temp.glob("tokengate-metrics-*")
        assert metrics_dir.stat().st_mode & 0o777 == 0o700
        made = 0
        auth = {"Authorization": f"Bearer {secret}"}
        query = {"query": "query Sum { tokens { totalCount } }"}
        # New connections until both workers have answered some (the kernel spreads them).
        while (
            made < 20
            or len([c for c in _graphql_requests_per_worker(metrics_dir).values() if c]) < 2
        ):
            assert made < 400, _graphql_requests_per_worker(metrics_dir)
            response = httpx.post(f"{url}/graphql", json=query, headers=auth)
            assert response.json() == {"data": {"tokens": {"totalCount": 1}}}
            made += 1
        assert httpx.post(f"{url}/graphql", json=query).status_code == 401
        for _ in range(6):  # fresh connections: either worker may answer
            samples = scrape(url)
            assert values(samples, "tokengate_graphql_requests_total") == {
                ("Sum", "ok"): made,
                ("anonymous", "refused"): 1,
            }
            assert values(samples, "tokengate_upstream_requests_total") == {
                ("ok", "internal"): made
            }
            assert values(samples, "tokengate_auth_failures_total") == {("missing",): 1}
            assert values(samples, "tokengate_graphql_requests_in_flight") == {}
            assert values(samples, "tokengate_build_info") == {(version(),): 1}
        assert not (tmp_path / "inherited").exists()
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert not metrics_dir.exists()
    log.seek(0)
    assert "Traceback" not in log.read()


@pytest.fixture
def unlimited_over(
    sims: dict[str, Simulated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    """The gateway over every simulator, no rate limit, breakers probing after 1.5 s (room for a loaded machine between the opening and the fail-fast call)."""
    import functools

    from tokengate.upstreams.resilience import TrafficPolicy

    monkeypatch.setattr(
        "tokengate.gateway.upstream_factory.TrafficPolicy",
        functools.partial(TrafficPolicy, reset_after_s=1.5),
    )
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    for sim in sims.values():
        sim.state.control.set_faults([])
    sources = tuple(dataclasses.replace(s.source, retries=0) for s in sims.values())
    config = gateway_config(tmp_path, sources=sources)
    with serve_in_thread(create_app(config)) as url:
        yield Gateway(url=url, admin_secret=BOOTSTRAP, config=config)
    for sim in sims.values():
        sim.state.control.set_faults([])


def test_breaker_transitions_and_health(
    unlimited_over: Gateway, sims: dict[str, Simulated]
) -> None:
    import time

    gw = unlimited_over
    [fleet] = [k for k, s in sims.items() if s.provider == "losant"]
    sims[fleet].state.control.set_faults([{"kind": "status", "status": 500}])
    for _ in range(5):  # the breaker's threshold
        gw.gql(LIST, {"user": WALK_USER})
    open_ = scrape(gw.url)
    assert values(open_, "tokengate_circuit_transitions_total") == {(fleet, "open"): 1}
    assert open_[("tokengate_source_health", (("source", fleet),))] == 2
    # While open, calls fail fast: still one outcome each, "unavailable".
    gw.gql(LIST, {"user": WALK_USER})
    fast = values(scrape(gw.url), "tokengate_upstream_requests_total")
    assert fast[("unavailable", fleet)] == 6
    sims[fleet].state.control.set_faults([])
    time.sleep(1.6)
    assert scrape(gw.url)[("tokengate_source_health", (("source", fleet),))] == 1  # probing
    body = gw.gql(LIST, {"user": WALK_USER})
    assert body["data"]["tokens"]["failedSources"] == []
    closed = scrape(gw.url)
    assert values(closed, "tokengate_circuit_transitions_total") == {
        (fleet, "open"): 1,
        (fleet, "closed"): 1,
    }
    assert closed[("tokengate_source_health", (("source", fleet),))] == 0


def test_revoked_credentials_and_the_graphiql_page(gateway: Gateway) -> None:
    made = gateway.data(
        'mutation { createToken(input: {source: "internal", name: "gone", '
        'scopes: ["tokens:read"]}) { secret token { id } } }'
    )["createToken"]
    gateway.data(
        "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }",
        {"id": made["token"]["id"]},
    )
    assert gateway.post("{ __typename }", secret=made["secret"]).status_code == 401
    page = httpx.get(f"{gateway.url}/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    samples = scrape(gateway.url)
    assert values(samples, "tokengate_auth_failures_total") == {("revoked",): 1}
    # Two mutations and the refusal; the GraphiQL page is no operation.
    assert values(samples, "tokengate_graphql_requests_total") == {
        ("anonymous", "ok"): 2,
        ("anonymous", "refused"): 1,
    }


def test_dead_workers_live_gauges_are_dropped(tmp_path: Path) -> None:
    """A worker that died (uvicorn restarts it) no longer adds to the live gauges."""
    import os
    import subprocess

    from tokengate.gateway.metrics import Metrics

    child = subprocess.Popen(["true"])
    child.wait()  # reaped: its pid names no process now
    gone = child.pid
    alive = os.getpid()
    for pid in (gone, alive):
        (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
    (tmp_path / f"counter_{gone}.db").write_bytes(b"")
    Metrics._forget_dead_workers(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"counter_{gone}.db",  # counts stay: what it served was served
        f"gauge_livesum_{alive}.db",
    ]
