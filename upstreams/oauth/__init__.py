"""The OAuth-style (Onegini / OneWelcome) token server's end-user token API."""

from __future__ import annotations

from tokengate.upstreams.oauth.client import OAuthSource

__all__ = ["OAuthSource"]
