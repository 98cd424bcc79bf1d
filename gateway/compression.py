"""gzip for answers over 1 KiB, as Starlette's middleware decides it, deflated by ISA-L.

Starlette's ``GZipMiddleware`` keeps its rules (the client's ``Accept-Encoding``, the size
threshold, excluded media types, streaming, ``Vary``); only the compressor differs. The
standard library's zlib takes most of the time gzip adds to a page on these machines, and
ISA-L's deflate (``isal``, the pycompression project's binding of Intel's library) makes
the same size of answer in about a third of the time (``benchmarks/gzip_levels.py``).
Where no ``isal`` wheel exists for the platform, the standard library's zlib is used.
"""

from __future__ import annotations

import zlib
from types import ModuleType
from typing import Any

from starlette.middleware.gzip import GZipMiddleware, GZipResponder, IdentityResponder
from starlette.types import ASGIApp, Receive, Scope, Send

# Answers over this many bytes are gzipped: below it, gzip's framing and the client's
# inflating cost more than the bytes they save.
GZIP_OVER_BYTES = 1024

deflate: ModuleType
try:
    from isal import isal_zlib

    deflate = isal_zlib
    # ISA-L has levels 0-3: 2 (its default) gives the size zlib's level 3 gives, in about
    # a third of the time; 3 takes twice as long for 1% less (benchmarks/README.md).
    GZIP_LEVEL = 2
except ImportError:  # pragma: no cover - platforms without an isal wheel
    deflate = zlib
    GZIP_LEVEL = 3


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value admits gzip (``gzip;q=0`` refuses it)."""
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.partition(";")
        if coding.strip() not in ("gzip", "x-gzip", "*"):
            continue
        q = params.strip()
        if q.startswith("q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False


class _Responder(GZipResponder):
    @property
    def compressor(self) -> Any:
        if self._compressor is None:
            self._compressor = deflate.compressobj(GZIP_LEVEL, deflate.DEFLATED, 16 + 15)
        return self._compressor


class Gzip(GZipMiddleware):
    """Starlette's gzip middleware with the compressor above and a real reading of
    ``Accept-Encoding`` (``gzip;q=0`` is a refusal, not an acceptance)."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app, minimum_size=GZIP_OVER_BYTES + 1, compresslevel=GZIP_LEVEL)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        accept = ""
        for name, value in scope["headers"]:
            if name == b"accept-encoding":
                accept = value.decode("latin-1")
                break
        responder: IdentityResponder
        if accepts_gzip(accept):
            responder = _Responder(
                self.app,
                self.minimum_size,
                compresslevel=self.compresslevel,
                thread_minimum_size=self.thread_minimum_size,
                exclude_content_types=self.exclude_content_types,
            )
        else:
            responder = IdentityResponder(
                self.app, self.minimum_size, exclude_content_types=self.exclude_content_types
            )
        await responder(scope, receive, send)
