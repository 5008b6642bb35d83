"""Answers that do not depend on how a service came to hold its catalog: replicas and restarts over one
database score alike, through the real app and its lifespan on a real database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recommender import create_app
from recommender.serving import REFERENCE_ITEMS
from tests.recommender.conftest import rec_settings


def numbered_items(count: int) -> list[dict[str, Any]]:
    return [
        {"id": f"item-{n:03}", "title": f"Thing number {n}", "text": f"about {n % 7} and {n % 11}"}
        for n in range(count)
    ]


def scores(client: TestClient, body: dict[str, Any]) -> dict[str, float]:
    response = client.post("/v1/score", json=body)
    assert response.status_code == 200, response.text
    return {r["item_id"]: r["score"] for r in response.json()}


def test_replicas_standardise_scores_against_the_same_catalog_sample(
    tmp_path: Path, postgres_url: str, tiny_model_dir: Path
) -> None:
    """Scores are standardised against a sample of the catalog drawn by position in the index. A replica
    started later reads the items in the database's order, which on PostgreSQL moves an updated row to the
    end, so it drew another sample and gave the same request other scores (0.8505 against 0.8476)."""
    items = numbered_items(REFERENCE_ITEMS + 44)  # more than the sample holds: the draw matters
    one = rec_settings(tmp_path / "one", postgres_url, tiny_model_dir, refresh_s=0)
    other = rec_settings(tmp_path / "other", postgres_url, tiny_model_dir, refresh_s=0)
    body = {"interests": "about 3", "items": ["item-005", "item-010", "item-100"]}
    with TestClient(create_app(one)) as first:
        assert first.post("/v1/items", json={"items": items}).status_code == 200
        changed = {"title": "Thing zero", "text": "changed"}
        assert first.put("/v1/items/item-000", json=changed).status_code == 200
        with TestClient(create_app(other)) as second:
            assert scores(second, body) == pytest.approx(scores(first, body), rel=1e-6)
