"""Losant's list endpoint: one page request and what its answers mean, and one
application's list as the rows ``upstreams.paged_walk`` reads."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from tokengate.upstreams import errors
from tokengate.upstreams.http_edge import Answer, UpstreamHttp, path_segment
from tokengate.upstreams.losant.normalise import (
    SchemaViolation,
    TokenPage,
    error_type,
    parse_token_page,
)
from tokengate.upstreams.model import Direction, Token
from tokengate.upstreams.paged_walk import OrderBroken


@dataclass
class ListCall:
    """One list_page call: its clock, pushed-down filter, read budget and page cache."""

    now: datetime
    upstream_filter: tuple[str, str] | None
    # Tokens one application may be read for in this call (the adapter's MAX_TOKENS_READ).
    max_tokens: int
    pages: dict[tuple[str, str, str, int], TokenPage] = field(default_factory=dict)


class LosantApi:
    """Losant's token endpoints at one base URL: URLs, the list request, and the errors its
    answers become. ``per_page`` is every list request's page size."""

    def __init__(self, *, key: str, name: str, base: str, http: UpstreamHttp, per_page: int):
        self.key = key
        self.name = name
        self.per_page = per_page
        self._base = base
        self._http = http

    def collection_url(self, app: str) -> str:
        return f"{self._base}/applications/{path_segment(app)}/tokens"

    def token_url(self, app: str, token_id: str) -> str:
        # Both are checked 24-hex ids (parse_local_id), encoded all the same.
        return f"{self.collection_url(app)}/{path_segment(token_id)}"

    async def page(
        self, call: ListCall, app: str, sort_field: str, direction: Direction, index: int
    ) -> TokenPage:
        """Page ``index`` of ``app``'s list in this sort, once per call."""
        cache_key = (app, sort_field, direction.value, index)
        cached = call.pages.get(cache_key)
        if cached is not None:
            return cached
        params = {
            "page": str(index),
            "perPage": str(self.per_page),
            "sortField": sort_field,
            "sortDirection": direction.value.lower(),
        }
        if call.upstream_filter is not None:
            params["filterField"], params["filter"] = call.upstream_filter
        response = await self._http.send("GET", self.collection_url(app), params=params)
        if response.status_code == 404:
            raise self.missing_application(app)
        if response.status_code == 400:
            if call.upstream_filter is not None and call.upstream_filter[0] == "name":
                # The only caller-chosen text in a list request: the caller's glob.
                raise errors.InvalidInput(
                    f"{self.name} refused the name filter ({self.type_of(response)})",
                    argument="filter.name",
                )
            raise errors.BadUpstreamResponse(
                self.key,
                f"{self.name} refused the list request (400 {self.type_of(response)})",
                status=400,
            )
        if response.status_code != 200:
            raise self._http.unexpected(response)
        try:
            page = parse_token_page(
                self._http.json(response),
                source=self.key,
                application_id=app,
                now=call.now,
                lazy=True,
            )
        except SchemaViolation as exc:
            raise self.malformed(exc) from None
        if (
            (page.page is not None and page.page != index)
            or (page.per_page is not None and page.per_page != self.per_page)
            or len(page.tokens) > self.per_page
        ):
            # Offsets would be wrong: the upstream is not paging the way it was asked to.
            raise errors.BadUpstreamResponse(
                self.key, f"{self.name} answered with another page than the one asked for"
            )
        call.pages[cache_key] = page
        return page

    async def raw_items(self, app: str, index: int) -> tuple[list[object], bool]:
        """Page ``index`` of ``app``'s list by id, as Losant sent its items (secrets
        included: the caller compares and drops them), and whether it is the last page.
        Nothing is cached."""
        params = {
            "page": str(index),
            "perPage": str(self.per_page),
            "sortField": "id",
            "sortDirection": "asc",
        }
        response = await self._http.send("GET", self.collection_url(app), params=params)
        if response.status_code == 404:
            raise self.missing_application(app)
        if response.status_code != 200:
            raise self._http.unexpected(response)
        payload = self._http.json(response)
        items = payload.get("items") if isinstance(payload, dict) else None
        if not isinstance(items, list) or len(items) > self.per_page:
            raise errors.BadUpstreamResponse(
                self.key, f"{self.name} sent a malformed body: the list has no 'items' array"
            )
        total = payload.get("totalCount") if isinstance(payload, dict) else None
        last = len(items) < self.per_page or (
            isinstance(total, int) and index * self.per_page + len(items) >= total
        )
        return items, last

    def is_last(self, page: TokenPage, index: int) -> bool:
        if len(page.tokens) < self.per_page:
            return True
        total = page.total_count
        return total is not None and index * self.per_page + len(page.tokens) >= total

    def check_budget(self, app: str, pages: int, max_tokens: int) -> None:
        """``pages`` pages of ``app`` are read: fail before one more would pass the budget."""
        if pages * self.per_page >= max_tokens:
            raise errors.UpstreamUnavailable(
                self.key,
                f"application {app} of {self.name} holds more than {max_tokens} tokens "
                "to read for this page: narrow the filter or order by creation date",
            )

    def type_of(self, response: Answer) -> str:
        try:
            payload: object = json.loads(response.content)
        except ValueError:
            payload = None
        return error_type(payload) or "no error type"

    def malformed(self, exc: SchemaViolation) -> errors.BadUpstreamResponse:
        return errors.BadUpstreamResponse(self.key, f"{self.name} sent a malformed body: {exc}")

    def missing_application(self, app: str) -> errors.UpstreamUnavailable:
        return errors.UpstreamUnavailable(
            self.key, f"{self.name} does not know application {app}: check application_ids"
        )


class AppRows:
    """One application's list in one sort and direction for one call, by offset
    (``paged_walk.Rows``). Pages are read whole (Losant pages by number) and parsed lazily:
    only the rows the walk reads are judged."""

    def __init__(
        self, api: LosantApi, call: ListCall, app: str, sort_field: str, direction: Direction
    ) -> None:
        self._api = api
        self._call = call
        self._app = app
        self._sort_field = sort_field
        self._direction = direction
        self._end: int | None = None
        self._pages: dict[int, TokenPage] = {}
        # The application's totalCount, from any page read.
        self.total: int | None = None

    async def row(self, offset: int, *, toward_start: bool = False) -> Token | None:
        index, position = divmod(offset, self._api.per_page)
        page = self._pages.get(index)
        if page is None:
            if self._end is not None and offset >= self._end:
                return None
            page = await self.page(index)
        if position < len(page.tokens):
            return page.tokens[position]
        return None  # a short page is the last (``page`` noted the end)

    async def length(self) -> int | None:
        """From page 0's ``totalCount``, checked against the last page it implies."""
        first = await self.page(0)
        if self._end is not None:
            return self._end
        total = first.total_count
        if total is None:
            return None
        per_page = self._api.per_page
        index = (total - 1) // per_page
        last = await self.page(index)
        if len(last.tokens) != total - index * per_page:
            raise OrderBroken  # totalCount does not describe these pages
        return total

    def loaded(self, offset: int) -> Token | None:
        index, position = divmod(offset, self._api.per_page)
        page = self._pages.get(index)
        if page is None or position >= len(page.tokens):
            return None
        return page.tokens[position]

    def widen(self) -> None:
        return None  # every page is as long as the source's per_page

    async def page(self, index: int) -> TokenPage:
        """Page ``index``, whose echo must name the sort asked for."""
        if index not in self._pages:
            self._api.check_budget(self._app, len(self._pages), self._call.max_tokens)
        page = await self._api.page(self._call, self._app, self._sort_field, self._direction, index)
        self._pages[index] = page
        direction = self._direction.value.lower()
        if page.sort_field not in (None, self._sort_field) or page.sort_direction not in (
            None,
            direction,
        ):
            raise OrderBroken  # the upstream says it sorted otherwise
        if page.total_count is not None:
            self.total = page.total_count
        if self._api.is_last(page, index):
            end = index * self._api.per_page + len(page.tokens)
            self._end = end if self._end is None else min(self._end, end)
        return page


__all__ = ["AppRows", "ListCall", "LosantApi"]
