"""The retention (``FIN_RETENTION_DAYS``) against a real database, through the monitor's job
(`Monitor.prune`), the app's scheduler and `run-once`.

Stories are inserted with their ``seen_at`` days in the past; nothing waits on the clock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from sqlalchemy import func, insert, select, update
from typer.testing import CliRunner

from finance_sentiment import create_app
from finance_sentiment.alerting import evaluate_rules
from finance_sentiment.cli import app as cli
from finance_sentiment.database import Database
from finance_sentiment.monitor import open_monitor
from finance_sentiment.retention import BATCH_SIZE, KEY_MEMORY, prune
from finance_sentiment.rules import delete_rule
from finance_sentiment.settings import FinanceSentimentSettings
from finance_sentiment.tables import Alert, AlertRule, Document, DocumentTag, OutboxMessage, PrunedStory
from tests.conftest import serve_app
from tests.finance_sentiment.test_alerting import HOUR, add_burst, add_calm, add_rule
from tests.finance_sentiment.test_cli import last_json, one_error_line
from tests.finance_sentiment.test_ingest import RSS, STORIES, Page, Site, add_source, article, feed_of, rss
from tests.finance_sentiment.test_ingest import settings as monitor_settings
from textcore.sql import utcnow

DAY = timedelta(days=1)


def add_stories(db: Database, name: str, seen_at: list[datetime]) -> list[str]:
    """One story per time, each tagged with a topic and an entity (bulk inserts); returns their URLs."""
    urls = [f"https://news.example/{name}/{k}" for k in range(len(seen_at))]
    with db.session() as session:
        ids = session.scalars(
            insert(Document).returning(Document.id),
            [
                {
                    "url": url,
                    "content_hash": hashlib.sha256(url.encode()).hexdigest(),
                    "title": f"{name} story {k}",
                    "text": "Shares moved.",
                    "seen_at": seen,
                    "label": "neutral",
                    "scores": {"neutral": 1.0},
                    "sentiment": 0.0,
                    "model_version": "test",
                }
                for k, (url, seen) in enumerate(zip(urls, seen_at, strict=True))
            ],
        ).all()
        tags = [("topic", "earnings"), ("entity", name)]
        session.execute(
            insert(DocumentTag),
            [{"document_id": i, "kind": kind, "name": tag} for i in ids for kind, tag in tags],
        )
    return urls


def stored_urls(db: Database) -> set[str]:
    with db.session() as session:
        return set(session.scalars(select(Document.url)))


def assert_no_orphans(db: Database) -> None:
    """Every tag belongs to a stored story (and, on SQLite, no foreign key is broken)."""
    with db.session() as session:
        orphans = select(func.count()).where(DocumentTag.document_id.not_in(select(Document.id)))
        assert session.scalar(orphans) == 0
        stories = session.scalar(select(func.count()).select_from(Document))
        assert session.scalar(select(func.count()).select_from(DocumentTag)) == 2 * (stories or 0)
    if db.engine.dialect.name == "sqlite":
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_key_check").all() == []


def retention(tmp_path: Path, database_url: str, days: int | None = 7) -> FinanceSentimentSettings:
    return monitor_settings(tmp_path, database_url, None, retention_days=days)


async def test_old_stories_go_with_their_tags_and_recent_ones_stay(
    tmp_path: Path, database: Database, database_url: str
) -> None:
    now = utcnow()
    old = add_stories(database, "Acme", [now - 30 * DAY, now - 8 * DAY, now - 7 * DAY - HOUR])
    recent = add_stories(database, "Globex", [now - 6 * DAY, now - HOUR])
    # Published long ago, first seen today: the age counts from when the monitor first saw it.
    with database.session() as session:
        session.execute(
            update(Document).where(Document.url == recent[1]).values(published_at=now - 400 * DAY)
        )
    registry = CollectorRegistry()
    async with open_monitor(retention(tmp_path, database_url), registry) as monitor:
        report = await monitor.prune()
        assert report is not None and (report.pruned, report.cited, report.held_by) == (3, 0, None)
        assert stored_urls(database) == set(recent)
        assert_no_orphans(database)
        again = await monitor.prune()
        assert again is not None and again.pruned == 0  # nothing left to do
    assert registry.get_sample_value("finance_documents_pruned_total") == 3
    with database.session() as session:  # their dedup keys stay, without their words
        assert session.scalar(select(func.count()).select_from(PrunedStory)) == len(old)


async def test_without_a_retention_every_story_stays(
    tmp_path: Path, database: Database, database_url: str
) -> None:
    now = utcnow()
    urls = add_stories(database, "Acme", [now - 3000 * DAY, now - HOUR])
    async with open_monitor(retention(tmp_path, database_url, None)) as monitor:
        assert await monitor.prune() is None
    assert stored_urls(database) == set(urls)


async def test_more_stories_than_one_batch_are_all_deleted(
    tmp_path: Path, database: Database, database_url: str
) -> None:
    now = utcnow()
    count = 2 * BATCH_SIZE + 500
    add_stories(database, "Acme", [now - 10 * DAY - k * timedelta(seconds=1) for k in range(count)])
    recent = add_stories(database, "Globex", [now - HOUR] * 3)
    async with open_monitor(retention(tmp_path, database_url)) as monitor:
        report = await monitor.prune()
    assert report is not None and report.pruned == count
    assert stored_urls(database) == set(recent)
    assert_no_orphans(database)


def test_stories_kept_as_evidence_in_every_batch_do_not_stop_the_pass(database: Database) -> None:
    now = utcnow()
    urls = add_stories(database, "Acme", [now - 10 * DAY + k * timedelta(minutes=1) for k in range(10)])
    cited = [urls[0], urls[4], urls[8]]  # one in each batch of four
    add_rule(database)
    with database.session() as session:
        rule_id = session.scalars(select(AlertRule.id)).one()
        evidence = json.dumps([{"title": "t", "url": url} for url in cited])
        session.add(
            Alert(rule_id=rule_id, fingerprint="f", labels={}, annotations={"evidence": evidence},
                  status="firing", starts_at=now - 10 * DAY)
        )  # fmt: skip
    report = prune(database, 7 * DAY, now=now, batch_size=4)
    assert (report.pruned, report.cited) == (7, 3)
    assert stored_urls(database) == set(cited)
    assert_no_orphans(database)


async def test_evidence_of_a_live_alert_stays_until_its_notifications_are_sent(
    tmp_path: Path, database: Database, database_url: str
) -> None:
    now = utcnow()
    then = now - 10 * DAY
    add_calm(database, "Acme", end=then)  # 70 stories
    add_burst(database, "Acme", end=then)  # 15 negative ones
    add_rule(database)  # 1-hour windows, 6 of baseline: 7 hours of history
    assert [t.status for t in evaluate_rules(database, now=then)] == ["firing"]
    recent = add_stories(database, "Globex", [now - HOUR] * 2)
    with database.session() as session:
        annotations = session.scalars(select(Alert.annotations)).one()
    evidence = {item["url"] for item in json.loads(annotations["evidence"])}
    assert len(evidence) == 5

    async with open_monitor(retention(tmp_path, database_url)) as monitor:
        report = await monitor.prune()  # the alert fires, its "firing" notification waits
        assert report is not None and (report.pruned, report.cited) == (80, 5)
        assert stored_urls(database) == set(recent) | evidence
        assert_no_orphans(database)

        resolved = evaluate_rules(database, now=then + 2 * HOUR)
        assert [t.status for t in resolved] == ["resolved"]
        report = await monitor.prune()  # resolved, but both notifications still wait
        assert report is not None and (report.pruned, report.cited) == (0, 5)

        with database.session() as session:
            session.execute(update(OutboxMessage).values(delivered_at=now))
        report = await monitor.prune()
        assert report is not None and (report.pruned, report.cited) == (5, 0)
    assert stored_urls(database) == set(recent)
    assert_no_orphans(database)
    with database.session() as session:  # the alert keeps its own copy of the evidence
        assert session.scalars(select(Alert.annotations)).one() == annotations


async def test_a_rule_reading_further_back_holds_the_retention_back(
    tmp_path: Path, database: Database, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    now = utcnow()
    ages = [2 * DAY, 5 * DAY, 9 * DAY + 12 * HOUR, 11 * DAY]
    urls = add_stories(database, "Acme", [now - age for age in ages])
    add_rule(database, name="slow", window_seconds=86400, baseline_windows=9)  # reads 10 days back
    async with open_monitor(retention(tmp_path, database_url, 3)) as monitor:
        with caplog.at_level(logging.WARNING, logger="finance_sentiment"):
            report = await monitor.prune()
        assert report is not None and (report.pruned, report.held_by) == (1, "slow")
        assert stored_urls(database) == set(urls[:3])
        warning = "keeping 10.0 days of stories, not 3.0: alert rule 'slow' reads that far back"
        assert warning in caplog.text and "FIN_RETENTION_DAYS to at least 10" in caplog.text

        with database.session() as session:
            delete_rule(session, session.scalars(select(AlertRule.id)).one())
        report = await monitor.prune()
        assert report is not None and (report.pruned, report.held_by) == (2, None)
    assert stored_urls(database) == {urls[0]}


async def test_a_pruned_story_still_listed_is_not_stored_again(
    tmp_path: Path, finance_model_dir: Path, database_url: str
) -> None:
    title, text = STORIES[0]
    links = "".join(f"<li><a href='/articles/{i}'>Story {i}</a></li>" for i in (1, 2))
    web = Site({"/feed.xml": Page(feed_of(STORIES), RSS), "/markets": Page(f"<ul>{links}</ul>".encode())})
    web.pages["/articles/1"] = Page(article("Hooli appoints a new chief executive", "The board met."))
    web.pages["/articles/2"] = Page(article("Umbrella completes its acquisition", "The deal closed."))
    config = monitor_settings(tmp_path, database_url, finance_model_dir, retention_days=7)
    with serve_app(web.app()) as base:
        async with open_monitor(config) as monitor:
            wire = add_source(monitor, "wire", f"{base}/feed.xml")
            markets = add_source(
                monitor, "markets", f"{base}/markets", kind="html", link_pattern="/articles/"
            )
            assert (await monitor.run_source(wire)).stored == 3
            assert (await monitor.run_source(markets)).stored == 2
            with monitor.db.session() as session:  # a month passes
                session.execute(update(Document).values(seen_at=utcnow() - 30 * DAY))
            report = await monitor.prune()
            assert report is not None and report.pruned == 5

            # The same links, and the words of a pruned story under another link: duplicates.
            web.pages["/feed.xml"] = Page(rss([("/mirror/9", title, text)]), RSS)
            again = await monitor.run_source(wire)
            assert (again.stored, again.duplicates) == (0, 1)
            web.pages["/feed.xml"] = Page(feed_of(STORIES), RSS)
            again = await monitor.run_source(wire)
            assert (again.stored, again.duplicates) == (0, 3)
            assert (await monitor.run_source(markets)).stored == 0
            assert web.hits("/articles/1") == web.hits("/articles/2") == 1  # not even fetched again
            assert stored_urls(monitor.db) == set()

            # A year later the keys are forgotten too: a story still listed then is stored once more.
            with monitor.db.session() as session:
                session.execute(update(PrunedStory).values(pruned_at=utcnow() - KEY_MEMORY - DAY))
            report = await monitor.prune()
            assert report is not None and report.keys_forgotten == 5
            assert (await monitor.run_source(wire)).stored == 3


def test_a_retention_outside_one_day_to_a_century_is_refused(tmp_path: Path) -> None:
    for days in (0, -3, 36_501):
        with pytest.raises(ValidationError, match=rf"expected a retention of 1 to 36500 days .*found {days}"):
            FinanceSentimentSettings(retention_days=days)
    database = tmp_path / "m.db"
    for value, message in [
        ("0", "FIN_RETENTION_DAYS: Value error, expected a retention of 1 to 36500 days (unset keeps every "
              "story), found 0"),
        ("a week", "FIN_RETENTION_DAYS: Input should be a valid integer"),
    ]:  # fmt: skip
        result = CliRunner().invoke(
            cli, ["run-once", "--database-url", f"sqlite:///{database}"], env={"FIN_RETENTION_DAYS": value}
        )
        assert one_error_line(result).startswith(f"error: {message}")
    assert not database.exists()  # refused before anything was opened


def _migrated_with_old_and_new_stories(url: str) -> tuple[list[str], list[str]]:
    database = Database(url)
    try:
        database.migrate()
        now = utcnow()
        return add_stories(database, "Acme", [now - 40 * DAY] * 3), add_stories(database, "Globex", [now])
    finally:
        database.dispose()


def test_run_once_prunes_when_a_retention_is_set(sqlite_url: str) -> None:
    old, new = _migrated_with_old_and_new_stories(sqlite_url)

    def run_once(env: dict[str, str]) -> dict[str, Any]:
        return last_json(CliRunner().invoke(cli, ["run-once", "--database-url", sqlite_url], env=env))

    assert run_once({})["pruned"] == 0  # unset: every story is kept
    database = Database(sqlite_url)
    try:
        assert stored_urls(database) == set(old + new)
        assert run_once({"FIN_RETENTION_DAYS": "30"})["pruned"] == len(old)
        assert stored_urls(database) == set(new)
    finally:
        database.dispose()


def test_the_apps_scheduler_prunes_at_start_and_counts_it(tmp_path: Path, sqlite_url: str) -> None:
    old, new = _migrated_with_old_and_new_stories(sqlite_url)
    settings = retention(tmp_path, sqlite_url, 30).model_copy(update={"scheduler": True})
    with serve_app(create_app(settings)) as api, httpx.Client(base_url=api, trust_env=False) as http:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            items = http.get("/v1/documents").json()["items"]
            if len(items) == len(new):
                break
            time.sleep(0.1)
        assert [item["url"] for item in items] == new
        assert f"finance_documents_pruned_total {float(len(old))}" in http.get("/metrics").text
