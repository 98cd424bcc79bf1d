"""Callers signed in at an identity provider: ``Authorization: Bearer <JWT>`` over real HTTP,
against a loopback JWKS server publishing keys the tests make."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import Gateway, LogCapture
from tests.jwt_idp import (
    JWKS_TIMEOUT_S,
    Idp,
    SigningKey,
    claims,
    idp,
    jwt_gateway,
    sign,
)
from tokengate.gateway import jwt_auth
from tokengate.gateway.config import LimitsConfig

RW = "tokens:read tokens:write"
SOURCES = "{ sources { key } }"
CREATE = """mutation($input: CreateTokenInput!) { createToken(input: $input) {
  secret token { id owner { kind id } } } }"""
SYMMETRIC = b"a-shared-secret-of-32-bytes-long"
AUDIT = "{ auditEvents(first: 10) { nodes { action outcome actorTokenId actorSubject } } }"


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey.rsa("rsa-1")


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return SigningKey.ec("ec-1")


@pytest.fixture
def provider(rsa_key: SigningKey, ec_key: SigningKey) -> Iterator[Idp]:
    with idp(rsa_key, ec_key) as running:
        yield running


@pytest.fixture
def gateway(tmp_path: Path, provider: Idp) -> Iterator[Gateway]:
    """A fresh gateway and JWKS server: for tests that count fetches or change the keys."""
    with jwt_gateway(tmp_path, provider) as gw:
        yield gw


@pytest.fixture(scope="module")
def shared_provider(rsa_key: SigningKey, ec_key: SigningKey) -> Iterator[Idp]:
    with idp(rsa_key, ec_key) as running:
        yield running


@pytest.fixture(scope="module")
def shared(shared_provider: Idp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway for the tests that leave the key set alone (each uses its own users)."""
    with jwt_gateway(tmp_path_factory.mktemp("jwt"), shared_provider) as gw:
        yield gw


def call(gateway: Gateway, token: str, query: str = SOURCES, **variables: Any) -> httpx.Response:
    return gateway.post(query, variables, secret=token)


def assert_refused(response: httpx.Response, token: str) -> None:
    """HTTP 401 UNAUTHENTICATED with the RFC 6750 challenge; the token is not echoed."""
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer realm="tokengate", error="invalid_token"'
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert body["errors"][0]["message"] == "invalid credentials"
    for part in token.split("."):
        if len(part) > 8:
            assert part not in response.text


# -- accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key_name", ["rsa_key", "ec_key"])
def test_a_valid_token_is_accepted(
    shared: Gateway, request: pytest.FixtureRequest, key_name: str
) -> None:
    key: SigningKey = request.getfixturevalue(key_name)
    response = call(shared, sign(key, claims()))
    assert response.status_code == 200, response.text
    assert {"key": "internal"} in response.json()["data"]["sources"]


def test_internal_tokens_keep_working_beside_jwts(shared: Gateway, rsa_key: SigningKey) -> None:
    assert shared.post(SOURCES).status_code == 200
    assert call(shared, sign(rsa_key, claims())).status_code == 200
    unknown = shared.post(SOURCES, secret="tg_not-a-real-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    assert unknown.status_code == 401
    assert unknown.headers["www-authenticate"] == 'Bearer realm="tokengate", error="invalid_token"'
    missing = httpx.post(f"{shared.url}/graphql", json={"query": SOURCES})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="tokengate"'


def test_leeway_accepts_a_token_expired_seconds_ago(shared: Gateway, rsa_key: SigningKey) -> None:
    now = int(time.time())
    assert call(shared, sign(rsa_key, claims(exp=now - 10))).status_code == 200
    assert call(shared, sign(rsa_key, claims(nbf=now + 10))).status_code == 200


# -- refused, with no fetch beyond the first ---------------------------------------------------


def _hmac_with_public_key(key: SigningKey) -> str:
    """The classic confusion attack: HS256 with the RSA public key (PEM) as the secret."""
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    segments = [_b64(json.dumps(header).encode()), _b64(json.dumps(claims()).encode())]
    import hashlib
    import hmac

    signature = hmac.new(key.public_pem(), ".".join(segments).encode(), hashlib.sha256).digest()
    return ".".join([*segments, _b64(signature)])


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unsigned(key: SigningKey) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": key.kid}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims()).encode())}."


def _bad_signature(key: SigningKey) -> str:
    token = sign(key, claims())
    head, _, signature = token.split(".")
    forged = sign(key, claims(subject="mallory@example.com")).split(".")[1]
    return f"{head}.{forged}.{signature}"


def _other_key_same_kid(key: SigningKey) -> str:
    impostor = SigningKey.rsa(key.kid)
    return sign(impostor, claims())


BAD_TOKENS = {
    "expired": lambda k: sign(k, claims(exp=int(time.time()) - 120)),
    "not yet valid": lambda k: sign(k, claims(nbf=int(time.time()) + 120)),
    "wrong issuer": lambda k: sign(k, claims(iss="https://evil.example")),
    "wrong audience": lambda k: sign(k, claims(aud="another-api")),
    "no audience": lambda k: sign(k, claims(aud=None)),
    "no expiry": lambda k: sign(k, claims(exp=None)),
    "no subject": lambda k: sign(k, claims(sub=None)),
    "subject not a string": lambda k: sign(k, claims(sub=42)),
    "alg none": _unsigned,
    "hmac with the public key": _hmac_with_public_key,
    "bad signature": _bad_signature,
    "another key, same kid": _other_key_same_kid,
    "RS256 header on the EC key": lambda k: sign(
        SigningKey("ec-1", "RS256", SigningKey.rsa().private), claims()
    ),
    "embedded jwk header": lambda k: sign(
        (attacker := SigningKey.rsa(k.kid)), claims(), headers={"jwk": attacker.jwk()}
    ),
    "not base64": lambda k: "a.b.c",
    "unknown critical header": lambda k: sign(k, claims(), headers={"crit": ["x"], "x": 1}),
    "control character in the subject": lambda k: sign(k, claims("alice\n[admin]")),
    "subject too long": lambda k: sign(k, claims("u" * 256)),
    "longer than any token": lambda k: sign(k, claims(pad="x" * 9000)),
    "five parts (JWE)": lambda k: sign(k, claims()) + ".e30.e30",
}


@pytest.mark.parametrize("case", list(BAD_TOKENS), ids=list(BAD_TOKENS))
def test_bad_tokens_answer_401(
    shared: Gateway, shared_provider: Idp, rsa_key: SigningKey, case: str
) -> None:
    assert call(shared, sign(rsa_key, claims())).status_code == 200  # the key set is cached
    fetches = shared_provider.state.fetches
    token = BAD_TOKENS[case](rsa_key)
    assert_refused(call(shared, token), token)
    assert shared_provider.state.fetches == fetches == 1


def test_an_unconfigured_algorithm_is_refused(
    tmp_path: Path, provider: Idp, ec_key: SigningKey
) -> None:
    with jwt_gateway(tmp_path, provider, algorithms=("RS256",)) as gw:
        token = sign(ec_key, claims())
        assert_refused(call(gw, token), token)
    assert provider.state.fetches == 0  # refused before any key was needed


# -- the key set: cached, refetched for an unknown kid at most once per 30 s -----------------


class Clock:
    """jwt_auth's clock, moved forward by the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = 0.0
        monkeypatch.setattr(jwt_auth, "monotonic", lambda: time.monotonic() + self.offset)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def test_an_unknown_kid_refetches_once_then_is_refused(
    gateway: Gateway, provider: Idp, rsa_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch)
    for _ in range(3):
        assert call(gateway, sign(rsa_key, claims())).status_code == 200
    assert provider.state.fetches == 1  # never per request
    stranger = SigningKey.rsa("not-published")
    token = sign(stranger, claims())
    assert_refused(call(gateway, token), token)
    assert provider.state.fetches == 2  # refetched once
    assert_refused(call(gateway, token), token)
    other = sign(SigningKey.ec("also-unknown"), claims())
    assert_refused(call(gateway, other), other)
    assert provider.state.fetches == 2  # no fetch within 30 s
    clock.advance(31)
    assert_refused(call(gateway, token), token)
    assert provider.state.fetches == 3


def test_a_rotated_key_set_is_picked_up_without_a_restart(
    gateway: Gateway, provider: Idp, rsa_key: SigningKey
) -> None:
    retired = sign(rsa_key, claims())
    for _ in range(2):  # the second time from the cache of verified tokens
        assert call(gateway, retired).status_code == 200
    new_key = SigningKey.ec("ec-2026")
    provider.state.keys = [new_key]
    assert call(gateway, sign(new_key, claims())).status_code == 200
    assert provider.state.fetches == 2
    # A new key set drops what was verified under the old one.
    assert_refused(call(gateway, retired), retired)


def test_a_verified_token_is_not_checked_again_for_a_while(
    shared: Gateway, rsa_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[str] = []
    real = jwt.decode

    def counted(token: str, *args: Any, **kwargs: Any) -> Any:
        checks.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counted)
    clock = Clock(monkeypatch)
    token = sign(rsa_key, claims("hana@example.com", exp=int(time.time()) + 3600))
    # Past its exp, within the leeway: accepted, but never from the cache.
    lapsed = sign(rsa_key, claims("hana@example.com", exp=int(time.time()) - 5))
    for _ in range(3):
        assert call(shared, token).status_code == 200
        assert call(shared, lapsed).status_code == 200
    assert checks == [token, lapsed, lapsed, lapsed]
    clock.advance(jwt_auth.VERIFIED_CACHE_S)
    assert call(shared, token).status_code == 200
    assert checks == [token, lapsed, lapsed, lapsed, token]


def test_concurrent_unknown_kids_share_one_fetch(
    tmp_path: Path, provider: Idp, rsa_key: SigningKey
) -> None:
    with jwt_gateway(tmp_path, provider, jwks_timeout_s=10) as gateway:
        assert call(gateway, sign(rsa_key, claims())).status_code == 200
        provider.state.hang = True  # callers arrive while the one fetch is under way
        late_key = SigningKey.ec("late")
        provider.state.keys = [rsa_key, late_key]
        token = sign(late_key, claims())

        async def many() -> list[int]:
            async with httpx.AsyncClient(timeout=30) as client:

                async def one() -> int:
                    response = await client.post(
                        f"{gateway.url}/graphql",
                        json={"query": SOURCES},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    return response.status_code

                tasks = [asyncio.ensure_future(one()) for _ in range(100)]
                await asyncio.sleep(0.5)
                provider.state.hang = False
                return await asyncio.gather(*tasks)

        statuses = asyncio.run(many())
    assert statuses == [200] * 100
    assert provider.state.fetches == 2


@pytest.mark.slow
def test_a_hanging_jwks_server_answers_401_within_the_timeout(
    tmp_path: Path, provider: Idp, rsa_key: SigningKey
) -> None:
    timeout_s = 3.0  # long enough to see other callers served meanwhile, even on a busy box
    provider.state.hang = True
    token = sign(rsa_key, claims())
    with jwt_gateway(tmp_path, provider, jwks_timeout_s=timeout_s) as gateway:
        with ThreadPoolExecutor(2) as pool:
            started = time.monotonic()
            pending = pool.submit(call, gateway, token)
            while provider.state.fetches == 0:  # the fetch is under way, and hangs
                assert time.monotonic() - started < timeout_s, "no fetch started"
                time.sleep(0.01)
            # The gateway serves other callers meanwhile.
            assert gateway.post(SOURCES).status_code == 200
            assert not pending.done()
            response = pending.result(timeout=30)
            elapsed = time.monotonic() - started
        assert_refused(response, token)
        assert timeout_s * 0.9 <= elapsed < timeout_s + 2.0
        # Right after a failed fetch, callers are refused without waiting on the server.
        started = time.monotonic()
        assert_refused(call(gateway, token), token)
        assert time.monotonic() - started < timeout_s / 2
        assert provider.state.fetches == 1


@pytest.mark.parametrize("status", [503, 404])
def test_a_failing_jwks_server_answers_401(
    gateway: Gateway,
    provider: Idp,
    rsa_key: SigningKey,
    status: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock(monkeypatch)
    provider.state.status = status
    token = sign(rsa_key, claims())
    assert_refused(call(gateway, token), token)
    provider.state.status = 200
    assert_refused(call(gateway, token), token)  # no new fetch this soon after a failure
    assert provider.state.fetches == 1
    clock.advance(jwt_auth.RETRY_AFTER_FAILURE_S)
    assert call(gateway, token).status_code == 200
    assert provider.state.fetches == 2


def test_a_jwks_server_that_is_down_answers_401(tmp_path: Path, rsa_key: SigningKey) -> None:
    with idp(rsa_key) as provider:
        gone = provider
    with jwt_gateway(tmp_path, gone) as gw:
        token = sign(rsa_key, claims())
        started = time.monotonic()
        assert_refused(call(gw, token), token)
        assert time.monotonic() - started < JWKS_TIMEOUT_S + 2.0
        assert gw.post(SOURCES).status_code == 200


def test_unusable_keys_in_the_set_are_ignored(
    gateway: Gateway, provider: Idp, rsa_key: SigningKey
) -> None:
    provider.state.extra = [
        {"kty": "oct", "kid": "sym", "k": _b64(SYMMETRIC)},
        {"kty": "RSA", "kid": "broken", "n": "AQAB", "e": "??"},
        "not a key",
        {**SigningKey.rsa("enc").jwk(), "use": "enc"},
    ]
    assert call(gateway, sign(rsa_key, claims())).status_code == 200
    forged = jwt.encode(claims(), SYMMETRIC, algorithm="HS256", headers={"kid": "sym"})
    assert_refused(call(gateway, forged), forged)


# -- who the caller is ---------------------------------------------------------------------


def test_the_caller_is_bound_to_its_subject_and_audited(
    shared: Gateway, rsa_key: SigningKey
) -> None:
    user = "alice.audit@example.com"
    alice = sign(rsa_key, claims(user, scope=f"openid {RW}"))
    shared.data(
        CREATE,
        {
            "input": {
                "source": "internal",
                "name": "bob-token",
                "scopes": ["tokens:read"],
                "subject": "bob",
            }
        },
    )
    created = shared.data(
        CREATE,
        {"input": {"source": "internal", "name": "alice-laptop", "scopes": ["tokens:read"]}},
        secret=alice,
    )["createToken"]["token"]
    assert created["owner"] == {"kind": "USER", "id": user}
    names = shared.data("{ tokens(first: 50) { nodes { name } } }", secret=alice)
    assert [n["name"] for n in names["tokens"]["nodes"]] == ["alice-laptop"]
    wider = shared.gql(
        CREATE,
        {"input": {"source": "internal", "name": "x", "scopes": ["tokens:admin"]}},
        secret=alice,
    )
    assert wider["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    events = shared.data(AUDIT)["auditEvents"]["nodes"]
    mine = [e for e in events if e["actorSubject"] == user]
    assert [(e["action"], e["outcome"]) for e in mine] == [
        ("create", "FORBIDDEN"),
        ("create", "ok"),
    ]
    assert all(e["actorTokenId"] is None for e in mine)
    admin_events = [e for e in events if e["actorSubject"] is None]
    assert admin_events and all(e["actorTokenId"] for e in admin_events)


def test_without_tokens_scopes_the_defaults_apply(shared: Gateway, rsa_key: SigningKey) -> None:
    reader = sign(rsa_key, claims("frank@example.com", scope="openid profile"))
    assert call(shared, reader).status_code == 200
    denied = shared.gql(CREATE, {"input": {"source": "internal", "name": "x"}}, secret=reader)
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    as_list = sign(rsa_key, claims("frank@example.com", scope=["tokens:read", "tokens:write"]))
    made = shared.gql(CREATE, {"input": {"source": "internal", "name": "y"}}, secret=as_list)
    assert "errors" not in made, made


def test_an_admin_scope_unbinds_the_caller(shared: Gateway, rsa_key: SigningKey) -> None:
    admin = sign(rsa_key, claims("ops@example.com", scope="tokens:admin"))
    names = shared.data("{ tokens(first: 50) { nodes { name } } }", secret=admin)
    assert "bootstrap" in [n["name"] for n in names["tokens"]["nodes"]]
    made = shared.data(
        CREATE,
        {"input": {"source": "internal", "name": "ops-made", "subject": "zed"}},
        secret=admin,
    )
    assert made["createToken"]["token"]["owner"]["id"] == "zed"
    events = shared.data(AUDIT, secret=admin)["auditEvents"]["nodes"]  # unbound admins only
    assert {"action": "create", "outcome": "ok", "actorTokenId": None} | {
        "actorSubject": "ops@example.com"
    } in events


def test_custom_claims(tmp_path: Path, provider: Idp, rsa_key: SigningKey) -> None:
    with jwt_gateway(
        tmp_path, provider, subject_claim="email", scope_claim="scp", default_scopes=()
    ) as gw:
        nobody = sign(rsa_key, claims(email="carol@example.com"))
        assert gw.gql(SOURCES, secret=nobody)["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        carol = sign(
            rsa_key, claims(email="carol@example.com", scp=["tokens:read", "tokens:write"])
        )
        made = gw.data(CREATE, {"input": {"source": "internal", "name": "c"}}, secret=carol)
        assert made["createToken"]["token"]["owner"]["id"] == "carol@example.com"


def test_one_rate_bucket_per_user(tmp_path: Path, provider: Idp, rsa_key: SigningKey) -> None:
    """Every token of one user counts against one bucket: new tokens from the identity
    provider, or internal tokens the user mints, do not escape the limit."""
    limits = LimitsConfig(rate_per_s=0.001, burst=3)
    with jwt_gateway(tmp_path, provider, limits=limits) as gw:

        def dave(jti: str) -> str:
            return sign(rsa_key, claims("dave@example.com", scope=RW, jti=jti))

        minted = gw.data(CREATE, {"input": {"source": "internal", "name": "d"}}, secret=dave("1"))
        secret = minted["createToken"]["secret"]
        assert call(gw, secret).json().get("errors") is None
        assert call(gw, dave("2")).json().get("errors") is None
        for caller in (secret, dave("3")):
            refused = call(gw, caller).json()
            assert refused["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        other_user = call(gw, sign(rsa_key, claims("erin@example.com"))).json()
        assert other_user.get("errors") is None


def test_rate_keys_fit_a_lineage_and_never_name_a_token() -> None:
    key = jwt_auth.rate_key("someone@example.com" * 20)
    assert len(key) == 32 and key.startswith("jwt:")
    assert jwt_auth.rate_key("a") != jwt_auth.rate_key("b")


def test_jwts_never_reach_the_logs(
    shared: Gateway, rsa_key: SigningKey, captured_logs: LogCapture
) -> None:
    good = sign(rsa_key, claims("gina@example.com", scope=RW))
    expired = sign(rsa_key, claims("gina@example.com", exp=int(time.time()) - 600))
    assert call(shared, good).status_code == 200
    assert call(shared, expired).status_code == 401
    shared.gql("query($x: String) { tokens(filter: {name: $x}) { totalCount } }", {"x": good})
    logging.getLogger("tokengate.test").warning("a caller sent %s", good)
    for token in (good, expired):
        for part in token.split(".")[1:]:
            assert part not in captured_logs.text
    assert "[REDACTED JWT]" in captured_logs.text


def test_refusals_are_counted_by_reason(
    tmp_path: Path, provider: Idp, rsa_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch)

    def count(gw: Gateway, reason: str) -> float:
        text = httpx.get(f"{gw.url}/metrics").text
        found = re.search(rf'tokengate_auth_failures_total\{{reason="{reason}"\}} (\S+)', text)
        assert found, text
        return float(found.group(1))

    provider.state.status = 503
    with jwt_gateway(tmp_path, provider) as gw:
        assert call(gw, sign(rsa_key, claims())).status_code == 401
        assert count(gw, "jwt_keys_unavailable") == 1
        provider.state.status = 200
        clock.advance(jwt_auth.RETRY_AFTER_FAILURE_S)
        assert call(gw, sign(rsa_key, claims(aud="x"))).status_code == 401
        assert call(gw, sign(rsa_key, claims(exp=1))).status_code == 401
        assert (count(gw, "jwt_invalid"), count(gw, "expired")) == (1, 1)


def test_a_token_without_kid(
    tmp_path: Path, rsa_key: SigningKey, ec_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verified with the only key, or the keys published without a kid; never with every
    key in turn."""
    clock = Clock(monkeypatch)
    bare = jwt.encode(claims(), rsa_key.private, algorithm="RS256")
    assert "kid" not in jwt.get_unverified_header(bare)
    for name in ("single", "several"):
        (tmp_path / name).mkdir()
    with idp(rsa_key) as single, jwt_gateway(tmp_path / "single", single) as gw:
        assert call(gw, bare).status_code == 200
    with idp(rsa_key, ec_key) as several, jwt_gateway(tmp_path / "several", several) as gw:
        assert_refused(call(gw, bare), bare)
        several.state.extra = [{k: v for k, v in rsa_key.jwk().items() if k != "kid"}]
        clock.advance(jwt_auth.REFETCH_INTERVAL_S)
        assert call(gw, bare).status_code == 200


def test_an_old_key_set_is_refreshed_in_the_background(
    gateway: Gateway, provider: Idp, rsa_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys the identity provider retired stop working within MAX_AGE_S, though no token
    names an unknown kid; the refresh holds no caller up."""
    clock = Clock(monkeypatch)
    token = sign(rsa_key, claims("ivy@example.com"))
    assert call(gateway, token).status_code == 200
    provider.state.keys = [SigningKey.ec("successor")]
    clock.advance(jwt_auth.MAX_AGE_S + 1)
    fresh = sign(rsa_key, claims("ivy@example.com", jti="2"))
    assert call(gateway, fresh).status_code == 200  # served from the cached set meanwhile
    deadline = time.monotonic() + 10
    while provider.state.fetches < 2:
        assert time.monotonic() < deadline, "no background refresh"
        time.sleep(0.02)
    time.sleep(0.2)
    late = sign(rsa_key, claims("ivy@example.com", jti="3"))
    assert_refused(call(gateway, late), late)
    assert_refused(call(gateway, token), token)  # the cache of verified tokens went too


def test_a_gateway_without_auth_jwt_refuses_jwts(tmp_path: Path, rsa_key: SigningKey) -> None:
    from tests.conftest import BOOTSTRAP, gateway_config
    from tokengate.gateway.app import create_app
    from tokengate.upstreams.loopback import serve_in_thread

    with serve_in_thread(create_app(gateway_config(tmp_path))) as url:
        gw = Gateway(url=url, admin_secret=BOOTSTRAP, config=gateway_config(tmp_path))
        token = sign(rsa_key, claims(scope="tokens:admin"))
        assert_refused(call(gw, token), token)
