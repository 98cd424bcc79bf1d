"""Losant application API tokens (``/applications/{id}/tokens``) as a ``TokenSource``.

How a list page is made, per order (``walk`` = the requested order, flipped for last/before):

- CREATED_AT, EXPIRES_AT: pushed down (``sortField=creationDate|expirationDate``) and read
  page by page from the position hint. Dates compare the same everywhere, so the upstream's
  order is trusted for the VALUES only: each tie group is read whole and ordered by local
  id here, and items up to ``after`` are dropped. Where Losant puts tokens without the field
  is undocumented, so they are fetched as their own group from whichever end holds them and
  placed where the gateway wants them (last ascending, first descending).
- LAST_USED_AT: Losant records no last use, every value is null and the gateway orders by
  local id alone: pushed down as ``sortField=id`` (unique, so no ties).
- NAME: Losant's name collation (case, accents, punctuation) is undocumented, and a name
  order that differs anywhere cannot be repaired from a prefix. Every page therefore reads
  each application whole (``sortField=id``, stable while tokens are added) and pages it with
  ``ordering.local_page``: at most ``MAX_TOKENS_READ`` tokens per application.
- Any read that breaks those assumptions (values out of order, nulls at both ends, a
  ``totalCount`` that does not match the pages) switches the call to that same whole read.

The position hint is ``"<app index>:<offset>,..."``: per application, an upstream offset such
that every valued token before it sorts strictly before the item it was made for; it is
checked (the token at the start of the page it points into must sort before ``after``) and
ignored when wrong, so a deep page costs what page one costs and a stale hint costs a re-read.
A hint this adapter cannot have made (malformed, an unknown application index, an offset
of 0 or beyond ``MAX_HINT_OFFSET``) is the caller's bad cursor: ``InvalidCursor`` before any
request, never a page number sent upstream.

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
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TypeVar

import httpx

from tokengate.upstreams import errors, ordering
from tokengate.upstreams.answer_memo import AnswerMemo
from tokengate.upstreams.http_edge import UpstreamHttp, path_segment
from tokengate.upstreams.http_edge import base_url as checked_base_url
from tokengate.upstreams.http_edge import retry_after_seconds as retry_after_seconds  # re-exported
from tokengate.upstreams.losant.normalise import (
    SchemaViolation,
    TokenPage,
    drop_listed_secrets,
    error_type,
    expiry_horizon,
    is_object_id,
    is_success,
    normalise_token,
    parse_created,
    parse_local_id,
    parse_token_page,
    patch_body,
    post_body,
)
from tokengate.upstreams.model import (
    Capabilities,
    Created,
    CreateSpec,
    Direction,
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

MAX_PER_PAGE = 1000
# Tokens one application may be read for in one list_page call (the whole read for NAME,
# or a walk behind a selective local filter); beyond it the source fails, never guesses.
MAX_TOKENS_READ = 20_000
MAX_CONCURRENT_GETS = 16
# The deepest resume offset accepted: a million tokens in one application, far past any
# application a walk pages through (each call reads at most MAX_TOKENS_READ past its hint),
# so that no hint asks Losant for a page that cannot exist.
MAX_HINT_OFFSET = 1_000_000
_SORT_FIELDS = {
    OrderField.CREATED_AT: "creationDate",
    OrderField.EXPIRES_AT: "expirationDate",
    OrderField.LAST_USED_AT: "id",
}
_PUSHABLE_GLOB = re.compile(r"[0-9 ._*-]*[0-9 ._-][0-9 ._*-]*")
_CAPABILITIES = Capabilities(
    can_create=True,
    can_update=True,
    can_revoke=True,
    # NAME is served by a full read: the upstream collation is undocumented.
    native_sort_fields=frozenset({OrderField.CREATED_AT, OrderField.EXPIRES_AT}),
    can_count=True,
)
T = TypeVar("T")
GroupValue = datetime | str


class _Disorder(Exception):
    """The upstream's order broke an assumption: answer this call from a whole read."""


@dataclass
class _Call:
    """One list_page call: its clock, pushed-down filter and page cache."""

    now: datetime
    upstream_filter: tuple[str, str] | None
    pages: dict[tuple[str, str, str, int], TokenPage] = field(default_factory=dict)


@dataclass
class _AppResult:
    items: list[Token]
    total: int | None
    offset_for: Callable[[Token], int | None] = lambda _token: None


class LosantSource:
    """The API tokens of one or more Losant applications, behind one source key."""

    def __init__(
        self,
        *,
        key: str,
        name: str,
        base_url: str,
        client: httpx.AsyncClient,
        api_token: str,
        application_ids: Sequence[str],
        timeout_s: float = 10.0,
        connect_timeout_s: float | None = None,
        per_page: int = 100,
    ) -> None:
        base = checked_base_url(base_url)
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
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self._key = key
        self._name = name
        self._base = base
        self._apps = apps
        self._per_page = per_page
        self._http = UpstreamHttp(
            key=key,
            name=name,
            client=client,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            headers={"Authorization": f"Bearer {api_token}", "Accept": "application/json"},
            credential="API token",
        )
        # List pages decoded before, per application (upstreams/answer_memo.py); an entry
        # lasts until the next expiry among its tokens.
        self._pages: AnswerMemo[TokenPage] = AnswerMemo()

    def __repr__(self) -> str:
        return (
            f"LosantSource(key={self._key!r}, base_url={self._base!r}, "
            f"application_ids={list(self._apps)!r})"
        )

    @property
    def key(self) -> str:
        return self._key

    @property
    def name(self) -> str:
        return self._name

    @property
    def provider(self) -> Provider:
        return Provider.LOSANT

    @property
    def capabilities(self) -> Capabilities:
        return _CAPABILITIES

    @property
    def application_ids(self) -> tuple[str, ...]:
        return self._apps

    # -- listing ---------------------------------------------------------------------------

    async def list_page(self, request: PageRequest) -> SourcePage:
        if request.limit < 0:
            raise errors.InvalidInput("limit cannot be negative")
        hints = _parse_position(request.position, len(self._apps))
        order = request.walk_order
        after = request.after
        _check_after(after, order.field)
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
        call = _Call(now=datetime.now(UTC), upstream_filter=_pushed_filter(flt))
        exact_count = call.upstream_filter is None and not _has_local_filter(flt)
        try:
            if order.field is not OrderField.NAME:
                try:
                    return await self._walk_page(
                        call, apps, flt, order, request, hints, exact_count
                    )
                except _Disorder:
                    pass
            return await self._whole_page(call, apps, flt, order, after, request.limit)
        except SchemaViolation as exc:  # an item read from a page (pages parse lazily)
            raise self._malformed(exc) from None

    async def _whole_page(
        self,
        call: _Call,
        apps: Sequence[str],
        flt: TokenFilter,
        order: TokenOrder,
        after: SortKey | None,
        limit: int,
    ) -> SourcePage:
        lists = await _gather([self._read_whole(call, app) for app in apps])
        tokens = [t for app_tokens in lists for t in app_tokens]
        page, has_more, total = ordering.local_page(tokens, flt, order, after, limit)
        # No position hint: every page reads the applications whole anyway.
        return SourcePage(items=[SourceItem(t) for t in page], has_more=has_more, total_count=total)

    async def _read_whole(self, call: _Call, app: str) -> list[Token]:
        tokens: list[Token] = []
        seen: set[str] = set()
        page_index = 0
        while True:
            page = await self._fetch(call, app, "id", Direction.ASC, page_index)
            # A token added between two reads shifts nothing: new ids sort last.
            for token in page.tokens:
                if token.local_id not in seen:
                    seen.add(token.local_id)
                    tokens.append(token)
            if self._is_last(page, page_index):
                return tokens
            page_index += 1
            self._check_budget(app, page_index)

    async def _walk_page(
        self,
        call: _Call,
        apps: Sequence[str],
        flt: TokenFilter,
        order: TokenOrder,
        request: PageRequest,
        hints: dict[int, int],
        exact_count: bool,
    ) -> SourcePage:
        need = request.limit + 1
        indices = [self._apps.index(app) for app in apps]
        results = await _gather(
            [
                self._walk_app(call, app, flt, order, request.after, hints.get(index), need)
                for index, app in zip(indices, apps, strict=True)
            ]
        )
        merged = ordering.order_tokens([t for r in results for t in r.items], order)
        page = merged[: request.limit]
        items = []
        for token in page:
            parts = []
            for index, result in zip(indices, results, strict=True):
                offset = result.offset_for(token)
                if offset:
                    parts.append(f"{index}:{offset}")
            items.append(SourceItem(token, ",".join(parts) or None))
        total: int | None = None
        if exact_count and all(r.total is not None for r in results):
            total = sum(r.total or 0 for r in results)
        return SourcePage(items=items, has_more=len(merged) > request.limit, total_count=total)

    async def _walk_app(
        self,
        call: _Call,
        app: str,
        flt: TokenFilter,
        order: TokenOrder,
        after: SortKey | None,
        hint: int | None,
        need: int,
    ) -> _AppResult:
        """This application's first ``need`` matching tokens after ``after`` (or all that
        are left), in ``order``, and how to make its position hint for any page item."""
        sort_field = _SORT_FIELDS[order.field]
        if order.field is OrderField.LAST_USED_AT:
            if after is not None and (after.source != self._key or after.value is not None):
                # Ours are all null: another source's key (or a last use) comes before or
                # after every one of them.
                mine = SortKey(None, self._key, "")
                if not ordering.comes_before(after, mine, order.direction):
                    first = await self._fetch(call, app, sort_field, order.direction, 0)
                    return _AppResult([], first.total_count)
                after = None
            walk = _Walk(self, call, app, flt, order, after, _local_id_value)
            after_id = after.local_id if after is not None else None
            values = await walk.values(after_id, hint, need)
            return _AppResult(values.items, walk.total, values.offset_for)

        walk = _Walk(self, call, app, flt, order, after, _date_value(order.field))
        in_nulls = after is not None and after.value is None
        if order.direction is Direction.ASC:
            # The gateway's ascending order: valued tokens, then the null group.
            if in_nulls:
                return _AppResult(await walk.nulls(), walk.total)
            seek = after.value if after is not None else None
            values = await walk.values(seek, hint, need)
            items = values.items
            if values.complete and len(items) < need:
                items = items + await walk.nulls()
            return _AppResult(items, walk.total, values.offset_for)
        # Descending: the null group first, then valued tokens from the top.
        if after is None or in_nulls:
            items = await walk.nulls()
            if len(items) >= need:
                return _AppResult(items, walk.total)
            values = await walk.values(None, None, need - len(items))
            return _AppResult(items + values.items, walk.total, values.offset_for)
        values = await walk.values(after.value, hint, need)
        return _AppResult(values.items, walk.total, values.offset_for)

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
        found = await _gather([one(app, token_id) for app, token_id in keys])
        result: dict[str, Token] = {}
        for key, token in zip(keys, found, strict=True):
            if token is not None:
                result.update((local_id, token) for local_id in wanted[key])
        return result

    async def _get(self, app: str, token_id: str) -> Token | None:
        response = await self._http.send("GET", self._token_url(app, token_id))
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
        response = await self._http.send("POST", self._collection_url(app), json=body)
        if response.status_code == 400:
            raise self._rejected(response, "the new token")
        if response.status_code == 404:
            raise self._missing_application(app)
        if response.status_code not in {200, 201}:
            raise self._http.unexpected(response)
        payload = self._http.json(response)
        try:
            token, secret = parse_created(
                payload, source=self._key, application_id=app, now=datetime.now(UTC)
            )
        except SchemaViolation as exc:
            raise self._malformed(exc) from None
        return Created(token=token, secret=secret)

    async def update(self, local_id: str, spec: UpdateSpec) -> Token:
        app, token_id = self._parse_for_change(local_id)
        body = patch_body(spec)
        response = await self._http.send("PATCH", self._token_url(app, token_id), json=body)
        if response.status_code == 404:
            raise errors.NotFound(f"no token {local_id!r} in {self._name}")
        if response.status_code == 400:
            raise self._rejected(response, "the change")
        if response.status_code != 200:
            raise self._http.unexpected(response)
        return self._token_from(response, app)

    async def revoke(self, local_id: str) -> None:
        app, token_id = self._parse_for_change(local_id)
        response = await self._http.send("DELETE", self._token_url(app, token_id))
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

    def _collection_url(self, app: str) -> str:
        return f"{self._base}/applications/{path_segment(app)}/tokens"

    def _token_url(self, app: str, token_id: str) -> str:
        # Both are checked 24-hex ids (parse_local_id), encoded all the same.
        return f"{self._collection_url(app)}/{path_segment(token_id)}"

    async def _fetch(
        self, call: _Call, app: str, sort_field: str, direction: Direction, page_index: int
    ) -> TokenPage:
        cache_key = (app, sort_field, direction.value, page_index)
        cached = call.pages.get(cache_key)
        if cached is not None:
            return cached
        params = {
            "page": str(page_index),
            "perPage": str(self._per_page),
            "sortField": sort_field,
            "sortDirection": direction.value.lower(),
        }
        if call.upstream_filter is not None:
            params["filterField"], params["filter"] = call.upstream_filter
        response = await self._http.send("GET", self._collection_url(app), params=params)
        if response.status_code == 404:
            raise self._missing_application(app)
        if response.status_code == 400:
            if call.upstream_filter is not None and call.upstream_filter[0] == "name":
                # The only caller-chosen text in a list request: the caller's glob.
                raise errors.InvalidInput(
                    f"{self._name} refused the name filter ({self._type_of(response)})",
                    argument="filter.name",
                )
            raise errors.BadUpstreamResponse(
                self._key,
                f"{self._name} refused the list request (400 {self._type_of(response)})",
                status=400,
            )
        if response.status_code != 200:
            raise self._http.unexpected(response)

        def decode() -> tuple[TokenPage, datetime | None]:
            payload = self._http.json(response)
            drop_listed_secrets(payload)
            page = parse_token_page(
                payload, source=self._key, application_id=app, now=call.now, lazy=True
            )
            return page, expiry_horizon(payload, call.now)

        try:
            page = self._pages.decoded(app, response.content, call.now, decode)
        except SchemaViolation as exc:
            raise self._malformed(exc) from None
        if (
            (page.page is not None and page.page != page_index)
            or (page.per_page is not None and page.per_page != self._per_page)
            or len(page.tokens) > self._per_page
        ):
            # Offsets would be wrong: the upstream is not paging the way it was asked to.
            raise errors.BadUpstreamResponse(
                self._key, f"{self._name} answered with another page than the one asked for"
            )
        call.pages[cache_key] = page
        return page

    def _is_last(self, page: TokenPage, page_index: int) -> bool:
        if len(page.tokens) < self._per_page:
            return True
        total = page.total_count
        return total is not None and page_index * self._per_page + len(page.tokens) >= total

    def _check_budget(self, app: str, page_index: int) -> None:
        if page_index * self._per_page >= MAX_TOKENS_READ:
            raise errors.UpstreamUnavailable(
                self._key,
                f"application {app} of {self._name} holds more than {MAX_TOKENS_READ} tokens "
                "to read for this page: narrow the filter or order by creation date",
            )

    def _token_from(self, response: httpx.Response, app: str) -> Token:
        payload = self._http.json(response)
        try:
            return normalise_token(
                payload, source=self._key, application_id=app, now=datetime.now(UTC)
            )
        except SchemaViolation as exc:
            raise self._malformed(exc) from None

    def _type_of(self, response: httpx.Response) -> str:
        try:
            payload: object = json.loads(response.content)
        except ValueError:
            payload = None
        return error_type(payload) or "no error type"

    def _rejected(self, response: httpx.Response, what: str) -> errors.InvalidInput:
        # Only Losant's error type is passed on: its message is free text.
        return errors.InvalidInput(f"{self._name} rejected {what} ({self._type_of(response)})")

    def _malformed(self, exc: SchemaViolation) -> errors.BadUpstreamResponse:
        return errors.BadUpstreamResponse(self._key, f"{self._name} sent a malformed body: {exc}")

    def _missing_application(self, app: str) -> errors.UpstreamUnavailable:
        return errors.UpstreamUnavailable(
            self._key, f"{self._name} does not know application {app}: check application_ids"
        )


@dataclass
class _Values:
    """A walk through an application's valued tokens: the ones found, and whether they are
    all that is left (``complete``) or the first ones."""

    items: list[Token]
    complete: bool
    offset_for: Callable[[Token], int | None]


class _Walk:
    """One application in one order and call: its valued tokens by upstream offset, and its
    null group. ``value`` is the group value: the date, or the local id for LAST_USED_AT."""

    def __init__(
        self,
        source: LosantSource,
        call: _Call,
        app: str,
        flt: TokenFilter,
        order: TokenOrder,
        after: SortKey | None,
        value: Callable[[Token], GroupValue | None],
    ) -> None:
        self.source = source
        self.call = call
        self.app = app
        self.flt = flt
        self.order = order
        self.after = after
        self.value = value
        self.sort_field = _SORT_FIELDS[order.field]
        self.total: int | None = None
        # Where nulls were seen: both at the top and closing the list breaks the assumption.
        self.nulls_on_top = False
        self.nulls_closing = False

    def _before(self, a: GroupValue, b: GroupValue) -> bool:
        """Whether value ``a`` comes strictly before ``b`` in the walk's direction."""
        if self.order.direction is Direction.ASC:
            return a < b  # type: ignore[operator]
        return a > b  # type: ignore[operator]

    def _wanted(self, token: Token) -> bool:
        if not ordering.matches(token, self.flt):
            return False
        if self.after is None:
            return True
        key = ordering.sort_key(token, self.order.field)
        return ordering.comes_before(self.after, key, self.order.direction)

    async def _page(self, index: int) -> TokenPage:
        page = await self.source._fetch(
            self.call, self.app, self.sort_field, self.order.direction, index
        )
        direction = self.order.direction.value.lower()
        if page.sort_field not in (None, self.sort_field) or page.sort_direction not in (
            None,
            direction,
        ):
            raise _Disorder  # the upstream says it sorted otherwise
        if page.total_count is not None:
            self.total = page.total_count
        return page

    def _opens_before(self, tokens: Sequence[Token], seek: GroupValue) -> bool:
        """Whether every valued token above a page opening with ``tokens`` sorts strictly
        before ``seek``: it opens with such a token, or with nulls that a valued token
        follows (leading nulls, so none is valued above the page)."""
        for position, token in enumerate(tokens):
            value = self.value(token)
            if value is not None:
                return position > 0 or self._before(value, seek)
        return False

    async def values(self, seek: GroupValue | None, hint: int | None, need: int) -> _Values:
        """Valued tokens from the tie group of ``seek`` on (from the top when None), until
        ``need`` of them are certainly the first ones, or the values end."""
        per_page = self.source._per_page
        start = 0
        if seek is not None and hint is not None and hint > 1:
            candidate = (hint - 1) // per_page
            if candidate > 0:
                page = await self._page(candidate)
                if self._opens_before(page.tokens, seek):
                    start = candidate
        seen: list[tuple[int, GroupValue]] = []
        found: list[tuple[GroupValue, Token]] = []
        end: int | None = None
        last: GroupValue | None = None
        stopped = False
        index = start
        while True:
            page = await self._page(index)
            for position, token in enumerate(page.tokens):
                offset = index * per_page + position
                value = self.value(token)
                if value is None:
                    if last is None:
                        self._nulls_at(top=True)
                        continue
                    self._nulls_at(top=False)
                    end = offset  # the null group closes the list
                    break
                if last is not None and self._before(value, last):
                    raise _Disorder
                new_group = last is not None and value != last
                last = value
                seen.append((offset, value))
                if new_group and len(found) >= need:
                    # Everything found so far sorts strictly before this value, so the
                    # first ``need`` are settled: the rest of the page is not needed.
                    stopped = True
                    break
                if self._wanted(token):
                    found.append((value, token))
            if end is not None or stopped:
                break
            if self.source._is_last(page, index):
                end = index * per_page + len(page.tokens)
                break
            if last is not None:
                settled = sum(1 for value, _ in found if self._before(value, last))
                if settled >= need:
                    break
            index += 1
            self.source._check_budget(self.app, index - start)
        if end is None:
            # The last tie group read may continue on the next page: keep only whole groups.
            assert last is not None
            found = [(v, t) for v, t in found if self._before(v, last)]
        items = ordering.order_tokens([t for _, t in found], self.order)
        region_start = start * per_page
        stop = end
        # Each value read, at its first offset: the answer for any value that was read (the
        # values read never go backwards, so every offset before it holds a value before it).
        first_at: dict[GroupValue, int] = {}
        for offset, seen_value in seen:
            first_at.setdefault(seen_value, offset)

        def offset_for(token: Token) -> int | None:
            value = self.value(token)
            if value is None:
                return None
            known = first_at.get(value)
            if known is not None:
                return known
            for offset, seen_value in seen:
                if not self._before(seen_value, value):
                    return offset
            if stop is not None:
                return stop
            # Not reached for a page's items (they sort before the last value read), but
            # the start of what was read is a safe answer for any token.
            return region_start

        return _Values(items, end is not None, offset_for)

    async def nulls(self) -> list[Token]:
        """The tokens without a value, wherever the upstream puts them, in the walk's order."""
        per_page = self.source._per_page
        first = await self._page(0)
        group: list[Token] = []
        if not first.tokens:
            return []
        if self.value(first.tokens[0]) is None:
            self._nulls_at(top=True)
            index, page = 0, first
            while True:
                for position, token in enumerate(page.tokens):
                    if self.value(token) is not None:
                        self._no_nulls_in(page.tokens[position:])
                        return self._ordered(group)
                    group.append(token)
                if self.source._is_last(page, index):
                    return self._ordered(group)
                index += 1
                self.source._check_budget(self.app, index)
                page = await self._page(index)
        # Not at the top: the nulls, if any, close the list.
        if self.source._is_last(first, 0):
            group = _trailing_nulls(first.tokens, self.value)
            if group:
                self._nulls_at(top=False)
            self._no_nulls_in(first.tokens[: len(first.tokens) - len(group)])
            return self._ordered(group)
        total = first.total_count
        if total is None:
            raise _Disorder
        index = (total - 1) // per_page
        page = await self._page(index)
        if len(page.tokens) != total - index * per_page:
            raise _Disorder  # totalCount does not describe these pages
        last_index = index
        while True:
            trailing = _trailing_nulls(page.tokens, self.value)
            if trailing:
                self._nulls_at(top=False)
            group.extend(trailing)
            if len(trailing) < len(page.tokens) or index == 0:
                self._no_nulls_in(page.tokens[: len(page.tokens) - len(trailing)])
                return self._ordered(group)
            index -= 1
            self.source._check_budget(self.app, last_index - index)
            page = await self._page(index)

    def _no_nulls_in(self, tokens: Sequence[Token]) -> None:
        if any(self.value(t) is None for t in tokens):
            raise _Disorder  # the null group is not in one piece

    def _nulls_at(self, *, top: bool) -> None:
        if top:
            self.nulls_on_top = True
        else:
            self.nulls_closing = True
        if self.nulls_on_top and self.nulls_closing:
            raise _Disorder

    def _ordered(self, group: list[Token]) -> list[Token]:
        return ordering.order_tokens([t for t in group if self._wanted(t)], self.order)


def _trailing_nulls(
    tokens: Sequence[Token], value: Callable[[Token], GroupValue | None]
) -> list[Token]:
    trailing: list[Token] = []
    for token in reversed(tokens):
        if value(token) is not None:
            break
        trailing.append(token)
    return trailing


def _local_id_value(token: Token) -> GroupValue:
    return token.local_id


def _date_value(order_field: OrderField) -> Callable[[Token], GroupValue | None]:
    def value(token: Token) -> GroupValue | None:
        return ordering.sort_value(token, order_field)

    return value


def _check_after(after: SortKey | None, order_field: OrderField) -> None:
    if after is None or after.value is None:
        return
    if order_field is OrderField.NAME:
        ok = isinstance(after.value, str)
    else:
        ok = isinstance(after.value, datetime) and after.value.utcoffset() is not None
    if not ok:
        raise errors.InvalidCursor("the cursor does not fit this order: start again")


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


def _parse_position(position: str | None, app_count: int) -> dict[int, int]:
    """``{app index: offset}`` from a hint ``_walk_page`` made; ``InvalidCursor`` for
    anything else (see the module docstring)."""
    if position is None:
        return {}
    invalid = errors.InvalidCursor("the cursor is not valid: use a cursor from a previous page")
    parts = position.split(",")
    if len(parts) > app_count:
        raise invalid
    hints: dict[int, int] = {}
    for part in parts:
        index, colon, offset = part.partition(":")
        if not (colon and _is_small_number(index) and _is_small_number(offset)):
            raise invalid
        app, at = int(index), int(offset)
        if app >= app_count or app in hints or not 1 <= at <= MAX_HINT_OFFSET:
            raise invalid
        hints[app] = at
    return hints


def _is_small_number(text: str) -> bool:
    return 0 < len(text) <= 10 and text.isascii() and text.isdigit()


async def _gather(calls: Sequence[Awaitable[T]]) -> list[T]:
    """Run ``calls`` concurrently; all finish before the first failure is raised (a
    ``_Disorder`` wins, so that the caller can fall back)."""
    if len(calls) == 1:
        # One application (the usual case): no task, so its request leaves at once.
        return [await calls[0]]
    results = await asyncio.gather(*calls, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise next((f for f in failures if isinstance(f, _Disorder)), failures[0])
    return results  # type: ignore[return-value]
