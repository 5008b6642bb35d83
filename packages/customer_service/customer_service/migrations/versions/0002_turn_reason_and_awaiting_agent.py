"""turns: the policy's reason, and whether the message came while the session waited for an agent

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

WAITING_REPLY = "Thanks, I've added that for our team; a person will be with you shortly."


def upgrade() -> None:
    with op.batch_alter_table("turns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("awaiting_agent", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    # Earlier acknowledgements of a waiting session are known by their fixed reply.
    turns = sa.table("turns", sa.column("action", sa.String), sa.column("answer", sa.Text),
                     sa.column("awaiting_agent", sa.Boolean))  # fmt: skip
    op.execute(
        turns.update()
        .where(turns.c.action == "handoff", turns.c.answer == WAITING_REPLY)
        .values(awaiting_agent=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("turns", schema=None) as batch_op:
        batch_op.drop_column("awaiting_agent")
        batch_op.drop_column("reason")
