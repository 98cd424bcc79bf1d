"""Audit events name the user of a caller signed in at the identity provider (a JWT).

``actor_subject`` is that user (the token's subject claim); NULL for internal tokens, whose
``actor_token_id`` names them.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("actor_subject", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("actor_subject")
