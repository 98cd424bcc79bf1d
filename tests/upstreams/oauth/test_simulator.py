"""The quirks the OAuth-style server simulator enforces, spoken to in raw HTTP."""

from __future__ import annotations

import base64
import collections
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from tokengate.upstreams.loopback import serve_in_thread
from tokengate.upstreams.oauth.simulator import (
    ODD_USER,
    VANISHED_USER,
    WALK_USER,
    OAuthSimState,
    SimToken,
    build_app,
    sample_state,
)

CLIENT_ID = "sim-test-client"
CLIENT_SECRET = "sim-test-secret"
API = "/oauth/api/v1/users/"
T1 = "11111111-1111-4111-8111-111111111111"
T2 = "22222222-2222-4222-8222-222222222222"
T3 = "33333333-3333-4333-8333-333333333333"
T4 = "44444444-4444-4444-8444-444444444444"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


AUTH = {"Authorization": _basic(CLIENT_ID, CLIENT_SECRET)}


def _state() -> OAuthSimState:
    state = OAuthSimState(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    state.users["u1"] = [
        SimToken(T1, "Client X", 1381322054000, ["email", "profile"], device_name="my iPad"),
        SimToken(T2, "Client Y", 1381321302000, ["email"], type="FINGER_PRINT"),
        # Expired, but with a refresh token: still listed, flagged.
        SimToken(T3, "Client Z", 1381321302000, [], expired=True, refresh_token_issued=True),
        # Expired without a refresh token: vanished.
        SimToken(T4, "Client Z", 1381321302000, [], expired=True, refresh_token_issued=False),
    ]
    state.users["only-vanished"] = [
        SimToken(T4, "Client Z", 1, [], expired=True, refresh_token_issued=None)
    ]
    state.users["a/b c"] = [SimToken(T1, "Slashy", 5, ["openid"])]
    return state


@pytest.fixture(scope="module")
def _served() -> Iterator[tuple[OAuthSimState, str]]:
    state = _state()
    with serve_in_thread(build_app(state)) as url:
        yield state, url


@pytest.fixture
def server(_served: tuple[OAuthSimState, str]) -> Iterator[tuple[OAuthSimState, httpx.Client]]:
    """The module's simulator, its users and log reset in place, and a raw client."""
    state, url = _served
    state.users = _state().users
    state.control.faults = []
    state.control.requests.clear()
    with httpx.Client(base_url=url, trust_env=False) as client:
        yield state, client


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-auth"),
        pytest.param({"Authorization": _basic(CLIENT_ID, "wrong")}, id="wrong-secret"),
        pytest.param({"Authorization": _basic("other", CLIENT_SECRET)}, id="wrong-client"),
        pytest.param({"Authorization": _basic(CLIENT_ID, "")}, id="empty-secret"),
        pytest.param({"Authorization": f"Bearer {CLIENT_SECRET}"}, id="bearer"),
        pytest.param({"Authorization": "Basic !!!notbase64"}, id="bad-base64"),
        pytest.param(
            {"Authorization": "Basic " + base64.b64encode(CLIENT_ID.encode()).decode()},
            id="no-colon",
        ),
        pytest.param(
            {"Authorization": "Basic " + base64.b64encode(b"\xff:\xfe").decode()}, id="not-utf8"
        ),
    ],
)
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_basic_client_credentials_are_required(
    server: tuple[OAuthSimState, httpx.Client], headers: dict[str, str], method: str
) -> None:
    state, client = server
    path = API + "u1/tokens" + (f"/{T1}" if method == "DELETE" else "")
    response = client.request(method, path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    assert len(state.listed("u1")) == 3, "an unauthorised DELETE must not delete"


def test_list_shape_and_headers(server: tuple[OAuthSimState, httpx.Client]) -> None:
    _, client = server
    response = client.get(API + "u1/tokens", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json;charset=UTF-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    tokens = response.json()["tokens"]
    # Reverse insertion order, and the vanished token T4 is left out.
    assert [t["id"] for t in tokens] == [T3, T2, T1]
    assert tokens[2] == {
        "id": T1,
        "client_name": "Client X",
        "device_name": "my iPad",
        "created_at": 1381322054000,
        "scopes": ["email", "profile"],
        "type": "DEFAULT",
    }
    assert "device_name" not in tokens[1]
    assert tokens[1]["type"] == "FINGER_PRINT"
    assert tokens[0]["expired"] is True
    assert tokens[0]["refresh_token_issued"] is True


@pytest.mark.parametrize("user", ["nobody", "only-vanished"])
def test_404_no_tokens_found(server: tuple[OAuthSimState, httpx.Client], user: str) -> None:
    _, client = server
    response = client.get(API + f"{user}/tokens", headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"error": "No tokens found"}
    assert response.headers["content-type"] == "application/json;charset=UTF-8"
    assert response.headers["cache-control"] == "no-store"


def test_encoded_user_ids_are_decoded_once(server: tuple[OAuthSimState, httpx.Client]) -> None:
    _, client = server
    response = client.get(API + quote("a/b c", safe="") + "/tokens", headers=AUTH)
    assert response.status_code == 200
    assert [t["client_name"] for t in response.json()["tokens"]] == ["Slashy"]
    # The unencoded slash is another path, not this user.
    assert client.get(API + "a/b c/tokens", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    ("user", "token"),
    [("u1", T1), ("u1", T4), ("nobody", T1), ("u1", "not-a-uuid")],
    ids=["existing", "vanished", "unknown-user", "unknown-token"],
)
def test_delete_is_always_204(
    server: tuple[OAuthSimState, httpx.Client], user: str, token: str
) -> None:
    _, client = server
    for _ in range(2):
        response = client.delete(API + f"{user}/tokens/{token}", headers=AUTH)
        assert response.status_code == 204
        assert response.content == b""


def test_delete_removes_only_that_users_token(server: tuple[OAuthSimState, httpx.Client]) -> None:
    state, client = server
    assert client.delete(API + f"u1/tokens/{T1}", headers=AUTH).status_code == 204
    assert [t.id for t in state.listed("u1")] == [T2, T3]
    # The same token id under another user is that user's business.
    assert [t.id for t in state.listed("a/b c")] == [T1]
    ids = [t["id"] for t in client.get(API + "u1/tokens", headers=AUTH).json()["tokens"]]
    assert ids == [T3, T2]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("DELETE", "u1/tokens", 405),
        ("GET", f"u1/tokens/{T1}", 405),
        ("GET", "u1", 404),
        ("GET", "u1/sessions", 404),
        ("POST", "u1/tokens", 405),
    ],
)
def test_other_routes(
    server: tuple[OAuthSimState, httpx.Client], method: str, path: str, status: int
) -> None:
    _, client = server
    assert client.request(method, API + path, headers=AUTH).status_code == status


def test_requests_are_logged_and_faults_injected(
    server: tuple[OAuthSimState, httpx.Client],
) -> None:
    state, client = server
    client.get(API + "u1/tokens", headers=AUTH)
    assert client.get("/_sim/requests").json()["requests"][0]["path"] == API + "u1/tokens"
    state.control.set_faults([{"kind": "status", "status": 503, "times": 1}])
    assert client.get(API + "u1/tokens", headers=AUTH).status_code == 503
    assert client.get(API + "u1/tokens", headers=AUTH).status_code == 200
    assert state.control.count("GET", API) == 3


def test_sample_state_is_deterministic_and_varied() -> None:
    state = sample_state(64)
    again = sample_state(64)
    assert state.users == again.users
    assert sample_state(64, seed=2).users != state.users
    walk = state.listed(WALK_USER)
    assert len(walk) == 64
    assert len(state.users[WALK_USER]) > 64, "some tokens vanished after expiring"
    assert len(state.listed(VANISHED_USER)) == 0
    assert state.users[VANISHED_USER]
    assert 0 < len(state.listed(ODD_USER)) < 10
    sizes = sorted(len(state.listed(u)) for u in state.users)
    assert len(set(sizes)) >= 4, "users with varied token counts"
    assert max(collections.Counter(t.created_at for t in walk).values()) > 1
    assert max(collections.Counter(t.client_name.casefold() for t in walk).values()) > 1
    # Names equal only when case-folded, so the gateway's folding is exercised.
    assert len({t.client_name for t in walk}) > len({t.client_name.casefold() for t in walk})
    assert {t.type for t in walk} == {"DEFAULT", "FINGER_PRINT"}
    assert any(t.device_name for t in walk)
    assert any(t.device_name is None for t in walk)
    assert any(t.expired for t in walk)
    assert any(t.expired is False for t in walk)
    assert any(t.expired is None for u in state.users for t in state.listed(u))
    assert len({t.id for t in walk}) == 64


def test_sample_state_credentials() -> None:
    assert sample_state(client_id="a", client_secret="b").client_secret == "b"
    assert len(sample_state().listed(WALK_USER)) == 30
    with pytest.raises(TypeError, match="token"):
        sample_state(token="x")
