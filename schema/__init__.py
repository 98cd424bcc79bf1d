"""The GraphQL schema layer: Strawberry types over the domain model, resolvers over the service."""

import tokengate.schema.enums  # noqa: F401  (names the domain enums before any type refers to them)
