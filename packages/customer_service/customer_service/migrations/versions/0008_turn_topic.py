"""turns: the question a turn stands for (`topic`), that a later follow-up is read with

A follow-up ("and for business accounts?") is read with the topic of the last topical turn before it. That
topic was worked out again from the stored query by cutting the follow-up's own words off its end, which
went wrong for a message that only reads as a follow-up ("Also, how do I send money abroad?" as a session's
first question was taken to stand for "Also"). Each turn now stores its topic.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 13:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Turns stored before this revision have none: their topic is worked out from the query as before
    # (`customer_service.followup.topic`).
    with op.batch_alter_table("turns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("topic", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("turns", schema=None) as batch_op:
        batch_op.drop_column("topic")
