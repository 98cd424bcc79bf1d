"""The provider table: a provider registered there alone is configured, built, simulated and
offered by the CLI, without a change to the config parser, the factory, the demo or the CLI."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from tests.conftest import BOOTSTRAP, Gateway, gateway_config
from tokengate.gateway import cli
from tokengate.gateway.app import create_app
from tokengate.gateway.config import ConfigError, load
from tokengate.gateway.demo import simulators
from tokengate.gateway.upstream_factory import build_upstreams
from tokengate.upstreams import providers
from tokengate.upstreams.amper import AmperSource
from tokengate.upstreams.amper import simulator as amper_simulator
from tokengate.upstreams.base import TokenSource
from tokengate.upstreams.loopback import serve_in_thread
from tokengate.upstreams.provider_spec import (
    OptionReader,
    ProviderSpec,
    Simulation,
    SourceSettings,
    option_str,
)

# --- a tiny provider, as a new package would declare it: a reseller of Amper's API under
# another name, with its own credential and one key of its own. ---


def _options(reader: OptionReader) -> Mapping[str, object]:
    region = reader.get("region", str, "eu")
    if region not in ("eu", "us"):
        reader.fail("region", "region must be 'eu' or 'us'")
    return {"region": region}


def _build(source: SourceSettings, client: httpx.AsyncClient) -> TokenSource:
    return AmperSource(
        key=source.key,
        name=f"{source.name} ({option_str(source, 'region')})",
        base_url=source.base_url,
        client=client,
        api_token=source.credentials["api_key"],
        timeout_s=source.timeout_s,
        connect_timeout_s=source.connect_timeout_s,
    )


def _simulate(count: int) -> Simulation:
    state = amper_simulator.sample_state(count=count, seed=11)
    app = amper_simulator.build_app(state)
    return Simulation(app, state, {"api_key": state.api_token}, {"region": "us"})


RESALE = ProviderSpec(
    name="resale",
    credentials=("api_key",),
    option_keys=("region",),
    parse_options=_options,
    build=_build,
    simulate=_simulate,
    demo_key="resold",
    demo_name="Amper resale",
)

CONFIG = """
[[sources]]
key = "music"
provider = "resale"
base_url = "https://resale.example.com"
api_key_env = "RESALE_KEY"
region = "us"
"""
ENV = {"RESALE_KEY": "resale-secret-value"}
OLD_KNOWN = (
    "application_id, application_ids, base_url, client_id_env, client_id_file, "
    "client_secret_env, client_secret_file, connect_timeout_s, key, max_answer_bytes, "
    "max_concurrency, name, page_size_param, provider, retries, timeout_s, token_env, "
    "token_file, "
    "total_timeout_s"
)


@pytest.fixture
def resale() -> Iterator[ProviderSpec]:
    with providers.registered(RESALE) as spec:
        yield spec


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokengate.toml"
    path.write_text(text)
    return path


def test_the_built_in_providers_keep_their_keys_and_messages(tmp_path: Path) -> None:
    assert providers.names() == ("amper", "oauth", "losant")
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, CONFIG), environ=ENV)
    assert str(info.value) == (
        "tokengate.toml:6: unknown key sources.api_key_env (known: " + OLD_KNOWN + ")"
    )
    unknown = CONFIG.replace('api_key_env = "RESALE_KEY"\nregion = "us"\n', "")
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, unknown), environ=ENV)
    assert str(info.value) == "tokengate.toml:4: provider must be one of amper, oauth, losant"


def test_config_reads_a_registered_providers_keys(tmp_path: Path, resale: ProviderSpec) -> None:
    (source,) = load(write(tmp_path, CONFIG), environ=ENV).sources
    assert (source.provider, source.credentials, dict(source.options)) == (
        "resale",
        {"api_key": "resale-secret-value"},
        {"region": "us"},
    )
    assert "resale-secret-value" not in repr(source)
    # Its own validation, its own credential rules, errors at the key's line.
    with pytest.raises(ConfigError, match=r"^tokengate.toml:7: region must be 'eu' or 'us'$"):
        load(write(tmp_path, CONFIG.replace('"us"', '"mars"')), environ=ENV)
    with pytest.raises(ConfigError, match=r"^tokengate.toml:7: region must be a str$"):
        load(write(tmp_path, CONFIG.replace('"us"', "3")), environ=ENV)
    with pytest.raises(ConfigError, match="exactly one of 'api_key_env' or 'api_key_file'"):
        load(write(tmp_path, CONFIG.replace('api_key_env = "RESALE_KEY"\n', "")), environ=ENV)
    # Another provider's key on its source would do nothing: refused, naming its own keys.
    mixed = CONFIG.replace('region = "us"', 'region = "us"\npage_size_param = "limit"')
    with pytest.raises(
        ConfigError,
        match=r"^tokengate.toml:8: sources.page_size_param is not a setting of provider resale "
        r"\(its own: api_key_env, api_key_file, region\)$",
    ):
        load(write(tmp_path, mixed), environ=ENV)
    with pytest.raises(ConfigError, match="provider must be one of amper, oauth, losant, resale"):
        load(write(tmp_path, CONFIG.replace('provider = "resale"', 'provider = "x"')), environ=ENV)


async def test_the_factory_builds_a_registered_provider(
    tmp_path: Path, resale: ProviderSpec
) -> None:
    (config,) = load(write(tmp_path, CONFIG), environ=ENV).sources
    async with httpx.AsyncClient() as client:
        (built,) = build_upstreams([config], client)
    assert (built.key, built.name) == ("music", "music (us)")


def test_a_registered_provider_is_simulated_and_served(
    tmp_path: Path, resale: ProviderSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    with simulators(("resale",), count=7) as running:
        sim = running["resold"]
        assert sim.source.options == {"region": "us"}
        config = gateway_config(tmp_path, sources=(sim.source,))
        with serve_in_thread(create_app(config)) as url:
            gateway = Gateway(url=url, admin_secret=BOOTSTRAP, config=config)
            data = gateway.data(
                '{ tokens(first: 50, filter: {sources: ["resold"]}) { '
                "edges { node { name source { key name } } } failedSources { reason } } }"
            )
    page = data["tokens"]
    assert page["failedSources"] == []
    assert len(page["edges"]) == len(sim.state.tokens) == 7
    assert {e["node"]["source"]["name"] for e in page["edges"]} == {"Amper resale (us)"}
    assert sorted(e["node"]["name"] for e in page["edges"]) == sorted(
        t.display_name for t in sim.state.tokens
    )


def test_the_cli_offers_and_runs_a_registered_provider(
    resale: ProviderSpec, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["simulate", "--help"])
    assert "--provider {amper,oauth,losant,resale}" in capsys.readouterr().out
    assert cli.parser().parse_args(["simulate", "--provider", "resale"]).provider == ["resale"]

    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        if seconds >= 60:  # the command's wait for Ctrl-C: press it
            raise KeyboardInterrupt
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    assert cli.main(["simulate", "--provider", "resale", "--count", "3"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("resale http://127.0.0.1:")
    assert ", region=us; control: http://127.0.0.1:" in line
    assert "(api_key=" in line


def test_the_cli_refuses_an_unregistered_provider(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["simulate", "--provider", "resale"])
    assert "invalid choice: 'resale' (choose from" in capsys.readouterr().err


def test_names_and_demo_keys_are_unique(resale: ProviderSpec) -> None:
    with pytest.raises(ValueError, match="already registered"):
        providers.register(RESALE)
    with pytest.raises(ValueError, match="demo source key 'fleet'"):
        providers.register(
            ProviderSpec(
                name="other",
                credentials=(),
                option_keys=(),
                parse_options=_options,
                build=_build,
                simulate=_simulate,
                demo_key="fleet",
                demo_name="x",
            )
        )
    assert providers.names() == ("amper", "oauth", "losant", "resale")
