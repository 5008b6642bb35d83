"""Erasing a user's behaviour (`DELETE /v1/users/{id}`, `recommender erase-user`): their events leave the
database and its files, and every replica stops counting them in co-occurrence and popularity without a
restart, serving what a fresh start over the remaining events serves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from recommender import create_app
from recommender.behaviour import BehaviourSnapshot
from recommender.changes import ERASURES, read_counters
from recommender.database import Database
from recommender.events import EventRecord, erase_user, ingest_events
from recommender.settings import RecommenderSettings
from recommender.tables import Event, Item
from tests.conftest import migrated, problem
from tests.recommender.conftest import catalog_items, invoke, last_json, rec_settings
from tests.recommender.test_cli import one_error_line
from textcore import NotFound

ALICE, BOB, CAROL = "alice.zorblax", "bob/42", "carol"  # an id with '/' is erased by its path too
ITEMS = [item["id"] for item in catalog_items()]


def events(user: str, items: list[str], start: int = 1_700_000_000) -> list[dict[str, Any]]:
    return [{"user_id": user, "item_id": item, "timestamp": start + 60 * t} for t, item in enumerate(items)]


# Only Alice liked lab-0 and garden-0, so only she put them together with astro-0.
BEHAVIOUR = (
    events(ALICE, ["astro-0", "lab-0", "garden-0"])
    + events(BOB, ["astro-0", "astro-1"])
    + events(CAROL, ["astro-1", "kitchen-0"])
)


def stock(client: TestClient) -> None:
    assert client.post("/v1/items", json={"items": catalog_items()}).status_code == 200
    assert client.post("/v1/events", json={"events": BEHAVIOUR}).json() == {"stored": 7}


def scores(client: TestClient, **who: Any) -> dict[str, float]:
    response = client.post("/v1/score", json={**who, "items": ITEMS})
    assert response.status_code == 200, response.text
    return {r["item_id"]: r["score"] for r in response.json()}


def snapshot(client: TestClient) -> BehaviourSnapshot:
    behaviour = client.app.state.recommender.behaviour  # type: ignore[attr-defined]
    result: BehaviourSnapshot = behaviour.snapshot()
    return result


def together(client: TestClient, one: str, other: str) -> float:
    return float(snapshot(client).pair_similarity([one], [other])[0, 0])


def stored_users(url: str) -> list[str]:
    with migrated(Database(url)) as db, db.session() as session:
        return sorted(session.scalars(select(Event.user_id)))


def fresh_scores(settings: RecommenderSettings, **who: Any) -> dict[str, float]:
    """What a service started now over the same database serves."""
    with TestClient(create_app(settings)) as restarted:
        return scores(restarted, **who)


def test_an_erased_user_stops_counting_on_every_replica(
    database_url: str, tmp_path: Path, tiny_model_dir: Path
) -> None:
    one = rec_settings(tmp_path / "one", database_url, tiny_model_dir, refresh_s=0)
    other = rec_settings(tmp_path / "other", database_url, tiny_model_dir, refresh_s=0)
    history = {"history": ["astro-0"]}
    with TestClient(create_app(one)) as writer, TestClient(create_app(other)) as reader:
        stock(writer)
        before = scores(reader, **history)
        for client in (writer, reader):
            assert together(client, "astro-0", "lab-0") > 0 and together(client, "astro-0", "astro-1") > 0
        unknown = problem(writer.get("/v1/recommend", params={"user_id": "nobody"}), 404)["detail"]

        assert writer.delete(f"/v1/users/{ALICE}").status_code == 204
        assert stored_users(database_url) == [BOB, BOB, CAROL, CAROL]
        for client in (writer, reader):  # the other replica sees it at its next request
            served = scores(client, **history)
            assert together(client, "astro-0", "lab-0") == 0 and together(client, "astro-0", "garden-0") == 0
            assert together(client, "astro-0", "astro-1") > 0  # Bob's own pair stays
            popularity = snapshot(client).popularity(["astro-0", "lab-0", "astro-1"]).tolist()
            assert popularity == [1, 0, 2]
            detail = problem(client.get("/v1/recommend", params={"user_id": ALICE}), 404)["detail"]
            assert detail == unknown.replace("'nobody'", repr(ALICE))  # as for a user never seen
            problem(client.post("/v1/score", json={"user_id": ALICE, "items": ITEMS}), 404)
            assert client.get("/v1/recommend", params={"user_id": BOB}).status_code == 200
        assert served != pytest.approx(before, rel=1e-3)  # the erased events no longer count
        problem(writer.delete(f"/v1/users/{ALICE}"), 404)  # a second erasure: nothing left to erase
        problem(writer.delete("/v1/users/nobody"), 404)
    assert served == pytest.approx(fresh_scores(one, **history), rel=1e-5)  # as a fresh start counts


def test_user_ids_in_the_path_follow_the_rule_of_events(
    tmp_path: Path, sqlite_url: str, tiny_model_dir: Path
) -> None:
    settings = rec_settings(tmp_path, sqlite_url, tiny_model_dir)
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    with TestClient(create_app(settings)) as client:
        stock(client)
        files = [p for p in (path, Path(f"{path}-wal")) if p.exists()]
        assert any(b"zorblax" in p.read_bytes() for p in files)
        for bad in ("%00alice", "x" * 201, "%20", "alice%1B"):
            problem(client.delete(f"/v1/users/{bad}"), 422)
        assert stored_users(sqlite_url) == sorted(e["user_id"] for e in BEHAVIOUR)
        assert client.delete("/v1/users/bob%2F42").status_code == 204  # '/' sent escaped
        assert client.delete(f"/v1/users/%20{ALICE}%20").status_code == 204  # surrounding spaces stripped
        assert stored_users(sqlite_url) == [CAROL, CAROL]
    # nor in the files: SQLite overwrote the rows, and the write-ahead log that held them was emptied
    files = [p for p in (path, Path(f"{path}-wal")) if p.exists()]
    assert path in files and not any(b"zorblax" in p.read_bytes() for p in files)


def test_erase_user_command_while_serving(tmp_path: Path, sqlite_url: str, tiny_model_dir: Path) -> None:
    settings = rec_settings(tmp_path, sqlite_url, tiny_model_dir, refresh_s=0)
    places = ["--database-url", sqlite_url]
    with TestClient(create_app(settings)) as client:
        stock(client)
        assert together(client, "astro-0", "lab-0") > 0
        assert last_json(invoke("erase-user", f" {ALICE} ", *places)) == {"user_id": ALICE, "deleted": 3}
        served = scores(client, history=["astro-0"])  # the service counts again at its next request
        assert together(client, "astro-0", "lab-0") == 0
        problem(client.get("/v1/recommend", params={"user_id": ALICE}), 404)
        line = one_error_line(invoke("erase-user", ALICE, *places))
        assert f"found none for user_id {ALICE!r}" in line
        assert "U+0000 (NUL)" in one_error_line(invoke("erase-user", "bob\x00", *places))
        assert "1-200 characters" in one_error_line(invoke("erase-user", "x" * 201, *places))
    assert stored_users(sqlite_url) == [BOB, BOB, CAROL, CAROL]
    assert served == pytest.approx(fresh_scores(settings, history=["astro-0"]), rel=1e-5)


def test_an_erasure_deletes_a_users_events_a_batch_per_transaction(database_url: str) -> None:
    """Erasing a user deleted all of their events in one transaction, holding the database's write lock
    (every event and item write of the service waiting) for about a second per 100,000 of them. It now
    deletes them a batch per transaction, each bumping the erasures counter; every event of the user goes,
    no other user's event is touched, and a user with none left is not found."""
    with migrated(Database(database_url)) as db:
        with db.session() as session:
            session.add_all(Item(id=item, title=item) for item in ITEMS[:3])
        start = datetime(2024, 5, 1, tzinfo=UTC)
        behaviour = [
            EventRecord(user, ITEMS[n % 3], start + timedelta(minutes=n))
            for n, user in enumerate([ALICE, BOB] * 7 + [CAROL])
        ]
        assert ingest_events(db, behaviour) == 15
        with db.session() as session:
            kept = session.execute(select(Event).where(Event.user_id != ALICE).order_by(Event.id)).all()
            others = [(e.id, e.user_id, e.item_id, e.ts, e.fingerprint) for (e,) in kept]
        before = read_counters(db)[ERASURES]
        assert erase_user(db, ALICE, batch=3) == 7
        assert read_counters(db)[ERASURES] == before + 3  # 3 + 3 + 1
        with db.session() as session:
            left = session.execute(select(Event).order_by(Event.id)).all()
            assert [(e.id, e.user_id, e.item_id, e.ts, e.fingerprint) for (e,) in left] == others
        assert erase_user(db, BOB, batch=7) == 7  # a last batch that finds none is no transaction
        assert read_counters(db)[ERASURES] == before + 4
        with pytest.raises(NotFound, match="expected a user with stored events"):
            erase_user(db, ALICE, batch=3)
        assert stored_users(database_url) == [CAROL]
