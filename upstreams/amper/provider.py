"""Amper Music in the provider table: one API token, an optional page-size parameter name."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from tokengate.upstreams.amper.client import AmperSource
from tokengate.upstreams.base import TokenSource
from tokengate.upstreams.provider_spec import (
    OptionReader,
    ProviderSpec,
    Simulation,
    SourceSettings,
    option_str,
)


def _options(reader: OptionReader) -> Mapping[str, object]:
    # "length" as in the seed; a later revision of Amper's docs names it "limit".
    page_size_param = reader.get("page_size_param", str, "length")
    if page_size_param not in ("length", "limit"):
        reader.fail("page_size_param", "page_size_param must be 'length' or 'limit'")
    return {"page_size_param": page_size_param}


def _build(source: SourceSettings, client: httpx.AsyncClient) -> TokenSource:
    return AmperSource(
        key=source.key,
        name=source.name,
        base_url=source.base_url,
        client=client,
        api_token=source.credentials["token"],
        page_size_param=option_str(source, "page_size_param"),
        timeout_s=source.timeout_s,
        connect_timeout_s=source.connect_timeout_s,
        max_answer_bytes=source.max_answer_bytes,
    )


def _simulate(count: int) -> Simulation:
    from tokengate.upstreams.amper import simulator

    state = simulator.sample_state(count=count)
    return Simulation(simulator.build_app(state), state, {"token": state.api_token})


PROVIDER = ProviderSpec(
    name="amper",
    credentials=("token",),
    option_keys=("page_size_param",),
    parse_options=_options,
    build=_build,
    simulate=_simulate,
    demo_key="amper",
    demo_name="Amper Music",
)
