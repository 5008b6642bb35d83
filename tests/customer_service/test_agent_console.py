"""The agent console through the real app and its lifespan: resolving sessions and paging through the list of
sessions (the agents' queue), on a real SQLite and PostgreSQL database."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from customer_service import create_app
from customer_service.database import Database
from customer_service.tables import ChatSession
from tests.conftest import QueryValue, problem
from tests.customer_service.test_app import chat, cs_settings
from textcore.sql import utcnow


@pytest.fixture
def client(tmp_path: Path, sqlite_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(cs_settings(tmp_path, sqlite_url))) as test_client:
        yield test_client


def test_resolve_is_idempotent_and_only_closes_a_handed_off_session(client: TestClient) -> None:
    # a retried or double-clicked resolve answers the closed session as it is: its last activity, which
    # the retention limit erases by, does not move
    sid = chat(client, "I want to talk to a real person")["session_id"]
    resolved = client.post(f"/v1/sessions/{sid}/resolve")
    assert resolved.status_code == 200 and resolved.json()["state"] == "closed"
    again = client.post(f"/v1/sessions/{sid}/resolve")
    assert again.status_code == 200, again.text
    assert again.json() == resolved.json()
    assert client.get(f"/v1/sessions/{sid}").json()["updated_at"] == resolved.json()["updated_at"]
    # a session the bot is serving was never handed to an agent: resolving it is refused, nothing changes
    # (a resolve retried after the customer wrote again must not close the conversation they reopened)
    back = chat(client, "How do I open a savings account?", sid)
    assert back["state"] == "open"
    before = client.get(f"/v1/sessions/{sid}").json()
    refused = problem(client.post(f"/v1/sessions/{sid}/resolve"), 409)
    assert "waiting for an agent" in refused["detail"] and "open" in refused["detail"]
    assert client.get(f"/v1/sessions/{sid}").json() == before
    fresh = chat(client, "What are your opening hours?")["session_id"]
    problem(client.post(f"/v1/sessions/{fresh}/resolve"), 409)
    assert client.get(f"/v1/sessions/{fresh}").json()["state"] == "open"
    problem(client.post("/v1/sessions/no-such-session/resolve"), 404)


def _pages(client: TestClient, **params: Any) -> Iterator[dict[str, Any]]:
    """The pages of GET /v1/sessions, each after the `next_cursor` of the one before."""
    page = client.get("/v1/sessions", params=params).json()
    yield page
    while page["next_cursor"] is not None:
        page = client.get("/v1/sessions", params={**params, "cursor": page["next_cursor"]}).json()
        yield page


def _ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["items"]]


def test_the_session_list_continues_after_its_cursor_as_sessions_come_and_go(
    tmp_path: Path, database_url: str
) -> None:
    with TestClient(create_app(cs_settings(tmp_path, database_url))) as client:
        for n in range(5):
            assert chat(client, "I want to talk to a real person", f"q{n}")["state"] == "waiting_for_agent"
        queue: dict[str, QueryValue] = {"state": "waiting_for_agent", "limit": 2}
        first = client.get("/v1/sessions", params=queue).json()
        assert _ids(first) == ["q0", "q1"] and first["total"] == 5
        # an agent resolves a session of the first page: the next page starts after q1 all the same
        # (offset=2 would now skip q2)
        assert client.post("/v1/sessions/q0/resolve").status_code == 200
        second = client.get("/v1/sessions", params={**queue, "cursor": first["next_cursor"]}).json()
        assert _ids(second) == ["q2", "q3"] and second["total"] == 4
        chat(client, "I want to talk to a real person", "q5")  # joins at the end of the queue
        third = client.get("/v1/sessions", params={**queue, "cursor": second["next_cursor"]}).json()
        assert _ids(third) == ["q4", "q5"] and third["next_cursor"] is None

        # most recently active first: a new session arriving between pages repeats none (offset would)
        for n in range(5):
            chat(client, "What are your opening hours?", f"a{n}")
        active = {"state": "open", "limit": 2}
        pages = _pages(client, **active)
        seen = _ids(next(pages))
        assert seen == ["a4", "a3"]
        chat(client, "How do I open a savings account?", "a5")
        seen += [sid for page in pages for sid in _ids(page)]
        assert seen == ["a4", "a3", "a2", "a1", "a0"]
        # sessions last active at the same moment come in id order, one page each
        db = Database(database_url)
        try:
            with db.session() as s:
                moment = utcnow()
                s.execute(update(ChatSession).where(ChatSession.state == "open").values(updated_at=moment))
        finally:
            db.dispose()
        tied = [sid for page in _pages(client, state="open", limit=1) for sid in _ids(page)]
        assert tied == ["a0", "a1", "a2", "a3", "a4", "a5"]
        # offset pages as it did; every page of it answers a cursor too
        by_offset = client.get("/v1/sessions", params={"state": "open", "offset": 4, "limit": 1}).json()
        assert _ids(by_offset) == ["a4"]
        after = client.get("/v1/sessions", params={"state": "open", "cursor": by_offset["next_cursor"]})
        assert _ids(after.json()) == ["a5"] and after.json()["next_cursor"] is None


def test_a_cursor_of_the_session_list_is_checked(client: TestClient) -> None:
    for n in range(3):
        chat(client, "What are your opening hours?", f"s{n}")
    cursor = client.get("/v1/sessions", params={"limit": 1}).json()["next_cursor"]
    assert cursor is not None and client.get("/v1/sessions", params={"cursor": cursor}).status_code == 200
    forged = base64.urlsafe_b64encode(b'[null,"2026-01-01T00:00:00",1]').decode()
    for bad in ("yesterday", "%%%", cursor[:-3], forged, base64.urlsafe_b64encode(b"{}").decode()):
        assert "cursor" in problem(client.get("/v1/sessions", params={"cursor": bad}), 422)["detail"], bad
    # a cursor reads on in the list it came from
    other = problem(client.get("/v1/sessions", params={"cursor": cursor, "state": "closed"}), 422)
    assert "state=closed" in other["detail"]
    both = problem(client.get("/v1/sessions", params={"cursor": cursor, "offset": 0}), 422)
    assert "offset" in both["detail"] and "cursor" in both["detail"]
    long = problem(client.get("/v1/sessions", params={"cursor": "A" * 201}), 422)
    assert long["errors"][0]["loc"] == ["query", "cursor"]
