"""Erasing conversations: one session on request (`DELETE /v1/sessions/{id}`) and every session past the
retention limit (`CS_SESSION_RETENTION_DAYS`): nothing of an erased session stays in any table."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import MetaData, Table, func, inspect, select, update

from customer_service import create_app
from customer_service.analytics import analytics
from customer_service.conversations import Conversations, NewTurn
from customer_service.database import Database
from customer_service.retention import erase_expired
from customer_service.settings import CustomerServiceSettings
from customer_service.tables import ChatSession, Turn
from tests.conftest import migrated, problem
from tests.customer_service.test_app import chat, cs_settings
from textcore import NotFound
from textcore.sql import utcnow

SECRET = "zorblax"  # a word only the erased session holds


def _turn(message: str, action: str = "answer", **more: Any) -> NewTurn:
    return NewTurn(message=message, query=message, answer=f"re: {message}", action=action, **more)


def _talk(conversations: Conversations, sid: str, words: str) -> list[str]:
    """A session of three turns mentioning `words`, handed off with them as its reason; its turn ids."""
    conversations.start(sid)
    ids = []
    for message, action in ((f"card charged twice by {words}", "answer"), (f"{words} again?", "fallback")):
        turn, _ = conversations.record(
            sid, _turn(message, action), state="open", fallback_streak=0, handoff_reason=None
        )
        ids.append(turn.id)
    turn, _ = conversations.record(
        sid,
        _turn(f"a person about {words}", "handoff"),
        state="waiting_for_agent",
        fallback_streak=0,
        handoff_reason=f"asked about {words}",
    )
    ids.append(turn.id)
    conversations.feedback(ids[0], "down", f"nothing about {words}")
    return ids


def _every_row(db: Database) -> dict[str, list[str]]:
    """Each table of the database (whatever declares it) with each of its rows as lower-cased text."""
    rows: dict[str, list[str]] = {}
    with db.engine.connect() as connection:
        for name in inspect(connection).get_table_names():
            table = Table(name, MetaData(), autoload_with=connection)
            rows[name] = [repr(tuple(row)).lower() for row in connection.execute(select(table))]
    return rows


def _mentions(rows: dict[str, list[str]], *needles: str) -> list[tuple[str, str]]:
    return [(name, row) for name, texts in rows.items() for row in texts if any(n in row for n in needles)]


def test_erasing_a_session_leaves_nothing_of_it_in_any_table(database: Database) -> None:
    conversations = Conversations(database)
    erased_turns = _talk(conversations, "customer-7:chat", SECRET)
    kept_turns = _talk(conversations, "customer-8:chat", "standing order")
    kept = conversations.get("customer-8:chat")
    before = _every_row(database)
    assert _mentions(before, SECRET, "customer-7") and analytics(database, days=1).sessions == 2

    conversations.erase("customer-7:chat")  # waiting for an agent: an erasure request erases it all the same

    after = _every_row(database)
    assert _mentions(after, SECRET, "customer-7", *erased_turns) == []
    assert set(after) >= {"sessions", "turns", "feedback"}  # every table was read, these among them
    assert conversations.get("customer-8:chat") == kept  # the other session as it was
    assert [t.id for t in kept.turns] == kept_turns and len(after["feedback"]) == 1
    figures = analytics(database, days=1)  # the analytics of the past drop with the erased session
    assert (figures.sessions, figures.turns, figures.feedback["down"]) == (1, 3, 1)
    assert SECRET not in {u.question for u in figures.top_unanswered}
    with pytest.raises(NotFound):
        conversations.erase("customer-7:chat")  # a second erasure finds nothing
    with pytest.raises(NotFound):
        conversations.get("customer-7:chat")
    with pytest.raises(NotFound):
        conversations.feedback(erased_turns[0], "up", None)
    assert conversations.start("customer-7:chat").state == "open"  # the same id later: a new session
    assert conversations.get("customer-7:chat").turn_count == 0


def _aged(db: Database, session_ids: list[str], days: float) -> None:
    """Last active `days` ago, as if nothing had happened since."""
    with db.session() as s:
        s.execute(
            update(ChatSession)
            .where(ChatSession.id.in_(session_ids))
            .values(updated_at=utcnow() - timedelta(days=days))
        )


def test_retention_erases_sessions_inactive_too_long_batch_by_batch(database: Database) -> None:
    conversations = Conversations(database)
    old = [f"old-{n}" for n in range(5)]
    for sid in old:
        _talk(conversations, sid, f"{SECRET}-{sid}")
        conversations.resolve(sid)
    conversations.start("old-0")  # open and closed sessions age alike
    for sid in ("waiting", "recent", "closing"):
        _talk(conversations, sid, sid)
    conversations.resolve("recent")
    conversations.resolve("closing")
    _aged(database, old, days=31)
    _aged(database, ["waiting"], days=400)  # still waiting for an agent: kept however old
    _aged(database, ["closing"], days=29)
    _aged(database, ["recent"], days=0.5)

    assert erase_expired(conversations, 30, batch_size=2) == 5  # three batches: 2, 2 and 1

    listed = conversations.sessions()
    assert listed.total == 3 and {s.id for s in listed.items} == {"waiting", "recent", "closing"}
    rows = _every_row(database)
    assert _mentions(rows, SECRET, "old-") == []
    assert len(rows["turns"]) == 9 and len(rows["feedback"]) == 3
    assert erase_expired(conversations, 30, batch_size=2) == 0  # nothing more is due
    assert erase_expired(conversations, 1, now=utcnow() + timedelta(days=30), batch_size=2) == 2
    assert [s.id for s in conversations.sessions().items] == ["waiting"]
    stop = threading.Event()
    stop.set()  # a pass asked to stop starts no batch
    conversations.resolve("waiting")
    assert erase_expired(conversations, 1, now=utcnow() + timedelta(days=2), stop=stop) == 0
    assert erase_expired(conversations, 1, now=utcnow() + timedelta(days=2)) == 1


def test_a_batch_erases_at_most_its_size_least_recently_active_first(database: Database) -> None:
    conversations = Conversations(database)
    for n in range(4):
        _talk(conversations, f"s{n}", f"topic {n}")
        conversations.resolve(f"s{n}")
        _aged(database, [f"s{n}"], days=10 + n)
    assert conversations.erase_inactive(utcnow() - timedelta(days=5), 3) == 3
    assert [s.id for s in conversations.sessions().items] == ["s0"]  # the most recently active stays
    with database.session() as s:
        assert s.scalar(select(func.count(Turn.id))) == 3


@pytest.fixture
def client(tmp_path: Path, sqlite_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(cs_settings(tmp_path, sqlite_url))) as test_client:
        yield test_client


def test_delete_erases_a_session_through_the_api(client: TestClient, sqlite_url: str) -> None:
    mine = chat(client, f"My card was charged twice by {SECRET.upper()} market, how do I dispute it?")
    sid = mine["session_id"]
    asked = chat(client, f"I want a real person about {SECRET}", sid)
    assert asked["state"] == "waiting_for_agent"
    rated = {"turn_id": mine["turn_id"], "rating": "down", "comment": f"{SECRET} is not my shop"}
    assert client.post("/v1/feedback", json=rated).status_code == 204
    other = chat(client, "How do I reset my online banking password?")
    assert client.post("/v1/feedback", json={"turn_id": other["turn_id"], "rating": "up"}).status_code == 204
    theirs = client.get(f"/v1/sessions/{other['session_id']}").json()
    assert client.get("/v1/analytics").json()["turns"] == 3
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    assert any(SECRET.encode() in p.read_bytes().lower() for p in _files(path))
    recent_queries = client.app.state.service.kb._query_vector  # type: ignore[attr-defined]
    assert recent_queries.cache_info().currsize > 0  # the messages, kept in memory with their vectors

    assert client.delete(f"/v1/sessions/{sid}").status_code == 204
    assert recent_queries.cache_info().currsize == 0

    problem(client.get(f"/v1/sessions/{sid}"), 404)
    problem(client.delete(f"/v1/sessions/{sid}"), 404)  # a second erasure: nothing left to erase
    problem(client.delete("/v1/sessions/never-was"), 404)
    problem(client.delete("/v1/sessions/bad%20id"), 422)
    problem(client.post("/v1/feedback", json={"turn_id": mine["turn_id"], "rating": "up"}), 404)
    assert client.get(f"/v1/sessions/{other['session_id']}").json() == theirs
    assert client.get("/v1/sessions", params={"state": "waiting_for_agent"}).json()["items"] == []
    figures = client.get("/v1/analytics").json()
    assert (figures["sessions"], figures["turns"], figures["feedback"]) == (1, 1, {"up": 1, "down": 0})
    with migrated(Database(sqlite_url)) as db:
        assert _mentions(_every_row(db), SECRET, sid) == []
    # nor in the files: SQLite overwrote the rows, and the write-ahead log that held them was emptied
    assert path in _files(path) and not any(SECRET.encode() in p.read_bytes().lower() for p in _files(path))


def _files(database: Path) -> list[Path]:
    """The SQLite database file and its write-ahead log."""
    return [p for p in (database, Path(f"{database}-wal")) if p.exists()]


def test_retention_runs_from_the_start_of_the_service(tmp_path: Path, sqlite_url: str) -> None:
    with migrated(Database(sqlite_url)) as db:
        conversations = Conversations(db)
        for sid in ("old-1", "old-2", "old-3", "waiting", "recent"):
            _talk(conversations, sid, sid)
            if sid != "waiting":
                conversations.resolve(sid)
        _aged(db, ["old-1", "old-2", "old-3", "waiting"], days=91)
    settings = cs_settings(tmp_path, sqlite_url, session_retention_days=90)
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60  # the first pass runs in the background as the service starts
        while "customer_service_sessions_expired_total 3.0" not in client.get("/metrics").text:
            assert time.monotonic() < deadline, client.get("/metrics").text
            time.sleep(0.05)
        listed = client.get("/v1/sessions").json()
        assert {s["id"] for s in listed["items"]} == {"waiting", "recent"}
        problem(client.get("/v1/sessions/old-1"), 404)
    # the loop was cancelled at shutdown: the database is left as the pass left it
    with closing(sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))) as raw:
        assert raw.execute("SELECT count(*) FROM turns").fetchone() == (6,)


def test_the_retention_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CustomerServiceSettings().session_retention_days is None  # every session kept, as before
    for bad in ("0", "-1", "36501", "a month", "1.5"):
        monkeypatch.setenv("CS_SESSION_RETENTION_DAYS", bad)
        with pytest.raises(ValidationError, match="session_retention_days"):
            CustomerServiceSettings()
    monkeypatch.setenv("CS_SESSION_RETENTION_DAYS", "30")
    assert CustomerServiceSettings().session_retention_days == 30
