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
from typing import Unpack

import httpx

from tokengate.upstreams import errors, hints, ordering
from tokengate.upstreams.amper.normalise import (
    MEDIA_TYPE,
    MIN_PREFIX_FOR_SELF_CHECK,
    SchemaViolation,
    create_document,
    is_own_credential,
    is_valid_id,
    parse_created,
    parse_list,
    parse_single,
    redacted_prefix,
    redacted_snippet,
)
from tokengate.upstreams.amper.rows import (
    MAX_OFFSET,
    ListMoved,
    check_position,
    read_all,
    walk_page,
)
from tokengate.upstreams.http_edge import base_url as checked_base_url
from tokengate.upstreams.http_edge import path_segment, retry_after_seconds
from tokengate.upstreams.http_source import HttpSource, Upstream
from tokengate.upstreams.model import (
    Capabilities,
    Created,
    CreateSpec,
    FilterField,
    OrderField,
    PageRequest,
    Provider,
    SourceItem,
    SourcePage,
    Status,
    Token,
    TokenFilter,
    UpdateSpec,
)
from tokengate.upstreams.paged_walk import OrderBroken
from tokengate.upstreams.secret_lookup import (
    SecretFound,
    SecretLookup,
    SecretMatchKind,
    SecretSearch,
)

_API = "/v1/access_tokens"
MAX_NAME_LENGTH = 255
_MAX_CONCURRENT_GETS = 16
# The full read's order: the most stable while reading (new tokens append at its end).
_FULL_READ_SORT = "date_create"
# A secret search reads the whole list in pages of the API's largest size.
_SEARCH_PAGE = 100
_PAGE_SIZE_PARAMS = frozenset({"length", "limit"})
# Orders walked over Amper's own sort; the others are read whole (see the module docstring).
_SEEKABLE = frozenset({OrderField.CREATED_AT, OrderField.LAST_USED_AT})
_CAPABILITIES = Capabilities(
    can_create=True,
    can_revoke=True,
    # NAME is served by a full read: the upstream collation is undocumented.
    native_sort_fields=frozenset({OrderField.CREATED_AT, OrderField.LAST_USED_AT}),
    # date_access bounds a LAST_USED_AT walk; no token expires, so an expiry filter
    # matches nothing without a request.
    native_filters=frozenset(FilterField),
)
_UNSUPPORTED_CREATE_FIELDS = (
    ("scopes", "scopes"),
    ("expires_at", "expiresAt"),
    ("description", "description"),
    ("application_id", "applicationId"),
    ("subject", "subject"),
    ("allowed_sources", "allowedSources"),
)


def _points_at(base_url: str, link: str) -> bool:
    """Whether ``link`` is this API's list URL at ``base_url`` (query aside)."""
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


class AmperSource(HttpSource):
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

    provider = Provider.AMPER
    capabilities = _CAPABILITIES
    secret_lookup = SecretLookup.HINT

    def __init__(
        self, *, api_token: str, page_size_param: str = "length", **upstream: Unpack[Upstream]
    ) -> None:
        checked_base_url(upstream["base_url"])  # the first thing wrong is said first
        if page_size_param not in _PAGE_SIZE_PARAMS:
            raise ValueError("page_size_param must be 'length' or 'limit'")
        if not api_token or ":" in api_token:
            raise ValueError("api_token must be a non-empty token without ':'")
        # Basic with the token as user name and an empty password: the colon is required.
        basic = base64.b64encode(f"{api_token}:".encode()).decode("ascii")
        super().__init__(
            headers={"Authorization": f"Basic {basic}", "Accept": MEDIA_TYPE},
            credential="API token",
            **upstream,
        )
        self._api_token = api_token
        self._page_size_param = page_size_param

    # -- listing -------------------------------------------------------------------------

    async def list_page(self, request: PageRequest) -> SourcePage:
        if request.limit < 0:
            raise errors.InvalidInput("limit cannot be negative")
        check_position(request.position)
        if not _can_match(request.filter):
            return SourcePage(items=[], has_more=False)
        if request.order.field not in _SEEKABLE:
            return await self._full_page(request)
        try:
            return await walk_page(self.fetch_rows, request)
        except OrderBroken:
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
            try:
                return await read_all(self.fetch_rows, _FULL_READ_SORT)
            except ListMoved:
                continue
        raise errors.UpstreamUnavailable(
            self._key, f"{self._name}'s token list kept changing while it was read; try again"
        )

    async def fetch_rows(self, sort: str, offset: int, length: int) -> tuple[list[Token], bool]:
        """One list request: (tokens from ``offset``, whether the list ends after them)."""
        tokens, ends, _payload = await self._fetch(sort, offset, length)
        return tokens, ends

    async def _fetch(self, sort: str, offset: int, length: int) -> tuple[list[Token], bool, object]:
        """``fetch_rows``, and the list document as Amper sent it."""
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
        payload = self._http.json(response)
        try:
            document = parse_list(payload, source=self._key, now=datetime.now(UTC))
        except SchemaViolation as exc:
            raise errors.BadUpstreamResponse(
                self._key, f"{self._name} sent a malformed token list: {exc}"
            ) from None
        count = len(document.tokens)
        if count == 0:
            return [], True, payload
        # links.next counts only when it points back at this API; a foreign or missing link
        # is ignored and a short page marks the end. The link is not followed literally: it
        # drops the page size (seed), and offsets are computed here to match the hints.
        if document.next_known and (
            document.next_link is None or _points_at(self._base, document.next_link)
        ):
            return list(document.tokens), document.next_link is None, payload
        return list(document.tokens), count < length, payload

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

    # -- secrets -------------------------------------------------------------------------

    async def find_secret(self, secret: str, *, max_pages: int) -> SecretSearch:
        """Tokens whose redacted snippet (``abcd1234***``: Amper never returns more) begins
        ``secret``: ``HINT`` matches, several possible. The whole list is read (Amper's API
        lists at most 1,100 tokens in 11 pages, whatever ``max_pages``); snippets shorter
        than 4 characters match nothing."""
        found: list[SecretFound] = []
        seen: set[str] = set()
        offset = 0
        while True:
            tokens, ends, payload = await self._fetch(_FULL_READ_SORT, offset, _SEARCH_PAGE)
            snippets = _snippets(payload)
            for token in tokens:
                prefix = redacted_prefix(snippets.get(token.local_id))
                if (
                    token.local_id not in seen
                    and prefix is not None
                    and len(prefix) >= MIN_PREFIX_FOR_SELF_CHECK
                    and secret.startswith(prefix)
                ):
                    seen.add(token.local_id)
                    found.append(SecretFound(token, SecretMatchKind.HINT))
            if ends or not tokens:
                return SecretSearch(found)
            offset += len(tokens)

    async def own_credentials(self, tokens: Sequence[Token]) -> set[str]:
        """The tokens whose redacted snippet begins the gateway's own API token: those whose
        4-character hint does are read again for their whole snippet (as ``revoke`` does)."""
        own: set[str] = set()
        for token in tokens:
            hint = (token.secret_hint or "").removesuffix(hints.MARK)
            if len(hint) < MIN_PREFIX_FOR_SELF_CHECK or not self._api_token.startswith(hint):
                continue
            found = await self._get(token.local_id)
            if found is not None and is_own_credential(found[2], self._api_token):
                own.add(token.local_id)
        return own

    # -- URLs ----------------------------------------------------------------------------

    def _token_url(self, local_id: str) -> str:
        return f"{self._base}{_API}/{path_segment(local_id)}"


def _snippets(payload: object) -> dict[str, str]:
    """id -> ``access_token_redacted`` of a list document ``parse_list`` accepted."""
    data = payload.get("data") if isinstance(payload, dict) else None
    out: dict[str, str] = {}
    for item in data if isinstance(data, list) else []:
        attributes = item.get("attributes") if isinstance(item, dict) else None
        snippet = attributes.get("access_token_redacted") if isinstance(attributes, dict) else None
        if isinstance(snippet, str) and isinstance(item.get("id"), str):
            out[item["id"]] = snippet
    return out


def _can_match(flt: TokenFilter) -> bool:
    """Whether any Amper token can match: they are all ACTIVE, scope-less, owner-less and
    never expire."""
    statuses = flt.statuses if flt.statuses is not None else ordering.DEFAULT_STATUSES
    return (
        Status.ACTIVE in statuses
        and flt.scope is None
        and flt.application_id is None
        and flt.owner_user is None
        and flt.expires_before is None
        and flt.expires_after is None
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
