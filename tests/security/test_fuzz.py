"""Schema-driven fuzzing: queries and mutations generated from the served schema, and
every argument of every root field fed generated variable values.

No response may be an HTTP 5xx, hold a traceback, or be a masked crash
(INTERNAL_SERVER_ERROR); with variables, no traceback may reach the log either. A few
thousand operations in CI; set TOKENGATE_FUZZ_EXAMPLES (and TOKENGATE_FUZZ_VARIABLES) for
a longer run by hand.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import graphql
import httpx
import pytest
from graphql import is_required_argument, is_required_input_field
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema, nodes

from tests.conftest import BOOTSTRAP, LogCapture, gateway_config
from tokengate.gateway.app import create_app
from tokengate.gateway.demo import PROVIDERS, simulators
from tokengate.schema.build import build_schema
from tokengate.upstreams.loopback import serve_in_thread
from tokengate.upstreams.oauth.normalise import local_id_for
from tokengate.upstreams.oauth.simulator import ODD_USER, WALK_USER

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("TOKENGATE_FUZZ_EXAMPLES", "2400"))
VARIABLE_EXAMPLES = int(os.environ.get("TOKENGATE_FUZZ_VARIABLES", "300"))
SCHEMA = build_schema()._schema


def _representation(typename: str, id_: str) -> graphql.ObjectValueNode:
    def field(name: str, value: str) -> graphql.ObjectFieldNode:
        return graphql.ObjectFieldNode(name=graphql.NameNode(value=name), value=nodes.String(value))

    return nodes.Object([field("__typename", typename), field("id", id_)])


SCALARS = {
    "DateTime": st.one_of(
        st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
        st.datetimes().map(lambda d: d.isoformat()),  # naive: must be refused cleanly
        st.text(max_size=30),
    ).map(nodes.String),
    "_Any": st.builds(
        _representation,
        st.sampled_from(["Token", "Source", "Nope"]),
        st.one_of(st.text(max_size=60), st.just("VG9rZW46aW50ZXJuYWw6MA")),
    ),
}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, str]]:
    """A gateway over the store and all three simulated upstreams."""
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    mp = pytest.MonkeyPatch()
    mp.setenv("TOKENGATE_BOOTSTRAP_TOKEN", BOOTSTRAP)
    try:
        with simulators(PROVIDERS, count=10) as sims:
            config = gateway_config(tmp, sources=tuple(s.source for s in sims.values()))
            with (
                serve_in_thread(create_app(config)) as url,
                httpx.Client(
                    headers={"Authorization": f"Bearer {BOOTSTRAP}"}, timeout=30
                ) as client,
            ):
                client.post(
                    f"{url}/graphql",
                    json={
                        "query": 'mutation { createToken(input: {source: "internal", name: "seed"}) { secret } }'
                    },
                )
                yield client, url
    finally:
        mp.undo()


def check(
    client: httpx.Client, url: str, query: str, variables: dict[str, Any] | None = None
) -> None:
    # Encoded here with ASCII escapes: lone surrogates ("\ud800") are valid JSON text.
    body = {"query": query} if variables is None else {"query": query, "variables": variables}
    response = client.post(
        f"{url}/graphql",
        content=json.dumps(body).encode("ascii"),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code < 500, (query, variables, response.text)
    text = response.text
    assert "Traceback" not in text and 'File "' not in text, (query, text)
    body = response.json()
    codes = {e.get("extensions", {}).get("code") for e in body.get("errors", [])}
    assert "INTERNAL_SERVER_ERROR" not in codes, (query, variables, json.dumps(body)[:2000])
    assert None not in codes, (query, variables, body)


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    database=None,
)


@FUZZ
@given(data=st.data())
def test_generated_operations(target: tuple[httpx.Client, str], data: st.DataObject) -> None:
    """Valid queries and mutations of every shape the schema allows."""
    operation = data.draw(from_schema(SCHEMA, custom_scalars=SCALARS, allow_x00=False))
    check(*target, str(operation))


@settings(FUZZ, max_examples=max(EXAMPLES // 3, 50))
@given(data=st.data())
def test_invalid_operations(target: tuple[httpx.Client, str], data: st.DataObject) -> None:
    """Operations that break the schema's rules: refused with a code, never a crash."""
    operation = data.draw(
        from_schema(SCHEMA, custom_scalars=SCALARS, allow_x00=False, mode=Mode.NEGATIVE)
    )
    check(*target, str(operation))


# -- generated variable values ---------------------------------------------------------------
#
# Every root field with arguments, each argument a variable of its declared type; the values
# follow the type most of the time (so they get past coercion and into the resolvers), and
# are hostile within it: odd text, extreme numbers and instants, forged ids, long lists.


def mostly(
    usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], odds: int = 25
) -> st.SearchStrategy[Any]:
    """``rare`` once in ``odds`` draws, else ``usual`` (so that most operations get past
    coercion: a wrong-typed value anywhere stops the whole operation there)."""
    # Not st.integers: it favours its bounds, which would make "rare" common.
    return st.sampled_from([usual] * (odds - 1) + [rare]).flatmap(lambda chosen: chosen)


ODD_TEXT = [
    "",
    " ",
    "..",
    "..;",
    "%2E%2E",
    "a%2Fb",
    "a/b?c#d",
    "user;x",
    "\x00",
    "a\r\nX-Injected: 1",
    "\u202e\ufeffZoë 用户",
    "\ud800",
    "\udfff\ud83d",
    "*" * 11,
    "*a*b*c*d*e*f*g*h*i*j*",
    "?*?*",
    "a*b?c[d]",
    "[!a-z]{x,y}\\*",
    "x" * 300,
    "tg_" + "A" * 43,
    "internal",
    "amper",
    "idp",
    "fleet",
    "575ec8687ae143cd83dc4a97",
    WALK_USER,
    ODD_USER,
]
TEXT = mostly(
    st.one_of(st.sampled_from(ODD_TEXT), st.text(max_size=24)),
    st.text(st.characters(exclude_categories=()), max_size=12),  # controls, surrogates
    odds=5,
)
HUGE_NUMBERS = st.one_of(
    st.sampled_from([2**31 - 1, 2**31, -(2**31) - 1, 2**63, -(10**30), 10**30]),
    st.floats(allow_nan=False, allow_infinity=False),
)
INTS = mostly(st.integers(-3, 120), HUGE_NUMBERS, odds=6)
OFFSETS = st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m)))
NEAR_THE_ENDS = st.one_of(
    st.datetimes(max_value=datetime(1, 1, 1, 23, 59)),
    st.datetimes(min_value=datetime(9999, 12, 31)),
)
# Instants near the ends of Python's range, where an offset can push UTC out of it, twice
# in three draws; any instant or malformed text the rest of the time.
DATETIMES = mostly(
    st.one_of(
        st.sampled_from(
            [
                "0001-01-01T00:00:00+14:00",
                "9999-12-31T23:59:59.999999-14:00",
                "0001-01-01T00:00:00Z",
                "9999-12-31T23:59:59.999999+00:00",
            ]
        ),
        st.builds(lambda d, tz: d.replace(tzinfo=tz).isoformat(), NEAR_THE_ENDS, OFFSETS),
    ),
    st.one_of(
        st.builds(lambda d, tz: d.replace(tzinfo=tz).isoformat(), st.datetimes(), OFFSETS),
        st.sampled_from(["2020-01-01T00:00:00", "2020-02-30T00:00:00Z", "1970-01-01", "now"]),
        TEXT,
    ),
    odds=3,
)
LOCAL_IDS = st.one_of(
    TEXT,
    st.sampled_from(
        [
            "abcd1234",
            "575ec8687ae143cd83dc4a97/5b9f2e6c1e2d3a0012ab34cd",
            local_id_for(WALK_USER, "7d507b7e-6221-4f06-a75e-ef6e6f06d32b"),
            local_id_for("..;", "7d507b7e-6221-4f06-a75e-ef6e6f06d32b"),
            "%2E%2E/7d507b7e-6221-4f06-a75e-ef6e6f06d32b",
            "0",
        ]
    ),
)


def forged_id(kind: str, source: str, local_id: str) -> str:
    """A global ID as the gateway spells them, for any text (surrogates as invalid UTF-8)."""
    raw = f"{kind}:{source}:{local_id}".encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


IDS = st.one_of(
    st.builds(
        forged_id,
        st.sampled_from(["Token", "Source", "Nope"]),
        st.sampled_from(["internal", "amper", "idp", "fleet", "nope", "Bad Key"]),
        LOCAL_IDS,
    ),
    TEXT,
)
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    INTS,
    TEXT,
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
SCALAR_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "String": TEXT,
    "ID": IDS,
    "Int": INTS,
    "Float": INTS,
    "Boolean": st.booleans(),
    "DateTime": DATETIMES,
    "_Any": st.one_of(
        st.fixed_dictionaries(
            {"__typename": st.sampled_from(["Token", "Source", "Nope"]), "id": IDS}
        ),
        JUNK,
    ),
}


def some_of(
    required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    """Dictionaries of every ``required`` key and up to three ``optional`` ones: a few odd
    values at a time, so that one refused value does not hide what the others would do."""
    if not optional:
        return st.fixed_dictionaries(required)
    chosen = st.lists(st.sampled_from(sorted(optional)), max_size=3, unique=True)
    return chosen.flatmap(
        lambda names: st.fixed_dictionaries({**required, **{n: optional[n] for n in names}})
    )


SOURCE_KEYS = st.sampled_from(["internal", "amper", "idp", "fleet"])
# Arguments and input fields whose meaning narrows what is worth sending: mostly values that
# pass, so that the operation gets on to its other arguments.
BY_NAME: dict[str, st.SearchStrategy[Any]] = {
    "source": mostly(SOURCE_KEYS, TEXT, odds=6),
    "sources": mostly(st.lists(SOURCE_KEYS, max_size=3), st.lists(TEXT, max_size=60), odds=6),
    "first": mostly(st.one_of(st.none(), st.integers(1, 100)), INTS, odds=4),
    "last": mostly(st.one_of(st.none(), st.integers(1, 100)), INTS, odds=4),
    "after": mostly(st.none(), TEXT, odds=4),
    "before": mostly(st.none(), TEXT, odds=4),
    "userId": mostly(st.sampled_from([WALK_USER, ODD_USER]), TEXT, odds=2),
}


def value_for(type_: graphql.GraphQLInputType, name: str = "") -> st.SearchStrategy[Any]:
    """Values for a variable of ``type_``: well-typed mostly, the wrong type now and then."""
    if name in BY_NAME:
        return BY_NAME[name]
    if isinstance(type_, graphql.GraphQLNonNull):
        return mostly(value_for(type_.of_type), st.none(), odds=40)
    if isinstance(type_, graphql.GraphQLList):
        item = value_for(type_.of_type)
        return mostly(
            st.lists(item, max_size=4), st.one_of(item, st.lists(item, min_size=51, max_size=120))
        )
    if isinstance(type_, graphql.GraphQLInputObjectType):
        fields = type_.fields.items()
        required = {n: value_for(f.type, n) for n, f in fields if is_required_input_field(f)}
        optional = {n: value_for(f.type, n) for n, f in fields if n not in required}
        return mostly(
            some_of(required, optional), some_of({**required, "unknownField": JUNK}, optional)
        )
    if isinstance(type_, graphql.GraphQLEnumType):
        return mostly(st.sampled_from(list(type_.values)), st.sampled_from(["NOPE", "asc", ""]))
    assert isinstance(type_, graphql.GraphQLScalarType), type_
    return mostly(SCALAR_VALUES[type_.name], JUNK, odds=40)


def selection(type_: graphql.GraphQLOutputType, depth: int = 3) -> str:
    """Every field of ``type_`` that needs no argument, objects to ``depth`` levels."""
    named = graphql.get_named_type(type_)
    if graphql.is_leaf_type(named):
        return ""
    if isinstance(named, graphql.GraphQLInterfaceType | graphql.GraphQLUnionType):
        kinds = SCHEMA.get_possible_types(named)
        return (
            "{ __typename "
            + " ".join(f"... on {k.name} {selection(k, depth)}" for k in kinds)
            + " }"
        )
    assert isinstance(named, graphql.GraphQLObjectType)
    parts = ["__typename"]
    for name, field in named.fields.items():
        if any(graphql.is_required_argument(a) for a in field.args.values()):
            continue
        inner = graphql.get_named_type(field.type)
        if graphql.is_leaf_type(inner):
            parts.append(name)
        elif depth > 0:
            parts.append(f"{name} {selection(inner, depth - 1)}")
    return "{ " + " ".join(parts) + " }"


# The fields with the most arguments, drawn more often.
WEIGHTS = {"tokens": 4, "createToken": 3, "updateToken": 2}


def operations() -> list[tuple[str, st.SearchStrategy[dict[str, Any]]]]:
    """(operation text, its variables) for every root field with arguments."""
    found = []
    for kind, root in (("query", SCHEMA.query_type), ("mutation", SCHEMA.mutation_type)):
        assert root is not None
        for name, field in root.fields.items():
            if not field.args:
                continue
            declared = ", ".join(f"${a}: {arg.type}" for a, arg in field.args.items())
            passed = ", ".join(f"{a}: ${a}" for a in field.args)
            text = f"{kind}({declared}) {{ {name}({passed}) {selection(field.type)} }}"
            args = field.args.items()
            required = {a: value_for(arg.type, a) for a, arg in args if is_required_argument(arg)}
            optional = {a: value_for(arg.type, a) for a, arg in args if a not in required}
            variables = some_of(required, optional)
            found.extend([(text, variables)] * WEIGHTS.get(name, 1))
    return found


OPERATIONS = operations()


@settings(FUZZ, max_examples=VARIABLE_EXAMPLES)
@given(data=st.data())
def test_generated_variable_values(
    target: tuple[httpx.Client, str], captured_logs: LogCapture, data: st.DataObject
) -> None:
    """Every argument of every root field, fed hostile values through variables: refused
    with a code or answered, never a crash, and never a traceback in the log."""
    query, values = data.draw(st.sampled_from(OPERATIONS))
    variables = data.draw(values)
    captured_logs.lines.clear()
    check(*target, query, variables)
    assert "Traceback" not in captured_logs.text, (query, variables, captured_logs.text[-3000:])
