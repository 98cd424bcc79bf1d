"""``tokensBySecret`` over loopback HTTP against the simulators: each source's way of
matching, who may ask (decided before any upstream request), its own rate limit, a source
failing mid-way, and the secret nowhere but in the request: not in logs, errors, audit
records, metrics or upstream requests."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BOOTSTRAP, UNLIMITED, Gateway, LogCapture, gateway_config
from tokengate.gateway.app import create_app
from tokengate.gateway.demo import PROVIDERS, Simulated, simulators
from tokengate.upstreams.loopback import serve_in_thread

LOOKUP = """query Lookup($s: String!) { tokensBySecret(secret: $s) {
  match token { id name provider status secretHint source { key } } } }"""
AUDIT = "{ auditEvents(first: 50) { nodes { action targetId source outcome actorSubject } } }"
CREATE = """mutation($in: CreateTokenInput!) { createToken(input: $in) { secret token { id } } }"""


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, Simulated]]:
    # Amper: 250 tokens, so that reading its list takes three pages (one can fail mid-way).
    with simulators(PROVIDERS, count=250) as running:
        yield running


def _gateway(
    sims: dict[str, Simulated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **limits: Any
) -> Iterator[Gateway]:
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    for sim in sims.values():
        sim.state.control.set_faults([])
        sim.state.control.requests.clear()
    sources = tuple(dataclasses.replace(s.source, retries=0) for s in sims.values())
    config = gateway_config(
        tmp_path, sources=sources, limits=dataclasses.replace(UNLIMITED, **limits)
    )
    with serve_in_thread(create_app(config)) as url:
        yield Gateway(url=url, admin_secret=BOOTSTRAP, config=config)


@pytest.fixture
def gateway(
    sims: dict[str, Simulated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    yield from _gateway(sims, tmp_path, monkeypatch, secret_lookups_per_minute=1000)


def _create(gateway: Gateway, source: str, name: str, **more: Any) -> tuple[str, str]:
    data = gateway.data(CREATE, {"in": {"source": source, "name": name, **more}})
    return data["createToken"]["token"]["id"], data["createToken"]["secret"]


def _upstream_requests(sims: dict[str, Simulated]) -> int:
    return sum(len(s.state.control.requests) for s in sims.values())


def _clear(sims: dict[str, Simulated]) -> None:
    for sim in sims.values():
        sim.state.control.requests.clear()


def test_each_source_matches_its_own_way(gateway: Gateway, sims: dict[str, Simulated]) -> None:
    # Losant: a token created through the gateway, and one only the simulator's list holds.
    first_app = next(iter(sims["fleet"].state.applications))
    losant_id, losant_secret = _create(gateway, "fleet", "leaky device", applicationId=first_app)
    [match] = gateway.data(LOOKUP, {"s": losant_secret})["tokensBySecret"]
    assert match["match"] == "EXACT" and match["token"]["id"] == losant_id
    listed = sims["fleet"].state.applications[first_app][7]
    [match] = gateway.data(LOOKUP, {"s": listed["token"]})["tokensBySecret"]
    assert match["token"]["name"] == listed["name"]
    assert match["token"]["source"]["key"] == "fleet" and match["token"]["secretHint"] is None
    # Internal: by its HMAC, whatever its status (a revoked leaked token is still news).
    internal_id, internal_secret = _create(gateway, "internal", "ci", scopes=["tokens:read"])
    gateway.data(
        "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }",
        {"id": internal_id},
    )
    [match] = gateway.data(LOOKUP, {"s": f"  {internal_secret}\n"})["tokensBySecret"]
    assert match == {
        "match": "EXACT",
        "token": {
            "id": internal_id,
            "name": "ci",
            "provider": "INTERNAL",
            "status": "REVOKED",
            "secretHint": internal_secret[:7] + "…",
            "source": {"key": "internal"},
        },
    }
    # Amper: only its redacted snippet can be compared: a HINT.
    amper = sims["amper"].state.tokens[5]
    matches = gateway.data(LOOKUP, {"s": amper.secret})["tokensBySecret"]
    assert {"AMPER"} == {m["token"]["provider"] for m in matches}
    assert all(m["match"] == "HINT" for m in matches)
    assert amper.display_name in {m["token"]["name"] for m in matches}
    # Nobody's secret: no match, and a near miss (one character off) is no match either.
    assert gateway.data(LOOKUP, {"s": "tg_" + "x" * 43})["tokensBySecret"] == []
    assert gateway.data(LOOKUP, {"s": losant_secret[:-1] + "!"})["tokensBySecret"] == []
    # What each source can do is said in its capabilities.
    sources = gateway.data("{ sources { key capabilities { secretLookup } } }")["sources"]
    assert {s["key"]: s["capabilities"]["secretLookup"] for s in sources} == {
        "internal": "EXACT",
        "amper": "HINT",
        "idp": "NONE",
        "fleet": "EXACT",
    }


def test_only_unbound_admins_and_before_any_upstream_request(
    gateway: Gateway, sims: dict[str, Simulated]
) -> None:
    _, writer = _create(gateway, "internal", "w", scopes=["tokens:read", "tokens:write"])
    _, bound_admin = _create(gateway, "internal", "a", scopes=["tokens:admin"], subject="anna")
    _, source_admin = _create(
        gateway, "internal", "s", scopes=["tokens:admin"], allowedSources=["fleet"]
    )
    secret = sims["fleet"].state.applications[next(iter(sims["fleet"].state.applications))][0][
        "token"
    ]
    _clear(sims)
    for caller in (writer, bound_admin, source_admin):
        body = gateway.gql(LOOKUP, {"s": secret}, secret=caller)
        assert body["data"] is None
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert secret not in str(body)
    assert _upstream_requests(sims) == 0
    outcomes = [
        e["outcome"]
        for e in gateway.data(AUDIT)["auditEvents"]["nodes"]
        if e["action"] == "lookup_secret"
    ]
    assert outcomes == ["FORBIDDEN"] * 3


def test_a_source_failing_mid_way_leaves_the_others(
    gateway: Gateway, sims: dict[str, Simulated]
) -> None:
    _, internal_secret = _create(gateway, "internal", "leaked", scopes=["tokens:read"])
    amper = sims["amper"].state
    # Amper's second list page fails (its first answered): the read stops mid-way.
    amper.control.set_faults([{"kind": "status", "status": 500, "method": "GET", "every": 2}])
    try:
        body = gateway.gql(LOOKUP, {"s": internal_secret})
    finally:
        amper.control.set_faults([])
    [match] = body["data"]["tokensBySecret"]
    assert match["token"]["provider"] == "INTERNAL"
    [error] = body["errors"]
    assert error["extensions"]["source"] == "amper"
    assert error["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
    assert error["path"] == ["tokensBySecret"]
    assert amper.control.count("GET") == 2
    events = gateway.data(AUDIT)["auditEvents"]["nodes"]
    assert events[0]["action"] == "lookup_secret" and events[0]["outcome"] == "partial"


def test_rate_limited_on_its_own_bucket(
    sims: dict[str, Simulated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for gateway in _gateway(sims, tmp_path, monkeypatch, secret_lookups_per_minute=2):
        for _ in range(2):
            assert gateway.data(LOOKUP, {"s": "nobody's secret"})["tokensBySecret"] == []
        _clear(sims)
        body = gateway.gql(LOOKUP, {"s": "nobody's secret"})
        error = body["errors"][0]
        assert error["extensions"]["code"] == "RATE_LIMITED"
        assert error["extensions"]["retryAfter"] >= 1
        assert "nobody's secret" not in str(body)
        assert _upstream_requests(sims) == 0
        # Other queries of the same caller are not held up.
        assert gateway.data("{ sources { key } }")["sources"]
        events = gateway.data(AUDIT)["auditEvents"]["nodes"]
        assert [e["outcome"] for e in events[:3]] == ["RATE_LIMITED", "ok", "ok"]


def test_the_secret_appears_nowhere(
    gateway: Gateway, sims: dict[str, Simulated], captured_logs: LogCapture
) -> None:
    losant = sims["fleet"].state
    app = next(iter(losant.applications))
    secrets_used = [losant.applications[app][3]["token"]]
    _, internal_secret = _create(gateway, "internal", "x", scopes=["tokens:read"])
    secrets_used += [internal_secret, sims["amper"].state.tokens[9].secret]
    answers = [gateway.post(LOOKUP, {"s": s}).text for s in secrets_used]
    # Failing paths: a failing source, a refused caller, a secret too long to be one.
    losant.control.set_faults([{"kind": "status", "status": 503}])
    try:
        answers.append(gateway.post(LOOKUP, {"s": secrets_used[0]}).text)
    finally:
        losant.control.set_faults([])
    assert '"source":"fleet"' in answers[-1].replace(" ", "")
    _, reader = _create(gateway, "internal", "r", scopes=["tokens:read"])
    answers.append(gateway.post(LOOKUP, {"s": secrets_used[0]}, secret=reader).text)
    long_secret = secrets_used[0] * 200
    too_long = gateway.post(LOOKUP, {"s": long_secret}).text
    assert "BAD_USER_INPUT" in too_long
    answers.append(too_long)
    metrics = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    audit = str(gateway.data(AUDIT))
    assert "lookup_secret" in audit
    upstream = str([s.state.control.requests for s in sims.values()])
    for secret in secrets_used:
        for where, text in {
            "logs": captured_logs.text,
            "metrics": metrics,
            "audit": audit,
            "upstream requests": upstream,
            "answers": "\n".join(answers[len(secrets_used) :]),
        }.items():
            assert secret not in text, f"the secret is in the {where}"
            assert secret[:12] not in text, f"a prefix of the secret is in the {where}"
    # The matches themselves carry no secret either.
    for secret, answer in zip(secrets_used, answers, strict=False):
        assert secret not in answer


def test_bad_input_is_refused_before_any_upstream_request(
    gateway: Gateway, sims: dict[str, Simulated]
) -> None:
    _clear(sims)
    for value in ("", "   ", "x" * 4097):
        body = gateway.gql(LOOKUP, {"s": value})
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert _upstream_requests(sims) == 0
