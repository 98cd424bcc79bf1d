"""The README's "For security teams" documents, exactly as written, against `tokengate serve
--demo`: find the token behind the demo's admin secret and a Losant secret, offboard the
demo user (dry run, then for real with the cursor), and read the audit trail."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DemoProcess

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## For security teams: leaked secrets and offboarding"


def readme_documents() -> dict[str, str]:
    """The section's GraphQL documents by operation name."""
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    blocks = re.findall(r"```graphql\n(.*?)```", text[start:end], re.DOTALL)
    named = {}
    for block in blocks:
        found = re.match(r"\s*(?:query|mutation)\s+(\w+)", block)
        assert found is not None, block
        named[found.group(1)] = block
    return named


def test_the_section_holds_the_documents_it_names() -> None:
    assert set(readme_documents()) == {
        "FindLeak",
        "MakeLeak",
        "Offboard",
        "OffboardForReal",
        "AuditTrail",
    }


@pytest.mark.slow
def test_readme_queries_against_the_demo(tmp_path: Path) -> None:
    documents = readme_documents()
    env = {**os.environ, "TOKENGATE_SHUTDOWN_DELAY_S": "0", "XDG_CACHE_HOME": str(tmp_path)}
    env.pop("TOKENGATE_BOOTSTRAP_TOKEN", None)
    demo = DemoProcess(tmp_path, env)
    url = f"{demo.url}/graphql"
    made: dict[str, Any] = {"secret": "never made"}
    try:
        header = demo.wait_printed(r'Header:\s+\{"Authorization": "Bearer (\S+)"\}', "admin token")
        admin = header.group(1)

        def run(name: str, **variables: Any) -> dict[str, Any]:
            answer = httpx.post(
                url,
                json={"query": documents[name], "variables": variables},
                headers={"Authorization": f"Bearer {admin}"},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            assert "errors" not in body, body
            data: dict[str, Any] = body["data"]
            return data

        # The printed admin token is an internal secret.
        [match] = run("FindLeak", secret=admin)["tokensBySecret"]
        assert match["match"] == "EXACT"
        assert match["token"]["provider"] == "INTERNAL" and match["token"]["status"] == "ACTIVE"
        # A Losant secret, made as the README says.
        made = run("MakeLeak")["createToken"]
        [match] = run("FindLeak", secret=made["secret"])["tokensBySecret"]
        assert match["match"] == "EXACT" and match["token"]["id"] == made["token"]["id"]
        assert match["token"]["source"]["key"] == "fleet"

        # Offboarding: the dry run names the user's OAuth-style and internal tokens.
        dry = run("Offboard")["revokeTokens"]
        assert dry["dryRun"] is True and dry["hasMore"] is False
        sources = {s["source"]["key"]: s for s in dry["sources"]}
        assert set(sources) == {"internal", "idp"}
        assert [t["name"] for t in sources["internal"]["revoked"]] == ["anna-self-service"]
        assert len(sources["idp"]["revoked"]) >= 10
        revoked = 0
        after = None
        while True:
            page = run("OffboardForReal", after=after)["revokeTokens"]
            revoked += page["revokedCount"]
            assert all(s["complete"] and not s["failed"] for s in page["sources"])
            if not page["hasMore"]:
                break
            after = page["cursor"]
        assert revoked == dry["revokedCount"]
        assert run("Offboard")["revokeTokens"]["revokedCount"] == 0

        events = run("AuditTrail")["auditEvents"]["nodes"]
        actions = [e["action"] for e in events]
        assert actions.count("revoke") == revoked
        assert actions.count("lookup_secret") == 2
        assert all(e["outcome"] == "ok" for e in events)
        assert admin not in str(events) and made["secret"] not in str(events)
    finally:
        status = demo.stop()
    assert status == 0, demo.printed()
    assert made["secret"] not in demo.printed(), "the Losant secret is in the demo's logs"
