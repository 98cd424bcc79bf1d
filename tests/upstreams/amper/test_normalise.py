"""Amper's JSON:API documents, from the seed's examples and their edge cases, as Token records."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tokengate.upstreams.amper.normalise import (
    MEDIA_TYPE,
    ListDocument,
    SchemaViolation,
    create_document,
    decode_position,
    encode_position,
    is_own_credential,
    is_valid_id,
    normalise_token,
    parse_created,
    parse_list,
    parse_single,
    parse_timestamp,
    redacted_prefix,
    shown_hint,
    sort_param,
)
from tokengate.upstreams.model import Direction, OrderField, Provider, Status, Token

NOW = datetime(2024, 5, 1, tzinfo=UTC)
SOURCE = "amper"
SEED_DAY = datetime(2018, 10, 4, tzinfo=UTC)

# Seed 000, "Example Response" body, verbatim except the elided third item "{ ... }".
SEED_LIST: dict[str, Any] = {
    "data": [
        {
            "type": "access_tokens",
            "id": "abcd1234",
            "attributes": {
                "access_token_redacted": "abcd1234***",
                "display_name": "Token for my very first app",
                "date_create": "2018-10-04T00:00:00.000000+00:00",
                "date_access": None,
            },
            "links": {"self": "https://api.ampermusic.com/v1/access_tokens/abcd1234"},
        },
        {
            "type": "access_tokens",
            "id": "efgh5678",
            "attributes": {
                "access_token_redacted": "efgh5678***",
                "display_name": "Token for my very second app",
                "date_create": "2018-10-04T00:00:00.000000+00:00",
                "date_access": None,
            },
            "links": {"self": "https://api.ampermusic.com/v1/access_tokens/efgh5678"},
        },
    ],
    "links": {
        "self": "https://api.ampermusic.com/v1/access_tokens",
        "first": "https://api.ampermusic.com/v1/access_tokens",
        "prev": None,
        "next": "https://api.ampermusic.com/v1/access_tokens?offset=20",
    },
}
SEED_FIRST, SEED_SECOND = SEED_LIST["data"]


def expected(token_id: str, name: str, **changes: Any) -> Token:
    fields: dict[str, Any] = {
        "source": SOURCE,
        "provider": Provider.AMPER,
        "local_id": token_id,
        "external_id": token_id,
        "name": name,
        "status": Status.ACTIVE,
        "owner": None,
        "created_at": SEED_DAY,
        "last_used_at": None,
        "secret_hint": f"{token_id[:4]}…",  # of the seed's 8 visible characters
    }
    fields.update(changes)
    return Token(**fields)


def variant(base: dict[str, Any], **attributes: Any) -> dict[str, Any]:
    """``base`` with some attributes replaced (a value of ``...`` removes the attribute)."""
    resource = copy.deepcopy(base)
    for name, value in attributes.items():
        if value is ...:
            resource["attributes"].pop(name, None)
        else:
            resource["attributes"][name] = value
    return resource


ACCESSED = datetime(2019, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)

NORMALISED = [
    pytest.param(
        SEED_FIRST,
        expected("abcd1234", "Token for my very first app"),
        id="seed-first-token-never-used-date-access-null",
    ),
    pytest.param(
        SEED_SECOND,
        expected("efgh5678", "Token for my very second app"),
        id="seed-second-token-same-creation-date-tie",
    ),
    pytest.param(
        variant(SEED_FIRST, date_create="2018-08-08T08:08:08+00:00"),
        expected(
            "abcd1234",
            "Token for my very first app",
            created_at=datetime(2018, 8, 8, 8, 8, 8, tzinfo=UTC),
        ),
        id="seed-note-date-without-microseconds",
    ),
    pytest.param(
        variant(SEED_FIRST, date_access="2019-02-03T06:05:06.789000+02:00"),
        expected("abcd1234", "Token for my very first app", last_used_at=ACCESSED),
        id="used-token-non-utc-offset-converted-to-utc",
    ),
    pytest.param(
        variant(SEED_FIRST, date_create="2018-10-03T19:00:00.000000-05:00"),
        expected("abcd1234", "Token for my very first app"),
        id="negative-offset-same-instant-as-seed",
    ),
    pytest.param(
        variant(SEED_FIRST, date_access="2019-02-03T04:05:06.789Z"),
        expected("abcd1234", "Token for my very first app", last_used_at=ACCESSED),
        id="zulu-suffix-and-milliseconds",
    ),
    pytest.param(
        variant(SEED_FIRST, date_access=...),
        expected("abcd1234", "Token for my very first app"),
        id="date-access-absent-means-never-used",
    ),
    pytest.param(
        variant(SEED_FIRST, access_token_redacted=...),
        expected("abcd1234", "Token for my very first app", secret_hint=None),
        id="redacted-snippet-absent",
    ),
    pytest.param(
        variant(SEED_FIRST, access_token_plaintext="abcd1234-the-secret"),
        expected("abcd1234", "Token for my very first app"),
        id="plaintext-in-a-list-is-never-passed-on",
    ),
    pytest.param(
        variant(SEED_FIRST, display_name=""),
        expected("abcd1234", ""),
        id="empty-display-name-kept-as-is",
    ),
]


@pytest.mark.parametrize(("resource", "token"), NORMALISED)
def test_normalise_token(resource: dict[str, Any], token: Token) -> None:
    assert normalise_token(resource, source=SOURCE, now=NOW) == token


def test_no_secret_reaches_the_record() -> None:
    resource = variant(SEED_FIRST, access_token_plaintext="abcd1234-the-secret")
    token = normalise_token(resource, source=SOURCE, now=NOW)
    assert "the-secret" not in repr(token)


def test_timestamps_are_aware_utc() -> None:
    resource = variant(SEED_FIRST, date_access="2019-02-03T09:35:06.789000+05:30")
    token = normalise_token(resource, source=SOURCE, now=NOW)
    assert token.last_used_at == ACCESSED
    assert token.last_used_at is not None and token.last_used_at.tzinfo is UTC
    assert token.created_at is not None and token.created_at.utcoffset() == timedelta(0)


def _without(key: str) -> dict[str, Any]:
    resource: dict[str, Any] = copy.deepcopy(SEED_FIRST)
    del resource[key]
    return resource


VIOLATIONS = [
    pytest.param("not an object", id="resource-not-an-object"),
    pytest.param({**SEED_FIRST, "type": "songs"}, id="wrong-resource-type"),
    pytest.param(_without("type"), id="type-missing"),
    pytest.param(_without("id"), id="id-missing"),
    pytest.param({**SEED_FIRST, "id": 1234}, id="id-not-a-string"),
    pytest.param({**SEED_FIRST, "id": "ab/cd"}, id="id-with-slash"),
    pytest.param({**SEED_FIRST, "id": ".."}, id="id-dot-dot"),
    pytest.param({**SEED_FIRST, "id": "ab%2f"}, id="id-percent"),
    pytest.param({**SEED_FIRST, "id": ""}, id="id-empty"),
    pytest.param(_without("attributes"), id="attributes-missing"),
    pytest.param({**SEED_FIRST, "attributes": []}, id="attributes-not-an-object"),
    pytest.param(variant(SEED_FIRST, display_name=None), id="display-name-null"),
    pytest.param(variant(SEED_FIRST, display_name=...), id="display-name-missing"),
    pytest.param(variant(SEED_FIRST, date_create=None), id="date-create-null"),
    pytest.param(variant(SEED_FIRST, date_create=1538611200), id="date-create-epoch-number"),
    pytest.param(variant(SEED_FIRST, date_create="04/10/2018"), id="date-create-not-iso"),
    pytest.param(
        variant(SEED_FIRST, date_create="2018-10-04T00:00:00.000000"),
        id="date-create-without-offset",
    ),
    pytest.param(variant(SEED_FIRST, date_access="yesterday"), id="date-access-not-iso"),
    pytest.param(
        variant(SEED_FIRST, date_create="0001-01-01T00:00:00+14:00"), id="date-create-before-year-1"
    ),
    pytest.param(
        variant(SEED_FIRST, date_access="9999-12-31T23:59:59-14:00"), id="date-access-after-9999"
    ),
    pytest.param(variant(SEED_FIRST, access_token_redacted=42), id="redacted-not-a-string"),
]


@pytest.mark.parametrize("resource", VIOLATIONS)
def test_schema_violations(resource: object) -> None:
    with pytest.raises(SchemaViolation):
        normalise_token(resource, source=SOURCE, now=NOW)


def test_parse_timestamp_names_the_field() -> None:
    with pytest.raises(SchemaViolation, match="token x: date_create"):
        parse_timestamp("nope", "token x: date_create")
    assert parse_timestamp("2018-10-04T02:00:00+02:00", "d") == SEED_DAY


# -- documents -------------------------------------------------------------------------------


def test_seed_list_document() -> None:
    document = parse_list(SEED_LIST, source=SOURCE, now=NOW)
    assert document == ListDocument(
        tokens=[
            expected("abcd1234", "Token for my very first app"),
            expected("efgh5678", "Token for my very second app"),
        ],
        next_link="https://api.ampermusic.com/v1/access_tokens?offset=20",
        next_known=True,
    )


@pytest.mark.parametrize(
    ("links", "next_link", "known"),
    [
        pytest.param({"next": None}, None, True, id="last-page-next-null"),
        pytest.param({"self": "x"}, None, False, id="next-missing"),
        pytest.param({"next": 20}, None, False, id="next-not-a-string"),
        pytest.param(None, None, False, id="links-null"),
        pytest.param(..., None, False, id="links-missing"),
    ],
)
def test_list_links(links: object, next_link: str | None, known: bool) -> None:
    payload: dict[str, Any] = {"data": []}
    if links is not ...:
        payload["links"] = links
    document = parse_list(payload, source=SOURCE, now=NOW)
    assert (document.tokens, document.next_link, document.next_known) == ([], next_link, known)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param([], id="list-not-an-object"),
        pytest.param({"links": {}}, id="data-missing"),
        pytest.param({"data": {"id": "abcd1234"}}, id="data-an-object-not-an-array"),
        pytest.param({"data": [SEED_FIRST, {"type": "access_tokens"}]}, id="one-bad-item"),
    ],
)
def test_malformed_lists(payload: object) -> None:
    with pytest.raises(SchemaViolation):
        parse_list(payload, source=SOURCE, now=NOW)


def test_single_token_document() -> None:
    payload = {"data": SEED_SECOND, "links": {"self": SEED_SECOND["links"]["self"]}}
    assert parse_single(payload, source=SOURCE, now=NOW) == expected(
        "efgh5678", "Token for my very second app"
    )


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"data": [SEED_FIRST]}, id="data-an-array"),
        pytest.param({"errors": [{"status": "404"}]}, id="an-error-document"),
        pytest.param("abcd1234", id="not-an-object"),
    ],
)
def test_malformed_single_documents(payload: object) -> None:
    with pytest.raises(SchemaViolation):
        parse_single(payload, source=SOURCE, now=NOW)


def test_created_document_hands_the_secret_back_separately() -> None:
    resource = variant(SEED_FIRST, access_token_plaintext="abcd1234-the-secret")
    token, secret = parse_created({"data": resource}, source=SOURCE, now=NOW)
    assert token == expected("abcd1234", "Token for my very first app")
    assert secret == "abcd1234-the-secret"


@pytest.mark.parametrize(
    "plaintext",
    [pytest.param(..., id="plaintext-missing"), pytest.param("", id="plaintext-empty")],
)
def test_created_document_without_secret(plaintext: object) -> None:
    resource = variant(SEED_FIRST, access_token_plaintext=plaintext)
    with pytest.raises(SchemaViolation, match="access_token_plaintext"):
        parse_created({"data": resource}, source=SOURCE, now=NOW)


def test_create_document_is_the_documented_body() -> None:
    assert create_document("My app") == {
        "data": {"type": "access_tokens", "attributes": {"display_name": "My app"}}
    }
    assert MEDIA_TYPE == "application/vnd.api+json"


# -- sorting, ids, the gateway's own credential, hints ---------------------------------------


@pytest.mark.parametrize(
    ("field", "direction", "param"),
    [
        (OrderField.CREATED_AT, Direction.ASC, "date_create"),
        (OrderField.CREATED_AT, Direction.DESC, "-date_create"),
        (OrderField.LAST_USED_AT, Direction.ASC, "date_access"),
        (OrderField.LAST_USED_AT, Direction.DESC, "-date_access"),
        (OrderField.NAME, Direction.ASC, "display_name"),
        (OrderField.NAME, Direction.DESC, "-display_name"),
        (OrderField.EXPIRES_AT, Direction.ASC, None),
        (OrderField.EXPIRES_AT, Direction.DESC, None),
    ],
)
def test_sort_params(field: OrderField, direction: Direction, param: str | None) -> None:
    assert sort_param(field, direction) == param


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("abcd1234", True),
        ("A-b_9", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("-abc", False),
        ("ab/cd", False),
        ("..", False),
        ("ab?c", False),
        ("ab#c", False),
        ("ab%2F", False),
        ("ab\ncd", False),
        ("ab cd", False),
    ],
)
def test_id_format(value: str, valid: bool) -> None:
    assert is_valid_id(value) is valid


@pytest.mark.parametrize(
    ("hint", "prefix"),
    [
        ("abcd1234***", "abcd1234"),
        ("abcd***", "abcd"),
        ("***", None),
        ("", None),
        (None, None),
        ("abcd1234", "abcd1234"),
    ],
)
def test_redacted_prefix(hint: str | None, prefix: str | None) -> None:
    assert redacted_prefix(hint) == prefix


@pytest.mark.parametrize(
    ("hint", "own"),
    [
        pytest.param("abcd1234***", True, id="seed-style-prefix-of-the-credential"),
        pytest.param("efgh5678***", False, id="another-token"),
        pytest.param("abc***", False, id="prefix-too-short-to-tell"),
        pytest.param("***", False, id="nothing-shown"),
        pytest.param(None, False, id="no-snippet"),
        pytest.param("abcd1234XYZ-longer-than-token***", False, id="longer-than-credential"),
    ],
)
def test_own_credential(hint: str | None, own: bool) -> None:
    assert is_own_credential(hint, "abcd1234XYZ") is own


@pytest.mark.parametrize(
    ("snippet", "hint"),
    [
        ("abcd1234***", "abcd…"),
        ("abcd***", "abcd…"),
        ("ab***", "ab…"),
        ("***", None),
        (None, None),
        ("abcd1234", "abcd…"),
    ],
)
def test_hints_show_at_most_four_characters_of_the_snippet(
    snippet: str | None, hint: str | None
) -> None:
    assert shown_hint(snippet) == hint


def test_positions_round_trip() -> None:
    text = encode_position("-date_access", 17, "abcd1234")
    assert text == "-date_access:17:abcd1234"
    assert decode_position(text) == ("-date_access", 17, "abcd1234")


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "date_create:17",
        "date_created:17:abcd1234",
        "date_expire:1:abcd1234",
        "date_create:-1:abcd1234",
        "date_create:1e3:abcd1234",
        "date_create:١٢:abcd1234",
        "date_create:1234567:abcd1234",
        "date_create:17:ab/cd",
        "date_create:17:",
    ],
)
def test_malformed_positions(text: str | None) -> None:
    assert decode_position(text) is None


def test_mixed_offsets_in_one_document_compare_as_instants() -> None:
    later = variant(SEED_SECOND, date_create="2018-10-04T01:30:00.000000+02:00")
    first = normalise_token(SEED_FIRST, source=SOURCE, now=NOW)
    second = normalise_token(later, source=SOURCE, now=NOW)
    assert second.created_at is not None and first.created_at is not None
    # 01:30+02:00 is 23:30 the day before: earlier, although its text sorts later.
    assert second.created_at < first.created_at
    assert second.created_at == datetime(2018, 10, 3, 23, 30, tzinfo=UTC)
