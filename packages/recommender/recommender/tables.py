"""The recommender's SQL schema (SQLAlchemy 2 declarative); alembic migrations in `migrations/` create it.

    items            the catalog: id, title, text, categories, metadata
    events           behaviour: (user_id, item_id, ts, type, value), one row per interaction; `event_id`
                     (unique, optional) is the client's own id of the event: an event with one is that
                     event, stored once whatever its time or content (an event sent without a time gets
                     the time of arrival); `fingerprint` (unique) identifies an event without one by its
                     content, so the same one sent twice is stored once. The first event of a content holds
                     its `event_fingerprint`; another event with an id and the same content (two order
                     lines of one item, in one second) holds its id's `id_fingerprint` instead, so every
                     content stored keeps its key (events are deleted only with all of their user's), rows
                     stored before stay as they are, and an event without an id finds any stored event of
                     its content under that key
    change_counters  one counter per table above, bumped by every transaction that writes it, and one
                     bumped by every erasure of a user's events (`recommender.changes`: how running
                     services see other processes' writes)

Events name items by id without a foreign key: behaviour is a log, and it outlives an item deleted from the
catalog (serving skips items that are no longer there). Deleting an item gives its events an id of their own
that no request can send (`recommender.item_deletion.detached_id`), and a key of their own that no event
sent can have (`recommender.item_deletion.DETACHED_KEY` and the row id), so an item created later under the
same id starts with no behaviour. Times are stored as naive UTC and read back timezone-aware
(`textcore.sql.UtcDateTime`), identically on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from textcore.sql import UtcDateTime, utcnow

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BigId = BigInteger().with_variant(Integer(), "sqlite")
ID_LENGTH = 200
# The limits of an item, alike in the API (`recommender.schemas`) and in catalog files (`recommender.ingest`).
TITLE_LENGTH = 1_000
TEXT_LENGTH = 20_000
CATEGORY_LENGTH = 200
MAX_CATEGORIES = 50
MAX_METADATA_CHARS = 10_000  # of the metadata as JSON
EVENT_TYPES = ("click", "rating", "purchase")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime,
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class Item(Base):
    """One catalog item."""

    __tablename__ = "items"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text, default="")
    categories: Mapped[list[str]] = mapped_column(default=list)
    # `metadata` is taken by the declarative base, so the attribute has another name than the column.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Event(Base):
    """One interaction of a user with an item."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_user_ts", "user_id", "ts"),
        Index("uq_events_fingerprint", "fingerprint", unique=True),
        Index("uq_events_event_id", "event_id", unique=True),  # NULLs are distinct: events without ids
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    item_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    ts: Mapped[datetime] = mapped_column()
    type: Mapped[str] = mapped_column(String(16))  # click | rating | purchase
    value: Mapped[float | None] = mapped_column(Float)
    # event_fingerprint of the columns above, or id_fingerprint(event_id) when another row holds that;
    # "detached <id>" once its item is deleted (`recommender.item_deletion.DETACHED_KEY`)
    fingerprint: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))  # the client's id of the event, if any


def event_fingerprint(user_id: str, item_id: str, ts: datetime, event_type: str, value: float | None) -> str:
    """What makes two events one and the same interaction: user, item, time (to the microsecond, in UTC),
    type and value; 64 hex digits (SHA-256).

    Stored in `Event.fingerprint` under a unique index, so a retried request or a file ingested again adds
    nothing (an event with an id is identified by the id instead; see the module's docstring). Migration
    0004 wrote it for the events stored before, with its own frozen copy of this function; a change of this
    function needs a migration that writes it again (carrying its own copy too).
    """
    moment = ts.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
    number = None if value is None else float(value)
    identity = json.dumps([user_id, item_id, moment, event_type, number], ensure_ascii=False)
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()


def id_fingerprint(event_id: str) -> str:
    """The key of an event with the client's id whose content another stored event holds: derived from the
    id alone, 64 hex digits (SHA-256); never a content's key (`event_fingerprint` hashes five fields)."""
    identity = json.dumps(["event_id", event_id], ensure_ascii=False)
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()


class ChangeCounter(Base):
    """How many transactions have written a table ("items" or "events"); see `recommender.changes`."""

    __tablename__ = "change_counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
