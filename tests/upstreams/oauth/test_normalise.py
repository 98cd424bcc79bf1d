"""The OAuth-style server's JSON, from the seed's examples and its edge cases, as Token records."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from tokengate.upstreams.errors import InvalidInput
from tokengate.upstreams.model import Owner, OwnerKind, Provider, Status, Token
from tokengate.upstreams.oauth.normalise import (
    MAX_USER_ID_LENGTH,
    SchemaViolation,
    check_user_id,
    is_no_tokens_body,
    is_token_id,
    local_id_for,
    normalise_token,
    parse_local_id,
    parse_token_list,
    user_path_segment,
)

NOW = datetime(2024, 5, 1, tzinfo=UTC)
SOURCE = "idp"
USER = "user-42"

# Seed 001, "Example response", verbatim.
SEED_LIST: dict[str, Any] = {
    "tokens": [
        {
            "id": "7d507b7e-6221-4f06-a75e-ef6e6f06d32b",
            "client_name": "Client X",
            "device_name": "my iPad",
            "created_at": 1381322054000,
            "scopes": ["email", "profile"],
            "type": "DEFAULT",
        },
        {
            "id": "1c05119e-21b2-4905-bc93-8f67790a16d6",
            "client_name": "Client Y",
            "created_at": 1381321302000,
            "scopes": ["email"],
            "type": "FINGER_PRINT",
        },
    ]
}
SEED_X, SEED_Y = SEED_LIST["tokens"]

# Seed 001, "Example error response", verbatim.
SEED_ERROR = {"error": "No tokens found"}

EXPECTED_X = Token(
    source=SOURCE,
    provider=Provider.OAUTH,
    local_id="user-42/7d507b7e-6221-4f06-a75e-ef6e6f06d32b",
    external_id="7d507b7e-6221-4f06-a75e-ef6e6f06d32b",
    name="Client X",
    status=Status.ACTIVE,
    scopes=("email", "profile"),
    client_name="Client X",
    device_name="my iPad",
    auth_method="DEFAULT",
    owner=Owner(OwnerKind.USER, USER),
    created_at=datetime(2013, 10, 9, 12, 34, 14, tzinfo=UTC),
)
EXPECTED_Y = Token(
    source=SOURCE,
    provider=Provider.OAUTH,
    local_id="user-42/1c05119e-21b2-4905-bc93-8f67790a16d6",
    external_id="1c05119e-21b2-4905-bc93-8f67790a16d6",
    name="Client Y",
    status=Status.ACTIVE,
    scopes=("email",),
    client_name="Client Y",
    device_name=None,
    auth_method="FINGER_PRINT",
    owner=Owner(OwnerKind.USER, USER),
    created_at=datetime(2013, 10, 9, 12, 21, 42, tzinfo=UTC),
)


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


def _without(base: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k != key}


def _norm(raw: object, user_id: str = USER) -> Token:
    return normalise_token(raw, source=SOURCE, user_id=user_id, now=NOW)


UPPER_ID = "1C05119E-21B2-4905-BC93-8F67790A16D6"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(SEED_X, EXPECTED_X, id="seed-dynamic-client-has-device-name"),
        pytest.param(SEED_Y, EXPECTED_Y, id="seed-device-name-absent-fingerprint-type"),
        pytest.param(
            _with(SEED_X, expired=True, refresh_token_issued=True),
            replace(EXPECTED_X, status=Status.EXPIRED),
            id="newer-server-expired-flag-is-expired",
        ),
        pytest.param(
            _with(SEED_X, expired=False, refresh_token_issued=False),
            EXPECTED_X,
            id="newer-server-not-expired-is-active",
        ),
        pytest.param(_with(SEED_X, expired=None), EXPECTED_X, id="expired-null-is-active"),
        pytest.param(
            _with(SEED_Y, refresh_token_issued="not looked at"),
            EXPECTED_Y,
            id="refresh-token-issued-ignored",
        ),
        pytest.param(
            _with(SEED_Y, last_login="x", nested={"a": [1]}),
            EXPECTED_Y,
            id="unknown-extra-fields-ignored",
        ),
        pytest.param(_with(SEED_Y, device_name=None), EXPECTED_Y, id="device-name-null-is-none"),
        pytest.param(_with(SEED_Y, scopes=[]), replace(EXPECTED_Y, scopes=()), id="no-scopes"),
        pytest.param(
            _with(SEED_Y, created_at=1381321302000.0), EXPECTED_Y, id="created-at-float-millis"
        ),
        pytest.param(
            _with(SEED_Y, created_at=1381321302123),
            replace(EXPECTED_Y, created_at=datetime(2013, 10, 9, 12, 21, 42, 123000, tzinfo=UTC)),
            id="created-at-keeps-milliseconds",
        ),
        pytest.param(
            _with(SEED_Y, created_at=0),
            replace(EXPECTED_Y, created_at=datetime(1970, 1, 1, tzinfo=UTC)),
            id="created-at-epoch-zero",
        ),
        pytest.param(
            _with(SEED_Y, id=UPPER_ID),
            replace(EXPECTED_Y, local_id=f"user-42/{UPPER_ID}", external_id=UPPER_ID),
            id="uppercase-uuid-kept-as-sent",
        ),
        pytest.param(
            _with(SEED_Y, client_name=""),
            replace(EXPECTED_Y, name="", client_name=""),
            id="empty-client-name",
        ),
    ],
)
def test_normalise_token(raw: dict[str, Any], expected: Token) -> None:
    assert _norm(raw) == expected


def test_created_at_is_aware_utc() -> None:
    created = _norm(SEED_X).created_at
    assert created is not None
    assert created.utcoffset() is not None
    assert created.utcoffset() == datetime(2000, 1, 1, tzinfo=UTC).utcoffset()


def test_user_id_needing_encoding_goes_into_local_id_and_owner() -> None:
    token = _norm(SEED_X, user_id="ext/a b%?#")
    assert token.local_id == "ext%2Fa%20b%25%3F%23/7d507b7e-6221-4f06-a75e-ef6e6f06d32b"
    assert token.owner == Owner(OwnerKind.USER, "ext/a b%?#")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param(["not", "an", "object"], "not a JSON object", id="token-not-object"),
        pytest.param(_without(SEED_X, "id"), "'id'", id="id-missing"),
        pytest.param(_with(SEED_X, id=7), "'id'", id="id-not-string"),
        pytest.param(_with(SEED_X, id="token-1"), "not a UUID", id="id-not-uuid"),
        pytest.param(_with(SEED_X, id=SEED_X["id"] + "x"), "not a UUID", id="id-uuid-plus-junk"),
        pytest.param(_without(SEED_X, "client_name"), "'client_name'", id="client-name-missing"),
        pytest.param(_with(SEED_X, client_name=None), "'client_name'", id="client-name-null"),
        pytest.param(_with(SEED_X, device_name=["iPad"]), "'device_name'", id="device-not-str"),
        pytest.param(_without(SEED_X, "scopes"), "'scopes'", id="scopes-missing"),
        pytest.param(_with(SEED_X, scopes="email profile"), "'scopes'", id="scopes-string"),
        pytest.param(_with(SEED_X, scopes=["email", 3]), "'scopes'", id="scopes-non-string"),
        pytest.param(_with(SEED_X, expired="true"), "'expired'", id="expired-not-bool"),
        pytest.param(_without(SEED_X, "type"), "'type'", id="type-missing"),
        pytest.param(_without(SEED_X, "created_at"), "'created_at'", id="created-at-missing"),
        pytest.param(
            _with(SEED_X, created_at="2013-10-09T12:34:14Z"), "'created_at'", id="created-at-iso"
        ),
        pytest.param(_with(SEED_X, created_at=True), "'created_at'", id="created-at-bool"),
        pytest.param(_with(SEED_X, created_at=float("nan")), "finite", id="created-at-nan"),
        pytest.param(_with(SEED_X, created_at=float("inf")), "finite", id="created-at-inf"),
        pytest.param(_with(SEED_X, created_at=10**20), "out of range", id="created-at-huge"),
        pytest.param(_with(SEED_X, created_at=-(10**15)), "out of range", id="created-at-far-past"),
    ],
)
def test_schema_violations(raw: object, field: str) -> None:
    with pytest.raises(SchemaViolation, match=field) as info:
        _norm(raw)
    # Messages name fields only, never upstream values.
    assert "my iPad" not in str(info.value)
    assert "2013-10-09" not in str(info.value)


def test_seed_list_response() -> None:
    tokens = parse_token_list(SEED_LIST, source=SOURCE, user_id=USER, now=NOW)
    assert tokens == [EXPECTED_X, EXPECTED_Y]


def test_empty_list_response() -> None:
    assert parse_token_list({"tokens": []}, source=SOURCE, user_id=USER, now=NOW) == []


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        pytest.param([SEED_X], "not a JSON object", id="bare-array"),
        pytest.param(None, "not a JSON object", id="null"),
        pytest.param({}, "'tokens'", id="tokens-missing"),
        pytest.param({"tokens": None}, "'tokens'", id="tokens-null"),
        pytest.param({"tokens": SEED_X}, "'tokens'", id="tokens-object"),
        pytest.param({"tokens": [SEED_X, SEED_Y, SEED_X]}, "token 2: duplicate", id="dup-id"),
        pytest.param({"tokens": [SEED_X, _without(SEED_Y, "type")]}, "token 1:", id="names-index"),
    ],
)
def test_list_schema_violations(payload: object, message: str) -> None:
    with pytest.raises(SchemaViolation, match=message):
        parse_token_list(payload, source=SOURCE, user_id=USER, now=NOW)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(SEED_ERROR, True, id="seed-no-tokens-found"),
        pytest.param({"error": "Geen tokens gevonden"}, True, id="reworded-message"),
        pytest.param({"error": 404}, False, id="error-not-string"),
        pytest.param({"message": "Not Found"}, False, id="other-shape"),
        pytest.param("Not Found", False, id="plain-text"),
        pytest.param(None, False, id="null"),
    ],
)
def test_no_tokens_body(payload: object, expected: bool) -> None:
    assert is_no_tokens_body(payload) is expected


@pytest.mark.parametrize(
    "user_id",
    [
        pytest.param("user-42", id="plain"),
        pytest.param("anna.de.vries@example.com", id="email"),
        pytest.param("ext/a b%?#", id="needs-encoding"),
        pytest.param("Zoë 東京", id="non-ascii"),
        pytest.param("...", id="three-dots-are-a-name"),
        pytest.param("x" * MAX_USER_ID_LENGTH, id="max-length"),
    ],
)
def test_valid_user_ids_round_trip(user_id: str) -> None:
    assert check_user_id(user_id) == user_id
    token_id = SEED_X["id"]
    local_id = local_id_for(user_id, token_id)
    assert local_id.count("/") == 1
    assert parse_local_id(local_id) == (user_id, token_id)
    segment = user_path_segment(user_id)
    assert "/" not in segment
    assert "?" not in segment
    assert "#" not in segment


@pytest.mark.parametrize(
    ("user_id", "problem"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("x" * (MAX_USER_ID_LENGTH + 1), "longer", id="too-long"),
        pytest.param("anna\n", "control", id="newline"),
        pytest.param("anna\x00", "control", id="nul"),
        pytest.param("anna\x85", "control", id="c1-control"),
        pytest.param("anna\x7f", "control", id="delete"),
        pytest.param(".", "dot segment", id="dot"),
        pytest.param("..", "dot segment", id="dot-dot"),
    ],
)
def test_invalid_user_ids(user_id: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem) as info:
        check_user_id(user_id)
    assert info.value.argument == "userId"
    with pytest.raises(InvalidInput):
        user_path_segment(user_id)


@pytest.mark.parametrize(
    "local_id",
    [
        pytest.param("", id="empty"),
        pytest.param("user-42", id="no-slash"),
        pytest.param("user-42/", id="no-token"),
        pytest.param("/7d507b7e-6221-4f06-a75e-ef6e6f06d32b", id="no-user"),
        pytest.param("user-42/not-a-uuid", id="token-not-uuid"),
        pytest.param("user-42/7d507b7e-6221-4f06-a75e-ef6e6f06d32b/x", id="extra-segment"),
        pytest.param("user-42/../7d507b7e-6221-4f06-a75e-ef6e6f06d32b", id="traversal"),
        pytest.param("../7d507b7e-6221-4f06-a75e-ef6e6f06d32b", id="dot-dot-user"),
        pytest.param("%FF/7d507b7e-6221-4f06-a75e-ef6e6f06d32b", id="not-utf8"),
        pytest.param("a%0Ab/7d507b7e-6221-4f06-a75e-ef6e6f06d32b", id="encoded-control"),
        pytest.param("a%2fb/7d507b7e-6221-4f06-a75e-ef6e6f06d32b", id="lowercase-escape"),
        pytest.param("a b/7d507b7e-6221-4f06-a75e-ef6e6f06d32b", id="unencoded-space"),
        pytest.param("%61/7d507b7e-6221-4f06-a75e-ef6e6f06d32b", id="needless-escape"),
        pytest.param("user-42/7d507b7e-6221-4f06-a75e-ef6e6f06d32b?x", id="query"),
    ],
)
def test_malformed_local_ids(local_id: str) -> None:
    assert parse_local_id(local_id) is None


@pytest.mark.parametrize(
    ("token_id", "expected"),
    [
        pytest.param("7d507b7e-6221-4f06-a75e-ef6e6f06d32b", True, id="seed-id"),
        pytest.param(UPPER_ID, True, id="uppercase"),
        pytest.param("7d507b7e62214f06a75eef6e6f06d32b", False, id="no-dashes"),
        pytest.param("7d507b7e-6221-4f06-a75e-ef6e6f06d32g", False, id="non-hex"),
        pytest.param("{7d507b7e-6221-4f06-a75e-ef6e6f06d32b}", False, id="braces"),
    ],
)
def test_is_token_id(token_id: str, expected: bool) -> None:
    assert is_token_id(token_id) is expected
