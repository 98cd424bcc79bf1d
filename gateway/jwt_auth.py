"""End users signed in at an identity provider: ``Authorization: Bearer <JWT>`` -> a Principal.

PyJWT checks signatures and claims; the key set (JWKS) is fetched here, asynchronously, on
the gateway's own event loop (PyJWT's ``PyJWKClient`` fetches with blocking urllib). The
key set is cached and never fetched per request: a token whose ``kid`` is unknown refetches
it at most once per ``REFETCH_INTERVAL_S``, and concurrent callers share one fetch
(single flight). A fetch is bounded by ``jwks_timeout_s`` as a whole, so a JWKS server that
hangs costs a caller that long and the answer is still a 401, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import orjson

from tokengate.gateway.config import JwtConfig
from tokengate.upstreams.principal import ADMIN, KNOWN_SCOPES, Principal

log = logging.getLogger("tokengate.auth.jwt")

# A token whose kid the cached key set lacks refetches it at most this often.
REFETCH_INTERVAL_S = 30.0
# A key set older than this is refreshed in the background (keys retired at the identity
# provider stop working within this time); the cached one serves meanwhile.
MAX_AGE_S = 600.0
# After a failed fetch, no other starts this soon (a JWKS server that is down is not asked
# once per request).
RETRY_AFTER_FAILURE_S = 5.0
MAX_JWKS_BYTES = 256 * 1024
MAX_KEYS = 100
# Longer bearer values are refused unparsed (real ID/access tokens are a few KiB at most).
MAX_JWT_CHARS = 8192
MAX_SUBJECT_CHARS = 255
# A verified token's caller is reused this long (never past its ``exp``, and never across a
# change of the key set): checking a signature costs far more than the rest of the
# authentication of an internal token.
VERIFIED_CACHE_S = 30.0
VERIFIED_CACHE_ENTRIES = 10_000

# Why a JWT authenticates nobody (metrics labels; the caller only ever hears "invalid").
INVALID = "jwt_invalid"
EXPIRED = "expired"
KEYS_UNAVAILABLE = "jwt_keys_unavailable"

_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The key type (and curve) each algorithm verifies with.
_KEY_TYPE = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


def monotonic() -> float:
    """The clock of every interval here (tests move it forward)."""
    return time.monotonic()


def looks_like_jwt(value: str) -> bool:
    """Three base64url parts separated by dots (internal ``tg_`` secrets have no dot)."""
    return len(value) <= MAX_JWT_CHARS and _JWT_SHAPE.fullmatch(value) is not None


def rate_key(subject: str) -> str:
    """The rate bucket (and minting lineage, 32 characters like a token id) of a user signed
    in at the identity provider: one per user, whatever token it holds; never a token id
    (those have no ``:``); the subject itself stays out of the limiter's keys."""
    return "jwt:" + hashlib.sha256(subject.encode()).hexdigest()[:28]


@dataclass(frozen=True, slots=True)
class Key:
    """One published key: PyJWT's form of it and the JWK it came from (``alg``, ``crv``)."""

    jwk: jwt.PyJWK
    raw: Mapping[str, Any]

    def suits(self, alg: str) -> bool:
        """Whether it may verify ``alg``: its declared algorithm, key type and curve."""
        declared = self.raw.get("alg")
        if declared is not None and declared != alg:
            return False
        if self.raw.get("kty") != _KEY_TYPE.get(alg[:2]):
            return False
        curve = _CURVE.get(alg)
        return curve is None or self.raw.get("crv") == curve


class KeysUnavailable(Exception):
    """No key set could be fetched yet."""


class KeySet:
    """The identity provider's published keys by ``kid``, fetched as described above."""

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        timeout_s: float,
        refetch_interval_s: float = REFETCH_INTERVAL_S,
        max_age_s: float = MAX_AGE_S,
    ) -> None:
        self._url = url
        self._client = client
        self._timeout_s = timeout_s
        self._refetch_interval_s = refetch_interval_s
        self._max_age_s = max_age_s
        self._keys: dict[str | None, list[Key]] | None = None
        self._fetched_at = 0.0
        self._last_attempt: float | None = None
        self._last_unknown_refetch: float | None = None
        self._inflight: asyncio.Task[None] | None = None
        # Counts the key sets fetched: what was verified under an older one is checked again.
        self.generation = 0

    async def find(self, kid: str | None) -> list[Key]:
        """The keys that may have signed a token with this ``kid`` (see ``_lookup`` for a
        token without one); raises ``KeysUnavailable`` when no key set was ever fetched."""
        now = monotonic()
        if self._keys is None:
            if self._inflight is not None or self._may_retry(now):
                await self._refresh()
            if self._keys is None:
                raise KeysUnavailable
        elif now - self._fetched_at > self._max_age_s and self._may_retry(now):
            self._start()  # in the background: the cached keys serve meanwhile
        found = self._lookup(kid)
        if found:
            return found
        if self._inflight is not None:
            await self._refresh()  # a fetch is under way: it may bring the key
        elif (
            self._last_unknown_refetch is None
            or now - self._last_unknown_refetch >= self._refetch_interval_s
        ):
            self._last_unknown_refetch = now
            await self._refresh()
        return self._lookup(kid)

    async def aclose(self) -> None:
        if self._inflight is not None:
            self._inflight.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._inflight

    def _lookup(self, kid: str | None) -> list[Key]:
        if self._keys is None:
            return []
        if kid is None:
            # The keys published without a kid, or the only key: never every key in turn
            # (a token without a kid must not cost one signature check per key).
            every = [k for keys in self._keys.values() for k in keys]
            return list(self._keys.get(None, ())) or (every if len(every) == 1 else [])
        return list(self._keys.get(kid, ()))

    def _may_retry(self, now: float) -> bool:
        return self._last_attempt is None or now - self._last_attempt >= RETRY_AFTER_FAILURE_S

    def _start(self) -> asyncio.Task[None]:
        if self._inflight is None:
            self._last_attempt = monotonic()
            self._inflight = asyncio.get_running_loop().create_task(self._fetch())
        return self._inflight

    async def _refresh(self) -> None:
        """Join the fetch under way, or start one (single flight)."""
        await asyncio.shield(self._start())

    async def _fetch(self) -> None:
        try:
            keys = await self._download()
        except Exception as exc:  # anything: the cached keys stay, the caller gets a 401
            log.warning("could not fetch the JWKS from %s: %s", self._url, _why(exc))
        else:
            self._keys = keys
            self._fetched_at = monotonic()
            self.generation += 1
            log.info("fetched the JWKS from %s: %d key(s)", self._url, sum(map(len, keys.values())))
        finally:
            self._inflight = None

    async def _download(self) -> dict[str | None, list[Key]]:
        async with asyncio.timeout(self._timeout_s):
            async with self._client.stream(
                "GET",
                self._url,
                headers={"accept": "application/json"},
                timeout=self._timeout_s,
                follow_redirects=False,
            ) as response:
                if response.status_code != 200:
                    raise ValueError(f"HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
        return parse_jwks(orjson.loads(body))


def parse_jwks(document: object) -> dict[str | None, list[Key]]:
    """The usable signature keys of a JWKS document by ``kid``. Private, symmetric (``oct``),
    encryption and malformed keys are left out; a document that is not a key set raises."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document (no 'keys' list)")
    keys: dict[str | None, list[Key]] = {}
    for raw in document["keys"][:MAX_KEYS]:
        if not isinstance(raw, dict) or raw.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        if "d" in raw or raw.get("use", "sig") != "sig":
            continue
        kid = raw.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        try:
            key = Key(jwt.PyJWK(raw), raw)
        except Exception:  # noqa: S112 - one bad key does not spoil the others
            continue
        keys.setdefault(kid, []).append(key)
    return keys


def _why(exc: Exception) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.TransportError):
        return f"unreachable ({type(exc).__name__})"
    if isinstance(exc, orjson.JSONDecodeError):
        return "not JSON"
    return str(exc)[:200] or type(exc).__name__


class JwtAuthenticator:
    """Validates a JWT (signature, ``exp``, ``nbf``, ``iss``, ``aud``) and makes its caller:
    bound to its subject unless its scopes include ``tokens:admin``."""

    def __init__(self, config: JwtConfig, client: httpx.AsyncClient) -> None:
        self.config = config
        self.keys = KeySet(config.jwks_url, client, timeout_s=config.jwks_timeout_s)
        self._algorithms = frozenset(config.algorithms)
        # sha256(token) -> (monotonic expiry, caller), valid for one key-set generation.
        self._verified: dict[bytes, tuple[float, Principal]] = {}
        self._generation = 0

    async def identify(self, token: str) -> Principal | str:
        """The caller, or why nobody (``INVALID``, ``EXPIRED``, ``KEYS_UNAVAILABLE``)."""
        if not looks_like_jwt(token):
            return INVALID
        digest = hashlib.sha256(token.encode()).digest()
        if self._generation != self.keys.generation:
            self._verified.clear()
            self._generation = self.keys.generation
        cached = self._verified.get(digest)
        if cached is not None:
            if cached[0] > monotonic():
                return cached[1]
            del self._verified[digest]
        generation = self.keys.generation
        found = await self._verify(token)
        if isinstance(found, str):
            return found
        principal, expires = found
        if generation == self.keys.generation == self._generation:
            self._remember(digest, principal, expires)
        return principal

    def _remember(self, digest: bytes, principal: Principal, expires: float) -> None:
        ttl = min(VERIFIED_CACHE_S, expires - time.time())
        if ttl <= 0:
            return
        if len(self._verified) >= VERIFIED_CACHE_ENTRIES:
            self._verified.clear()
        self._verified[digest] = (monotonic() + ttl, principal)

    async def _verify(self, token: str) -> tuple[Principal, float] | str:
        """The caller and the token's ``exp``, or why nobody."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return INVALID
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in self._algorithms:
            return INVALID  # none, HMAC and anything not configured: before any key is read
        if kid is not None and not isinstance(kid, str):
            return INVALID
        try:
            candidates = await self.keys.find(kid)
        except KeysUnavailable:
            return KEYS_UNAVAILABLE
        claims: dict[str, Any] | None = None
        for key in candidates:
            if not key.suits(alg):
                continue
            try:
                claims = self._decode(token, key, alg)
            except jwt.InvalidSignatureError:
                continue  # a kid-less token: try the next key
            except jwt.ExpiredSignatureError:
                return EXPIRED
            except jwt.PyJWTError:
                return INVALID
            break
        if claims is None:
            return INVALID
        principal = self._principal(claims)
        if isinstance(principal, str):
            return principal
        return principal, float(claims["exp"])

    def _decode(self, token: str, key: Key, alg: str) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.jwk.key,
            algorithms=[alg],
            audience=self.config.audience,
            issuer=self.config.issuer,
            leeway=self.config.leeway_s,
            options={"require": ["exp", "iss", "aud"]},
        )
        return claims

    def _principal(self, claims: Mapping[str, Any]) -> Principal | str:
        subject = claims.get(self.config.subject_claim)
        if (
            not isinstance(subject, str)
            or not 0 < len(subject) <= MAX_SUBJECT_CHARS
            or _CONTROL.search(subject)
        ):
            return INVALID
        scopes = self.scopes(claims.get(self.config.scope_claim))
        return Principal(
            token_id="",
            scopes=scopes,
            subject=None if ADMIN in scopes else subject,
            rate_key=rate_key(subject),
            jwt_subject=subject,
        )

    def scopes(self, claim: object) -> frozenset[str]:
        """The ``tokens:*`` scopes of the scope claim (a space-separated string or a list),
        else the configured defaults."""
        if isinstance(claim, str):
            values: list[object] = list(claim.split())
        elif isinstance(claim, list):
            values = claim
        else:
            values = []
        granted = frozenset(v for v in values if isinstance(v, str) and v in KNOWN_SCOPES)
        return granted or frozenset(self.config.default_scopes)

    async def aclose(self) -> None:
        await self.keys.aclose()
