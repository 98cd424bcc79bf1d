"""Per-request batched loading of tokens by global ID (``node``, ``nodes``, ``_entities``)."""

from __future__ import annotations

from collections.abc import Mapping

from aiodataloader import DataLoader

from tokengate.schema.types import SourceType, TokenType, token_type
from tokengate.upstreams.errors import TokengateError
from tokengate.upstreams.principal import Principal
from tokengate.upstreams.service import TokenService


class TokenLoader(DataLoader[str, TokenType | None]):
    """Collects the ids asked for in one tick and loads them with one call per source."""

    def __init__(
        self,
        service: TokenService,
        principal: Principal,
        source_types: Mapping[str, SourceType],
    ) -> None:
        super().__init__(max_batch_size=100)
        self._service = service
        self._principal = principal
        self._source_types = source_types

    async def batch_load_fn(self, keys: list[str]) -> list[TokenType | None]:
        loaded = await self._service.load_tokens(self._principal, keys)
        out: list[TokenType | TokengateError | None] = []
        for item in loaded:
            if item is None or isinstance(item, TokengateError):
                out.append(item)
            else:
                out.append(token_type(item, self._source_types[item.source]))
        # aiodataloader rejects the key whose slot holds an exception (one id, not the batch).
        return out  # type: ignore[return-value]
