"""alert rules: resolve_fraction, the hysteresis of a firing alert

A firing alert resolves only when its window falls below this fraction of a rule's thresholds (its minimum
volume, negative-share floor, z threshold and sentiment drop). Rules stored before this revision read 0.5,
the fraction their share, z and drop thresholds already resolved at.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert_rules") as batch:
        batch.add_column(sa.Column("resolve_fraction", sa.Float(), nullable=False, server_default="0.5"))


def downgrade() -> None:
    with op.batch_alter_table("alert_rules") as batch:
        batch.drop_column("resolve_fraction")
