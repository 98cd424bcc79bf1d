"""Losant normalisation, table-driven from every example of seed 002 plus edge cases."""

from __future__ import annotations

import copy
import unicodedata
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tokengate.upstreams.errors import InvalidInput
from tokengate.upstreams.losant.normalise import (
    LazyTokens,
    SchemaViolation,
    TokenPage,
    error_type,
    format_date,
    is_object_id,
    is_success,
    local_id_for,
    normalise_token,
    parse_created,
    parse_date,
    parse_local_id,
    parse_token_page,
    patch_body,
    post_body,
)
from tokengate.upstreams.model import (
    CreateSpec,
    Owner,
    OwnerKind,
    Provider,
    Status,
    Token,
    UpdateSpec,
)

SOURCE = "fleet"
APP = "575ec8687ae143cd83dc4a97"
# Before the seed token's expirationDate (2017-06-13), and after it.
BEFORE_EXPIRY = datetime(2016, 12, 1, tzinfo=UTC)
AFTER_EXPIRY = datetime(2018, 1, 1, tzinfo=UTC)

# The seed's "API Token Example", all 13 keys.
SEED_TOKEN: dict[str, Any] = {
    "id": "575ec7417ae143cd83dc4a95",
    "apiTokenId": "575ec7417ae143cd83dc4a95",
    "creatorId": "575ed70c7ae143cd83dc4aa9",
    "creatorType": "user",
    "ownerId": "575ec8687ae143cd83dc4a97",
    "ownerType": "application",
    "name": "My API Token",
    "creationDate": "2016-06-13T04:00:00.000Z",
    "lastUpdated": "2016-06-13T04:00:00.000Z",
    "expirationDate": "2017-06-13T04:00:00.000Z",
    "scope": ["all.Application"],
    "status": "active",
    "token": "the_actual_token_string",
}
# The seed's "API Tokens Example", all 9 keys.
SEED_TOKENS: dict[str, Any] = {
    "items": [SEED_TOKEN],
    "count": 1,
    "totalCount": 4,
    "perPage": 1,
    "page": 0,
    "sortField": "name",
    "sortDirection": "asc",
    "ownerId": "575ec8687ae143cd83dc4a97",
    "ownerType": "application",
}
# The seed's "API Token Post Example".
SEED_POST: dict[str, Any] = {
    "name": "My New API Token",
    "expirationDate": "2017-06-13T04:00:00.000Z",
    "scope": ["all.Application"],
    "status": "active",
}
# The seed's "Error Example".
SEED_ERROR = {"type": "NotFound", "message": "Application was not found"}

SEED_EXPECTED = Token(
    source=SOURCE,
    provider=Provider.LOSANT,
    local_id="575ec8687ae143cd83dc4a97/575ec7417ae143cd83dc4a95",
    external_id="575ec7417ae143cd83dc4a95",
    name="My API Token",
    status=Status.ACTIVE,
    scopes=("all.Application",),
    owner=Owner(OwnerKind.APPLICATION, APP),
    created_at=datetime(2016, 6, 13, 4, 0, tzinfo=UTC),
    updated_at=datetime(2016, 6, 13, 4, 0, tzinfo=UTC),
    expires_at=datetime(2017, 6, 13, 4, 0, tzinfo=UTC),
)


def seed_with(**changes: Any) -> dict[str, Any]:
    """The seed token with fields changed; a value of ``...`` removes the field."""
    raw = copy.deepcopy(SEED_TOKEN)
    for key, value in changes.items():
        if value is ...:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


def _replaced(**fields: Any) -> Token:
    return replace(SEED_EXPECTED, **fields)


def norm(raw: object, now: datetime = BEFORE_EXPIRY, app: str = APP) -> Token:
    return normalise_token(raw, source=SOURCE, application_id=app, now=now)


@pytest.mark.parametrize(
    ("raw", "now", "expected"),
    [
        pytest.param(SEED_TOKEN, BEFORE_EXPIRY, SEED_EXPECTED, id="seed_api_token_example"),
        pytest.param(
            SEED_TOKEN,
            AFTER_EXPIRY,
            SEED_EXPECTED.with_status(Status.EXPIRED),
            id="seed_token_past_its_expiration_date_is_expired",
        ),
        pytest.param(
            seed_with(expirationDate="2016-12-01T00:00:00.000Z"),
            BEFORE_EXPIRY,
            _replaced(status=Status.EXPIRED, expires_at=BEFORE_EXPIRY),
            id="expiry_exactly_now_is_expired",
        ),
        pytest.param(
            seed_with(status="inactive"),
            BEFORE_EXPIRY,
            SEED_EXPECTED.with_status(Status.INACTIVE),
            id="inactive_status_is_inactive",
        ),
        pytest.param(
            seed_with(status="inactive"),
            AFTER_EXPIRY,
            SEED_EXPECTED.with_status(Status.EXPIRED),
            id="inactive_and_past_expiry_is_expired",
        ),
        pytest.param(
            seed_with(status=...),
            BEFORE_EXPIRY,
            SEED_EXPECTED,
            id="missing_status_is_active",
        ),
    ],
)
def test_seed_token_and_statuses(raw: object, now: datetime, expected: Token) -> None:
    assert norm(raw, now) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            seed_with(expirationDate=...),
            _replaced(expires_at=None),
            id="no_expiration_date_never_expires",
        ),
        pytest.param(
            seed_with(ownerType="user", ownerId="5b9f2e6c1e2d3a0012ab34cd"),
            _replaced(owner=Owner(OwnerKind.USER, "5b9f2e6c1e2d3a0012ab34cd")),
            id="owner_type_user_is_owned_by_that_user",
        ),
        pytest.param(
            seed_with(ownerType=..., ownerId=...),
            _replaced(owner=Owner(OwnerKind.APPLICATION, APP)),
            id="missing_owner_is_the_application_in_the_path",
        ),
        pytest.param(
            seed_with(id=...),
            SEED_EXPECTED,
            id="api_token_id_alone_is_the_id",
        ),
        pytest.param(
            seed_with(apiTokenId=...),
            SEED_EXPECTED,
            id="id_alone_is_the_id",
        ),
        pytest.param(
            seed_with(id="575EC7417AE143CD83DC4A95", apiTokenId="575ec7417ae143cd83dc4a95"),
            SEED_EXPECTED,
            id="upper_case_hex_id_is_lower_cased",
        ),
        pytest.param(
            seed_with(ownerId="575EC8687AE143CD83DC4A97"),
            SEED_EXPECTED,
            id="upper_case_owner_id_is_lower_cased",
        ),
        pytest.param(
            seed_with(token=...),
            SEED_EXPECTED,
            id="token_field_absent_is_fine",
        ),
        pytest.param(
            seed_with(lastUpdated="2016-07-01T12:30:00.250Z"),
            _replaced(updated_at=datetime(2016, 7, 1, 12, 30, 0, 250000, tzinfo=UTC)),
            id="last_updated_is_an_edit_time_not_a_last_use",
        ),
        pytest.param(
            seed_with(creationDate="2016-06-13T06:00:00.000+02:00"),
            SEED_EXPECTED,
            id="offset_date_is_converted_to_utc",
        ),
        pytest.param(
            seed_with(creationDate="2016-06-13t04:00:00z"),
            SEED_EXPECTED,
            id="lower_case_t_and_z_are_rfc3339",
        ),
        pytest.param(
            seed_with(creationDate="2016-06-13T04:00:00Z"),
            SEED_EXPECTED,
            id="date_without_milliseconds",
        ),
        pytest.param(
            seed_with(creationDate=...),
            _replaced(created_at=None),
            id="missing_creation_date_is_null",
        ),
        pytest.param(
            seed_with(description="Reads device state", creatorName="Ada"),
            _replaced(description="Reads device state"),
            id="description_is_passed_on",
        ),
        pytest.param(
            seed_with(scope=...),
            _replaced(scopes=()),
            id="missing_scope_is_no_scopes",
        ),
        pytest.param(
            seed_with(scope=["device.get", "devices.get"]),
            _replaced(scopes=("device.get", "devices.get")),
            id="several_scopes_keep_their_order",
        ),
        pytest.param(
            seed_with(someFutureField={"x": 1}),
            SEED_EXPECTED,
            id="unknown_fields_are_ignored",
        ),
        pytest.param(
            seed_with(creatorType="flow"),
            SEED_EXPECTED,
            id="creator_type_flow",
        ),
        pytest.param(
            seed_with(name="x" * 255),
            _replaced(name="x" * 255),
            id="name_of_255_characters",
        ),
    ],
)
def test_token_fields(raw: object, expected: Token) -> None:
    assert norm(raw) == expected


def test_the_secret_is_never_part_of_the_record() -> None:
    token = norm(SEED_TOKEN)
    assert "the_actual_token_string" not in repr(token)
    assert all(getattr(token, f) != "the_actual_token_string" for f in Token.__dataclass_fields__)
    assert token.secret_hint is None
    assert token.last_used_at is None


def test_local_id_uses_the_path_application_not_the_owner() -> None:
    token = norm(SEED_TOKEN, app="5B9F2E6C1E2D3A0012AB34CD")
    assert token.local_id == "5b9f2e6c1e2d3a0012ab34cd/575ec7417ae143cd83dc4a95"
    assert token.owner == Owner(OwnerKind.APPLICATION, APP)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param(["not", "an", "object"], "not a JSON object", id="token_not_an_object"),
        pytest.param(seed_with(id=..., apiTokenId=...), "neither", id="no_id_at_all"),
        pytest.param(seed_with(id="575ec7417ae143cd83dc4a9"), "'id'", id="id_23_hex"),
        pytest.param(seed_with(id="575ec7417ae143cd83dc4a9g"), "'id'", id="id_not_hex"),
        pytest.param(seed_with(id=12345), "'id'", id="id_not_a_string"),
        pytest.param(
            seed_with(apiTokenId="575ec7417ae143cd83dc4a96"), "disagree", id="id_mismatch"
        ),
        pytest.param(seed_with(name=...), "'name' is missing", id="name_missing"),
        pytest.param(seed_with(name=""), "'name'", id="name_empty"),
        pytest.param(seed_with(name="x" * 256), "'name'", id="name_too_long"),
        pytest.param(seed_with(name=None), "'name'", id="name_null"),
        pytest.param(seed_with(description=7), "'description'", id="description_not_string"),
        pytest.param(
            seed_with(description="d" * 32768), "'description'", id="description_too_long"
        ),
        pytest.param(seed_with(creationDate="yesterday"), "'creationDate'", id="date_words"),
        pytest.param(seed_with(creationDate="2016-06-13"), "'creationDate'", id="date_only"),
        pytest.param(
            seed_with(creationDate="2016-06-13T04:00:00.000"), "'creationDate'", id="naive_date"
        ),
        pytest.param(
            seed_with(creationDate="20160613T040000Z"), "'creationDate'", id="basic_format_date"
        ),
        pytest.param(
            seed_with(lastUpdated="2016-13-13T04:00:00.000Z"), "'lastUpdated'", id="month_13"
        ),
        pytest.param(
            seed_with(expirationDate=1465790400000), "'expirationDate'", id="epoch_millis_date"
        ),
        pytest.param(seed_with(expirationDate=None), "'expirationDate'", id="null_expiry"),
        pytest.param(seed_with(scope="all.Application"), "'scope'", id="scope_not_a_list"),
        pytest.param(seed_with(scope=[""]), "'scope'", id="scope_item_empty"),
        pytest.param(seed_with(scope=[1]), "'scope'", id="scope_item_not_string"),
        pytest.param(seed_with(scope=["s" * 1025]), "'scope'", id="scope_item_too_long"),
        pytest.param(seed_with(status="revoked"), "'status'", id="status_unknown"),
        pytest.param(seed_with(status="Active"), "'status'", id="status_wrong_case"),
        pytest.param(seed_with(ownerType="device"), "'ownerType'", id="owner_type_unknown"),
        pytest.param(
            seed_with(ownerType="user", ownerId=...), "'ownerId' is missing", id="user_no_id"
        ),
        pytest.param(seed_with(ownerId="app"), "'ownerId'", id="owner_id_not_hex"),
        pytest.param(seed_with(creatorId="me"), "'creatorId'", id="creator_id_not_hex"),
        pytest.param(seed_with(creatorType="robot"), "'creatorType'", id="creator_type_unknown"),
        pytest.param(seed_with(creatorName="n" * 1025), "'creatorName'", id="creator_name_long"),
        pytest.param(seed_with(token=""), "'token'", id="secret_empty"),
        pytest.param(seed_with(token=42), "'token'", id="secret_not_a_string"),
    ],
)
def test_schema_violations(raw: object, field: str) -> None:
    with pytest.raises(SchemaViolation) as caught:
        norm(raw)
    message = str(caught.value)
    assert field in message
    # Names fields only: never a value, never the secret.
    assert "the_actual_token_string" not in message
    assert "yesterday" not in message


def test_seed_api_tokens_example() -> None:
    page = parse_token_page(SEED_TOKENS, source=SOURCE, application_id=APP, now=BEFORE_EXPIRY)
    assert page == TokenPage(
        tokens=[SEED_EXPECTED],
        total_count=4,
        per_page=1,
        page=0,
        sort_field="name",
        sort_direction="asc",
    )


def _page_with(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(SEED_TOKENS)
    for key, value in changes.items():
        if value is ...:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            {"items": []},
            TokenPage([], None, None, None, None, None),
            id="only_items_is_enough",
        ),
        pytest.param(
            _page_with(sortDirection="DESC", sortField="creationDate"),
            TokenPage([SEED_EXPECTED], 4, 1, 0, "creationDate", "desc"),
            id="upper_case_sort_direction",
        ),
        pytest.param(
            _page_with(sortDirection="", sortField=""),
            TokenPage([SEED_EXPECTED], 4, 1, 0, None, None),
            id="blank_sort_echo",
        ),
        pytest.param(
            _page_with(filter="my*token", filterField="name"),
            TokenPage([SEED_EXPECTED], 4, 1, 0, "name", "asc"),
            id="filter_echo",
        ),
    ],
)
def test_token_pages(raw: object, expected: TokenPage) -> None:
    assert parse_token_page(raw, source=SOURCE, application_id=APP, now=BEFORE_EXPIRY) == expected


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param([], "not a JSON object", id="page_not_an_object"),
        pytest.param(_page_with(items=...), "'items'", id="items_missing"),
        pytest.param(_page_with(items={"0": SEED_TOKEN}), "'items'", id="items_not_a_list"),
        pytest.param(_page_with(count=True), "'count'", id="count_boolean"),
        pytest.param(_page_with(totalCount=-1), "'totalCount'", id="total_negative"),
        pytest.param(_page_with(perPage="1"), "'perPage'", id="per_page_string"),
        pytest.param(_page_with(page=0.5), "'page'", id="page_fraction"),
        pytest.param(_page_with(count=2), "'count'", id="count_disagrees_with_items"),
        pytest.param(
            _page_with(items=[SEED_TOKEN, SEED_TOKEN], count=2), "duplicate", id="duplicate_ids"
        ),
        pytest.param(_page_with(sortDirection="up"), "'sortDirection'", id="direction_unknown"),
        pytest.param(_page_with(sortField=3), "'sortField'", id="sort_field_not_string"),
        pytest.param(_page_with(filter=["x"]), "'filter'", id="filter_not_string"),
        pytest.param(_page_with(ownerId="x"), "'ownerId'", id="page_owner_id_not_hex"),
        pytest.param(_page_with(ownerType="org"), "'ownerType'", id="page_owner_type_unknown"),
        pytest.param(_page_with(items=[seed_with(name="")]), "item 0", id="bad_item"),
    ],
)
def test_token_page_violations(raw: object, field: str) -> None:
    with pytest.raises(SchemaViolation, match=field):
        parse_token_page(raw, source=SOURCE, application_id=APP, now=BEFORE_EXPIRY)


def test_a_lazy_page_judges_each_item_when_read() -> None:
    broken = seed_with(name="")
    raw = _page_with(items=[SEED_TOKEN, broken, SEED_TOKEN], count=3)
    page = parse_token_page(raw, source=SOURCE, application_id=APP, now=BEFORE_EXPIRY, lazy=True)
    assert isinstance(page.tokens, LazyTokens)
    assert len(page.tokens) == 3
    assert page.tokens[0] == SEED_EXPECTED
    assert page.tokens[-3] == SEED_EXPECTED
    with pytest.raises(SchemaViolation, match="item 1"):
        _ = page.tokens[1]
    with pytest.raises(SchemaViolation, match="item 2: duplicate"):
        _ = page.tokens[2]
    with pytest.raises(IndexError):
        _ = page.tokens[3]
    with pytest.raises(SchemaViolation, match="item 1"):
        list(page.tokens)


def test_a_lazy_page_reads_like_the_eager_one() -> None:
    lazy = parse_token_page(
        SEED_TOKENS, source=SOURCE, application_id=APP, now=BEFORE_EXPIRY, lazy=True
    )
    eager = parse_token_page(SEED_TOKENS, source=SOURCE, application_id=APP, now=BEFORE_EXPIRY)
    assert list(lazy.tokens) == list(eager.tokens)
    assert lazy.tokens[0:1] == list(eager.tokens[0:1])
    assert list(reversed(lazy.tokens)) == list(reversed(eager.tokens))
    assert (lazy.total_count, lazy.per_page, lazy.page) == (
        eager.total_count,
        eager.per_page,
        eager.page,
    )


def test_created_token_carries_its_secret_once() -> None:
    token, secret = parse_created(SEED_TOKEN, source=SOURCE, application_id=APP, now=BEFORE_EXPIRY)
    assert token == SEED_EXPECTED
    assert secret == "the_actual_token_string"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param(seed_with(token=...), "'token'", id="created_without_secret"),
        pytest.param("created", "not a JSON object", id="created_not_an_object"),
    ],
)
def test_created_violations(raw: object, field: str) -> None:
    with pytest.raises(SchemaViolation, match=field):
        parse_created(raw, source=SOURCE, application_id=APP, now=BEFORE_EXPIRY)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(SEED_ERROR, "NotFound", id="seed_error_example"),
        pytest.param({"type": "Validation"}, "Validation", id="type_without_message"),
        pytest.param({"message": "bad"}, None, id="message_without_type"),
        pytest.param({"type": "Bad token abc.def"}, None, id="type_with_spaces_is_not_passed_on"),
        pytest.param({"type": "T" * 41}, None, id="type_too_long"),
        pytest.param({"type": 400}, None, id="type_not_string"),
        pytest.param("NotFound", None, id="body_not_an_object"),
    ],
)
def test_error_type(raw: object, expected: str | None) -> None:
    assert error_type(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param({"success": True}, True, id="success_true"),
        pytest.param({"success": "true"}, False, id="success_string"),
        pytest.param({"success": False}, False, id="success_false"),
        pytest.param({}, False, id="success_missing"),
        pytest.param([True], False, id="success_not_an_object"),
    ],
)
def test_success_body(raw: object, expected: bool) -> None:
    assert is_success(raw) is expected


def test_seed_post_example_is_what_create_sends() -> None:
    spec = CreateSpec(
        name="My New API Token",
        expires_at=datetime(2017, 6, 13, 4, 0, tzinfo=UTC),
        scopes=("all.Application",),
    )
    # CreateSpec has no status: Losant's default (active) applies.
    assert post_body(spec) == {k: v for k, v in SEED_POST.items() if k != "status"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(CreateSpec(name="n"), {"name": "n"}, id="name_only"),
        pytest.param(
            CreateSpec(name="n", description=""),
            {"name": "n", "description": ""},
            id="empty_description_is_sent",
        ),
        pytest.param(
            CreateSpec(name="n", scopes=("device.get", "devices.get", "device.get")),
            {"name": "n", "scope": ["device.get", "devices.get"]},
            id="repeated_scope_sent_once",
        ),
        pytest.param(CreateSpec(name="n", scopes=()), {"name": "n", "scope": []}, id="no_scopes"),
        pytest.param(
            CreateSpec(
                name="n",
                expires_at=datetime(
                    2030, 1, 2, 5, 4, 5, 678999, tzinfo=timezone(timedelta(hours=2))
                ),
            ),
            {"name": "n", "expirationDate": "2030-01-02T03:04:05.678Z"},
            id="expiry_in_utc_with_milliseconds",
        ),
        pytest.param(
            CreateSpec(name="n", application_id=APP),
            {"name": "n"},
            id="application_id_is_the_path_not_the_body",
        ),
    ],
)
def test_post_body(spec: CreateSpec, expected: dict[str, object]) -> None:
    assert post_body(spec) == expected


@pytest.mark.parametrize(
    ("spec", "argument"),
    [
        pytest.param(CreateSpec(name="n", subject="user-1"), "subject", id="subject_internal_only"),
        pytest.param(
            CreateSpec(name="n", allowed_sources=frozenset({"fleet"})),
            "allowedSources",
            id="allowed_sources_internal_only",
        ),
        pytest.param(CreateSpec(name=""), "name", id="empty_name"),
        pytest.param(CreateSpec(name="n" * 256), "name", id="long_name"),
        pytest.param(CreateSpec(name="n", description="d" * 32768), "description", id="long_desc"),
        pytest.param(CreateSpec(name="n", scopes=("",)), "scopes", id="empty_scope"),
        pytest.param(CreateSpec(name="n", scopes=("s" * 1025,)), "scopes", id="long_scope"),
        pytest.param(
            CreateSpec(name="n", expires_at=datetime(2030, 1, 1)),
            "expiresAt",
            id="naive_expiry",
        ),
    ],
)
def test_post_body_refusals(spec: CreateSpec, argument: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        post_body(spec)
    assert caught.value.argument == argument


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(UpdateSpec(name="Renamed"), {"name": "Renamed"}, id="rename"),
        pytest.param(UpdateSpec(description=""), {"description": ""}, id="clear_description"),
        pytest.param(UpdateSpec(status=Status.INACTIVE), {"status": "inactive"}, id="disable"),
        pytest.param(UpdateSpec(status=Status.ACTIVE), {"status": "active"}, id="enable"),
        pytest.param(
            UpdateSpec(name="a", description="b", status=Status.ACTIVE),
            {"name": "a", "description": "b", "status": "active"},
            id="everything",
        ),
    ],
)
def test_patch_body(spec: UpdateSpec, expected: dict[str, object]) -> None:
    assert patch_body(spec) == expected


@pytest.mark.parametrize(
    ("spec", "argument"),
    [
        pytest.param(UpdateSpec(), None, id="nothing_to_change"),
        pytest.param(UpdateSpec(status=Status.REVOKED), "status", id="revoked_is_delete"),
        pytest.param(UpdateSpec(status=Status.EXPIRED), "status", id="expired_is_not_settable"),
        pytest.param(UpdateSpec(name=""), "name", id="empty_name"),
        pytest.param(UpdateSpec(description="d" * 32768), "description", id="long_description"),
    ],
)
def test_patch_body_refusals(spec: UpdateSpec, argument: str | None) -> None:
    with pytest.raises(InvalidInput) as caught:
        patch_body(spec)
    assert caught.value.argument == argument


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            datetime(2016, 6, 13, 4, 0, tzinfo=UTC), "2016-06-13T04:00:00.000Z", id="seed_date"
        ),
        pytest.param(
            datetime(2016, 6, 13, 4, 0, 0, 999999, tzinfo=UTC),
            "2016-06-13T04:00:00.999Z",
            id="microseconds_truncated",
        ),
        pytest.param(
            datetime(2016, 6, 13, 0, 0, tzinfo=timezone(timedelta(hours=-4))),
            "2016-06-13T04:00:00.000Z",
            id="offset_to_utc",
        ),
    ],
)
def test_format_date(value: datetime, expected: str) -> None:
    assert format_date(value) == expected
    assert parse_date(expected, "x") == value.replace(microsecond=value.microsecond // 1000 * 1000)


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00.000+14:00", "9999-12-31T23:59:59-14:00"])
def test_parse_date_refuses_instants_outside_utc_range(value: str) -> None:
    with pytest.raises(SchemaViolation, match="'x' is out of range"):
        parse_date(value, "x")


def test_format_date_refuses_naive() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_date(datetime(2016, 6, 13))


@pytest.mark.parametrize(
    ("local_id", "expected"),
    [
        pytest.param(
            "575ec8687ae143cd83dc4a97/575ec7417ae143cd83dc4a95",
            ("575ec8687ae143cd83dc4a97", "575ec7417ae143cd83dc4a95"),
            id="canonical",
        ),
        pytest.param(
            "575EC8687AE143CD83DC4A97/575EC7417AE143CD83DC4A95",
            ("575ec8687ae143cd83dc4a97", "575ec7417ae143cd83dc4a95"),
            id="upper_case_is_lower_cased",
        ),
        pytest.param("575ec8687ae143cd83dc4a97", None, id="no_slash"),
        pytest.param("575ec8687ae143cd83dc4a97/", None, id="no_token"),
        pytest.param("/575ec7417ae143cd83dc4a95", None, id="no_application"),
        pytest.param(
            "575ec8687ae143cd83dc4a97/575ec7417ae143cd83dc4a95/x", None, id="extra_segment"
        ),
        pytest.param("575ec8687ae143cd83dc4a97/..", None, id="dot_dot"),
        pytest.param("575ec8687ae143cd83dc4a97/575ec7417ae143cd83dc4a9%", None, id="percent"),
        pytest.param("575ec8687ae143cd83dc4a97/575ec7417ae143cd83dc4a9?", None, id="query"),
        pytest.param("575ec8687ae143cd83dc4a97/575ec7417ae143cd83dc4a9#", None, id="fragment"),
        pytest.param("575ec8687ae143cd83dc4a97/575ec7417ae143cd83dc4a9\n", None, id="newline"),
        pytest.param("575ec8687ae143cd83dc4a97/575ec7417ae143cd83dc4a9٣", None, id="arabic_digit"),
        pytest.param("", None, id="empty"),
    ],
)
def test_parse_local_id(local_id: str, expected: tuple[str, str] | None) -> None:
    assert parse_local_id(local_id) == expected


def test_local_id_round_trip() -> None:
    local_id = local_id_for("575EC8687AE143CD83DC4A97", "575ec7417AE143cd83dc4a95")
    assert local_id == "575ec8687ae143cd83dc4a97/575ec7417ae143cd83dc4a95"
    assert parse_local_id(local_id) == ("575ec8687ae143cd83dc4a97", "575ec7417ae143cd83dc4a95")
    assert is_object_id("575ec8687ae143cd83dc4a97")
    assert not is_object_id("575ec8687ae143cd83dc4a97\n")


def test_ascii_digits_and_separators_never_come_from_case_folding() -> None:
    """What the client's name push-down relies on: no other character folds to or from the
    glob literals it sends upstream, and none folds to nothing."""
    safe = set("0123456789 ._-")
    for code in range(0x110000):
        char = chr(code)
        if unicodedata.category(char) == "Cs":
            continue
        folded = char.casefold()
        assert folded, char
        if char not in safe:
            assert not safe & set(folded), hex(code)
        else:
            assert folded == char
