"""sources, alert rules and alerts: ids never reused on SQLite (AUTOINCREMENT)

Their ids are named outside the database: in API paths and in the links of webhooks (``generatorURL`` names
the rule). SQLite gives a new row the largest id in use plus one, so once the newest row was deleted its id
went to the next one, and an old link led to another rule. With AUTOINCREMENT it counts on from the largest id
it ever gave. PostgreSQL sequences never give an id twice: nothing to do there.

SQLite cannot add AUTOINCREMENT to a table, so each is rebuilt (alembic's batch mode: a copy, the old table
dropped, the copy renamed); migrations run with foreign-key enforcement off, so the rows that refer to these
tables stay as they are. Ids deleted before this revision from the top of a table are not known any more and
may be given once more.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 08:05:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("sources", "alert_rules", "alerts")


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)


def _rebuild(*, autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass
