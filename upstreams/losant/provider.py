"""Losant in the provider table: one API token over one or more applications."""

from __future__ import annotations

import re
from collections.abc import Mapping

import httpx

from tokengate.upstreams.base import TokenSource
from tokengate.upstreams.losant.client import LosantSource
from tokengate.upstreams.provider_spec import (
    OptionReader,
    ProviderSpec,
    Simulation,
    SourceSettings,
    option_strs,
)

# Application ids go into upstream paths: nothing but an ObjectId gets that far.
_HEX24 = re.compile(r"[0-9a-fA-F]{24}")


def _options(reader: OptionReader) -> Mapping[str, object]:
    single = reader.get("application_id", str, None)
    many = reader.get("application_ids", list, [])
    app_ids = ([single] if single else []) + list(many)
    if not app_ids:
        reader.fail(None, "a losant source needs application_id or application_ids")
    bad = [a for a in app_ids if not isinstance(a, str) or not _HEX24.fullmatch(a)]
    if bad:
        reader.fail("application_id", f"{bad[0]!r} is not a 24-hex Losant id")
    return {"application_ids": tuple(app_ids)}


def _build(source: SourceSettings, client: httpx.AsyncClient) -> TokenSource:
    return LosantSource(
        key=source.key,
        name=source.name,
        base_url=source.base_url,
        client=client,
        api_token=source.credentials["token"],
        application_ids=option_strs(source, "application_ids"),
        timeout_s=source.timeout_s,
        connect_timeout_s=source.connect_timeout_s,
        max_answer_bytes=source.max_answer_bytes,
    )


def _simulate(count: int) -> Simulation:
    from tokengate.upstreams.losant import simulator

    state = simulator.sample_state(count=count)
    settings = {"application_ids": list(state.applications)}
    return Simulation(simulator.build_app(state), state, {"token": state.api_token}, settings)


PROVIDER = ProviderSpec(
    name="losant",
    credentials=("token",),
    option_keys=("application_id", "application_ids"),
    parse_options=_options,
    build=_build,
    simulate=_simulate,
    demo_key="fleet",
    demo_name="Losant fleet",
)
