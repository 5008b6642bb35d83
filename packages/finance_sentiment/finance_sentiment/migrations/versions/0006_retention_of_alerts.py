"""retention of alerts and notifications: indexes on alerts.ends_at and outbox.expires_at

With a retention set (``FIN_RETENTION_DAYS``) the hourly pass also deletes the notifications delivered or
expired, and the alerts resolved, before its cutoff. ``outbox.delivered_at`` leads an index already
(``ix_outbox_pending``); these two let the pass find the expired notifications and the resolved alerts
without reading every row (an outbox row carries its whole webhook body). Indexes only: no row changes, no
table is rebuilt.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 09:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.create_index("ix_alerts_ends_at", ["ends_at"], unique=False)
    with op.batch_alter_table("outbox") as batch:
        batch.create_index("ix_outbox_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_expires_at")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_index("ix_alerts_ends_at")
