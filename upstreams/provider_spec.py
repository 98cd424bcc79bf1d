"""What a provider package declares so that the gateway can configure, build and simulate it.

A provider is one package under ``upstreams/`` (adapter, simulator) plus one ``ProviderSpec``
in the table of ``upstreams.providers``. Config parsing, the upstream factory, the demo and
the ``tokengate simulate`` command read that table, so none of them names a provider.
This module depends on nothing in ``gateway``: the gateway hands a provider its source
settings through ``SourceSettings`` and its config keys through ``OptionReader``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

import httpx
from starlette.types import ASGIApp

from tokengate.upstreams.base import TokenSource


class OptionReader(Protocol):
    """The provider's own keys of one ``[[sources]]`` entry; errors name the key and line."""

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        """The value of ``key`` (``default`` when absent), refused unless of ``kind``."""
        ...

    def fail(self, key: str | None, message: str) -> NoReturn:
        """Stop with ``message`` at the line of ``key`` (of the entry when None)."""
        ...


class SourceSettings(Protocol):
    """One configured source as an adapter factory sees it (``gateway.config.SourceConfig``)."""

    @property
    def key(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def base_url(self) -> str: ...

    @property
    def timeout_s(self) -> float: ...

    @property
    def connect_timeout_s(self) -> float: ...

    @property
    def max_answer_bytes(self) -> int: ...

    @property
    def credentials(self) -> Mapping[str, str]: ...

    @property
    def options(self) -> Mapping[str, object]: ...


@dataclass(frozen=True, slots=True)
class Simulation:
    """A provider's simulator, ready to serve: what ``tokengate simulate`` and the demo run."""

    app: ASGIApp
    # The simulator's state (tokens, request log, fault plan), for tests to read and change.
    state: Any
    # The secrets the simulator accepts, by credential name (``ProviderSpec.credentials``).
    credentials: Mapping[str, str]
    # Provider keys a source needs to reach this simulator, as a config file would hold them
    # (read through the provider's own ``parse_options``).
    settings: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One provider: its config keys, its adapter factory and its simulator."""

    # The value of ``provider`` in a ``[[sources]]`` entry.
    name: str
    # Secret names; each is read from the variable ``<name>_env`` or the file ``<name>_file``
    # names, and reaches the adapter as ``credentials[<name>]``.
    credentials: tuple[str, ...]
    # Further keys a source of this provider may set (beyond the ones every source has).
    option_keys: tuple[str, ...]
    # Validates ``option_keys`` and returns the settings the adapter reads as ``options``.
    parse_options: Callable[[OptionReader], Mapping[str, object]]
    build: Callable[[SourceSettings, httpx.AsyncClient], TokenSource]
    # A simulator with ``count`` sample tokens.
    simulate: Callable[[int], Simulation]
    # The source key and display name the demo and ``tokengate simulate`` give it.
    demo_key: str
    demo_name: str

    @property
    def config_keys(self) -> frozenset[str]:
        """Every key this provider adds to a ``[[sources]]`` entry."""
        secrets = (f"{c}_{way}" for c in self.credentials for way in ("env", "file"))
        return frozenset((*secrets, *self.option_keys))


def no_options(_reader: OptionReader) -> Mapping[str, object]:
    """``parse_options`` for a provider without keys of its own."""
    return {}


def option_str(settings: SourceSettings, key: str) -> str:
    """A text option that the provider's ``parse_options`` produced."""
    value = settings.options[key]
    if not isinstance(value, str):
        raise TypeError(f"option {key} of source {settings.key} is not text")
    return value


def option_strs(settings: SourceSettings, key: str) -> tuple[str, ...]:
    """A list-of-text option that the provider's ``parse_options`` produced."""
    value = settings.options[key]
    if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"option {key} of source {settings.key} is not a tuple of text")
    return value
