"""turns: the client's idempotency key of the message (unique within its session) and the reply's mode

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 00:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Turns stored before this revision have neither: no retry finds them, and they answer no retry.
    with op.batch_alter_table("turns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("mode", sa.String(length=16), nullable=True))
        batch_op.create_index(
            "ix_turns_session_idempotency_key", ["session_id", "idempotency_key"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("turns", schema=None) as batch_op:
        batch_op.drop_index("ix_turns_session_idempotency_key")
        batch_op.drop_column("mode")
        batch_op.drop_column("idempotency_key")
