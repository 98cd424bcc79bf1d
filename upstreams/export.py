"""The inventory export's walk: every token a caller may read, source after source, a page
at a time, through the service (so every authorization rule of ``tokens`` holds).

Each source is walked on its own (``filter.sources`` = that source), in one order per
export, page after page of ``PAGE_SIZE`` with the service's own cursors: memory holds one
page whatever the inventory's size, and a source is read once (a merged walk would ask
every source for a page per page it serves). A source that fails is reported with what
was exported of it and left there, the others go on: a later page of a source that failed
once could resume past tokens never read, so it is not asked again. A source the filter
cannot be asked of (``NEEDS_FILTER``, ``FILTER_UNSUPPORTED``) is reported as skipped.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from tokengate.upstreams import errors
from tokengate.upstreams.model import (
    Direction,
    OrderField,
    Provider,
    Token,
    TokenFilter,
    TokenOrder,
)
from tokengate.upstreams.principal import ADMIN, Principal
from tokengate.upstreams.service import (
    MAX_PAGE_SIZE,
    SKIPPED_REASONS,
    PageArgs,
    TokenService,
    require,
)

PAGE_SIZE = MAX_PAGE_SIZE


@dataclass(frozen=True, slots=True)
class ExportFailure:
    """A source left out of the export (``skipped``) or cut short by a failure, after
    ``exported`` of its tokens."""

    source: str
    reason: str
    message: str
    exported: int
    skipped: bool


@dataclass(slots=True)
class ExportSummary:
    """What the export's trailer says: how many tokens, and which sources are missing."""

    count: int = 0
    failures: list[ExportFailure] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.failures

    @property
    def failed(self) -> bool:
        """Whether a source failed (rather than being skipped by the filter)."""
        return any(not f.skipped for f in self.failures)


def export_order(flt: TokenFilter, provider: Provider) -> TokenOrder:
    """A source's walk order: creation (stable while tokens are added, and the store's
    index order, its filters being SQL anyway); for an upstream, the date the filter
    bounds, where a walk over the upstream's own sort stops at the bound."""
    if provider is Provider.INTERNAL:
        return TokenOrder(OrderField.CREATED_AT, Direction.ASC)
    if flt.last_used_before is not None or flt.never_used is not None:
        return TokenOrder(OrderField.LAST_USED_AT, Direction.ASC)
    if flt.expires_before is not None or flt.expires_after is not None:
        return TokenOrder(OrderField.EXPIRES_AT, Direction.ASC)
    return TokenOrder(OrderField.CREATED_AT, Direction.ASC)


def export_sources(service: TokenService, principal: Principal, flt: TokenFilter) -> list[str]:
    """The keys of the sources to walk, in configuration order; ``FORBIDDEN`` for a caller
    without ``tokens:admin``, ``BAD_USER_INPUT`` for a source it may not read (as unknown
    to it as one that is not there), all before anything is read."""
    require(principal, ADMIN)
    visible = service.visible_sources(principal)
    keys = {s.key for s in visible}
    if flt.sources is not None:
        unknown = sorted(k for k in flt.sources if k not in keys)
        if unknown:
            raise errors.InvalidInput(f"unknown source {unknown[0]!r}", argument="filter.sources")
    return [
        s.key
        for s in visible
        if (flt.sources is None or s.key in flt.sources)
        and (flt.providers is None or s.provider in flt.providers)
    ]


async def export_pages(
    service: TokenService,
    principal: Principal,
    flt: TokenFilter,
    summary: ExportSummary,
    *,
    deadline_s: float,
    page_size: int = PAGE_SIZE,
) -> AsyncIterator[list[Token]]:
    """The tokens to export, a page at a time; ``summary`` is complete once the iterator
    is exhausted. Past ``deadline_s`` (monotonic seconds from the first call) the source
    being read and those not yet read are reported as ``TIMEOUT``."""
    keys = export_sources(service, principal, flt)
    ends_at = time.monotonic() + deadline_s
    for index, key in enumerate(keys):
        exported = 0
        after: str | None = None
        scoped = replace(flt, sources=frozenset({key}), providers=None)
        order = export_order(flt, service.sources[key].provider)
        while True:
            if time.monotonic() >= ends_at:
                summary.failures.extend(_out_of_time(keys[index:], first_exported=exported))
                return
            result = await service.list_tokens(
                principal, scoped, order, PageArgs(first=page_size, after=after), count=False
            )
            mine = [f for f in result.failures if f.source == key]
            if mine:
                failure = mine[0]
                summary.failures.append(
                    ExportFailure(
                        key,
                        failure.reason,
                        failure.message,
                        exported,
                        skipped=failure.reason in SKIPPED_REASONS,
                    )
                )
                break
            page = [edge.token for edge in result.page.edges]
            if page:
                exported += len(page)
                summary.count += len(page)
                yield page
            if not result.page.has_next_page:
                break
            if not page:  # "more" but nothing to resume from: never loop, never drop silently
                summary.failures.append(
                    ExportFailure(
                        key,
                        "BAD_RESPONSE",
                        "the source said it had more tokens but listed none",
                        exported,
                        skipped=False,
                    )
                )
                break
            after = result.page.edges[-1].cursor


def _out_of_time(keys: list[str], *, first_exported: int) -> list[ExportFailure]:
    message = "the export ran out of time before this source was read whole"
    return [
        ExportFailure(key, "TIMEOUT", message, first_exported if i == 0 else 0, skipped=False)
        for i, key in enumerate(keys)
    ]


__all__ = [
    "PAGE_SIZE",
    "ExportFailure",
    "ExportSummary",
    "export_order",
    "export_pages",
    "export_sources",
]
