"""Amper Music's access-token API (JSON:API, Basic auth with the API token)."""

from __future__ import annotations

from tokengate.upstreams.amper.client import AmperSource

__all__ = ["AmperSource"]
