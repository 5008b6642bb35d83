"""The agent console through the real app and its lifespan: resolving sessions and paging through the list of
sessions (the agents' queue), on a real SQLite and PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from customer_service import create_app
from tests.conftest import problem
from tests.customer_service.test_app import chat, cs_settings


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
