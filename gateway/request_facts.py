"""What the layers of one request learn about it, for its access line and its metrics.

The edge middleware (``app.RequestId``) makes one ``RequestFacts`` per request and reads it
when the answer is sent; the authentication layer and the GraphQL view fill it in (a
context variable holds it: they run inside the middleware's call, in the same task).
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

OK = "ok"
ERROR = "error"
REFUSED = "refused"


@dataclass(slots=True)
class RequestFacts:
    # The name of the operation the GraphQL document selects (None: anonymous or unknown).
    operation_name: str | None = None
    # For a GraphQL request: ok, error (any error in the answer, a failed source included)
    # or refused (before execution: credentials, rate limit, limits, unreadable request).
    outcome: str | None = None


facts_var: contextvars.ContextVar[RequestFacts | None] = contextvars.ContextVar(
    "request_facts", default=None
)


def current() -> RequestFacts:
    """This request's facts (a throwaway outside a request, e.g. in a unit test)."""
    facts = facts_var.get()
    return facts if facts is not None else RequestFacts()
