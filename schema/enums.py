"""GraphQL names for the domain enums, registered before any type uses them."""

from __future__ import annotations

import enum

import strawberry

from tokengate.upstreams.model import (
    Direction,
    FilterField,
    OrderField,
    OwnerKind,
    Provider,
    Status,
)
from tokengate.upstreams.secret_lookup import SecretLookup, SecretMatchKind
from tokengate.upstreams.security_ops import SkipReason

strawberry.enum(Provider, name="TokenProvider")
strawberry.enum(Status, name="TokenStatus")
strawberry.enum(OwnerKind, name="OwnerKind")
strawberry.enum(OrderField, name="TokenOrderField")
strawberry.enum(Direction, name="OrderDirection")
strawberry.enum(SecretLookup, name="SecretLookup")
strawberry.enum(SecretMatchKind, name="SecretMatchKind")
strawberry.enum(SkipReason, name="RevocationSkipReason")
strawberry.enum(FilterField, name="TokenFilterField")


@strawberry.enum
class SourceFailureReason(enum.Enum):
    UNAVAILABLE = "UNAVAILABLE"
    TIMEOUT = "TIMEOUT"
    UNAUTHORIZED = "UNAUTHORIZED"
    RATE_LIMITED = "RATE_LIMITED"
    BAD_RESPONSE = "BAD_RESPONSE"
    NEEDS_FILTER = "NEEDS_FILTER"
    FILTER_UNSUPPORTED = "FILTER_UNSUPPORTED"


@strawberry.enum
class SourceHealth(enum.Enum):
    OK = "OK"
    DEGRADED = "DEGRADED"
    DOWN = "DOWN"
