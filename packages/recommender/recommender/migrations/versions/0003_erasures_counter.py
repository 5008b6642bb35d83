"""erasures counter: running services recount behaviour when another process erased a user's events

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

counters = sa.table("change_counters", sa.column("name", sa.String), sa.column("version", sa.BigInteger))


def upgrade() -> None:
    op.bulk_insert(counters, [{"name": "erasures", "version": 0}])


def downgrade() -> None:
    op.execute(counters.delete().where(counters.c.name == "erasures"))
