"""``GET /export``: the inventory of every token the caller may read, streamed as CSV or
JSON lines, with a trailer that names every source left out.

The walk is ``upstreams.export``; this module negotiates, authorizes, parses the filter
(the ``filter`` query parameter: the JSON of a GraphQL ``TokenFilter``, coerced by the
schema itself, so it means exactly what it means in ``tokens``) and formats. Every line
of both formats is written from a fixed set of normalised fields: no secret is part of a
``Token``, so none can be written.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import os
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

import orjson
from graphql import GraphQLError, GraphQLInputObjectType, Undefined
from graphql.utilities import coerce_input_value, validate_input_value
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from tokengate.gateway.config import ConfigError
from tokengate.schema.inputs import TokenFilterInput, to_filter
from tokengate.upstreams import errors, ids
from tokengate.upstreams.export import ExportSummary, export_pages, export_sources
from tokengate.upstreams.model import Capabilities, Token, TokenFilter
from tokengate.upstreams.principal import ADMIN, Principal
from tokengate.upstreams.service import TokenService

log = logging.getLogger("tokengate.export")

CSV = "text/csv"
NDJSON = "application/x-ndjson"
# The CSV trailer's first characters; what follows is the JSONL trailer's object.
CSV_TRAILER_PREFIX = "# tokengate-export "
MAX_FILTER_CHARS = 4096
TIMEOUT_ENV = "TOKENGATE_EXPORT_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 900.0
DEFAULT_CONCURRENCY = 2

COLUMNS = (
    "id",
    "source",
    "provider",
    "externalId",
    "name",
    "status",
    "scopes",
    "description",
    "ownerKind",
    "ownerId",
    "clientName",
    "deviceName",
    "authMethod",
    "createdAt",
    "lastUsedAt",
    "lastUseRecorded",
    "updatedAt",
    "expiresAt",
    "expiryReported",
    "secretHint",
)
# Spreadsheets run a cell that starts with one of these as a formula ("CSV injection"):
# upstream names and descriptions are not ours, so such a cell gets a leading "'".
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _date(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def token_record(token: Token, caps: Capabilities) -> dict[str, Any]:
    """The normalised fields of ``token``, named as in GraphQL (``id`` is its global id),
    and whether its source records use and reports expiry (``caps``): an empty
    ``lastUsedAt`` of a source that records no use is unknown, not "never used"."""
    owner = token.owner
    return {
        "id": ids.token_id(token.source, token.local_id),
        "source": token.source,
        "provider": token.provider.value,
        "externalId": token.external_id,
        "name": token.name,
        "status": token.status.value,
        "scopes": list(token.scopes),
        "description": token.description,
        "ownerKind": owner.kind.value if owner is not None else None,
        "ownerId": owner.id if owner is not None else None,
        "clientName": token.client_name,
        "deviceName": token.device_name,
        "authMethod": token.auth_method,
        "createdAt": _date(token.created_at),
        "lastUsedAt": _date(token.last_used_at),
        "lastUseRecorded": caps.reports_last_used,
        "updatedAt": _date(token.updated_at),
        "expiresAt": _date(token.expires_at),
        "expiryReported": caps.reports_expiry,
        "secretHint": token.secret_hint,
    }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = " ".join(value) if isinstance(value, list) else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def trailer(summary: ExportSummary) -> dict[str, Any]:
    return {
        "complete": summary.complete,
        "count": summary.count,
        "failedSources": [
            {
                "source": f.source,
                "reason": f.reason,
                "message": f.message,
                "exported": f.exported,
                "skipped": f.skipped,
            }
            for f in summary.failures
        ],
    }


class CsvFormat:
    media_type = CSV

    def header(self) -> bytes:
        return self._rows([list(COLUMNS)])

    def page(self, tokens: list[Token], caps: Mapping[str, Capabilities]) -> bytes:
        records = (token_record(t, caps[t.source]) for t in tokens)
        return self._rows([[_cell(r[c]) for c in COLUMNS] for r in records])

    def end(self, summary: ExportSummary) -> bytes:
        return (CSV_TRAILER_PREFIX + orjson.dumps(trailer(summary)).decode() + "\r\n").encode()

    @staticmethod
    def _rows(rows: list[list[str]]) -> bytes:
        out = io.StringIO()
        csv.writer(out, lineterminator="\r\n").writerows(rows)
        return out.getvalue().encode()


class JsonLinesFormat:
    media_type = NDJSON

    def header(self) -> bytes:
        return b""

    def page(self, tokens: list[Token], caps: Mapping[str, Capabilities]) -> bytes:
        return b"".join(orjson.dumps(token_record(t, caps[t.source])) + b"\n" for t in tokens)

    def end(self, summary: ExportSummary) -> bytes:
        return orjson.dumps(trailer(summary)) + b"\n"


Format = CsvFormat | JsonLinesFormat


def negotiate(accept: str) -> Format | None:
    """The format the ``Accept`` header names (the first of the two that it lists with a
    q above 0), or None: wildcards are not enough, the caller must say which."""
    best: tuple[float, int, Format] | None = None
    for position, item in enumerate(accept.split(",")):
        media, _, params = item.partition(";")
        media = media.strip().lower()
        fmt: Format
        if media == CSV:
            fmt = CsvFormat()
        elif media == NDJSON:
            fmt = JsonLinesFormat()
        else:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and (best is None or (q, -position) > (best[0], best[1])):
            best = (q, -position, fmt)
    return best[2] if best is not None else None


class FilterParser:
    """The ``filter`` parameter: a JSON object coerced by the schema's ``TokenFilter``
    input type (the GraphQL rules: unknown fields, wrong types and bad dates refused),
    then validated as the ``tokens`` field validates it."""

    def __init__(self, schema: Any) -> None:
        input_type = schema._schema.get_type("TokenFilter")
        if not isinstance(input_type, GraphQLInputObjectType):  # pragma: no cover
            raise TypeError("the schema has no TokenFilter input")
        self._type = input_type
        definition = TokenFilterInput.__strawberry_definition__  # type: ignore[attr-defined]
        converter = schema.config.name_converter
        self._names = {converter.from_field(f): f.python_name for f in definition.fields}

    def parse(self, text: str | None) -> TokenFilter:
        if text is None or text == "":
            return TokenFilter()
        if len(text) > MAX_FILTER_CHARS:
            raise errors.InvalidInput(
                f"filter must be at most {MAX_FILTER_CHARS} characters", argument="filter"
            )
        try:
            raw = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise errors.InvalidInput("filter is not JSON", argument="filter") from None
        if not isinstance(raw, dict):
            raise errors.InvalidInput("filter must be a JSON object", argument="filter")
        problems: list[str] = []

        def refused(error: GraphQLError, path: Any) -> None:
            # Named by where it is, never by the caller's value (not echoed back).
            where = ".".join(str(p) for p in path) if path else ""
            if where:
                problems.append(f"filter.{where} is not a valid value of its type")
            else:
                problems.append("filter: " + error.message.split(", found:")[0])

        validate_input_value(raw, self._type, refused, hide_suggestions=True)
        coerced = coerce_input_value(raw, self._type) if not problems else Undefined
        if problems or not isinstance(coerced, dict):
            detail = problems[0] if problems else "filter is not a TokenFilter"
            raise errors.InvalidInput(detail, argument="filter")
        kwargs = {self._names[k]: v for k, v in coerced.items() if k in self._names}
        return to_filter(TokenFilterInput(**kwargs))


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps({"errors": [{"message": message, "extensions": {"code": code}}]})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def timeout_from_env() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{TIMEOUT_ENV} must be a number of seconds") from None
    if not 1 <= value <= 86_400:
        raise ConfigError(f"{TIMEOUT_ENV} must be between 1 and 86400")
    return value


class ExportEndpoint:
    """The ASGI app behind ``BearerAuth`` (which answers 401 and the rate limit)."""

    def __init__(
        self,
        service: TokenService,
        schema: Any,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self.service = service
        self.filters = FilterParser(schema)
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(concurrency)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._respond(Request(scope, receive))
        try:
            await response(scope, receive, send)
        finally:
            # Released here, not in the body: a client gone before the body started
            # leaves a generator that never runs its cleanup.
            if isinstance(response, StreamingResponse):
                self._slots.release()

    async def _respond(self, request: Request) -> Response:
        principal: Principal | None = request.scope.get("state", {}).get("principal")
        if principal is None:  # BearerAuth lets pages through unauthenticated; not this
            return _error(
                401,
                "UNAUTHENTICATED",
                "missing credentials: send Authorization: Bearer <token>",
                {"WWW-Authenticate": 'Bearer realm="tokengate"'},
            )
        if not principal.has(ADMIN):
            return _error(403, "FORBIDDEN", "the export needs the scope 'tokens:admin'")
        fmt = negotiate(request.headers.get("accept", ""))
        if fmt is None:
            return _error(406, "NOT_ACCEPTABLE", f"send Accept: {CSV} or Accept: {NDJSON}")
        try:
            flt = self.filters.parse(request.query_params.get("filter"))
            export_sources(self.service, principal, flt)
        except errors.Forbidden as exc:
            return _error(403, exc.code, exc.message)
        except errors.TokengateError as exc:
            return _error(400, exc.code, exc.message)
        if self._slots.locked():
            return _error(
                429,
                "RATE_LIMITED",
                "too many exports are running: retry in 5 s",
                {"Retry-After": "5"},
            )
        await self._slots.acquire()
        summary = ExportSummary()
        pages = export_pages(self.service, principal, flt, summary, deadline_s=self.timeout_s)
        try:
            # The first page before the answer starts: whatever the service refuses in the
            # filter (another user's userId...) is still an HTTP status, not a cut stream.
            first = await anext(pages, None)
        except errors.TokengateError as exc:
            self._slots.release()
            status = 403 if isinstance(exc, errors.Forbidden) else 400
            return _error(status, exc.code, exc.message)
        except BaseException:
            self._slots.release()
            raise
        await self._audit(principal, request.query_params.get("filter"), flt)
        return StreamingResponse(
            self._body(fmt, first, pages, summary),
            media_type=fmt.media_type,
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    async def _audit(self, principal: Principal, text: str | None, flt: TokenFilter) -> None:
        """One audit record per export that starts (a read of everything is worth a trace
        even if the client goes away); the filter as sent is its detail. Never fatal."""
        sources = ",".join(sorted(flt.sources)) if flt.sources is not None else "*"
        try:
            await self.service.store.record_audit(
                actor_token_id=principal.token_id or None,
                actor_subject=principal.jwt_subject,
                action="export",
                target_id="inventory",
                source=sources[:64],
                outcome="ok",
                detail=text,
            )
        except Exception:
            log.exception("could not write the audit record of an export")

    async def _body(
        self,
        fmt: Format,
        first: list[Token] | None,
        pages: AsyncIterator[list[Token]],
        summary: ExportSummary,
    ) -> AsyncIterator[bytes]:
        try:
            head = fmt.header()
            if head:
                yield head
            caps = {key: source.capabilities for key, source in self.service.sources.items()}
            if first is not None:
                yield fmt.page(first, caps)
                async for page in pages:
                    yield fmt.page(page, caps)
            yield fmt.end(summary)
        finally:
            log.info(
                "export of %d token(s), %s",
                summary.count,
                "complete" if summary.complete else f"{len(summary.failures)} source(s) left out",
            )


__all__ = [
    "COLUMNS",
    "CSV",
    "CSV_TRAILER_PREFIX",
    "NDJSON",
    "ExportEndpoint",
    "FilterParser",
    "negotiate",
    "token_record",
    "trailer",
]
