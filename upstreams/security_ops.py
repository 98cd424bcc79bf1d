"""What a security team comes for: the token behind a leaked secret, and bulk revocation.

Both are decided the way the rest of the service decides: who may call is settled before
any source is asked, and every token acted on passes the same checks as ``revokeToken``.

``find_by_secret`` (unbound admins only): every source that can look secrets up is asked
concurrently; the secret is passed down as an argument and never logged, audited, put in
an error or kept. Calls are rate limited per caller on their own bucket and audited as
``lookup_secret`` with the matched token ids as the target.

``revoke_matching``: the tokens a filter selects among those the caller may revoke, in
creation order, at most ``max`` per call. Each source is listed after its own position in
the cursor (sealed, bound to the caller, the filter and ``dry_run``), so a source that fails
is resumed where it stood by the next call while the others move on. Revocations run one
at a time per source, sources concurrently; an upstream failure stops that source's share
of the call (the token is reported failed and retried by the next call).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from tokengate.upstreams import errors, ids, ordering
from tokengate.upstreams.base import TokenSource
from tokengate.upstreams.model import (
    OrderField,
    PageRequest,
    SortKey,
    SourcePage,
    Status,
    Token,
    TokenFilter,
    TokenOrder,
)
from tokengate.upstreams.principal import WRITE, Principal
from tokengate.upstreams.secret_lookup import (
    DEFAULT_MAX_PAGES,
    MAX_SECRET_LENGTH,
    OwnCredentialAware,
    SecretFound,
    SecretLookup,
    SecretSearchable,
    lookup_kind,
)
from tokengate.upstreams.service import (
    USER_OWNED_PROVIDERS,
    TokenService,
    may_see,
    require,
    require_unbound_admin,
)
from tokengate.upstreams.store.rows import from_us, to_us

log = logging.getLogger("tokengate.service")
MAX_REVOKE = 500
DEFAULT_REVOKE = 100
REVOKE_CURSOR_KIND = b"revoke-tokens"
_ORDER = TokenOrder(OrderField.CREATED_AT)

# Told a caller's rate key; answers None (go on) or the seconds to wait.
Limiter = Callable[[str], Awaitable[float | None]]


# -- find a token by its secret -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecretLookupResult:
    found: list[SecretFound]
    failures: list[errors.UpstreamError]


async def find_by_secret(
    service: TokenService,
    principal: Principal,
    secret: str,
    *,
    limiter: Limiter | None = None,
    max_pages: int = DEFAULT_MAX_PAGES,
) -> SecretLookupResult:
    outcome = "ok"
    target = "-"
    try:
        require_unbound_admin(principal)
        if limiter is not None:
            wait = await limiter(principal.bucket)
            if wait is not None:
                retry = max(1, int(wait + 0.999))
                raise errors.RateLimited(
                    f"too many secret lookups for this caller: retry in {retry} s",
                    retry_after_s=retry,
                )
        secret = secret.strip()
        if not secret or len(secret) > MAX_SECRET_LENGTH:
            raise errors.InvalidInput(
                f"secret must be 1 to {MAX_SECRET_LENGTH} characters", argument="secret"
            )
        searchable = [
            s for s in service.sources.values() if lookup_kind(s) is not SecretLookup.NONE
        ]
        # Remote sources first, as for lists: their requests leave before the store's work.
        searchable.sort(key=lambda s: s.key == service.store.key)

        async def search(source: TokenSource) -> list[SecretFound]:
            assert isinstance(source, SecretSearchable)
            result = await service._call(source, source.find_secret(secret, max_pages=max_pages))
            if not result.complete:
                raise errors.UpstreamUnavailable(
                    source.key,
                    f"source {source.key!r} holds more tokens than one search reads "
                    f"({max_pages} list pages per application): the search there is incomplete",
                )
            return result.found

        results = await asyncio.gather(*(search(s) for s in searchable), return_exceptions=True)
        found: list[SecretFound] = []
        failures: list[errors.UpstreamError] = []
        for result in results:
            if isinstance(result, errors.UpstreamError):
                failures.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                found.extend(result)
        found.sort(key=lambda f: (f.match != "EXACT", f.token.source, f.token.local_id))
        target = " ".join(ids.token_id(f.token.source, f.token.local_id) for f in found) or "-"
        if failures:
            outcome = "partial"
        return SecretLookupResult(found, failures)
    except errors.TokengateError as exc:
        outcome = exc.code
        raise
    except Exception:
        outcome = "INTERNAL_SERVER_ERROR"
        raise
    finally:
        await _audit(service, principal, "lookup_secret", target, "*", outcome)


async def _audit(
    service: TokenService,
    principal: Principal,
    action: str,
    target: str,
    source: str,
    outcome: str,
) -> None:
    try:
        await service.store.record_audit(
            actor_token_id=principal.token_id or None,
            actor_subject=principal.jwt_subject,
            action=action,
            target_id=target[:512],
            source=source[:64],
            outcome=outcome,
        )
    except Exception:
        log.exception("could not write the audit record of a %s", action)


# -- bulk revocation --------------------------------------------------------------------------


class SkipReason(enum.StrEnum):
    UNSUPPORTED = "UNSUPPORTED"
    CALLER_TOKEN = "CALLER_TOKEN"  # noqa: S105 (a reason, not a password)
    GATEWAY_CREDENTIAL = "GATEWAY_CREDENTIAL"
    ALREADY_REVOKED = "ALREADY_REVOKED"


SKIP_MESSAGES = {
    SkipReason.UNSUPPORTED: "this source cannot revoke tokens",
    SkipReason.CALLER_TOKEN: "the token making this call is never revoked by it",
    SkipReason.GATEWAY_CREDENTIAL: "the gateway's own credential at this source is never revoked",
    SkipReason.ALREADY_REVOKED: "already revoked",
}


@dataclass(frozen=True, slots=True)
class Skipped:
    token: Token
    reason: SkipReason

    @property
    def message(self) -> str:
        return SKIP_MESSAGES[self.reason]


@dataclass(frozen=True, slots=True)
class Failed:
    token: Token
    code: str
    message: str


@dataclass
class SourceOutcome:
    source: str
    revoked: list[Token] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    # Why the source did not take (all of) its share: a code and a message.
    problem: tuple[str, str] | None = None
    complete: bool = True


@dataclass(frozen=True, slots=True)
class RevokeResult:
    dry_run: bool
    sources: list[SourceOutcome]
    cursor: str | None


@dataclass
class _Position:
    """Where one source stands: after ``key`` (None: from the start), or done."""

    key: SortKey | None = None
    hint: str | None = None
    done: bool = False
    # This call's share of the source, in order, with each token's resume hint.
    pending: list[tuple[Token, str | None]] = field(default_factory=list)


def _fingerprint(principal: Principal, flt: TokenFilter, dry_run: bool) -> str:
    """What a cursor is bound to: the caller, its filter (as bound) and the mode, spelt the
    same in every process (sets sorted: string hashing differs between processes)."""
    text = json.dumps(
        [principal.token_id, principal.jwt_subject, _plain(flt), dry_run],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _plain(value: object) -> object:
    """``value`` as JSON-ready data with one spelling (see ``_fingerprint``)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, frozenset | set):
        return sorted(str(_plain(v)) for v in value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _seal(service: TokenService, bound: str, positions: dict[str, _Position]) -> str:
    state: dict[str, Any] = {}
    for key, position in positions.items():
        if position.done:
            state[key] = 0
        elif position.key is not None:
            value = position.key.value
            state[key] = [
                to_us(value) if isinstance(value, datetime) else None,
                position.key.local_id,
                position.hint,
            ]
    payload = json.dumps({"b": bound, "s": state}, separators=(",", ":"), sort_keys=True)
    return service.cursors.seal(payload.encode("utf-8"), kind=REVOKE_CURSOR_KIND)


def _open(service: TokenService, cursor: str, bound: str) -> dict[str, _Position]:
    raw = service.cursors.open(cursor, kind=REVOKE_CURSOR_KIND)
    invalid = errors.InvalidCursor(
        "the cursor is not valid here: continue with the cursor of the previous call, "
        "with the same filter and dryRun"
    )
    try:
        payload = json.loads(raw)
        if payload["b"] != bound:
            raise invalid
        positions: dict[str, _Position] = {}
        for key, entry in payload["s"].items():
            if entry == 0:
                positions[key] = _Position(done=True)
                continue
            micros, local_id, hint = entry
            value = from_us(micros) if micros is not None else None
            positions[key] = _Position(SortKey(value, key, local_id), hint)
        return positions
    except (ValueError, KeyError, TypeError, AttributeError):
        raise invalid from None


def bulk_filter(service: TokenService, principal: Principal, flt: TokenFilter) -> TokenFilter:
    """The caller's filter bound as for ``tokens``; a ``userId`` selects that user's tokens
    (its OAuth-style tokens and the internal tokens whose subject it is), as ``User.tokens``."""
    bound = service._bind_filter(principal, flt)
    if bound.user_id is not None:
        bound = replace(bound, owner_user=bound.user_id)
    return bound


async def revoke_matching(
    service: TokenService,
    principal: Principal,
    flt: TokenFilter,
    *,
    dry_run: bool = True,
    max_count: int = DEFAULT_REVOKE,
    after: str | None = None,
) -> RevokeResult:
    require(principal, WRITE)
    if not 1 <= max_count <= MAX_REVOKE:
        raise errors.InvalidInput(f"max must be between 1 and {MAX_REVOKE}", argument="max")
    bound = bulk_filter(service, principal, flt)
    fingerprint = _fingerprint(principal, bound, dry_run)
    positions = _open(service, after, fingerprint) if after is not None else {}
    outcomes: dict[str, SourceOutcome] = {}
    chosen: list[TokenSource] = []
    for source in service._selected(principal, bound):
        if bound.owner_user is not None and source.provider not in USER_OWNED_PROVIDERS:
            continue  # accounts' and applications' tokens are no user's
        outcome = outcomes[source.key] = SourceOutcome(source.key)
        position = positions.setdefault(source.key, _Position())
        if position.done:
            continue
        if source.capabilities.needs_user_filter and bound.user_id is None:
            outcome.problem = ("NEEDS_FILTER", "this source lists one user at a time: set userId")
            outcome.complete = False
            position.done = True  # nothing to resume: it was never listed
            continue
        chosen.append(source)
    # Every decision about the caller is made; now the sources are asked.
    pages = await asyncio.gather(
        *(_list(service, s, bound, positions[s.key], max_count) for s in chosen),
        return_exceptions=True,
    )
    listed: list[Token] = []
    source_pages: dict[str, SourcePage] = {}
    for source, page in zip(chosen, pages, strict=True):
        if isinstance(page, errors.TokengateError):
            outcomes[source.key].problem = (page.code, page.message)
            outcomes[source.key].complete = False
        elif isinstance(page, BaseException):
            raise page
        else:
            source_pages[source.key] = page
            listed.extend(item.token for item in page.items)
    taken = ordering.order_tokens(listed, _ORDER)[:max_count]
    by_source: dict[str, list[Token]] = {}
    for token in taken:
        by_source.setdefault(token.source, []).append(token)
    for key, page in source_pages.items():
        mine = by_source.get(key, [])
        if not page.has_more and len(mine) == len(page.items):
            positions[key].done = True
        hints = {item.token.local_id: item.position for item in page.items}
        positions[key].pending = [(t, hints.get(t.local_id)) for t in mine]
    await asyncio.gather(
        *(
            _settle(
                service, principal, service.sources[key], outcomes[key], positions[key], dry_run
            )
            for key in source_pages
        )
    )
    more = any(not p.done for k, p in positions.items() if k in outcomes)
    cursor = _seal(service, fingerprint, positions) if more else None
    return RevokeResult(dry_run, list(outcomes.values()), cursor)


async def _list(
    service: TokenService,
    source: TokenSource,
    flt: TokenFilter,
    position: _Position,
    limit: int,
) -> SourcePage:
    request = PageRequest(
        filter=flt, order=_ORDER, limit=limit, after=position.key, position=position.hint
    )
    return await service._call(source, source.list_page(request))


async def _settle(
    service: TokenService,
    principal: Principal,
    source: TokenSource,
    outcome: SourceOutcome,
    position: _Position,
    dry_run: bool,
) -> None:
    """Sort this source's share into revoked, skipped and failed; revoke unless dry run."""
    pending = position.pending
    candidates: list[Token] = []
    for token, _hint in pending:
        if not may_see(principal, token):
            continue  # the filter confined the listing; this is the second check
        reason = _skip_reason(principal, source, token)
        if reason is not None:
            outcome.skipped.append(Skipped(token, reason))
        else:
            candidates.append(token)
    own: set[str] = set()
    if candidates and isinstance(source, OwnCredentialAware):
        try:
            own = await service._call(source, source.own_credentials(candidates))
        except errors.TokengateError as exc:
            # Unsure which token is the gateway's own: revoke none; the next call retries.
            outcome.problem = (exc.code, exc.message)
            outcome.complete = False
            position.done = False
            outcome.failed.extend(Failed(t, exc.code, exc.message) for t in candidates)
            return
    wanted = {t.local_id for t in candidates}
    last: tuple[Token, str | None] | None = None
    for token, hint in pending:
        if token.local_id not in wanted:
            last = (token, hint)
            continue
        if token.local_id in own:
            outcome.skipped.append(Skipped(token, SkipReason.GATEWAY_CREDENTIAL))
            last = (token, hint)
            continue
        if dry_run:
            outcome.revoked.append(token)
            last = (token, hint)
            continue
        error = await _revoke_one(service, principal, source, token)
        if error is None:
            outcome.revoked.append(token)
        elif isinstance(error, errors.Forbidden) and source.key != service.store.key:
            # Amper refuses to revoke the gateway's own credential itself.
            outcome.skipped.append(Skipped(token, SkipReason.GATEWAY_CREDENTIAL))
        else:
            outcome.failed.append(Failed(token, error.code, error.message))
            if isinstance(error, errors.UpstreamError):
                # The source is failing: stop here; the next call starts at this token.
                outcome.problem = (error.code, error.message)
                outcome.complete = False
                position.done = False
                _advance(position, last)
                return
        last = (token, hint)
    _advance(position, last)


def _advance(position: _Position, last: tuple[Token, str | None] | None) -> None:
    if last is not None:
        token, hint = last
        position.key = ordering.sort_key(token, _ORDER.field)
        position.hint = hint


def _skip_reason(principal: Principal, source: TokenSource, token: Token) -> SkipReason | None:
    if not source.capabilities.can_revoke:
        return SkipReason.UNSUPPORTED
    if token.provider == "INTERNAL":
        if principal.token_id and token.local_id == principal.token_id:
            return SkipReason.CALLER_TOKEN
        if token.status is Status.REVOKED:
            return SkipReason.ALREADY_REVOKED
    return None


async def _revoke_one(
    service: TokenService, principal: Principal, source: TokenSource, token: Token
) -> errors.TokengateError | None:
    """``revokeToken``'s revocation of a token already judged visible: audited alike."""
    global_id = ids.token_id(token.source, token.local_id)
    try:
        async with service._audited(principal, "revoke", global_id, source.key):
            await service._call(source, source.revoke(token.local_id))
    except errors.TokengateError as exc:
        return exc
    return None


__all__ = [
    "DEFAULT_REVOKE",
    "MAX_REVOKE",
    "RevokeResult",
    "SecretLookupResult",
    "SourceOutcome",
    "find_by_secret",
    "revoke_matching",
]
