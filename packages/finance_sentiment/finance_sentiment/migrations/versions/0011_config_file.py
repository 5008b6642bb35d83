"""sources and alert rules: config_file (which config file provisions the row)

A row the config file manages (``managed_by = "config"``) records the file's absolute path, so that a start
with another file (two desks' files on one database, a second cron job) disables only what its own file
provisioned and no longer declares, not the other file's rows (`finance_sentiment.config.apply_config`).
Rows stored before this revision read null: the next start's file claims the ones it declares, and one it
does not declare counts as its own, as before.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("sources", "alert_rules"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("config_file", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in ("alert_rules", "sources"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("config_file")
