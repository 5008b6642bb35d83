"""outbox: secret, the one a former webhook of a rule was signed with

When a rule moves to another webhook, the messages delivered to the former one keep the secret that went
with it ("" when unsigned), and a "resolved" owed to that webhook is signed with it rather than with the
rule's new secret, which its receiver does not know. Rows stored before this revision read null: signed
with the rule's secret, as they were.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("secret", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("secret")
