"""The Amper simulator enforces what the seed documents: auth, limits, sort values, ETags."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tokengate.upstreams.amper.simulator import (
    GATEWAY_NAME,
    MEDIA_TYPE,
    AmperSimState,
    build_app,
    sample_state,
)
from tokengate.upstreams.loopback import serve_in_thread

API = "/v1/access_tokens"


def basic(token: str, password: str = "") -> dict[str, str]:
    raw = base64.b64encode(f"{token}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.fixture(scope="module")
def _server() -> Iterator[tuple[AmperSimState, str]]:
    state = sample_state(30)
    with serve_in_thread(build_app(state)) as url:
        yield state, url


@pytest.fixture
def sim(_server: tuple[AmperSimState, str]) -> Iterator[tuple[AmperSimState, httpx.Client]]:
    """Fresh sample data on the module's server, and a client that authenticates."""
    state, url = _server
    fresh = sample_state(30)
    for f in dataclasses.fields(AmperSimState):
        if f.name != "control":
            setattr(state, f.name, getattr(fresh, f.name))
    state.control.faults = []
    state.control.requests.clear()
    with httpx.Client(base_url=url, headers=basic(state.api_token), trust_env=False) as client:
        yield state, client


def ids(response: httpx.Response) -> list[str]:
    return [item["id"] for item in response.json()["data"]]


# -- auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        pytest.param("none", 401, id="no-credentials"),
        pytest.param("basic", 200, id="basic-token-colon-empty-password"),
        pytest.param("bearer", 200, id="bearer-token"),
        pytest.param("no-colon", 401, id="basic-without-the-colon"),
        pytest.param("password", 401, id="basic-with-a-password"),
        pytest.param("wrong", 401, id="unknown-token"),
        pytest.param("garbage", 401, id="basic-not-base64"),
        pytest.param("digest", 401, id="other-scheme"),
    ],
)
def test_auth(sim: tuple[AmperSimState, httpx.Client], kind: str, status: int) -> None:
    state, client = sim
    token = state.api_token
    chosen = {
        "none": {},
        "basic": basic(token),
        "bearer": {"Authorization": f"Bearer {token}"},
        "no-colon": {"Authorization": "Basic " + base64.b64encode(token.encode()).decode()},
        "password": basic(token, "x"),
        "wrong": basic("not-a-token"),
        "garbage": {"Authorization": "Basic !!!"},
        "digest": {"Authorization": f"Digest {token}"},
    }[kind]
    response = httpx.get(f"{client.base_url}{API}", headers=chosen)
    assert response.status_code == status
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Basic")
        assert response.json()["errors"][0]["status"] == "401"


def test_any_of_the_accounts_tokens_is_a_credential(
    sim: tuple[AmperSimState, httpx.Client],
) -> None:
    state, client = sim
    other = state.tokens[-1]
    response = httpx.get(f"{client.base_url}{API}", headers=basic(other.secret))
    assert response.status_code == 200
    state.tokens.remove(other)
    assert httpx.get(f"{client.base_url}{API}", headers=basic(other.secret)).status_code == 401


def test_the_credential_is_listed_with_its_redacted_prefix(
    sim: tuple[AmperSimState, httpx.Client],
) -> None:
    state, client = sim
    listed = client.get(API, params={"length": 100}).json()["data"]
    [mine] = [t for t in listed if t["attributes"]["display_name"] == GATEWAY_NAME]
    prefix = mine["attributes"]["access_token_redacted"].removesuffix("***")
    assert len(prefix) == 8 and state.api_token.startswith(prefix)
    assert all("access_token_plaintext" not in t["attributes"] for t in listed)


def test_a_chosen_credential_is_used() -> None:
    state = sample_state(3, api_token="my-own-amper-token")
    assert state.api_token == "my-own-amper-token"
    assert state.credential_token() is not None
    assert len(state.tokens) == 3
    with pytest.raises(ValueError, match="at least 1"):
        sample_state(0)


def test_touch_on_use_sets_date_access(sim: tuple[AmperSimState, httpx.Client]) -> None:
    state, client = sim
    mine = state.credential_token()
    assert mine is not None
    before, etag = mine.date_access, mine.etag
    state.touch_on_use = True
    client.get(API)
    assert mine.date_access is not None and before is not None and mine.date_access > before
    assert mine.etag != etag


# -- list limits -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "status", "count"),
    [
        pytest.param({}, 200, 10, id="default-length-ten"),
        pytest.param({"offset": 0, "length": 20}, 200, 20, id="seed-example-request"),
        pytest.param({"length": 1}, 200, 1, id="length-one"),
        pytest.param({"length": 100}, 200, 30, id="length-hundred"),
        pytest.param({"limit": 5}, 200, 5, id="limit-alias"),
        pytest.param({"length": 0}, 400, None, id="length-zero"),
        pytest.param({"length": 101}, 400, None, id="length-over-hundred"),
        pytest.param({"length": "ten"}, 400, None, id="length-not-a-number"),
        pytest.param({"length": 5, "limit": 5}, 400, None, id="length-and-limit"),
        pytest.param({"offset": 1000}, 200, 0, id="offset-thousand"),
        pytest.param({"offset": 1001}, 400, None, id="offset-over-thousand"),
        pytest.param({"offset": -1}, 400, None, id="offset-negative"),
        pytest.param({"offset": 25}, 200, 5, id="offset-near-the-end"),
        pytest.param({"cursor": 1}, 200, 10, id="cursor-accepted-and-ignored"),
        pytest.param({"cursor": 0}, 400, None, id="cursor-zero"),
        pytest.param({"cursor": 101}, 400, None, id="cursor-over-hundred"),
        pytest.param({"sort": "-date_create,display_name"}, 200, 10, id="sort-combination"),
        pytest.param({"sort": "date_created"}, 400, None, id="sort-unknown"),
        pytest.param({"sort": "date_create,-date_create"}, 400, None, id="sort-field-twice"),
        pytest.param({"sort": "id"}, 400, None, id="sort-by-id-undocumented"),
    ],
)
def test_list_parameters(
    sim: tuple[AmperSimState, httpx.Client],
    params: dict[str, Any],
    status: int,
    count: int | None,
) -> None:
    _, client = sim
    response = client.get(API, params=params)
    assert response.status_code == status
    assert response.headers["content-type"] == MEDIA_TYPE
    if count is not None:
        assert len(response.json()["data"]) == count
    else:
        assert response.json()["errors"][0]["status"] == "400"


def test_links_follow_the_seed(sim: tuple[AmperSimState, httpx.Client]) -> None:
    _, client = sim
    base = str(client.base_url).rstrip("/")
    first = client.get(API, params={"offset": 0, "length": 20}).json()["links"]
    assert first == {
        "self": f"{base}{API}?offset=0&length=20",
        "first": f"{base}{API}",
        "prev": None,
        # The seed's quirk: the page size is dropped.
        "next": f"{base}{API}?offset=20",
    }
    last = client.get(API, params={"offset": 20, "length": 20, "sort": "date_create"})
    assert last.json()["links"]["next"] is None
    assert last.json()["links"]["prev"] == f"{base}{API}?offset=0&sort=date_create"
    followed = client.get(first["next"])
    assert len(followed.json()["data"]) == 10  # the default, not the 20 asked for before


def test_links_can_point_elsewhere(sim: tuple[AmperSimState, httpx.Client]) -> None:
    state, client = sim
    state.link_base = "https://api.ampermusic.com"
    links = client.get(API).json()["links"]
    assert links["next"] == "https://api.ampermusic.com/v1/access_tokens?offset=10"


# -- order -----------------------------------------------------------------------------------


def listed(client: httpx.Client, sort: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = client.get(API, params={"length": 100, "sort": sort}).json()[
        "data"
    ]
    return data


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_sample_data_has_ties_nulls_and_offsets(sim: tuple[AmperSimState, httpx.Client]) -> None:
    _, client = sim
    tokens = [t["attributes"] for t in listed(client, "date_create")]
    created = [instant(t["date_create"]) for t in tokens]
    accessed = [t["date_access"] for t in tokens]
    folded = [t["display_name"].casefold() for t in tokens]
    assert len(set(created)) < len(created)
    assert len(set(folded)) < len(folded)
    used = [instant(a) for a in accessed if a is not None]
    assert len(set(used)) < len(used)
    assert any(a is None for a in accessed)
    offsets = {t["date_create"][-6:] for t in tokens}
    assert "+00:00" in offsets and len(offsets) >= 3
    assert all(len(t["date_create"]) == len("2018-10-04T00:00:00.000000+00:00") for t in tokens)
    # The seed's own two tokens are there, as the example shows them.
    seed = [t for t in tokens if t["display_name"].startswith("Token for my very")]
    assert [(t["date_create"], t["date_access"]) for t in seed] == [
        ("2018-10-04T00:00:00.000000+00:00", None)
    ] * 2


def test_sample_data_is_deterministic() -> None:
    a, b, c = sample_state(20), sample_state(20), sample_state(20, seed=2)
    assert [t.to_json("x") for t in a.tokens] == [t.to_json("x") for t in b.tokens]
    assert a.api_token == b.api_token
    assert [t.id for t in a.tokens] != [t.id for t in c.tokens]


def test_ties_come_in_reverse_insertion_order(sim: tuple[AmperSimState, httpx.Client]) -> None:
    state, client = sim
    seeded = [t.id for t in state.tokens if t.display_name.startswith("Token for my very")]
    in_list = [t["id"] for t in listed(client, "date_create") if t["id"] in seeded]
    assert in_list == list(reversed(seeded)) == ["efgh5678", "abcd1234"]
    unsorted = [t["id"] for t in listed(client, "")]
    assert unsorted == [t.id for t in reversed(state.tokens)]


def test_dates_sort_by_instant_not_text(sim: tuple[AmperSimState, httpx.Client]) -> None:
    _, client = sim
    ascending = [instant(t["attributes"]["date_create"]) for t in listed(client, "date_create")]
    assert ascending == sorted(ascending)
    descending = [instant(t["attributes"]["date_create"]) for t in listed(client, "-date_create")]
    assert descending == sorted(descending, reverse=True)


def test_a_broken_server_sorts_dates_as_text(sim: tuple[AmperSimState, httpx.Client]) -> None:
    state, client = sim
    state.sort_dates_as_text = True
    texts = [t["attributes"]["date_create"] for t in listed(client, "date_create")]
    assert texts == sorted(texts)


def test_names_sort_case_sensitively(sim: tuple[AmperSimState, httpx.Client]) -> None:
    _, client = sim
    names = [t["attributes"]["display_name"] for t in listed(client, "display_name")]
    assert names == sorted(names)
    assert names != sorted(names, key=str.casefold)


@pytest.mark.parametrize(
    ("placement", "asc_nulls_first", "desc_nulls_first"),
    [("first_in_asc", True, False), ("last_in_asc", False, True), ("last", False, False)],
)
def test_null_placement(
    sim: tuple[AmperSimState, httpx.Client],
    placement: Any,
    asc_nulls_first: bool,
    desc_nulls_first: bool,
) -> None:
    state, client = sim
    state.null_placement = placement
    for sort, nulls_first in (("date_access", asc_nulls_first), ("-date_access", desc_nulls_first)):
        values = [t["attributes"]["date_access"] for t in listed(client, sort)]
        nulls = values.count(None)
        block = values[:nulls] if nulls_first else values[len(values) - nulls :]
        assert nulls and block == [None] * nulls
        used = [instant(v) for v in values if v is not None]
        assert used == sorted(used, reverse=sort.startswith("-"))


# -- ETags, single tokens, create, delete ----------------------------------------------------


def test_every_data_response_has_a_weak_etag(sim: tuple[AmperSimState, httpx.Client]) -> None:
    state, client = sim
    listing = client.get(API, params={"length": 100})
    assert listing.headers["etag"].startswith('W/"')
    token = state.tokens[1]
    one = client.get(f"{API}/{token.id}")
    assert one.status_code == 200 and one.headers["content-type"] == MEDIA_TYPE
    assert one.headers["etag"] == token.etag and token.etag.startswith('W/"')
    assert one.json()["data"]["id"] == token.id
    token.display_name = "renamed"
    token.changed()
    assert client.get(f"{API}/{token.id}").headers["etag"] != one.headers["etag"]
    assert client.get(API, params={"length": 100}).headers["etag"] != listing.headers["etag"]


def test_unknown_token_is_404(sim: tuple[AmperSimState, httpx.Client]) -> None:
    _, client = sim
    response = client.get(f"{API}/nope0000")
    assert response.status_code == 404 and response.json()["errors"][0]["status"] == "404"


def test_create_shows_the_secret_once(sim: tuple[AmperSimState, httpx.Client]) -> None:
    state, client = sim
    body = {"data": {"type": "access_tokens", "attributes": {"display_name": "New app"}}}
    response = client.post(API, content=json.dumps(body), headers={"Content-Type": MEDIA_TYPE})
    assert response.status_code == 201
    data = response.json()["data"]
    secret = data["attributes"]["access_token_plaintext"]
    assert secret.startswith(data["attributes"]["access_token_redacted"].removesuffix("***"))
    assert response.headers["location"].endswith(f"{API}/{data['id']}")
    assert response.headers["etag"] == state.tokens[-1].etag
    again = client.get(f"{API}/{data['id']}").json()["data"]["attributes"]
    assert "access_token_plaintext" not in again
    assert again["date_access"] is None
    # The new token is itself a credential.
    assert httpx.get(f"{client.base_url}{API}", headers=basic(secret)).status_code == 200


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        pytest.param({"data": {"type": "access_tokens"}}, "application/json", 415, id="json"),
        pytest.param("{not json", MEDIA_TYPE, 400, id="not-json"),
        pytest.param({"data": {"type": "songs"}}, MEDIA_TYPE, 409, id="wrong-type"),
        pytest.param(
            {"data": {"type": "access_tokens", "attributes": {"display_name": "x", "scope": []}}},
            MEDIA_TYPE,
            400,
            id="undocumented-attribute",
        ),
        pytest.param(
            {"data": {"type": "access_tokens", "attributes": {"display_name": "  "}}},
            MEDIA_TYPE,
            422,
            id="blank-name",
        ),
        pytest.param(
            {"data": {"type": "access_tokens", "attributes": {"display_name": "x" * 256}}},
            MEDIA_TYPE,
            422,
            id="name-too-long",
        ),
    ],
)
def test_create_refusals(
    sim: tuple[AmperSimState, httpx.Client], body: object, content_type: str, status: int
) -> None:
    state, client = sim
    before = len(state.tokens)
    text = body if isinstance(body, str) else json.dumps(body)
    response = client.post(API, content=text, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert len(state.tokens) == before


def test_delete_needs_the_current_etag(sim: tuple[AmperSimState, httpx.Client]) -> None:
    state, client = sim
    token = state.tokens[3]
    url = f"{API}/{token.id}"
    etag = client.get(url).headers["etag"]
    assert client.delete(url).status_code == 428
    assert client.delete(url, headers={"If-Match": 'W/"stale"'}).status_code == 412
    assert client.delete(url, headers={"If-Match": etag.removeprefix("W/")}).status_code == 412
    assert client.delete(url, headers={"If-Match": etag}).status_code == 204
    assert client.get(url).status_code == 404
    assert client.delete(url, headers={"If-Match": etag}).status_code == 404
    assert client.patch(f"{API}/{state.tokens[4].id}", json={}).status_code == 405


def test_concurrent_edits_change_the_etag_after_a_read(
    sim: tuple[AmperSimState, httpx.Client],
) -> None:
    state, client = sim
    token = state.tokens[5]
    url = f"{API}/{token.id}"
    state.concurrent_edits[token.id] = 1
    stale = client.get(url).headers["etag"]
    assert client.delete(url, headers={"If-Match": stale}).status_code == 412
    fresh = client.get(url).headers["etag"]
    assert fresh != stale
    assert client.delete(url, headers={"If-Match": fresh}).status_code == 204


def test_requests_are_logged_and_faults_injected(sim: tuple[AmperSimState, httpx.Client]) -> None:
    state, client = sim
    state.control.set_faults([{"kind": "status", "status": 503, "times": 1}])
    assert client.get(API, params={"length": 3}).status_code == 503
    assert client.get(API, params={"length": 3}).status_code == 200
    assert [(r.method, r.path, r.query) for r in state.control.requests] == [
        ("GET", API, "length=3"),
        ("GET", API, "length=3"),
    ]
