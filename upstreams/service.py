"""The token service: routes calls to sources, merges pages, and enforces who may see what.

Every authorization decision about tokens is made here, once, at the root of a request;
the schema layer only maps arguments in and records out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from tokengate.upstreams import call_outcomes, errors, ids
from tokengate.upstreams.base import TokenSource
from tokengate.upstreams.cursor_codec import CursorCodec
from tokengate.upstreams.merge import Cursor, MergedPage, decode_cursor, merge_pages, positions_for
from tokengate.upstreams.model import (
    Capabilities,
    Created,
    CreateSpec,
    OwnerKind,
    PageRequest,
    Provider,
    SourcePage,
    Token,
    TokenFilter,
    TokenOrder,
    UpdateSpec,
)
from tokengate.upstreams.principal import ADMIN, READ, WRITE, Principal, Reach, effective_scopes
from tokengate.upstreams.store.source import StoreSource

log = logging.getLogger("tokengate.service")
T = TypeVar("T")

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_NODE_IDS = 100
# Tokens of these providers can belong to a user the gateway knows (an internal subject or
# the OAuth-style server's user); Amper and Losant tokens belong to accounts/applications.
USER_OWNED_PROVIDERS = frozenset({Provider.INTERNAL, Provider.OAUTH})


@dataclass(frozen=True, slots=True)
class SourceFailure:
    source: str
    reason: str
    message: str
    error: errors.UpstreamError | None = None


@dataclass(frozen=True, slots=True)
class TokenList:
    page: MergedPage
    failures: list[SourceFailure]


@dataclass(frozen=True, slots=True)
class PageArgs:
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None


# Reasons a source was left out without being asked (no error accompanies them).
SKIPPED_REASONS = frozenset({"NEEDS_FILTER", "FILTER_UNSUPPORTED"})


def unreported_filter(caps: Capabilities, flt: TokenFilter) -> str | None:
    """Why ``flt`` cannot be answered by a source with ``caps`` (a filter on a date it
    does not report), or None when it can."""
    if not caps.reports_last_used and (
        flt.last_used_before is not None or flt.never_used is not None
    ):
        return "this source does not record when a token was last used: lastUsedBefore and neverUsed cannot be answered"
    if not caps.reports_expiry and (
        flt.expires_before is not None or flt.expires_after is not None
    ):
        return "this source does not report expiry dates: expiresBefore and expiresAfter cannot be answered"
    return None


class TokenService:
    def __init__(
        self,
        store: StoreSource,
        upstreams: Sequence[TokenSource] = (),
        *,
        timeouts_s: Mapping[str, float] | None = None,
        default_timeout_s: float = 10.0,
        cursors: CursorCodec | None = None,
        on_call: call_outcomes.CallListener | None = None,
        secret_lookup_limiter: Callable[[str], Awaitable[float | None]] | None = None,
    ) -> None:
        self.store = store
        # tokensBySecret's own rate limit, per caller (None: unlimited; see security_ops).
        self.secret_lookup_limiter = secret_lookup_limiter
        # Told every source call's outcome (the gateway's metrics); failures are logged anyway.
        self.on_call = on_call
        # Signs every cursor handed out; without one, cursors hold in this process only.
        self.cursors = cursors if cursors is not None else CursorCodec.ephemeral()
        self.sources: dict[str, TokenSource] = {store.key: store}
        for source in upstreams:
            if source.key in self.sources:
                raise ValueError(f"duplicate source key {source.key!r}")
            self.sources[source.key] = source
        self._timeouts = dict(timeouts_s or {})
        self._default_timeout_s = default_timeout_s

    def timeout_for(self, key: str) -> float:
        return self._timeouts.get(key, self._default_timeout_s)

    def visible_sources(self, principal: Principal) -> list[TokenSource]:
        """The sources whose tokens the caller may read (``Query.sources`` lists these)."""
        return [s for s in self.sources.values() if may_read_source(principal, s)]

    def _may_ask(self, principal: Principal, source: TokenSource, local_id: str) -> bool:
        """Whether looking ``local_id`` up could find a token the caller may see: decided
        before the source is asked, so what the caller may not see costs nothing upstream.
        The internal store is local: its tokens are judged once read (``may_see``)."""
        if not may_read_source(principal, source):
            return False
        if principal.subject is None or source is self.store:
            return True
        return source.owner_in_id(local_id) == principal.subject

    # -- listing -------------------------------------------------------------------------

    async def list_tokens(
        self,
        principal: Principal,
        flt: TokenFilter,
        order: TokenOrder,
        args: PageArgs,
        *,
        count: bool = True,
    ) -> TokenList:
        """``count`` False: ``total_count`` is not wanted (sources may skip counting)."""
        require(principal, READ)
        window = _page_window(args, order, self.cursors)
        bound = self._bind_filter(principal, flt)
        return await self._list(principal, bound, order, window, count=count)

    async def list_user_tokens(
        self,
        principal: Principal,
        user_id: str,
        flt: TokenFilter,
        order: TokenOrder,
        args: PageArgs,
    ) -> TokenList:
        """One user's tokens (``User.tokens``): the OAuth-style tokens listed for that user
        and the internal tokens whose subject it is; sources whose tokens belong to
        accounts or applications are not asked at all. A caller bound to another user is
        refused before any source is asked."""
        require(principal, READ)
        if principal.subject is not None and principal.subject != user_id:
            raise errors.Forbidden("this token may only list its own user's tokens")
        if flt.user_id is not None and flt.user_id != user_id:
            raise errors.InvalidInput(
                "filter.userId must be left out or name this user", argument="filter.userId"
            )
        window = _page_window(args, order, self.cursors)
        within = None if principal.is_unbound_admin else principal.reach
        bound = replace(flt, user_id=user_id, owner_user=user_id, within=within)
        return await self._list(principal, bound, order, window, user_owned_only=True)

    async def list_own_tokens(
        self, principal: Principal, flt: TokenFilter, order: TokenOrder, args: PageArgs
    ) -> TokenList:
        """The caller's own tokens (``Viewer.tokens``): its subject's, as ``list_user_tokens``;
        an empty page for a caller bound to no user. Naming another user in the filter is
        ``FORBIDDEN``, as for ``tokens``."""
        require(principal, READ)
        subject = principal.subject
        if subject is None:
            _page_window(args, order, self.cursors)  # the arguments are checked all the same
            empty = MergedPage(
                edges=[], has_next_page=False, has_previous_page=False, total_count=0
            )
            return TokenList(page=empty, failures=[])
        if flt.user_id is not None and flt.user_id != subject:
            raise errors.Forbidden("this token may only list its own user's tokens")
        return await self.list_user_tokens(principal, subject, flt, order, args)

    async def _list(
        self,
        principal: Principal,
        flt: TokenFilter,
        order: TokenOrder,
        window: tuple[int, bool, Cursor | None],
        *,
        user_owned_only: bool = False,
        count: bool = True,
    ) -> TokenList:
        limit, backward, cursor = window
        failures: list[SourceFailure] = []
        chosen: list[TokenSource] = []
        for source in self._selected(principal, flt):
            if user_owned_only and source.provider not in USER_OWNED_PROVIDERS:
                continue
            unreported = unreported_filter(source.capabilities, flt)
            if unreported is not None:
                failures.append(SourceFailure(source.key, "FILTER_UNSUPPORTED", unreported))
                continue
            if source.capabilities.needs_user_filter and flt.user_id is None:
                failures.append(
                    SourceFailure(
                        source.key,
                        "NEEDS_FILTER",
                        "this source lists one user at a time: set filter.userId",
                    )
                )
                continue
            chosen.append(source)

        async def fetch(source: TokenSource) -> SourcePage:
            request = PageRequest(
                filter=flt,
                order=order,
                limit=limit,
                after=cursor.key if cursor is not None else None,
                position=positions_for(cursor, backward, source.key),
                backward=backward,
                count=count,
            )
            return await self._call(source, source.list_page(request))

        # Remote sources first: their requests leave before the store's local work starts.
        chosen.sort(key=lambda s: s.provider is Provider.INTERNAL)
        results = await asyncio.gather(*(fetch(s) for s in chosen), return_exceptions=True)
        pages: dict[str, SourcePage] = {}
        count_complete = True
        for source, result in zip(chosen, results, strict=True):
            if isinstance(result, errors.UpstreamError):
                failures.append(SourceFailure(source.key, result.reason, result.message, result))
                count_complete = False
            elif isinstance(result, BaseException):
                raise result
            else:
                pages[source.key] = result
        if any(f.reason in SKIPPED_REASONS for f in failures):
            count_complete = False
        page = merge_pages(
            pages,
            order=order,
            limit=limit,
            cursor=cursor,
            backward=backward,
            count_complete=count_complete,
            codec=self.cursors,
        )
        return TokenList(page=page, failures=failures)

    def _bind_filter(self, principal: Principal, flt: TokenFilter) -> TokenFilter:
        """Confine a user-bound caller to its own tokens, whatever the filter asked."""
        within = None if principal.is_unbound_admin else principal.reach
        subject = principal.subject
        if subject is None:
            return replace(flt, owner_user=None, within=within)
        if flt.user_id is not None and flt.user_id != subject:
            raise errors.Forbidden("this token may only list its own user's tokens")
        return replace(flt, user_id=subject, owner_user=subject, within=within)

    def _selected(self, principal: Principal, flt: TokenFilter) -> list[TokenSource]:
        if flt.sources is not None:
            # A source the caller may not read is as unknown to it as one that is not there.
            unknown = sorted(
                k
                for k in flt.sources
                if k not in self.sources or not may_read_source(principal, self.sources[k])
            )
            if unknown:
                raise errors.InvalidInput(
                    f"unknown source {unknown[0]!r}", argument="filter.sources"
                )
        chosen = []
        for source in self.sources.values():
            if flt.sources is not None and source.key not in flt.sources:
                continue
            if flt.providers is not None and source.provider not in flt.providers:
                continue
            if not may_read_source(principal, source):
                continue
            chosen.append(source)
        return chosen

    async def _call(self, source: TokenSource, call: Awaitable[T]) -> T:
        """One call to a source within its deadline, its outcome recorded (a call cut short
        because the request itself was cancelled is not an outcome)."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_for(source.key)):
                result = await call
        except TimeoutError as exc:
            error = errors.UpstreamTimeout(
                source.key, f"source {source.key!r} did not answer in time"
            )
            self._record(source, error, started)
            raise error from exc
        except Exception as exc:
            self._record(source, exc, started)
            raise
        self._record(source, None, started)
        return result

    def _record(self, source: TokenSource, error: BaseException | None, started: float) -> None:
        call_outcomes.record(source.key, error, time.perf_counter() - started, self.on_call)

    # -- lookups -------------------------------------------------------------------------

    async def load_tokens(
        self, principal: Principal, global_ids: Sequence[str]
    ) -> list[Token | errors.TokengateError | None]:
        """One entry per id: the token, None when absent or not the caller's, or an error.

        N ids of one source cost one ``get_many`` call; sources are asked concurrently.
        """
        require(principal, READ)
        wanted: dict[str, list[str]] = defaultdict(list)
        parsed: list[tuple[str, str] | None] = []
        for gid in global_ids:
            try:
                type_name, key, local_id = ids.decode(gid)
            except errors.InvalidInput:
                parsed.append(None)
                continue
            source = self.sources.get(key)
            if (
                type_name != "Token"
                or source is None
                or not self._may_ask(principal, source, local_id)
            ):
                parsed.append(None)
                continue
            parsed.append((key, local_id))
            wanted[key].append(local_id)
        keys = list(wanted)
        results = await asyncio.gather(
            *(self._call(self.sources[k], self.sources[k].get_many(wanted[k])) for k in keys),
            return_exceptions=True,
        )
        found: dict[str, dict[str, Token] | errors.TokengateError] = {}
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, errors.TokengateError):
                found[key] = result
            elif isinstance(result, BaseException):
                raise result
            else:
                found[key] = result
        out: list[Token | errors.TokengateError | None] = []
        for entry in parsed:
            if entry is None:
                out.append(None)
                continue
            key, local_id = entry
            bucket = found[key]
            if isinstance(bucket, errors.TokengateError):
                out.append(bucket)
                continue
            token = bucket.get(local_id)
            out.append(token if token is not None and may_see(principal, token) else None)
        return out

    async def _visible_token(self, principal: Principal, global_id: str) -> Token:
        try:
            type_name, _key, _local = ids.decode(global_id)
        except errors.InvalidInput:
            raise errors.NotFound("no token with this id") from None
        if type_name != "Token":
            raise errors.NotFound("no token with this id")
        [token] = await self.load_tokens(principal, [global_id])
        if isinstance(token, errors.TokengateError):
            raise token
        if token is None:
            raise errors.NotFound("no token with this id")
        return token

    # -- mutations -----------------------------------------------------------------------

    async def create_token(
        self, principal: Principal, source_key: str, spec: CreateSpec
    ) -> Created:
        require(principal, WRITE)
        target = ids.source_id(source_key) if ids.SOURCE_KEY_PATTERN.fullmatch(source_key) else "?"
        async with self._audited(principal, "create", target, source_key) as record:
            source = self.sources.get(source_key)
            if source is None or not principal.may_use_source(source_key):
                raise errors.InvalidInput(f"unknown source {source_key!r}", argument="source")
            if not source.capabilities.can_create:
                raise errors.Unsupported(f"source {source_key!r} cannot create tokens")
            if isinstance(source, StoreSource):
                spec = self._bounded_internal_spec(principal, spec)
                created = await self.store.create(
                    spec,
                    created_by=principal.token_id or None,
                    lineage=None if principal.is_unbound_admin else principal.bucket,
                )
            else:
                if principal.subject is not None:
                    raise errors.Forbidden(
                        "a token bound to a user may create only internal tokens for that user"
                    )
                if spec.subject is not None or spec.allowed_sources is not None:
                    raise errors.InvalidInput(
                        "subject and allowedSources apply to internal tokens only",
                        argument="subject" if spec.subject is not None else "allowedSources",
                    )
                created = await self._call(source, source.create(spec))
            record.target = ids.token_id(source_key, created.token.local_id)
        return created

    def _bounded_internal_spec(self, principal: Principal, spec: CreateSpec) -> CreateSpec:
        """Nobody creates a token with more scopes or a wider binding than their own: the
        new token's ``Reach`` must be covered by the caller's."""
        reach = principal.reach
        granted = effective_scopes(spec.scopes if spec.scopes is not None else (READ,))
        wider = sorted(granted - reach.scopes)
        if wider:
            raise errors.Forbidden(f"cannot grant scope {wider[0]!r}: the caller lacks it")
        subject = spec.subject
        if principal.subject is not None:
            if subject is not None and subject != principal.subject:
                raise errors.Forbidden("cannot bind a token to another user")
            subject = principal.subject
        allowed = spec.allowed_sources
        if allowed is not None:
            unknown = sorted(k for k in allowed if k not in self.sources)
            if unknown:
                raise errors.InvalidInput(
                    f"unknown source {unknown[0]!r}", argument="allowedSources"
                )
        if principal.allowed_sources is not None:
            if allowed is None:
                allowed = principal.allowed_sources
            elif not allowed <= principal.allowed_sources:
                raise errors.Forbidden("cannot allow sources the caller may not use")
        if not reach.covers(Reach(granted, subject, allowed)):  # the checks above, once more
            raise errors.Forbidden("cannot create a token wider than the caller")
        return replace(spec, subject=subject, allowed_sources=allowed)

    async def update_token(self, principal: Principal, global_id: str, spec: UpdateSpec) -> Token:
        require(principal, WRITE)
        async with self._audited(principal, "update", global_id, _source_of(global_id)):
            token = await self._visible_token(principal, global_id)
            source = self.sources[token.source]
            if not source.capabilities.can_update:
                raise errors.Unsupported(f"source {token.source!r} cannot update tokens")
            if spec.is_empty():
                return token
            return await self._call(source, source.update(token.local_id, spec))

    async def revoke_token(self, principal: Principal, global_id: str) -> str:
        require(principal, WRITE)
        async with self._audited(principal, "revoke", global_id, _source_of(global_id)):
            token = await self._visible_token(principal, global_id)
            source = self.sources[token.source]
            if not source.capabilities.can_revoke:
                raise errors.Unsupported(f"source {token.source!r} cannot revoke tokens")
            await self._call(source, source.revoke(token.local_id))
        return global_id

    @contextlib.asynccontextmanager
    async def _audited(
        self, principal: Principal, action: str, target: str, source: str
    ) -> AsyncIterator[_AuditRecord]:
        """Writes one audit record per mutation, whatever its outcome."""
        record = _AuditRecord(target)
        outcome = "ok"
        try:
            yield record
        except errors.TokengateError as exc:
            outcome = exc.code
            raise
        except Exception:
            outcome = "INTERNAL_SERVER_ERROR"
            raise
        finally:
            try:
                await self.store.record_audit(
                    actor_token_id=principal.token_id or None,
                    actor_subject=principal.jwt_subject,
                    action=action,
                    target_id=record.target[:512],
                    source=source[:64],
                    outcome=outcome,
                )
            except Exception:
                log.exception("could not write the audit record of a %s", action)

    async def aclose(self) -> None:
        for source in self.sources.values():
            await source.aclose()


@dataclass
class _AuditRecord:
    target: str


def _source_of(global_id: str) -> str:
    try:
        return ids.decode(global_id)[1]
    except errors.InvalidInput:
        return "?"


def require(principal: Principal, scope: str) -> None:
    if not principal.has(scope):
        raise errors.Forbidden(f"this operation needs the scope {scope!r}")


def require_unbound_admin(principal: Principal) -> None:
    """For what spans every owner and source (the audit log)."""
    require(principal, ADMIN)
    if not principal.is_unbound_admin:
        raise errors.Forbidden(
            "this operation needs a tokens:admin token bound to no user or source"
        )


def may_read_source(principal: Principal, source: TokenSource) -> bool:
    """Whether the caller may read tokens of ``source`` at all: its source binding allows
    it, and a caller bound to a user reads only sources whose tokens can belong to users."""
    if not principal.may_use_source(source.key):
        return False
    return principal.subject is None or source.provider in USER_OWNED_PROVIDERS


def token_reach(token: Token) -> Reach:
    """The rights an internal token grants its holder."""
    owner = token.owner
    subject = owner.id if owner is not None and owner.kind is OwnerKind.USER else None
    return Reach(effective_scopes(token.scopes), subject, token.bound_sources)


def may_see(principal: Principal, token: Token) -> bool:
    """Whether a token is the caller's to see and act on: the caller's source and user
    bindings hold whatever its scopes, and an internal token must be no wider than the
    caller (``Reach.covers``) unless the caller is an unbound admin."""
    if not principal.may_use_source(token.source):
        return False
    subject = principal.subject
    if subject is not None and (
        token.owner is None or token.owner.kind is not OwnerKind.USER or token.owner.id != subject
    ):
        return False
    if token.provider is Provider.INTERNAL and not principal.is_unbound_admin:
        return principal.reach.covers(token_reach(token))
    return True


def _page_window(
    args: PageArgs, order: TokenOrder, codec: CursorCodec
) -> tuple[int, bool, Cursor | None]:
    """(limit, backward, decoded cursor) from Relay arguments, refusing ambiguous ones."""
    if args.first is not None and args.last is not None:
        raise errors.InvalidInput("pass first or last, not both", argument="last")
    if args.after is not None and args.before is not None:
        raise errors.InvalidInput("pass after or before, not both", argument="before")
    backward = args.last is not None or (args.before is not None and args.first is None)
    if args.first is not None and args.before is not None:
        raise errors.InvalidInput("before goes with last; after goes with first", argument="before")
    if args.last is not None and args.after is not None:
        raise errors.InvalidInput("after goes with first; before goes with last", argument="after")
    size = args.last if backward else args.first
    argument = "last" if backward else "first"
    if size is None:
        size = DEFAULT_PAGE_SIZE
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise errors.InvalidInput(
            f"{argument} must be between 1 and {MAX_PAGE_SIZE} (got {size})", argument=argument
        )
    text = args.before if backward else args.after
    cursor = decode_cursor(text, order, codec) if text is not None else None
    return size, backward, cursor


__all__ = [
    "ADMIN",
    "PageArgs",
    "SourceFailure",
    "TokenList",
    "TokenService",
    "may_read_source",
    "may_see",
    "require_unbound_admin",
]
