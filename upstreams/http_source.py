"""What every HTTP upstream adapter holds the same way: its source key and display name,
its checked base URL, and the ``UpstreamHttp`` its requests go through."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NotRequired, TypedDict

import httpx

from tokengate.upstreams.http_edge import DEFAULT_MAX_ANSWER_BYTES, UpstreamHttp
from tokengate.upstreams.http_edge import base_url as checked_base_url
from tokengate.upstreams.model import Capabilities, Provider


class Upstream(TypedDict):
    """The constructor arguments every adapter takes (``**upstream: Unpack[Upstream]``)."""

    key: str
    name: str
    base_url: str
    client: httpx.AsyncClient
    timeout_s: NotRequired[float]
    connect_timeout_s: NotRequired[float | None]
    max_answer_bytes: NotRequired[int]


class HttpSource:
    """The base of an upstream adapter; the adapter sets ``provider`` and ``capabilities``
    and says how it authenticates (``headers``) and what a 401/403 refused (``credential``)."""

    provider: Provider
    capabilities: Capabilities

    def __init__(
        self,
        *,
        headers: Mapping[str, str],
        credential: str,
        key: str,
        name: str,
        base_url: str,
        client: httpx.AsyncClient,
        timeout_s: float = 10.0,
        connect_timeout_s: float | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        self._base = checked_base_url(base_url)
        self._key = key
        self._name = name
        self._http = UpstreamHttp(
            key=key,
            name=name,
            client=client,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_answer_bytes=max_answer_bytes,
            headers=headers,
            credential=credential,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self._key!r}, base_url={self._base!r})"

    @property
    def key(self) -> str:
        return self._key

    @property
    def name(self) -> str:
        return self._name


__all__ = ["HttpSource", "Upstream"]
