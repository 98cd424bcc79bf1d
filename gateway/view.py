"""The Strawberry ASGI view: context per request, our error format, orjson encoding."""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.base import BaseRequestProtocol
from strawberry.types import ExecutionResult

from tokengate.gateway import request_facts
from tokengate.gateway.graphiql import GraphiQLPage
from tokengate.gateway.logs import request_id_var
from tokengate.gateway.persisted import (
    NOT_FOUND,
    PersistedOperations,
    PersistedRefusal,
)
from tokengate.gateway.tracing import set_operation_name
from tokengate.schema.context import Context
from tokengate.schema.errors import format_error
from tokengate.schema.loaders import TokenLoader
from tokengate.schema.types import SourceType
from tokengate.upstreams.principal import Principal
from tokengate.upstreams.service import TokenService

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
# Request keys naming a persisted document instead of sending its text (Relay: doc_id).
DOCUMENT_ID_KEYS = ("documentId", "doc_id")

# The APQ entry (hash, text) the current request registers if its document runs cleanly.
_apq_pending: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "apq_pending", default=None
)
# The current request's resolver context, from get_context to process_result. Not kept on
# the request: the context holds the request, and the cycle (request, its state, the
# context, everything execution reached) waited for the cyclic garbage collector.
_gql_context: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "gql_context", default=None
)


class GatewayView(GraphQL[Context, None]):
    def __init__(
        self,
        schema: Any,
        service: TokenService,
        source_types: Mapping[str, SourceType],
        *,
        graphiql: GraphiQLPage | None = None,
        persisted: PersistedOperations | None = None,
    ) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if graphiql is not None else None,
            allow_queries_via_get=True,
        )
        self.service = service
        self.source_types = source_types
        self.persisted = persisted if persisted is not None else PersistedOperations()
        self.graphiql = graphiql

    async def render_graphql_ide(self, request: Request) -> Response:
        # Our page (gateway/graphiql.py), never Strawberry's, which loads from a CDN.
        if self.graphiql is None:  # pragma: no cover - Strawberry asks only when enabled
            return Response(status_code=404)
        return self.graphiql.page()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no subscriptions: HTTP only
            return
        request = Request(scope=scope, receive=receive)
        pending = _apq_pending.set(None)
        current = _gql_context.set(None)
        try:
            response = await self.run(request)
        except PersistedRefusal as exc:
            response = self._refusal(request, exc)
        except HTTPException as exc:
            # HTTP-level refusals (batching, unreadable body, wrong method) get a GraphQL-shaped
            # JSON body too, so every client parses one format.
            code = "BAD_USER_INPUT" if exc.status_code == 400 else "BAD_REQUEST"
            if exc.status_code == 405:
                code = "METHOD_NOT_ALLOWED"
            message = exc.reason
            if "Batching" in message:
                message = "batched requests (a JSON array of operations) are not accepted"
            response = Response(
                orjson.dumps({"errors": [{"message": message, "extensions": {"code": code}}]}),
                status_code=exc.status_code,
                media_type="application/json",
            )
        finally:
            _apq_pending.reset(pending)
            _gql_context.reset(current)
        await response(scope, receive, send)

    def _refusal(self, request: Request, refusal: PersistedRefusal) -> Response:
        """A persisted-operation refusal: nothing ran. HTTP 200 as for other request errors
        (400 for a client asking for application/graphql-response+json), except that
        PERSISTED_QUERY_NOT_FOUND is always 200: Apollo Client retries with the text on it."""
        request_facts.current().outcome = request_facts.REFUSED
        graphql_response = GRAPHQL_RESPONSE_JSON in request.headers.get("accept", "")
        status = 400 if graphql_response and refusal.code != NOT_FOUND else 200
        body = {"errors": [{"message": refusal.message, "extensions": {"code": refusal.code}}]}
        return Response(
            orjson.dumps(body),
            status_code=status,
            media_type=GRAPHQL_RESPONSE_JSON if graphql_response else "application/json",
        )

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        # A GET naming a persisted document (hash or id) is an operation, not the page.
        params = request.query_params
        if params.get("extensions") is not None or any(
            params.get(key) is not None for key in DOCUMENT_ID_KEYS
        ):
            return False
        return super().should_render_graphql_ide(request)

    async def get_context(self, request: Request | Any, response: Response | Any) -> Context:
        principal: Principal | None = request.scope.get("state", {}).get("principal")
        request_id = request_id_var.get() or uuid.uuid4().hex
        if principal is None:
            # Only the GraphiQL page gets here unauthenticated; it runs no operation.
            principal = Principal(token_id="", scopes=frozenset())
        context = Context(
            service=self.service,
            principal=principal,
            token_loader=TokenLoader(self.service, principal, self.source_types),
            service_types=self.source_types,
            request_id=request_id,
            request=request,
            response=response,
        )
        _gql_context.set(context)
        return context

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        context = _gql_context.get()
        request_id = context.request_id if context is not None else (request_id_var.get() or "")
        errors: list[GraphQLError] = list(result.errors or [])
        if context is not None:
            errors.extend(
                GraphQLError(e.message, path=path, original_error=e)
                for e, path in context.extra_errors
            )
        request_error = result.data is None and bool(errors) and not any(e.path for e in errors)
        facts = request_facts.current()
        facts.outcome = (
            request_facts.REFUSED
            if request_error
            else request_facts.ERROR
            if errors
            else request_facts.OK
        )
        if context is not None:
            facts.operation_name = context.operation_name
        registration = _apq_pending.get()
        if registration is not None and not request_error:
            self.persisted.register(registration)
        if context is not None and GRAPHQL_RESPONSE_JSON in request.headers.get("accept", ""):
            # GraphQL over HTTP: clients that ask for this media type get its status codes:
            # 400 and no data for a request error (parse, validation, variables, limits),
            # which never started executing (its errors have no path).
            context.response.tokengate_media_type = GRAPHQL_RESPONSE_JSON
            if request_error:
                context.response.status_code = 400
                return {"errors": [format_error(e, request_id) for e in errors]}
        data: GraphQLHTTPResponse = {"data": result.data}
        if errors:
            data["errors"] = [format_error(e, request_id) for e in errors]
        if result.extensions:
            data["extensions"] = result.extensions
        return data

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        media_type = getattr(sub_response, "tokengate_media_type", None)
        if media_type is not None:
            response.headers["content-type"] = media_type
        return response

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        data = await super().parse_http_body(request)
        if isinstance(data, GraphQLRequestData):  # batches are refused
            set_operation_name(data.operation_name)
            document_id = await self._document_id(request)
            resolved = self.persisted.resolve(data.query, data.extensions, document_id)
            if resolved.register is not None:
                # Remembered in process_result, once the document parsed, validated and
                # passed the limits (gateway.persisted).
                _apq_pending.set(resolved.register)
            data.query = resolved.query
        return data

    async def _document_id(self, request: AsyncHTTPRequestAdapter) -> object:
        """The request's ``documentId`` (or ``doc_id``), if any. Strawberry drops the key,
        so a body that mentions one is read again (a body that does not has none: an
        escaped key spelling is not looked for, and such a request just runs its query)."""
        if request.method == "GET":
            raw: object = dict(request.query_params)
        else:
            body = await request.get_body()
            if not any(key.encode() in body for key in DOCUMENT_ID_KEYS):
                return None
            raw = self.parse_json(body)
        if not isinstance(raw, dict):
            return None
        return next((raw[key] for key in DOCUMENT_ID_KEYS if raw.get(key) is not None), None)

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def decode_json(self, data: str | bytes) -> object:
        # orjson refuses nesting deeper than 1024 levels (the standard library would overflow
        # the stack) and lone surrogates ("\ud800": valid JSON text but no UTF-8, and an
        # error message quoting one could not be encoded): both are an unreadable body
        # (400, BAD_USER_INPUT).
        return orjson.loads(data)
