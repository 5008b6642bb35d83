"""retention: the dedup keys of pruned stories; document ids never reused on SQLite (AUTOINCREMENT)

With a retention set (``FIN_RETENTION_DAYS``) old stories are deleted. ``pruned_stories`` keeps two hashes of
each (of its canonical URL and of its text), so that a source still listing a pruned story does not have it
stored again as new. Document ids are in API paths (``/v1/documents/{id}``); once the newest story can be
deleted, SQLite would give its id to the next one, so the table is rebuilt with AUTOINCREMENT as migration
0004 did for sources, rules and alerts (alembic's batch mode, foreign-key enforcement off: the tags keep
their rows). PostgreSQL sequences never give an id twice.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from textcore.sql import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pruned_stories",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("url_key", sa.String(length=64), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("pruned_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pruned_stories") as batch:
        batch.create_index(batch.f("ix_pruned_stories_url_key"), ["url_key"], unique=False)
        batch.create_index(batch.f("ix_pruned_stories_content_hash"), ["content_hash"], unique=False)
        batch.create_index(batch.f("ix_pruned_stories_pruned_at"), ["pruned_at"], unique=False)
    _rebuild_documents(autoincrement=True)


def downgrade() -> None:
    _rebuild_documents(autoincrement=False)
    op.drop_table("pruned_stories")


def _rebuild_documents(*, autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "documents", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass
