"""Simulated upstreams on loopback: ``tokengate simulate`` and ``tokengate serve --demo``."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tokengate.gateway.config import SourceConfig, provider_options
from tokengate.upstreams import providers as registry
from tokengate.upstreams.loopback import serve_in_thread

# The providers known when this module was loaded (the built-in ones), for callers that want
# a fixed list; ``simulators`` reads the table afresh.
PROVIDERS = registry.names()


@dataclass
class Simulated:
    """One running simulator: its URL, its state (for tests), and a source pointing at it."""

    provider: str
    url: str
    state: Any
    source: SourceConfig
    # What a source needs to reach it (credentials and settings), as text: what
    # ``tokengate simulate`` prints.
    info: dict[str, str] = field(default_factory=dict)


def _as_text(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


@contextlib.contextmanager
def simulators(
    providers: tuple[str, ...] | None = None,
    *,
    count: int = 30,
    ports: dict[str, int] | None = None,
) -> Iterator[dict[str, Simulated]]:
    """Start the chosen simulators (all by default) on 127.0.0.1; yields them by source key."""
    with contextlib.ExitStack() as stack:
        running: dict[str, Simulated] = {}
        for provider in registry.names() if providers is None else providers:
            spec = registry.get(provider)
            sim = spec.simulate(count)
            url = stack.enter_context(serve_in_thread(sim.app, (ports or {}).get(provider)))
            source = SourceConfig(
                key=spec.demo_key,
                provider=provider,
                name=spec.demo_name,
                base_url=url,
                timeout_s=5.0,
                credentials=dict(sim.credentials),
                options=provider_options(provider, sim.settings),
            )
            info = {k: _as_text(v) for k, v in (*sim.credentials.items(), *sim.settings.items())}
            running[spec.demo_key] = Simulated(provider, url, sim.state, source, info)
        yield running


def demo_secret() -> str:
    return "tg_demo_" + secrets.token_urlsafe(24)
