"""The recommender's storage on SQLite and PostgreSQL: migrations, the catalog with its index on disk, events
all or nothing, histories; and the in-memory co-occurrence, checked against the offline baselines."""

from __future__ import annotations

import ast
import fcntl
import hashlib
import importlib.util
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TypedDict

import numpy as np
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import JSON, Float, String, column, func, insert, inspect, select, table

from recommender.baselines import ItemKNN, Popularity
from recommender.behaviour import Behaviour
from recommender.catalog import ItemCatalog
from recommender.changes import ERASURES, EVENTS, ITEMS, read_counters
from recommender.data import Catalog
from recommender.database import MIGRATIONS, Database
from recommender.events import (
    EventCursor,
    EventRecord,
    all_positives,
    disliked,
    ingest_events,
    positive_history,
    positives_after,
    user_events,
)
from recommender.item_deletion import delete_items
from recommender.item_records import ItemRecord
from recommender.tables import Event, event_fingerprint
from tests.recommender.conftest import catalog_items, user_histories
from textcore import Encoder, InvalidInput, NotFound, PayloadTooLarge
from textcore.sql import UtcDateTime

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def encoder(tiny_model_dir: Path) -> Encoder:
    return Encoder.from_pretrained(tiny_model_dir, device="cpu", precision="fp32", max_length=64)


def records() -> list[ItemRecord]:
    return [ItemRecord(i["id"], i["title"], i["text"], i["categories"], {"n": k})
            for k, i in enumerate(catalog_items())]  # fmt: skip


@pytest.fixture
def catalog(database: Database, encoder: Encoder, tmp_path: Path) -> Iterator[ItemCatalog]:
    items = ItemCatalog(database, encoder.encode, encoder.dim, tmp_path / "idx" / "items.npz", "tiny", 8)
    items.sync()
    yield items


def event_count(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Event)) or 0)


def test_migrations_create_the_schema_and_are_idempotent(database: Database) -> None:
    database.migrate()
    tables = set(inspect(database.engine).get_table_names())
    assert {"items", "events", "change_counters", "recommender_alembic_version"} <= tables
    indexes = {ix["name"] for ix in inspect(database.engine).get_indexes("events")}
    assert "ix_events_user_ts" in indexes


def test_catalog_upsert_page_delete_and_index(catalog: ItemCatalog, encoder: Encoder) -> None:
    report = catalog.upsert(records())
    assert (report.created, report.updated, report.embedded) == (20, 0, 20)
    assert len(catalog) == 20 and "lab-3" in catalog and catalog.title("lab-3") == "Nitrile lab gloves"
    stored = catalog.get("garden-2")
    assert stored.categories == ["garden"] and stored.metadata == {"n": 12}
    assert stored.created_at.tzinfo is not None

    first, cursor = catalog.page(8)
    second, cursor2 = catalog.page(8, cursor)
    third, end = catalog.page(8, cursor2)
    assert end is None and len(third) == 4
    assert [i.id for i in first + second + third] == sorted(r.id for r in records())

    changed = ItemRecord("garden-2", "Cherry tomato seeds", "Sweet small tomatoes.")
    assert catalog.upsert([changed, records()[0]]).embedded == 1  # only the changed text is embedded
    expected = encoder.encode([changed.encoder_text])[0]
    np.testing.assert_allclose(catalog.vectors(["garden-2"])[0], expected, atol=1e-5)
    assert catalog.index.search(expected, 1)[0].id == "garden-2"

    catalog.delete("garden-2")
    assert "garden-2" not in catalog and len(catalog) == 19
    with pytest.raises(NotFound, match="'garden-2'"):
        catalog.get("garden-2")
    with pytest.raises(NotFound, match="'garden-2'"):
        catalog.delete("garden-2")
    with pytest.raises(NotFound, match=r"'ghost-1', 'garden-2'"):
        catalog.vectors(["astro-0", "ghost-1", "garden-2"])
    with pytest.raises(InvalidInput, match="'x'"):
        catalog.upsert([ItemRecord("x", "a"), ItemRecord("x", "b")])


def test_catalog_index_follows_the_database_across_restarts(
    catalog: ItemCatalog, database: Database, encoder: Encoder, tmp_path: Path
) -> None:
    catalog.upsert(records())
    again = ItemCatalog(database, encoder.encode, encoder.dim, catalog.index_path, "tiny", 8)
    assert again.sync() == 0 and len(again) == 20  # the saved index is up to date: nothing embedded
    np.testing.assert_allclose(again.vectors(["kitchen-1"]), catalog.vectors(["kitchen-1"]), atol=1e-6)

    # another writer (its own index file) changes the database behind this index's back
    other = ItemCatalog(database, encoder.encode, encoder.dim, tmp_path / "other.npz", "tiny", 8)
    other.sync()
    other.upsert([ItemRecord("kitchen-1", "Carbon steel wok", "For stir frying.")])
    other.delete("lab-4")
    restarted = ItemCatalog(database, encoder.encode, encoder.dim, catalog.index_path, "tiny", 8)
    assert restarted.sync() == 1 and "lab-4" not in restarted and len(restarted) == 19
    np.testing.assert_allclose(restarted.vectors(["kitchen-1"]), other.vectors(["kitchen-1"]), atol=1e-6)

    rebuilt = ItemCatalog(database, encoder.encode, encoder.dim, catalog.index_path, "another model", 8)
    assert rebuilt.sync() == 19  # vectors of another model are never mixed in
    catalog.index_path.write_bytes(b"not an index")
    assert ItemCatalog(database, encoder.encode, encoder.dim, catalog.index_path, "tiny", 8).sync() == 19


def test_a_deferred_save_leaves_the_file_to_later_and_a_crash_meanwhile_loses_nothing(
    catalog: ItemCatalog, database: Database, encoder: Encoder
) -> None:
    catalog.upsert(records())  # saved before it returns (save_after_s 0)
    files = (catalog.index_path, catalog.index_path.with_suffix(".json"))
    saved = [f.read_bytes() for f in files]
    path = catalog.index_path
    service = ItemCatalog(database, encoder.encode, encoder.dim, path, "tiny", 8, save_after_s=3600)
    assert service.sync() == 0
    service.upsert([ItemRecord("kitchen-1", "Carbon steel wok", "For stir frying.")])
    service.delete("lab-4")
    assert "lab-4" not in service and len(service) == 19
    assert [f.read_bytes() for f in files] == saved  # neither write rewrote the files

    # the service dies here: a restart re-embeds the item changed since the save and drops the deleted one
    crashed = ItemCatalog(database, encoder.encode, encoder.dim, catalog.index_path, "tiny", 8)
    assert crashed.sync() == 1 and "lab-4" not in crashed and len(crashed) == 19
    np.testing.assert_allclose(crashed.vectors(["kitchen-1"]), service.vectors(["kitchen-1"]), atol=1e-6)

    service.upsert([ItemRecord("garden-2", "Rain barrel", "Collects rain water.")])
    assert service.flush() and not service.flush()  # a flush saves what the files lack, once
    restarted = ItemCatalog(database, encoder.encode, encoder.dim, catalog.index_path, "tiny", 8)
    assert restarted.sync() == 0 and len(restarted) == 19
    np.testing.assert_allclose(restarted.vectors(["garden-2"]), service.vectors(["garden-2"]), atol=1e-6)
    with pytest.raises(InvalidInput, match="save_after_s"):
        ItemCatalog(database, encoder.encode, encoder.dim, catalog.index_path, "tiny", 8, save_after_s=-1)


def test_a_deferred_save_runs_in_the_background(database: Database, tmp_path: Path) -> None:
    embed = GatedVectors(8)
    path = tmp_path / "idx" / "items.npz"
    catalog = ItemCatalog(database, embed, 8, path, "gated", 8, save_after_s=0.05)
    catalog.sync()
    catalog.upsert([ItemRecord(f"i{n}", f"Item {n}") for n in range(5)])
    catalog.delete("i3")
    deadline = time.monotonic() + 30
    while True:  # no flush, no close: the background save writes both changes
        restarted = ItemCatalog(database, embed, 8, path, "gated", 8)
        if restarted.sync() == 0 and len(restarted) == 4:
            break
        assert time.monotonic() < deadline, "expected the background save to write the index file"
        time.sleep(0.05)
    np.testing.assert_allclose(restarted.vectors(["i4"])[0], embed.vector("Item 4"), atol=1e-6)
    assert not catalog.flush()  # nothing left to save


def test_writes_do_not_wait_while_a_background_save_writes_the_files(
    database: Database, tmp_path: Path
) -> None:
    """Before, the background save held the catalog's write lock while it wrote the files (a second and more
    at 100,000 items, bench/item_edits.py), so every item write meanwhile waited for the disk. Here the save
    is held at the files' lock, as another process writing them would hold it; a write still goes through,
    and once the save can go on, the files hold every write."""
    embed = GatedVectors(8)
    path = tmp_path / "idx" / "items.npz"
    catalog = ItemCatalog(database, embed, 8, path, "gated", 8, save_after_s=0.01)
    catalog.sync()

    def write() -> None:
        catalog.delete("a")
        catalog.upsert([ItemRecord("c", "C")])

    writer = threading.Thread(target=write)
    other = os.open(path.with_suffix(".lock"), os.O_RDONLY)
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        catalog.upsert([ItemRecord("a", "Item a"), ItemRecord("b", "Item b")])
        deadline = time.monotonic() + 30
        while catalog._saver is not None:  # the save began (it waits at the files' lock now)
            assert time.monotonic() < deadline, "expected the background save to start"
            time.sleep(0.01)
        writer.start()
        writer.join(timeout=10)
        assert not writer.is_alive(), "expected the writes to go on while the save waits to write the files"
    finally:
        os.close(other)  # releases the lock: the saves go on
        if writer.ident is not None:
            writer.join()
    catalog.flush()
    restarted = ItemCatalog(database, embed, 8, path, "gated", 8)
    assert restarted.sync() == 0 and sorted(restarted.index.ids()) == ["b", "c"]  # nothing lost
    np.testing.assert_allclose(restarted.vectors(["c"])[0], embed.vector("C"), atol=1e-6)


class GatedVectors:
    """An item tower of unit vectors seeded by each text; a batch with a text containing "SLOW" waits for
    `release` (a long embedding in flight) after setting `waiting`."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.waiting, self.release = threading.Event(), threading.Event()

    def vector(self, text: str) -> np.ndarray:
        seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        row = np.random.default_rng(seed).standard_normal(self.dim)
        return (row / np.linalg.norm(row)).astype(np.float32)

    def __call__(self, texts: list[str]) -> np.ndarray:
        if any("SLOW" in text for text in texts):
            self.waiting.set()
            assert self.release.wait(10)
        return np.stack([self.vector(text) for text in texts]).reshape(len(texts), self.dim)


def test_an_upsert_racing_a_delete_or_another_upsert_leaves_the_index_in_step(
    database: Database, tmp_path: Path
) -> None:
    embed = GatedVectors(8)
    catalog = ItemCatalog(database, embed, 8, tmp_path / "idx" / "items.npz", "gated", 8)
    catalog.sync()
    catalog.upsert([ItemRecord("x", "Old title"), ItemRecord("z", "Cheap red shoes")])

    def race(items: list[ItemRecord], meanwhile: Callable[[], object]) -> None:
        """Upsert `items` (one slow to embed) in a thread and run `meanwhile` while that embedding runs."""
        embed.waiting.clear()
        embed.release.clear()
        with ThreadPoolExecutor(1) as pool:
            upsert = pool.submit(catalog.upsert, items)
            assert embed.waiting.wait(10)
            meanwhile()
            embed.release.set()
            upsert.result(timeout=10)

    # x is sent again unchanged while a delete removes it: the upsert stores it, so it needs its vector back
    race([ItemRecord("x", "Old title"), ItemRecord("y", "SLOW new item")], lambda: catalog.delete("x"))
    # z is sent unchanged while another upsert changes its text: the last write wins in both places
    race(
        [ItemRecord("z", "Cheap red shoes"), ItemRecord("w", "SLOW other item")],
        lambda: catalog.upsert([ItemRecord("z", "Quantum physics textbook")]),
    )
    for item in ("x", "y", "z", "w"):
        stored = catalog.get(item)
        text = ItemRecord(item, stored.title, stored.text).encoder_text
        np.testing.assert_allclose(catalog.vectors([item])[0], embed.vector(text), atol=1e-6)
    assert catalog.get("z").title == "Cheap red shoes"
    restarted = ItemCatalog(database, embed, 8, catalog.index_path, "gated", 8)
    assert restarted.sync() == 0 and len(restarted) == 4  # the saved file agrees with the database too


def test_two_processes_saving_one_index_file_at_once_leave_it_in_step(
    database: Database, tmp_path: Path
) -> None:
    """A service and `recommender ingest-items` (here two catalogs on the same files) each change an item and
    save at the same moment: a restart then holds the vector of every item's stored text, never the other
    writer's stale vector under a hash of the new text."""
    embed = GatedVectors(8)
    path = tmp_path / "idx" / "items.npz"
    service = ItemCatalog(database, embed, 8, path, "gated", 256)
    service.sync()
    service.upsert([ItemRecord(f"i{n}", f"Item {n}") for n in range(2000)])
    command = ItemCatalog(database, embed, 8, path, "gated", 256)
    command.sync()

    def write(start: threading.Barrier, catalog: ItemCatalog, item: ItemRecord) -> None:
        start.wait()
        catalog.upsert([item])

    for round in range(30):
        start = threading.Barrier(2)
        with ThreadPoolExecutor(2) as pool:
            done = [
                pool.submit(write, start, service, ItemRecord("i0", f"Service text {round}")),
                pool.submit(write, start, command, ItemRecord("i1", f"Command text {round}")),
            ]
            for future in done:
                future.result(timeout=30)
        restarted = ItemCatalog(database, embed, 8, path, "gated", 256)
        restarted.sync()
        for item in ("i0", "i1"):
            text = restarted.get(item).title
            np.testing.assert_allclose(restarted.vectors([item])[0], embed.vector(text), atol=1e-6)
        for catalog in (service, command):
            catalog.refresh(read_counters(database)[ITEMS])  # each takes in the other's write


def test_events_are_all_or_nothing_and_histories_ordered(catalog: ItemCatalog, database: Database) -> None:
    catalog.upsert(records())
    good = EventRecord("u1", "astro-0", T0)
    with pytest.raises(NotFound, match=r"'ghost-1', 'ghost-2'") as caught:
        ingest_events(database, [good, EventRecord("u1", "ghost-2", T0), EventRecord("u2", "ghost-1", T0)])
    assert "astro-0" not in caught.value.message
    bad = [
        EventRecord("u1", "astro-0", T0, "rating"),  # no value
        EventRecord("u1", "astro-0", T0, "view"),
        EventRecord("u1", "astro-0", T0.replace(tzinfo=None)),
        EventRecord("", "astro-0", T0),
        EventRecord("u1", "astro-0", T0, "rating", float("nan")),
    ]
    for event in bad:
        with pytest.raises(InvalidInput, match=r"events\[1\]"):
            ingest_events(database, [good, event])
    with pytest.raises(PayloadTooLarge, match="at most 1 events"):
        ingest_events(database, [good, good], max_events=1)
    assert event_count(database) == 0

    later, earlier = T0 + timedelta(minutes=5), T0 - timedelta(minutes=5)
    batch = [
        EventRecord("u1", "astro-0", T0),
        EventRecord("u1", "astro-1", later, "rating", 2.0),
        EventRecord("u1", "astro-2", earlier, "purchase", 30.0),
        EventRecord("u1", "astro-3", later, "rating", 5.0),  # same time as astro-1: arrival order
        EventRecord("u2", "lab-0", T0),
        EventRecord("u1", "astro-2", later + timedelta(minutes=1)),  # a repeat moves to its latest place
    ]
    assert ingest_events(database, batch) == 6 and event_count(database) == 6
    events = user_events(database, "u1")
    assert [e.item_id for e in events] == ["astro-2", "astro-0", "astro-1", "astro-3", "astro-2"]
    assert events[0].ts == earlier and events[2].value == 2.0
    assert positive_history(events, None) == ["astro-0", "astro-1", "astro-3", "astro-2"]
    assert positive_history(events, 4.0) == ["astro-0", "astro-3", "astro-2"]
    assert sorted(all_positives(database, 4.0)) == sorted(
        [("u1", "astro-0"), ("u1", "astro-2"), ("u1", "astro-3"), ("u2", "lab-0"), ("u1", "astro-2")]
    )
    assert user_events(database, "nobody") == []


def test_a_users_latest_rating_of_an_item_outweighs_their_clicks(
    catalog: ItemCatalog, database: Database
) -> None:
    catalog.upsert(records())
    hour = timedelta(hours=1)
    batch = [
        EventRecord("u1", "astro-0", T0),  # clicked, then rated 1 star: no like
        EventRecord("u1", "astro-0", T0 + hour, "rating", 1.0),
        EventRecord("u1", "astro-1", T0 + 3 * hour),  # a click after a low rating: still no like
        EventRecord("u1", "astro-1", T0 + 2 * hour, "rating", 2.0),
        EventRecord("u1", "astro-2", T0, "rating", 2.0),  # rated low, then well: a like
        EventRecord("u1", "astro-2", T0 + hour, "purchase"),
        EventRecord("u1", "astro-2", T0 + 2 * hour, "rating", 5.0),
        EventRecord("u1", "astro-3", T0),  # only clicked: a like, as before
        EventRecord("u2", "astro-0", T0),  # another user's click on astro-0 stays theirs
    ]
    assert ingest_events(database, batch) == 9
    events = user_events(database, "u1")
    assert disliked(events, 4.0) == {"astro-0", "astro-1"} and disliked(events, None) == set()
    assert positive_history(events, 4.0) == ["astro-3", "astro-2"]
    assert positive_history(events, None) == ["astro-3", "astro-0", "astro-2", "astro-1"]  # no threshold
    assert sorted(all_positives(database, 4.0)) == [
        ("u1", "astro-2"), ("u1", "astro-2"), ("u1", "astro-3"), ("u2", "astro-0")
    ]  # fmt: skip
    assert len(list(all_positives(database, None))) == 9

    # A later read: a click on an item the user rated low before is no like either.
    cursor = EventCursor()
    list(positives_after(database, cursor, 4.0))
    later = [EventRecord("u1", "astro-0", T0 + 4 * hour), EventRecord("u1", "lab-0", T0 + 4 * hour)]
    ingest_events(database, later)
    assert list(positives_after(database, cursor, 4.0)) == [("u1", "lab-0")]
    # A low rating of an item counted before: the later read names the pair, for the caller to take back.
    ingest_events(database, [EventRecord("u1", "lab-0", T0 + 5 * hour, "rating", 1.0)])
    low: set[tuple[str, str]] = set()
    assert list(positives_after(database, cursor, 4.0, disliked_out=low)) == []
    assert low == {("u1", "lab-0"), ("u1", "astro-0"), ("u1", "astro-1")}  # the pairs of the users read
    assert ("u1", "lab-0") not in set(all_positives(database, 4.0))
    assert positive_history(user_events(database, "u1"), 4.0) == ["astro-3", "astro-2"]


def test_an_event_stored_before_is_not_stored_or_counted_again(
    catalog: ItemCatalog, database: Database
) -> None:
    catalog.upsert(records())
    batch = [
        EventRecord("u1", "astro-0", T0),
        EventRecord("u1", "astro-1", T0, "rating", 4.0),
        EventRecord("u2", "lab-0", T0, "purchase"),
    ]
    assert ingest_events(database, batch) == 3
    assert ingest_events(database, batch) == 0  # a retried request
    same_instant = T0.astimezone(timezone(timedelta(hours=2)))
    again = [EventRecord("u1", "astro-0", same_instant), EventRecord("u1", "astro-1", T0, "rating", 4)]
    assert ingest_events(database, again) == 0
    other = [
        EventRecord("u1", "astro-0", T0 + timedelta(microseconds=1)),  # a repeat at another time
        EventRecord("u1", "astro-1", T0, "rating", 5.0),  # another value
        EventRecord("u1", "astro-0", T0, "purchase"),  # another type
        EventRecord("u3", "lab-1", T0),
        EventRecord("u3", "lab-1", T0),  # twice in one batch
    ]
    assert ingest_events(database, other) == 4
    assert event_count(database) == 7
    assert sorted(all_positives(database, None)).count(("u2", "lab-0")) == 1
    assert sorted(all_positives(database, None)).count(("u3", "lab-1")) == 1


def test_deleting_an_item_detaches_its_events_in_one_statement_and_leaves_the_others_as_they_were(
    catalog: ItemCatalog, database: Database
) -> None:
    """Deleting an item read its events out and wrote each back with a key hashed in Python, holding the
    database's write lock for seconds per 100,000 events of the item. One UPDATE now gives them the tombstone
    id and a key of their own (`DETACHED_KEY` and the row id); the other items' events stay as they were,
    and an item created again under the id starts with no behaviour."""
    catalog.upsert(records())
    gone = [
        EventRecord("u1", "astro-0", T0),
        EventRecord("u1", "astro-0", T0 + timedelta(minutes=1), "rating", 2.0, event_id="order-7"),
        EventRecord("u2", "astro-0", T0, "purchase"),
    ]
    kept = [EventRecord("u1", "astro-1", T0), EventRecord("u2", "lab-0", T0, event_id="order-8")]
    assert ingest_events(database, gone + kept) == 5

    def rows() -> dict[int, tuple[object, ...]]:
        columns = (Event.user_id, Event.item_id, Event.ts, Event.type, Event.value, Event.fingerprint,
                   Event.event_id)  # fmt: skip
        with database.session() as session:
            return {
                r.id: tuple(r[1:]) for r in session.execute(select(Event.id, *columns).order_by(Event.id))
            }

    before, counters = rows(), read_counters(database)
    delete_items(database, ["astro-0"])
    after = rows()
    others = [n for n, r in before.items() if r[1] != "astro-0"]
    assert len(others) == 2 and {n: after[n] for n in others} == {n: before[n] for n in others}
    detached = {n: r for n, r in after.items() if before[n][1] == "astro-0"}
    assert len(detached) == 3 and len({r[1] for r in detached.values()}) == 1
    assert str(next(iter(detached.values()))[1]).startswith(" deleted ")
    for n, (user, _, ts, kind, value, key, event_id) in detached.items():
        assert (user, ts, kind, value, event_id) == before[n][:1] + before[n][2:5] + before[n][6:]
        assert key == f"detached {n}"  # `recommender.item_deletion.DETACHED_KEY` and the row id
    moved = {name: value - counters[name] for name, value in read_counters(database).items()}
    assert moved == {ITEMS: 1, EVENTS: 1, ERASURES: 1}

    catalog.upsert(records()[:1])  # astro-0 again: the old events are not its own
    assert user_events(database, "u1")[-1].item_id != "astro-0"
    assert ingest_events(database, [gone[0], gone[2]]) == 2  # new to the new item
    assert ingest_events(database, [gone[1]]) == 0  # its event id still marks it as stored


class OldEventRow(TypedDict):
    """A row of the events table before fingerprints."""

    user_id: str
    item_id: str
    ts: datetime
    type: str
    value: float | None


def test_the_fingerprint_migration_keeps_one_copy_of_each_event(database_url: str) -> None:
    database = Database(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    events = table(
        "events",
        column("user_id", String), column("item_id", String), column("ts", UtcDateTime),
        column("type", String), column("value", Float),
    )  # fmt: skip
    rows: list[OldEventRow] = [
        {"user_id": "u1", "item_id": "astro-0", "ts": T0, "type": "click", "value": None},
        {"user_id": "u1", "item_id": "astro-1", "ts": T0, "type": "rating", "value": 4.0},
        {"user_id": "u1", "item_id": "astro-0", "ts": T0, "type": "click", "value": None},  # a copy
        {"user_id": "u1", "item_id": "astro-1", "ts": T0, "type": "rating", "value": 5.0},
    ]
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0003")  # the schema before fingerprints, with copies stored
            connection.execute(insert(events), rows)
        before = read_counters(database)[ERASURES]
        database.migrate()
        with database.session() as session:
            kept = session.execute(select(Event.id, Event.fingerprint).order_by(Event.id)).all()
        assert [row.id for row in kept] == [1, 2, 4]  # the later copy goes
        written = [event_fingerprint(r["user_id"], r["item_id"], r["ts"], r["type"], r["value"])
                   for r in rows]  # fmt: skip
        assert [row.fingerprint for row in kept] == [written[0], written[1], written[3]]  # as ingest does
        assert read_counters(database)[ERASURES] == before + 1  # running services count again
    finally:
        database.dispose()


def test_the_nfc_migration_brings_stored_ids_to_the_form_requests_now_name_them_in(database_url: str) -> None:
    """Ids stored decomposed ("e" + U+0301) before requests and files were brought to NFC could no longer be
    read, replaced, deleted or named by an event: migration 0006 brings them to NFC, keeping one item of a
    visible id and one copy of each event, their keys as ingest writes them."""
    database = Database(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    items = table("items", column("id", String), column("title", String), column("text", String),
                  column("categories", JSON), column("metadata", JSON),
                  column("created_at", UtcDateTime), column("updated_at", UtcDateTime))  # fmt: skip
    events = table("events", column("user_id", String), column("item_id", String), column("ts", UtcDateTime),
                   column("type", String), column("value", Float), column("fingerprint", String),
                   column("event_id", String))  # fmt: skip
    cafe, the = ("caf\u00e9", "cafe\u0301"), ("th\u00e9", "the\u0301")  # (NFC, NFD)
    jose = ("jos\u00e9", "jose\u0301")

    def item(item_id: str) -> dict[str, object]:
        return {"id": item_id, "title": item_id, "text": "", "categories": [], "metadata": {},
                "created_at": T0, "updated_at": T0}  # fmt: skip

    def event(user: str, item_id: str, seconds: int, event_id: str | None = None) -> dict[str, object]:
        ts = T0 + timedelta(seconds=seconds)
        key = event_fingerprint(user, item_id, ts, "click", None)
        return {"user_id": user, "item_id": item_id, "ts": ts, "type": "click", "value": None,
                "fingerprint": key, "event_id": event_id}  # fmt: skip

    rows = [
        event(jose[1], cafe[1], 0),  # 1: NFD ids: kept, in NFC
        event(jose[0], cafe[0], 60),  # 2: NFC already
        event(jose[1], cafe[1], 60),  # 3: a copy of 2 once in NFC: goes
        event(jose[1], the[1], 120, "ord\u00e9r"),  # 4: NFC event id
        event(jose[0], the[0], 180, "orde\u0301r"),  # 5: the same event id as 4 once in NFC: goes
        event("u", "astro-0", 0),  # 6: left alone
    ]
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0005")
            connection.execute(insert(items), [item(cafe[1]), item(the[0]), item(the[1]), item("astro-0")])
            connection.execute(insert(events), rows)
        before = read_counters(database)
        database.migrate()
        with database.session() as session:
            kept = session.execute(select(Event).order_by(Event.id)).scalars().all()
            stored_items: list[str] = sorted(
                session.scalars(select(column("id")).select_from(table("items")))
            )
        assert stored_items == sorted(["astro-0", cafe[0], the[0]])
        assert [(e.id, e.user_id, e.item_id, e.event_id) for e in kept] == [
            (1, jose[0], cafe[0], None), (2, jose[0], cafe[0], None),
            (4, jose[0], the[0], "ord\u00e9r"), (6, "u", "astro-0", None),
        ]  # fmt: skip
        assert [e.fingerprint for e in kept] == [
            event_fingerprint(e.user_id, e.item_id, e.ts, e.type, e.value) for e in kept
        ]
        after = read_counters(database)
        assert {name: after[name] - before[name] for name in after} == {ITEMS: 1, "events": 1, ERASURES: 1}
    finally:
        database.dispose()


FINGERPRINT_MIGRATION = MIGRATIONS / "versions" / "0004_event_fingerprints.py"


def test_the_fingerprint_migration_does_not_import_the_live_function() -> None:
    # A migration is frozen in time: what it imports from the package may change after it was written.
    tree = ast.parse(FINGERPRINT_MIGRATION.read_text(encoding="utf-8"))
    nodes = list(ast.walk(tree))
    imported = [node.module or "" for node in nodes if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in nodes if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in imported if name.split(".")[0] == "recommender"]


def test_the_fingerprint_migration_copy_equals_the_live_function_today() -> None:
    spec = importlib.util.spec_from_file_location("fingerprint_migration_0004", FINGERPRINT_MIGRATION)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    paris = timezone(timedelta(hours=2))
    cases = [
        ("u1", "astro-0", T0, "click", None),
        ("u1", "astro-1", T0 + timedelta(microseconds=7), "rating", 4.5),
        ("ü-ser", "Überweisung 東京", datetime(2024, 5, 1, 14, 0, tzinfo=paris), "purchase", 3),
        ('u"2', "item,\n1", datetime(1970, 1, 1, tzinfo=UTC), "rating", -0.0),
        ("u3", "x" * 200, datetime(2199, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "rating", 1e-300),
    ]
    for case in cases:
        assert migration._fingerprint(*case) == event_fingerprint(*case), case


@pytest.mark.parametrize("alpha", [0.5, 0.7])
def test_likes_taken_back_leave_the_counts_of_the_likes_that_remain(alpha: float) -> None:
    rng = np.random.default_rng(3)
    users, items = rng.integers(0, 12, 200), rng.zipf(1.3, 200) % 25
    pairs = [(f"u{int(u)}", f"i{int(i)}") for u, i in zip(users, items, strict=True)]
    behaviour = Behaviour(shrink=3.0, alpha=alpha)
    behaviour.add(pairs)
    before = behaviour.snapshot()
    gone = {pairs[0], pairs[5], pairs[17], ("u0", "never-liked"), ("nobody", pairs[0][1])}
    taken = behaviour.retract([*gone, pairs[0]])
    assert taken == 3 and behaviour.retract(gone) == 0  # each pair once; pairs not counted are left alone
    kept = [pair for pair in pairs if pair not in gone]
    expected = Behaviour(shrink=3.0, alpha=alpha)
    expected.add(kept)
    now, fresh = behaviour.snapshot(), expected.snapshot()
    order = now.positions(fresh.ids)
    everything = np.arange(len(fresh.ids))
    np.testing.assert_allclose(
        now.similarity_rows(order).toarray()[:, order], fresh.similarity_rows(everything).toarray(), rtol=1e-6
    )
    np.testing.assert_array_equal(now.popularity(fresh.ids), fresh.popularity(fresh.ids))
    assert before.popularity([pairs[0][1]])[0] > now.popularity([pairs[0][1]])[0]  # snapshots never change
    behaviour.add([pairs[0], ("late", pairs[5][1])])  # liked again, and counting goes on
    expected.add([pairs[0], ("late", pairs[5][1])])
    now, fresh = behaviour.snapshot(), expected.snapshot()
    order = now.positions(fresh.ids)
    np.testing.assert_allclose(
        now.pair_similarity(fresh.ids, fresh.ids), fresh.pair_similarity(fresh.ids, fresh.ids), rtol=1e-6
    )
    np.testing.assert_array_equal(now.popularity(fresh.ids), fresh.popularity(fresh.ids))


def test_behaviour_matches_the_offline_baselines() -> None:
    histories = user_histories()
    histories["mixed"] = ["astro-0", "lab-1", "astro-0", "garden-2"]
    ids = [item["id"] for item in catalog_items()]
    offline = Catalog.build(ids, ids, ids)
    behaviour = Behaviour()
    pairs = [(user, item) for user, items in histories.items() for item in items]
    assert behaviour.add(pairs[:30]) == 30 and behaviour.add(pairs[30:]) == len(pairs) - 30
    snapshot = behaviour.snapshot()

    history = ["astro-1", "lab-1", "astro-1"]
    knn = ItemKNN(histories, offline)([[offline.index[i] for i in history]])[0]
    np.testing.assert_allclose(snapshot.pick(snapshot.knn_row(history), ids), knn, rtol=1e-5)
    recent = ItemKNN(histories, offline)([[offline.index[i] for i in history]], decay=0.5)[0]
    np.testing.assert_allclose(
        snapshot.pick(snapshot.knn_row(history, 0.5), ids), recent, rtol=1e-5, atol=1e-7
    )
    popularity = Popularity(histories, offline)([[]])[0]
    np.testing.assert_array_equal(snapshot.popularity(ids), popularity)
    assert snapshot.popularity(["never-seen"]).tolist() == [0.0]

    top = snapshot.top(snapshot.knn_row(["garden-0"]), 3)
    assert len(top) == 3 and all(i.startswith("garden-") and i != "garden-0" for i in top)
    pair = snapshot.pair_similarity(["garden-0", "ghost"], ["garden-1", "lab-0"])
    assert pair.shape == (2, 2) and pair[0, 0] > 0 and pair[0, 1] == 0 and not pair[1].any()
    before = behaviour.snapshot()
    behaviour.add([("late", "kitchen-0"), ("late", "astro-0")])
    assert before.pick(before.knn_row(["kitchen-0"]), ["astro-0"])[0] == 0  # snapshots never change
    after = behaviour.snapshot()
    assert after.pick(after.knn_row(["kitchen-0"]), ["astro-0"])[0] > 0


@pytest.mark.parametrize("alpha", [0.5, 0.7])
def test_behaviour_counts_batches_incrementally_like_a_full_recount(alpha: float) -> None:
    rng = np.random.default_rng(7)
    # a long tail of 40 items, 30 users, repeats and items first seen in late batches
    users, items = rng.integers(0, 30, 400), rng.zipf(1.3, 400) % 40
    pairs = [(f"u{int(u)}", f"i{int(i)}") for u, i in zip(users, items, strict=True)]
    behaviour = Behaviour(shrink=3.0, alpha=alpha)
    liked: dict[str, list[str]] = {}
    earlier = []
    for start, end in [(0, 1), (1, 40), (40, 41), (41, 150), (150, 151), (151, 400)]:
        assert behaviour.add(pairs[start:end]) == end - start
        for user, item in pairs[start:end]:
            liked.setdefault(user, []).append(item)
        snapshot = behaviour.snapshot()
        ids = snapshot.ids
        assert sorted(ids) == sorted({i for _, i in pairs[:end]})
        offline = Catalog.build(ids, ids, ids)
        everything = np.arange(len(ids))
        full = ItemKNN(liked, offline, shrink=3.0, alpha=alpha).similarity.toarray()
        np.testing.assert_allclose(snapshot.similarity_rows(everything).toarray(), full, rtol=1e-6)
        np.testing.assert_allclose(snapshot.pair_similarity(ids, ids), full, rtol=1e-6)
        np.testing.assert_array_equal(snapshot.popularity(ids), Popularity(liked, offline)([[]])[0])
        earlier.append((snapshot, full))
    for snapshot, full in earlier:  # every snapshot kept what it saw
        rows = snapshot.similarity_rows(np.arange(len(snapshot.ids))).toarray()
        np.testing.assert_allclose(rows, full, rtol=1e-6)
    assert behaviour.add([]) == 0 and behaviour.snapshot() is earlier[-1][0]


def test_a_recount_replaces_what_was_counted_and_counting_goes_on_from_it() -> None:
    histories = user_histories()
    pairs = [(user, item) for user, items in histories.items() for item in items]
    kept = [(user, item) for user, item in pairs if user != "astro-user-0"]
    behaviour = Behaviour(shrink=3.0)
    behaviour.add([*pairs, ("gone", "astro-0"), ("gone", "lab-0")])  # the only astro-lab pair
    before = behaviour.snapshot()
    assert behaviour.recount(kept) == len(kept)
    assert before.pair_similarity(["astro-0"], ["lab-0"])[0, 0] > 0  # a snapshot taken never changes
    late = [("late", "astro-0"), ("late", "garden-0")]
    behaviour.add(late)
    fresh = Behaviour(shrink=3.0)
    fresh.add(kept + late)
    now, expected = behaviour.snapshot(), fresh.snapshot()
    assert now.ids == expected.ids and now.pair_similarity(["astro-0"], ["lab-0"])[0, 0] == 0
    everything = np.arange(len(now.ids))
    np.testing.assert_array_equal(
        now.similarity_rows(everything).toarray(), expected.similarity_rows(everything).toarray()
    )
    np.testing.assert_array_equal(now.counts, expected.counts)
