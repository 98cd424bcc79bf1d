"""A served request leaves no reference cycle behind: what it built (the request, the
resolver context, graphql-core's executor and everything it reached) is freed when the
request ends, not left for the cyclic garbage collector, whose passes were a share of
every request's CPU (benchmarks/README.md)."""

from __future__ import annotations

import gc
from collections import Counter

import httpx

from tests.conftest import Gateway

QUERY = """
query Page { tokens(first: 5) { edges { cursor node { id name status scopes createdAt } }
  pageInfo { hasNextPage endCursor } totalCount } }
"""
REQUESTS = 20
# Where the objects a request builds on the server come from (the test's own HTTP client
# leaves cycles of its own, which are not the gateway's).
SERVER_MODULES = ("tokengate", "starlette", "strawberry", "graphql", "uvicorn", "aiodataloader")


def test_requests_leave_no_cyclic_garbage(gateway: Gateway) -> None:
    headers = {"Authorization": f"Bearer {gateway.admin_secret}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as client:
        for _ in range(5):  # caches, pools and first-request work settle first
            assert client.post("/graphql", json={"query": QUERY}).status_code == 200
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds is kept in gc.garbage
        try:
            for _ in range(REQUESTS):
                answer = client.post("/graphql", json={"query": QUERY})
                assert answer.status_code == 200 and "errors" not in answer.json()
            gc.collect()
            server = Counter(
                f"{type(o).__module__}.{type(o).__qualname__}"
                for o in gc.garbage
                if type(o).__module__.startswith(SERVER_MODULES)
            )
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    # Before: every request's executor (its helpers are bound methods kept on it), and its
    # request (whose state held the context, which holds the request).
    assert not server, f"objects of the gateway in reference cycles: {server.most_common(8)}"
