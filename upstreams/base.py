"""The contract every token source implements: the internal store and each upstream adapter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tokengate.upstreams.model import (
    Capabilities,
    Created,
    CreateSpec,
    PageRequest,
    Provider,
    SourcePage,
    Token,
    UpdateSpec,
)


class TokenSource(Protocol):
    """A place that holds tokens.

    Every method raises only ``upstreams.errors`` exceptions: ``NotFound`` for an id it
    does not hold, ``Unsupported`` for an operation its ``capabilities`` deny, an
    ``UpstreamError`` subclass when the upstream fails. A source never sees another
    source's ids; the gateway routes by source key.
    """

    @property
    def key(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def provider(self) -> Provider: ...

    @property
    def capabilities(self) -> Capabilities: ...

    async def list_page(self, request: PageRequest) -> SourcePage:
        """Up to ``request.limit`` tokens matching ``request.filter``, strictly after
        ``request.after`` in ``request.walk_order``, ordered by ``upstreams.ordering``'s
        total order (sort value, then source key, then local id). Filters and sort fields
        the upstream cannot apply natively are applied here with ``upstreams.ordering``."""
        ...

    async def get_many(self, local_ids: Sequence[str]) -> dict[str, Token]:
        """The tokens among ``local_ids`` that exist; missing ids are simply absent.
        One upstream call where the upstream can fetch many, else concurrent gets."""
        ...

    def owner_in_id(self, local_id: str) -> str | None:
        """The user ``local_id`` itself names, where the source's ids carry their owner
        (the OAuth-style server's do), else None. Pure: lets the gateway refuse a lookup
        before anything is asked upstream."""
        ...

    async def create(self, spec: CreateSpec) -> Created: ...

    async def update(self, local_id: str, spec: UpdateSpec) -> Token: ...

    async def revoke(self, local_id: str) -> None: ...

    async def aclose(self) -> None: ...
