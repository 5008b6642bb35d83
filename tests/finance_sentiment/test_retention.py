"""The retention (``FIN_RETENTION_DAYS``) against a real database, through the monitor's job
(`Monitor.prune`), the app's scheduler and `run-once`.

Stories are inserted with their ``seen_at`` days in the past, alerts and notifications with their times;
nothing waits on the clock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import tracemalloc
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from sqlalchemy import delete, func, insert, select, update
from typer.testing import CliRunner

from finance_sentiment import create_app
from finance_sentiment.alerting import evaluate_rules
from finance_sentiment.cli import app as cli
from finance_sentiment.database import Database
from finance_sentiment.delivery import deliver_pending, rfc3339
from finance_sentiment.monitor import open_monitor
from finance_sentiment.retention import BATCH_SIZE, KEY_MEMORY, cited_urls, prune
from finance_sentiment.rules import alerts_out, delete_rule, list_alerts
from finance_sentiment.settings import FinanceSentimentSettings
from finance_sentiment.tables import Alert, AlertRule, Document, DocumentTag, OutboxMessage, PrunedStory
from tests.conftest import serve_app
from tests.finance_sentiment.test_alerting import HOUR, NOW, add_burst, add_calm, add_rule, outbox
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

        # Resolved an hour ago: the alert itself is kept (resolved within the retention).
        resolved = evaluate_rules(database, now=now - HOUR)
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
        summary = run_once({"FIN_RETENTION_DAYS": "30"})
        counts = [summary[key] for key in ("pruned", "notifications_pruned", "alerts_pruned")]
        assert counts == [len(old), 0, 0]
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


def add_alert(
    db: Database, *, status: str, starts_at: datetime, ends_at: datetime | None = None, name: str = "Acme"
) -> int:
    """An alert of the (only) rule, about entity ``name``; returns its id."""
    with db.session() as session:
        rule_id = session.scalars(select(AlertRule.id)).one()
        alert = Alert(
            rule_id=rule_id, fingerprint=name, labels={"entity": name}, annotations={}, status=status,
            starts_at=starts_at, ends_at=ends_at, last_sent_at=ends_at or starts_at,
        )  # fmt: skip
        session.add(alert)
        session.flush()
        return alert.id


def notify(
    db: Database,
    alert_id: int,
    created: datetime,
    *,
    delivered: datetime | None = None,
    expired: bool = False,
) -> int:
    """A notification of the alert stored at ``created`` (expiring a day later), delivered or expired or
    still to be sent; returns its id."""
    with db.session() as session:
        alert = session.get_one(Alert, alert_id)
        message = OutboxMessage(
            alert_id=alert_id, rule_id=alert.rule_id, idempotency_key=uuid.uuid4().hex,
            url="http://127.0.0.1:9/hook", payload={"status": alert.status, "alerts": []}, attempts=0,
            next_attempt_at=created, created_at=created, expires_at=created + DAY, delivered_at=delivered,
            expired=expired,
        )  # fmt: skip
        session.add(message)
        session.flush()
        return message.id


def outbox_ids(db: Database) -> set[int]:
    with db.session() as session:
        return set(session.scalars(select(OutboxMessage.id)))


def alert_ids(db: Database) -> set[int]:
    with db.session() as session:
        return set(session.scalars(select(Alert.id)))


async def test_finished_notifications_older_than_the_retention_go_and_those_to_send_stay(
    tmp_path: Path, database: Database, database_url: str
) -> None:
    now = utcnow()
    add_rule(database)
    alert = add_alert(database, status="firing", starts_at=now - 400 * DAY)  # fires still: stays
    gone = [
        notify(database, alert, now - 10 * DAY, delivered=now - 10 * DAY),
        notify(database, alert, now - 10 * DAY, expired=True),  # expired 9 days ago
    ]
    kept = [
        notify(database, alert, now - 10 * DAY),  # past its expiry, but no delivery pass marked it yet
        notify(database, alert, now - 2 * DAY, delivered=now - 2 * DAY),
        notify(database, alert, now - 7 * DAY, expired=True),  # expired 6 days ago
        notify(database, alert, now - HOUR),  # waiting
    ]
    registry = CollectorRegistry()
    async with open_monitor(retention(tmp_path, database_url), registry) as monitor:
        report = await monitor.prune()
        assert report is not None and (report.notifications_pruned, report.alerts_pruned) == (2, 0)
        assert outbox_ids(database) == set(kept)
        again = await monitor.prune()
        assert again is not None and (again.notifications_pruned, again.alerts_pruned) == (0, 0)
    assert alert_ids(database) == {alert}
    assert registry.get_sample_value("finance_notifications_pruned_total") == len(gone)
    assert registry.get_sample_value("finance_alerts_pruned_total") == 0


def assert_no_orphan_notifications(db: Database) -> None:
    with db.session() as session:
        orphans = select(func.count()).where(OutboxMessage.alert_id.not_in(select(Alert.id)))
        assert session.scalar(orphans) == 0
    if db.engine.dialect.name == "sqlite":
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_key_check").all() == []


async def test_resolved_alerts_older_than_the_retention_go_with_their_notifications(
    tmp_path: Path, database: Database, database_url: str
) -> None:
    now = utcnow()
    add_rule(database)
    old = add_alert(database, status="resolved", starts_at=now - 12 * DAY, ends_at=now - 10 * DAY)
    notify(database, old, now - 12 * DAY, delivered=now - 12 * DAY)
    notify(database, old, now - 10 * DAY, delivered=now - 10 * DAY)
    firing = add_alert(database, status="firing", starts_at=now - 400 * DAY, name="Globex")
    notify(database, firing, now - 400 * DAY, delivered=now - 400 * DAY)
    recent = add_alert(
        database, status="resolved", starts_at=now - 20 * DAY, ends_at=now - 2 * DAY, name="Hooli"
    )
    notify(database, recent, now - 20 * DAY, delivered=now - 20 * DAY)
    last_sent = notify(database, recent, now - 2 * DAY, delivered=now - 2 * DAY)
    # Resolved long ago, its "resolved" never sent and past its expiry, but not marked expired yet.
    unsent = add_alert(
        database, status="resolved", starts_at=now - 11 * DAY, ends_at=now - 10 * DAY, name="Initech"
    )
    waiting = notify(database, unsent, now - 10 * DAY)

    registry = CollectorRegistry()
    async with open_monitor(retention(tmp_path, database_url), registry) as monitor:
        report = await monitor.prune()
        assert report is not None and (report.alerts_pruned, report.notifications_pruned) == (1, 4)
        assert alert_ids(database) == {firing, recent, unsent}
        assert outbox_ids(database) == {last_sent, waiting}
        assert_no_orphan_notifications(database)
        with database.session() as session:  # what GET /v1/alerts answers: the episodes kept
            listed = alerts_out(session, list_alerts(session))
        # Newest start first; the firing alert's notification of 400 days ago is no longer counted.
        assert [(a.id, a.deliveries.delivered, a.deliveries.pending) for a in listed] == [
            (unsent, 0, 1), (recent, 1, 0), (firing, 0, 0)
        ]  # fmt: skip

        def unreachable(request: httpx.Request) -> httpx.Response:
            raise AssertionError(f"nothing is due to be sent, found a POST to {request.url}")

        async with httpx.AsyncClient(transport=httpx.MockTransport(unreachable)) as client:
            assert (await deliver_pending(database, client, now=now)).expired == 1
        report = await monitor.prune()  # now that nothing of it waits
        assert report is not None and (report.alerts_pruned, report.notifications_pruned) == (1, 1)
    assert alert_ids(database) == {firing, recent}
    assert outbox_ids(database) == {last_sent}
    assert_no_orphan_notifications(database)
    assert registry.get_sample_value("finance_alerts_pruned_total") == 2
    assert registry.get_sample_value("finance_notifications_pruned_total") == 5


async def test_a_notification_behind_a_pruned_one_of_its_fingerprint_is_still_sent_in_order(
    database: Database,
) -> None:
    sent: list[dict[str, Any]] = []

    def receive(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200)

    add_rule(database)
    add_calm(database, "Acme", end=NOW)
    add_burst(database, "Acme", end=NOW)
    assert [t.status for t in evaluate_rules(database, now=NOW)] == ["firing"]
    async with httpx.AsyncClient(transport=httpx.MockTransport(receive)) as client:
        assert (await deliver_pending(database, client, now=NOW)).delivered == 1
        # A week later the episode resolves, and its "resolved" cannot be sent at once (the receiver is
        # down, say); hours later a new burst opens a new alert with the same fingerprint.
        later = NOW + 8 * DAY
        assert [t.status for t in evaluate_rules(database, now=later)] == ["resolved"]
        then = later + 8 * HOUR
        add_calm(database, "Acme", end=then)
        add_burst(database, "Acme", end=then)
        assert [t.status for t in evaluate_rules(database, now=then)] == ["firing"]

        report = prune(database, 7 * DAY, now=then)  # the first "firing", delivered 8 days ago, goes
        assert (report.notifications_pruned, report.alerts_pruned) == (1, 0)
        assert [m.payload["status"] for m in outbox(database)] == ["resolved", "firing"]
        for _ in range(3):
            await deliver_pending(database, client, now=then)
    # The old episode's "resolved", superseded by the new "firing" of its group (only the latest state of
    # a group waits), is never sent, so never after that "firing" either.
    assert [(body["status"], body["alerts"][0]["startsAt"]) for body in sent[1:]] == [
        ("firing", rfc3339(then))
    ]  # fmt: skip
    assert len({body["alerts"][0]["fingerprint"] for body in sent}) == 1


def test_waiting_notifications_are_read_for_their_evidence_a_batch_at_a_time(database: Database) -> None:
    # A receiver down for a day leaves every repeat of every firing series waiting, each payload up to tens
    # of KB. The retention read them all into memory at once to find the stories they cite (50 to 100 MB
    # here, at its peak); it now keeps only their URLs, reading a batch at a time.
    now = utcnow()
    add_rule(database)
    messages, padding, hook = 3_000, "x" * 16_000, "http://127.0.0.1:9/hook"
    with database.session() as session:
        rule_id = session.scalars(select(AlertRule.id)).one()
        alert = Alert(rule_id=rule_id, fingerprint="f", labels={}, annotations={}, status="firing",
                      starts_at=now - DAY)  # fmt: skip
        session.add(alert)
        session.flush()
        rows = []
        for k in range(messages):
            evidence = json.dumps([{"title": "t", "url": f"https://news.example/{k % 7}"}])
            payload = {"alerts": [{"annotations": {"evidence": evidence, "description": padding}}]}
            rows.append({"alert_id": alert.id, "rule_id": rule_id, "idempotency_key": uuid.uuid4().hex,
                         "url": hook, "payload": payload, "expires_at": now + DAY})  # fmt: skip
        session.execute(insert(OutboxMessage), rows)
    with database.session() as session:
        tracemalloc.start()
        try:
            cited = cited_urls(session)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert cited == {f"https://news.example/{k}" for k in range(7)}
    assert peak < 20_000_000, f"peak {peak / 1e6:.0f} MB while reading {messages} notifications"


async def test_a_deleted_rules_alerts_stay_until_the_retention_and_the_rule_goes_after_them(
    tmp_path: Path, database: Database, database_url: str
) -> None:
    # A deleted rule's alerts are the history of what fired: kept (and listed) as long as any resolved
    # alert is, then the hidden rule they belonged to goes at the next delivery pass.
    now = utcnow()
    add_rule(database)
    old = add_alert(database, status="resolved", starts_at=now - 12 * DAY, ends_at=now - 10 * DAY)
    notify(database, old, now - 10 * DAY, delivered=now - 10 * DAY)
    recent = add_alert(
        database, status="resolved", starts_at=now - 3 * DAY, ends_at=now - 2 * DAY, name="Hooli"
    )
    with database.session() as session:
        delete_rule(session, session.scalars(select(AlertRule.id)).one())

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"nothing is due to be sent, found a POST to {request.url}")

    async with httpx.AsyncClient(transport=httpx.MockTransport(unreachable)) as client:
        await deliver_pending(database, client, now=now)
        assert alert_ids(database) == {old, recent}
        async with open_monitor(retention(tmp_path, database_url)) as monitor:
            report = await monitor.prune()
        assert report is not None and report.alerts_pruned == 1
        assert alert_ids(database) == {recent}
        with database.session() as session:
            assert [(a.id, a.rule_deleted) for a in alerts_out(session, list_alerts(session))] == [
                (recent, True)
            ]
            session.execute(delete(Alert))  # the retention reaches the last one too
        await deliver_pending(database, client, now=now)
    with database.session() as session:
        assert session.scalars(select(AlertRule.id)).all() == []
