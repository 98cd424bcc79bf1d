"""The served schema is a compatible superset of the contract, and schema.graphql is current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from graphql import build_schema, find_breaking_changes

from tokengate.schema.build import build_schema as build_served

ROOT = Path(__file__).resolve().parents[2]
# A copy of the public schema contract kept in the repository, so the tests pass in a clone
# alone. When the contract changes, copy the new text here.
CONTRACT = Path(__file__).resolve().parent / "contract" / "schema-contract.graphql"


def contract_text() -> str:
    return CONTRACT.read_text()


def test_no_breaking_changes_against_the_contract() -> None:
    contract = build_schema(contract_text())
    served = build_served()._schema
    assert find_breaking_changes(contract, served) == []


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
