"""Strawberry types mapping the domain model; plain attributes only, no per-field resolvers."""

from __future__ import annotations

from datetime import datetime

import strawberry

from tokengate.schema.enums import SourceFailureReason, SourceHealth
from tokengate.upstreams import ids
from tokengate.upstreams.model import (
    Capabilities,
    FilterField,
    OrderField,
    OwnerKind,
    Provider,
    Status,
    Token,
)
from tokengate.upstreams.secret_lookup import SecretLookup


@strawberry.interface(
    description="An object with a globally unique, opaque ID (Relay Global Object Identification)."
)
class Node:
    id: strawberry.ID


@strawberry.type
class TokenOwner:
    kind: OwnerKind
    id: str


@strawberry.type
class SourceCapabilities:
    can_create: bool
    can_update: bool
    can_revoke: bool
    secret_lookup: SecretLookup = strawberry.field(
        description=(
            "What tokensBySecret can do here: EXACT (the whole secret is compared), HINT "
            "(only a redacted prefix: several tokens may match) or NONE (the source never "
            "shows its secrets, e.g. the OAuth-style server)."
        )
    )
    native_sort_fields: list[OrderField] = strawberry.field(
        description="Sort fields this source orders natively; others are ordered by the gateway."
    )
    can_count: bool = strawberry.field(
        description="Whether the source can count its matches (totalCount is exact with it)."
    )
    needs_user_filter: bool = strawberry.field(
        description="Whether the source lists one user at a time (needs filter.userId)."
    )
    reports_last_used: bool = strawberry.field(
        description=(
            "Whether the source records when a token was last used; without it, "
            "lastUsedBefore and neverUsed skip the source (FILTER_UNSUPPORTED)."
        )
    )
    reports_expiry: bool = strawberry.field(
        description=(
            "Whether the source reports expiry dates (or that its tokens never expire); "
            "without it, expiresBefore and expiresAfter skip the source (FILTER_UNSUPPORTED)."
        )
    )
    native_filters: list[FilterField] = strawberry.field(
        description=(
            "Use and expiry filters the source applies itself, or bounds by its own sort "
            "when orderBy is that date; the others are computed by the gateway over what "
            "the source lists."
        )
    )

    @classmethod
    def of(
        cls, caps: Capabilities, secret_lookup: SecretLookup = SecretLookup.NONE
    ) -> SourceCapabilities:
        return cls(
            can_create=caps.can_create,
            can_update=caps.can_update,
            can_revoke=caps.can_revoke,
            secret_lookup=secret_lookup,
            native_sort_fields=sorted(caps.native_sort_fields, key=list(OrderField).index),
            can_count=caps.can_count,
            needs_user_filter=caps.needs_user_filter,
            reports_last_used=caps.reports_last_used,
            reports_expiry=caps.reports_expiry,
            native_filters=sorted(caps.native_filters, key=list(FilterField).index),
        )


@strawberry.type(
    name="Source",
    description="A configured upstream (or the gateway's own store) that holds tokens.",
)
class SourceType(Node):
    id: strawberry.ID
    key: str = strawberry.field(
        description="The key given to the source in the configuration, used in filters and inputs."
    )
    name: str
    provider: Provider
    capabilities: SourceCapabilities
    source: strawberry.Private[object] = None

    @strawberry.field(
        description=(
            "OK, DEGRADED (recent failures, or probing after an outage) or DOWN (calls paused "
            "by the circuit breaker). The internal store is OK while the gateway answers."
        )
    )
    def health(self) -> SourceHealth:
        return SourceHealth(getattr(self.source, "health", "ok").upper())


@strawberry.federation.type(
    name="Token", keys=["id"], description="A token from any source, in one normalised shape."
)
class TokenType(Node):
    id: strawberry.ID
    source: SourceType = strawberry.field(description="Where the token lives.")
    provider: Provider
    external_id: str = strawberry.field(description="The token's own id at its source.")
    name: str = strawberry.field(
        description="Human-readable label: Amper display_name, OAuth client_name, Losant name."
    )
    description: str | None
    client_name: str | None
    device_name: str | None
    auth_method: str | None = strawberry.field(
        description="Authentication method, e.g. the OAuth server's DEFAULT or FINGER_PRINT."
    )
    owner: TokenOwner | None = strawberry.field(
        description="Null where the source does not say (Amper tokens belong to the credential's account)."
    )
    scopes: list[str]
    status: Status
    created_at: datetime | None
    last_used_at: datetime | None
    updated_at: datetime | None
    expires_at: datetime | None
    secret_hint: str | None = strawberry.field(
        description="A short redacted prefix of the secret, when the source exposes one. Never the secret."
    )


def token_type(token: Token, source: SourceType) -> TokenType:
    owner = token.owner
    return TokenType(
        id=strawberry.ID(ids.token_id(token.source, token.local_id)),
        source=source,
        provider=token.provider,
        external_id=token.external_id,
        name=token.name,
        description=token.description,
        client_name=token.client_name,
        device_name=token.device_name,
        auth_method=token.auth_method,
        owner=TokenOwner(kind=owner.kind, id=owner.id) if owner is not None else None,
        scopes=list(token.scopes),
        status=token.status,
        created_at=token.created_at,
        last_used_at=token.last_used_at,
        updated_at=token.updated_at,
        expires_at=token.expires_at,
        secret_hint=token.secret_hint,
    )


@strawberry.federation.type(shareable=True)
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class TokenEdge:
    cursor: str
    node: TokenType


@strawberry.type(
    description="A source that could not contribute to this page; the page holds what the others gave."
)
class SourceFailure:
    source: SourceType
    reason: SourceFailureReason
    message: str


@strawberry.type
class TokenConnection:
    edges: list[TokenEdge]
    nodes: list[TokenType]
    page_info: PageInfo
    total_count: int | None = strawberry.field(
        description="Exact count over all sources, or null where a source cannot count cheaply."
    )
    failed_sources: list[SourceFailure] = strawberry.field(
        description="Sources that failed or were skipped for this page; empty when the page is complete."
    )
