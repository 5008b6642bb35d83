"""Deleting items: the rows go, all or nothing, and their events stay, detached from the id (tombstones)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import String, cast, delete, literal, select, update
from sqlalchemy.orm import Session

from recommender.changes import ERASURES, EVENTS, ITEMS, bump
from recommender.database import Database
from recommender.item_records import id_listing
from recommender.tables import Base, Event, Item
from textcore import InvalidInput, NotFound


def delete_items(db: Database, ids: Sequence[str]) -> int:
    """Remove items from the database, all or nothing; their events stay, detached from the id.

    Catalogs over the database drop their vectors when they next sync or refresh (`ItemCatalog.refresh`).
    The items' events are kept (a user who interacted with them is still known) but name the item by a
    tombstone id that no request can send (`detached_id`), so an item created later under the same id starts
    with no behaviour. When there were any, the erasures counter moves, so every service counts the events
    again (`recommender.changes`), the tombstones apart from the id.

    Returns:
        The items change counter before this deletion (`recommender.changes`).

    Raises:
        InvalidInput: No ids.
        NotFound: Listing the ids that are not stored; then nothing is deleted.
    """
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        raise InvalidInput("expected at least one item id to delete, found none")
    chunks = [wanted[start : start + 500] for start in range(0, len(wanted), 500)]  # bounded IN lists
    with db.session() as session:
        before = bump(session, ITEMS)
        found: set[str] = set()
        for chunk in chunks:
            found.update(session.scalars(select(Item.id).where(Item.id.in_(chunk))))
        missing = [i for i in wanted if i not in found]
        if missing:
            raise NotFound(f"expected stored item ids; nothing was deleted; unknown: {id_listing(missing)}")
        for chunk in chunks:
            session.execute(delete(Item).where(Item.id.in_(chunk)))
        _detach_events(session, chunks)
    return before


def detached_id() -> str:
    """An item id for the events of a deleted item to hold instead of its own: new at each call, and never an
    id a request or a file can send (those are stripped of surrounding whitespace; this one starts with a
    space)."""
    return f" deleted {uuid.uuid4().hex}"


# The key a detached event holds instead of its content's: unique (it names the row), and never the key of an
# event a request or a file can send (those are 64 hex digits; this one has a space).
DETACHED_KEY = "detached "
_EVENTS = Base.metadata.tables["events"]


def _detach_events(session: Session, chunks: Sequence[Sequence[str]]) -> None:
    """Give the events of the deleted ids in `chunks` a `detached_id` each, in the deleting transaction.

    One UPDATE per item, in SQL: the database's write lock is held while it runs (on SQLite about 1.2 s per
    100,000 events of the item, where reading the rows out to write them back one by one with keys hashed in
    Python took 3 s; bench/behaviour_writes.py), and an item is never half deleted. Each event's key becomes
    `DETACHED_KEY` and its row id, whatever it held (its content's key or its event id's): the content's key
    is freed, so an event of that content is new to an item created later under the id, and its event id,
    which it keeps, still marks it as stored.

    The events counter is bumped first, so an ingest storing events of these items at the same time commits
    before (and its events are detached here) or finds them gone (and stores nothing).
    """
    bump(session, EVENTS)
    with_events: list[str] = []
    for chunk in chunks:
        with_events += session.scalars(select(Event.item_id).where(Event.item_id.in_(chunk)).distinct())
    if not with_events:
        return
    bump(session, ERASURES)
    key = literal(DETACHED_KEY) + cast(_EVENTS.c.id, String)
    for item_id in with_events:
        detach = update(_EVENTS).where(_EVENTS.c.item_id == item_id)
        session.execute(detach.values(item_id=detached_id(), fingerprint=key))
