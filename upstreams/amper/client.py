"""Amper Music's access-token API (seed 000) as a ``TokenSource``.

Listing, in short (details on ``AmperSource``):
- CREATED_AT and LAST_USED_AT use Amper's own ``sort``; the upstream order is used only to
  find where a page starts and ends. Each tie group is read whole and re-sorted by the
  gateway's tie-break, the never-used tokens (``date_access`` null) form one group that is
  found at whichever end of the list Amper puts it, and anything read out of the assumed
  order makes the page fall back to a full read.
- NAME and EXPIRES_AT are read whole and paged in memory: Amper's name collation (case,
  accents) is undocumented, so no partial read can prove a page matches the gateway's
  case-folded order; EXPIRES_AT is null for every token, so its order is the local id's.
- A full read is bounded by the API itself: offsets stop at 1000 and pages at 100 rows, so
  at most 1,100 tokens and 11 requests; a longer list fails loudly rather than with a gap.
- A resume hint is checked before any request: one that is malformed or names an offset
  past the last row the API can list (1,099) is the caller's bad cursor (``InvalidCursor``),
  never a request Amper would fail.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache

import httpx

from tokengate.upstreams import errors, ordering
from tokengate.upstreams.amper.normalise import (
    MEDIA_TYPE,
    ListDocument,
    SchemaViolation,
    create_document,
    decode_position,
    encode_position,
    is_own_credential,
    is_valid_id,
    parse_created,
    parse_list,
    parse_single,
    redacted_snippet,
    sort_param,
)
from tokengate.upstreams.answer_memo import AnswerMemo
from tokengate.upstreams.http_edge import UpstreamHttp, path_segment, retry_after_seconds
from tokengate.upstreams.http_edge import base_url as checked_base_url
from tokengate.upstreams.model import (
    Capabilities,
    Created,
    CreateSpec,
    Direction,
    OrderField,
    PageRequest,
    Provider,
    SourceItem,
    SourcePage,
    Status,
    Token,
    TokenFilter,
    TokenOrder,
    UpdateSpec,
)

_API = "/v1/access_tokens"
MAX_PAGE_LENGTH = 100
MAX_OFFSET = 1000
# The last row any read can reach: a page of MAX_PAGE_LENGTH from the last offset.
MAX_ROW = MAX_OFFSET + MAX_PAGE_LENGTH - 1
MAX_NAME_LENGTH = 255
# Rows read before a resume point (to see where its tie group starts) and past what a page
# needs (ties, filtered-out tokens): one request usually covers a whole page.
_LOOK_BEHIND = 8
_LOOK_AHEAD = 8
_MAX_CONCURRENT_GETS = 16
# The full read's order: the most stable while reading (new tokens append at its end).
_FULL_READ_SORT = "date_create"
_PAGE_SIZE_PARAMS = frozenset({"length", "limit"})
# Orders walked over Amper's own sort; the others are read whole (see the module docstring).
_SEEKABLE = frozenset({OrderField.CREATED_AT, OrderField.LAST_USED_AT})
_CAPABILITIES = Capabilities(
    can_create=True,
    can_revoke=True,
    # NAME is served by a full read: the upstream collation is undocumented.
    native_sort_fields=frozenset({OrderField.CREATED_AT, OrderField.LAST_USED_AT}),
)
_UNSUPPORTED_CREATE_FIELDS = (
    ("scopes", "scopes"),
    ("expires_at", "expiresAt"),
    ("description", "description"),
    ("application_id", "applicationId"),
    ("subject", "subject"),
    ("allowed_sources", "allowedSources"),
)


_MAX_MEMO_LINK = 2048


@lru_cache(maxsize=1024)
def _points_at(base_url: str, link: str) -> bool:
    """Whether ``link`` is this API's list URL at ``base_url`` (query aside). Memoised: the
    same ``links.next`` comes back with every read of a page, and parsing it costs httpx
    ~20 us."""
    try:
        url = httpx.URL(link)
    except (httpx.InvalidURL, TypeError):
        return False
    base = httpx.URL(base_url)
    return (
        url.scheme == base.scheme
        and url.host == base.host
        and url.port == base.port
        and url.path == f"{base.path.rstrip('/')}{_API}"
    )


class _OrderViolation(Exception):
    """Amper returned rows out of the order a native walk assumes; read everything instead."""


class _ListMoved(_OrderViolation):
    """The list changed between two requests of one call (a row moved)."""


class AmperSource:
    """The access tokens of the account that owns ``api_token``.

    ``local_id`` is Amper's token id. A token listed in a CREATED_AT or LAST_USED_AT walk
    carries the position ``"<sort>:<offset>:<id>"``: where it sat in the list sorted by
    ``sort``; resuming there costs one request at any depth. The hint is checked against
    the rows found at and around that offset, and is ignored when its token has moved away
    or lies after the cursor: the walk then seeks by the cursor's sort key alone, reading
    from the start, never skipping. Filters Amper cannot apply (all of them) are applied
    with ``upstreams.ordering.matches`` while reading; a created-at range also ends a
    CREATED_AT walk early. Full reads carry no position: they cost the same at any depth.
    """

    def __init__(
        self,
        *,
        key: str,
        name: str,
        base_url: str,
        client: httpx.AsyncClient,
        api_token: str,
        page_size_param: str = "length",
        timeout_s: float = 10.0,
        connect_timeout_s: float | None = None,
    ) -> None:
        base = checked_base_url(base_url)
        if page_size_param not in _PAGE_SIZE_PARAMS:
            raise ValueError("page_size_param must be 'length' or 'limit'")
        if not api_token or ":" in api_token:
            raise ValueError("api_token must be a non-empty token without ':'")
        self._key = key
        self._name = name
        self._base = base
        self._api_token = api_token
        self._page_size_param = page_size_param
        # Basic with the token as user name and an empty password: the colon is required.
        basic = base64.b64encode(f"{api_token}:".encode()).decode("ascii")
        self._http = UpstreamHttp(
            key=key,
            name=name,
            client=client,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            headers={"Authorization": f"Basic {basic}", "Accept": MEDIA_TYPE},
            credential="API token",
        )
        # List answers decoded before (upstreams/answer_memo.py); no Amper token expires.
        self._lists: AnswerMemo[ListDocument] = AnswerMemo()

    def __repr__(self) -> str:
        return f"AmperSource(key={self._key!r}, base_url={self._base!r})"

    @property
    def key(self) -> str:
        return self._key

    @property
    def name(self) -> str:
        return self._name

    @property
    def provider(self) -> Provider:
        return Provider.AMPER

    @property
    def capabilities(self) -> Capabilities:
        return _CAPABILITIES

    # -- listing -------------------------------------------------------------------------

    async def list_page(self, request: PageRequest) -> SourcePage:
        if request.limit < 0:
            raise errors.InvalidInput("limit cannot be negative")
        _check_position(request.position)
        if not _can_match(request.filter):
            return SourcePage(items=[], has_more=False)
        if request.order.field not in _SEEKABLE:
            return await self._full_page(request)
        try:
            return await _NativeWalk(self, request).page()
        except _OrderViolation:
            return await self._full_page(request)

    async def _full_page(self, request: PageRequest) -> SourcePage:
        tokens = await self._read_all()
        page, has_more, _ = ordering.local_page(
            tokens, request.filter, request.walk_order, request.after, request.limit
        )
        # No position hints: a full read costs the same at any depth.
        return SourcePage(items=[SourceItem(t) for t in page], has_more=has_more)

    async def _read_all(self) -> list[Token]:
        """Every token (at most 1,100 in 11 requests), read again once if the list moved."""
        for _attempt in range(2):
            reader = _Reader(self, first_length=MAX_PAGE_LENGTH)
            tokens: list[Token] = []
            try:
                while (token := await reader.row(_FULL_READ_SORT, len(tokens))) is not None:
                    tokens.append(token)
            except _ListMoved:
                continue
            return tokens
        raise errors.UpstreamUnavailable(
            self._key, f"{self._name}'s token list kept changing while it was read; try again"
        )

    async def fetch_rows(self, sort: str, offset: int, length: int) -> tuple[list[Token], bool]:
        """One list request: (tokens from ``offset``, whether the list ends after them)."""
        if offset > MAX_OFFSET:
            raise errors.BadUpstreamResponse(
                self._key,
                f"{self._name} holds more tokens than its API can list "
                f"(offsets stop at {MAX_OFFSET})",
            )
        params = {"offset": str(offset), self._page_size_param: str(length), "sort": sort}
        response = await self._http.send("GET", f"{self._base}{_API}", params=params)
        if response.status_code != 200:
            raise self._http.unexpected(response)
        now = datetime.now(UTC)

        def decode() -> tuple[ListDocument, None]:
            return parse_list(self._http.json(response), source=self._key, now=now), None

        try:
            document = self._lists.decoded(None, response.content, now, decode)
        except SchemaViolation as exc:
            raise errors.BadUpstreamResponse(
                self._key, f"{self._name} sent a malformed token list: {exc}"
            ) from None
        count = len(document.tokens)
        if count == 0:
            return [], True
        # links.next counts only when it points back at this API; a foreign or missing link
        # is ignored and a short page marks the end. The link is not followed literally: it
        # drops the page size (seed), and offsets are computed here to match the hints.
        if document.next_known and (
            document.next_link is None or self._is_own_link(document.next_link)
        ):
            return list(document.tokens), document.next_link is None
        return list(document.tokens), count < length

    def _is_own_link(self, link: str) -> bool:
        if len(link) > _MAX_MEMO_LINK:  # not worth keeping in memory
            return _points_at.__wrapped__(self._base, link)
        return _points_at(self._base, link)

    # -- single tokens -------------------------------------------------------------------

    def owner_in_id(self, local_id: str) -> str | None:
        return None  # tokens of an account/application, never of a user

    async def get_many(self, local_ids: Sequence[str]) -> dict[str, Token]:
        wanted = list(dict.fromkeys(i for i in local_ids if is_valid_id(i)))
        if not wanted:
            return {}
        gate = asyncio.Semaphore(_MAX_CONCURRENT_GETS)

        async def one(local_id: str) -> Token | None:
            async with gate:
                found = await self._get(local_id)
            return found[0] if found is not None else None

        results = await asyncio.gather(*(one(i) for i in wanted), return_exceptions=True)
        tokens: dict[str, Token] = {}
        for local_id, result in zip(wanted, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            if result is not None:
                tokens[local_id] = result
        return tokens

    async def _get(self, local_id: str) -> tuple[Token, str | None, str | None] | None:
        """The token, its ETag and Amper's whole redacted snippet (the token's hint shows
        less), or None when Amper does not know the id."""
        response = await self._http.send("GET", self._token_url(local_id))
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._http.unexpected(response)
        try:
            payload = self._http.json(response)
            token = parse_single(payload, source=self._key, now=datetime.now(UTC))
        except SchemaViolation as exc:
            raise errors.BadUpstreamResponse(
                self._key, f"{self._name} sent a malformed token: {exc}"
            ) from None
        if token.local_id != local_id:
            raise errors.BadUpstreamResponse(
                self._key, f"{self._name} answered with another token than the one asked for"
            )
        return token, response.headers.get("etag"), redacted_snippet(payload)

    async def create(self, spec: CreateSpec) -> Created:
        name = _checked_name(spec)
        response = await self._http.send(
            "POST",
            f"{self._base}{_API}",
            content=json.dumps(create_document(name)).encode(),
            headers={"Content-Type": MEDIA_TYPE},
        )
        if response.status_code in {400, 409, 422}:
            raise errors.InvalidInput(
                f"{self._name} refused the new token (HTTP {response.status_code})",
                argument="name",
            )
        if response.status_code not in {200, 201}:
            raise self._http.unexpected(response)
        try:
            token, secret = parse_created(
                self._http.json(response), source=self._key, now=datetime.now(UTC)
            )
        except SchemaViolation as exc:
            raise errors.BadUpstreamResponse(
                self._key, f"{self._name} sent a malformed created token: {exc}"
            ) from None
        return Created(token=token, secret=secret)

    async def update(self, local_id: str, spec: UpdateSpec) -> Token:
        raise errors.Unsupported(
            f"{self._name} cannot change tokens (its API documents no update): "
            "create a new token and revoke the old one"
        )

    async def revoke(self, local_id: str) -> None:
        if not is_valid_id(local_id):
            raise errors.InvalidInput("not a token id of this source", argument="id")
        # DELETE needs the token's own current ETag (a GET first), not the list's; if the
        # token changes in between (412), read it again once.
        for _attempt in range(2):
            found = await self._get(local_id)
            if found is None:
                raise errors.NotFound(f"{self._name} has no token with this id")
            _token, etag, snippet = found
            if etag is None:
                raise errors.BadUpstreamResponse(
                    self._key, f"{self._name} sent a token without its ETag"
                )
            if is_own_credential(snippet, self._api_token):
                raise errors.Forbidden(
                    f"this is the token the gateway uses to reach {self._name}: "
                    "revoking it would cut the gateway off; revoke it at Amper directly"
                )
            response = await self._http.send(
                "DELETE", self._token_url(local_id), headers={"If-Match": etag}
            )
            if response.status_code in {200, 202, 204}:
                return
            if response.status_code == 404:
                raise errors.NotFound(f"{self._name} has no token with this id")
            if response.status_code != 412:
                raise self._http.unexpected(response)
        raise errors.UpstreamUnavailable(
            self._key,
            f"{self._name} kept changing the token while it was being revoked; try again",
            status=412,
        )

    async def aclose(self) -> None:
        return None

    # -- URLs ----------------------------------------------------------------------------

    def _token_url(self, local_id: str) -> str:
        return f"{self._base}{_API}/{path_segment(local_id)}"


class _Reader:
    """One ``list_page`` call's view of Amper's lists: rows by (sort, offset), read on demand.

    The first request asks for ``first_length`` rows, later ones for the maximum. Each
    request also re-reads a neighbouring row already seen: if it moved, or a token shows
    up at two offsets, the list changed mid-call and the read is not trusted.
    """

    def __init__(self, source: AmperSource, *, first_length: int) -> None:
        self._source = source
        self._length = max(1, min(MAX_PAGE_LENGTH, first_length))
        self._rows: dict[str, dict[int, Token]] = {}
        self._ids: dict[str, dict[str, int]] = {}
        self._ends: dict[str, int] = {}

    async def row(self, sort: str, offset: int, *, toward_start: bool = False) -> Token | None:
        """The row at ``offset`` of the list sorted by ``sort``; None past its end.

        ``toward_start`` reads the chunk that ends at ``offset`` (walking back to a tie
        group's start) instead of the one that begins there.
        """
        rows = self._rows.setdefault(sort, {})
        if offset not in rows and not self._past_end(sort, offset):
            length = self._next_length()
            start = max(0, offset - length + 1) if toward_start else offset
            await self._fetch(sort, start, length)
        if offset not in rows and not self._past_end(sort, offset):
            # Fewer rows than asked for, yet not the end: Amper caps pages below 100.
            await self._fetch(sort, offset, self._next_length(), overlap=False)
        if self._past_end(sort, offset):
            return None
        return rows[offset]

    def _next_length(self) -> int:
        length, self._length = self._length, MAX_PAGE_LENGTH
        return length

    def widen(self) -> None:
        """Ask for the maximum number of rows from now on."""
        self._length = MAX_PAGE_LENGTH

    def _past_end(self, sort: str, offset: int) -> bool:
        end = self._ends.get(sort)
        return end is not None and offset >= end

    async def _fetch(self, sort: str, start: int, length: int, *, overlap: bool = True) -> None:
        rows = self._rows.setdefault(sort, {})
        ids = self._ids.setdefault(sort, {})
        if overlap and start > 0 and start - 1 in rows:
            start, length = start - 1, length + 1
        if overlap and start + length in rows:
            length += 1
        length = min(length, MAX_PAGE_LENGTH)
        tokens, at_end = await self._source.fetch_rows(sort, start, length)
        for index, token in enumerate(tokens, start):
            known = rows.get(index)
            seen_at = ids.get(token.local_id)
            if (known is not None and known.local_id != token.local_id) or (
                seen_at is not None and seen_at != index
            ):
                raise _ListMoved
            ids[token.local_id] = index
            rows[index] = token
        if at_end:
            self._ends[sort] = start + len(tokens)


_NEVER = object()


class _NativeWalk:
    """One page of a CREATED_AT or LAST_USED_AT walk over Amper's own sort.

    The walk's order, restricted to this source, is segment A (tokens with a value, in
    value order; ties re-sorted by local id) and segment B (never-used tokens, ordered by
    local id): A then B in ASC, B then A in DESC, as ``upstreams.ordering`` puts nulls.
    Amper's list for the walk's sort holds A in value order (checked on every row read) and
    B as one block at its start or its end; where is not documented, so it is found.
    """

    def __init__(self, source: AmperSource, request: PageRequest) -> None:
        self.request = request
        self.order: TokenOrder = request.walk_order
        self.field = self.order.field
        self.ascending = self.order.direction is Direction.ASC
        sort = sort_param(self.field, self.order.direction)
        opposite = sort_param(self.field, self.order.direction.flipped())
        assert sort is not None and opposite is not None
        self.sort, self.opposite = sort, opposite
        self.after = request.after
        self.filter = request.filter
        self.need = request.limit + 1
        self.hint = _check_position(request.position)
        # The first request covers the page plus a tie group running past it, and the rows
        # before a resume hint when there is one (no hint: the walk starts at offset 0).
        behind = _LOOK_BEHIND if self.hint is not None else 0
        self.reader = _Reader(source, first_length=request.limit + 1 + behind + _LOOK_AHEAD)
        # Offset of the first never-used token found after segment A in ``sort``'s list.
        self.trailing_nulls_at: int | None = None

    async def page(self) -> SourcePage:
        taken: list[SourceItem] = []
        segments: tuple[str, ...] = ("A", "B") if self.ascending else ("B", "A")
        if self.field is not OrderField.LAST_USED_AT:
            segments = ("A",)  # date_create is never null
        for segment in segments:
            if len(taken) >= self.need or self._segment_is_behind(segment):
                continue
            if segment == "A":
                taken.extend(await self._values(self.need - len(taken)))
            else:
                taken.extend(await self._nulls())
        limit = self.request.limit
        return SourcePage(items=taken[:limit], has_more=len(taken) > limit)

    def _segment_is_behind(self, segment: str) -> bool:
        """Whether every token of ``segment`` comes before the cursor in this walk."""
        if self.after is None:
            return False
        if segment == "A":
            return self.ascending and self.after.value is None
        return not self.ascending and self.after.value is not None

    def _keep(self, token: Token) -> bool:
        if not ordering.matches(token, self.filter):
            return False
        key = ordering.sort_key(token, self.field)
        return self.after is None or ordering.comes_before(self.after, key, self.order.direction)

    def _settle(self, group: list[tuple[int, Token]], sort: str) -> list[SourceItem]:
        """A complete tie group in the gateway's order, filtered, with resume hints."""
        offsets = {token.local_id: offset for offset, token in group}
        ordered = ordering.order_tokens((t for _, t in group), self.order)
        return [
            SourceItem(token, encode_position(sort, offsets[token.local_id], token.local_id))
            for token in ordered
            if self._keep(token)
        ]

    def _value(self, token: Token) -> datetime | None:
        value = ordering.sort_value(token, self.field)
        assert value is None or isinstance(value, datetime)
        return value

    def _before(self, a: datetime, b: datetime) -> bool:
        return a < b if self.ascending else a > b

    def _past_filter(self, value: datetime) -> bool:
        """No token at or beyond ``value`` in this walk can match the created-at range."""
        if self.field is not OrderField.CREATED_AT:
            return False
        if self.ascending:
            return self.filter.created_before is not None and value >= self.filter.created_before
        return self.filter.created_after is not None and value <= self.filter.created_after

    # -- segment A -------------------------------------------------------------------------

    async def _values(self, want: int) -> list[SourceItem]:
        """At least ``want`` settled tokens of segment A after the cursor, or all there are."""
        start = await self._anchor()
        settled: list[SourceItem] = []
        group: list[tuple[int, Token]] = []
        group_value: object = _NEVER
        seen_value = leading_nulls = False
        offset = start
        while True:
            token = await self.reader.row(self.sort, offset)
            if token is None:
                break
            value = self._value(token)
            if value is None:
                if seen_value:
                    if leading_nulls:  # never-used tokens at both ends: not one block
                        raise _OrderViolation
                    self.trailing_nulls_at = offset  # A + B: the rest is segment B
                    break
                leading_nulls = True  # B + A: segment A starts after the block
                offset += 1
                continue
            seen_value = True
            if isinstance(group_value, datetime) and value != group_value:
                if self._before(value, group_value):
                    raise _OrderViolation
                settled.extend(self._settle(group, self.sort))
                group = []
                if len(settled) >= want:
                    return settled
            if self._past_filter(value):
                return settled
            group.append((offset, token))
            group_value = value
            offset += 1
        settled.extend(self._settle(group, self.sort))
        return settled

    async def _anchor(self) -> int:
        """Where to start reading: the start of the resume hint's tie group, else 0.

        The hint is only trusted when its token is still at (or near) its offset, has a
        value, and does not come after the cursor; otherwise the walk reads from the start.
        """
        hint, after = self.hint, self.after
        if hint is None or after is None or after.value is None or hint[0] != self.sort:
            return 0
        _, offset, token_id = hint
        low = max(0, offset - _LOOK_BEHIND)
        found: int | None = None
        if await self.reader.row(self.sort, low) is not None:  # the window around the hint
            for probe in [offset, *range(low, offset + _LOOK_AHEAD + 1)]:
                token = await self.reader.row(self.sort, probe)
                if token is not None and token.local_id == token_id:
                    found = probe
                    break
        if found is None:
            return 0
        anchor = await self.reader.row(self.sort, found)
        assert anchor is not None
        value = self._value(anchor)
        key = ordering.sort_key(anchor, self.field)
        if value is None or ordering.comes_before(after, key, self.order.direction):
            return 0
        while found > 0:
            previous = await self.reader.row(self.sort, found - 1, toward_start=True)
            assert previous is not None
            previous_value = self._value(previous)
            if previous_value != value:
                if previous_value is not None and self._before(value, previous_value):
                    raise _OrderViolation
                break
            found -= 1
        return found

    # -- segment B -------------------------------------------------------------------------

    async def _nulls(self) -> list[SourceItem]:
        """Segment B after the cursor: every never-used token, read whole (one tie group).

        Its hints name the list the block was found in, so the next page looks there first.
        """
        sort, start, block = await self._null_block()
        return self._settle([(start + i, t) for i, t in enumerate(block)], sort)

    async def _null_block(self) -> tuple[str, int, list[Token]]:
        self.reader.widen()  # the block is read whole, however small the page
        if self.trailing_nulls_at is not None:
            return await self._run_of_nulls(self.sort, self.trailing_nulls_at)
        lists = [self.sort, self.opposite]
        if self.hint is not None and self.hint[0] == self.opposite:
            lists.reverse()
        for sort in lists:
            first = await self.reader.row(sort, 0)
            if first is None:
                return sort, 0, []
            if self._value(first) is None:
                return await self._run_of_nulls(sort, 0)
        # Neither list starts with never-used tokens: they trail both, or there are none.
        offset = 0
        while (await self.reader.row(self.sort, offset)) is not None:
            offset += 1
        tail = offset
        while tail > 0:
            token = await self.reader.row(self.sort, tail - 1)
            assert token is not None
            if self._value(token) is not None:
                break
            tail -= 1
        return await self._run_of_nulls(self.sort, tail)

    async def _run_of_nulls(self, sort: str, start: int) -> tuple[str, int, list[Token]]:
        """The never-used tokens from ``start`` on; a value after them breaks the model."""
        block: list[Token] = []
        offset = start
        while (token := await self.reader.row(sort, offset)) is not None:
            if self._value(token) is not None:
                if start > 0:  # a trailing block must run to the end of the list
                    raise _OrderViolation
                break
            block.append(token)
            offset += 1
        return sort, start, block


def _check_position(position: str | None) -> tuple[str, int, str] | None:
    """A resume hint this adapter can have made, decoded; ``InvalidCursor`` otherwise.

    Only walks make hints, and only ``encode_position`` ones for rows the API can list.
    """
    if position is None:
        return None
    hint = decode_position(position)
    if hint is None or not 0 <= hint[1] <= MAX_ROW:
        raise errors.InvalidCursor("the cursor is not valid: use a cursor from a previous page")
    return hint


def _can_match(flt: TokenFilter) -> bool:
    """Whether any Amper token can match: they are all ACTIVE, scope-less and owner-less."""
    statuses = flt.statuses if flt.statuses is not None else ordering.DEFAULT_STATUSES
    return (
        Status.ACTIVE in statuses
        and flt.scope is None
        and flt.application_id is None
        and flt.owner_user is None
    )


def _checked_name(spec: CreateSpec) -> str:
    for attribute, argument in _UNSUPPORTED_CREATE_FIELDS:
        value = getattr(spec, attribute)
        if value is not None and value != () and value != frozenset():
            raise errors.InvalidInput(
                f"Amper access tokens cannot hold {argument}: leave it out", argument=argument
            )
    name = spec.name.strip()
    if not name:
        raise errors.InvalidInput("a token needs a name", argument="name")
    if len(name) > MAX_NAME_LENGTH or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise errors.InvalidInput(
            f"a name is at most {MAX_NAME_LENGTH} printable characters", argument="name"
        )
    return name


__all__ = ["AmperSource", "retry_after_seconds"]
