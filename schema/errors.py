"""The one place domain errors become GraphQL errors with ``extensions.code``.

Expected errors keep their message; anything unexpected is masked as
INTERNAL_SERVER_ERROR with the request id, and logged server-side (once, with traceback).
"""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError

from tokengate.upstreams.errors import (
    InvalidInput,
    RateLimited,
    TokengateError,
    UpstreamError,
    UpstreamRateLimited,
)

log = logging.getLogger("tokengate.errors")

MASKED_MESSAGE = "Internal server error"


def error_code(error: GraphQLError) -> str:
    original = error.original_error
    if isinstance(original, TokengateError):
        return original.code
    if original is not None and not isinstance(original, GraphQLError):
        return "INTERNAL_SERVER_ERROR"
    preset = (error.extensions or {}).get("code")
    if isinstance(preset, str):
        return preset
    if error.message.startswith("Syntax Error"):
        return "GRAPHQL_PARSE_FAILED"
    if error.message.startswith("Variable '$"):
        return "BAD_USER_INPUT"
    if error.path:
        return "INTERNAL_SERVER_ERROR"
    return "GRAPHQL_VALIDATION_FAILED"


def is_expected(error: GraphQLError) -> bool:
    return error_code(error) != "INTERNAL_SERVER_ERROR"


def format_error(error: GraphQLError, request_id: str) -> dict[str, Any]:
    """The client's view of ``error``: never a traceback, never an unexpected message."""
    code = error_code(error)
    original = error.original_error
    extensions: dict[str, Any] = {"code": code}
    if code == "INTERNAL_SERVER_ERROR":
        message = MASKED_MESSAGE
        extensions["requestId"] = request_id
    elif isinstance(original, TokengateError):
        message = original.message
        if isinstance(original, UpstreamError):
            extensions["source"] = original.source
            extensions["reason"] = original.reason
        if isinstance(original, InvalidInput) and original.argument:
            extensions["argument"] = original.argument
        if isinstance(original, (RateLimited, UpstreamRateLimited)) and original.retry_after_s:
            extensions["retryAfter"] = original.retry_after_s
    else:
        message = error.message
    formatted: dict[str, Any] = {"message": message, "extensions": extensions}
    if error.locations:
        formatted["locations"] = [
            {"line": loc.line, "column": loc.column} for loc in error.locations
        ]
    if error.path:
        formatted["path"] = list(error.path)
    return formatted


def log_unexpected(errors: list[GraphQLError], request_id: str | None) -> None:
    for error in errors:
        if is_expected(error):
            continue
        cause = error.original_error or error
        log.error(
            "unexpected error in request %s at %s: %s",
            request_id,
            ".".join(str(p) for p in error.path or []),
            type(cause).__name__,
            exc_info=(type(cause), cause, cause.__traceback__),
        )
