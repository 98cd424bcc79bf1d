"""Losant application API tokens: one or more applications' tokens as one source."""

from __future__ import annotations

from tokengate.upstreams.losant.client import LosantSource

__all__ = ["LosantSource"]
