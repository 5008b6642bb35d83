"""Behaviour events: batch ingest (all or nothing) and each user's history.

An event is one interaction: a click, a purchase, or a rating with its value. Clicks and purchases are
positives; a rating is a positive when it reaches the configured ``min_rating`` (every rating does when there
is none). A user's explicit judgement outweighs their implicit signals: when the user rated an item, their
latest rating (by time, ties in arrival order) decides whether they like it, whatever clicks or purchases came
before or after it, so an item rated below ``min_rating`` is no like at all (`positive_history`,
`positives_after`); it is still an item the user has seen.

A batch is checked completely before anything is written: a malformed event raises `InvalidInput`, an item
id that is not in the catalog raises `NotFound` listing them, and then nothing is stored.

An event may carry the client's own `event_id` (1-200 characters, like other ids), and is then identified
by it: an event whose id is already stored, or earlier in the batch, is not stored or counted again, whatever
its time or content, so a retry of events sent without a time (each gets the time of arrival) adds nothing;
an event with a new id is stored even when an event of the same content is there (two order lines buying
one item in one second are two purchases). An event without an id is identified by its content: one
identical to an event already stored, or earlier in the batch, with an id or without (same user, item,
time, type and value: `event_fingerprint`), is not stored again, nor counted again, so a retried request,
or a file ingested twice (with its ids or without), adds nothing. Repeats at other times (buying an item
again) are events of their own. A batch stores what its events would store sent one by one, in order.
Unique indexes hold each id and each key once (`recommender.tables`): two writers storing the same event at
once queue on the events counter's lock (`bump`), and one that meets an index anyway (a writer that did not
take the lock) reads the stored events again and stores the rest (`ingest_events`).

An event's value is a rating (or whatever number the caller keeps with a click or purchase): finite and at
most `MAX_VALUE` from 0, which any rating scale fits, and beyond which a number is a mistake.

An event's time given as a number is Unix seconds, alike through the API and the files (`unix_seconds`). A
number at or beyond `LATEST_UNIX_SECONDS` (2200-01-01) is refused rather than guessed at: it is most likely
milliseconds (1e11 is 1973 in milliseconds and year 5138 in seconds). A time more than a tolerance
(`FUTURE_TOLERANCE` by default, the `event_future_tolerance_s` setting) after the server's clock is refused
too (`future_problem`): a client whose clock is wrong, or a typo, would store an event that counts as the
user's newest in recency weighting until that time, years on.

Each batch bumps the events change counter first (`recommender.changes`), so batches commit in id order and a
service can count what other processes stored by reading the events after the last id it counted
(`positives_after`).

Behaviour is personal data: `erase_user` deletes every event of one user (an erasure request) and bumps the
erasures counter, so that every service over the database counts the events again without them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from recommender.changes import ERASURES, EVENTS, bump
from recommender.database import Database
from recommender.item_records import id_listing
from recommender.tables import EVENT_TYPES, ID_LENGTH, Event, Item, event_fingerprint, id_fingerprint
from textcore import InvalidInput, NotFound, PayloadTooLarge
from textcore.sql import EARLIEST, aware_utc, utcnow

MAX_VALUE = 1e6  # largest |value| of an event: any rating scale fits; beyond it a number is a mistake
LATEST_UNIX = datetime(2200, 1, 1, tzinfo=UTC)  # a time as a number is seconds before this, or a mistake
LATEST_UNIX_SECONDS = int(LATEST_UNIX.timestamp())  # 7,258,118,400; 1e11 is 1973 in milliseconds
# how far an event's time may be after the server's clock: clients' clocks disagree a little, not by years
FUTURE_TOLERANCE = timedelta(days=1)
# events deleted per transaction by `erase_user`: smaller batches hold the write lock for less time each,
# but rewrite the same pages of the indexes more often (bench/behaviour_writes.py)
ERASE_BATCH = 5_000
ATTEMPTS = 3  # stores of a batch that meets events another writer stored meanwhile, before giving up


@dataclass(frozen=True)
class EventRecord:
    """One interaction; `ts` is timezone-aware; `value` is the rating (optional for other types)."""

    user_id: str
    item_id: str
    ts: datetime
    type: str = "click"
    value: float | None = None
    event_id: str | None = None  # the client's own id of the event: stored once


def is_positive(event_type: str, value: float | None, min_rating: float | None) -> bool:
    """Whether one interaction, on its own, counts as the user liking the item.

    The user's latest rating of the item outweighs it (`disliked`): a click on an item the user rated
    below `min_rating` is no like.
    """
    if event_type != "rating":
        return True
    return min_rating is None or (value is not None and value >= min_rating)


def disliked(events: Sequence[EventRecord], min_rating: float | None) -> set[str]:
    """The items whose latest rating among a user's `events` (oldest first) is below `min_rating`: no likes,
    whatever other interactions the user had with them (none with no threshold)."""
    if min_rating is None:
        return set()
    latest = {e.item_id: e.value for e in events if e.type == "rating"}  # the last one of each item stays
    return {item for item, value in latest.items() if value is None or value < min_rating}


def check_events(
    events: Sequence[EventRecord],
    max_events: int | None = None,
    *,
    future_tolerance: timedelta = FUTURE_TOLERANCE,
) -> None:
    """Check every event of a batch.

    Args:
        events: The batch.
        max_events: Most events per batch (None: no limit).
        future_tolerance: How far an event's time may be after the server's clock now.

    Raises:
        PayloadTooLarge: If the batch has more than `max_events` events.
        InvalidInput: Naming the first malformed events by position and saying what was wrong.
    """
    if max_events is not None and len(events) > max_events:
        raise PayloadTooLarge(f"expected at most {max_events} events per batch, found {len(events)}")
    now = utcnow()
    found = ((n, _problem(e, now, future_tolerance)) for n, e in enumerate(events))
    problems = [f"events[{n}]: {p}" for n, p in found if p]
    if problems:
        shown = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise InvalidInput(f"expected well-formed events; nothing was stored: {shown}{more}")


def _problem(event: EventRecord, now: datetime, future_tolerance: timedelta) -> str | None:
    for name in ("user_id", "item_id", "event_id"):
        value = getattr(event, name)
        if name == "event_id" and value is None:
            continue
        if not isinstance(value, str) or not value.strip() or len(value) > ID_LENGTH:
            return f"expected {name} to be 1-{ID_LENGTH} characters, found {value!r:.80}"
    if event.type not in EVENT_TYPES:
        return f"expected type one of {', '.join(EVENT_TYPES)}, found {event.type!r:.40}"
    if problem := _time_problem(event.ts, now, future_tolerance):
        return problem
    if event.value is not None and (problem := value_problem(event.value)):
        return f"value: {problem}"
    if event.type == "rating" and event.value is None:
        return "expected a value for a rating, found none"
    return None


def _time_problem(moment: datetime, now: datetime, future_tolerance: timedelta) -> str | None:
    try:
        aware_utc("timestamp", moment)  # naive, or out of the range the database and its arithmetic take
    except InvalidInput as exc:
        return exc.message
    return future_problem("timestamp", moment, now, future_tolerance)


def unix_seconds(seconds: float) -> datetime:
    """An event time given as a number: Unix seconds, timezone-aware UTC, never read as milliseconds.

    Raises:
        InvalidInput: If the number is not finite, is at or beyond `LATEST_UNIX_SECONDS` (it looks like
            milliseconds), or is before year 1. A time before 1900 is returned: `aware_utc` refuses it, as
            `check_events` does for every event.
    """
    if isinstance(seconds, float) and not math.isfinite(seconds):
        raise InvalidInput(f"expected a timestamp in Unix seconds, a finite number; found {seconds!r}")
    if seconds >= LATEST_UNIX_SECONDS:
        raise InvalidInput(
            f"expected a timestamp in Unix seconds, before {LATEST_UNIX.date()} ({LATEST_UNIX_SECONDS:,}); "
            f"found {seconds!r:.40}, which looks like milliseconds (divide by 1,000) or a mistake"
        )
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):  # before year 1
        raise InvalidInput(
            f"expected a timestamp in Unix seconds from {EARLIEST.date()}; found {seconds!r:.40}"
        ) from None


def future_problem(name: str, moment: datetime, now: datetime, tolerance: timedelta) -> str | None:
    """What is wrong with an (aware) event time more than `tolerance` after the server's time `now`; None
    when nothing. Such a time is a wrong clock or a typo, and would count as the newest event for years."""
    if moment <= now + tolerance:
        return None
    return (
        f"expected {name} at most {_span(tolerance)} after the server's time "
        f"({now.isoformat(timespec='seconds')}); found {moment.isoformat()}"
    )


def _span(tolerance: timedelta) -> str:
    """A tolerance in whole seconds, and in days when it is whole days: '86,400 seconds (1 day)'."""
    seconds = int(tolerance.total_seconds())
    days, rest = divmod(seconds, 86_400)
    in_days = f" ({days} day{'s' if days > 1 else ''})" if days and not rest else ""
    return f"{seconds:,} seconds{in_days}"


def value_problem(value: float) -> str | None:
    """What is wrong with an event's value (a boolean, not finite, or beyond `MAX_VALUE` from 0); None when
    nothing."""
    if isinstance(value, bool):  # a bool is an int to Python, and True would be kept as 1.0
        return f"expected a number, found the boolean {value!r}"
    if not math.isfinite(value) or abs(value) > MAX_VALUE:
        return f"expected a finite number from {-MAX_VALUE:,.0f} to {MAX_VALUE:,.0f}; found {value!r}"
    return None


def ingest_events(
    db: Database,
    events: Sequence[EventRecord],
    max_events: int | None = None,
    *,
    future_tolerance: timedelta = FUTURE_TOLERANCE,
) -> int:
    """Store a batch of events in one transaction; returns how many were stored.

    An event whose `event_id` is stored or earlier in the batch, or without an id and identical to a stored
    event or an earlier one of the batch, is left out (it is already there) and not counted in the result;
    events with distinct ids are all stored, whatever their content. When the
    unique indexes refuse an event another writer stored meanwhile, the batch is rolled back and stored
    again without it (up to `ATTEMPTS` times in all).

    Raises:
        PayloadTooLarge: If the batch is larger than `max_events`.
        InvalidInput: If an event is malformed (nothing is stored).
        NotFound: Listing the item ids that are not in the catalog (nothing is stored).
    """
    check_events(events, max_events, future_tolerance=future_tolerance)
    for _ in range(ATTEMPTS - 1):
        try:
            return _store(db, events)
        except IntegrityError:  # another writer stored one of these events after `_new_rows` looked
            continue
    return _store(db, events)  # the last attempt: its IntegrityError goes to the caller


def _store(db: Database, events: Sequence[EventRecord]) -> int:
    """Store the new events of a checked batch in one transaction; returns how many."""
    wanted = sorted({e.item_id for e in events})
    with db.session() as session:
        bump(session, EVENTS)  # first: batches commit one after another, their ids in that order
        known: set[str] = set()
        for start in range(0, len(wanted), 500):  # bounded IN lists
            chunk = wanted[start : start + 500]
            known.update(session.scalars(select(Item.id).where(Item.id.in_(chunk))))
        unknown = [i for i in wanted if i not in known]
        if unknown:
            raise NotFound(f"expected catalog item ids; nothing was stored; unknown: {id_listing(unknown)}")
        rows = _new_rows(session, events)
        for start in range(0, len(rows), 5000):
            session.execute(insert(Event), rows[start : start + 5000])
    return len(rows)


def _new_rows(session: Session, events: Sequence[EventRecord]) -> list[dict[str, Any]]:
    """The rows of the events not stored yet, in batch order, as if the batch's events came one by one.

    An event with an id is new when its id is neither stored nor earlier in the batch, whatever its content;
    it takes its content's key when no event holds that key, its id's key (`id_fingerprint`) otherwise. An
    event without an id is new when no event of its content (with an id or without) is stored or earlier
    in the batch. The caller's `bump` holds the writers' lock, so no other batch stores one of them before
    this transaction commits (and the unique indexes on `fingerprint` and `event_id` would refuse it)."""
    contents = [event_fingerprint(e.user_id, e.item_id, e.ts, e.type, e.value) for e in events]
    taken = set(_stored(session, Event.fingerprint, sorted(set(contents))))
    ids = set(_stored(session, Event.event_id, sorted({e.event_id for e in events if e.event_id})))
    rows: list[dict[str, Any]] = []
    for e, content in zip(events, contents, strict=True):
        if e.event_id is None:
            if content in taken:
                continue
            key = content
        else:
            if e.event_id in ids:
                continue
            ids.add(e.event_id)
            key = id_fingerprint(e.event_id) if content in taken else content
        taken.add(key)
        rows.append({"user_id": e.user_id, "item_id": e.item_id, "ts": e.ts, "type": e.type,
                     "value": e.value, "fingerprint": key, "event_id": e.event_id})  # fmt: skip
    return rows


def _stored(session: Session, column: InstrumentedAttribute[Any], keys: Sequence[str]) -> Iterator[str]:
    """Which of `keys` the events table holds in `column`."""
    for start in range(0, len(keys), 500):  # bounded IN lists
        yield from session.scalars(select(column).where(column.in_(keys[start : start + 500])))


def user_events(db: Database, user_id: str) -> list[EventRecord]:
    """Every event of one user, oldest first (ties in arrival order)."""
    query = select(Event).where(Event.user_id == user_id).order_by(Event.ts, Event.id)
    with db.session() as session:
        return [
            EventRecord(r.user_id, r.item_id, r.ts, r.type, r.value, r.event_id)
            for r in session.scalars(query)
        ]


def erase_user(db: Database, user_id: str, batch: int = ERASE_BATCH) -> int:
    """Delete every stored event of one user, then empty SQLite's write-ahead log; returns how many.

    The events are deleted `batch` per transaction, so the database's write lock is held for one batch at a
    time rather than for all of a user's events (a second or more per 100,000 on SQLite), and the service's
    event and item writes go on in between (bench/behaviour_writes.py: the whole erasure takes longer, as
    each batch rewrites index pages the others rewrite too). Meanwhile a reader may find the user partly
    erased, never an event of theirs changed. Every transaction bumps the erasures counter, so that
    services over the database count their behaviour again without the events deleted so far
    (`recommender.changes`); a failure part way leaves the rest for the request made again. Events of the
    user stored while it runs are erased too, up to the last batch. On SQLite the log is emptied after the
    last commit (`Database.checkpoint`), so the deleted rows leave the files too.

    Raises:
        NotFound: If the user has no stored events (never had, or already erased); nothing changes.
    """
    if batch < 1:
        raise InvalidInput(f"expected a batch of at least 1 event, found {batch!r}")
    erased = 0
    while True:
        with db.session() as session:
            # Any `batch` of them, as the index on (user_id, ts) finds them: no sort of all that are left.
            ids = session.scalars(select(Event.id).where(Event.user_id == user_id).limit(batch)).all()
            if not ids and not erased:
                raise NotFound(f"expected a user with stored events; found none for user_id {user_id!r:.80}")
            if ids:
                bump(session, ERASURES)
            for start in range(0, len(ids), 500):  # bounded IN lists
                chunk = delete(Event).where(Event.id.in_(ids[start : start + 500]))
                deleted = session.execute(chunk, execution_options={"synchronize_session": False})
                erased += cast(CursorResult[Any], deleted).rowcount
        if len(ids) < batch:
            break
    db.checkpoint()
    return erased


def positive_history(events: Sequence[EventRecord], min_rating: float | None) -> list[str]:
    """The items a user liked, oldest first, each once at its latest position: those of their positive
    events (`is_positive`) that their latest rating does not put below `min_rating` (`disliked`)."""
    vetoed = disliked(events, min_rating)
    liked = [
        e.item_id for e in events if is_positive(e.type, e.value, min_rating) and e.item_id not in vetoed
    ]
    latest = {item: n for n, item in enumerate(liked)}
    return [item for n, item in enumerate(liked) if latest[item] == n]


def all_positives(db: Database, min_rating: float | None, chunk: int = 10_000) -> Iterator[tuple[str, str]]:
    """Every (user_id, item_id) positive pair in the events table, streamed."""
    return positives_after(db, EventCursor(), min_rating, chunk)


@dataclass
class EventCursor:
    """How far a reader of the events table has got: the id of the last event it read (0: none yet)."""

    last_id: int = 0


def positives_after(
    db: Database,
    cursor: EventCursor,
    min_rating: float | None,
    chunk: int = 10_000,
    *,
    disliked_out: set[tuple[str, str]] | None = None,
) -> Iterator[tuple[str, str]]:
    """The (user_id, item_id) positive pairs of the events stored after `cursor`, in id order, streamed.

    A positive event of a pair whose latest rating, among every event stored up to the newest one this call
    reads, is below `min_rating` is left out, as `positive_history` leaves it out; a read from the start
    (a new cursor) is therefore exact. A later read cannot take back what an earlier one yielded: it adds
    such pairs of the users it read (a low rating that came after their clicks were counted, say) to
    `disliked_out`, for the caller to take back (`Behaviour.retract`). When a pair's later rating reaches
    `min_rating` again, only its positive events read from then on are yielded.

    The cursor moves past every event read, positive or not, so the next call reads only newer ones.
    """
    with db.session() as session:
        # Batches commit in id order (`bump`), so every event up to the newest id is committed: the
        # ratings and the events read below are the same set, whatever is stored meanwhile.
        newest = session.scalar(select(func.max(Event.id)))
        if newest is None or newest <= cursor.last_id:
            return
        vetoed = _disliked_pairs(session, cursor.last_id, newest, min_rating)
        if disliked_out is not None:
            disliked_out.update(vetoed)
        query = (
            select(Event.id, Event.user_id, Event.item_id, Event.type, Event.value)
            .where(Event.id > cursor.last_id, Event.id <= newest)
            .order_by(Event.id)
            .execution_options(yield_per=chunk)
        )
        for row in session.execute(query):
            cursor.last_id = row.id
            pair = (row.user_id, row.item_id)
            if is_positive(row.type, row.value, min_rating) and pair not in vetoed:
                yield pair


def _disliked_pairs(
    session: Session, after: int, newest: int, min_rating: float | None
) -> set[tuple[str, str]]:
    """The (user_id, item_id) pairs whose latest rating (by time, ties by id) among the events up to id
    `newest` is below `min_rating`, of the users with events after id `after` (none with no threshold)."""
    if min_rating is None:
        return set()
    order = (Event.ts.desc(), Event.id.desc())
    latest = func.row_number().over(partition_by=(Event.user_id, Event.item_id), order_by=order)
    ratings = select(Event.user_id, Event.item_id, Event.value, latest.label("latest")).where(
        Event.type == "rating", Event.id <= newest
    )
    if after > 0:  # only the users whose events are read: the others' pairs are not asked about
        users = select(Event.user_id).where(Event.id > after, Event.id <= newest)
        ratings = ratings.where(Event.user_id.in_(users))
    ranked = ratings.subquery()
    low = or_(ranked.c.value.is_(None), ranked.c.value < min_rating)
    query = select(ranked.c.user_id, ranked.c.item_id).where(ranked.c.latest == 1, low)
    return {(user, item) for user, item in session.execute(query)}
