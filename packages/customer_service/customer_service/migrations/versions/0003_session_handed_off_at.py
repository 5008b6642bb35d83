"""sessions: when the last hand-off happened, indexed with the state for the agents' queue

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 18:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from textcore.sql import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("handed_off_at", UtcDateTime(), nullable=True))
        batch_op.create_index("ix_sessions_state_handed_off_at", ["state", "handed_off_at"], unique=False)
    # Sessions already waiting: their last change is the best estimate of when they were handed off.
    sessions = sa.table("sessions", sa.column("state", sa.String), sa.column("updated_at", UtcDateTime),
                        sa.column("handed_off_at", UtcDateTime))  # fmt: skip
    op.execute(
        sessions.update()
        .where(sessions.c.state == "waiting_for_agent")
        .values(handed_off_at=sessions.c.updated_at)
    )


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_state_handed_off_at")
        batch_op.drop_column("handed_off_at")
