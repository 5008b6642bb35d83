"""Messages the policy settles by their own words are answered without searching the knowledge base.

A "thanks", an "ok", a "?" or a request for a person is answered in kind (or handed off) whatever passages a
search finds, and shows none; the bot searched all the same (the message embedded, BM25 and the dense index
queried, each passage's similarity computed): work for nothing on the commonest messages of a chat. The
replies stay as they were. What the search embeds goes through the knowledge base's query cache, whose
counts tell whether a message was searched.

The real app on the demo FAQs and MiniLM, on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from customer_service import create_app
from customer_service.bot import ACKNOWLEDGEMENT, HANDOFF, PROMPT
from customer_service.policy import ACKNOWLEDGED, PROMPTED
from tests.customer_service.test_app import chat, cs_settings


@pytest.fixture
def client(tmp_path: Path, sqlite_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(cs_settings(tmp_path, sqlite_url))) as test_client:
        yield test_client


def _queries_read(client: TestClient) -> int:
    """How many queries the knowledge base has been asked to embed (cached or not)."""
    info = client.app.state.service.kb._query_vector.cache_info()  # type: ignore[attr-defined]
    return int(info.hits + info.misses)


def _reply(client: TestClient, message: str, session_id: str) -> tuple[dict[str, Any], bool]:
    """The reply, and whether the message was searched."""
    before = _queries_read(client)
    reply = chat(client, message, session_id)
    return reply, _queries_read(client) != before


def test_thanks_prompts_and_requests_for_a_person_search_nothing(client: TestClient) -> None:
    session_id = chat(client, "How do I reset my online banking password?")["session_id"]
    for message, answer, reason in (
        ("thanks!", ACKNOWLEDGEMENT, ACKNOWLEDGED),
        (
            "ok, got it",
            ACKNOWLEDGEMENT,
            ACKNOWLEDGED,
        ),  # rewritten as a follow-up, it searched for the password
        ("👍", ACKNOWLEDGEMENT, ACKNOWLEDGED),
        ("?", PROMPT, PROMPTED),
        ("...", PROMPT, PROMPTED),
    ):
        reply, searched = _reply(client, message, session_id)
        assert (reply["action"], reply["answer"], reply["sources"]) == ("answer", answer, [])
        assert not searched, message
        assert client.get(f"/v1/sessions/{session_id}").json()["turns"][-1]["reason"] == reason

    reply, searched = _reply(client, "And what about the card limit?", session_id)  # a question is searched
    assert searched and reply["sources"]

    reply, searched = _reply(client, "I want to talk to a real person", session_id)
    assert (reply["action"], reply["answer"], reply["sources"], reply["state"]) == (
        "handoff", HANDOFF, [], "waiting_for_agent",
    )  # fmt: skip
    assert not searched
