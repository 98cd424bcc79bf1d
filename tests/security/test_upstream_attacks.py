"""Attacks aimed through the gateway at the upstreams: injected ids and globs, and
upstream-provided links that point somewhere else."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import BOOTSTRAP, Gateway, gateway_config
from tokengate.gateway.app import create_app
from tokengate.gateway.demo import Simulated
from tokengate.upstreams.loopback import serve_in_thread
from tokengate.upstreams.oauth.simulator import WALK_USER
from tokengate.upstreams.simulation import SimulatorControl, SimulatorMiddleware

pytestmark = pytest.mark.slow


def gid(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


HOSTILE = [
    "../../admin",
    "..",
    "a/../../b",
    "x?y=1",
    "x#frag",
    "x%2F..%2F",
    "x\r\nX-Injected: 1",
    "x\x00y",
    " " * 3,
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_injected_ids_never_leave_their_path(
    gw: Gateway, sims: dict[str, Simulated], hostile: str
) -> None:
    forged = [
        gid(f"Token:amper:{hostile}"),
        gid(f"Token:fleet:575ec8687ae143cd83dc4a97/{hostile}"),
        gid(f"Token:fleet:{hostile}/5b9f2e6c1e2d3a0012ab34cd"),
        gid(f"Token:idp:{quote(WALK_USER, safe='')}/{hostile}"),
        gid(f"Token:idp:{hostile}/7d507b7e-6221-4f06-a75e-ef6e6f06d32b"),
    ]
    for forged_id in forged:
        body = gw.gql("query($id: ID!) { node(id: $id) { id } }", {"id": forged_id})
        assert "errors" not in body or body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        revoke = gw.gql(
            "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }",
            {"id": forged_id},
        )
        assert revoke["errors"][0]["extensions"]["code"] in ("NOT_FOUND", "BAD_USER_INPUT")
    allowed = {
        "amper": ("/v1/access_tokens",),
        "idp": ("/oauth/api/v1/users/",),
        "fleet": (
            "/applications/575ec8687ae143cd83dc4a97/tokens",
            "/applications/5b9f2e6c1e2d3a0012ab34cd/tokens",
        ),
    }
    for key, sim in sims.items():
        for request in sim.state.control.requests:
            assert request.path.startswith(allowed[key]), (key, request.path)
            assert ".." not in request.raw_path.split("/"), request.raw_path
            assert request.method == "GET", "a forged id must never reach a DELETE"


@pytest.mark.parametrize("hostile", ["a\r\nb", "x" * 101, "*" * 11, "\x00"])
def test_hostile_globs_are_refused_before_any_upstream(
    gw: Gateway, sims: dict[str, Simulated], hostile: str
) -> None:
    body = gw.gql(
        "query($g: String, $u: String) { tokens(filter: {name: $g, userId: $u}) { totalCount } }",
        {"g": hostile, "u": WALK_USER},
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert sum(len(s.state.control.requests) for s in sims.values()) == 0


def test_glob_metacharacters_reach_losant_only_as_data(
    gw: Gateway, sims: dict[str, Simulated]
) -> None:
    body = gw.gql('{ tokens(filter: {name: "a&filterField=status&x=[*]"}) { totalCount } }')
    assert "errors" not in body
    for request in sims["fleet"].state.control.requests:
        assert "x=" not in request.query.replace("x%3D", ""), request.query


def test_next_links_elsewhere_are_never_followed(
    sims: dict[str, Simulated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.applications import Starlette

    evil_control = SimulatorControl()
    evil = SimulatorMiddleware(Starlette(), evil_control)
    amper = sims["amper"]
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    with serve_in_thread(evil) as evil_url:
        amper.state.link_base = evil_url
        try:
            config = gateway_config(tmp_path, sources=(amper.source,))
            with serve_in_thread(create_app(config)) as url:
                gateway = Gateway(url=url, admin_secret=BOOTSTRAP, config=config)
                cursor = None
                seen = 0
                while True:
                    page = gateway.data(
                        'query($c: String) { tokens(first: 5, after: $c, filter: {sources: ["amper"]}) { edges { node { id } } pageInfo { hasNextPage endCursor } } }',
                        {"c": cursor},
                    )["tokens"]
                    seen += len(page["edges"])
                    if not page["pageInfo"]["hasNextPage"]:
                        break
                    cursor = page["pageInfo"]["endCursor"]
                assert seen == len(amper.state.tokens)
        finally:
            amper.state.link_base = None
    assert evil_control.requests == [], "the gateway followed a link off the configured base URL"
