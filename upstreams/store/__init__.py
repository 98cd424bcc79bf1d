"""The internal token store: SQLite by default, PostgreSQL via the same URL setting."""

from tokengate.upstreams.store.credentials import SecretHasher, load_key
from tokengate.upstreams.store.engine import create_engine
from tokengate.upstreams.store.migrate import migrate
from tokengate.upstreams.store.source import INTERNAL_KEY, StoreSource

__all__ = ["INTERNAL_KEY", "SecretHasher", "StoreSource", "create_engine", "load_key", "migrate"]
