"""ids in NFC: an id stored composed or decomposed is one id

The API and the files now bring every item, user and event id to Unicode NFC ("café" sent as "e" + U+0301
is stored as U+00E9), so an id stored before in another form could no longer be read, replaced, deleted or
named by an event. This brings the stored ids to NFC as well:

- an item whose NFC id is free takes it; one whose NFC id another item holds (the same visible id stored
  twice) is deleted, the item under the NFC id kept;
- events take the NFC forms of their user, item and event ids, and their keys follow (`_fingerprint`,
  `_id_fingerprint`: this migration's own copies of `recommender.tables`' functions as they were when it was
  written); an event that is then a copy of a stored one (the same content without an event id, or the same
  event id) is deleted, as migration 0004 kept one copy of each event.

The change counters move as the writes require (`recommender.changes`): items when an item changed, events
and erasures when an event did, so running services take the new ids in. Ids already in NFC, nearly all of
them, are left as they are; a downgrade leaves the ids in NFC.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:10:00.000000
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from textcore.sql import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CHUNK = 10_000

items = sa.table("items", sa.column("id", sa.String))
events = sa.table(
    "events",
    sa.column("id", sa.BigInteger),
    sa.column("user_id", sa.String),
    sa.column("item_id", sa.String),
    sa.column("ts", UtcDateTime),
    sa.column("type", sa.String),
    sa.column("value", sa.Float),
    sa.column("fingerprint", sa.String),
    sa.column("event_id", sa.String),
)
counters = sa.table("change_counters", sa.column("name", sa.String), sa.column("version", sa.BigInteger))


def upgrade() -> None:
    connection = op.get_bind()
    moved = ["items"] if _items_to_nfc(connection) else []
    if _events_to_nfc(connection):
        moved += ["events", "erasures"]
    for name in moved:
        connection.execute(
            counters.update().where(counters.c.name == name).values(version=counters.c.version + 1)
        )


def _nfc(value: str) -> str:
    return unicodedata.normalize("NFC", value)


def _items_to_nfc(connection: sa.Connection) -> int:
    """Give every item its NFC id (deleting one whose NFC id is taken); returns how many changed."""
    others = [i for i in connection.scalars(sa.select(items.c.id)) if not unicodedata.is_normalized("NFC", i)]
    for item_id in others:
        taken = connection.scalar(sa.select(items.c.id).where(items.c.id == _nfc(item_id)))
        if taken is None:
            connection.execute(items.update().where(items.c.id == item_id).values(id=_nfc(item_id)))
        else:
            connection.execute(items.delete().where(items.c.id == item_id))
    return len(others)


def _events_to_nfc(connection: sa.Connection) -> int:
    """Give every event its ids in NFC and the keys that follow, in id order (deleting one that is then a
    copy of a stored event); returns how many changed."""
    changed = 0
    last = 0
    while rows := connection.execute(
        sa.select(events).where(events.c.id > last).order_by(events.c.id).limit(CHUNK)
    ).all():
        last = rows[-1].id
        for row in rows:
            if all(
                unicodedata.is_normalized("NFC", v or "") for v in (row.user_id, row.item_id, row.event_id)
            ):
                continue
            changed += 1
            _event_to_nfc(connection, row)
    return changed


def _event_to_nfc(connection: sa.Connection, row: sa.Row[tuple[object, ...]]) -> None:
    user_id, item_id = _nfc(row.user_id), _nfc(row.item_id)
    event_id = None if row.event_id is None else _nfc(row.event_id)
    content = _fingerprint(user_id, item_id, row.ts, row.type, row.value)

    def taken(column: sa.ColumnClause[str], value: str) -> bool:
        query = sa.select(events.c.id).where(column == value, events.c.id != row.id)
        return connection.scalar(query) is not None

    if event_id is None:
        copy, key = taken(events.c.fingerprint, content), content
    else:
        copy = taken(events.c.event_id, event_id)
        key = _id_fingerprint(event_id) if taken(events.c.fingerprint, content) else content
    this = events.c.id == row.id
    if copy:
        connection.execute(events.delete().where(this))
    else:
        values = {"user_id": user_id, "item_id": item_id, "event_id": event_id, "fingerprint": key}
        connection.execute(events.update().where(this).values(**values))


def _fingerprint(user_id: str, item_id: str, ts: datetime, event_type: str, value: float | None) -> str:
    """`recommender.tables.event_fingerprint` as of this revision, frozen here (see migration 0004)."""
    moment = ts.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
    number = None if value is None else float(value)
    identity = json.dumps([user_id, item_id, moment, event_type, number], ensure_ascii=False)
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()


def _id_fingerprint(event_id: str) -> str:
    """`recommender.tables.id_fingerprint` as of this revision, frozen here."""
    identity = json.dumps(["event_id", event_id], ensure_ascii=False)
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()


def downgrade() -> None:
    """The ids stay in NFC: the forms they were sent in are not kept."""
