"""The TOML config -> frozen dataclasses, validated up front with messages naming key and line.

Precedence: command-line flags > environment variables > config file > defaults. Secrets
never live in the file: it names the environment variables that hold them.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from tokengate.gateway.persisted import ManifestError, load_manifest
from tokengate.upstreams import providers
from tokengate.upstreams.http_edge import DEFAULT_MAX_ANSWER_BYTES
from tokengate.upstreams.ids import SOURCE_KEY_PATTERN

CONFIG_ENV = "TOKENGATE_CONFIG"
STORE_URL_ENV = "TOKENGATE_STORE_URL"
HOST_ENV = "TOKENGATE_HOST"
PORT_ENV = "TOKENGATE_PORT"
SHUTDOWN_DELAY_ENV = "TOKENGATE_SHUTDOWN_DELAY_S"
# A drain longer than this would outlast any orchestrator's grace period (Kubernetes: 30 s
# by default): a typo, not a choice.
MAX_SHUTDOWN_DELAY_S = 300.0
LIMITS_STORAGE_URL_ENV = "TOKENGATE_LIMITS_STORAGE_URL"
LOOKUP_RATE_ENV = "TOKENGATE_SECRET_LOOKUPS_PER_MINUTE"
DEFAULT_STORE_URL = "sqlite:///./tokengate.db"
# Bounds of a source's max_answer_bytes: below, an ordinary list page would not fit; above,
# one answer could take a large part of a process's memory.
MIN_ANSWER_BYTES = 64 * 1024
MAX_ANSWER_BYTES = 1024 * 1024 * 1024


class ConfigError(ValueError):
    """A config problem, worded for the operator: which key, which line, what to do."""


# What browser clients send: GraphQL over HTTP, trace context, request ids, Apollo Client's
# client awareness headers.
DEFAULT_CORS_ALLOW_HEADERS = (
    "authorization",
    "content-type",
    "accept",
    "traceparent",
    "tracestate",
    "x-request-id",
    "apollographql-client-name",
    "apollographql-client-version",
)
# A header name (RFC 9110 token); CORS compares them lowercase.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Chromium caps a preflight cache at 2 hours, Firefox at 24.
MAX_CORS_MAX_AGE_S = 86_400


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    graphiql: bool = True
    introspection: bool = True
    cors_origins: tuple[str, ...] = ()
    # Request headers a browser on an allowed origin may send, and how long it may cache a
    # preflight's answer (Access-Control-Max-Age).
    cors_allow_headers: tuple[str, ...] = DEFAULT_CORS_ALLOW_HEADERS
    cors_max_age_s: int = 600
    # Where GraphiQL's installed files are (`tokengate graphiql install`); None: the files
    # bundled in the package, else the user's data directory (gateway/graphiql_assets.py).
    graphiql_assets_dir: Path | None = None
    # How long an idle client connection is kept open. Longer than the idle timeouts of
    # the clients and load balancers in front (httpx 5 s, AWS ALB 60 s), so that the
    # gateway is never the side that closes a connection a client is about to reuse.
    keep_alive_s: int = 75
    # After SIGTERM, /readyz answers 503 while the gateway keeps serving this long, so that
    # load balancers (health checks every few seconds) stop routing here before the
    # listener closes (gateway.drain).
    shutdown_delay_s: float = 3.0
    # GET /metrics (Prometheus); off: 404.
    metrics: bool = True
    # Automatic persisted queries: documents remembered per process (0: APQ off).
    apq_cache_size: int = 1000
    # A Relay or Apollo persisted-query manifest (trusted documents), and whether only its
    # documents may run (gateway.persisted).
    persisted_documents: Path | None = None
    only_persisted: bool = False


@dataclass(frozen=True, slots=True)
class StoreConfig:
    url: str = DEFAULT_STORE_URL
    key_file: Path = Path("tokengate.key")
    touch_interval_s: float = 60.0
    # Connections each process keeps open (None: 20 with SQLite, 10 with PostgreSQL).
    pool_size: int | None = None


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_aliases: int = 30
    max_depth: int = 15
    max_cost: int = 1000
    # Fields, fragment spreads and inline fragments once fragments are expanded (plus one
    # per definition), over the whole document: bounds the work of validation.
    max_selections: int = 2000
    # Request bodies (and GET query strings), refused with 413 (414) past this size.
    max_body_bytes: int = 1_048_576
    # Lexical tokens per document (also the most JSON values the variables may hold), and
    # the document's length in characters.
    max_tokens: int = 10_000
    max_document_chars: int = 65_536
    # Per caller token: sustained requests per second and the burst allowed at once.
    rate_per_s: float = 20.0
    burst: int = 60
    # Live tokens one minting lineage may hold (a caller that is not an unbound admin and
    # every token minted from it, directly or not).
    max_lineage_tokens: int = 100
    # redis://host:port/db: rate-limit buckets shared by every replica (None: in process).
    storage_url: str | None = None
    # tokensBySecret calls per caller per minute (its own bucket, per process).
    secret_lookups_per_minute: int = 10


@dataclass(frozen=True, slots=True)
class SourceConfig:
    key: str
    provider: str
    name: str
    base_url: str
    # Per upstream request (read/write); connecting; the whole call with its retries.
    timeout_s: float = 10.0
    connect_timeout_s: float = 3.0
    total_timeout_s: float | None = None
    max_concurrency: int = 20
    retries: int = 2
    # The most bytes one answer's body may hold once decoded (a longer one is a bad answer).
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES
    # Resolved from the environment variables the file names; never printed.
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    # The provider's own settings, as its ``parse_options`` returned them (upstreams.providers).
    options: Mapping[str, object] = field(default_factory=dict)

    @property
    def deadline_s(self) -> float:
        """How long one call to this source may take, retries included."""
        return self.total_timeout_s if self.total_timeout_s is not None else self.timeout_s

    @property
    def application_ids(self) -> tuple[str, ...]:
        """A Losant source's applications; () for a source of another provider."""
        ids = self.options.get("application_ids", ())
        return ids if isinstance(ids, tuple) else ()


# JWT signature algorithms [auth.jwt] accepts: asymmetric ones only. ``none`` verifies
# nothing, and an HMAC algorithm would let anyone holding the published key sign tokens.
JWT_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
JWT_SCOPES = ("tokens:read", "tokens:write", "tokens:admin")


@dataclass(frozen=True, slots=True)
class JwtConfig:
    """``[auth.jwt]``: end users signed in at an identity provider (gateway/jwt_auth.py)."""

    issuer: str
    audience: str
    jwks_url: str
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    subject_claim: str = "sub"
    scope_claim: str = "scope"
    default_scopes: tuple[str, ...] = ("tokens:read",)
    leeway_s: float = 30.0
    # One fetch of the key set, whole: a JWKS server that hangs costs a caller this long.
    jwks_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """``[auth]``: ways to authenticate besides internal tokens (always accepted)."""

    jwt: JwtConfig | None = None


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()
    limits: LimitsConfig = LimitsConfig()
    sources: tuple[SourceConfig, ...] = ()
    path: Path | None = None
    auth: AuthConfig = AuthConfig()


_SECTION_KEYS: dict[str, set[str]] = {
    "server": {
        "host",
        "port",
        "graphiql",
        "introspection",
        "cors_origins",
        "cors_allow_headers",
        "cors_max_age_s",
        "graphiql_assets_dir",
        "keep_alive_s",
        "shutdown_delay_s",
        "metrics",
        "apq_cache_size",
        "persisted_documents",
        "only_persisted",
    },
    "store": {"url", "key_file", "touch_interval_s", "pool_size"},
    "limits": {
        "max_aliases",
        "max_depth",
        "max_cost",
        "max_selections",
        "max_body_bytes",
        "max_tokens",
        "max_document_chars",
        "rate_per_s",
        "burst",
        "max_lineage_tokens",
        "storage_url",
        "secret_lookups_per_minute",
    },
}
_JWT_KEYS = frozenset(
    {
        "issuer",
        "audience",
        "jwks_url",
        "algorithms",
        "subject_claim",
        "scope_claim",
        "default_scopes",
        "leeway_s",
        "jwks_timeout_s",
    }
)
# The keys of every [[sources]] entry; each provider adds its own (upstreams.providers).
_COMMON_SOURCE_KEYS = frozenset(
    {
        "key",
        "provider",
        "name",
        "base_url",
        "timeout_s",
        "connect_timeout_s",
        "total_timeout_s",
        "max_concurrency",
        "retries",
        "max_answer_bytes",
    }
)


class _Locator:
    """Finds the line of a key in the file, so that errors can point at it."""

    def __init__(self, text: str, path: Path) -> None:
        self.lines = text.splitlines()
        self.path = path

    def where(self, section: str, key: str | None = None, index: int | None = None) -> str:
        current, counts = "", {"sources": -1}
        section_line = None
        for number, line in enumerate(self.lines, start=1):
            stripped = line.strip()
            if stripped.startswith("[[") and stripped.endswith("]]"):
                current = stripped[2:-2].strip()
                counts[current] = counts.get(current, -1) + 1
                if current == section and counts[current] == index and key is None:
                    return f"{self.path.name}:{number}"
                if current == section and counts[current] == index:
                    section_line = number
                continue
            if stripped.startswith("[") and stripped.endswith("]"):
                current = stripped[1:-1].strip()
                if current == section and index is None:
                    section_line = number
                    if key is None:
                        return f"{self.path.name}:{number}"
                continue
            in_section = current == section and (index is None or counts.get(current) == index)
            if in_section and key is not None and re.match(rf"\s*{re.escape(key)}\s*=", line):
                return f"{self.path.name}:{number}"
        if section_line is not None:
            return f"{self.path.name}:{section_line}"
        return self.path.name


def load(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    host: str | None = None,
    port: int | None = None,
) -> Config:
    """The effective config: ``path`` (or ``$TOKENGATE_CONFIG``), env vars, then flags."""
    env = os.environ if environ is None else environ
    if path is None and env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
    config = _from_file(path, env) if path is not None else Config()
    server, store, limits = config.server, config.store, config.limits
    if env.get(LIMITS_STORAGE_URL_ENV):
        limits = _replace_limits(
            limits,
            storage_url=_check_limits_storage_url(
                env[LIMITS_STORAGE_URL_ENV], LIMITS_STORAGE_URL_ENV, credentials_allowed=True
            ),
        )
    if env.get(LOOKUP_RATE_ENV):
        limits = _replace_limits(
            limits,
            secret_lookups_per_minute=_positive_int_env(env[LOOKUP_RATE_ENV], LOOKUP_RATE_ENV),
        )
    if env.get(STORE_URL_ENV):
        store = _replace_store(store, url=_check_store_url(env[STORE_URL_ENV], STORE_URL_ENV))
    if env.get(HOST_ENV):
        server = _replace_server(server, host=env[HOST_ENV])
    if env.get(PORT_ENV):
        server = _replace_server(server, port=_port(env[PORT_ENV], PORT_ENV))
    if env.get(SHUTDOWN_DELAY_ENV):
        server = _replace_server(
            server,
            shutdown_delay_s=_delay_from_env(env[SHUTDOWN_DELAY_ENV], SHUTDOWN_DELAY_ENV),
        )
    if host is not None:
        server = _replace_server(server, host=host)
    if port is not None:
        server = _replace_server(server, port=_port(str(port), "--port"))
    return Config(
        server=server,
        store=store,
        limits=limits,
        sources=config.sources,
        path=config.path,
        auth=config.auth,
    )


def _replace_server(server: ServerConfig, **changes: Any) -> ServerConfig:
    values = {f: getattr(server, f) for f in ServerConfig.__dataclass_fields__}
    values.update(changes)
    return ServerConfig(**values)


def _replace_store(store: StoreConfig, **changes: Any) -> StoreConfig:
    values = {f: getattr(store, f) for f in StoreConfig.__dataclass_fields__}
    values.update(changes)
    return StoreConfig(**values)


def _replace_limits(limits: LimitsConfig, **changes: Any) -> LimitsConfig:
    values = {f: getattr(limits, f) for f in LimitsConfig.__dataclass_fields__}
    values.update(changes)
    return LimitsConfig(**values)


def _check_limits_storage_url(url: str, where: str, *, credentials_allowed: bool) -> str:
    """A Redis URL. A password belongs in the environment (``TOKENGATE_LIMITS_STORAGE_URL``),
    never in the file."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ConfigError(f"{where}: storage_url must be redis://host:port[/db] or rediss://...")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ConfigError(f"{where}: storage_url has a bad port") from None
    if not credentials_allowed and (parts.username or parts.password):
        raise ConfigError(
            f"{where}: storage_url must not hold credentials in the file; "
            f"set {LIMITS_STORAGE_URL_ENV} instead"
        )
    return url


def _port(raw: str, where: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"{where}: port must be a number, got {raw!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{where}: port must be between 0 and 65535, got {port}")
    return port


def _check_store_url(url: str, where: str) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"{where}: not a database URL: use sqlite:///FILE or postgresql://..."
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(f"{where}: the store URL must start with sqlite:// or postgresql://")
    return url


def _from_file(path: Path, env: Mapping[str, str]) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: not valid TOML: {exc}") from None
    loc = _Locator(text, path)
    base = path.resolve().parent
    for section in raw:
        if section not in _SECTION_KEYS and section not in ("sources", "auth"):
            raise ConfigError(f"{loc.where(section)}: unknown section [{section}]")
    for section, allowed in _SECTION_KEYS.items():
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{loc.where(section)}: [{section}] must be a table")
        for key in table:
            if key not in allowed:
                raise ConfigError(
                    f"{loc.where(section, key)}: unknown key {section}.{key} "
                    f"(known: {', '.join(sorted(allowed))})"
                )
    server_raw, store_raw, limits_raw = (raw.get(s, {}) for s in ("server", "store", "limits"))
    server = ServerConfig(
        host=_typed(server_raw, "host", str, "127.0.0.1", loc, "server"),
        port=_port(
            str(_typed(server_raw, "port", int, 8000, loc, "server")), loc.where("server", "port")
        ),
        graphiql=_typed(server_raw, "graphiql", bool, True, loc, "server"),
        introspection=_typed(server_raw, "introspection", bool, True, loc, "server"),
        cors_origins=tuple(_typed(server_raw, "cors_origins", list, [], loc, "server")),
        cors_allow_headers=_cors_allow_headers(server_raw, loc),
        cors_max_age_s=_cors_max_age(server_raw, loc),
        graphiql_assets_dir=_assets_dir(server_raw, loc, base),
        keep_alive_s=_keep_alive(server_raw, loc),
        shutdown_delay_s=_shutdown_delay(server_raw, loc),
        metrics=_typed(server_raw, "metrics", bool, True, loc, "server"),
        **_persisted(server_raw, loc, base),
    )
    url = _typed(store_raw, "url", str, DEFAULT_STORE_URL, loc, "store")
    _check_store_url(url, loc.where("store", "url"))
    store = StoreConfig(
        url=_resolve_sqlite(url, base),
        key_file=base / _typed(store_raw, "key_file", str, "tokengate.key", loc, "store"),
        touch_interval_s=float(
            _typed(store_raw, "touch_interval_s", (int, float), 60.0, loc, "store")
        ),
        pool_size=_pool_size(store_raw, loc),
    )
    limits = LimitsConfig(
        max_aliases=_positive(limits_raw, "max_aliases", 30, loc),
        max_depth=_positive(limits_raw, "max_depth", 15, loc),
        max_cost=_positive(limits_raw, "max_cost", 1000, loc),
        max_selections=_positive(limits_raw, "max_selections", 2000, loc),
        max_body_bytes=_at_least(limits_raw, "max_body_bytes", 1_048_576, 1024, loc),
        max_tokens=_at_least(limits_raw, "max_tokens", 10_000, 100, loc),
        max_document_chars=_at_least(limits_raw, "max_document_chars", 65_536, 1024, loc),
        rate_per_s=_positive_float(limits_raw, "rate_per_s", 20.0, loc),
        burst=_positive(limits_raw, "burst", 60, loc),
        max_lineage_tokens=_positive(limits_raw, "max_lineage_tokens", 100, loc),
        storage_url=_storage_url(limits_raw, loc),
        secret_lookups_per_minute=_positive(limits_raw, "secret_lookups_per_minute", 10, loc),
    )
    sources_raw = raw.get("sources", [])
    if not isinstance(sources_raw, list):
        raise ConfigError(f"{loc.where('sources')}: use [[sources]] tables for sources")
    sources = tuple(_source(s, i, loc, env, base) for i, s in enumerate(sources_raw))
    seen: set[str] = set()
    for i, s in enumerate(sources):
        if s.key in seen or s.key == "internal":
            raise ConfigError(
                f"{loc.where('sources', 'key', i)}: source key {s.key!r} is used twice "
                "('internal' is the store's)"
            )
        seen.add(s.key)
    auth = _auth(raw.get("auth", {}), loc)
    return Config(server=server, store=store, limits=limits, sources=sources, path=path, auth=auth)


def _positive_int_env(value: str, name: str) -> int:
    text = value.strip()
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{name} must be a positive integer")
    return int(text)


def _auth(raw: Any, loc: _Locator) -> AuthConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{loc.where('auth')}: [auth] must be a table")
    for key in raw:
        if key != "jwt":
            raise ConfigError(f"{loc.where('auth', key)}: unknown key auth.{key} (known: jwt)")
    if "jwt" not in raw:
        return AuthConfig()
    table = raw["jwt"]
    if not isinstance(table, dict):
        raise ConfigError(f"{loc.where('auth', 'jwt')}: [auth.jwt] must be a table")
    return AuthConfig(jwt=_jwt(table, loc))


def _jwt(table: Mapping[str, Any], loc: _Locator) -> JwtConfig:
    section = "auth.jwt"

    def where(key: str | None = None) -> str:
        return loc.where(section, key)

    for key in table:
        if key not in _JWT_KEYS:
            raise ConfigError(
                f"{where(key)}: unknown key {section}.{key} (known: {', '.join(sorted(_JWT_KEYS))})"
            )
    for required in ("issuer", "audience", "jwks_url"):
        if required not in table:
            raise ConfigError(f"{where()}: [{section}] needs {required!r}")

    def text(key: str, default: str | None = None) -> str:
        value: str = _typed(table, key, str, default, loc, section)
        if not value.strip():
            raise ConfigError(f"{where(key)}: {key} must not be empty")
        return value

    def strings(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        values = _typed(table, key, list, list(default), loc, section)
        if not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{where(key)}: {key} must be a list of strings")
        return tuple(dict.fromkeys(values))

    jwks_url = text("jwks_url")
    parts = urlsplit(jwks_url)
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise ConfigError(f"{where('jwks_url')}: jwks_url must be an http(s) URL")
    if parts.scheme == "http" and not loopback:
        raise ConfigError(
            f"{where('jwks_url')}: jwks_url must use https (plain http only on loopback): "
            "whoever can alter the key set can sign tokens"
        )
    if parts.username or parts.password:
        raise ConfigError(f"{where('jwks_url')}: jwks_url must not hold credentials")
    algorithms = strings("algorithms", ("RS256", "ES256"))
    if not algorithms:
        raise ConfigError(f"{where('algorithms')}: algorithms must name at least one")
    for alg in algorithms:
        if alg.lower() == "none" or alg.upper().startswith("HS"):
            raise ConfigError(
                f"{where('algorithms')}: algorithm {alg!r} is refused: 'none' checks no "
                "signature and HMAC would let anyone with the published key sign tokens"
            )
        if alg not in JWT_ALGORITHMS:
            raise ConfigError(
                f"{where('algorithms')}: unknown algorithm {alg!r} "
                f"(known: {', '.join(sorted(JWT_ALGORITHMS))})"
            )
    default_scopes = strings("default_scopes", ("tokens:read",))
    for scope in default_scopes:
        if scope not in JWT_SCOPES:
            raise ConfigError(
                f"{where('default_scopes')}: unknown scope {scope!r} (known: {', '.join(JWT_SCOPES)})"
            )
        if scope == "tokens:admin":
            raise ConfigError(
                f"{where('default_scopes')}: tokens:admin cannot be a default: the identity "
                "provider must grant it in the token's scope claim"
            )
    leeway = float(_typed(table, "leeway_s", (int, float), 30, loc, section))
    if not 0 <= leeway <= 300:
        raise ConfigError(f"{where('leeway_s')}: leeway_s must be between 0 and 300 seconds")
    timeout = float(_typed(table, "jwks_timeout_s", (int, float), 5, loc, section))
    if not 0 < timeout <= 60:
        raise ConfigError(
            f"{where('jwks_timeout_s')}: jwks_timeout_s must be between 0 and 60 seconds"
        )
    return JwtConfig(
        issuer=text("issuer"),
        audience=text("audience"),
        jwks_url=jwks_url,
        algorithms=algorithms,
        subject_claim=text("subject_claim", "sub"),
        scope_claim=text("scope_claim", "scope"),
        default_scopes=default_scopes,
        leeway_s=leeway,
        jwks_timeout_s=timeout,
    )


def _cors_allow_headers(raw: Mapping[str, Any], loc: _Locator) -> tuple[str, ...]:
    if "cors_allow_headers" not in raw:
        return DEFAULT_CORS_ALLOW_HEADERS
    values = _typed(raw, "cors_allow_headers", list, [], loc, "server")
    names: list[str] = []
    for value in values:
        if not isinstance(value, str) or not _HEADER_NAME.fullmatch(value):
            raise ConfigError(
                f"{loc.where('server', 'cors_allow_headers')}: cors_allow_headers must list "
                f"header names, not {value!r}"
            )
        if value.lower() not in names:
            names.append(value.lower())
    return tuple(names)


def _cors_max_age(raw: Mapping[str, Any], loc: _Locator) -> int:
    value: int = _typed(raw, "cors_max_age_s", int, 600, loc, "server")
    if not 0 <= value <= MAX_CORS_MAX_AGE_S:
        raise ConfigError(
            f"{loc.where('server', 'cors_max_age_s')}: cors_max_age_s must be between 0 and "
            f"{MAX_CORS_MAX_AGE_S}"
        )
    return value


def _assets_dir(raw: Mapping[str, Any], loc: _Locator, base: Path) -> Path | None:
    value = _typed(raw, "graphiql_assets_dir", str, None, loc, "server")
    if value is None:
        return None
    if not value.strip():
        raise ConfigError(
            f"{loc.where('server', 'graphiql_assets_dir')}: graphiql_assets_dir must not be empty"
        )
    return base / Path(value).expanduser()


def _resolve_sqlite(url: str, base: Path) -> str:
    parsed = make_url(url)
    if (
        parsed.get_backend_name() != "sqlite"
        or not parsed.database
        or parsed.database == ":memory:"
    ):
        return url
    db = Path(parsed.database)
    if not db.is_absolute():
        db = base / db
    return str(parsed.set(database=str(db)).render_as_string(hide_password=False))


def _typed(
    table: Mapping[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    default: Any,
    loc: _Locator,
    section: str,
    index: int | None = None,
) -> Any:
    if key not in table:
        return default
    return _of_kind(table[key], key, kind, lambda: loc.where(section, key, index))


def _of_kind(value: Any, key: str, kind: type | tuple[type, ...], where: Callable[[], str]) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ConfigError(f"{where()}: {key} must be a {names}")
    return value


class _OptionReader:
    """How a provider reads its own keys of one source (upstreams.provider_spec.OptionReader)."""

    def __init__(self, raw: Mapping[str, Any], where: Callable[[str | None], str]) -> None:
        self._raw = raw
        self._where = where

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        if key not in self._raw:
            return default
        return _of_kind(self._raw[key], key, kind, lambda: self._where(key))

    def fail(self, key: str | None, message: str) -> NoReturn:
        raise ConfigError(f"{self._where(key)}: {message}")


def provider_options(provider: str, settings: Mapping[str, object]) -> Mapping[str, object]:
    """``settings`` (keys as a config file would hold them) read by ``provider``'s own
    parser, as for a source in the file: how simulated sources get their options."""
    reader = _OptionReader(settings, lambda key: f"{provider} settings")
    return MappingProxyType(dict(providers.get(provider).parse_options(reader)))


def _keep_alive(table: Mapping[str, Any], loc: _Locator) -> int:
    value = _typed(table, "keep_alive_s", int, 75, loc, "server")
    if isinstance(value, bool) or not 1 <= value <= 3600:
        raise ConfigError(
            f"{loc.where('server', 'keep_alive_s')}: keep_alive_s must be whole seconds "
            "between 1 and 3600"
        )
    return int(value)


def _check_delay(value: float, where: str) -> float:
    if not 0 <= value <= MAX_SHUTDOWN_DELAY_S:  # also refuses nan
        raise ConfigError(
            f"{where}: shutdown_delay_s must be a number of seconds from 0 to "
            f"{MAX_SHUTDOWN_DELAY_S:g}, got {value!r}"
        )
    return value


def _shutdown_delay(table: Mapping[str, Any], loc: _Locator) -> float:
    value = _typed(table, "shutdown_delay_s", (int, float), 3.0, loc, "server")
    return _check_delay(float(value), loc.where("server", "shutdown_delay_s"))


def _delay_from_env(raw: str, where: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            f"{where}: shutdown_delay_s must be a number of seconds, got {raw!r}"
        ) from None
    return _check_delay(value, where)


def _persisted(table: Mapping[str, Any], loc: _Locator, base: Path) -> dict[str, Any]:
    """apq_cache_size, persisted_documents (loaded once here, so that a bad manifest stops
    start-up naming the key's line) and only_persisted."""
    size = _typed(table, "apq_cache_size", int, 1000, loc, "server")
    if not 0 <= size <= 1_000_000:
        raise ConfigError(
            f"{loc.where('server', 'apq_cache_size')}: apq_cache_size must be from 0 (APQ off) "
            "to 1000000"
        )
    name = _typed(table, "persisted_documents", str, None, loc, "server")
    path = base / name if name is not None else None
    if path is not None:
        try:
            load_manifest(path)
        except ManifestError as exc:
            raise ConfigError(f"{loc.where('server', 'persisted_documents')}: {exc}") from None
    only = _typed(table, "only_persisted", bool, False, loc, "server")
    if only and path is None:
        raise ConfigError(
            f"{loc.where('server', 'only_persisted')}: only_persisted needs "
            "persisted_documents (the manifest of the documents allowed to run)"
        )
    return {"apq_cache_size": size, "persisted_documents": path, "only_persisted": only}


def _storage_url(table: Mapping[str, Any], loc: _Locator) -> str | None:
    url: str | None = _typed(table, "storage_url", str, None, loc, "limits")
    if url is None:
        return None
    where = loc.where("limits", "storage_url")
    return _check_limits_storage_url(url, where, credentials_allowed=False)


MAX_POOL_SIZE = 500


def _pool_size(table: Mapping[str, Any], loc: _Locator) -> int | None:
    if "pool_size" not in table:
        return None
    value: int = _typed(table, "pool_size", int, 0, loc, "store")
    if not 1 <= value <= MAX_POOL_SIZE:
        raise ConfigError(
            f"{loc.where('store', 'pool_size')}: pool_size must be 1 to {MAX_POOL_SIZE}"
        )
    return value


def _positive(table: Mapping[str, Any], key: str, default: int, loc: _Locator) -> int:
    value: int = _typed(table, key, int, default, loc, "limits")
    if value < 1:
        raise ConfigError(f"{loc.where('limits', key)}: {key} must be at least 1")
    return value


def _at_least(table: Mapping[str, Any], key: str, default: int, floor: int, loc: _Locator) -> int:
    """A size limit below which the gateway could not serve its own clients (GraphiQL's
    introspection query alone is over a thousand characters)."""
    value: int = _typed(table, key, int, default, loc, "limits")
    if value < floor:
        raise ConfigError(f"{loc.where('limits', key)}: {key} must be at least {floor}")
    return value


def _positive_float(table: Mapping[str, Any], key: str, default: float, loc: _Locator) -> float:
    value = float(_typed(table, key, (int, float), default, loc, "limits"))
    if value <= 0:
        raise ConfigError(f"{loc.where('limits', key)}: {key} must be greater than 0")
    return value


def _credential(
    raw: Mapping[str, Any],
    name: str,
    index: int,
    loc: _Locator,
    env: Mapping[str, str],
    base: Path,
) -> str:
    """A secret from the variable ``<name>_env`` names, or the file ``<name>_file`` names
    (a mounted secret; relative to the config file). Never from the config file itself."""
    env_key, file_key = f"{name}_env", f"{name}_file"
    var = _typed(raw, env_key, str, None, loc, "sources", index)
    file_name = _typed(raw, file_key, str, None, loc, "sources", index)
    if (var is None) == (file_name is None):
        raise ConfigError(
            f"{loc.where('sources', None, index)}: set exactly one of {env_key!r} or {file_key!r}"
        )
    if var is not None:
        value = env.get(var)
        if not value:
            raise ConfigError(
                f"{loc.where('sources', env_key, index)}: the environment variable {var} "
                f"(named by {env_key}) is not set"
            )
        return value
    path = base / str(file_name)
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"{loc.where('sources', file_key, index)}: cannot read {file_key} {path}: {exc.strerror}"
        ) from None
    if not value:
        raise ConfigError(f"{loc.where('sources', file_key, index)}: {file_key} {path} is empty")
    return value


def _source(
    raw: Any, index: int, loc: _Locator, env: Mapping[str, str], base: Path
) -> SourceConfig:
    def where(key: str | None = None) -> str:
        return loc.where("sources", key, index)

    if not isinstance(raw, dict):
        raise ConfigError(f"{where()}: each [[sources]] entry must be a table")
    known = _COMMON_SOURCE_KEYS | providers.config_keys()
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"{where(key)}: unknown key sources.{key} (known: {', '.join(sorted(known))})"
            )
    for required in ("key", "provider", "base_url"):
        if required not in raw:
            raise ConfigError(f"{where()}: [[sources]] entry #{index + 1} needs {required!r}")
    key = _typed(raw, "key", str, None, loc, "sources", index)
    if not SOURCE_KEY_PATTERN.fullmatch(key):
        raise ConfigError(
            f"{where('key')}: key {key!r} must be lowercase letters, digits, '-' or '_', "
            "starting with a letter"
        )
    provider = _typed(raw, "provider", str, None, loc, "sources", index)
    if provider not in providers.names():
        raise ConfigError(
            f"{where('provider')}: provider must be one of {', '.join(providers.names())}"
        )
    spec = providers.get(provider)
    for name in raw:
        if name not in _COMMON_SOURCE_KEYS and name not in spec.config_keys:
            own_keys = ", ".join(sorted(spec.config_keys))
            raise ConfigError(
                f"{where(name)}: sources.{name} is not a setting of provider {provider} "
                f"(its own: {own_keys})"
            )
    base_url = _typed(raw, "base_url", str, None, loc, "sources", index).rstrip("/")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"{where('base_url')}: base_url must be an http(s) URL, got {base_url!r}")
    if parts.username or parts.password:
        raise ConfigError(f"{where('base_url')}: base_url must not hold credentials")
    credentials = {name: _credential(raw, name, index, loc, env, base) for name in spec.credentials}
    own = {k: v for k, v in raw.items() if k in spec.option_keys}
    options = spec.parse_options(_OptionReader(own, where))
    timeouts: dict[str, float] = {}
    for name, default in (
        ("timeout_s", 10.0),
        ("connect_timeout_s", 3.0),
        ("total_timeout_s", 0.0),
    ):
        value = float(_typed(raw, name, (int, float), default, loc, "sources", index))
        if name in raw and not 0 < value <= 300:
            raise ConfigError(f"{where(name)}: {name} must be between 0 and 300 seconds")
        timeouts[name] = value
    timeout_s = timeouts["timeout_s"]
    max_concurrency = _typed(raw, "max_concurrency", int, 20, loc, "sources", index)
    retries = _typed(raw, "retries", int, 2, loc, "sources", index)
    if max_concurrency < 1 or not 0 <= retries <= 10:
        raise ConfigError(f"{where()}: max_concurrency must be >= 1 and retries 0..10")
    max_answer_bytes = _typed(
        raw, "max_answer_bytes", int, DEFAULT_MAX_ANSWER_BYTES, loc, "sources", index
    )
    if not MIN_ANSWER_BYTES <= max_answer_bytes <= MAX_ANSWER_BYTES:
        raise ConfigError(
            f"{where('max_answer_bytes')}: max_answer_bytes must be between "
            f"{MIN_ANSWER_BYTES} (64 KiB) and {MAX_ANSWER_BYTES} (1 GiB)"
        )
    return SourceConfig(
        key=key,
        provider=provider,
        name=_typed(raw, "name", str, key, loc, "sources", index),
        base_url=base_url,
        timeout_s=timeout_s,
        connect_timeout_s=timeouts["connect_timeout_s"],
        total_timeout_s=timeouts["total_timeout_s"] or None,
        max_concurrency=max_concurrency,
        retries=retries,
        max_answer_bytes=max_answer_bytes,
        credentials=credentials,
        options=MappingProxyType(dict(options)),
    )
