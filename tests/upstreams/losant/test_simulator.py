"""The quirks the Losant simulator enforces, spoken to in raw HTTP over loopback."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tokengate.upstreams.loopback import serve_in_thread
from tokengate.upstreams.losant.simulator import (
    DEFAULT_APPLICATIONS,
    LosantSimState,
    build_app,
    glob_matches,
    sample_state,
)

API_TOKEN = "sim-test-api-token"
APP1, APP2 = DEFAULT_APPLICATIONS
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
LIST = f"/applications/{APP1}/tokens"
MISSING_APP = "0123456789abcdef01234567"
MISSING_TOKEN = "fedcba9876543210fedcba98"
DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
HEX24 = re.compile(r"[0-9a-f]{24}")
LIST_KEYS = {
    "items",
    "count",
    "totalCount",
    "perPage",
    "page",
    "sortField",
    "sortDirection",
    "ownerId",
    "ownerType",
}


def _token(token_id: str, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": token_id,
        "apiTokenId": token_id,
        "ownerId": APP1,
        "ownerType": "application",
        "name": name,
        "creationDate": "2016-06-13T04:00:00.000Z",
        "lastUpdated": "2016-06-13T04:00:00.000Z",
        "scope": ["all.Application"],
        "status": "active",
        "token": f"secret-{token_id[-2:]}",
        **extra,
    }


T1, T2, T3, T4 = (f"{i:024x}" for i in (0xA1, 0xA2, 0xA3, 0xA4))


def _state() -> LosantSimState:
    """Four tokens inserted T1..T4: a name tie (case), a date tie, a token without expiry."""
    return LosantSimState(
        applications={
            APP1: [
                _token(T1, "beta", expirationDate="2030-01-01T00:00:00.000Z"),
                _token(T2, "Beta", expirationDate="2030-01-01T00:00:00.000Z"),
                _token(T3, "alpha", creationDate="2015-01-01T00:00:00.000Z"),
                _token(T4, "Gamma", status="inactive", expirationDate="2031-01-01T00:00:00.000Z"),
            ],
            APP2: [],
        },
        api_token=API_TOKEN,
    )


@pytest.fixture(scope="module")
def _served() -> Iterator[tuple[LosantSimState, str]]:
    state = _state()
    with serve_in_thread(build_app(state)) as url:
        yield state, url


@pytest.fixture
def server(_served: tuple[LosantSimState, str]) -> Iterator[tuple[LosantSimState, httpx.Client]]:
    state, url = _served
    fresh = _state()
    state.applications = fresh.applications
    state.name_sort = "insensitive"
    state.nulls = "smallest"
    state.control.requests.clear()
    state.control.faults = []
    with httpx.Client(base_url=url, trust_env=False) as client:
        yield state, client


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [t["id"] for t in response.json()["items"]]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": API_TOKEN},
        {"Authorization": f"bearer {API_TOKEN}x"},
        {"Authorization": "Basic " + API_TOKEN},
    ],
    ids=["missing", "wrong-token", "no-scheme", "other-token", "basic"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", LIST),
        ("POST", LIST),
        ("GET", f"{LIST}/{T1}"),
        ("PATCH", f"{LIST}/{T1}"),
        ("DELETE", f"{LIST}/{T1}"),
        ("GET", f"/applications/{MISSING_APP}/tokens"),
    ],
)
def test_bearer_auth_is_required_everywhere(
    server: tuple[LosantSimState, httpx.Client],
    headers: dict[str, str],
    method: str,
    path: str,
) -> None:
    state, client = server
    response = client.request(method, path, headers=headers, json={"name": "x"})
    assert response.status_code == 401
    assert set(response.json()) == {"type", "message"}
    assert len(state.applications[APP1]) == 4  # nothing happened


def test_list_body_shape_and_the_secret_is_included(
    server: tuple[LosantSimState, httpx.Client],
) -> None:
    _, client = server
    body = client.get(LIST, headers=AUTH).json()
    assert set(body) == LIST_KEYS
    assert body["count"] == 4
    assert body["totalCount"] == 4
    assert body["perPage"] == 100
    assert body["page"] == 0
    assert body["sortField"] == "name"
    assert body["sortDirection"] == "asc"
    assert body["ownerId"] == APP1
    assert body["ownerType"] == "application"
    for item in body["items"]:
        assert item["token"].startswith("secret-")
        assert HEX24.fullmatch(item["id"])
        assert DATE.fullmatch(item["creationDate"])


def test_default_order_is_name_ascending_case_insensitive_ties_newest_first(
    server: tuple[LosantSimState, httpx.Client],
) -> None:
    _, client = server
    # alpha, then the beta/Beta tie in reverse insertion order, then Gamma.
    assert _ids(client.get(LIST, headers=AUTH)) == [T3, T2, T1, T4]
    desc = client.get(LIST, params={"sortDirection": "desc"}, headers=AUTH)
    assert _ids(desc) == [T4, T2, T1, T3]


def test_binary_name_sort_puts_capitals_first(
    server: tuple[LosantSimState, httpx.Client],
) -> None:
    state, client = server
    state.name_sort = "binary"
    assert _ids(client.get(LIST, headers=AUTH)) == [T2, T4, T3, T1]


def test_missing_expiration_sorts_first_ascending_and_last_descending(
    server: tuple[LosantSimState, httpx.Client],
) -> None:
    _, client = server
    asc = client.get(LIST, params={"sortField": "expirationDate"}, headers=AUTH)
    assert _ids(asc) == [T3, T2, T1, T4]
    desc = client.get(
        LIST, params={"sortField": "expirationDate", "sortDirection": "DESC"}, headers=AUTH
    )
    assert _ids(desc) == [T4, T2, T1, T3]


def test_nulls_can_sort_where_the_gateway_puts_them(
    server: tuple[LosantSimState, httpx.Client],
) -> None:
    state, client = server
    state.nulls = "largest"
    asc = client.get(LIST, params={"sortField": "expirationDate"}, headers=AUTH)
    assert _ids(asc) == [T2, T1, T4, T3]
    desc = client.get(
        LIST, params={"sortField": "expirationDate", "sortDirection": "desc"}, headers=AUTH
    )
    assert _ids(desc) == [T3, T4, T2, T1]


@pytest.mark.parametrize(
    ("sort_field", "expected"),
    [
        ("id", [T1, T2, T3, T4]),
        ("creationDate", [T3, T4, T2, T1]),
        ("lastUpdated", [T4, T3, T2, T1]),
        ("status", [T3, T2, T1, T4]),
    ],
)
def test_every_documented_sort_field(
    server: tuple[LosantSimState, httpx.Client], sort_field: str, expected: list[str]
) -> None:
    _, client = server
    assert _ids(client.get(LIST, params={"sortField": sort_field}, headers=AUTH)) == expected


def test_pages_are_zero_based(server: tuple[LosantSimState, httpx.Client]) -> None:
    _, client = server
    pages = [
        _ids(client.get(LIST, params={"page": p, "perPage": 3, "sortField": "id"}, headers=AUTH))
        for p in range(3)
    ]
    assert pages == [[T1, T2, T3], [T4], []]
    last = client.get(LIST, params={"page": 5, "perPage": 3}, headers=AUTH).json()
    assert last["totalCount"] == 4
    assert last["count"] == 0


@pytest.mark.parametrize(
    "params",
    [
        {"perPage": "1001"},
        {"perPage": "0"},
        {"perPage": "ten"},
        {"perPage": "-1"},
        {"page": "-1"},
        {"page": "1.5"},
        {"sortField": "createdAt"},
        {"sortField": "token"},
        {"sortDirection": "up"},
        {"filterField": "scope", "filter": "x"},
        {"filterField": "description", "filter": "x"},
    ],
)
def test_malformed_list_requests_are_400(
    server: tuple[LosantSimState, httpx.Client], params: dict[str, str]
) -> None:
    _, client = server
    response = client.get(LIST, params=params, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["type"] == "Validation"


def test_per_page_bounds(server: tuple[LosantSimState, httpx.Client]) -> None:
    state, client = server
    state.applications[APP2] = sample_state(260, application_ids=(APP2,)).applications[APP2]
    app2 = f"/applications/{APP2}/tokens"
    assert len(_ids(client.get(app2, headers=AUTH))) == 100
    assert len(_ids(client.get(app2, params={"perPage": 1000}, headers=AUTH))) == 260


@pytest.mark.parametrize(
    ("field", "pattern", "expected"),
    [
        ("name", "beta", [T1]),
        ("name", "Beta", [T2]),
        ("name", "?eta", [T2, T1]),
        ("name", "*a", [T3, T2, T1, T4]),
        ("name", "*A*", []),
        ("name", "b*", [T1]),
        ("name", "", [T3, T2, T1, T4]),
        ("status", "inactive", [T4]),
        ("status", "active", [T3, T2, T1]),
        ("status", "*active", [T3, T2, T1, T4]),
    ],
)
def test_filter_glob_is_case_sensitive(
    server: tuple[LosantSimState, httpx.Client], field: str, pattern: str, expected: list[str]
) -> None:
    _, client = server
    response = client.get(LIST, params={"filterField": field, "filter": pattern}, headers=AUTH)
    assert _ids(response) == expected
    assert response.json()["totalCount"] == len(expected)


def test_glob_helper() -> None:
    assert glob_matches("my*token", "my api token")
    assert not glob_matches("my*token", "My api token")
    assert glob_matches("a?c", "abc")
    assert not glob_matches("a?c", "ac")
    assert glob_matches("a.c", "a.c")
    assert not glob_matches("a.c", "abc")
    assert glob_matches("*", "line\nbreak")


@pytest.mark.parametrize(
    "path",
    [
        f"/applications/{MISSING_APP}/tokens",
        f"/applications/{MISSING_APP}/tokens/{T1}",
        "/applications/not-an-id/tokens",
        f"{LIST}/{MISSING_TOKEN}",
        f"{LIST}/not-an-id",
    ],
)
def test_unknown_application_or_token_is_404(
    server: tuple[LosantSimState, httpx.Client], path: str
) -> None:
    _, client = server
    response = client.get(path, headers=AUTH)
    assert response.status_code == 404
    body = response.json()
    assert body["type"] == "NotFound"
    assert body["message"].endswith("was not found")


def test_get_one_includes_the_secret(server: tuple[LosantSimState, httpx.Client]) -> None:
    _, client = server
    body = client.get(f"{LIST}/{T1}", headers=AUTH).json()
    assert body["id"] == T1
    assert body["token"] == "secret-a1"


def test_create_the_seed_example(server: tuple[LosantSimState, httpx.Client]) -> None:
    state, client = server
    seed_post = {
        "name": "My New API Token",
        "expirationDate": "2017-06-13T04:00:00.000Z",
        "scope": ["all.Application"],
        "status": "active",
    }
    response = client.post(LIST, json=seed_post, headers=AUTH)
    assert response.status_code == 201
    body = response.json()
    assert HEX24.fullmatch(body["id"])
    assert body["apiTokenId"] == body["id"]
    assert body["token"]
    assert {k: body[k] for k in seed_post} == seed_post
    assert DATE.fullmatch(body["creationDate"])
    assert body["lastUpdated"] == body["creationDate"]
    assert body["ownerId"] == APP1
    assert state.applications[APP1][-1]["id"] == body["id"]
    minimal = client.post(LIST, json={"name": "n", "description": "d"}, headers=AUTH).json()
    assert minimal["status"] == "active"
    assert minimal["scope"] == []
    assert "expirationDate" not in minimal


@pytest.mark.parametrize(
    "body",
    [
        {"description": "no name"},
        {"name": ""},
        {"name": "x" * 256},
        {"name": 5},
        {"name": "n", "owner": "me"},
        {"name": "n", "token": "chosen"},
        {"name": "n", "status": "revoked"},
        {"name": "n", "scope": ["all.Everything"]},
        {"name": "n", "scope": ["all.Application", "all.Application"]},
        {"name": "n", "scope": "all.Application"},
        {"name": "n", "expirationDate": "next year"},
        {"name": "n", "description": 1},
        ["name"],
    ],
)
def test_create_validates_against_the_post_schema(
    server: tuple[LosantSimState, httpx.Client], body: object
) -> None:
    state, client = server
    response = client.post(LIST, json=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["type"] == "Validation"
    assert len(state.applications[APP1]) == 4


def test_create_refuses_invalid_json(server: tuple[LosantSimState, httpx.Client]) -> None:
    _, client = server
    response = client.post(LIST, content=b"{not json", headers=AUTH)
    assert response.status_code == 400


def test_scopes_of_every_group_are_accepted(server: tuple[LosantSimState, httpx.Client]) -> None:
    _, client = server
    scopes = ["all.Application", "org.get", "instance.get", "me.get", "data.*"]
    response = client.post(LIST, json={"name": "n", "scope": scopes}, headers=AUTH)
    assert response.status_code == 201
    assert response.json()["scope"] == scopes


def test_patch_name_description_status(server: tuple[LosantSimState, httpx.Client]) -> None:
    _, client = server
    response = client.patch(
        f"{LIST}/{T1}",
        json={"name": "renamed", "description": "now", "status": "inactive"},
        headers=AUTH,
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["description"], body["status"]) == ("renamed", "now", "inactive")
    assert body["lastUpdated"] > body["creationDate"]


@pytest.mark.parametrize(
    "body",
    [{"expirationDate": "2030-01-01T00:00:00.000Z"}, {"status": "expired"}, {"name": ""}, []],
)
def test_patch_validates_against_the_patch_schema(
    server: tuple[LosantSimState, httpx.Client], body: object
) -> None:
    _, client = server
    response = client.patch(f"{LIST}/{T1}", json=body, headers=AUTH)
    assert response.status_code == 400


def test_delete_answers_success_then_404(server: tuple[LosantSimState, httpx.Client]) -> None:
    state, client = server
    response = client.delete(f"{LIST}/{T2}", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert [t["id"] for t in state.applications[APP1]] == [T1, T3, T4]
    assert client.delete(f"{LIST}/{T2}", headers=AUTH).status_code == 404
    assert client.get(f"{LIST}/{T2}", headers=AUTH).status_code == 404


def test_requests_are_logged_and_faults_injected(
    server: tuple[LosantSimState, httpx.Client],
) -> None:
    state, client = server
    client.get(LIST, params={"page": 2}, headers=AUTH)
    assert state.control.count("GET", "/applications/") == 1
    assert state.control.requests[-1].query == "page=2"
    state.control.set_faults([{"kind": "status", "status": 503, "times": 1}])
    assert client.get(LIST, headers=AUTH).status_code == 503
    assert client.get(LIST, headers=AUTH).status_code == 200


def test_sample_data_is_deterministic_and_has_every_quirk() -> None:
    state = sample_state(30)
    assert sample_state(30).applications == state.applications
    assert sample_state(30, seed=2).applications != state.applications
    assert list(state.applications) == list(DEFAULT_APPLICATIONS)
    tokens = [t for app in state.applications.values() for t in app]
    assert len(tokens) == 30
    assert all(len(app) >= 10 for app in state.applications.values())
    assert len({t["id"] for t in tokens}) == 30
    assert all(HEX24.fullmatch(t["id"]) and DATE.fullmatch(t["creationDate"]) for t in tokens)
    # Ties on every sort field, within one application too.
    for app in state.applications.values():
        for sort_field in ("creationDate", "expirationDate"):
            values = Counter(t[sort_field] for t in app if sort_field in t)
            assert max(values.values()) >= 2, sort_field
        names = Counter(t["name"].casefold() for t in app)
        assert max(names.values()) >= 2
        # Names equal but for case, within the one application.
        assert len(names) < len({t["name"] for t in app})
    # Names equal but for case, and mixed case overall.
    folded = Counter(t["name"].casefold() for t in tokens)
    exact = Counter(t["name"] for t in tokens)
    assert len(folded) < len(exact)
    statuses = Counter(t["status"] for t in tokens)
    assert statuses["inactive"] >= 2
    assert statuses["active"] >= 2
    expiries = Counter(t.get("expirationDate", "never")[:4] for t in tokens)
    assert expiries["neve"] >= 5  # no expiry
    assert expiries["2019"] >= 3  # expired
    assert any(
        t["status"] == "inactive" and t.get("expirationDate", "")[:4] == "2019" for t in tokens
    )
    assert all(t["token"] for t in tokens)


def test_sample_state_takes_other_credentials_and_applications() -> None:
    state = sample_state(5, api_token="other", application_ids=(APP2.upper(),))
    assert state.api_token == "other"
    assert list(state.applications) == [APP2]
    assert len(state.applications[APP2]) == 5


def test_vary_bytes_sends_the_same_json_in_new_bytes() -> None:
    """``vary_bytes`` (the benchmarks' ``--fresh-answers``): each answer differs from the
    last in its bytes, never in its JSON, as with a busy upstream."""
    state = sample_state(6, api_token=API_TOKEN)
    with serve_in_thread(build_app(state)) as url, httpx.Client(base_url=url) as client:
        assert client.post("/_sim/faults", json={"vary_bytes": True}).status_code == 204
        answers = [client.get(LIST, headers=AUTH) for _ in range(2)]
        assert answers[0].content != answers[1].content
        assert answers[0].json() == answers[1].json()
        for answer in answers:
            assert int(answer.headers["content-length"]) == len(answer.content)
        client.delete("/_sim/faults")
        plain = [client.get(LIST, headers=AUTH).content for _ in range(2)]
        assert plain[0] == plain[1]
