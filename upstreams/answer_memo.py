"""Decoded upstream answers, remembered by a digest of their exact bytes.

A token list changes rarely while it is read often (dashboards refresh, Relay refetches,
every page of a walk re-reads its source), so the same upstream answer comes back byte for
byte again and again. Parsing its JSON and normalising every token is the largest piece of
CPU a listed page costs after the answers arrive (~0.15-0.25 ms per source on these
machines), and it sits on the page's critical path. The request itself is always made:
what is remembered is only what those bytes decode to, so a changed answer is never
missed.

The key is a SHA-256 digest of the body and the decoding's scope (an application, a
user): the body itself is not kept. A decoded value that keeps raw parts of the answer must
have the secrets dropped from them first (Losant's lazily normalised pages do). A decoding can depend on the time (a token whose expiry passes
becomes EXPIRED), so each entry may carry the instant it stops being valid. Errors are
never remembered: a malformed answer is judged again each time.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_ENTRIES = 64
# Larger answers are decoded every time: bounds the memory the memo can hold (decoded tokens
# of at most this many bytes of JSON per entry).
DEFAULT_MAX_BODY = 128 * 1024


class AnswerMemo(Generic[T]):
    """A bounded LRU of ``decode``'s results for one adapter, keyed by (scope, body digest).

    Not thread-safe; an adapter lives on one event loop and ``decoded`` never awaits.
    Values are shared between requests: callers must treat them as immutable.
    """

    def __init__(self, *, entries: int = DEFAULT_ENTRIES, max_body: int = DEFAULT_MAX_BODY) -> None:
        if entries < 1:
            raise ValueError("entries must be at least 1")
        self._entries: OrderedDict[tuple[Hashable, bytes], tuple[T, datetime | None]] = (
            OrderedDict()
        )
        self._size = entries
        self._max_body = max_body
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def decoded(
        self,
        scope: Hashable,
        body: bytes,
        now: datetime,
        decode: Callable[[], tuple[T, datetime | None]],
    ) -> T:
        """What ``decode`` makes of ``body`` in ``scope``, from memory when the same bytes
        were decoded in the same scope before and the result is still valid at ``now``.

        ``decode`` returns the value and the instant it stops being valid (None: never).
        """
        if len(body) > self._max_body:
            self.misses += 1
            return decode()[0]
        key = (scope, hashlib.sha256(body).digest())
        entry = self._entries.get(key)
        if entry is not None:
            value, valid_until = entry
            if valid_until is None or now < valid_until:
                self._entries.move_to_end(key)
                self.hits += 1
                return value
            del self._entries[key]
        self.misses += 1
        value, valid_until = decode()
        self._entries[key] = (value, valid_until)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self._entries.clear()
