"""The cursor codec alone, and the merge's cursors through it (pure: no network)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tokengate.upstreams.cursor_codec import MAX_CURSOR_LENGTH, CursorCodec, hkdf_sha256
from tokengate.upstreams.errors import InvalidCursor
from tokengate.upstreams.merge import CURSOR_KIND, Cursor, decode_cursor, encode_cursor
from tokengate.upstreams.model import Direction, OrderField, SortKey, TokenOrder

SERVER_KEY = b"k" * 48
PAYLOAD = b'{"hello": "cursor", "n": 12345}'


def test_hkdf_matches_rfc5869_test_case_1() -> None:
    okm = hkdf_sha256(
        bytes.fromhex("0b" * 22),
        salt=bytes.fromhex("000102030405060708090a0b0c"),
        info=bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
        length=42,
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_round_trip_is_url_safe_and_opaque() -> None:
    codec = CursorCodec.from_server_key(SERVER_KEY)
    text = codec.seal(PAYLOAD, kind=b"tokens")
    assert text.replace("-", "").replace("_", "").isalnum()
    assert "=" not in text
    assert codec.open(text, kind=b"tokens") == PAYLOAD
    # The same server key gives the same codec (replicas, restarts).
    assert CursorCodec.from_server_key(SERVER_KEY).open(text, kind=b"tokens") == PAYLOAD


def test_the_server_key_itself_never_signs_cursors() -> None:
    """The MAC key is derived: a MAC made with the raw server key (the token-hashing key)
    does not verify, and the derived key is not the server key."""
    codec = CursorCodec.from_server_key(SERVER_KEY)
    raw_tag = hmac.new(SERVER_KEY, b"tokens\x00" + PAYLOAD, hashlib.sha256).digest()
    text = base64.urlsafe_b64encode(PAYLOAD + raw_tag).decode().rstrip("=")
    with pytest.raises(InvalidCursor):
        codec.open(text, kind=b"tokens")
    assert codec.open(codec.seal(PAYLOAD, kind=b"tokens"), kind=b"tokens") == PAYLOAD


def test_every_single_bit_flip_is_refused() -> None:
    codec = CursorCodec.ephemeral()
    raw = base64.urlsafe_b64decode(codec.seal(PAYLOAD, kind=b"tokens") + "==")
    for index in range(len(raw)):
        for bit in range(8):
            changed = bytearray(raw)
            changed[index] ^= 1 << bit
            text = base64.urlsafe_b64encode(bytes(changed)).decode().rstrip("=")
            with pytest.raises(InvalidCursor):
                codec.open(text, kind=b"tokens")


def test_every_single_character_change_is_refused() -> None:
    codec = CursorCodec.ephemeral()
    text = codec.seal(PAYLOAD, kind=b"tokens")
    for index, char in enumerate(text):
        for other in "AQgw_-9":
            if other == char:
                continue
            with pytest.raises(InvalidCursor):
                codec.open(text[:index] + other + text[index + 1 :], kind=b"tokens")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1],
        lambda t: t[:-43],
        lambda t: t[:10],
        lambda t: "",
        lambda t: t + "A",
        lambda t: t + "==",
        lambda t: t + "\n",
        lambda t: " " + t,
        lambda t: t.replace("_", "/").replace("-", "+") + "x/",
        lambda t: t[:20] + "." + t[21:],
        lambda t: "A" * (MAX_CURSOR_LENGTH + 1),
    ],
    ids=[
        "truncated-1",
        "truncated-tag",
        "stub",
        "empty",
        "extended",
        "padded",
        "newline",
        "space",
        "standard-alphabet",
        "dot",
        "too-long",
    ],
)
def test_malformed_texts_are_refused(mangle: object) -> None:
    codec = CursorCodec.ephemeral()
    text = codec.seal(PAYLOAD, kind=b"tokens")
    assert callable(mangle)
    with pytest.raises(InvalidCursor):
        codec.open(mangle(text), kind=b"tokens")


def test_another_key_or_kind_is_refused() -> None:
    codec = CursorCodec.from_server_key(SERVER_KEY)
    text = codec.seal(PAYLOAD, kind=b"tokens")
    with pytest.raises(InvalidCursor):
        CursorCodec.from_server_key(b"o" * 48).open(text, kind=b"tokens")
    with pytest.raises(InvalidCursor):
        codec.open(text, kind=b"audit")


def test_non_canonical_trailing_bits_are_refused() -> None:
    """Base64 leaves unused bits in the last character: only the zero ones are accepted,
    so that no two texts open to the same cursor."""
    codec = CursorCodec.ephemeral()
    payload = PAYLOAD + b"x"  # payload + tag not a multiple of 3: trailing bits exist
    text = codec.seal(payload, kind=b"tokens")
    assert (len(payload) + 32) % 3 != 0
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(text[-1])
    sibling = text[:-1] + alphabet[last | 1]
    assert sibling != text
    assert base64.urlsafe_b64decode(sibling + "==") == base64.urlsafe_b64decode(text + "==")
    with pytest.raises(InvalidCursor):
        codec.open(sibling, kind=b"tokens")


def test_short_keys_are_refused_and_keys_are_not_shown() -> None:
    with pytest.raises(ValueError, match="at least"):
        CursorCodec(b"short")
    assert "k" * 10 not in repr(CursorCodec.from_server_key(SERVER_KEY))


# -- the merge's cursors through the codec -------------------------------------------------------

ORDER = TokenOrder(OrderField.CREATED_AT, Direction.ASC)


def test_token_cursors_round_trip_and_are_bounded() -> None:
    codec = CursorCodec.ephemeral()
    cursor = Cursor(
        ORDER,
        SortKey(datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=2))), "amper", "ab"),
        backward=True,
        positions={"amper": "date_create:7:ab", "fleet": "0:4,1:2"},
    )
    back = decode_cursor(encode_cursor(cursor, codec), ORDER, codec)
    assert back == cursor
    assert back.key.value is not None and back.key.value.tzinfo is UTC
    with pytest.raises(InvalidCursor):
        decode_cursor(encode_cursor(cursor, codec), ORDER, CursorCodec.ephemeral())


def _sealed(codec: CursorCodec, payload: object) -> str:
    return codec.seal(json.dumps(payload).encode(), kind=CURSOR_KIND)


@pytest.mark.parametrize(
    "instant",
    [
        "0001-01-01T00:00:00+14:00",
        "0001-01-01T00:00:00+00:01",
        "9999-12-31T23:59:59-14:00",
        "9999-12-31T23:59:59.999999-00:00:01",
        "2024-01-01T00:00:00",
        "x" * 100,
    ],
)
def test_instants_outside_utc_or_naive_are_refused(instant: str) -> None:
    codec = CursorCodec.ephemeral()
    payload = {"v": 2, "o": ["CREATED_AT", "ASC"], "k": [{"t": instant}, "a", "b"], "b": 0, "p": {}}
    with pytest.raises(InvalidCursor):
        decode_cursor(_sealed(codec, payload), ORDER, codec)


@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59+00:00"])
def test_the_extremes_of_utc_are_accepted(instant: str) -> None:
    codec = CursorCodec.ephemeral()
    payload = {"v": 2, "o": ["CREATED_AT", "ASC"], "k": [{"t": instant}, "a", "b"], "b": 0, "p": {}}
    assert decode_cursor(_sealed(codec, payload), ORDER, codec).key.value == (
        datetime.fromisoformat(instant)
    )


def test_an_unsigned_or_old_version_cursor_is_refused() -> None:
    codec = CursorCodec.ephemeral()
    payload = {"v": 1, "o": ["CREATED_AT", "ASC"], "k": [None, "a", "b"], "b": 0, "p": {}}
    unsigned = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    for text in (unsigned, _sealed(codec, payload)):
        with pytest.raises(InvalidCursor):
            decode_cursor(text, ORDER, codec)
    assert decode_cursor(_sealed(codec, {**payload, "v": 2}), ORDER, codec).key.source == "a"
