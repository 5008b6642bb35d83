"""Change counters: how a running service learns that another process wrote items or events, or erased events.

The catalog's vectors and the co-occurrence counts live in each service's memory, filled from the database at
start. Another process may write the same database meanwhile: `recommender ingest-items` or `ingest-events`,
or a second replica sharing PostgreSQL. Every transaction that writes items or events therefore first adds one
to its table's counter (`bump`), and a service compares the counters with the values it has taken in
(`read_counters`, one small query) before it serves from memory.

Erasing a user's events (`recommender.events.erase_user`) bumps a third counter, `ERASURES`: deleted events
leave nothing to read after an id, so a service that sees it move counts every stored event again. Deleting
items that have events bumps it too (`recommender.item_deletion.delete_items`): their events are detached
from the ids in place, which a read after an id cannot see either.

Bumping first also orders the writers: the row lock it takes (PostgreSQL; SQLite writers queue on the
database lock anyway) is held until commit, so writes of one table commit one after another in counter order.
A reader that sees counter n has therefore seen every write up to n, and event ids grow in commit order, so
reading "the events after id k" never misses one that commits later with a smaller id.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from recommender.database import Database
from recommender.tables import ChangeCounter

ITEMS = "items"
EVENTS = "events"
ERASURES = "erasures"


def bump(session: Session, name: str) -> int:
    """Add one to the counter of `name` in the session's transaction (call it first); returns the old value.

    The caller's own write is the only one between the old value and the new when the old value is the one
    it had taken in last.
    """
    counter = ChangeCounter.version
    statement = update(ChangeCounter).where(ChangeCounter.name == name).values(version=counter + 1)
    new: int = session.execute(statement.returning(counter)).scalar_one()
    return new - 1


def counter(session: Session, name: str) -> int:
    """The counter of `name` as the session's transaction sees it."""
    value: int = session.execute(select(ChangeCounter.version).where(ChangeCounter.name == name)).scalar_one()
    return value


def read_counters(db: Database) -> dict[str, int]:
    """Every counter by name (`ITEMS`, `EVENTS`, `ERASURES`)."""
    query = select(ChangeCounter.name, ChangeCounter.version)
    with db.session() as session:
        return {row.name: row.version for row in session.execute(query)}
