"""outbox: fixed_url, for a "resolved" owed to a webhook the rule no longer has

A notification goes to its rule's webhook URL as it is when it is sent, so a corrected URL reaches the
messages already waiting. A "resolved" owed to a former webhook of the rule (one that was delivered the
alert's "firing" before the rule was moved to another) must go to that URL instead: ``fixed_url`` marks
the messages sent to their own ``url``. Rows stored before this revision read false, as they were sent.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("fixed_url", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("fixed_url")
