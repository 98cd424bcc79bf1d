"""Splits a py-spy profile of the gateway by layer (run by hand; issue 14).

    python benchmarks/profile_layers.py FILE [--top 25]

FILE is py-spy's raw format (``py-spy record --format raw``; ``vs_mesh.py --py-spy FILE``
writes one): a line per distinct stack, frames outermost first, then a sample count. Each
sample goes to the layer of its innermost frame ("self" time), where a frame of a generic
helper (typing, functools, contextlib, enum, dataclasses, abc, re, copy, weakref) passes
the sample on to its caller. The gateway's own frames count per file. Prints every layer's
share of the samples, the gateway's files, and the ``--top`` innermost frames.

Without ``--native`` a C function's time (SHA-256, a SQLite step, JSON encoding in
orjson) shows at the Python line that called it.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")

# (layer, path fragments), the first match wins; matched against the frame's file as
# py-spy prints it (a path relative to its sys.path entry, or absolute).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("store: SQLAlchemy", ("sqlalchemy/",)),
    ("store: aiosqlite, sqlite3", ("aiosqlite/", "sqlite3/")),
    ("upstream HTTP: httpx, httpcore", ("httpx/", "httpcore/")),
    ("upstream HTTP: aiohttp, yarl, multidict", ("aiohttp/", "yarl/", "multidict/")),
    ("GraphQL: Strawberry", ("strawberry/",)),
    ("GraphQL: graphql-core", ("graphql/",)),
    ("ASGI: uvicorn, h11, httptools", ("uvicorn/", "h11/", "httptools/")),
    ("ASGI: Starlette", ("starlette/",)),
    ("event loop: asyncio, selectors", ("asyncio/", "selectors.py", "uvloop/")),
    ("logging", ("logging/",)),
    ("metrics: prometheus_client", ("prometheus_client/",)),
    ("tracing: opentelemetry", ("opentelemetry/",)),
    ("JSON: json, orjson", ("json/", "orjson/")),
    ("threads: threading, queue, concurrent", ("threading.py", "queue.py", "concurrent/")),
]
GENERIC = (
    "typing.py",
    "functools.py",
    "contextlib.py",
    "enum.py",
    "dataclasses.py",
    "abc.py",
    "re/",
    "re.py",
    "copy.py",
    "weakref.py",
    "_weakrefset.py",
    "inspect.py",
    "typing_extensions.py",
)
OWN = re.compile(r"(?:^|/)(?:tokengate/)?(gateway|schema|upstreams)/(?P<rest>[^;]*\.py)$")


def own_file(path: str) -> str | None:
    """The gateway's file a frame is in (``gateway/view.py``), or None."""
    if "site-packages/" in path or "/lib/python" in path:
        return None
    match = OWN.search(path)
    return f"{match.group(1)}/{match.group('rest')}" if match else None


def layer_of(path: str) -> str | None:
    """The layer of a frame's file; None for a generic helper (the caller's layer)."""
    own = own_file(path)
    if own is not None:
        return f"tokengate: {own}"
    if any(path.endswith(g) or f"/{g}" in path or path.startswith(g) for g in GENERIC):
        return None
    for name, fragments in LAYERS:
        if any(f in path for f in fragments):
            return name
    return "other"


def parse(text: str) -> list[tuple[list[tuple[str, str, str]], int]]:
    """Stacks (frames outermost first, each (function, file, line)) and their counts."""
    stacks = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        stack, _, count = raw.rpartition(" ")
        frames = []
        for frame in stack.split(";"):
            match = FRAME.match(frame)
            if match:
                frames.append((match["function"], match["file"], match["line"]))
            else:  # a thread or process marker
                frames.append((frame, "", "0"))
        stacks.append((frames, int(count)))
    return stacks


def split(
    stacks: list[tuple[list[tuple[str, str, str]], int]],
) -> tuple[Counter[str], Counter[str], int]:
    """(samples per layer, samples per innermost frame, all samples)."""
    layers: Counter[str] = Counter()
    frames: Counter[str] = Counter()
    total = 0
    for stack, count in stacks:
        total += count
        layer = "other"
        for function, path, line in reversed(stack):
            if not path:
                continue
            found = layer_of(path)
            if found is not None:
                layer = found
                frames[f"{function} ({path}:{line})"] += count
                break
        layers[layer] += count
    return layers, frames, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    layers, frames, total = split(parse(args.file.read_text()))
    if not total:
        parser.error("no samples in the file")
    own = sum(n for name, n in layers.items() if name.startswith("tokengate: "))
    grouped = Counter({n: c for n, c in layers.items() if not n.startswith("tokengate: ")})
    grouped["tokengate's own code"] = own
    print(f"{total} samples")
    print("\nby layer (self time):")
    for name, count in grouped.most_common():
        print(f"  {count / total:6.1%}  {name}")
    print("\ntokengate's own code, by file:")
    for name, count in layers.most_common():
        if name.startswith("tokengate: "):
            print(f"  {count / total:6.1%}  {name.removeprefix('tokengate: ')}")
    print(f"\ntop {args.top} innermost frames:")
    for name, count in frames.most_common(args.top):
        print(f"  {count / total:6.1%}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
