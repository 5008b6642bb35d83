"""The fallback streak under concurrency: messages of one session answered at once count one after the other.

Each turn read the session's fallback streak when it was planned and stored "that plus one": two messages the
bot could not answer, sent at once, both read 0 and both stored 1, so neither was the second fallback in a
row and the customer was not handed to a person. The streak is now counted where the turn is stored, under
the session's lock, and a fallback that makes two in a row becomes the hand-off there.

Real HTTP on loopback through the real app (the demo FAQs, MiniLM), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from customer_service import create_app
from tests.conftest import serve_app
from tests.customer_service.test_app import cs_settings
from tests.customer_service.test_turn_endings import turn

UNANSWERABLE = ("What is the airspeed of a swallow?", "Recommend me a pizza topping")


def _chat(base_url: str, session_id: str, message: str) -> str:
    with httpx.Client(base_url=base_url, timeout=60) as http:
        response = http.post("/v1/chat", json={"session_id": session_id, "message": message})
        assert response.status_code == 200, response.text
        return str(response.json()["action"])


def _stream(base_url: str, session_id: str, message: str) -> str:
    """The action of a streamed reply, checked to be the same in `meta` and `done`."""
    with httpx.Client(base_url=base_url, timeout=60) as http:
        status, received = turn(http, "/v1/chat/stream", {"session_id": session_id, "message": message})
    assert status == 200
    events = dict(received)
    assert events["meta"]["action"] == events["done"]["action"], events
    return str(events["done"]["action"])


SENDERS: list[Callable[[str, str, str], str]] = [_chat, _stream]


def _session(base_url: str, session_id: str) -> dict[str, Any]:
    session: dict[str, Any] = httpx.get(f"{base_url}/v1/sessions/{session_id}", timeout=30).json()
    return session


@pytest.fixture
def served(tmp_path: Path, database_url: str) -> Iterator[str]:
    with serve_app(create_app(cs_settings(tmp_path, database_url))) as base_url:
        yield base_url


@contextmanager
def _session_locked(database_url: str, session_id: str) -> Iterator[Callable[[], int]]:
    """Hold the session's row (PostgreSQL: FOR UPDATE, as storing a turn takes it) until the block ends;
    yields how many other transactions wait for it."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection, connection.begin():
            connection.execute(text("SELECT id FROM sessions WHERE id = :id FOR UPDATE"), {"id": session_id})
            xid = connection.scalar(text("SELECT pg_current_xact_id()::text"))
            waiting = text(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND ((locktype = 'transactionid' AND "
                "transactionid::text = :xid) OR (locktype = 'tuple' AND relation = 'sessions'::regclass))"
            )
            with engine.connect() as watcher:
                yield lambda: int(watcher.scalar(waiting, {"xid": xid}) or 0)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_two_fallbacks_stored_at_once_make_a_hand_off(tmp_path: Path, postgres_url: str) -> None:
    # Both messages are planned (each reads a streak of 0) and wait to be stored, then are stored in turn.
    with serve_app(create_app(cs_settings(tmp_path, postgres_url))) as base_url:
        _two_at_once(base_url, postgres_url)


def _two_at_once(base_url: str, database_url: str) -> None:
    session_id = "concurrent-fallbacks"
    assert _chat(base_url, session_id, "thanks") == "answer"  # the session exists, its streak 0
    # (the lock is released first, then the pool waits for the replies: stored one after the other)
    with ThreadPoolExecutor(2) as pool, _session_locked(database_url, session_id) as waiting:
        sent: list[Future[str]] = [
            pool.submit(send, base_url, session_id, message)
            for send, message in zip(SENDERS, UNANSWERABLE, strict=True)
        ]
        deadline = time.monotonic() + 60
        while waiting() < 2:  # both planned, both waiting to store their turn
            assert time.monotonic() < deadline, "expected both messages to wait for the session's lock"
            assert not any(f.done() for f in sent), [f.result() for f in sent if f.done()]
            time.sleep(0.05)
    assert sorted(f.result() for f in sent) == ["fallback", "handoff"]
    session = _session(base_url, session_id)
    assert (session["state"], session["fallback_streak"]) == ("waiting_for_agent", 0)
    second = session["turns"][-1]
    assert second["action"] == "handoff" and second["reason"].startswith("2 fallbacks in a row")
    assert session["handoff_reason"] == second["reason"]
    queue = httpx.get(f"{base_url}/v1/sessions", params={"state": "waiting_for_agent"}, timeout=30).json()
    assert [s["id"] for s in queue["items"]] == [session_id]


def test_concurrent_fallbacks_of_one_session_count_one_after_the_other(served: str) -> None:
    # Without holding anything back: whichever is stored first is a fallback, the other the hand-off.
    base_url = served
    for n in range(6):
        session_id, start = f"pair-{n}", threading.Barrier(2)
        with ThreadPoolExecutor(2) as pool:
            sent = [
                pool.submit(_at_once, start, sender, base_url, session_id, message)
                for sender, message in zip(SENDERS, UNANSWERABLE, strict=True)
            ]
        assert sorted(f.result() for f in sent) == ["fallback", "handoff"], session_id
        session = _session(base_url, session_id)
        assert [t["action"] for t in session["turns"]] == ["fallback", "handoff"]
        assert session["state"] == "waiting_for_agent"


Sender = Callable[[str, str, str], str]


def _at_once(start: threading.Barrier, sender: Sender, base_url: str, session_id: str, message: str) -> str:
    start.wait()  # both requests leave together
    return sender(base_url, session_id, message)
