"""The OAuth-style (Onegini) token server's end-user token API as a ``TokenSource``."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Unpack

from tokengate.upstreams import errors, ordering
from tokengate.upstreams.http_edge import base_url as checked_base_url
from tokengate.upstreams.http_edge import path_segment
from tokengate.upstreams.http_edge import retry_after_seconds as retry_after_seconds  # re-exported
from tokengate.upstreams.http_source import HttpSource, Upstream
from tokengate.upstreams.model import (
    Capabilities,
    Created,
    CreateSpec,
    PageRequest,
    Provider,
    SourceItem,
    SourcePage,
    Token,
    UpdateSpec,
)
from tokengate.upstreams.oauth.normalise import (
    SchemaViolation,
    check_user_id,
    is_no_tokens_body,
    parse_local_id,
    parse_token_list,
    user_path_segment,
)

_API = "/oauth/api/v1/users"
# get_many lists one user per call; this many at once, so a big batch cannot flood the server.
_MAX_CONCURRENT_LISTS = 8
# No last use; an ``expired`` flag at most, never an expiry date.
_CAPABILITIES = Capabilities(
    can_revoke=True,
    can_count=True,
    needs_user_filter=True,
    reports_last_used=False,
    reports_expiry=False,
)


class OAuthSource(HttpSource):
    """Tokens of one user at a time, read whole from ``GET /users/{userId}/tokens``.

    The server neither pages, sorts nor filters, so every ``list_page`` reads the user's
    whole list once (one request, whatever the depth) and pages it with
    ``ordering.local_page``. Nothing is cached: the server says ``no-store``.
    """

    provider = Provider.OAUTH
    capabilities = _CAPABILITIES

    def __init__(self, *, client_id: str, client_secret: str, **upstream: Unpack[Upstream]) -> None:
        checked_base_url(upstream["base_url"])  # the first thing wrong is said first
        if ":" in client_id:
            raise ValueError("client_id cannot contain ':' (HTTP Basic user names cannot)")
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
        super().__init__(
            headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
            credential="client credentials",
            **upstream,
        )

    async def list_page(self, request: PageRequest) -> SourcePage:
        user_id = request.filter.user_id
        if user_id is None:
            raise errors.InvalidInput(
                f"{self._name} lists one user at a time: filter by userId", argument="userId"
            )
        check_user_id(user_id)
        if request.limit < 0:
            raise errors.InvalidInput("limit cannot be negative")
        if request.position is not None:
            # This source makes no resume hints (below), so a cursor holding one is forged.
            raise errors.InvalidCursor("the cursor is not valid: use a cursor from a previous page")
        owner_user = request.filter.owner_user
        if owner_user is not None and owner_user != user_id:
            # Every token here belongs to user_id: none can match, no need to ask.
            return SourcePage(items=[], has_more=False, total_count=0)
        tokens = await self._list_user(user_id)
        page, has_more, total = ordering.local_page(
            tokens, request.filter, request.walk_order, request.after, request.limit
        )
        # No position hint: the whole list is read on every page anyway.
        return SourcePage(
            items=[SourceItem(token) for token in page], has_more=has_more, total_count=total
        )

    def owner_in_id(self, local_id: str) -> str | None:
        parsed = parse_local_id(local_id)
        return parsed[0] if parsed is not None else None

    async def get_many(self, local_ids: Sequence[str]) -> dict[str, Token]:
        wanted: dict[str, set[str]] = {}
        for local_id in local_ids:
            parsed = parse_local_id(local_id)
            if parsed is not None:
                wanted.setdefault(parsed[0], set()).add(local_id)
        if not wanted:
            return {}
        gate = asyncio.Semaphore(_MAX_CONCURRENT_LISTS)

        async def one_user(user_id: str) -> list[Token]:
            async with gate:
                return await self._list_user(user_id)

        users = list(wanted)
        results = await asyncio.gather(*(one_user(u) for u in users), return_exceptions=True)
        found: dict[str, Token] = {}
        for user_id, result in zip(users, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            found.update((t.local_id, t) for t in result if t.local_id in wanted[user_id])
        return found

    async def create(self, spec: CreateSpec) -> Created:
        raise errors.Unsupported(
            f"{self._name} cannot create tokens: they are issued by OAuth flows"
        )

    async def update(self, local_id: str, spec: UpdateSpec) -> Token:
        raise errors.Unsupported(f"{self._name} cannot change tokens, only revoke them")

    async def revoke(self, local_id: str) -> None:
        parsed = parse_local_id(local_id)
        if parsed is None:
            raise errors.InvalidInput("not a token id of this source", argument="id")
        user_id, token_id = parsed
        url = f"{self._base}{_API}/{user_path_segment(user_id)}/tokens/{path_segment(token_id)}"
        response = await self._http.send("DELETE", url)
        # The seed: 204 whether or not the user or token existed, so there is no NotFound.
        if not response.is_success:
            raise self._http.unexpected(response)

    async def aclose(self) -> None:
        return None

    async def _list_user(self, user_id: str) -> list[Token]:
        url = f"{self._base}{_API}/{user_path_segment(user_id)}/tokens"
        response = await self._http.send("GET", url)
        if response.status_code == 404:
            # An unknown user and a user without valid tokens look alike: both are empty.
            if is_no_tokens_body(self._http.json(response)):
                return []
            raise errors.BadUpstreamResponse(
                self._key, f"{self._name} answered 404 without its documented error body"
            )
        if response.status_code != 200:
            raise self._http.unexpected(response)
        payload = self._http.json(response)
        try:
            return parse_token_list(
                payload, source=self._key, user_id=user_id, now=datetime.now(UTC)
            )
        except SchemaViolation as exc:
            raise errors.BadUpstreamResponse(
                self._key, f"{self._name} sent a malformed token list: {exc}"
            ) from None
