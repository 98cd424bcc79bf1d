"""The adapters' secret searches over loopback HTTP against the simulators: what they read
(bounded pages), what matches, and telling the gateway's own credential apart."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tokengate.upstreams.amper import simulator as amper_sim
from tokengate.upstreams.amper.client import AmperSource
from tokengate.upstreams.loopback import serve_in_thread
from tokengate.upstreams.losant import simulator as losant_sim
from tokengate.upstreams.losant.client import LosantSource
from tokengate.upstreams.secret_lookup import SecretMatchKind

APP1, APP2 = losant_sim.DEFAULT_APPLICATIONS


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def test_losant_reads_at_most_max_pages_per_application(http: httpx.AsyncClient) -> None:
    state = losant_sim.sample_state(30)  # 20 tokens in the first application, 10 in the second
    with serve_in_thread(losant_sim.build_app(state)) as url:
        source = LosantSource(
            key="fleet",
            name="Losant",
            base_url=url,
            client=http,
            api_token=state.api_token,
            application_ids=(APP1, APP2),
            per_page=4,
        )
        by_id = sorted(state.applications[APP1], key=lambda t: t["id"])
        early, late = by_id[2], by_id[-1]  # on page 0, and on page 4 by id
        found = await source.find_secret(early["token"], max_pages=10)
        assert found.complete
        [match] = found.found
        assert match.match is SecretMatchKind.EXACT
        assert match.token.local_id == f"{APP1}/{early['id']}"
        assert match.token.secret_hint is None
        # Pages: 5 for the first application, 3 for the second (10 tokens at 4 a page).
        assert state.control.count("GET") == 5 + 3
        state.control.requests.clear()
        bounded = await source.find_secret(late["token"], max_pages=2)
        assert not bounded.complete and bounded.found == []
        assert state.control.count("GET") == 2 + 2
        assert all("sortField=id" in r.query for r in state.control.requests)
        # The gateway's own API token is one of the application's tokens here.
        own = dict(by_id[0], id="0" * 24, apiTokenId="0" * 24, token=state.api_token)
        state.applications[APP2].append(own)
        tokens = [m.token for m in (await source.find_secret(early["token"], max_pages=10)).found]
        assert await source.own_credentials(tokens) == {f"{APP2}/{'0' * 24}"}
        assert await source.own_credentials([]) == set()


async def test_amper_matches_by_redacted_prefix(http: httpx.AsyncClient) -> None:
    state = amper_sim.sample_state(250)
    with serve_in_thread(amper_sim.build_app(state)) as url:
        source = AmperSource(
            key="amper", name="Amper", base_url=url, client=http, api_token=state.api_token
        )
        target = state.tokens[200]
        found = await source.find_secret(target.secret, max_pages=1)
        assert target.id in {f.token.local_id for f in found.found}
        assert {f.match for f in found.found} == {SecretMatchKind.HINT}
        prefix = target.secret[:8]
        assert {f.token.local_id for f in found.found} == {
            t.id for t in state.tokens if t.secret.startswith(prefix)
        }
        # The whole list, whatever max_pages: three pages of 100.
        assert state.control.count("GET") == 3
        assert (await source.find_secret("no-such-secret", max_pages=1)).found == []
        # Its own credential: told apart by the whole snippet, read again for candidates only.
        state.control.requests.clear()
        listed = [f.token for f in (await source.find_secret(state.api_token, max_pages=1)).found]
        state.control.requests.clear()
        own = await source.own_credentials(listed)
        assert own == {t.id for t in state.tokens if t.display_name == amper_sim.GATEWAY_NAME}
        assert state.control.count("GET") == len(listed)
