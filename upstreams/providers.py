"""The provider table: every upstream provider the gateway knows, by its config name.

Adding a provider: a package under ``upstreams/`` with its adapter, its simulator and a
``ProviderSpec`` (see ``upstreams/amper/provider.py``), plus one line in ``_BUILT_IN``.
Config parsing, the upstream factory, the demo and ``tokengate simulate`` read this table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tokengate.upstreams.amper.provider import PROVIDER as AMPER
from tokengate.upstreams.losant.provider import PROVIDER as LOSANT
from tokengate.upstreams.oauth.provider import PROVIDER as OAUTH
from tokengate.upstreams.provider_spec import ProviderSpec

# In this order in messages, in ``tokengate simulate`` and in the demo.
_BUILT_IN = (AMPER, OAUTH, LOSANT)

_TABLE: dict[str, ProviderSpec] = {}


def register(spec: ProviderSpec) -> None:
    """Add ``spec`` to the table; its name and its demo key must be new."""
    if spec.name in _TABLE:
        raise ValueError(f"provider {spec.name!r} is already registered")
    if any(s.demo_key == spec.demo_key for s in _TABLE.values()):
        raise ValueError(f"demo source key {spec.demo_key!r} is already taken")
    _TABLE[spec.name] = spec


def unregister(name: str) -> None:
    del _TABLE[name]


@contextlib.contextmanager
def registered(spec: ProviderSpec) -> Iterator[ProviderSpec]:
    """``spec`` in the table for the length of the block (tests, plug-ins tried out)."""
    register(spec)
    try:
        yield spec
    finally:
        unregister(spec.name)


def names() -> tuple[str, ...]:
    """The providers' config names, in registration order."""
    return tuple(_TABLE)


def get(name: str) -> ProviderSpec:
    """The provider called ``name``; ``KeyError`` for one not in the table."""
    return _TABLE[name]


def config_keys() -> frozenset[str]:
    """Every key some provider adds to a ``[[sources]]`` entry."""
    return frozenset().union(*(spec.config_keys for spec in _TABLE.values()))


for _spec in _BUILT_IN:
    register(_spec)
