"""Token bindings comparable in SQL, and minting lineages.

``token_sources`` holds each source-bound token's sources one per row (the JSON column
stays the record), so a list can keep only the tokens whose binding a caller covers.
``lineage`` names the token whose rate bucket and minting quota a token shares: NULL for a
token an unbound admin, the CLI or the bootstrap made (it is its own lineage).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

_Id = sa.String(32).with_variant(sa.String(32, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "token_sources",
        sa.Column(
            "token_id",
            _Id,
            sa.ForeignKey("tokens.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("source", sa.String(64), primary_key=True),
    )
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("lineage", _Id, nullable=True))
        batch.create_index("ix_tokens_lineage", ["lineage", "status"])
    bind = op.get_bind()
    tokens = sa.table("tokens", sa.column("id"), sa.column("allowed_sources"))
    token_sources = sa.table("token_sources", sa.column("token_id"), sa.column("source"))
    rows = bind.execute(
        sa.select(tokens.c.id, tokens.c.allowed_sources).where(
            tokens.c.allowed_sources.is_not(None)
        )
    ).all()
    pairs = [
        {"token_id": token_id, "source": key}
        for token_id, raw in rows
        for key in sorted(set(json.loads(raw)))
    ]
    if pairs:
        bind.execute(token_sources.insert(), pairs)


def downgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.drop_index("ix_tokens_lineage")
        batch.drop_column("lineage")
    op.drop_table("token_sources")
