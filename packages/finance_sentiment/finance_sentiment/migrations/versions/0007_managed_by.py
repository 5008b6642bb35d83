"""sources and alert rules: managed_by (who owns the row: the config file or the API); rules: disabled_reason

The config file provisions the sources and rules it declares; one it provisioned and no longer declares is
disabled at start (`finance_sentiment.config.apply_config`), which needs to know which rows it provisioned.
Rows stored before this revision read "api" (nothing recorded that the file made them); the next start
with a config file claims the ones it declares by name. A rule gets the `disabled_reason` a source has.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _managed_by() -> sa.Column[str]:
    return sa.Column("managed_by", sa.String(length=10), nullable=False, server_default="api")


def upgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.add_column(_managed_by())
    with op.batch_alter_table("alert_rules") as batch:
        batch.add_column(_managed_by())
        batch.add_column(sa.Column("disabled_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alert_rules") as batch:
        batch.drop_column("disabled_reason")
        batch.drop_column("managed_by")
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("managed_by")
