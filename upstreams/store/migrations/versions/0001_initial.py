"""Initial store: tokens, their scopes, and the audit log.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

_Id = sa.String(32).with_variant(sa.String(32, collation="C"), "postgresql")
_NameKey = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", _Id, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("name_key", _NameKey, nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("subject", sa.String(255), nullable=True),
        sa.Column("allowed_sources", sa.Text, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("last_used_at", sa.BigInteger, nullable=True),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("secret_hint", sa.String(16), nullable=False),
        sa.Column("is_bootstrap", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_by", sa.String(32), nullable=True),
    )
    op.create_index("ix_tokens_created", "tokens", ["created_at", "id"])
    op.create_index("ix_tokens_name", "tokens", ["name_key", "id"])
    op.create_index("ix_tokens_last_used", "tokens", ["last_used_at", "id"])
    op.create_index("ix_tokens_expires", "tokens", ["expires_at", "id"])
    op.create_index("ix_tokens_subject", "tokens", ["subject"])
    op.create_table(
        "token_scopes",
        sa.Column(
            "token_id",
            _Id,
            sa.ForeignKey("tokens.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("scope", sa.String(255), primary_key=True),
    )
    op.create_index("ix_token_scopes_scope", "token_scopes", ["scope", "token_id"])
    op.create_table(
        "audit_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("actor_token_id", sa.String(32), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target_id", sa.String(512), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("ix_audit_at", "audit_events", ["at", "id"])


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("token_scopes")
    op.drop_table("tokens")
