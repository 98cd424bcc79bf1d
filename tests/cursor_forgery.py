"""Cursors made by hand, as an attacker (or an old gateway) would make them."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from tests.conftest import Gateway
from tokengate.upstreams.cursor_codec import CursorCodec
from tokengate.upstreams.merge import CURSOR_KIND, CURSOR_VERSION
from tokengate.upstreams.store import load_key


def codec_of(gateway: Gateway) -> CursorCodec:
    """The codec of a running gateway: the one its server key derives."""
    return CursorCodec.from_server_key(load_key(gateway.config.store.key_file))


def unsigned(payload: object) -> str:
    """A payload as cursor version 1 sent it: base64url JSON, no MAC."""
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def sealed(codec: CursorCodec, payload: object) -> str:
    """A payload signed with ``codec``: what a gateway holding that key would issue."""
    return codec.seal(json.dumps(payload).encode(), kind=CURSOR_KIND)


def opened(codec: CursorCodec, cursor: str) -> dict[str, object]:
    payload: dict[str, object] = json.loads(codec.open(cursor, kind=CURSOR_KIND))
    return payload


@dataclass(frozen=True)
class Payload:
    """A cursor payload for a parametrized test, sealed once the gateway's key is known."""

    body: object

    def cursor(self, gateway: Gateway) -> str:
        return sealed(codec_of(gateway), self.body)


def token_cursor(
    *,
    value: object = None,
    source: object = "internal",
    local_id: object = "x",
    order: object = ("CREATED_AT", "ASC"),
    backward: object = 0,
    positions: object = None,
    version: object = CURSOR_VERSION,
) -> dict[str, object]:
    return {
        "v": version,
        "o": list(order) if isinstance(order, tuple) else order,
        "k": [value, source, local_id],
        "b": backward,
        "p": {} if positions is None else positions,
    }
