"""Losant application API tokens (``/applications/{id}/tokens``) as a ``TokenSource``.

How a list page is made, per order (``walk`` = the requested order, flipped for last/before):

- CREATED_AT, EXPIRES_AT: pushed down (``sortField=creationDate|expirationDate``) and read
  page by page from the position hint by ``upstreams.paged_walk`` (``walk.py``): dates
  compare the same everywhere, so the upstream's order is trusted for the VALUES only; each
  tie group is read whole and ordered by local id, and items up to ``after`` are dropped.
  Where Losant puts tokens without the field is undocumented, so they are found as one
  block at either end (the far end located by ``totalCount``, or else as the start of the
  list sorted the other way) and placed where the gateway wants them (last ascending, first
  descending).
- LAST_USED_AT: Losant records no last use, every value is null and the gateway orders by
  local id alone: pushed down as ``sortField=id`` (unique, so no ties).
- NAME: Losant's name collation (case, accents, punctuation) is undocumented, and a name
  order that differs anywhere cannot be repaired from a prefix. Every page therefore reads
  each application whole (``sortField=id``, stable while tokens are added) and pages it with
  ``ordering.local_page``: at most ``MAX_TOKENS_READ`` tokens per application.
- Any read that breaks those assumptions (values out of order, nulls at both ends, a
  ``totalCount`` that does not match the pages) switches the call to that same whole read.

The position hint is ``"<app index>:<offset>,..."``: per application, an upstream offset such
that every valued token before it sorts strictly before the item it was made for (where the
item's tie group starts); it is checked (the token there must not sort after ``after``) and
ignored when wrong, so a deep page costs what page one costs and a stale hint costs a
re-read. A hint this adapter cannot have made (malformed, an unknown application index, an
offset of 0 or beyond ``MAX_HINT_OFFSET``) is the caller's bad cursor: ``InvalidCursor``
before any request, never a page number sent upstream.

Filters pushed down (always re-checked with ``ordering.matches``): ``filterField=status``
when exactly one of ACTIVE / INACTIVE is asked (expiry is not Losant's status, so ACTIVE
re-checks); ``filterField=name`` only for globs whose literals are ASCII digits, space,
``-``, ``_`` or ``.`` and whose only wildcard is ``*``: no character folds to or from those,
so a case-sensitive upstream glob matches exactly what the gateway's case-insensitive one
does (``?`` is kept local: a JavaScript glob may count UTF-16 units, not characters).
Every other filter is local. ``total_count`` is the sum of the applications' ``totalCount``
when nothing is filtered, exact from the whole read for NAME, else None.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Unpack

from tokengate.upstreams import errors, ordering
from tokengate.upstreams.http_edge import Answer
from tokengate.upstreams.http_edge import base_url as checked_base_url
from tokengate.upstreams.http_edge import retry_after_seconds as retry_after_seconds  # re-exported
from tokengate.upstreams.http_source import HttpSource, Upstream
from tokengate.upstreams.losant.normalise import (
    SchemaViolation,
    is_object_id,
    is_success,
    normalise_token,
    parse_created,
    parse_local_id,
    patch_body,
    post_body,
)
from tokengate.upstreams.losant.pages import ListCall, LosantApi
from tokengate.upstreams.losant.walk import check_after, gather, parse_position, walk_page
from tokengate.upstreams.model import (
    Capabilities,
    Created,
    CreateSpec,
    Direction,
    FilterField,
    OrderField,
    PageRequest,
    Provider,
    SortKey,
    SourceItem,
    SourcePage,
    Status,
    Token,
    TokenFilter,
    TokenOrder,
    UpdateSpec,
)
from tokengate.upstreams.paged_walk import OrderBroken
from tokengate.upstreams.secret_lookup import (
    SecretFound,
    SecretLookup,
    SecretMatchKind,
    SecretSearch,
    same_secret,
)

MAX_PER_PAGE = 1000
# Tokens one application may be read for in one list_page call (the whole read for NAME,
# or a walk behind a selective local filter); beyond it the source fails, never guesses.
MAX_TOKENS_READ = 20_000
MAX_CONCURRENT_GETS = 16
# List pages per application read to find the gateway's own API token among listed ones.
OWN_CREDENTIAL_PAGES = MAX_TOKENS_READ // 100
_PUSHABLE_GLOB = re.compile(r"[0-9 ._*-]*[0-9 ._-][0-9 ._*-]*")
_CAPABILITIES = Capabilities(
    can_create=True,
    can_update=True,
    can_revoke=True,
    # NAME is served by a full read: the upstream collation is undocumented.
    native_sort_fields=frozenset({OrderField.CREATED_AT, OrderField.EXPIRES_AT}),
    can_count=True,
    # Losant records no last use (``lastUpdated`` is an edit time).
    reports_last_used=False,
    # expirationDate bounds an EXPIRES_AT walk.
    native_filters=frozenset({FilterField.EXPIRES_BEFORE, FilterField.EXPIRES_AFTER}),
)


class LosantSource(HttpSource):
    """The API tokens of one or more Losant applications, behind one source key."""

    provider = Provider.LOSANT
    capabilities = _CAPABILITIES
    secret_lookup = SecretLookup.EXACT

    def __init__(
        self,
        *,
        api_token: str,
        application_ids: Sequence[str],
        per_page: int = 100,
        **upstream: Unpack[Upstream],
    ) -> None:
        checked_base_url(upstream["base_url"])  # the first thing wrong is said first
        if not api_token or any(c in api_token for c in "\r\n\0"):
            raise ValueError("api_token must be a non-empty single-line string")
        if isinstance(application_ids, str) or not application_ids:
            raise ValueError("application_ids must be a non-empty list of application ids")
        apps = tuple(a.lower() if isinstance(a, str) else a for a in application_ids)
        bad = [a for a in apps if not isinstance(a, str) or not is_object_id(a)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a 24-hex Losant application id")
        if len(set(apps)) != len(apps):
            raise ValueError("application_ids holds the same application twice")
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"per_page must be between 1 and {MAX_PER_PAGE}")
        if upstream.get("timeout_s", 10.0) <= 0:
            raise ValueError("timeout_s must be positive")
        super().__init__(
            headers={"Authorization": f"Bearer {api_token}", "Accept": "application/json"},
            credential="API token",
            **upstream,
        )
        self._apps = apps
        self._api_token = api_token
        self._api = LosantApi(
            key=self._key, name=self._name, base=self._base, http=self._http, per_page=per_page
        )

    def __repr__(self) -> str:
        return (
            f"LosantSource(key={self._key!r}, base_url={self._base!r}, "
            f"application_ids={list(self._apps)!r})"
        )

    @property
    def application_ids(self) -> tuple[str, ...]:
        return self._apps

    # -- listing ---------------------------------------------------------------------------

    async def list_page(self, request: PageRequest) -> SourcePage:
        if request.limit < 0:
            raise errors.InvalidInput("limit cannot be negative")
        hints = parse_position(request.position, len(self._apps))
        order = request.walk_order
        check_after(request.after, order.field)
        flt = request.filter
        apps = self._apps
        if flt.application_id is not None:
            wanted = flt.application_id.lower()
            if wanted not in apps:
                return SourcePage(items=[], has_more=False, total_count=0)
            # Choosing the application is the filter: every token listed there is its own.
            apps = (wanted,)
            flt = replace(flt, application_id=None)
        if flt.statuses is not None and not flt.statuses & ordering.DEFAULT_STATUSES:
            return SourcePage(items=[], has_more=False, total_count=0)
        call = ListCall(
            now=datetime.now(UTC),
            upstream_filter=_pushed_filter(flt),
            max_tokens=MAX_TOKENS_READ,
        )
        exact_count = call.upstream_filter is None and not _has_local_filter(flt)
        try:
            if order.field is not OrderField.NAME:
                indexed = [(self._apps.index(app), app) for app in apps]
                try:
                    return await walk_page(
                        self._api, call, indexed, flt, request, hints, exact_count
                    )
                except OrderBroken:
                    pass
            return await self._whole_page(call, apps, flt, order, request.after, request.limit)
        except SchemaViolation as exc:  # an item read from a page (pages parse lazily)
            raise self._api.malformed(exc) from None

    async def _whole_page(
        self,
        call: ListCall,
        apps: Sequence[str],
        flt: TokenFilter,
        order: TokenOrder,
        after: SortKey | None,
        limit: int,
    ) -> SourcePage:
        lists = await gather([self._read_whole(call, app) for app in apps])
        tokens = [t for app_tokens in lists for t in app_tokens]
        page, has_more, total = ordering.local_page(tokens, flt, order, after, limit)
        # No position hint: every page reads the applications whole anyway.
        return SourcePage(items=[SourceItem(t) for t in page], has_more=has_more, total_count=total)

    async def _read_whole(self, call: ListCall, app: str) -> list[Token]:
        tokens: list[Token] = []
        seen: set[str] = set()
        page_index = 0
        while True:
            page = await self._api.page(call, app, "id", Direction.ASC, page_index)
            # A token added between two reads shifts nothing: new ids sort last.
            for token in page.tokens:
                if token.local_id not in seen:
                    seen.add(token.local_id)
                    tokens.append(token)
            if self._api.is_last(page, page_index):
                return tokens
            page_index += 1
            self._api.check_budget(app, page_index, call.max_tokens)

    # -- single tokens ---------------------------------------------------------------------

    def owner_in_id(self, local_id: str) -> str | None:
        return None  # tokens of an account/application, never of a user

    async def get_many(self, local_ids: Sequence[str]) -> dict[str, Token]:
        wanted: dict[tuple[str, str], list[str]] = {}
        for local_id in local_ids:
            parsed = parse_local_id(local_id)
            if parsed is not None and parsed[0] in self._apps:
                wanted.setdefault(parsed, []).append(local_id)
        if not wanted:
            return {}
        gate = asyncio.Semaphore(MAX_CONCURRENT_GETS)

        async def one(app: str, token_id: str) -> Token | None:
            async with gate:
                return await self._get(app, token_id)

        keys = list(wanted)
        found = await gather([one(app, token_id) for app, token_id in keys])
        result: dict[str, Token] = {}
        for key, token in zip(keys, found, strict=True):
            if token is not None:
                result.update((local_id, token) for local_id in wanted[key])
        return result

    async def _get(self, app: str, token_id: str) -> Token | None:
        response = await self._http.send("GET", self._api.token_url(app, token_id))
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._http.unexpected(response)
        token = self._token_from(response, app)
        if token.external_id != token_id:
            raise errors.BadUpstreamResponse(
                self._key, f"{self._name} answered with another token than the one asked for"
            )
        return token

    async def create(self, spec: CreateSpec) -> Created:
        app = self._app_for_create(spec.application_id)
        body = post_body(spec)
        response = await self._http.send("POST", self._api.collection_url(app), json=body)
        if response.status_code == 400:
            raise self._rejected(response, "the new token")
        if response.status_code == 404:
            raise self._api.missing_application(app)
        if response.status_code not in {200, 201}:
            raise self._http.unexpected(response)
        payload = self._http.json(response)
        try:
            token, secret = parse_created(
                payload, source=self._key, application_id=app, now=datetime.now(UTC)
            )
        except SchemaViolation as exc:
            raise self._api.malformed(exc) from None
        return Created(token=token, secret=secret)

    async def update(self, local_id: str, spec: UpdateSpec) -> Token:
        app, token_id = self._parse_for_change(local_id)
        body = patch_body(spec)
        response = await self._http.send("PATCH", self._api.token_url(app, token_id), json=body)
        if response.status_code == 404:
            raise errors.NotFound(f"no token {local_id!r} in {self._name}")
        if response.status_code == 400:
            raise self._rejected(response, "the change")
        if response.status_code != 200:
            raise self._http.unexpected(response)
        return self._token_from(response, app)

    async def revoke(self, local_id: str) -> None:
        app, token_id = self._parse_for_change(local_id)
        response = await self._http.send("DELETE", self._api.token_url(app, token_id))
        if response.status_code == 404:
            raise errors.NotFound(f"no token {local_id!r} in {self._name}")
        if response.status_code not in {200, 204}:
            raise self._http.unexpected(response)
        if response.status_code == 200 and not is_success(self._http.json(response)):
            raise errors.BadUpstreamResponse(
                self._key, f"{self._name} did not confirm the deletion"
            )

    async def aclose(self) -> None:
        return None

    # -- secrets ---------------------------------------------------------------------------

    async def find_secret(self, secret: str, *, max_pages: int) -> SecretSearch:
        """The tokens whose ``token`` field is ``secret``: every application's list read by
        id, at most ``max_pages`` pages each, each item's secret compared in constant time
        and dropped with its page."""
        results = await gather([self._find_in_app(app, secret, max_pages) for app in self._apps])
        found = [f for app_found, _ in results for f in app_found]
        return SecretSearch(found, complete=all(complete for _, complete in results))

    async def _find_in_app(
        self, app: str, secret: str, max_pages: int
    ) -> tuple[list[SecretFound], bool]:
        found: list[SecretFound] = []
        now = datetime.now(UTC)
        for index in range(max_pages):
            items, last = await self._api.raw_items(app, index)
            for position, item in enumerate(items):
                if isinstance(item, dict) and same_secret(secret, item.get("token")):
                    try:
                        token = normalise_token(
                            item,
                            source=self._key,
                            application_id=app,
                            now=now,
                            where=f"item {position}",
                        )
                    except SchemaViolation as exc:
                        raise self._api.malformed(exc) from None
                    found.append(SecretFound(token, SecretMatchKind.EXACT))
            if last:
                return found, True
        return found, False

    async def own_credentials(self, tokens: Sequence[Token]) -> set[str]:
        """The listed tokens that are the API token this source uses (found by its secret)."""
        if not tokens:
            return set()
        search = await self.find_secret(self._api_token, max_pages=OWN_CREDENTIAL_PAGES)
        if not search.complete:
            raise errors.UpstreamUnavailable(
                self._key,
                f"{self._name} holds too many tokens to tell the gateway's own API token "
                "apart: revoke these tokens one by one",
            )
        return {f.token.local_id for f in search.found}

    def _app_for_create(self, application_id: str | None) -> str:
        if application_id is None:
            if len(self._apps) == 1:
                return self._apps[0]
            raise errors.InvalidInput(
                f"{self._name} holds several applications: give applicationId",
                argument="applicationId",
            )
        app = application_id.lower()
        if app not in self._apps:
            raise errors.InvalidInput(
                f"{application_id!r} is not one of {self._name}'s applications",
                argument="applicationId",
            )
        return app

    def _parse_for_change(self, local_id: str) -> tuple[str, str]:
        parsed = parse_local_id(local_id)
        if parsed is None:
            raise errors.InvalidInput("not a token id of this source", argument="id")
        if parsed[0] not in self._apps:
            raise errors.NotFound(f"no token {local_id!r} in {self._name}")
        return parsed

    # -- HTTP ------------------------------------------------------------------------------

    def _token_from(self, response: Answer, app: str) -> Token:
        payload = self._http.json(response)
        try:
            return normalise_token(
                payload, source=self._key, application_id=app, now=datetime.now(UTC)
            )
        except SchemaViolation as exc:
            raise self._api.malformed(exc) from None

    def _rejected(self, response: Answer, what: str) -> errors.InvalidInput:
        # Only Losant's error type is passed on: its message is free text.
        return errors.InvalidInput(f"{self._name} rejected {what} ({self._api.type_of(response)})")


def _pushed_filter(flt: TokenFilter) -> tuple[str, str] | None:
    """The one ``filterField``/``filter`` pair that can go upstream, if any (see module)."""
    glob = flt.name_glob
    if glob is not None and _PUSHABLE_GLOB.fullmatch(glob):
        return ("name", glob)
    if flt.statuses is not None:
        asked = flt.statuses & ordering.DEFAULT_STATUSES
        if asked == {Status.ACTIVE}:
            return ("status", "active")
        if asked == {Status.INACTIVE}:
            return ("status", "inactive")
    return None


def _has_local_filter(flt: TokenFilter) -> bool:
    return (
        (flt.statuses is not None and not flt.statuses >= ordering.DEFAULT_STATUSES)
        or flt.name_glob is not None
        or flt.scope is not None
        or flt.created_after is not None
        or flt.created_before is not None
        or flt.owner_user is not None
        or flt.application_id is not None
    )
