"""Caller-provided values in upstream URL paths leave exactly as the gateway encoded them.

Each upstream simulator logs the raw request path it received (``raw_path``, still
percent-encoded). aiohttp re-parses a URL given as text and decodes some escapes
(``%3B`` to ``;``): ``..;`` would then reach a Java upstream, where it can act as ``..``.
Both transports, real loopback HTTP.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.conftest import Gateway
from tests.security.conftest import serving
from tokengate.gateway.demo import Simulated
from tokengate.gateway.upstream_factory import TRANSPORT_ENV
from tokengate.upstreams import ids
from tokengate.upstreams.oauth.normalise import local_id_for
from tokengate.upstreams.oauth.simulator import API_PREFIX, SimToken

pytestmark = pytest.mark.slow

TRANSPORTS = ["aiohttp", "httpx"]
TOKEN_UUID = "7d507b7e-6221-4f06-a75e-ef6e6f06d32b"
ODD_USER_IDS = [
    "user;x",
    "..;",
    "..;x",
    "a;b=c,d",
    "%2F",
    "%2E%2E",
    "..%2F..",
    "a/b",
    "../admin",
    "x?y=1",
    "x#frag",
    "a b",
    "Zoë",
    "用户",
    "a@b:c!$&'()*+=",
    "~user.name-_",
]
HOSTILE_IDS = ["x;y", "..;", "..;/admin", "%2E%2E", "a%2Fb", "x?y#z", "a é"]


def gid(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.fixture(scope="module", params=TRANSPORTS)
def gw(
    request: pytest.FixtureRequest,
    sims: dict[str, Simulated],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp(f"paths-{request.param}")
    with serving(sims, tmp, **{TRANSPORT_ENV: request.param}) as gateway:
        yield gateway


@pytest.fixture(autouse=True)
def _fresh_logs(sims: dict[str, Simulated]) -> None:
    for sim in sims.values():
        sim.state.control.requests.clear()


def raw_paths(sim: Simulated) -> list[tuple[str, str]]:
    return [(r.method, r.raw_path) for r in sim.state.control.requests]


@pytest.mark.parametrize("user", ODD_USER_IDS)
def test_oauth_user_ids_leave_percent_encoded(
    gw: Gateway, sims: dict[str, Simulated], user: str
) -> None:
    """List, fetch and revoke: every request's path is the user id encoded once, as is."""
    idp = sims["idp"]
    idp.state.users[user] = [
        SimToken(id=TOKEN_UUID, client_name="odd", created_at=1_381_321_302_000, scopes=[])
    ]
    expected = f"{API_PREFIX}{quote(user, safe='')}/tokens"
    listed = gw.data(
        'query($u: String) { tokens(filter: {userId: $u, sources: ["idp"]}) { totalCount } }',
        {"u": user},
    )
    assert listed["tokens"]["totalCount"] == 1  # the simulator found this very user
    global_id = ids.token_id("idp", local_id_for(user, TOKEN_UUID))
    found = gw.data("query($id: ID!) { node(id: $id) { id } }", {"id": global_id})
    assert found["node"] == {"id": global_id}
    revoked = gw.data(
        "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }",
        {"id": global_id},
    )
    assert revoked["revokeToken"]["revokedTokenId"] == global_id
    assert raw_paths(idp) == [
        ("GET", expected),
        ("GET", expected),
        ("GET", expected),  # revoke reads the token first
        ("DELETE", f"{expected}/{TOKEN_UUID}"),
    ]
    assert idp.state.users[user] == []


@pytest.mark.parametrize("user", [".", ".."])
def test_oauth_dot_segment_user_ids_are_refused(
    gw: Gateway, sims: dict[str, Simulated], user: str
) -> None:
    body = gw.gql(
        'query($u: String) { tokens(filter: {userId: $u, sources: ["idp"]}) { totalCount } }',
        {"u": user},
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert raw_paths(sims["idp"]) == []


def test_amper_and_losant_ids_leave_exactly_as_listed(
    gw: Gateway, sims: dict[str, Simulated]
) -> None:
    """A real token of each: fetched by its own id, the path holds that id and nothing else."""
    amper_id = sims["amper"].state.tokens[-1].id
    losant_app, losant_tokens = next(iter(sims["fleet"].state.applications.items()))
    losant_token = losant_tokens[0]["id"]
    for source, local_id in (("amper", amper_id), ("fleet", f"{losant_app}/{losant_token}")):
        global_id = ids.token_id(source, local_id)
        found = gw.data("query($id: ID!) { node(id: $id) { id } }", {"id": global_id})
        assert found["node"] == {"id": global_id}
    assert raw_paths(sims["amper"]) == [("GET", f"/v1/access_tokens/{amper_id}")]
    assert raw_paths(sims["fleet"]) == [
        ("GET", f"/applications/{losant_app}/tokens/{losant_token}")
    ]


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_odd_amper_and_losant_ids_never_reach_a_path(
    gw: Gateway, sims: dict[str, Simulated], hostile: str
) -> None:
    """Their ids have a fixed alphabet: anything else is refused before any request."""
    app = next(iter(sims["fleet"].state.applications))
    forged = [
        gid(f"Token:amper:{hostile}"),
        gid(f"Token:fleet:{app}/{hostile}"),
        gid(f"Token:fleet:{hostile}/5b9f2e6c1e2d3a0012ab34cd"),
    ]
    for forged_id in forged:
        body = gw.gql("query($id: ID!) { node(id: $id) { id } }", {"id": forged_id})
        assert "errors" not in body or body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        revoke = gw.gql(
            "mutation($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }",
            {"id": forged_id},
        )
        assert revoke["errors"][0]["extensions"]["code"] in ("NOT_FOUND", "BAD_USER_INPUT")
    for app_id in (hostile, f"{app};x", f"{app}/..;"):
        listed = gw.data(
            'query($a: String) { tokens(filter: {applicationId: $a, sources: ["fleet"]}) '
            "{ totalCount } }",
            {"a": app_id},
        )
        assert listed["tokens"]["totalCount"] == 0  # not a configured application
        created = gw.gql(
            'mutation($a: String) { createToken(input: {source: "fleet", name: "x", '
            "applicationId: $a}) { secret } }",
            {"a": app_id},
        )
        assert created["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert raw_paths(sims["amper"]) == raw_paths(sims["fleet"]) == []
