"""The store's tables (SQLAlchemy Core). Migrations in ``migrations/`` create exactly these."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Byte-wise comparison on PostgreSQL too, so SQL keyset order equals Python's str order.
NameKey = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")
Id = sa.String(32).with_variant(sa.String(32, collation="C"), "postgresql")

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("name_key", NameKey, nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("subject", sa.String(255), nullable=True),
    sa.Column("allowed_sources", sa.Text, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    # Microseconds since the epoch, UTC: exact and identical on every dialect.
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("last_used_at", sa.BigInteger, nullable=True),
    sa.Column("expires_at", sa.BigInteger, nullable=True),
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("secret_hint", sa.String(16), nullable=False),
    sa.Column("is_bootstrap", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_by", sa.String(32), nullable=True),
    # The token whose rate bucket and minting quota this one shares (NULL: itself).
    sa.Column("lineage", Id, nullable=True),
    sa.Index("ix_tokens_lineage", "lineage", "status"),
    sa.Index("ix_tokens_created", "created_at", "id"),
    sa.Index("ix_tokens_name", "name_key", "id"),
    sa.Index("ix_tokens_last_used", "last_used_at", "id"),
    sa.Index("ix_tokens_expires", "expires_at", "id"),
    sa.Index("ix_tokens_subject", "subject"),
)

token_scopes = sa.Table(
    "token_scopes",
    metadata,
    sa.Column("token_id", Id, sa.ForeignKey("tokens.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("scope", sa.String(255), primary_key=True),
    sa.Index("ix_token_scopes_scope", "scope", "token_id"),
)

# One row per source of a source-bound token (the JSON column stays the record).
token_sources = sa.Table(
    "token_sources",
    metadata,
    sa.Column("token_id", Id, sa.ForeignKey("tokens.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("source", sa.String(64), primary_key=True),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("actor_token_id", sa.String(32), nullable=True),
    # The user of a caller signed in at the identity provider (NULL for internal tokens).
    sa.Column("actor_subject", sa.String(255), nullable=True),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("target_id", sa.String(512), nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Index("ix_audit_at", "at", "id"),
)
