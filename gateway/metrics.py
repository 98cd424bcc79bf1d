"""``GET /metrics``: the run contract's Prometheus series, and what an operator pages on.

Every label value is bounded and free of secrets, user ids, token ids and query text:
``operation_name`` is the name of the operation the parsed document selects (at most
``MAX_OPERATION_NAMES`` distinct names per process, then ``other``; ``anonymous`` for none),
``source`` a configured source key, the rest fixed vocabularies.

Under ``tokengate serve --workers N`` the supervisor gives the workers a private
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, chosen when the module
is imported); each worker writes its figures there and any worker's ``/metrics`` reads them
all, so a scrape shows the sum over workers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from importlib import metadata

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.requests import Request
from starlette.responses import Response

from tokengate.gateway import request_facts
from tokengate.upstreams.call_outcomes import CallOutcome
from tokengate.upstreams.resilience import BreakerState

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MAX_OPERATION_NAMES = 100
MAX_NAME_LENGTH = 100
ANONYMOUS = "anonymous"
OTHER = "other"
_GRAPHQL_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")
HEALTH_VALUE = {"ok": 0, "degraded": 1, "down": 2}
AUTH_REASONS = (
    "missing",
    "malformed",
    "unknown",
    "expired",
    "revoked",
    "inactive",
    "jwt_invalid",
    "jwt_keys_unavailable",
)
UPSTREAM_OUTCOMES = ("ok", "timeout", "unavailable", "unauthorized", "rate_limited", "bad_response")
# Seconds: from a cached loopback answer to a slow upstream's total deadline.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SHARING_UP = frozenset({"shared", "listening"})
_LIVE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db")


def version() -> str:
    try:
        return metadata.version("tokengate")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        return "unknown"


class Metrics:
    """The series of one gateway (its own registry, so tests may build many in a process)."""

    def __init__(self) -> None:
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        r = self.registry = CollectorRegistry()
        if self.multiprocess_dir is None:
            # Process figures (memory, CPU, open files); not available per worker in the
            # multiprocess mode.
            ProcessCollector(registry=r)
        self.graphql_requests = Counter(
            "tokengate_graphql_requests",
            "GraphQL requests by operation name and outcome (ok, error, refused).",
            ["operation_name", "outcome"],
            registry=r,
        )
        self.graphql_duration = Histogram(
            "tokengate_graphql_request_duration_seconds",
            "Time from a GraphQL request's arrival to its answer.",
            ["operation_name"],
            buckets=BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "tokengate_graphql_requests_in_flight",
            "GraphQL requests being answered now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.upstream_requests = Counter(
            "tokengate_upstream_requests",
            "Calls to a source, after their retries, by outcome (ok or the failure reason).",
            ["source", "outcome"],
            registry=r,
        )
        self.upstream_duration = Histogram(
            "tokengate_upstream_request_duration_seconds",
            "Time of one call to a source, retries included.",
            ["source"],
            buckets=BUCKETS,
            registry=r,
        )
        self.source_health = Gauge(
            "tokengate_source_health",
            "Health of an upstream source as its circuit breaker sees it: 0 ok, 1 degraded, 2 down.",
            ["source"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.circuit_transitions = Counter(
            "tokengate_circuit_transitions",
            "Circuit breaker transitions of a source, by the state entered (open, closed).",
            ["source", "state"],
            registry=r,
        )
        self.auth_failures = Counter(
            "tokengate_auth_failures",
            "Requests refused for their credentials, by reason.",
            ["reason"],
            registry=r,
        )
        self.rate_limited = Counter(
            "tokengate_rate_limited",
            "Requests refused by the per-caller rate limit.",
            registry=r,
        )
        self.replica_sharing = Gauge(
            "tokengate_replica_sharing",
            "Whether what replicas share works now, by part (rate_limits, revocations; only "
            "when configured): 1 shared / listening, 0 per replica / reconnecting.",
            ["part"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.local_limit_decisions = Counter(
            "tokengate_rate_limit_local_decisions",
            "Rate-limit decisions made by a replica alone because Redis was unreachable.",
            registry=r,
        )
        self.build_info = Gauge(
            "tokengate_build_info",
            "The running tokengate's version (always 1).",
            ["version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.build_info.labels(version()).set(1)
        for reason in AUTH_REASONS:
            self.auth_failures.labels(reason)
        self._names: set[str] = set()
        self._health: Callable[[], Mapping[str, str]] = dict
        self._sharing: Callable[[], Mapping[str, str]] = dict
        # Children by label values: ``labels()`` costs more than the update itself.
        self._graphql: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._upstream: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    # -- what the gateway reports -----------------------------------------------------

    def watch_sources(self, sources: Mapping[str, object]) -> None:
        """Series for each source from the start; health read at every scrape (the store,
        which has no breaker, has none)."""
        for key in sources:
            for outcome in UPSTREAM_OUTCOMES:
                self.upstream_requests.labels(key, outcome)
            self.upstream_duration.labels(key)

        def health() -> dict[str, str]:
            return {
                k: h for k, s in sources.items() if isinstance(h := getattr(s, "health", None), str)
            }

        self._health = health
        self._refresh_health()

    def watch_replicas(self, status: Callable[[], Mapping[str, str]]) -> None:
        """What replicas share, read at every scrape from ``status`` (``/readyz``'s
        ``rate_limits`` and ``revocations``)."""
        self._sharing = status
        self._refresh_health()

    def operation_label(self, name: str | None) -> str:
        """``name`` while fewer than ``MAX_OPERATION_NAMES`` distinct names were seen;
        ``other`` after (and for anything that is not a GraphQL name of sane length)."""
        if not name:
            return ANONYMOUS
        if name in self._names:
            return name
        if (
            len(self._names) >= MAX_OPERATION_NAMES
            or len(name) > MAX_NAME_LENGTH
            or not _GRAPHQL_NAME.fullmatch(name)
        ):
            return OTHER
        self._names.add(name)
        return name

    def graphql_answered(
        self, facts: request_facts.RequestFacts, status: int, seconds: float
    ) -> None:
        """One GraphQL request answered with HTTP ``status``. The view and the
        authentication layer set the outcome; what left before them is told by its status
        (4xx refused, 5xx error). The GraphiQL page (no outcome, 200) is no operation."""
        outcome = facts.outcome
        if outcome is None:
            if 400 <= status < 500:
                outcome = request_facts.REFUSED
            elif status >= 500 or status == 0:
                outcome = request_facts.ERROR
            else:
                return
        name = self.operation_label(facts.operation_name)
        children = self._graphql.get((name, outcome))
        if children is None:
            children = self._graphql[name, outcome] = (
                self.graphql_requests.labels(name, outcome),
                self.graphql_duration.labels(name),
            )
        children[0].inc()
        children[1].observe(seconds)

    def upstream_call(self, call: CallOutcome) -> None:
        children = self._upstream.get((call.source, call.outcome))
        if children is None:
            children = self._upstream[call.source, call.outcome] = (
                self.upstream_requests.labels(call.source, call.outcome),
                self.upstream_duration.labels(call.source),
            )
        children[0].inc()
        children[1].observe(call.duration_s)
        if self.multiprocess_dir is not None:
            # The scraping worker refreshes only its own view; keep every worker's recent.
            self._refresh_health()

    def circuit_changed(self, source: str, state: BreakerState) -> None:
        self.circuit_transitions.labels(source, state.value).inc()
        self._refresh_health()

    def auth_failed(self, reason: str) -> None:
        self.auth_failures.labels(reason if reason in AUTH_REASONS else OTHER).inc()

    # -- the scrape -------------------------------------------------------------------

    def _refresh_health(self) -> None:
        for key, health in self._health().items():
            self.source_health.labels(key).set(HEALTH_VALUE.get(health, 2))
        for part, state in self._sharing().items():
            self.replica_sharing.labels(part).set(1 if state in SHARING_UP else 0)

    def exposition(self) -> bytes:
        self._refresh_health()
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        self._forget_dead_workers(self.multiprocess_dir)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(merged)

    @staticmethod
    def _forget_dead_workers(path: str) -> None:
        """Drop the live gauges (in flight, health, build info) of workers that died, so a
        restarted worker's predecessor no longer counts."""
        pids = {int(m.group(1)) for f in os.listdir(path) if (m := _LIVE_FILE.fullmatch(f))}
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
            except PermissionError:  # alive, someone else's
                continue

    async def endpoint(self, _request: Request) -> Response:
        return Response(self.exposition(), media_type=CONTENT_TYPE_LATEST)
