"""event fingerprints: the same interaction sent twice is stored once

Every event gets `fingerprint` (user, item, time, type and value) under a unique index, computed by
`_fingerprint`: this migration's own copy of `recommender.tables.event_fingerprint` as it was when written,
so that running it later writes the same keys whatever the live function has become. Events stored twice
before (a retried request, a file ingested again) are kept once, the copy with the lowest id; when any copy
was deleted the erasures counter moves, so that running services count the events again without them
(`recommender.changes`). A downgrade drops the column and index; the deleted copies do not come back.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 14:40:00.000000
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from textcore.sql import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CHUNK = 10_000

events = sa.table(
    "events",
    sa.column("id", sa.BigInteger),
    sa.column("user_id", sa.String),
    sa.column("item_id", sa.String),
    sa.column("ts", UtcDateTime),
    sa.column("type", sa.String),
    sa.column("value", sa.Float),
    sa.column("fingerprint", sa.String),
)
counters = sa.table("change_counters", sa.column("name", sa.String), sa.column("version", sa.BigInteger))


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fingerprint", sa.String(length=64), nullable=True))
    if _fill_fingerprints(op.get_bind()):
        op.execute(
            counters.update().where(counters.c.name == "erasures").values(version=counters.c.version + 1)
        )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.alter_column("fingerprint", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_index("uq_events_fingerprint", ["fingerprint"], unique=True)


def _fill_fingerprints(connection: sa.Connection) -> int:
    """Write every event's fingerprint in id order, deleting later copies; returns how many it deleted."""
    seen: set[str] = set()
    deleted = 0
    last = 0
    columns = (events.c.id, events.c.user_id, events.c.item_id, events.c.ts, events.c.type, events.c.value)
    set_fingerprint = (
        events.update().where(events.c.id == sa.bindparam("row_id")).values(fingerprint=sa.bindparam("key"))
    )
    while rows := connection.execute(
        sa.select(*columns).where(events.c.id > last).order_by(events.c.id).limit(CHUNK)
    ).all():
        last = rows[-1].id
        updates, copies = [], []
        for row in rows:
            key = _fingerprint(row.user_id, row.item_id, row.ts, row.type, row.value)
            if key in seen:
                copies.append(row.id)
            else:
                seen.add(key)
                updates.append({"row_id": row.id, "key": key})
        if updates:
            connection.execute(set_fingerprint, updates)
        for start in range(0, len(copies), 500):
            connection.execute(events.delete().where(events.c.id.in_(copies[start : start + 500])))
        deleted += len(copies)
    return deleted


def _fingerprint(user_id: str, item_id: str, ts: datetime, event_type: str, value: float | None) -> str:
    """`recommender.tables.event_fingerprint` as of this revision, frozen here: a migration must write the
    same keys whenever it runs, even after the live function changes (such a change brings a migration)."""
    moment = ts.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
    number = None if value is None else float(value)
    identity = json.dumps([user_id, item_id, moment, event_type, number], ensure_ascii=False)
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("uq_events_fingerprint")
        batch_op.drop_column("fingerprint")
