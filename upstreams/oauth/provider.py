"""The OAuth-style token server in the provider table: a client id and secret."""

from __future__ import annotations

import httpx

from tokengate.upstreams.base import TokenSource
from tokengate.upstreams.oauth.client import OAuthSource
from tokengate.upstreams.provider_spec import ProviderSpec, Simulation, SourceSettings, no_options


def _build(source: SourceSettings, client: httpx.AsyncClient) -> TokenSource:
    return OAuthSource(
        key=source.key,
        name=source.name,
        base_url=source.base_url,
        client=client,
        client_id=source.credentials["client_id"],
        client_secret=source.credentials["client_secret"],
        timeout_s=source.timeout_s,
        connect_timeout_s=source.connect_timeout_s,
        max_answer_bytes=source.max_answer_bytes,
    )


def _simulate(count: int) -> Simulation:
    from tokengate.upstreams.oauth import simulator

    state = simulator.sample_state(count=count)
    credentials = {"client_id": state.client_id, "client_secret": state.client_secret}
    return Simulation(simulator.build_app(state), state, credentials)


PROVIDER = ProviderSpec(
    name="oauth",
    credentials=("client_id", "client_secret"),
    option_keys=(),
    parse_options=no_options,
    build=_build,
    simulate=_simulate,
    demo_key="idp",
    demo_name="Identity provider",
)
