"""A client's own event ids: an event sent again under the same `event_id` is stored once.

An event sent without a timestamp gets the time of arrival, so the fingerprint (which holds the time) of a
retried request differs from the first one's; the event id is what makes the retry the same event. Through
the real app on both databases, two replicas on one database, the CLI's event files, and erasure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, select, text

from recommender import create_app
from recommender.behaviour import Behaviour
from recommender.database import MIGRATIONS, Database
from recommender.events import all_positives
from recommender.tables import Event
from tests.conftest import problem, serve_app
from tests.recommender.conftest import catalog_items, invoke, last_json, rec_settings
from tests.recommender.test_cli import one_error_line, with_one_item
from textcore.sql import utcnow


def stored_ids(url: str) -> list[tuple[str, str | None]]:
    """(user_id, event_id) of every stored event, in id order."""
    db = Database(url)
    try:
        with db.session() as session:
            return [
                (r.user_id, r.event_id) for r in session.execute(select(Event).order_by(Event.id)).scalars()
            ]
    finally:
        db.dispose()


@pytest.fixture
def replicas(database_url: str, tmp_path: Path, tiny_model_dir: Path) -> Iterator[list[str]]:
    """Two services over one database, on loopback, the catalog stored through the first."""
    with ExitStack() as stack:
        urls = [
            stack.enter_context(
                serve_app(create_app(rec_settings(tmp_path / name, database_url, tiny_model_dir)))
            )
            for name in ("a", "b")
        ]
        response = httpx.post(f"{urls[0]}/v1/items", json={"items": catalog_items()}, timeout=60)
        assert response.status_code == 200, response.text
        yield urls


def post(url: str, events: Sequence[object]) -> httpx.Response:
    return httpx.post(f"{url}/v1/events", json={"events": events}, timeout=60)


def test_an_event_sent_again_under_its_event_id_is_stored_once(
    database_url: str, replicas: list[str]
) -> None:
    first, second = replicas
    batch = [
        {"user_id": "u1", "item_id": "astro-0", "event_id": "e-1"},  # no timestamp: the time of arrival
        {"user_id": "u1", "item_id": "astro-1", "event_id": "e-2", "type": "purchase"},
        {"user_id": "u1", "item_id": "astro-2", "event_id": " e-1 "},  # e-1 again in the same batch
        {"user_id": "u1", "item_id": "astro-3"},  # no id: as before
    ]
    assert post(first, batch).json() == {"stored": 3}
    time.sleep(0.01)  # the retry arrives later: other times, other fingerprints
    assert post(first, batch).json() == {"stored": 1}  # only the event without an id is new
    assert post(second, batch[:3]).json() == {"stored": 0}  # another replica knows the ids too
    mixed = [
        {"user_id": "u1", "item_id": "astro-4", "event_id": "e-2"},
        {"user_id": "u2", "item_id": "astro-4", "event_id": "e-3"},
    ]
    assert post(second, mixed).json() == {"stored": 1}
    assert stored_ids(database_url) == [
        ("u1", "e-1"),
        ("u1", "e-2"),
        ("u1", None),
        ("u1", None),
        ("u2", "e-3"),
    ]


def test_events_with_different_ids_and_the_same_content_are_all_stored(
    database_url: str, replicas: list[str]
) -> None:
    """Two order lines buying one item in one second are two purchases; an id identifies its event, content
    identifies an event without one (a copy of any stored event), as if a batch's events came one by one."""
    first, second = replicas
    line = {"user_id": "u1", "item_id": "astro-0", "timestamp": 1_700_000_000, "type": "purchase"}
    batch = [
        line | {"event_id": "order-1/line-1"},
        line | {"event_id": "order-1/line-2"},
        line | {"event_id": "order-1/line-1"},  # the same id twice: once
        line,  # no id, the content of a stored event: a copy
    ]
    assert post(first, batch).json() == {"stored": 2}
    assert post(second, batch).json() == {"stored": 0}  # a retry, on another replica
    assert post(first, [line | {"event_id": "order-2/line-1"}]).json() == {"stored": 1}
    # without an id first, the event with an id after it is stored too; the other way round, not the copy
    rating = {"user_id": "u2", "item_id": "lab-0", "timestamp": 1_700_000_000, "type": "rating", "value": 4}
    later = rating | {"timestamp": 1_700_000_060}
    mixed = [rating, rating | {"event_id": "r-1"}, later | {"event_id": "r-2"}, later]
    assert post(second, mixed).json() == {"stored": 3}
    assert stored_ids(database_url) == [
        ("u1", "order-1/line-1"),
        ("u1", "order-1/line-2"),
        ("u1", "order-2/line-1"),
        ("u2", None),
        ("u2", "r-1"),
        ("u2", "r-2"),
    ]
    db = Database(database_url)
    try:
        counts = Behaviour()
        counts.add(all_positives(db, min_rating=3))
    finally:
        db.dispose()
    assert counts.snapshot().popularity(["astro-0", "lab-0"]).tolist() == [3, 3]  # each one an interaction


def test_two_replicas_posting_the_same_event_ids_at_once_store_them_once(
    database_url: str, replicas: list[str]
) -> None:
    # distinct times: a batch without them is one moment, and its events would be one by fingerprint
    batch = [
        {"user_id": "u", "item_id": f"lab-{n % 5}", "timestamp": 1_700_000_000 + n, "event_id": f"race-{n}"}
        for n in range(200)
    ]
    answers: list[int] = []
    start = threading.Barrier(4)

    def send(url: str) -> None:
        start.wait()
        response = post(url, batch)
        assert response.status_code == 201, response.text
        answers.append(response.json()["stored"])

    threads = [threading.Thread(target=send, args=(url,)) for url in replicas * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(answers) == [0, 0, 0, 200]
    assert sorted(str(e) for _, e in stored_ids(database_url)) == sorted(f"race-{n}" for n in range(200))


def test_a_batch_meeting_an_id_another_writer_stored_meanwhile_stores_the_rest(
    postgres_url: str, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """A writer that stores an event id without the events counter's lock, committing while a request
    waits on the unique index: the request stores its other events, not a 409 or a second copy."""
    with serve_app(create_app(rec_settings(tmp_path, postgres_url, tiny_model_dir))) as url:
        assert httpx.post(f"{url}/v1/items", json={"items": catalog_items()}, timeout=60).status_code == 200
        db = Database(postgres_url)
        try:
            with db.session() as intruder:
                intruder.add(Event(user_id="w", item_id="lab-0", ts=utcnow(), type="click",
                                   fingerprint="f" * 64, event_id="taken"))  # fmt: skip
                intruder.flush()  # holds the id, uncommitted
                answer: list[httpx.Response] = []
                events = [{"user_id": "u", "item_id": "lab-1", "event_id": "taken"},
                          {"user_id": "u", "item_id": "lab-2", "event_id": "free"}]  # fmt: skip
                request = threading.Thread(target=lambda: answer.append(post(url, events)))
                request.start()
                wait_for_a_lock_wait(db)
            request.join(timeout=60)  # the intruder committed when its session closed
        finally:
            db.dispose()
        assert answer[0].status_code == 201 and answer[0].json() == {"stored": 1}, answer[0].text
        assert stored_ids(postgres_url) == [("w", "taken"), ("u", "free")]


def wait_for_a_lock_wait(db: Database) -> None:
    """Until another session of the database waits on a lock (the request's insert, on the intruder)."""
    query = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with db.engine.connect() as connection:
            if connection.execute(query).scalar_one():
                return
        time.sleep(0.05)
    raise AssertionError("expected the request to wait on the intruder's uncommitted id; it did not")


@pytest.mark.parametrize("bad", ["", "   ", "x" * 201, "e\x00", "e\x1b[31m", 7])
def test_a_malformed_event_id_is_422_naming_it_and_stores_nothing(
    database_url: str, replicas: list[str], bad: object
) -> None:
    events = [{"user_id": "u", "item_id": "lab-0", "event_id": "ok"}, {"user_id": "u", "item_id": "lab-1",
              "event_id": bad}]  # fmt: skip
    detail = str(problem(post(replicas[0], events), 422))
    assert "event_id" in detail
    assert stored_ids(database_url) == []


def test_erasing_a_user_removes_their_event_ids(database_url: str, replicas: list[str]) -> None:
    events = [{"user_id": "gone", "item_id": "lab-0", "event_id": "g-1"},
              {"user_id": "kept", "item_id": "lab-1", "event_id": "k-1"}]  # fmt: skip
    assert post(replicas[0], events).json() == {"stored": 2}
    assert httpx.delete(f"{replicas[1]}/v1/users/gone", timeout=60).status_code == 204
    assert stored_ids(database_url) == [("kept", "k-1")]  # nothing of the user's left, ids included


def test_ingest_events_reads_an_optional_event_id_column(tmp_path: Path, database_url: str) -> None:
    with_one_item(database_url)
    places = ["--database-url", database_url]
    first = tmp_path / "first.csv"
    first.write_text("user_id,item_id,timestamp,event_id\nu,astro-0,100,a\nu,astro-0,200,\nu,astro-0,300,a\n")
    assert last_json(invoke("ingest-events", first, *places)) == {"stored": 2}  # a twice in the file
    # the same events exported again with other times (a re-export, a clock moved): the ids hold
    again = tmp_path / "again.csv"
    again.write_text("user_id,item_id,timestamp,ref\nu,astro-0,150,a\nu,astro-0,250,b\n")
    assert last_json(invoke("ingest-events", again, *places, "--event-id-column", "ref")) == {"stored": 1}
    assert stored_ids(database_url) == [("u", "a"), ("u", None), ("u", "b")]
    bad = tmp_path / "bad.csv"
    bad.write_text(f"user_id,item_id,timestamp,event_id\nu,astro-0,400,c\nu,astro-0,500,{'x' * 201}\n")
    line = one_error_line(invoke("ingest-events", bad, *places))
    assert "row 2" in line and "'event_id'" in line and "1-200 characters" in line
    assert len(stored_ids(database_url)) == 3


def test_ingest_events_stores_rows_with_different_ids_and_the_same_content(
    tmp_path: Path, database_url: str
) -> None:
    with_one_item(database_url)
    places = ["--database-url", database_url]
    lines = tmp_path / "lines.csv"
    lines.write_text(
        "user_id,item_id,timestamp,type,event_id\n"
        "u,astro-0,100,purchase,order-1/line-1\nu,astro-0,100,purchase,order-1/line-2\n"
        "u,astro-0,100,purchase,order-1/line-1\n"
    )
    assert last_json(invoke("ingest-events", lines, *places)) == {"stored": 2}
    assert last_json(invoke("ingest-events", lines, *places)) == {"stored": 0}  # the file again
    without_ids = tmp_path / "without-ids.csv"
    without_ids.write_text("user_id,item_id,timestamp,type\nu,astro-0,100,purchase\n")
    assert last_json(invoke("ingest-events", without_ids, *places)) == {"stored": 0}  # a copy
    assert stored_ids(database_url) == [("u", "order-1/line-1"), ("u", "order-1/line-2")]


def test_migration_0005_keeps_stored_events_without_ids_and_downgrades(database_url: str) -> None:
    database = Database(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0004")
            connection.execute(
                text(
                    "INSERT INTO events (user_id, item_id, ts, type, fingerprint)"
                    " VALUES ('u', 'a', :ts, 'click', 'f')"
                ),
                {"ts": utcnow().replace(tzinfo=None)},
            )
        database.migrate()
        assert stored_ids(database_url) == [("u", None)]
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0004")
            assert "event_id" not in {c["name"] for c in inspect(connection).get_columns("events")}
    finally:
        database.dispose()
