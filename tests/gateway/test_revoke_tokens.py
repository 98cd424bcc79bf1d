"""``revokeTokens`` over loopback HTTP against the simulators: offboarding a user (dry run
first), paging with the cursor, a source failing mid-way, the tokens never revoked (the
caller's own, the gateway's upstream credentials), and attacker probes refused before any
upstream request."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BOOTSTRAP, Gateway, gateway_config
from tokengate.gateway.app import create_app
from tokengate.gateway.demo import PROVIDERS, Simulated, simulators
from tokengate.upstreams.loopback import serve_in_thread
from tokengate.upstreams.oauth.simulator import WALK_USER

REVOKE = """mutation Revoke($f: TokenFilter!, $dry: Boolean, $max: Int, $after: String) {
  revokeTokens(input: {filter: $f, dryRun: $dry, max: $max, after: $after}) {
    dryRun revokedCount hasMore cursor
    sources { source { key } complete errorCode errorMessage
      revoked { id name provider }
      skipped { token { id name } reason message }
      failed { token { id name } code message } } } }"""
CREATE = "mutation($in: CreateTokenInput!) { createToken(input: $in) { secret token { id } } }"
AUDIT = "{ auditEvents(first: 100) { nodes { action targetId source outcome } } }"
INTERNAL_OF = """query($u: String!) { tokens(first: 100, filter: {userId: $u, sources: ["internal"],
  statuses: [ACTIVE, REVOKED]}) { nodes { id name status } } }"""


@pytest.fixture
def sims() -> Iterator[dict[str, Simulated]]:
    with simulators(PROVIDERS, count=12) as running:
        yield running


@pytest.fixture
def gateway(
    sims: dict[str, Simulated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    sources = tuple(dataclasses.replace(s.source, retries=0) for s in sims.values())
    config = gateway_config(tmp_path, sources=sources)
    with serve_in_thread(create_app(config)) as url:
        yield Gateway(url=url, admin_secret=BOOTSTRAP, config=config)


def _create(gateway: Gateway, name: str, **more: Any) -> tuple[str, str]:
    spec = {"source": "internal", "name": name, "scopes": ["tokens:read"], **more}
    data = gateway.data(CREATE, {"in": spec})
    return data["createToken"]["token"]["id"], data["createToken"]["secret"]


def _revoke(gateway: Gateway, secret: str | None = None, **variables: Any) -> dict[str, Any]:
    result: dict[str, Any] = gateway.data(REVOKE, variables, secret=secret)["revokeTokens"]
    return result


def _by_source(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["source"]["key"]: s for s in result["sources"]}


def _oauth_ids(sims: dict[str, Simulated], user: str) -> set[str]:
    return {t.id for t in sims["idp"].state.listed(user)}


def _code(body: dict[str, Any]) -> str:
    code: str = body["errors"][0]["extensions"]["code"]
    return code


def test_offboarding_a_user_dry_run_first(gateway: Gateway, sims: dict[str, Simulated]) -> None:
    annas = {_create(gateway, f"anna-{i}", subject=WALK_USER)[0] for i in range(3)}
    other, _ = _create(gateway, "bram-cli", subject="bram.jansen")
    unbound, _ = _create(gateway, "ci")
    oauth_before = _oauth_ids(sims, WALK_USER)
    assert len(oauth_before) == 12
    # The dry run (the default) says what would go, and nothing goes.
    dry = _revoke(gateway, f={"userId": WALK_USER}, max=500)
    assert dry["dryRun"] is True and dry["hasMore"] is False and dry["cursor"] is None
    sources = _by_source(dry)
    assert set(sources) == {"internal", "idp"}, "Amper and Losant tokens are nobody's"
    assert {t["id"] for t in sources["internal"]["revoked"]} == annas
    assert len(sources["idp"]["revoked"]) == 12
    assert dry["revokedCount"] == 15
    assert _oauth_ids(sims, WALK_USER) == oauth_before
    assert sims["idp"].state.control.count("DELETE") == 0
    # Then for real: every one of them, at its source, each an audit event.
    done = _revoke(gateway, f={"userId": WALK_USER}, dry=False, max=500)
    assert done["dryRun"] is False and done["revokedCount"] == 15 and done["hasMore"] is False
    assert all(s["complete"] and not s["failed"] for s in done["sources"])
    assert _oauth_ids(sims, WALK_USER) == set()
    assert sims["idp"].state.control.count("DELETE") == 12
    internal = gateway.data(INTERNAL_OF, {"u": WALK_USER})["tokens"]["nodes"]
    assert {t["id"] for t in internal if t["status"] == "REVOKED"} == annas
    # Other users' and unbound tokens stand.
    left = gateway.data('{ tokens(first: 50, filter: {sources: ["internal"]}) { nodes { id } } }')
    assert {other, unbound} <= {t["id"] for t in left["tokens"]["nodes"]}
    assert _oauth_ids(sims, "bram.jansen")
    events = [e for e in gateway.data(AUDIT)["auditEvents"]["nodes"] if e["action"] == "revoke"]
    assert len(events) == 15 and all(e["outcome"] == "ok" for e in events)
    assert annas <= {e["targetId"] for e in events}
    # Nothing is left to do.
    again = _revoke(gateway, f={"userId": WALK_USER}, dry=False)
    assert again["revokedCount"] == 0 and again["hasMore"] is False


def test_pages_with_the_cursor_cover_everything_once(
    gateway: Gateway, sims: dict[str, Simulated]
) -> None:
    for i in range(4):
        _create(gateway, f"anna-{i}", subject=WALK_USER)
    seen: list[str] = []
    after = None
    calls = 0
    while True:
        page = _revoke(gateway, f={"userId": WALK_USER}, max=5, after=after)
        calls += 1
        ids = [t["id"] for s in page["sources"] for t in s["revoked"]]
        assert len(ids) <= 5
        seen += ids
        if not page["hasMore"]:
            break
        after = page["cursor"]
    assert len(seen) == len(set(seen)) == 16 and calls == 4
    # Real pages: a dry run's cursor is refused, a real one continues.
    first = _revoke(gateway, f={"userId": WALK_USER}, max=5, dry=False)
    assert first["revokedCount"] == 5
    body = gateway.gql(REVOKE, {"f": {"userId": WALK_USER}, "max": 5, "dry": False, "after": after})
    assert _code(body) == "BAD_USER_INPUT"
    after = first["cursor"]
    total = 5
    while after is not None:
        page = _revoke(gateway, f={"userId": WALK_USER}, max=5, dry=False, after=after)
        total += page["revokedCount"]
        after = page["cursor"]
    assert total == 16 and _oauth_ids(sims, WALK_USER) == set()


def test_a_source_failing_mid_way_does_not_stop_the_others(
    gateway: Gateway, sims: dict[str, Simulated]
) -> None:
    annas = {_create(gateway, f"anna-{i}", subject=WALK_USER)[0] for i in range(2)}
    oauth = sims["idp"].state
    # The OAuth-style server deletes two tokens, then fails the third.
    oauth.control.set_faults([{"kind": "status", "status": 500, "method": "DELETE", "every": 3}])
    try:
        result = _revoke(gateway, f={"userId": WALK_USER}, dry=False, max=100)
    finally:
        oauth.control.set_faults([])
    sources = _by_source(result)
    assert {t["id"] for t in sources["internal"]["revoked"]} == annas
    idp = sources["idp"]
    assert len(idp["revoked"]) == 2 and idp["complete"] is False
    [failed] = idp["failed"]
    assert failed["code"] == idp["errorCode"] == "UPSTREAM_UNAVAILABLE"
    assert result["hasMore"] is True
    assert len(_oauth_ids(sims, WALK_USER)) == 10
    outcomes = [e["outcome"] for e in gateway.data(AUDIT)["auditEvents"]["nodes"]]
    assert outcomes.count("UPSTREAM_UNAVAILABLE") == 1 and outcomes.count("ok") >= 4
    # The next call resumes at the failed token.
    rest = _revoke(gateway, f={"userId": WALK_USER}, dry=False, after=result["cursor"])
    assert rest["revokedCount"] == 10 and rest["hasMore"] is False
    assert _by_source(rest)["internal"]["revoked"] == []
    assert _oauth_ids(sims, WALK_USER) == set()


def test_a_source_failing_to_list_is_resumed_later(
    gateway: Gateway, sims: dict[str, Simulated]
) -> None:
    fleet = sims["fleet"].state
    fleet.control.set_faults([{"kind": "status", "status": 503}])
    try:
        result = _revoke(gateway, f={"name": "*"}, max=500)
    finally:
        fleet.control.set_faults([])
    sources = _by_source(result)
    assert sources["fleet"]["complete"] is False
    assert sources["fleet"]["errorCode"] == "UPSTREAM_UNAVAILABLE"
    assert sources["amper"]["revoked"] and sources["amper"]["complete"]
    assert sources["idp"]["errorCode"] == "NEEDS_FILTER"
    assert result["hasMore"] is True
    rest = _revoke(gateway, f={"name": "*"}, max=500, after=result["cursor"])
    assert rest["hasMore"] is False
    assert len(_by_source(rest)["fleet"]["revoked"]) == 12
    assert _by_source(rest)["amper"]["revoked"] == []


def test_never_the_callers_own_token_nor_the_gateways_credentials(
    gateway: Gateway, sims: dict[str, Simulated]
) -> None:
    fleet = sims["fleet"].state
    app = next(iter(fleet.applications))
    # The Losant API token the gateway uses is one of the application's tokens.
    own = dict(fleet.applications[app][0], name="tokengate gateway", token=fleet.api_token)
    own["id"] = own["apiTokenId"] = "0" * 23 + "1"
    fleet.applications[app].append(own)
    admin_id = gateway.data(
        "query($s: String!) { tokensBySecret(secret: $s) { token { id } } }", {"s": BOOTSTRAP}
    )["tokensBySecret"][0]["token"]["id"]
    result = _revoke(gateway, f={}, dry=False, max=500)
    sources = _by_source(result)
    skipped = {
        (key, s["token"]["name"], s["reason"]) for key, o in sources.items() for s in o["skipped"]
    }
    assert skipped == {
        ("internal", "bootstrap", "CALLER_TOKEN"),
        ("amper", "tokengate gateway", "GATEWAY_CREDENTIAL"),
        ("fleet", "tokengate gateway", "GATEWAY_CREDENTIAL"),
    }
    assert admin_id in {s["token"]["id"] for s in sources["internal"]["skipped"]}
    assert own in fleet.applications[app]
    assert [t.display_name for t in sims["amper"].state.tokens] == ["tokengate gateway"]
    assert sum(len(v) for v in fleet.applications.values()) == 1
    assert gateway.data("{ sources { key } }")["sources"], "the gateway still works"


def test_a_user_bound_caller_revokes_only_what_revokeToken_allows(
    gateway: Gateway, sims: dict[str, Simulated]
) -> None:
    mine, secret = _create(
        gateway, "anna-admin", subject=WALK_USER, scopes=["tokens:read", "tokens:write"]
    )
    narrower, _ = _create(gateway, "anna-reader", subject=WALK_USER)
    wider, _ = _create(gateway, "anna-admin-2", subject=WALK_USER, scopes=["tokens:admin"])
    _create(gateway, "bram", subject="bram.jansen")
    result = _revoke(gateway, secret, f={}, dry=False, max=500)
    sources = _by_source(result)
    assert set(sources) == {"internal", "idp"}
    assert [t["id"] for t in sources["internal"]["revoked"]] == [narrower]
    assert [(s["token"]["id"], s["reason"]) for s in sources["internal"]["skipped"]] == [
        (mine, "CALLER_TOKEN")
    ]
    assert len(sources["idp"]["revoked"]) == 12
    assert _oauth_ids(sims, "bram.jansen")
    internal = gateway.data(INTERNAL_OF, {"u": WALK_USER})["tokens"]["nodes"]
    assert {t["id"]: t["status"] for t in internal}[wider] == "ACTIVE"


def test_attacker_probes_are_refused_before_any_upstream_request(
    gateway: Gateway, sims: dict[str, Simulated]
) -> None:
    _, reader = _create(gateway, "reader")
    _, anna = _create(gateway, "anna", subject=WALK_USER, scopes=["tokens:read", "tokens:write"])
    _, bram = _create(
        gateway, "bram", scopes=["tokens:read", "tokens:write"], subject="bram.jansen"
    )
    page = _revoke(gateway, bram, f={}, max=1)
    cursor = page["cursor"]
    for sim in sims.values():
        sim.state.control.requests.clear()
    probes: list[tuple[str | None, dict[str, Any], str]] = [
        (reader, {"f": {}}, "FORBIDDEN"),  # no tokens:write
        (anna, {"f": {"userId": "bram.jansen"}}, "FORBIDDEN"),  # another user
        (None, {"f": {"sources": ["nowhere"]}}, "BAD_USER_INPUT"),
        (None, {"f": {}, "max": 0}, "BAD_USER_INPUT"),
        (None, {"f": {}, "max": 501}, "BAD_USER_INPUT"),
        (None, {"f": {}, "max": -1}, "BAD_USER_INPUT"),
        (None, {"f": {}, "after": "not-a-cursor"}, "BAD_USER_INPUT"),
        (
            None,
            {"f": {}, "after": cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")},
            "BAD_USER_INPUT",
        ),
        (None, {"f": {}, "max": 1, "after": cursor}, "BAD_USER_INPUT"),  # bram's cursor
        (bram, {"f": {"name": "x*"}, "max": 1, "after": cursor}, "BAD_USER_INPUT"),  # filter
        (bram, {"f": {}, "max": 1, "dry": False, "after": cursor}, "BAD_USER_INPUT"),  # mode
    ]
    for secret, variables, code in probes:
        body = gateway.gql(REVOKE, variables, secret=secret)
        assert body["data"] is None, (variables, body)
        assert _code(body) == code, (variables, body)
    assert sum(len(s.state.control.requests) for s in sims.values()) == 0
    # The cursor still works for its own caller, filter and mode.
    assert _revoke(gateway, bram, f={}, max=1, after=cursor)["dryRun"] is True


FINGERPRINT = """
from tokengate.upstreams.model import Status, TokenFilter
from tokengate.upstreams.principal import Principal, Reach
from tokengate.upstreams.security_ops import _fingerprint
flt = TokenFilter(sources=frozenset({"amper", "idp", "fleet", "internal", "x", "y"}),
                  statuses=frozenset(Status),
                  within=Reach(frozenset({"tokens:read", "tokens:write"}), None, None))
print(_fingerprint(Principal("abc", frozenset({"tokens:write"})), flt, True))
"""


@pytest.mark.slow
def test_a_cursor_holds_in_every_process() -> None:
    """Replicas and restarts accept each other's cursors: the binding is spelt alike
    whatever the process's string hashing."""
    import os
    import subprocess
    import sys

    spelt = {
        subprocess.run(
            [sys.executable, "-c", FINGERPRINT],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(spelt) == 1 and len(spelt.pop().strip()) == 32


def test_each_bulk_call_counts_its_max_against_the_cost_budget(
    gateway: Gateway, sims: dict[str, Simulated]
) -> None:
    field = 'r{n}: revokeTokens(input: {{filter: {{name: "x"}}, max: {m}}}) {{ revokedCount }}'

    def document(*maxes: int) -> str:
        return "mutation {" + " ".join(field.format(n=i, m=m) for i, m in enumerate(maxes)) + "}"

    for sim in sims.values():
        sim.state.control.requests.clear()
    over = gateway.gql(document(500, 500, 1))
    assert _code(over) == "BAD_USER_INPUT" and "cost" in over["errors"][0]["message"]
    assert over.get("data") is None
    assert sum(len(s.state.control.requests) for s in sims.values()) == 0
    variables = {"f": {"name": "x"}, "max": 501}
    assert _code(gateway.gql(REVOKE, variables)) == "BAD_USER_INPUT"
    within = gateway.data(document(500, 500))
    assert within["r0"]["revokedCount"] == within["r1"]["revokedCount"] == 0
    # Eleven calls at the default max of 100 are over the budget too.
    assert (
        _code(
            gateway.gql(
                "mutation {"
                + " ".join(
                    f'r{i}: revokeTokens(input: {{filter: {{name: "x"}}}}) {{ revokedCount }}'
                    for i in range(11)
                )
                + "}"
            )
        )
        == "BAD_USER_INPUT"
    )
