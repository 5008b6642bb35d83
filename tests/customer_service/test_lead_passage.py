"""Which retrieved passage leads an answer without a re-ranker: the bot with its real models and FAQs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from customer_service.app import create_app
from tests.customer_service.test_app import chat, cs_settings


@pytest.fixture
def client(tmp_path: Path, sqlite_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(cs_settings(tmp_path, sqlite_url))) as test_client:
        yield test_client


def test_a_clearly_more_relevant_passage_leads_the_answer(client: TestClient) -> None:
    # Rank fusion puts the FAQ on freezing a card first (cosine 0.46, relevant), the one on a card used
    # without permission second (0.57). The policy read the pair as "two close candidates (0.46, 0.57)" and
    # asked which one the customer meant; a lead by more than clarify_margin now answers with the more
    # relevant passage, the fused first among the sources.
    reply = chat(client, "What do I do if the ATM took my card?")
    sources = reply["sources"]
    assert reply["action"] == "answer", reply
    assert sources[0]["relevance"] == max(s["relevance"] for s in sources)
    assert sources[0]["relevance"] - sources[1]["relevance"] > 0.08
    assert sources[0]["score"] < max(s["score"] for s in sources)  # not the first in fusion order
    turn = client.get(f"/v1/sessions/{reply['session_id']}").json()["turns"][0]
    assert turn["reason"] == f"relevance {sources[0]['relevance']:.2f}"
