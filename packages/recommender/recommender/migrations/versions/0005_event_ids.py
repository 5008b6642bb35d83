"""event ids: an event sent again under the client's own id is stored once

Events get an optional `event_id` (the client's id of the event, up to 200 characters) under a unique
index. It is nullable, and NULLs are distinct on SQLite and PostgreSQL alike, so events stored before, and
events sent without an id, are kept as they are. A downgrade drops the column and index.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 18:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_id", sa.String(length=200), nullable=True))
        batch_op.create_index("uq_events_event_id", ["event_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("uq_events_event_id")
        batch_op.drop_column("event_id")
