"""Persisted operations over loopback HTTP: automatic persisted queries (Apollo's protocol,
POST and GET, a bounded cache that only keeps documents that ran cleanly) and trusted
documents (Relay's and Apollo's manifests, documentId, only_persisted refusing everything
else without calling any upstream)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BOOTSTRAP, Gateway, gateway_config
from tokengate.gateway.app import create_app
from tokengate.gateway.config import ServerConfig
from tokengate.gateway.demo import PROVIDERS, Simulated, simulators
from tokengate.upstreams.loopback import serve_in_thread

PAGE = (
    "query PersistedPage($after: String) { tokens(first: 2, after: $after) "
    "{ totalCount pageInfo { endCursor hasNextPage } nodes { id name } } }"
)
SOURCES = "query SourceKeys { sources { key } }"
INTERNAL = 'query Internal { tokens(first: 5, filter: {sources: ["internal"]}) { nodes { id } } }'
REVOKE = "mutation Revoke($id: ID!) { revokeToken(input: {id: $id}) { revokedTokenId } }"
CREATE = (
    'mutation Create { createToken(input: {source: "internal", name: "victim", '
    'scopes: ["tokens:read"]}) { token { id } } }'
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def apq(digest: str, version: object = 1) -> dict[str, Any]:
    return {"persistedQuery": {"version": version, "sha256Hash": digest}}


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, Simulated]]:
    with simulators(PROVIDERS, count=5) as running:
        yield running


def upstream_calls(sims: dict[str, Simulated]) -> int:
    return sum(len(sim.state.control.requests) for sim in sims.values())


@dataclasses.dataclass
class Served:
    gateway: Gateway

    def post(self, body: object, *, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.gateway.url}/graphql",
            content=json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {BOOTSTRAP}",
                "Content-Type": "application/json",
                **(headers or {}),
            },
            timeout=30,
        )

    def get(
        self, params: dict[str, str], *, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return httpx.get(
            f"{self.gateway.url}/graphql",
            params=params,
            headers={"Authorization": f"Bearer {BOOTSTRAP}", **(headers or {})},
            timeout=30,
        )


def code_of(response: httpx.Response) -> str | None:
    body = response.json()
    errors = body.get("errors") or []
    return errors[0]["extensions"]["code"] if errors else None


@pytest.fixture
def serve(
    sims: dict[str, Simulated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """Starts gateways over every simulator with the given [server] settings."""
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    sources = tuple(s.source for s in sims.values())
    with contextlib.ExitStack() as stack:

        def run(**server: Any) -> Served:
            config = gateway_config(tmp_path, sources=sources, server=ServerConfig(**server))
            url = stack.enter_context(serve_in_thread(create_app(config)))
            return Served(Gateway(url=url, admin_secret=BOOTSTRAP, config=config))

        yield run


def relay_manifest(tmp_path: Path, documents: dict[str, str]) -> Path:
    path = tmp_path / "relay-persisted.json"
    path.write_text(json.dumps(documents))
    return path


def apollo_manifest(tmp_path: Path, bodies: list[str]) -> Path:
    path = tmp_path / "apollo-manifest.json"
    operations = [
        {"id": sha(body), "body": body, "name": f"op{i}", "type": "query"}
        for i, body in enumerate(bodies)
    ]
    path.write_text(
        json.dumps(
            {"format": "apollo-persisted-query-manifest", "version": 1, "operations": operations}
        )
    )
    return path


# Automatic persisted queries


def test_apq_post_hash_only_then_registration_then_hash_only(serve: Any) -> None:
    served = serve()
    digest = sha(SOURCES)
    first = served.post({"extensions": apq(digest)})
    assert first.status_code == 200
    assert first.json()["errors"][0]["message"] == "PersistedQueryNotFound"
    assert code_of(first) == "PERSISTED_QUERY_NOT_FOUND"
    assert "data" not in first.json()
    registered = served.post({"query": SOURCES, "extensions": apq(digest)})
    assert registered.status_code == 200, registered.text
    keys = {s["key"] for s in registered.json()["data"]["sources"]}
    assert "internal" in keys
    again = served.post({"extensions": apq(digest.upper())})  # hex is case-insensitive
    assert again.status_code == 200
    assert again.json() == registered.json()


def test_apq_over_get_with_extensions_as_a_query_string_parameter(serve: Any) -> None:
    served = serve()
    digest = sha(PAGE)
    ext = json.dumps(apq(digest))
    variables = json.dumps({"after": None})
    # A browser-like Accept must not turn an operation into the GraphiQL page.
    html = {"Accept": "text/html,*/*"}
    missing = served.get({"extensions": ext, "variables": variables}, headers=html)
    assert missing.status_code == 200
    assert code_of(missing) == "PERSISTED_QUERY_NOT_FOUND"
    ran = served.get({"query": PAGE, "extensions": ext, "variables": variables})
    assert ran.status_code == 200, ran.text
    assert len(ran.json()["data"]["tokens"]["nodes"]) == 2
    cursor = ran.json()["data"]["tokens"]["pageInfo"]["endCursor"]
    second = served.get({"extensions": ext, "variables": json.dumps({"after": cursor})})
    assert second.status_code == 200, second.text
    first_ids = {n["id"] for n in ran.json()["data"]["tokens"]["nodes"]}
    second_ids = {n["id"] for n in second.json()["data"]["tokens"]["nodes"]}
    assert second_ids and not first_ids & second_ids


def test_a_registered_mutation_still_cannot_run_over_get(serve: Any) -> None:
    served = serve()
    digest = sha(CREATE)
    assert served.post({"query": CREATE, "extensions": apq(digest)}).status_code == 200
    over_get = served.get({"extensions": json.dumps(apq(digest))})
    assert over_get.status_code in (400, 405)
    assert "data" not in over_get.json() or over_get.json()["data"] is None


def test_a_hash_that_is_not_the_querys_is_refused_and_remembered_for_neither(
    serve: Any,
) -> None:
    served = serve()
    wrong = sha(SOURCES + " ")
    response = served.post({"query": SOURCES, "extensions": apq(wrong)})
    assert response.status_code == 200
    assert code_of(response) == "BAD_USER_INPUT"
    assert "data" not in response.json()
    for digest in (wrong, sha(SOURCES)):
        assert code_of(served.post({"extensions": apq(digest)})) == "PERSISTED_QUERY_NOT_FOUND"


@pytest.mark.parametrize(
    "extensions",
    [
        apq(sha(SOURCES), version=2),
        apq(sha(SOURCES), version=True),
        apq(sha(SOURCES), version="1"),
        apq("abc"),
        apq(sha(SOURCES) + "00"),
        apq("z" * 64),
        {"persistedQuery": {"version": 1, "sha256Hash": 5}},
        {"persistedQuery": "yes"},
        {"persistedQuery": [1]},
    ],
    ids=["v2", "v-bool", "v-str", "short", "long", "not-hex", "number", "string", "list"],
)
def test_malformed_persisted_query_extensions_are_bad_user_input(
    serve: Any, extensions: dict[str, Any]
) -> None:
    served = serve()
    for body in ({"extensions": extensions}, {"query": SOURCES, "extensions": extensions}):
        response = served.post(body)
        assert response.status_code == 200
        assert code_of(response) == "BAD_USER_INPUT", response.text


@pytest.mark.parametrize(
    ("document", "code"),
    [
        ("{ sources { key ", "GRAPHQL_PARSE_FAILED"),
        ("{ sources { nope } }", "GRAPHQL_VALIDATION_FAILED"),
        ("{ " + " ".join(f"a{i}: sources {{ key }}" for i in range(40)) + " }", "BAD_USER_INPUT"),
    ],
    ids=["syntax", "validation", "aliases-over-limit"],
)
def test_documents_with_a_request_error_are_not_remembered(
    serve: Any, document: str, code: str
) -> None:
    served = serve()
    digest = sha(document)
    response = served.post({"query": document, "extensions": apq(digest)})
    assert code_of(response) == code
    assert code_of(served.post({"extensions": apq(digest)})) == "PERSISTED_QUERY_NOT_FOUND"


def test_a_document_whose_fields_fail_is_still_remembered(serve: Any) -> None:
    # A path error (here NOT_FOUND from a revoke of a token that does not exist) means the
    # document itself parsed, validated and passed the limits.
    served = serve()
    digest = sha(REVOKE)
    variables = {"id": "VG9rZW46bm9wZQ=="}
    first = served.post({"query": REVOKE, "variables": variables, "extensions": apq(digest)})
    assert first.json()["errors"][0]["path"] == ["revokeToken"], first.text
    again = served.post({"variables": variables, "extensions": apq(digest)})
    assert code_of(again) != "PERSISTED_QUERY_NOT_FOUND"


def test_the_cache_is_bounded_least_recently_used_goes_first(serve: Any) -> None:
    served = serve(apq_cache_size=2)
    docs = [f"query Q{i} {{ sources {{ key }} }}" for i in range(3)]
    for doc in docs[:2]:
        assert served.post({"query": doc, "extensions": apq(sha(doc))}).status_code == 200
    # Using the first makes the second the least recently used.
    assert "errors" not in served.post({"extensions": apq(sha(docs[0]))}).json()
    served.post({"query": docs[2], "extensions": apq(sha(docs[2]))})
    assert code_of(served.post({"extensions": apq(sha(docs[1]))})) == "PERSISTED_QUERY_NOT_FOUND"
    assert "errors" not in served.post({"extensions": apq(sha(docs[0]))}).json()
    assert "errors" not in served.post({"extensions": apq(sha(docs[2]))}).json()
    # The third one in evicts the least recently used (now the second's slot is taken).
    served.post({"query": docs[1], "extensions": apq(sha(docs[1]))})
    assert code_of(served.post({"extensions": apq(sha(docs[0]))})) == "PERSISTED_QUERY_NOT_FOUND"


def test_apq_size_zero_answers_not_supported(serve: Any) -> None:
    served = serve(apq_cache_size=0)
    for body in (
        {"extensions": apq(sha(SOURCES))},
        {"query": SOURCES, "extensions": apq(sha(SOURCES))},
    ):
        response = served.post(body)
        assert response.status_code == 200
        assert code_of(response) == "PERSISTED_QUERY_NOT_SUPPORTED"
    # Plain queries still work.
    assert "errors" not in served.post({"query": SOURCES}).json()


def test_authentication_comes_before_any_lookup(serve: Any) -> None:
    served = serve()
    digest = sha(SOURCES)
    served.post({"query": SOURCES, "extensions": apq(digest)})
    for headers in ({}, {"Authorization": "Bearer tg_wrong"}):
        response = httpx.post(
            f"{served.gateway.url}/graphql",
            json={"extensions": apq(digest)},
            headers=headers,
        )
        assert response.status_code == 401
        assert code_of(response) == "UNAUTHENTICATED"
        assert "sources" not in response.text
    # GETs naming a document are operations (not the GraphiQL page): authenticated too.
    for params in ({"extensions": json.dumps(apq(digest))}, {"documentId": "x"}):
        page_like = httpx.get(
            f"{served.gateway.url}/graphql", params=params, headers={"Accept": "text/html"}
        )
        assert page_like.status_code == 401
        assert code_of(page_like) == "UNAUTHENTICATED"


def test_graphql_response_media_type_not_found_stays_200(serve: Any) -> None:
    served = serve()
    accept = {"Accept": "application/graphql-response+json, application/json;q=0.9"}
    missing = served.post({"extensions": apq(sha(SOURCES))}, headers=accept)
    assert missing.status_code == 200
    assert missing.headers["content-type"].startswith("application/graphql-response+json")
    assert code_of(missing) == "PERSISTED_QUERY_NOT_FOUND"
    bad = served.post({"query": SOURCES, "extensions": apq(sha("x"))}, headers=accept)
    assert bad.status_code == 400
    assert code_of(bad) == "BAD_USER_INPUT"


@pytest.mark.slow
def test_hostile_bodies(serve: Any) -> None:
    served = serve()
    # A body over the limit: 413 before anything.
    huge = served.post({"documentId": "x" * 2_000_000})
    assert huge.status_code == 413
    # Long ids and hashes: refused, coded, nothing remembered, no 500.
    assert code_of(served.post({"documentId": "x" * 500_000})) == "PERSISTED_QUERY_NOT_FOUND"
    assert code_of(served.post({"extensions": apq("a" * 500_000)})) == "BAD_USER_INPUT"
    for garbage in (
        {"documentId": 5},
        {"documentId": ""},
        {"documentId": {"$ne": 1}},
        {"doc_id": ["a"]},
        {"documentId": "x", "query": SOURCES},
        {"documentId": "x", "extensions": apq(sha(SOURCES))},
    ):
        response = served.post(garbage)
        assert response.status_code == 200, (garbage, response.text)
        assert code_of(response) == "BAD_USER_INPUT", (garbage, response.text)
    # A batch naming persisted documents is a batch: refused.
    batch = served.post([{"extensions": apq(sha(SOURCES))}, {"documentId": "a"}])
    assert batch.status_code == 400
    assert code_of(batch) == "BAD_USER_INPUT"
    # Not JSON, or JSON of the wrong shape.
    raw = httpx.post(
        f"{served.gateway.url}/graphql",
        content=b'{"extensions": {"persistedQuery": ',
        headers={"Authorization": f"Bearer {BOOTSTRAP}", "Content-Type": "application/json"},
    )
    assert raw.status_code == 400
    assert code_of(raw) == "BAD_USER_INPUT"
    assert code_of(served.post({"extensions": "persistedQuery"})) == "BAD_USER_INPUT"
    # Many distinct registrations of garbage leave the cache empty of them.
    for i in range(20):
        doc = "{" * (i + 1)
        served.post({"query": doc, "extensions": apq(sha(doc))})
    assert code_of(served.post({"extensions": apq(sha("{"))})) == "PERSISTED_QUERY_NOT_FOUND"


# Trusted documents


def test_relay_manifest_by_document_id_and_doc_id_post_and_get(serve: Any, tmp_path: Path) -> None:
    manifest = relay_manifest(tmp_path, {"page1": PAGE, "srcs": SOURCES})
    served = serve(persisted_documents=manifest)
    by_id = served.post({"documentId": "page1", "variables": {"after": None}})
    assert by_id.status_code == 200, by_id.text
    assert len(by_id.json()["data"]["tokens"]["nodes"]) == 2
    relay_style = served.post({"doc_id": "srcs", "variables": {}})
    assert "internal" in {s["key"] for s in relay_style.json()["data"]["sources"]}
    over_get = served.get({"documentId": "srcs"}, headers={"Accept": "text/html"})
    assert over_get.status_code == 200
    assert over_get.json() == relay_style.json()
    unknown = served.post({"documentId": "nope"})
    assert unknown.status_code == 200
    assert code_of(unknown) == "PERSISTED_QUERY_NOT_FOUND"
    # Without only_persisted, plain queries still run.
    assert "errors" not in served.post({"query": SOURCES}).json()


def test_document_id_without_a_manifest_is_not_found(serve: Any) -> None:
    assert code_of(serve().post({"documentId": "anything"})) == "PERSISTED_QUERY_NOT_FOUND"


def test_apollo_manifest_ids_hashes_and_prefixed_ids(serve: Any, tmp_path: Path) -> None:
    manifest = apollo_manifest(tmp_path, [SOURCES, PAGE])
    served = serve(persisted_documents=manifest, only_persisted=True)
    for body in (
        {"documentId": sha(SOURCES)},
        {"documentId": "sha256:" + sha(SOURCES)},
        {"extensions": apq(sha(SOURCES))},  # Apollo Client's APQ link, hash only
        {"query": SOURCES, "extensions": apq(sha(SOURCES))},  # its retry with the text
    ):
        response = served.post(body)
        assert response.status_code == 200, (body, response.text)
        assert "internal" in {s["key"] for s in response.json()["data"]["sources"]}, body


def test_only_persisted_refuses_everything_else_and_calls_no_upstream(
    serve: Any, sims: dict[str, Simulated], tmp_path: Path
) -> None:
    manifest = relay_manifest(tmp_path, {"page": PAGE})
    served = serve(persisted_documents=manifest, only_persisted=True)
    before = upstream_calls(sims)
    other = "{ tokens(first: 3) { nodes { id } } }"
    refused = [
        served.post({"query": other}),
        served.post({"query": PAGE}),  # even a manifest document's text: send its id
        served.get({"query": other}),
        served.post({"query": other, "extensions": apq(sha(other))}),  # APQ registration
        served.post({"query": CREATE}),
    ]
    for response in refused:
        assert response.status_code == 200, response.text
        assert code_of(response) == "PERSISTED_QUERY_REQUIRED", response.text
        assert "data" not in response.json()
    hash_only = served.post({"extensions": apq(sha(other))})
    assert code_of(hash_only) == "PERSISTED_QUERY_NOT_FOUND"
    assert upstream_calls(sims) == before, "a refused document reached an upstream"
    # Nothing was created either.
    internal = served.post({"documentId": "page"})
    assert "victim" not in internal.text
    assert upstream_calls(sims) > before  # and the manifest's document does run
    strict = served.post({"query": other}, headers={"Accept": "application/graphql-response+json"})
    assert strict.status_code == 400
    assert code_of(strict) == "PERSISTED_QUERY_REQUIRED"


def test_persisted_mutation_by_document_id(serve: Any, tmp_path: Path) -> None:
    manifest = relay_manifest(tmp_path, {"create": CREATE, "revoke": REVOKE, "list": INTERNAL})
    served = serve(persisted_documents=manifest, only_persisted=True)
    created = served.post({"documentId": "create"})
    token_id = created.json()["data"]["createToken"]["token"]["id"]
    revoked = served.post({"documentId": "revoke", "variables": {"id": token_id}})
    assert revoked.json()["data"]["revokeToken"]["revokedTokenId"] == token_id
    listed = served.post({"documentId": "list"})
    assert token_id not in {n["id"] for n in listed.json()["data"]["tokens"]["nodes"]}


def test_operation_name_is_counted_for_persisted_requests(serve: Any, tmp_path: Path) -> None:
    manifest = relay_manifest(tmp_path, {"srcs": SOURCES})
    served = serve(persisted_documents=manifest)
    assert "errors" not in served.post({"documentId": "srcs"}).json()
    served.post({"extensions": apq(sha(PAGE))})
    metrics = httpx.get(f"{served.gateway.url}/metrics").text
    assert 'operation_name="SourceKeys",outcome="ok"' in metrics
    assert 'outcome="refused"' in metrics
