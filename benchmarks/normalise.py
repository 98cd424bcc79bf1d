"""Normaliser micro-benchmark (run by hand): upstream token JSON -> ``Token``, many times.

    python benchmarks/normalise.py [--rounds 300] [--loops 100] [--ab REF]

Times ``normalise_token`` on each seed's example tokens (Amper, the OAuth-style server,
Losant) and the page parser on a 20-token page of the OAuth and Losant simulators (what
the fan-out benchmark's pages carry), and prints the median time of one call.

``--ab REF`` loads the three ``normalise`` modules as they are at git ref REF beside this
tree's and times both in alternating rounds (A,B then B,A), so both see the same moments
of a shared machine; prints both medians and the paired median of B - A per case. REF's
modules run against this tree's ``upstreams`` package (model, errors), so only the
normalisers differ.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

from tokengate.upstreams.amper import normalise as amper_normalise
from tokengate.upstreams.losant import normalise as losant_normalise
from tokengate.upstreams.losant import simulator as losant_sim
from tokengate.upstreams.oauth import normalise as oauth_normalise
from tokengate.upstreams.oauth import simulator as oauth_sim

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2016, 12, 1, tzinfo=UTC)  # before the Losant seed token's expiry
APPLICATION = "575ec8687ae143cd83dc4a97"

# The seeds' examples, as the table-driven tests hold them (one copy in the repository).
sys.path.insert(0, str(ROOT))
from tests.upstreams.amper.test_normalise import SEED_LIST as AMPER_LIST  # noqa: E402
from tests.upstreams.losant.test_normalise import SEED_TOKEN as LOSANT_SEED  # noqa: E402
from tests.upstreams.oauth.test_normalise import SEED_X as OAUTH_SEED_X  # noqa: E402
from tests.upstreams.oauth.test_normalise import SEED_Y as OAUTH_SEED_Y  # noqa: E402

AMPER_SEED: dict[str, Any] = AMPER_LIST["data"][0]

Modules = dict[str, ModuleType]


@dataclass(frozen=True)
class Case:
    """One timed call: ``function`` of the ``provider``'s normalise module."""

    label: str
    tokens: int  # tokens per call
    provider: str
    function: str
    raw: object
    kwargs: dict[str, object]

    def bound(self, modules: Modules) -> Callable[[], object]:
        return partial(getattr(modules[self.provider], self.function), self.raw, **self.kwargs)


def _cases() -> list[Case]:
    losant = {"source": "fleet", "application_id": APPLICATION, "now": NOW}
    oauth = {"source": "idp", "user_id": oauth_sim.WALK_USER, "now": NOW}
    losant_page = next(iter(losant_sim.sample_state(30).applications.values()))[:20]
    oauth_page = [t.to_json() for t in oauth_sim.sample_state(30).listed(oauth_sim.WALK_USER)]
    return [
        Case("losant seed token", 1, "losant", "normalise_token", LOSANT_SEED, losant),
        Case(
            "losant simulator page",
            20,
            "losant",
            "parse_token_page",
            {"items": losant_page},
            losant,
        ),
        Case("oauth seed token X", 1, "oauth", "normalise_token", OAUTH_SEED_X, oauth),
        Case("oauth seed token Y", 1, "oauth", "normalise_token", OAUTH_SEED_Y, oauth),
        Case(
            "oauth simulator page",
            20,
            "oauth",
            "parse_token_list",
            {"tokens": oauth_page[:20]},
            oauth,
        ),
        Case(
            "amper seed token",
            1,
            "amper",
            "normalise_token",
            AMPER_SEED,
            {"source": "amper", "now": NOW},
        ),
    ]


def _load_ref(ref: str, workdir: Path) -> Modules:
    """The normalise modules as they are at ``ref``, each under a name of its own."""
    modules: Modules = {}
    for provider in ("amper", "losant", "oauth"):
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{ref}:upstreams/{provider}/normalise.py"],
            capture_output=True,
            check=True,
            text=True,
        ).stdout
        path = workdir / f"ref_{provider}_normalise.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(f"ref_{provider}_normalise", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up by name
        spec.loader.exec_module(module)
        modules[provider] = module
    return modules


def _tokens(answer: object) -> object:
    """What a call answered, as Tokens (a page's record class differs between A and B)."""
    tokens = getattr(answer, "tokens", None)
    return answer if tokens is None else list(tokens)


def _time(call: Callable[[], object], loops: int) -> float:
    """Microseconds per call, over ``loops`` calls."""
    started = time.perf_counter_ns()
    for _ in range(loops):
        call()
    return (time.perf_counter_ns() - started) / loops / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--loops", type=int, default=100, help="calls per timed sample")
    parser.add_argument("--ab", metavar="REF", help="compare with the normalisers at git ref REF")
    args = parser.parse_args()
    here: Modules = {"amper": amper_normalise, "losant": losant_normalise, "oauth": oauth_normalise}
    with tempfile.TemporaryDirectory() as tmp:
        sides = [_load_ref(args.ab, Path(tmp)), here] if args.ab else [here]
        for case in _cases():
            calls = [case.bound(modules) for modules in sides]
            if len(calls) == 2:
                answers = [_tokens(call()) for call in calls]
                assert answers[0] == answers[1], f"{case.label}: A and B answer differently"
            for call in calls:
                _time(call, args.loops)  # warm the caches both sides keep
            times: list[list[float]] = [[] for _ in calls]
            for round_ in range(args.rounds):
                order = range(len(calls)) if round_ % 2 == 0 else reversed(range(len(calls)))
                for which in order:
                    times[which].append(_time(calls[which], args.loops) / case.tokens)
            medians = "  ".join(
                f"{name} {statistics.median(samples):6.2f} us"
                for name, samples in zip(("A", "B") if args.ab else ("",), times, strict=True)
            )
            line = f"{case.label:<24} per token: {medians}"
            if len(times) == 2:
                paired = statistics.median(b - a for a, b in zip(*times, strict=True))
                line += f"  B - A paired {paired:+6.2f} us"
            print(line)
    if args.ab:
        print(f"A = {args.ab}, B = this tree; {args.rounds} rounds of {args.loops} calls each")


if __name__ == "__main__":
    main()
