"""Each source call's outcome, recorded once, after its retries and deadline.

``TokenService`` times every call it makes to a source (the internal store included) and
hands the result to ``record``: a failed call is one warning line (fields ``source``,
``reason``, ``status`` when the upstream answered, ``duration_ms``; the log formatter adds
``request_id``), and the optional listener (the gateway's metrics) sees every call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from tokengate.upstreams import errors

log = logging.getLogger("tokengate.upstream")
OK = "ok"
# An exception no adapter should let out (a gateway bug; logged where it is answered).
INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class CallOutcome:
    source: str
    # "ok", or the failure reason in lower case: timeout, unavailable, unauthorized,
    # rate_limited, bad_response (or internal_error).
    outcome: str
    duration_s: float
    status: int | None = None


CallListener = Callable[[CallOutcome], None]


def outcome_of(error: BaseException | None) -> str:
    """``ok`` for an answer, also one that refused the caller's input (not found, bad
    input: the source worked); else the failure reason in lower case."""
    if error is None or (
        isinstance(error, errors.TokengateError) and not isinstance(error, errors.UpstreamError)
    ):
        return OK
    if isinstance(error, errors.UpstreamError):
        return error.reason.lower()
    return INTERNAL_ERROR


def record(
    source: str, error: BaseException | None, duration_s: float, listener: CallListener | None
) -> None:
    outcome = outcome_of(error)
    status = error.status if isinstance(error, errors.UpstreamError) else None
    if isinstance(error, errors.UpstreamError):
        fields: dict[str, object] = {
            "source": source,
            "reason": outcome,
            "duration_ms": round(duration_s * 1000, 1),
        }
        if status is not None:
            fields["status"] = status
        log.warning("source %s failed: %s", source, error.message, extra={"fields": fields})
    if listener is not None:
        listener(CallOutcome(source, outcome, duration_s, status))
