"""The served schema is a compatible superset of the contract and of its second-round
additions, and schema.graphql is current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from graphql import (
    GraphQLSchema,
    ObjectTypeDefinitionNode,
    build_schema,
    find_breaking_changes,
    parse,
    specified_directives,
)

from tokengate.schema.build import build_schema as build_served

ROOT = Path(__file__).resolve().parents[2]
# A copy of the public schema contract kept in the repository, so the tests pass in a clone
# alone. When the contract changes, copy the new text here.
CONTRACT = Path(__file__).resolve().parent / "contract" / "schema-contract.graphql"
# The second-round additions (viewer, the User entity, AuditEvent.actorSubject), copied the
# same way; they extend the contract and hold together with it.
ADDITIONS = Path(__file__).resolve().parent / "contract" / "schema-additions.graphql"
# The additions apply the federation key directive; its definition is the served schema's
# business (Strawberry's federation directives), not part of the contract.
KEY_DIRECTIVE = "directive @key(fields: String!) repeatable on OBJECT | INTERFACE\n"


def contract_text() -> str:
    return CONTRACT.read_text()


def test_no_breaking_changes_against_the_contract() -> None:
    contract = build_schema(contract_text())
    served = build_served()._schema
    assert find_breaking_changes(contract, served) == []


def contract_with_additions(additions: str | None = None) -> GraphQLSchema:
    text = contract_text() + "\n" + KEY_DIRECTIVE + (additions or ADDITIONS.read_text())
    kwargs = build_schema(text).to_kwargs()
    kwargs["directives"] = specified_directives
    return GraphQLSchema(**kwargs)


def test_no_breaking_changes_against_the_contract_and_additions() -> None:
    served = build_served()._schema
    assert find_breaking_changes(contract_with_additions(), served) == []


def test_entities_of_the_additions_are_served_with_their_keys() -> None:
    """Breaking-change detection ignores applied directives: the keys are checked here."""
    served = build_served().as_str()
    keyed = [
        definition
        for definition in parse(ADDITIONS.read_text()).definitions
        if isinstance(definition, ObjectTypeDefinitionNode)
        and any(d.name.value == "key" for d in definition.directives or ())
    ]
    assert [d.name.value for d in keyed] == ["User"]
    for definition in keyed:
        for directive in definition.directives or ():
            [argument] = directive.arguments or ()
            fields = argument.value.value  # type: ignore[attr-defined]
            line = f'type {definition.name.value} @key(fields: "{fields}")'
            assert any(row.startswith(line) for row in served.splitlines()), line


def test_additions_checker_would_catch_a_missing_field() -> None:
    """Guard the guard: a served schema without Viewer.tokens must be reported."""
    additions = ADDITIONS.read_text()
    assert "type Viewer {\n" in additions
    wider = additions.replace("type Viewer {\n", "type Viewer {\n  extra: Int\n")
    changes = find_breaking_changes(contract_with_additions(wider), contract_with_additions())
    assert [c.description for c in changes] == ["Field Viewer.extra was removed."]


def test_checker_would_catch_a_breaking_change() -> None:
    """Guard the guard: removing a contract field must be reported."""
    contract = build_schema(contract_text())
    text = contract_text()
    assert "  deviceName: String\n" in text
    broken = build_schema(text.replace("  deviceName: String\n", ""))
    assert find_breaking_changes(contract, broken)


def test_schema_graphql_is_current() -> None:
    exported = subprocess.run(
        [sys.executable, "-m", "tokengate.gateway.cli", "export-schema"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (ROOT / "schema.graphql").read_text() == exported, (
        "schema.graphql is stale: run `tokengate export-schema > schema.graphql`"
    )
