"""The internal token store: SQLite by default, PostgreSQL via the same URL setting."""

from upstreams.store.credentials import SecretHasher, load_key
from upstreams.store.engine import create_engine
from upstreams.store.migrate import migrate
from upstreams.store.source import INTERNAL_KEY, StoreSource

__all__ = ["INTERNAL_KEY", "SecretHasher", "StoreSource", "create_engine", "load_key", "migrate"]
