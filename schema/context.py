"""What every resolver gets in ``info.context``: the caller, the service, per-request loaders."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tokengate.upstreams.errors import TokengateError
from tokengate.upstreams.principal import Principal
from tokengate.upstreams.service import TokenService

if TYPE_CHECKING:
    from tokengate.schema.loaders import TokenLoader
    from tokengate.schema.types import SourceType


@dataclass
class Context:
    service: TokenService
    principal: Principal
    token_loader: TokenLoader
    service_types: Mapping[str, SourceType]
    request_id: str
    request: Any = None
    response: Any = None
    # The name of the operation the parsed document selects (for logs and metrics).
    operation_name: str | None = None
    # Errors to report next to partial data (failed sources), added after execution.
    extra_errors: list[tuple[TokengateError, list[str | int]]] = field(default_factory=list)
