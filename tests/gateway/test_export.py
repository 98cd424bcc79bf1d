"""GET /export and `tokengate export` over loopback HTTP, against the simulators and a
seeded store: every readable token once, no secret, a trailer naming every source left
out (a source failing mid-way included), the CLI's exit status, and the attacker probes
(credentials, scope, Accept, forged filters, huge dates, CSV injection, bindings)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import BOOTSTRAP, Gateway, gateway_config
from tests.seeding import seed
from tokengate.gateway import cli
from tokengate.gateway.app import create_app, open_store
from tokengate.gateway.config import LimitsConfig
from tokengate.gateway.demo import PROVIDERS, Simulated, simulators
from tokengate.gateway.export import COLUMNS, CSV_TRAILER_PREFIX
from tokengate.upstreams.loopback import serve_in_thread
from tokengate.upstreams.model import CreateSpec
from tokengate.upstreams.oauth.simulator import WALK_USER

CSV_ACCEPT = {"Accept": "text/csv"}
JSONL_ACCEPT = {"Accept": "application/x-ndjson"}
INJECTION_NAME = '=HYPERLINK("http://evil.example","x")'
LOSANT_COUNT = 260  # over two export pages of the Losant source
SEEDED = 150


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, Simulated]]:
    others = tuple(p for p in PROVIDERS if p != "losant")
    with (
        simulators(others, count=40) as running,
        simulators(("losant",), count=LOSANT_COUNT) as big,
    ):
        yield {**running, **big}


class Env:
    def __init__(self, gw: Gateway, secrets: dict[str, str], sims: dict[str, Simulated]):
        self.gw = gw
        self.secrets = secrets
        self.sims = sims

    def export(
        self,
        accept: dict[str, str],
        *,
        secret: str | None = None,
        filter: dict[str, Any] | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        params = {}
        if filter is not None:
            params["filter"] = filter if isinstance(filter, str) else json.dumps(filter)
        auth = {"Authorization": f"Bearer {secret or self.gw.admin_secret}"}
        return httpx.get(
            f"{self.gw.url}/export",
            params=params,
            headers={**auth, **accept, **(headers or {})},
            timeout=60,
        )


@pytest.fixture(scope="module")
def env(sims: dict[str, Simulated], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("export")
    config = gateway_config(tmp, sources=tuple(s.source for s in sims.values()))
    made: dict[str, str] = {}

    async def prepare() -> None:
        store = await open_store(config)
        try:
            await seed(store, SEEDED)
            specs = {
                "reader": CreateSpec(name="reader", scopes=("tokens:read",)),
                "writer": CreateSpec(name="writer", scopes=("tokens:read", "tokens:write")),
                "bound-admin": CreateSpec(
                    name="bound-admin",
                    scopes=("tokens:admin",),
                    allowed_sources=frozenset({"internal"}),
                ),
                "user-admin": CreateSpec(
                    name="user-admin", scopes=("tokens:admin",), subject=WALK_USER
                ),
                "injection": CreateSpec(name=INJECTION_NAME, scopes=("tokens:read",)),
            }
            for key, spec in specs.items():
                made[key] = (await store.create(spec)).secret
        finally:
            await store.aclose()

    asyncio.run(prepare())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
        with serve_in_thread(create_app(config)) as url:
            yield Env(Gateway(url=url, admin_secret=BOOTSTRAP, config=config), made, sims)


@pytest.fixture(autouse=True)
def no_faults(sims: dict[str, Simulated]) -> Iterator[None]:
    yield
    for sim in sims.values():
        sim.state.control.faults = []
        sim.state.control.latency_ms = 0


def jsonl(response: httpx.Response) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in response.content.splitlines()]
    *records, trailer = lines
    assert "failedSources" in trailer
    assert all("failedSources" not in r for r in records)
    return records, trailer


def csv_rows(response: httpx.Response) -> tuple[list[dict[str, str]], dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    text = response.text
    body, _, last = text.rstrip("\r\n").rpartition("\r\n")
    assert last.startswith(CSV_TRAILER_PREFIX)
    trailer = json.loads(last[len(CSV_TRAILER_PREFIX) :])
    rows = list(csv.DictReader(io.StringIO(body + "\r\n")))
    return rows, trailer


def graphql_ids(env: Env, flt: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    after = None
    query = (
        "query($after: String, $filter: TokenFilter) { tokens(first: 100, after: $after, "
        "filter: $filter) { edges { node { id } } pageInfo { hasNextPage endCursor } } }"
    )
    while True:
        page = env.gw.data(query, {"after": after, "filter": flt})["tokens"]
        found.update(e["node"]["id"] for e in page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


def failures(trailer: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    return {f["source"]: (f["reason"], f["skipped"]) for f in trailer["failedSources"]}


def test_jsonl_holds_every_readable_token_once_and_no_secret(env: Env) -> None:
    records, trailer = jsonl(env.export(JSONL_ACCEPT))
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == trailer["count"]
    assert set(ids) == graphql_ids(env, {})
    assert {r["source"] for r in records} == {"internal", "amper", "fleet"}
    assert sum(r["source"] == "fleet" for r in records) > 200
    assert list(records[0]) == list(COLUMNS)
    # The OAuth-style source needs a user: skipped, and said so.
    assert failures(trailer) == {"idp": ("NEEDS_FILTER", True)}
    assert trailer["complete"] is False
    text = env.export(JSONL_ACCEPT).text
    for app in env.sims["fleet"].state.applications.values():
        for token in app:
            assert token["token"] not in text  # Losant lists carry secrets: never passed on
    for secret in [BOOTSTRAP, *env.secrets.values()]:
        assert secret not in text


def test_csv_equals_jsonl_and_disarms_formulas(env: Env) -> None:
    rows, trailer = csv_rows(env.export(CSV_ACCEPT))
    records, jtrailer = jsonl(env.export(JSONL_ACCEPT))
    assert trailer == jtrailer
    assert [r["id"] for r in rows] == [r["id"] for r in records]
    assert list(rows[0]) == list(COLUMNS)
    injected = [r for r in rows if r["name"].endswith(INJECTION_NAME)]
    assert [r["name"] for r in injected] == ["'" + INJECTION_NAME]
    fleet = next(r for r in rows if r["source"] == "fleet")
    assert fleet["lastUseRecorded"] == "false" and fleet["lastUsedAt"] == ""


def test_user_filter_adds_the_oauth_source_and_filters_apply(env: Env) -> None:
    records, trailer = jsonl(env.export(JSONL_ACCEPT, filter={"userId": WALK_USER}))
    assert "idp" in {r["source"] for r in records}
    assert trailer["failedSources"] == [] and trailer["complete"] is True
    flt = {"lastUsedBefore": "2025-01-08T00:00:00Z", "statuses": ["ACTIVE", "EXPIRED"]}
    records, trailer = jsonl(env.export(JSONL_ACCEPT, filter=flt))
    assert {r["id"] for r in records} == graphql_ids(env, flt)
    assert records and {r["source"] for r in records} <= {"internal", "amper"}
    assert failures(trailer) == {
        "idp": ("FILTER_UNSUPPORTED", True),
        "fleet": ("FILTER_UNSUPPORTED", True),
    }


def test_a_source_failing_mid_way_is_in_the_trailer_with_what_was_exported(env: Env) -> None:
    fleet = env.sims["fleet"].state.control
    start = fleet.count("GET")
    clean, _ = jsonl(env.export(JSONL_ACCEPT))
    requests = fleet.count("GET") - start
    total = sum(r["source"] == "fleet" for r in clean)
    assert requests >= 3
    # The last list request of the Losant walk fails (HTTP 500 is not retried).
    fleet.set_faults(
        [{"kind": "status", "status": 500, "method": "GET", "every": requests, "times": 1}]
    )
    records, trailer = jsonl(env.export(JSONL_ACCEPT))
    got = sum(r["source"] == "fleet" for r in records)
    [failed] = [f for f in trailer["failedSources"] if f["source"] == "fleet"]
    assert failed["reason"] == "UNAVAILABLE" and failed["skipped"] is False
    assert failed["exported"] == got and 0 < got < total
    # The other sources are whole.
    for key in ("internal", "amper"):
        assert sum(r["source"] == key for r in records) == sum(r["source"] == key for r in clean)
    assert trailer["complete"] is False and trailer["count"] == len(records)


def run_cli(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str]:
    out = tmp_path / "out"
    monkeypatch.setenv("TOKENGATE_TOKEN", env.gw.admin_secret)
    code = cli.main(["export", "--url", env.gw.url, "--output", str(out), *args])
    return code, out.read_text() if out.exists() else ""


def test_cli_exit_status_follows_the_trailer(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = run_cli(env, tmp_path, monkeypatch, "--format", "csv")
    assert code == 3  # nothing failed; the OAuth-style source was skipped (needs userId)
    assert text.splitlines()[-1].startswith(CSV_TRAILER_PREFIX)
    assert "skipped: source idp (NEEDS_FILTER" in capsys.readouterr().err
    code, text = run_cli(
        env,
        tmp_path,
        monkeypatch,
        "--format",
        "jsonl",
        "--filter",
        json.dumps({"userId": WALK_USER}),
    )
    assert code == 0
    assert orjson.loads(text.splitlines()[-1])["complete"] is True
    env.sims["amper"].state.control.set_faults([{"kind": "status", "status": 500}])
    code, text = run_cli(env, tmp_path, monkeypatch, "--format", "jsonl")
    assert code == 1
    err = capsys.readouterr().err
    assert "FAILED: source amper (UNAVAILABLE" in err
    code, _ = run_cli(env, tmp_path, monkeypatch, "--format", "csv", "--filter", '{"nope": 1}')
    assert code == 2 and "HTTP 400" in capsys.readouterr().err
    monkeypatch.setenv("TOKENGATE_TOKEN", env.secrets["reader"])
    code = cli.main(["export", "--url", env.gw.url, "--format", "csv", "-o", str(tmp_path / "x")])
    assert code == 1 and "HTTP 403" in capsys.readouterr().err
    monkeypatch.delenv("TOKENGATE_TOKEN")
    assert cli.main(["export", "--url", env.gw.url, "--format", "csv"]) == 2


def test_credentials_scope_and_accept(env: Env) -> None:
    url = f"{env.gw.url}/export"
    for headers in ({}, {"Accept": "text/html"}, {"Accept": "text/csv"}):
        answer = httpx.get(url, headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    answer = httpx.get(url, headers={"Authorization": "Bearer tg_wrong", **CSV_ACCEPT})
    assert answer.status_code == 401
    for who in ("reader", "writer"):
        answer = env.export(CSV_ACCEPT, secret=env.secrets[who])
        assert answer.status_code == 403
        assert answer.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert "tokens:admin" in answer.json()["errors"][0]["message"]
    for accept in ("*/*", "application/json", "text/*", "text/csv;q=0", ""):
        answer = env.export({"Accept": accept})
        assert answer.status_code == 406, accept
    answer = env.export({"Accept": "application/json, application/x-ndjson;q=0.5"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    assert httpx.post(url, headers=CSV_ACCEPT).status_code == 405


@pytest.mark.parametrize(
    "forged",
    [
        '{"within": {"scopes": []}}',  # set by the gateway from the caller, never from input
        '{"ownerUser": "x"}',
        '{"owner_user": "x"}',
        '{"statuses": ["GONE"]}',
        '{"neverUsed": "yes"}',
        '{"expiresBefore": 12}',
        '{"lastUsedBefore": "+275760-09-13T00:00:00Z"}',
        '{"lastUsedBefore": "9999-12-31T23:59:59-14:00"}',
        '{"expiresAfter": "0001-01-01T00:00:00+14:00"}',
        '{"createdAfter": "2026-01-01T00:00:00"}',
        '{"name": "' + "*" * 20 + '"}',
        '{"sources": ["nope"]}',
        "[1, 2]",
        "not json",
        "{" * 2000,
        '{"name": "' + "a" * 5000 + '"}',
    ],
)
def test_forged_filters_are_refused_before_anything_is_read(env: Env, forged: str) -> None:
    amper = env.sims["amper"].state.control
    before = amper.count()
    answer = env.export(CSV_ACCEPT, filter=forged)
    assert answer.status_code == 400, answer.text
    error = answer.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert amper.count() == before
    assert "+275760" not in error["message"] and "a" * 100 not in error["message"]


def test_bindings_hold_in_the_export(env: Env) -> None:
    records, trailer = jsonl(env.export(JSONL_ACCEPT, secret=env.secrets["bound-admin"]))
    assert {r["source"] for r in records} == {"internal"}
    assert trailer["failedSources"] == []
    answer = env.export(
        JSONL_ACCEPT, secret=env.secrets["bound-admin"], filter={"sources": ["amper"]}
    )
    assert answer.status_code == 400
    assert "unknown source" in answer.json()["errors"][0]["message"]
    # An admin bound to a user exports that user's tokens only.
    records, _ = jsonl(env.export(JSONL_ACCEPT, secret=env.secrets["user-admin"]))
    assert records and all(r["ownerId"] == WALK_USER for r in records)
    answer = env.export(
        JSONL_ACCEPT, secret=env.secrets["user-admin"], filter={"userId": "someone-else"}
    )
    assert answer.status_code == 403


@pytest.mark.slow
def test_exports_at_once_are_bounded(env: Env) -> None:
    """Two exports stream at once; a third is told to retry (429), not queued."""
    env.sims["amper"].state.control.latency_ms = 1500
    opened = threading.Barrier(3)
    results: list[int] = []

    def hold() -> None:
        with (
            httpx.Client(timeout=60) as client,
            client.stream(
                "GET",
                f"{env.gw.url}/export",
                headers={"Authorization": f"Bearer {BOOTSTRAP}", **CSV_ACCEPT},
            ) as answer,
        ):
            results.append(answer.status_code)
            opened.wait()
            for _ in answer.iter_bytes():
                pass

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for t in threads:
        t.start()
    opened.wait(timeout=30)
    third = env.export(CSV_ACCEPT)
    assert third.status_code == 429 and third.headers["retry-after"] == "5"
    env.sims["amper"].state.control.latency_ms = 0
    for t in threads:
        t.join(timeout=60)
    assert results == [200, 200]
    assert env.export(CSV_ACCEPT).status_code == 200


def test_the_rate_limit_applies_with_429(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    config = gateway_config(tmp_path, limits=LimitsConfig(rate_per_s=0.01, burst=2))
    with serve_in_thread(create_app(config)) as url:
        headers = {"Authorization": f"Bearer {BOOTSTRAP}", **CSV_ACCEPT}
        codes = [httpx.get(f"{url}/export", headers=headers).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        refused = httpx.get(f"{url}/export", headers=headers)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


@pytest.mark.slow
def test_the_whole_export_is_bounded_in_time(
    sims: dict[str, Simulated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past TOKENGATE_EXPORT_TIMEOUT_S the sources not read whole are TIMEOUT in the
    trailer: the answer ends, says so, and the CLI would exit 1."""
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    monkeypatch.setenv("TOKENGATE_EXPORT_TIMEOUT_S", "1")
    config = gateway_config(tmp_path, sources=tuple(s.source for s in sims.values()))
    sims["amper"].state.control.latency_ms = 1200
    with serve_in_thread(create_app(config)) as url:
        gw = Env(Gateway(url=url, admin_secret=BOOTSTRAP, config=config), {}, sims)
        records, trailer = jsonl(gw.export(JSONL_ACCEPT))
    reasons = failures(trailer)
    assert reasons["fleet"] == ("TIMEOUT", False)
    assert not any(r["source"] == "fleet" for r in records)
    assert any(r["source"] == "internal" for r in records)
    assert trailer["complete"] is False


def test_a_bad_export_timeout_stops_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENGATE_EXPORT_TIMEOUT_S", "0")
    with pytest.raises(ValueError, match="TOKENGATE_EXPORT_TIMEOUT_S"):
        create_app(gateway_config(tmp_path))


def test_an_answer_without_its_trailer_is_a_failure() -> None:
    from tokengate.gateway.export_cli import exit_status, read_trailer

    whole = b'{"id": "a"}\n{"complete": true, "count": 1, "failedSources": []}\n'
    assert exit_status(read_trailer(whole, "jsonl")) == 0
    cut = whole[:-20]
    assert read_trailer(cut, "jsonl") is None and exit_status(None) == 1
    assert read_trailer(b'{"id": "a"}\n', "jsonl") is None  # a token line is no trailer
    rows = b"id,name\r\nx,y\r\n"
    assert read_trailer(rows, "csv") is None
    trailer = CSV_TRAILER_PREFIX.encode() + b'{"complete": false, "count": 1, "failedSources": '
    skipped = trailer + b'[{"source": "idp", "skipped": true}]}\r\n'
    failed = trailer + b'[{"source": "amper", "skipped": false}]}\r\n'
    assert exit_status(read_trailer(rows + skipped, "csv")) == 3
    assert exit_status(read_trailer(rows + failed, "csv")) == 1


def test_every_export_leaves_an_audit_record(env: Env) -> None:
    query = "{ auditEvents(first: 5) { edges { node { action targetId source outcome } } } }"
    jsonl(env.export(JSONL_ACCEPT, filter={"sources": ["amper", "internal"]}))
    newest = env.gw.data(query)["auditEvents"]["edges"][0]["node"]
    assert newest == {
        "action": "export",
        "targetId": "inventory",
        "source": "amper,internal",
        "outcome": "ok",
    }
    assert env.export(JSONL_ACCEPT, secret=env.secrets["reader"]).status_code == 403
    assert env.gw.data(query)["auditEvents"]["edges"][0]["node"] == newest  # refused: none
