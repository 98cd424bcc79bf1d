"""AnswerMemo alone, then each adapter over loopback HTTP: an answer decoded before is not
decoded again, and nothing the upstream changes is missed (renames, new and removed
tokens, a token whose expiry passes while its answer stays the same)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tokengate.upstreams.amper import AmperSource
from tokengate.upstreams.amper import simulator as amper_sim
from tokengate.upstreams.answer_memo import AnswerMemo
from tokengate.upstreams.loopback import serve_in_thread
from tokengate.upstreams.losant import LosantSource
from tokengate.upstreams.losant import simulator as losant_sim
from tokengate.upstreams.model import (
    CreateSpec,
    PageRequest,
    Status,
    Token,
    TokenFilter,
    TokenOrder,
    UpdateSpec,
)
from tokengate.upstreams.oauth import OAuthSource
from tokengate.upstreams.oauth import simulator as oauth_sim

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Decoder:
    """A decode callback that counts its calls and can fail or set a validity."""

    def __init__(self, value: object = "decoded", valid_until: datetime | None = None) -> None:
        self.calls = 0
        self.value = value
        self.valid_until = valid_until
        self.fail = False

    def __call__(self) -> tuple[object, datetime | None]:
        self.calls += 1
        if self.fail:
            raise ValueError("malformed")
        return self.value, self.valid_until


def test_the_same_bytes_in_the_same_scope_are_decoded_once() -> None:
    memo: AnswerMemo[object] = AnswerMemo()
    decode = Decoder(value=["a token"])
    first = memo.decoded("app", b'{"items": []}', T0, decode)
    again = memo.decoded("app", b'{"items": []}', T0 + timedelta(days=3), decode)
    assert again is first and decode.calls == 1
    assert (memo.hits, memo.misses) == (1, 1)


def test_another_scope_or_one_changed_byte_is_decoded_again() -> None:
    memo: AnswerMemo[object] = AnswerMemo()
    decode = Decoder()
    memo.decoded("app-1", b'{"name": "a"}', T0, decode)
    memo.decoded("app-2", b'{"name": "a"}', T0, decode)
    memo.decoded("app-1", b'{"name": "b"}', T0, decode)
    memo.decoded(None, b'{"name": "a"}', T0, decode)
    assert decode.calls == 4 and len(memo) == 4


def test_an_entry_ends_at_its_validity() -> None:
    memo: AnswerMemo[object] = AnswerMemo()
    decode = Decoder(valid_until=T0 + timedelta(seconds=10))
    memo.decoded("s", b"body", T0, decode)
    memo.decoded("s", b"body", T0 + timedelta(seconds=9.999), decode)
    assert decode.calls == 1
    memo.decoded("s", b"body", T0 + timedelta(seconds=10), decode)
    assert decode.calls == 2
    # The new decoding (same validity here) replaced the old one.
    memo.decoded("s", b"body", T0 + timedelta(seconds=11), decode)
    assert decode.calls == 3 and len(memo) == 1


def test_a_failed_decoding_is_not_remembered() -> None:
    memo: AnswerMemo[object] = AnswerMemo()
    decode = Decoder()
    decode.fail = True
    for _ in range(2):
        with pytest.raises(ValueError, match="malformed"):
            memo.decoded("s", b"{", T0, decode)
    assert decode.calls == 2 and len(memo) == 0


def test_the_memo_is_bounded_and_keeps_the_recently_used() -> None:
    memo: AnswerMemo[object] = AnswerMemo(entries=2)
    decode = Decoder()
    memo.decoded("s", b"1", T0, decode)
    memo.decoded("s", b"2", T0, decode)
    memo.decoded("s", b"1", T0, decode)  # 1 is now the most recent
    memo.decoded("s", b"3", T0, decode)  # evicts 2
    assert decode.calls == 3 and len(memo) == 2
    memo.decoded("s", b"1", T0, decode)
    assert decode.calls == 3
    memo.decoded("s", b"2", T0, decode)
    assert decode.calls == 4


def test_large_answers_are_decoded_every_time() -> None:
    memo: AnswerMemo[object] = AnswerMemo(max_body=10)
    decode = Decoder()
    memo.decoded("s", b"x" * 11, T0, decode)
    memo.decoded("s", b"x" * 11, T0, decode)
    assert decode.calls == 2 and len(memo) == 0
    memo.decoded("s", b"x" * 10, T0, decode)
    memo.decoded("s", b"x" * 10, T0, decode)
    assert decode.calls == 3


def test_no_entries_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AnswerMemo(entries=0)


# -- the adapters over loopback ------------------------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


def _page(limit: int = 100, **filter_args: object) -> PageRequest:
    return PageRequest(filter=TokenFilter(**filter_args), order=TokenOrder(), limit=limit)  # type: ignore[arg-type]


def _losant(url: str, client: httpx.AsyncClient, api_token: str, app: str) -> LosantSource:
    return LosantSource(
        key="fleet",
        name="Fleet",
        base_url=url,
        client=client,
        api_token=api_token,
        application_ids=[app],
    )


async def _listed(source: AmperSource | OAuthSource | LosantSource, **flt: object) -> list[Token]:
    page = await source.list_page(_page(**flt))
    return [item.token for item in page.items]


async def test_losant_reuses_a_decoded_page_and_sees_every_change(
    client: httpx.AsyncClient,
) -> None:
    state = losant_sim.sample_state(12)
    app = losant_sim.DEFAULT_APPLICATIONS[0]
    with serve_in_thread(losant_sim.build_app(state)) as url:
        source = _losant(url, client, state.api_token, app)
        first = await _listed(source)
        assert await _listed(source) == first
        assert source._pages.hits >= 1
        decoded = source._pages.misses

        renamed = first[0]
        await source.update(renamed.local_id, UpdateSpec(name="renamed while cached"))
        after = await _listed(source)
        assert {t.local_id: t.name for t in after}[renamed.local_id] == "renamed while cached"
        assert source._pages.misses > decoded

        created = await source.create(CreateSpec(name="new while cached", application_id=app))
        assert created.token.local_id in {t.local_id for t in await _listed(source)}
        await source.revoke(created.token.local_id)
        assert created.token.local_id not in {t.local_id for t in await _listed(source)}


async def test_losant_turns_a_token_expired_although_its_answer_did_not_change(
    client: httpx.AsyncClient,
) -> None:
    state = losant_sim.sample_state(4)
    app = losant_sim.DEFAULT_APPLICATIONS[0]
    with serve_in_thread(losant_sim.build_app(state)) as url:
        source = _losant(url, client, state.api_token, app)
        expires = datetime.now(UTC) + timedelta(seconds=1.5)
        created = await source.create(
            CreateSpec(name="short-lived", application_id=app, expires_at=expires)
        )

        async def status() -> Status:
            tokens = {t.local_id: t for t in await _listed(source)}
            return tokens[created.token.local_id].status

        assert await status() is Status.ACTIVE
        assert await status() is Status.ACTIVE
        hits = source._pages.hits
        assert hits >= 1  # the same answer, from memory
        await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)
        assert await status() is Status.EXPIRED
        assert await _listed(source, statuses=frozenset({Status.ACTIVE})) != []
        assert created.token.local_id not in {
            t.local_id for t in await _listed(source, statuses=frozenset({Status.ACTIVE}))
        }


async def test_amper_reuses_a_decoded_list_and_sees_every_change(
    client: httpx.AsyncClient,
) -> None:
    state = amper_sim.sample_state(8)
    with serve_in_thread(amper_sim.build_app(state)) as url:
        source = AmperSource(
            key="amper", name="Amper", base_url=url, client=client, api_token=state.api_token
        )
        first = await _listed(source)
        assert await _listed(source) == first
        assert source._lists.hits >= 1
        created = await source.create(CreateSpec(name="new while cached"))
        assert created.token.local_id in {t.local_id for t in await _listed(source)}
        await source.revoke(created.token.local_id)
        assert [t.local_id for t in await _listed(source)] == [t.local_id for t in first]
        # Callers get their own list: changing one does not change what is remembered.
        tokens, _ = await source.fetch_rows("date_create", 0, 5)
        tokens.clear()
        again, _ = await source.fetch_rows("date_create", 0, 5)
        assert len(again) == 5


async def test_oauth_reuses_a_decoded_list_and_sees_every_change(
    client: httpx.AsyncClient,
) -> None:
    state = oauth_sim.sample_state(12)
    with serve_in_thread(oauth_sim.build_app(state)) as url:
        source = OAuthSource(
            key="idp",
            name="IdP",
            base_url=url,
            client=client,
            client_id=state.client_id,
            client_secret=state.client_secret,
        )
        user = oauth_sim.WALK_USER
        first = await _listed(source, user_id=user)
        assert await _listed(source, user_id=user) == first
        assert source._lists.hits >= 1
        await source.revoke(first[0].local_id)
        after = await _listed(source, user_id=user)
        assert [t.local_id for t in after] == [t.local_id for t in first[1:]]


async def test_a_simulator_asked_to_vary_its_bytes_defeats_the_memo(
    client: httpx.AsyncClient,
) -> None:
    """``vary_bytes`` (the fan-out benchmark's ``--fresh-answers``): the same JSON in new
    bytes each time, so every list is decoded again, as with a busy upstream."""
    state = losant_sim.sample_state(6)
    app = losant_sim.DEFAULT_APPLICATIONS[0]
    with serve_in_thread(losant_sim.build_app(state)) as url:
        control = await client.post(f"{url}/_sim/faults", json={"vary_bytes": True})
        assert control.status_code == 204
        headers = {"Authorization": f"Bearer {state.api_token}"}
        answers = [
            await client.get(f"{url}/applications/{app}/tokens", headers=headers) for _ in range(2)
        ]
        assert answers[0].content != answers[1].content
        assert answers[0].json() == answers[1].json()
        for answer in answers:
            assert int(answer.headers["content-length"]) == len(answer.content)
        source = _losant(url, client, state.api_token, app)
        first = await _listed(source)
        assert await _listed(source) == first
        assert source._pages.hits == 0
        await client.delete(f"{url}/_sim/faults")
        await _listed(source)
        await _listed(source)
        assert source._pages.hits == 1


async def test_a_remembered_losant_page_holds_no_secret(client: httpx.AsyncClient) -> None:
    state = losant_sim.sample_state(6)
    app = losant_sim.DEFAULT_APPLICATIONS[0]
    with serve_in_thread(losant_sim.build_app(state)) as url:
        source = _losant(url, client, state.api_token, app)
        headers = {"Authorization": f"Bearer {state.api_token}"}
        listed = await client.get(f"{url}/applications/{app}/tokens", headers=headers)
        secrets = [item["token"] for item in listed.json()["items"]]
        assert secrets and all(len(s) > 20 for s in secrets)  # the upstream sends them
        await _listed(source)
        remembered = repr([entry[0].tokens._raw for entry in source._pages._entries.values()])
        assert remembered.count("'token': '*'") == len(secrets)
        assert not any(secret in remembered for secret in secrets)


def test_drop_listed_secrets_keeps_what_the_token_check_sees() -> None:
    from tokengate.upstreams.losant.normalise import drop_listed_secrets

    payload: dict[str, object] = {
        "items": [{"token": "eyJhbGciOi.secret"}, {"token": ""}, {"token": 5}, {"name": "x"}, 7]
    }
    drop_listed_secrets(payload)
    assert payload["items"] == [{"token": "*"}, {"token": ""}, {"token": 5}, {"name": "x"}, 7]
    for odd in ([], {"items": "nope"}, None):
        drop_listed_secrets(odd)  # no error, nothing to do
