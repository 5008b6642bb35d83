"""Names a person types for tagged stories (a rule's match, the documents' and trends' filters) resolve to
the names stories are tagged with: aliases, tickers and other cases of configured entities and topics, other
cases of a source's tags; an unknown name is kept with a warning. Through the real app on a real database."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from finance_sentiment import create_app
from finance_sentiment.schemas import AlertRuleIn
from finance_sentiment.settings import FetchSettings, FinanceSentimentSettings
from finance_sentiment.tables import AlertRule
from tests.finance_sentiment.test_alerting import add_burst, add_calm
from textcore.sql import utcnow

HOOK = "http://127.0.0.1:9/hook"
CONFIG = """
[[sources]]
name = "bank pages"
url = "http://127.0.0.1:9/banks.rss"
kind = "rss"
topics = ["Banking"]
entities = ["Hooli"]
enabled = false

[[topics]]
name = "earnings"
keywords = ["earnings"]

[[entities]]
name = "JPMorgan Chase"
ticker = "JPM"
aliases = ["JPMorgan", "JP Morgan"]

[[entities]]
name = "Acme"
ticker = "ACME"
aliases = ["Acme Corp"]

[[alert_rules]]
name = "from the file"
match = ["jp  morgan", "$acme", "Initek"]
webhook_url = "http://127.0.0.1:9/hook"
"""


@pytest.fixture
def client(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    """The app with the config above; no model is needed (it loads on first use)."""
    config = tmp_path / "monitor.toml"
    config.write_text(CONFIG)
    settings = FinanceSentimentSettings(
        database_url=database_url,
        config_file=config,
        registry=tmp_path / "registry",
        scheduler=False,
        fetch=FetchSettings(allowed_networks=("127.0.0.0/8",)),
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _rule(**more: Any) -> dict[str, Any]:
    return {"name": "watch", "webhook_url": HOOK, "window_seconds": 3600, "baseline_windows": 6} | more


def test_a_rule_stores_the_canonical_names_of_aliases_tickers_and_other_cases(client: TestClient) -> None:
    # Stories are tagged "Acme" and "JPMorgan Chase": a rule watching "acme" or "JPMorgan" never fired.
    typed = ["acme", "JPMorgan", "ACME", "$jpm", "Acme Corp", "hooli", "$nvda", "TSLA"]
    created = client.post("/v1/alert-rules", json=_rule(match=typed))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["match"] == ["Acme", "JPMorgan Chase", "Hooli", "NVDA", "TSLA"]
    assert body["warnings"] == []
    rules = {rule["name"]: rule for rule in client.get("/v1/alert-rules").json()}
    assert rules["from the file"]["match"] == ["JPMorgan Chase", "Acme", "Initek"]

    path = f"/v1/alert-rules/{body['id']}"
    topic = client.patch(path, json={"group_by": "topic", "match": ["Earnings", "banking"]})
    assert topic.status_code == 200, topic.text
    assert (topic.json()["match"], topic.json()["warnings"]) == (["earnings", "Banking"], [])
    assert client.get(path).json()["match"] == ["earnings", "Banking"]


def test_a_name_no_story_is_tagged_with_is_kept_with_a_warning(client: TestClient) -> None:
    # A source added later, or a cashtag, may bring the name: it is accepted, but said to match nothing now.
    created = client.post("/v1/alert-rules", json=_rule(match=["Acme", "Acmee", "earnings", "nvda"]))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["match"] == ["Acme", "Acmee", "earnings", "nvda"]
    acmee, earnings, nvda = body["warnings"]
    assert acmee.startswith("match[1]: no story is tagged with the entity 'Acmee'") and "'Acme'" in acmee
    assert earnings.startswith("match[2]: ")
    assert "'earnings' is a topic, but this groups by entity" in earnings
    assert nvda.startswith("match[3]: ") and "write '$NVDA'" in nvda
    assert client.get(f"/v1/alert-rules/{body['id']}").json()["warnings"] == body["warnings"]
    listed = {rule["name"]: rule["warnings"] for rule in client.get("/v1/alert-rules").json()}
    (initek,) = listed["from the file"]
    assert initek.startswith("match[2]: no story is tagged with the entity 'Initek'")


def test_a_config_rule_with_an_unknown_name_is_logged_at_start(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "monitor.toml"
    config.write_text(CONFIG)
    settings = FinanceSentimentSettings(
        database_url=sqlite_url,
        config_file=config,
        registry=tmp_path / "registry",
        scheduler=False,
        fetch=FetchSettings(allowed_networks=("127.0.0.0/8",)),
    )
    with caplog.at_level(logging.WARNING, "finance_sentiment"), TestClient(create_app(settings)):
        pass
    warned = [r.getMessage() for r in caplog.records if "'from the file'" in r.getMessage()]
    assert len(warned) == 1 and "'Initek'" in warned[0], warned


def test_a_rule_watching_a_lower_case_name_fires_on_the_tagged_stories(client: TestClient) -> None:
    monitor = client.app.state.monitor  # type: ignore[attr-defined]
    portal = client.portal
    assert portal is not None
    created = client.post("/v1/alert-rules", json=_rule(match=["acme"], min_negative_share=0.4))
    assert created.status_code == 201, created.text
    now = utcnow()
    add_calm(monitor.db, "Acme", end=now)
    add_burst(monitor.db, "Acme", end=now)
    portal.call(monitor.evaluate_alerts)
    firing = client.get("/v1/alerts", params={"status": "firing"}).json()
    # The config file's rule watches "$acme" (and "jp  morgan"): Acme too.
    assert sorted((alert["rule"], alert["labels"]["entity"]) for alert in firing) == [
        ("from the file", "Acme"),
        ("watch", "Acme"),
    ]


def test_the_documents_and_trends_filters_resolve_names_like_a_rule(client: TestClient) -> None:
    # entity=ACME or topic=Earnings answered nothing: stories are tagged "Acme" and "earnings".
    monitor = client.app.state.monitor  # type: ignore[attr-defined]
    now = utcnow()
    add_calm(monitor.db, "Acme", hours=1, end=now)  # ten stories tagged Acme and earnings
    add_burst(monitor.db, "Hooli", count=3, end=now)  # three tagged Hooli (a source's entity) and fraud
    for entity in ("Acme", "ACME", "acme corp", "$acme"):
        page = client.get("/v1/documents", params={"entity": entity, "limit": 500}).json()
        assert len(page["items"]) == 10, entity
    for topic in ("earnings", "Earnings", "EARNINGS"):
        assert len(client.get("/v1/documents", params={"topic": topic}).json()["items"]) == 10, topic
    assert len(client.get("/v1/documents", params={"entity": "HOOLI"}).json()["items"]) == 3
    assert client.get("/v1/documents", params={"entity": "Acmee"}).json()["items"] == []

    series = client.get("/v1/trends", params={"kind": "entity", "name": ["ACME", "hooli", "Acme Corp"]})
    assert series.status_code == 200, series.text
    assert [(s["name"], sum(p["count"] for p in s["points"])) for s in series.json()] == [
        ("Acme", 10),
        ("Hooli", 3),
    ]
    (topic,) = client.get("/v1/trends", params={"kind": "topic", "name": "Earnings"}).json()
    assert (topic["name"], sum(p["count"] for p in topic["points"])) == ("earnings", 10)


def test_a_rule_stored_before_names_were_resolved_is_answered_with_a_warning(client: TestClient) -> None:
    monitor = client.app.state.monitor  # type: ignore[attr-defined]
    with monitor.db.session() as session:  # as the API stored it before: the names as typed
        old = AlertRuleIn(name="old", match=["acme", "Hooli"], webhook_url=HOOK)
        session.add(AlertRule(**old.model_dump()))
    listed = {rule["name"]: rule for rule in client.get("/v1/alert-rules").json()}
    assert listed["old"]["warnings"] == [
        "match[0]: stories are tagged 'Acme', not 'acme'; send the match again to watch them"
    ]
    fixed = client.patch(f"/v1/alert-rules/{listed['old']['id']}", json={"match": listed["old"]["match"]})
    assert (fixed.json()["match"], fixed.json()["warnings"]) == (["Acme", "Hooli"], [])
