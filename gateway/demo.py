"""Simulated upstreams on loopback: ``tokengate simulate`` and ``tokengate serve --demo``."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp

from tokengate.gateway.config import SourceConfig
from tokengate.upstreams.loopback import serve_in_thread

PROVIDERS = ("amper", "oauth", "losant")


@dataclass
class Simulated:
    """One running simulator: its URL, its state (for tests), and a source pointing at it."""

    provider: str
    url: str
    state: Any
    source: SourceConfig
    info: dict[str, str] = field(default_factory=dict)


def _app(provider: str, count: int) -> tuple[ASGIApp, Any, dict[str, str], dict[str, Any]]:
    """(app, state, credentials for the adapter, extra source settings)."""
    if provider == "amper":
        from tokengate.upstreams.amper import simulator as amper

        amper_state = amper.sample_state(count=count)
        return amper.build_app(amper_state), amper_state, {"token": amper_state.api_token}, {}
    if provider == "oauth":
        from tokengate.upstreams.oauth import simulator as oauth

        oauth_state = oauth.sample_state(count=count)
        creds = {"client_id": oauth_state.client_id, "client_secret": oauth_state.client_secret}
        return oauth.build_app(oauth_state), oauth_state, creds, {}
    from tokengate.upstreams.losant import simulator as losant

    losant_state = losant.sample_state(count=count)
    apps = tuple(losant_state.applications)
    creds = {"token": losant_state.api_token}
    return losant.build_app(losant_state), losant_state, creds, {"application_ids": apps}


@contextlib.contextmanager
def simulators(
    providers: tuple[str, ...] = PROVIDERS, *, count: int = 30, ports: dict[str, int] | None = None
) -> Iterator[dict[str, Simulated]]:
    """Start the chosen simulators on 127.0.0.1; yields them by source key."""
    with contextlib.ExitStack() as stack:
        running: dict[str, Simulated] = {}
        for provider in providers:
            app, state, creds, extra = _app(provider, count)
            url = stack.enter_context(serve_in_thread(app, (ports or {}).get(provider)))
            key = {"amper": "amper", "oauth": "idp", "losant": "fleet"}[provider]
            source = SourceConfig(
                key=key,
                provider=provider,
                name={
                    "amper": "Amper Music",
                    "oauth": "Identity provider",
                    "losant": "Losant fleet",
                }[provider],
                base_url=url,
                timeout_s=5.0,
                credentials=creds,
                **extra,
            )
            running[key] = Simulated(provider, url, state, source)
        yield running


def demo_secret() -> str:
    return "tg_demo_" + secrets.token_urlsafe(24)
