"""GraphQL input types and their translation into validated domain values."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import strawberry
from strawberry.types.arguments import InputContext
from strawberry.types.base import StrawberryList, StrawberryOptional
from strawberry.types.enum import StrawberryEnumDefinition

from tokengate.upstreams.errors import InvalidInput
from tokengate.upstreams.model import (
    CreateSpec,
    Direction,
    OrderField,
    Provider,
    Status,
    TokenFilter,
    TokenOrder,
    UpdateSpec,
)
from tokengate.upstreams.ordering import MAX_GLOB_LENGTH

MAX_FILTER_ITEMS = 50
T = TypeVar("T")
MAX_TEXT = 256


_LEAF_TYPES = (str, int, float, bool, datetime)


def _is_leaf(type_: object) -> bool:
    """A scalar, enum or list of them that graphql-core's coercion already made Python."""
    while isinstance(type_, StrawberryOptional | StrawberryList):
        type_ = type_.of_type
    if isinstance(type_, StrawberryEnumDefinition):
        return issubclass(type_.wrapped_cls, enum.Enum)
    return type_ in _LEAF_TYPES


def built_from_leaves(cls: type[T]) -> type[T]:
    """Build instances of an input type of scalars, enums and lists of them directly.

    graphql-core has already coerced every such value (enum names to members, DateTime to
    datetime); Strawberry would still convert each field through its generic machinery,
    on every request's critical path before any upstream is asked. This sets Strawberry's
    ``from_input`` hook to pass the values on as they are, lists copied (graphql-core
    shares default values between requests). Refuses, at import, a type with any other
    field (nested inputs, IDs), which need Strawberry's conversion.
    """
    definition = cls.__strawberry_definition__  # type: ignore[attr-defined]
    fields = [(f, f.resolve_type(type_definition=definition)) for f in definition.fields]
    for field, type_ in fields:
        if not _is_leaf(type_):
            raise TypeError(f"{cls.__name__}.{field.python_name} is not a scalar or enum")
    names: dict[int, tuple[object, list[tuple[str, str]]]] = {}

    def from_input(type_: type, value: Mapping[str, Any], context: InputContext) -> Any:
        config = context.config
        cached = names.get(id(config))
        if cached is None or cached[0] is not config:
            converter = config.name_converter
            cached = (config, [(converter.from_field(f), f.python_name) for f, _ in fields])
            names[id(config)] = cached
        kwargs = {}
        for graphql_name, python_name in cached[1]:
            if graphql_name in value:
                item = value[graphql_name]
                kwargs[python_name] = list(item) if isinstance(item, list) else item
        return type_(**kwargs)

    definition.from_input = from_input
    return cls


@built_from_leaves
@strawberry.input(name="TokenOrder")
class TokenOrderInput:
    field: OrderField
    direction: Direction


@built_from_leaves
@strawberry.input(name="TokenFilter")
class TokenFilterInput:
    sources: list[str] | None = strawberry.field(
        default=None, description="Source keys; default: every source the caller may read."
    )
    providers: list[Provider] | None = None
    statuses: list[Status] | None = strawberry.field(
        default=None, description="Default: every status but REVOKED."
    )
    name: str | None = strawberry.field(
        default=None, description='Case-insensitive glob on name, e.g. "ci-*" (* and ?).'
    )
    scope: str | None = strawberry.field(
        default=None, description="Only tokens that hold this scope."
    )
    user_id: str | None = strawberry.field(
        default=None,
        description=(
            "The user whose tokens the OAuth-style source lists: it lists one user at a time, "
            "and without userId it is skipped and reported in failedSources as NEEDS_FILTER "
            "(no error). Other sources are not filtered by it."
        ),
    )
    application_id: str | None = strawberry.field(
        default=None, description="Owner application id (Losant)."
    )
    created_after: datetime | None = strawberry.field(
        default=None, description="Strictly after this instant."
    )
    created_before: datetime | None = strawberry.field(
        default=None, description="Strictly before this instant."
    )
    expires_before: datetime | None = strawberry.field(
        default=None,
        description="Expiry strictly before this instant; a token without expiry never matches.",
    )
    expires_after: datetime | None = strawberry.field(
        default=None,
        description="Expiry strictly after this instant; a token without expiry never matches.",
    )
    last_used_before: datetime | None = strawberry.field(
        default=None,
        description=(
            "Not used since this instant: last used strictly before it, or never used and "
            "created before it. Sources that do not record use are skipped and reported in "
            "failedSources as FILTER_UNSUPPORTED."
        ),
    )
    never_used: bool | None = strawberry.field(
        default=None,
        description=(
            "true: no recorded use; false: a recorded use. Sources that do not record use "
            "are skipped (FILTER_UNSUPPORTED), never counted as unused."
        ),
    )


def aware(value: datetime | None, argument: str) -> datetime | None:
    """A caller's instant in UTC; ``InvalidInput`` when it has no offset, or when its UTC
    time falls outside years 1..9999 (``0001-01-01T00:00:00+14:00``), which Python cannot
    represent: every comparison and conversion further on would overflow."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(
            f"{argument} needs a time zone offset, e.g. 2026-01-01T00:00:00Z", argument=argument
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(
            f"{argument} is out of range: in UTC it must fall within the years 1 to 9999",
            argument=argument,
        ) from None


def _text(value: str | None, argument: str, limit: int = MAX_TEXT) -> str | None:
    if value is None:
        return None
    if not value or len(value) > limit or any(ord(c) < 32 for c in value):
        raise InvalidInput(
            f"{argument} must be 1 to {limit} characters without control characters",
            argument=argument,
        )
    return value


def _items(values: list[T] | None, argument: str) -> frozenset[T] | None:
    if values is None:
        return None
    if len(values) > MAX_FILTER_ITEMS:
        raise InvalidInput(f"{argument} takes at most {MAX_FILTER_ITEMS} values", argument=argument)
    return frozenset(values)


def to_filter(raw: TokenFilterInput | None) -> TokenFilter:
    if raw is None:
        return TokenFilter()
    name = _text(raw.name, "filter.name", MAX_GLOB_LENGTH)
    if name is not None and name.count("*") > 10:
        raise InvalidInput("filter.name may hold at most 10 '*'", argument="filter.name")
    after = aware(raw.created_after, "filter.createdAfter")
    before = aware(raw.created_before, "filter.createdBefore")
    for key in raw.sources or []:
        _text(key, "filter.sources", 64)
    return TokenFilter(
        sources=_items(raw.sources, "filter.sources"),
        providers=_items(raw.providers, "filter.providers"),
        statuses=_items(raw.statuses, "filter.statuses"),
        name_glob=name,
        scope=_text(raw.scope, "filter.scope"),
        user_id=_text(raw.user_id, "filter.userId"),
        application_id=_text(raw.application_id, "filter.applicationId", 64),
        created_after=after,
        created_before=before,
        expires_before=aware(raw.expires_before, "filter.expiresBefore"),
        expires_after=aware(raw.expires_after, "filter.expiresAfter"),
        last_used_before=aware(raw.last_used_before, "filter.lastUsedBefore"),
        never_used=raw.never_used,
    )


def to_order(raw: TokenOrderInput | None) -> TokenOrder:
    if raw is None:
        return TokenOrder()
    return TokenOrder(field=raw.field, direction=raw.direction)


@strawberry.input
class CreateTokenInput:
    source: str = strawberry.field(description="Key of the source that will issue the token.")
    name: str
    description: str | None = None
    scopes: list[str] | None = None
    expires_at: datetime | None = None
    application_id: str | None = None
    subject: str | None = strawberry.field(
        default=None,
        description=(
            "Internal tokens only: bind the new token to this user id "
            "(it then sees only that user's tokens)."
        ),
    )
    allowed_sources: list[str] | None = strawberry.field(
        default=None,
        description="Internal tokens only: the source keys the new token may read and act on (default: all).",
    )
    client_mutation_id: str | None = None


def to_create_spec(raw: CreateTokenInput) -> CreateSpec:
    if raw.scopes is not None and len(raw.scopes) > MAX_FILTER_ITEMS:
        raise InvalidInput(f"scopes takes at most {MAX_FILTER_ITEMS} values", argument="scopes")
    return CreateSpec(
        name=raw.name,
        description=raw.description,
        scopes=tuple(raw.scopes) if raw.scopes is not None else None,
        expires_at=aware(raw.expires_at, "expiresAt"),
        application_id=_text(raw.application_id, "applicationId", 64),
        subject=_text(raw.subject, "subject", 255),
        allowed_sources=_items(raw.allowed_sources, "allowedSources"),
    )


@strawberry.input
class UpdateTokenInput:
    id: strawberry.ID
    name: str | None = None
    description: str | None = None
    status: Status | None = None
    client_mutation_id: str | None = None


def to_update_spec(raw: UpdateTokenInput) -> UpdateSpec:
    return UpdateSpec(name=raw.name, description=raw.description, status=raw.status)


@strawberry.input
class RevokeTokenInput:
    id: strawberry.ID
    client_mutation_id: str | None = None
