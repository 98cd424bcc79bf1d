"""The merged Relay connection: k-way merge of source pages and composite cursors.

Pure and synchronous; it knows nothing about any particular source. A cursor is the
boundary's sort key in the gateway's total order (so every source can seek past it) plus
each source's own resume hint for its last item consumed in the same walk direction (so an
offset- or page-based upstream resumes without re-reading earlier pages). Cursors are
sealed by the ``CursorCodec`` passed in: a cursor the gateway did not issue is refused
before any source sees its hints.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from tokengate.upstreams.cursor_codec import INVALID, CursorCodec
from tokengate.upstreams.errors import InvalidCursor
from tokengate.upstreams.model import (
    Direction,
    OrderField,
    SortKey,
    SortValue,
    SourceItem,
    SourcePage,
    Token,
    TokenOrder,
)
from tokengate.upstreams.ordering import order_tuple, sort_value

# 2: sealed by a CursorCodec (1 was unsigned and is refused).
CURSOR_VERSION = 2
CURSOR_KIND = b"tokens"
MAX_POSITION_LENGTH = 512
MAX_NAME_VALUE_LENGTH = 1024
_FIELD_CODES = {f: f.value for f in OrderField}


@dataclass(frozen=True, slots=True)
class Cursor:
    """A place in one order: after (forward) or before (backward) ``key``."""

    order: TokenOrder
    key: SortKey
    backward: bool = False
    positions: Mapping[str, str] = field(default_factory=dict)


def encode_cursor(cursor: Cursor, codec: CursorCodec) -> str:
    """Opaque, URL-safe, versioned, signed text for ``cursor``."""
    key = cursor.key
    return _cursor_text(
        codec,
        cursor.order,
        key.value,
        key.source,
        key.local_id,
        cursor.backward,
        cursor.positions,
    )


def _cursor_text(
    codec: CursorCodec,
    order: TokenOrder,
    value: SortValue,
    source: str,
    local_id: str,
    backward: bool,
    positions: Mapping[str, str],
) -> str:
    """``encode_cursor`` from its parts: a page's cursors are made without Cursor objects."""
    payload = {
        "v": CURSOR_VERSION,
        "o": [order.field.value, order.direction.value],
        "k": [_encode_value(value), source, local_id],
        "b": int(backward),
        "p": positions,
    }
    raw = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return codec.seal(raw, kind=CURSOR_KIND)


def decode_cursor(text: str, order: TokenOrder, codec: CursorCodec) -> Cursor:
    """The cursor in ``text``, checked against the order it is used with.

    Raises ``InvalidCursor`` for anything that is not a cursor of this gateway for this
    order: the message says what to do, never how the cursor is built. The payload is
    still checked field by field after its MAC: a signed cursor is trusted to be ours, not
    to be well-formed forever.
    """
    raw = codec.open(text, kind=CURSOR_KIND)
    try:
        payload = json.loads(raw.decode("utf-8"))
        if not isinstance(payload, dict) or payload.get("v") != CURSOR_VERSION:
            raise ValueError("version")
        field_name, direction = payload["o"]
        cursor_order = TokenOrder(OrderField(field_name), Direction(direction))
        value, source, local_id = payload["k"]
        if not isinstance(source, str) or not isinstance(local_id, str):
            raise ValueError("key")
        positions = payload.get("p", {})
        if not isinstance(positions, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and len(v) <= MAX_POSITION_LENGTH
            for k, v in positions.items()
        ):
            raise ValueError("positions")
        backward = payload.get("b", 0)
        if backward not in (0, 1):
            raise ValueError("direction")
        key = SortKey(_decode_value(value, cursor_order.field), source, local_id)
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise InvalidCursor(INVALID) from exc
    if cursor_order != order:
        raise InvalidCursor(
            "the cursor belongs to another orderBy: start again without after/before"
        )
    return Cursor(order=cursor_order, key=key, backward=bool(backward), positions=positions)


def _encode_value(value: SortValue) -> Any:
    if value is None:
        return None
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    return {"s": value}


def _decode_value(raw: Any, order_field: OrderField) -> SortValue:
    if raw is None:
        return None
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ValueError("value")
    if order_field is OrderField.NAME:
        text = raw["s"]
        if not isinstance(text, str) or len(text) > MAX_NAME_VALUE_LENGTH:
            raise ValueError("value")
        return text
    text = raw["t"]
    if not isinstance(text, str) or len(text) > 64:
        raise ValueError("value")
    parsed = datetime.fromisoformat(text)
    if parsed.utcoffset() is None:
        raise ValueError("value")
    # In UTC, or refused: an instant outside years 1..9999 once in UTC cannot be compared,
    # converted or stored anywhere downstream (astimezone raises OverflowError for it).
    return parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Edge:
    token: Token
    cursor: str


@dataclass(frozen=True, slots=True)
class MergedPage:
    edges: list[Edge]
    has_next_page: bool
    has_previous_page: bool
    total_count: int | None


class _Desc:
    """Inverts comparison so that heapq (a min-heap) can merge descending streams."""

    __slots__ = ("t",)

    def __init__(self, t: tuple[int, Any, str, str]) -> None:
        self.t = t

    def __lt__(self, other: _Desc) -> bool:
        return self.t > other.t


def merge_pages(
    pages: Mapping[str, SourcePage],
    *,
    order: TokenOrder,
    limit: int,
    cursor: Cursor | None,
    backward: bool,
    count_complete: bool,
    codec: CursorCodec,
) -> MergedPage:
    """Merge each source's page (each already in walk order) into one Relay page.

    ``backward`` is a ``last/before`` walk: the pages arrive in reversed order and the
    result is flipped back into ``order``. ``count_complete`` is False when some source
    could not count or failed, making ``total_count`` None.
    """
    walk_direction = order.direction.flipped() if backward else order.direction
    ascending = walk_direction is Direction.ASC

    order_field = order.field

    def heap_key(item: SourceItem) -> Any:
        t = order_tuple(item.token, order_field)
        return t if ascending else _Desc(t)

    streams = [[(heap_key(item), src, item) for item in page.items] for src, page in pages.items()]
    merged = heapq.merge(*streams, key=lambda entry: entry[0])
    positions: dict[str, str] = (
        dict(cursor.positions) if cursor is not None and cursor.backward == backward else {}
    )
    taken: list[tuple[Token, str]] = []
    leftover = False
    for _key, src, item in merged:
        if len(taken) == limit:
            leftover = True
            break
        if item.position is not None:
            positions[src] = item.position
        else:
            positions.pop(src, None)
        token = item.token
        value = sort_value(token, order_field)
        text = _cursor_text(codec, order, value, token.source, token.local_id, backward, positions)
        taken.append((token, text))
    more_in_walk = leftover or any(page.has_more for page in pages.values())
    if backward:
        taken.reverse()
    edges = [Edge(token, text) for token, text in taken]
    total: int | None = None
    if count_complete and all(p.total_count is not None for p in pages.values()):
        total = sum(p.total_count or 0 for p in pages.values())
    if backward:
        return MergedPage(edges, cursor is not None, more_in_walk, total)
    return MergedPage(edges, more_in_walk, cursor is not None, total)


def positions_for(cursor: Cursor | None, backward: bool, source: str) -> str | None:
    """The resume hint to hand ``source`` for a walk in this direction from ``cursor``."""
    if cursor is None or cursor.backward != backward:
        return None
    return cursor.positions.get(source)


__all__ = [
    "CURSOR_VERSION",
    "Cursor",
    "Edge",
    "MergedPage",
    "decode_cursor",
    "encode_cursor",
    "merge_pages",
    "positions_for",
]
