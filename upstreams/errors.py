"""One exception hierarchy for the whole gateway; ``schema/errors.py`` maps it to GraphQL.

    TokengateError                      code
    ├── InvalidInput                    BAD_USER_INPUT
    │   └── InvalidCursor               BAD_USER_INPUT
    ├── Unauthenticated                 UNAUTHENTICATED
    ├── Forbidden                       FORBIDDEN
    ├── NotFound                        NOT_FOUND
    ├── Unsupported                     UNSUPPORTED_OPERATION
    ├── RateLimited                     RATE_LIMITED
    └── UpstreamError(source)           (reason: SourceFailureReason)
        ├── UpstreamUnavailable         UPSTREAM_UNAVAILABLE   UNAVAILABLE
        ├── UpstreamTimeout             UPSTREAM_TIMEOUT       TIMEOUT
        ├── UpstreamUnauthorized        UPSTREAM_UNAUTHORIZED  UNAUTHORIZED
        ├── UpstreamRateLimited         RATE_LIMITED           RATE_LIMITED
        └── BadUpstreamResponse         BAD_UPSTREAM_RESPONSE  BAD_RESPONSE

Messages are written for the client: they never hold secrets, upstream bodies or stack
traces. Adapters translate every httpx/driver exception into one of these at their edge.
"""

from __future__ import annotations


class TokengateError(Exception):
    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(TokengateError):
    code = "BAD_USER_INPUT"

    def __init__(self, message: str, *, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


class InvalidCursor(InvalidInput):
    pass


class Unauthenticated(TokengateError):
    code = "UNAUTHENTICATED"


class Forbidden(TokengateError):
    code = "FORBIDDEN"


class NotFound(TokengateError):
    code = "NOT_FOUND"


class Unsupported(TokengateError):
    code = "UNSUPPORTED_OPERATION"


class RateLimited(TokengateError):
    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UpstreamError(TokengateError):
    code = "UPSTREAM_UNAVAILABLE"
    reason = "UNAVAILABLE"

    def __init__(self, source: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.source = source
        # The upstream's HTTP status when it answered (None for connection errors): retry
        # policies read it (502/503/504 retry, 500 does not).
        self.status = status


class UpstreamUnavailable(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    code = "UPSTREAM_TIMEOUT"
    reason = "TIMEOUT"


class UpstreamUnauthorized(UpstreamError):
    code = "UPSTREAM_UNAUTHORIZED"
    reason = "UNAUTHORIZED"


class UpstreamRateLimited(UpstreamError):
    code = "RATE_LIMITED"
    reason = "RATE_LIMITED"

    def __init__(
        self,
        source: str,
        message: str,
        *,
        retry_after_s: float | None = None,
        status: int | None = 429,
    ) -> None:
        super().__init__(source, message, status=status)
        self.retry_after_s = retry_after_s


class BadUpstreamResponse(UpstreamError):
    code = "BAD_UPSTREAM_RESPONSE"
    reason = "BAD_RESPONSE"
