"""Alert rules against a real database, and webhook delivery to a real receiver on loopback.

Every test sets ``now`` and inserts stories directly: a calm history of 10 stories an hour per entity (2 or 3
negative), and sometimes a burst of 15 negative stories half an hour before ``NOW``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from sqlalchemy import event, func, select, text, update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from finance_sentiment import create_app
from finance_sentiment.alerting import Transition, evaluate_rules, fingerprint
from finance_sentiment.database import Database
from finance_sentiment.delivery import (
    CONCURRENT_POSTS,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    ZERO_TIME,
    DeliveryReport,
    deliver_pending,
    pending,
)
from finance_sentiment.monitor import open_monitor
from finance_sentiment.retention import cited_urls
from finance_sentiment.rules import create_rule, delete_rule, list_rules, update_rule
from finance_sentiment.schemas import AlertRuleIn, AlertRulePatch
from finance_sentiment.settings import FetchSettings, FinanceSentimentSettings
from finance_sentiment.tables import Alert, AlertRule, Document, DocumentTag, OutboxMessage
from tests.conftest import serve_app
from textcore.sql import utcnow

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PENDING = "finance_notifications_pending"
OLDEST = "finance_notifications_oldest_pending_age_seconds"
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
_ids = itertools.count()


def _story(seen_at: datetime, label: str, sentiment: float, tags: dict[str, str], title: str) -> Document:
    n = next(_ids)
    document = Document(
        url=f"https://news.example/{n}",
        content_hash=f"{n:064x}",
        title=title,
        text=title,
        seen_at=seen_at,
        label=label,
        scores={label: 1.0},
        sentiment=sentiment,
        model_version="test",
    )
    document.tags = [DocumentTag(kind=kind, name=name) for kind, name in tags.items()]
    return document


def add_calm(db: Database, entity: str, *, hours: int = 7, end: datetime = NOW) -> None:
    """Ten stories an hour for ``hours`` hours before ``end``, 2 or 3 of them negative."""
    with db.session() as session:
        for k in range(hours):
            start = end - (k + 1) * HOUR
            for i in range(10):
                label = "negative" if i < 2 + k % 2 else "neutral"
                sentiment = -0.3 if label == "negative" else 0.05
                tags = {"entity": entity, "topic": "earnings"}
                seen_at = start + (i + 1) * 5 * MINUTE
                session.add(_story(seen_at, label, sentiment, tags, f"{entity} calm {k}/{i}"))


def add_burst(db: Database, entity: str, *, count: int = 15, end: datetime = NOW) -> None:
    """``count`` negative stories a minute apart from ``end`` - 30 min; sentiment -0.3 - 0.04 i (i from 0)."""
    with db.session() as session:
        for i in range(count):
            tags = {"entity": entity, "topic": "fraud"}
            title = f"{entity} accused of fraud, part {i}"
            session.add(_story(end - 30 * MINUTE + i * MINUTE, "negative", -0.3 - 0.04 * i, tags, title))


def add_rule(db: Database, **overrides: object) -> None:
    values: dict[str, object] = {
        "name": "entity-spike",
        "group_by": "entity",
        "match": [],
        "window_seconds": 3600,
        "baseline_windows": 6,
        "min_count": 5,
        "min_negative_share": 0.4,
        "z_threshold": 3.0,
        "method": "ewma",
        "repeat_interval_seconds": 600,
        "webhook_url": "http://127.0.0.1:9/hook",
        "receiver": "risk-team",
        "secret": None,
    }
    values.update(overrides)
    with db.session() as session:
        session.add(AlertRule(**values))


def outbox(db: Database) -> list[OutboxMessage]:
    with db.session() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def fire(db: Database, entity: str = "Acme", **rule: object) -> Transition:
    """A rule, a calm history and a burst about ``entity``: one new alert at NOW."""
    add_rule(db, **rule)
    add_calm(db, entity)
    add_burst(db, entity)
    (transition,) = evaluate_rules(db, now=NOW)
    return transition


def fire_four(db: Database, **rule: object) -> None:
    """One rule, and a burst about each of four entities: four alerts at NOW, one message each."""
    add_rule(db, **rule)
    for entity in ("Acme", "Globex", "Initech", "Umbrella"):
        add_calm(db, entity)
        add_burst(db, entity)
    assert len(evaluate_rules(db, now=NOW)) == 4


def test_a_calm_period_raises_nothing(database: Database) -> None:
    add_rule(database)
    add_calm(database, "Acme")
    assert evaluate_rules(database, now=NOW) == []
    assert outbox(database) == []


def test_a_burst_fires_once_repeats_after_the_interval_and_resolves_later(database: Database) -> None:
    transition = fire(database)
    labels = {"alertname": "entity-spike", "rule": "entity-spike", "entity": "Acme", "severity": "warning"}
    assert (transition.rule, transition.labels, transition.status) == ("entity-spike", labels, "firing")
    assert evaluate_rules(database, now=NOW + MINUTE) == []  # nothing new before the repeat interval
    (first,) = outbox(database)
    assert first.payload["status"] == "firing"
    assert first.url == "http://127.0.0.1:9/hook"
    assert (first.next_attempt_at, first.expires_at) == (NOW, NOW + 24 * HOUR)

    (repeat,) = evaluate_rules(database, now=NOW + 10 * MINUTE)
    assert (repeat.alert_id, repeat.status) == (transition.alert_id, "repeat")
    assert evaluate_rules(database, now=NOW + 11 * MINUTE) == []

    (resolved,) = evaluate_rules(database, now=NOW + 2 * HOUR)  # the burst is baseline now
    assert (resolved.alert_id, resolved.status) == (transition.alert_id, "resolved")
    messages = outbox(database)
    assert [m.payload["status"] for m in messages] == ["firing", "firing", "resolved"]
    assert len({m.idempotency_key for m in messages}) == 3
    with database.session() as session:
        alert = session.get_one(Alert, transition.alert_id)
    assert (alert.status, alert.starts_at, alert.ends_at) == ("resolved", NOW, NOW + 2 * HOUR)
    assert alert.fingerprint == fingerprint(labels)
    assert evaluate_rules(database, now=NOW + 2 * HOUR + MINUTE) == []


def test_a_burst_about_a_company_rarely_in_the_news_fires(database: Database) -> None:
    # Over the day before, one negative story and two neutral ones: too few to set the baseline's share.
    add_rule(database, baseline_windows=24)
    with database.session() as session:
        for hours, label, sentiment in ((15, "neutral", 0.0), (9, "neutral", 0.1), (5, "negative", -0.4)):
            tags = {"entity": "Initech"}
            session.add(_story(NOW - hours * HOUR, label, sentiment, tags, f"Initech story {hours}h ago"))
    add_burst(database, "Initech")
    (transition,) = evaluate_rules(database, now=NOW)
    assert (transition.labels["entity"], transition.status) == ("Initech", "firing")
    with database.session() as session:
        annotations = session.get_one(Alert, transition.alert_id).annotations
    assert (annotations["count"], annotations["baseline_negative_share"]) == ("15", "0.200")


def test_an_alert_at_the_negative_share_floor_does_not_flap(database: Database) -> None:
    # A calm history, then 20 stories in the last hour, 8 negative: 40 %, the rule's floor, and z about 1.4.
    add_rule(database, min_negative_share=0.4, z_threshold=1.0)
    add_calm(database, "Acme", end=NOW - HOUR)
    with database.session() as session:
        for i in range(20):
            label, sentiment = ("negative", -0.4) if i < 8 else ("neutral", 0.05)
            seen_at = NOW - 40 * MINUTE + i * MINUTE
            session.add(_story(seen_at, label, sentiment, {"entity": "Acme"}, f"Acme now {i}"))
    (fired,) = evaluate_rules(database, now=NOW)
    assert fired.status == "firing"
    # One neutral story more (8 of 21: 38 %), then one negative more (9 of 22: 41 %): the same episode
    # goes on, not resolved and fired again with each story.
    with database.session() as session:
        session.add(_story(NOW + 10 * SECOND, "neutral", 0.05, {"entity": "Acme"}, "Acme neutral"))
    assert evaluate_rules(database, now=NOW + 30 * SECOND) == []
    with database.session() as session:
        session.add(_story(NOW + 40 * SECOND, "negative", -0.4, {"entity": "Acme"}, "Acme negative"))
    assert evaluate_rules(database, now=NOW + MINUTE) == []
    assert [m.payload["status"] for m in outbox(database)] == ["firing"]
    with database.session() as session:
        alerts = list(session.scalars(select(Alert)))
    assert [(a.id, a.status) for a in alerts] == [(fired.alert_id, "firing")]
    # Once the share is back near the baseline, the alert resolves.
    (resolved,) = evaluate_rules(database, now=NOW + 2 * HOUR)
    assert (resolved.alert_id, resolved.status) == (fired.alert_id, "resolved")


def _hovering_volume(db: Database) -> list[list[str]]:
    """A company rarely in the news: five negative stories in the last hour (the rule's minimum volume),
    then evaluations as the oldest slides out of the window (4 left) and a new one comes (5 again), twice;
    the statuses of each evaluation."""
    with db.session() as session:
        for minutes in (50, 40, 30, 20, 10):
            title = f"Initech story {minutes} min ago"
            session.add(_story(NOW - minutes * MINUTE, "negative", -0.5, {"entity": "Initech"}, title))
    statuses = [[t.status for t in evaluate_rules(db, now=NOW)]]
    for k in range(2):
        start = NOW + 11 * MINUTE + k * 10 * MINUTE  # the story 50 (then 40) minutes before NOW has left
        statuses.append([t.status for t in evaluate_rules(db, now=start)])
        with db.session() as session:
            title = f"Initech story {k}"
            session.add(_story(start + MINUTE, "negative", -0.5, {"entity": "Initech"}, title))
        statuses.append([t.status for t in evaluate_rules(db, now=start + 2 * MINUTE)])
    return statuses


def test_an_alert_at_the_minimum_volume_does_not_flap(database: Database) -> None:
    # The window's volume hovers at min_count (5, 4, 5, 4, 5 stories, every one negative): one episode,
    # one "firing", not a "resolved" and a new "firing" with each story leaving and coming.
    add_rule(database, z_threshold=1.5, repeat_interval_seconds=14400)
    assert _hovering_volume(database) == [["firing"], [], [], [], []]
    with database.session() as session:
        (alert,) = session.scalars(select(Alert)).all()
    assert alert.status == "firing"
    # Below half the minimum volume (2 stories of 5 left in the window), it resolves.
    (resolved,) = evaluate_rules(database, now=NOW + 55 * MINUTE)
    assert (resolved.alert_id, resolved.status) == (alert.id, "resolved")
    assert [m.payload["status"] for m in outbox(database)] == ["firing", "resolved"]


def test_a_rule_resolving_at_its_thresholds_has_no_hysteresis(database: Database) -> None:
    # resolve_fraction 1.0: the alert resolves as soon as the window misses the minimum volume.
    add_rule(database, z_threshold=1.5, repeat_interval_seconds=14400, resolve_fraction=1.0)
    assert _hovering_volume(database) == [["firing"], ["resolved"], ["firing"], ["resolved"], ["firing"]]


def test_a_rule_asking_for_a_sentiment_drop_fires_only_when_the_mean_falls_that_far(
    database: Database,
) -> None:
    # The last hour's mean score is -0.356 (the burst and that hour's calm stories) against a baseline
    # mean of -0.0375: a drop of about 0.32.
    add_rule(database, name="mild", min_sentiment_drop=0.25)
    add_rule(database, name="strict", min_sentiment_drop=0.4)
    add_calm(database, "Acme")
    add_burst(database, "Acme")
    (transition,) = evaluate_rules(database, now=NOW)
    assert (transition.rule, transition.status) == ("mild", "firing")


def test_only_the_bursting_entity_fires_and_match_restricts_a_rule(database: Database) -> None:
    add_rule(database)
    add_rule(database, name="acme-only", match=["Acme"])
    add_calm(database, "Acme")
    add_calm(database, "Globex")
    add_burst(database, "Globex")
    (transition,) = evaluate_rules(database, now=NOW)
    assert (transition.rule, transition.labels["entity"]) == ("entity-spike", "Globex")


def test_a_rule_with_unusable_stored_settings_does_not_silence_the_others(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    add_rule(database, name="broken", method="median")
    transition = fire(database)  # exactly one transition: the broken rule was skipped
    assert transition.rule == "entity-spike"
    assert "expected method in ('ewma', 'robust_z'), found 'median'" in caplog.text


def test_an_open_alert_whose_rule_was_renamed_is_resolved(database: Database) -> None:
    old = fire(database)
    with database.session() as session:
        session.scalars(select(AlertRule)).one().name = "renamed"
    by_status = {t.status: t for t in evaluate_rules(database, now=NOW + MINUTE)}
    assert sorted(by_status) == ["firing", "resolved"]
    assert (by_status["resolved"].alert_id, by_status["resolved"].labels) == (old.alert_id, old.labels)
    assert by_status["firing"].labels["rule"] == "renamed"


def test_disabling_a_rule_resolves_its_open_alerts(database: Database) -> None:
    old = fire(database)
    with database.session() as session:
        session.scalars(select(AlertRule)).one().enabled = False
    transitions = evaluate_rules(database, now=NOW + MINUTE)
    assert [(t.alert_id, t.status) for t in transitions] == [(old.alert_id, "resolved")]
    assert evaluate_rules(database, now=NOW + 2 * MINUTE) == []


def test_an_all_stories_rule_has_no_group_label(database: Database) -> None:
    add_rule(database, name="everything", group_by="all")
    add_calm(database, "Acme")
    add_burst(database, "Acme", count=20)
    (transition,) = evaluate_rules(database, now=NOW)
    assert transition.labels == {"alertname": "everything", "rule": "everything", "severity": "warning"}
    (message,) = outbox(database)
    assert message.payload["groupLabels"] == {"alertname": "everything"}


def test_annotations_carry_the_numbers_and_the_most_negative_headlines(database: Database) -> None:
    transition = fire(database)
    with database.session() as session:
        annotations = session.get_one(Alert, transition.alert_id).annotations
    assert annotations["window_start"] == "2026-03-02T11:00:00.000Z"
    assert annotations["window_end"] == "2026-03-02T12:00:00.000Z"
    assert (annotations["count"], annotations["negative_count"]) == ("25", "17")  # 10 calm (2 neg) + 15
    assert annotations["negative_share"] == "0.680"
    assert float(annotations["baseline_negative_share"]) == pytest.approx(0.25, abs=0.05)
    assert float(annotations["z_score"]) >= 3.0
    assert float(annotations["mean_sentiment"]) < float(annotations["baseline_mean_sentiment"]) < 0
    assert annotations["summary"] == "Negative news spike for entity Acme (entity-spike)"
    lines = annotations["top_negative"].splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("Acme accused of fraud, part 14 — https://news.example/")
    evidence = json.loads(annotations["evidence"])
    assert [e["title"] for e in evidence] == [f"Acme accused of fraud, part {i}" for i in range(14, 9, -1)]
    assert evidence[0]["sentiment"] == pytest.approx(-0.86)
    assert evidence[0]["seen_at"] == "2026-03-02T11:44:00.000Z"
    assert all(line.endswith(e["url"]) for line, e in zip(lines, evidence, strict=True))


def test_a_story_with_a_whole_article_as_its_title_is_quoted_short(database: Database) -> None:
    # A JSON source whose title path points at the body: a 60,000-character headline, the most negative.
    title = "Acme auditors resign " + "and the board says nothing " * 2220
    with database.session() as session:
        session.add(_story(NOW - 20 * MINUTE, "negative", -0.99, {"entity": "Acme"}, title))
    transition = fire(database)
    with database.session() as session:
        annotations = session.get_one(Alert, transition.alert_id).annotations
    (quoted, *_) = json.loads(annotations["evidence"])
    assert len(quoted["title"]) <= 300
    assert quoted["title"].startswith("Acme auditors resign and the board says nothing")
    assert quoted["title"].endswith("…")
    assert annotations["top_negative"].splitlines()[0] == f"{quoted['title']} — {quoted['url']}"
    (message,) = outbox(database)
    assert len(json.dumps(message.payload)) < 20_000  # the payload carries the evidence twice


@pytest.mark.parametrize(
    ("title", "quoted"),
    [
        # the cut falls inside "unquestionably": the quote ends at the word before it
        (
            "Acme auditors resign " + "unquestionably " * 40,
            "Acme auditors resign" + " unquestionably" * 18 + "…",
        ),
        # no space in the first half: a hard cut, as for stored titles
        ("Acme-" + "x" * 400, "Acme-" + "x" * 294 + "…"),
    ],
)
def test_a_long_evidence_headline_is_cut_between_words_with_an_ellipsis(
    database: Database, title: str, quoted: str
) -> None:
    with database.session() as session:
        session.add(_story(NOW - 20 * MINUTE, "negative", -0.99, {"entity": "Acme"}, title))
    transition = fire(database)
    with database.session() as session:
        annotations = session.get_one(Alert, transition.alert_id).annotations
    (evidence, *_) = json.loads(annotations["evidence"])
    assert evidence["title"] == quoted and len(quoted) <= 300
    assert annotations["top_negative"].splitlines()[0] == f"{quoted} — {evidence['url']}"


def test_the_payload_is_alertmanager_v4(database: Database) -> None:
    transition = fire(database)
    evaluate_rules(database, now=NOW + 2 * HOUR)
    firing, resolved = (m.payload for m in outbox(database))
    assert (firing["version"], firing["status"], firing["receiver"]) == ("4", "firing", "risk-team")
    assert firing["groupKey"] == '{}:{alertname="entity-spike",entity="Acme"}'
    assert firing["commonLabels"] == transition.labels
    (alert,) = firing["alerts"]
    assert alert["fingerprint"] == fingerprint(transition.labels)
    assert (alert["startsAt"], alert["endsAt"]) == ("2026-03-02T12:00:00.000Z", ZERO_TIME)
    assert alert["generatorURL"].startswith("http://127.0.0.1:8000/v1/alerts?rule_id=")
    assert resolved["status"] == resolved["alerts"][0]["status"] == "resolved"
    assert resolved["alerts"][0]["endsAt"] == "2026-03-02T14:00:00.000Z"


@dataclass
class Receiver:
    """A webhook receiver that checks the HMAC itself and answers with ``statuses`` in turn, then 200."""

    secret: str | None = None
    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        self.received.append((dict(request.headers), body))
        if self.secret is not None:
            expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, request.headers.get(SIGNATURE_HEADER, "")):
                return Response("bad signature", status_code=401)
        return Response(status_code=self.statuses.pop(0) if self.statuses else 200)

    @property
    def keys(self) -> list[str]:
        return [headers[IDEMPOTENCY_HEADER.lower()] for headers, _ in self.received]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    """A receiver and its webhook URL; tests set its secret and statuses."""
    state = Receiver()
    with serve_app(Starlette(routes=[Route("/hook", state.hook, methods=["POST"])])) as base:
        yield state, f"{base}/hook"


async def test_a_signed_webhook_is_verified_and_retried_with_the_same_key(
    database: Database, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    state.secret, state.statuses = "s3cret", [500]
    fire(database, webhook_url=url, secret="s3cret")
    async with httpx.AsyncClient(timeout=5) as client:
        report = await deliver_pending(database, client, now=NOW)
        assert (report.delivered, report.failed, report.expired) == (0, 1, 0)
        (message,) = outbox(database)
        assert (message.attempts, message.next_attempt_at) == (1, NOW + 5 * SECOND)
        assert message.last_error == "HTTP 500: "
        early = await deliver_pending(database, client, now=NOW + 4 * SECOND)
        assert (early.delivered, early.failed) == (0, 0)  # not due yet
        report = await deliver_pending(database, client, now=NOW + 5 * SECOND)
    assert (report.delivered, report.failed) == (1, 0)
    (message,) = outbox(database)
    assert (message.attempts, message.delivered_at, message.last_error) == (1, NOW + 5 * SECOND, None)
    assert len(state.received) == 2
    assert state.keys == [message.idempotency_key] * 2
    headers, body = state.received[1]
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == message.payload


async def test_a_wrong_secret_or_a_transport_error_is_a_failure_with_backoff(
    database: Database, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    state.secret = "expected"
    fire(database, webhook_url=url, secret="other")
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await deliver_pending(database, client, now=NOW)).failed == 1
    assert outbox(database)[0].last_error == "HTTP 401: bad signature"

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        later = NOW + 5 * SECOND
        assert (await deliver_pending(database, client, now=later, backoff_max_s=8)).failed == 1
    (message,) = outbox(database)
    assert (message.attempts, message.next_attempt_at) == (2, later + 8 * SECOND)  # 10 s, capped at 8
    assert message.last_error == "ConnectError: connection refused"


async def test_a_receivers_error_page_with_control_characters_is_recorded_readable(
    database: Database,
) -> None:
    # A receiver (or a proxy before it) answering a binary or garbled error page: its NUL could not be stored
    # as the message's last_error on PostgreSQL, so the pass raised, the message stayed leased with no
    # backoff and no error shown, and every later pass failed the same way; an escape sequence reached the
    # API and the log as it was.
    async def garbled(request: Request) -> Response:
        return Response(b"bad\x00gateway \x1b[31mdown\x1b[0m\x07", status_code=502)

    with serve_app(Starlette(routes=[Route("/hook", garbled, methods=["POST"])])) as base:
        fire(database, webhook_url=f"{base}/hook")
        async with httpx.AsyncClient(timeout=5) as client:
            report = await deliver_pending(database, client, now=NOW)
    assert (report.delivered, report.failed) == (0, 1)
    (message,) = outbox(database)
    assert (message.attempts, message.next_attempt_at) == (1, NOW + 5 * SECOND)
    assert message.last_error == "HTTP 502: bad gateway [31mdown [0m"


async def test_a_webhook_url_the_client_cannot_use_fails_only_its_own_message(
    database: Database, receiver: tuple[Receiver, str]
) -> None:
    # A rule stored before URLs were checked (the API refuses this port now): its message fails and is
    # retried later; the other rule's message is still delivered in the same pass.
    state, url = receiver
    add_rule(database, name="broken-hook", webhook_url="http://127.0.0.1:99999/hook")
    add_rule(database, name="good-hook", webhook_url=url)
    add_calm(database, "Acme")
    add_burst(database, "Acme")
    assert len(evaluate_rules(database, now=NOW)) == 2
    async with httpx.AsyncClient(timeout=5) as client:
        report = await deliver_pending(database, client, now=NOW)
    assert (report.delivered, report.failed) == (1, 1)
    assert len(state.received) == 1
    broken = next(m for m in outbox(database) if m.url.endswith(":99999/hook"))
    assert broken.delivered_at is None and broken.attempts == 1 and broken.last_error


async def test_a_corrected_webhook_url_reaches_the_messages_already_waiting(
    database: Database, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    fire(database, webhook_url="http://127.0.0.1:9/hook")  # a typo: nothing listens there
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await deliver_pending(database, client, now=NOW)).failed == 1
        with database.session() as session:
            session.execute(update(AlertRule).values(webhook_url=url))  # the operator fixes the rule
        report = await deliver_pending(database, client, now=NOW + 5 * SECOND)
    assert (report.delivered, report.failed) == (1, 0)
    assert len(state.received) == 1
    (message,) = outbox(database)
    assert (message.url, message.delivered_at) == (url, NOW + 5 * SECOND)  # where it went


async def test_a_firing_alert_reaches_a_rules_new_webhook_at_the_next_evaluation(
    database: Database, receiver: tuple[Receiver, str]
) -> None:
    # The alert's "firing" went to the former receiver; the operator then moves the rule to another one
    # (a new on-call channel). That receiver used to hear nothing of the spike for a whole repeat interval
    # (4 hours by default), then perhaps only its "resolved"; now it is told at the next evaluation.
    former, former_url = receiver
    fire(database, webhook_url=former_url)  # repeat interval 600 s
    new = Receiver()
    with serve_app(Starlette(routes=[Route("/hook", new.hook, methods=["POST"])])) as base:
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await deliver_pending(database, client, now=NOW)).delivered == 1
            assert evaluate_rules(database, now=NOW + MINUTE) == []  # same webhook: no repeat yet
            with database.session() as session:
                (rule_id,) = session.scalars(select(AlertRule.id)).all()
                update_rule(session, rule_id, AlertRulePatch(webhook_url=f"{base}/hook"))
            (told,) = evaluate_rules(database, now=NOW + 2 * MINUTE)
            assert told.status == "repeat"
            assert (await deliver_pending(database, client, now=NOW + 2 * MINUTE)).delivered == 1
            assert evaluate_rules(database, now=NOW + 3 * MINUTE) == []  # told: back to the repeat interval
            (resolved,) = evaluate_rules(database, now=NOW + 2 * HOUR)
            assert resolved.status == "resolved"
            assert (await deliver_pending(database, client, now=NOW + 2 * HOUR)).delivered == 2
    assert [json.loads(body)["status"] for _, body in former.received] == ["firing", "resolved"]
    sent = [json.loads(body)["alerts"][0] for _, body in new.received]
    assert [(alert["status"], alert["labels"]["entity"]) for alert in sent] == [
        ("firing", "Acme"),
        ("resolved", "Acme"),
    ]


async def test_every_former_webhook_told_an_alert_fires_is_told_once_it_resolved(
    database: Database, receiver: tuple[Receiver, str], caplog: pytest.LogCaptureFixture
) -> None:
    # Receiver A is told the alert fires and opens an incident; the rule is moved to a webhook where
    # nothing listens, then (that notification still waiting) to B, which is told. When the burst ends, A
    # and B are each told "resolved" once, signed with the rule's secret, each under its own key; A's is
    # retried at A while A is down. The dead webhook was never told anything, so it is owed nothing. A's
    # incident used to stay open for good: only the rule's webhook as it was at the end was told.
    a, url = receiver
    a_url = f"{url}?token=a-secret-token"
    b = Receiver(secret="s3cret")
    a.secret = "s3cret"
    fire(database, webhook_url=a_url, secret="s3cret")
    with serve_app(Starlette(routes=[Route("/hook", b.hook, methods=["POST"])])) as base:
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await deliver_pending(database, client, now=NOW)).delivered == 1  # A: firing
            with database.session() as session:
                (rule_id,) = session.scalars(select(AlertRule.id)).all()
                update_rule(session, rule_id, AlertRulePatch(webhook_url="http://127.0.0.1:9/hook"))
            assert [t.status for t in evaluate_rules(database, now=NOW + MINUTE)] == ["repeat"]
            assert (await deliver_pending(database, client, now=NOW + MINUTE)).failed == 1  # nobody there
            with database.session() as session:
                update_rule(session, rule_id, AlertRulePatch(webhook_url=f"{base}/hook"))
            assert (await deliver_pending(database, client, now=NOW + 2 * MINUTE)).delivered == 1  # B
            (resolved,) = evaluate_rules(database, now=NOW + 2 * HOUR)
            assert resolved.status == "resolved"
            a.statuses = [503]  # A is down for the first try
            first = await deliver_pending(database, client, now=NOW + 2 * HOUR)
            assert (first.delivered, first.failed) == (1, 1)
            reports = [
                await deliver_pending(database, client, now=NOW + 3 * HOUR + k * MINUTE) for k in (0, 1)
            ]
            assert [report.delivered for report in reports] == [1, 0]
    a_sent = [json.loads(body) for _, body in a.received]
    b_sent = [json.loads(body) for _, body in b.received]
    assert [p["status"] for p in a_sent] == ["firing", "resolved", "resolved"]  # the first refused (503)
    assert [p["status"] for p in b_sent] == ["firing", "resolved"]
    assert a_sent[2] == b_sent[1]  # the same Alertmanager v4 body
    assert a_sent[2]["alerts"][0]["endsAt"] == "2026-03-02T14:00:00.000Z"
    assert a.keys[1] == a.keys[2] != b.keys[1]  # one key per receiver, kept on the retry
    with database.session() as session:
        resolved_urls = select(OutboxMessage.url).where(OutboxMessage.delivered_at.is_not(None))
        assert session.scalars(resolved_urls.order_by(OutboxMessage.id)).all() == [
            a_url,
            f"{base}/hook",
            f"{base}/hook",
            a_url,
        ]
        assert session.scalar(select(func.count()).select_from(OutboxMessage).where(pending())) == 0
    assert "a-secret-token" not in caplog.text
    assert "token=****" in caplog.text  # A's refusal was logged, masked


@pytest.mark.parametrize("old_secret", ["a-key", None])
async def test_a_former_webhook_is_told_it_resolved_under_the_secret_that_went_with_it(
    database: Database, receiver: tuple[Receiver, str], old_secret: str | None
) -> None:
    # The rule moves from A to B with a new secret in one change (B is another receiver, with its own
    # key). A's "resolved" was signed with B's secret, which A never had: A refused it (401) for a week
    # and its incident stayed open. It goes signed with A's own secret now, or unsigned if A had none.
    a, a_url = receiver
    a.secret = old_secret
    b = Receiver(secret="b-key")
    fire(database, webhook_url=a_url, secret=old_secret)
    with serve_app(Starlette(routes=[Route("/hook", b.hook, methods=["POST"])])) as base:
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await deliver_pending(database, client, now=NOW)).delivered == 1  # A: firing
            with database.session() as session:
                (rule_id,) = session.scalars(select(AlertRule.id)).all()
                update_rule(session, rule_id, AlertRulePatch(webhook_url=f"{base}/hook", secret="b-key"))
            assert [t.status for t in evaluate_rules(database, now=NOW + MINUTE)] == ["repeat"]
            assert (await deliver_pending(database, client, now=NOW + MINUTE)).delivered == 1  # B: firing
            assert [t.status for t in evaluate_rules(database, now=NOW + 2 * HOUR)] == ["resolved"]
            report = await deliver_pending(database, client, now=NOW + 2 * HOUR)
            assert (report.delivered, report.failed) == (2, 0)
    assert [json.loads(body)["status"] for _, body in a.received] == ["firing", "resolved"]
    assert [json.loads(body)["status"] for _, body in b.received] == ["firing", "resolved"]
    signed = [SIGNATURE_HEADER.lower() in headers for headers, _ in a.received]
    assert signed == [old_secret is not None] * 2


async def test_the_alerts_of_one_pass_are_sent_at_once(database: Database) -> None:
    in_flight, most = 0, 0

    async def slow_hook(request: Request) -> Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.3)
        in_flight -= 1
        return Response(status_code=200)

    fire_four(database, webhook_url="http://127.0.0.1:9/hook")
    with serve_app(Starlette(routes=[Route("/hook", slow_hook, methods=["POST"])])) as base:
        with database.session() as session:
            session.execute(update(AlertRule).values(webhook_url=f"{base}/hook"))
        async with httpx.AsyncClient(timeout=5) as client:
            report = await deliver_pending(database, client, now=NOW)
    assert report.delivered == 4
    assert most > 1  # each alert has its own order; different alerts need not wait for each other


async def test_messages_not_started_within_the_send_window_are_handed_back(
    database: Database, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    fire(database, webhook_url=url)
    async with httpx.AsyncClient(timeout=5) as client:
        late = await deliver_pending(database, client, now=NOW, send_window_s=0)
        assert (late.delivered, late.failed) == (0, 0)
        (message,) = outbox(database)
        assert (message.attempts, message.next_attempt_at) == (0, NOW)  # due again, not leased for 5 min
        report = await deliver_pending(database, client, now=NOW + SECOND)
    assert report.delivered == 1 and len(state.received) == 1


async def test_an_undeliverable_message_expires_after_a_day(
    database: Database, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    fire(database, webhook_url=url)
    async with httpx.AsyncClient(timeout=5) as client:
        report = await deliver_pending(database, client, now=NOW + 24 * HOUR)
    assert (report.delivered, report.failed, report.expired) == (0, 0, 1)
    assert state.received == []
    assert outbox(database)[0].expired


async def test_a_resolved_whose_firing_was_delivered_outlasts_the_day_the_others_keep(
    database: Database, receiver: tuple[Receiver, str]
) -> None:
    # The receiver got Acme's "firing" and opened an incident (PagerDuty, Grafana OnCall), then was down for
    # more than a day: the "resolved" used to expire with the day, and the incident stayed open for good.
    state, url = receiver
    add_rule(database, webhook_url=url)
    for entity, end in (("Acme", NOW), ("Globex", NOW + HOUR)):
        add_calm(database, entity, end=end)
        add_burst(database, entity, end=end)
    async with httpx.AsyncClient(timeout=5) as client:
        assert [t.status for t in evaluate_rules(database, now=NOW)] == ["firing"]  # Acme
        assert (await deliver_pending(database, client, now=NOW)).delivered == 1
        state.statuses = [503] * 100  # the receiver goes down
        later = evaluate_rules(database, now=NOW + HOUR)
        changes = sorted((t.labels["entity"], t.status) for t in later)
        assert changes == [("Acme", "resolved"), ("Globex", "firing")]
        assert [t.status for t in evaluate_rules(database, now=NOW + 2 * HOUR)] == ["resolved"]  # Globex
        assert (await deliver_pending(database, client, now=NOW + HOUR)).failed == 2
        # A day on: Globex's "firing" (never delivered) and its "resolved" expire, Acme's "resolved" is tried.
        report = await deliver_pending(database, client, now=NOW + 26 * HOUR)
        assert (report.delivered, report.failed, report.expired) == (0, 1, 2)
        state.statuses.clear()  # back after six days
        back = await deliver_pending(database, client, now=NOW + HOUR + 7 * 24 * HOUR - MINUTE)
    assert (back.delivered, back.failed, back.expired) == (1, 0, 0)
    last = json.loads(state.received[-1][1])
    assert (last["status"], last["alerts"][0]["labels"]["entity"]) == ("resolved", "Acme")
    assert pending_messages(database) == []


async def test_a_resolved_refused_for_a_week_is_given_up_on(
    database: Database, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    fire(database, webhook_url=url)
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await deliver_pending(database, client, now=NOW)).delivered == 1
        evaluate_rules(database, now=NOW + 2 * HOUR)
        state.statuses = [503] * 100
        kept = await deliver_pending(database, client, now=NOW + 2 * HOUR + 7 * 24 * HOUR - SECOND)
        gone = await deliver_pending(database, client, now=NOW + 2 * HOUR + 7 * 24 * HOUR)
    assert (kept.failed, kept.expired) == (1, 0)
    assert (gone.delivered, gone.failed, gone.expired) == (0, 0, 1)
    (firing, resolved) = outbox(database)
    assert firing.delivered_at == NOW and resolved.expired
    assert resolved.expires_at == NOW + 2 * HOUR + 7 * 24 * HOUR


async def test_fin_resolved_expiry_days_sets_how_long_a_resolved_is_tried(
    tmp_path: Path, database: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Acme's and Globex's "firing" reached the receiver; it refuses every "resolved" since. With a 4-day
    # expiry, Acme's (queued 5 days ago) is given up on and Globex's (3 days ago) tried again.
    async def hook(request: Request) -> Response:
        return Response(status_code=503 if json.loads(await request.body())["status"] == "resolved" else 200)

    now = utcnow()
    acme, globex = now - 5 * 24 * HOUR, now - 3 * 24 * HOUR
    with serve_app(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as base:
        add_rule(database, webhook_url=f"{base}/hook")
        async with httpx.AsyncClient(timeout=5) as client:
            for entity, end in (("Acme", acme), ("Globex", globex)):
                add_calm(database, entity, end=end)
                add_burst(database, entity, end=end)
                assert [t.status for t in evaluate_rules(database, now=end)] == ["firing"]
                assert (await deliver_pending(database, client, now=end)).delivered >= 1
                assert [t.status for t in evaluate_rules(database, now=end + HOUR)] == ["resolved"]
        monkeypatch.setenv("FIN_RESOLVED_EXPIRY_DAYS", "4")
        fetch = FetchSettings(allowed_networks=("127.0.0.0/8",))
        settings = FinanceSentimentSettings(
            database_url=database_url, scheduler=False, fetch=fetch, registry=tmp_path / "registry"
        )
        assert settings.resolved_expiry_days == 4
        async with open_monitor(settings) as monitor:
            report = await monitor.deliver()
    assert (report.delivered, report.failed, report.expired) == (0, 1, 1)
    monkeypatch.setenv("FIN_RESOLVED_EXPIRY_DAYS", "0")
    with pytest.raises(ValidationError, match="resolved_expiry_days"):
        FinanceSentimentSettings()


async def test_the_outbox_is_measured_at_metrics_from_the_database(
    tmp_path: Path, database: Database, database_url: str, receiver: tuple[Receiver, str]
) -> None:
    # Only a counter of failed tries existed: no rule could say "the outbox is stuck". The API replica
    # serving /metrics here delivers nothing itself (no scheduler): the gauges read the shared database.
    state, url = receiver
    state.statuses = [503]  # refuses once, then accepts
    queued = utcnow() - 2 * HOUR
    add_calm(database, "Acme", end=queued)
    add_burst(database, "Acme", end=queued)
    add_rule(database, webhook_url=url)
    settings = FinanceSentimentSettings(
        database_url=database_url, scheduler=False, registry=tmp_path / "registry"
    )
    with serve_app(create_app(settings)) as api:
        async with (
            httpx.AsyncClient(base_url=api, timeout=30, trust_env=False) as http,
            httpx.AsyncClient(timeout=5) as client,
        ):

            async def gauges() -> dict[str, float]:
                response = await http.get("/metrics")
                assert response.status_code == 200, response.text
                return {
                    sample.name: sample.value
                    for family in text_string_to_metric_families(response.text)
                    for sample in family.samples
                    if sample.name in (PENDING, OLDEST)
                }

            assert await gauges() == {PENDING: 0, OLDEST: 0}
            assert [t.status for t in evaluate_rules(database, now=queued)] == ["firing"]
            assert (await deliver_pending(database, client, now=utcnow())).failed == 1
            stuck = await gauges()
            assert stuck[PENDING] == 1
            assert 2 * 3600 <= stuck[OLDEST] < 3 * 3600  # queued two hours ago
            assert (await deliver_pending(database, client, now=utcnow() + MINUTE)).delivered == 1
            assert await gauges() == {PENDING: 0, OLDEST: 0}
    assert len(state.received) == 2


async def test_a_scrape_that_cannot_read_the_outbox_leaves_its_gauges_out_and_says_why(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    settings = FinanceSentimentSettings(
        database_url=sqlite_url, scheduler=False, registry=tmp_path / "registry"
    )
    async with open_monitor(settings, registry) as monitor:
        assert registry.get_sample_value(PENDING) == 0
        with monitor.db.session() as session:
            session.execute(text("DROP TABLE outbox"))  # the database can no longer answer the query
        with caplog.at_level("WARNING", logger="finance_sentiment.telemetry"):
            exposed = generate_latest(registry).decode()
    assert PENDING not in exposed and OLDEST not in exposed
    assert "finance_webhook_deliveries_total" in exposed  # the other metrics are still served
    assert any("outbox gauges left out of /metrics" in record.getMessage() for record in caplog.records)
    assert registry.get_sample_value(PENDING) is None  # the closed monitor's gauges are gone


async def test_resolved_is_only_sent_after_firing_is_delivered(
    database: Database, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    fire(database, webhook_url=url)
    evaluate_rules(database, now=NOW + 2 * HOUR)
    async with httpx.AsyncClient(timeout=5) as client:
        first = await deliver_pending(database, client, now=NOW + 2 * HOUR)
        second = await deliver_pending(database, client, now=NOW + 2 * HOUR)
    assert (first.delivered, second.delivered) == (1, 1)
    assert [json.loads(body)["status"] for _, body in state.received] == ["firing", "resolved"]


async def test_after_a_restart_a_stored_alert_is_delivered_exactly_once(
    database: Database, database_url: str, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    fire(database, webhook_url=url)
    database.dispose()  # the process stops before sending anything
    restarted = Database(database_url)
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await deliver_pending(restarted, client, now=NOW + MINUTE)).delivered == 1
            assert (await deliver_pending(restarted, client, now=NOW + 2 * MINUTE)).delivered == 0
    finally:
        restarted.dispose()
    assert len(state.received) == 1
    assert json.loads(state.received[0][1])["alerts"][0]["labels"]["entity"] == "Acme"


async def test_two_senders_at_once_deliver_each_message_once(
    database: Database, database_url: str, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    fire_four(database, webhook_url=url)
    other = Database(database_url)
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            reports = await asyncio.gather(
                deliver_pending(database, client, now=NOW), deliver_pending(other, client, now=NOW)
            )
    finally:
        other.dispose()
    assert sum(report.delivered for report in reports) == 4
    assert sorted(state.keys) == sorted(m.idempotency_key for m in outbox(database))
    with database.session() as session:
        undelivered = select(func.count()).where(OutboxMessage.delivered_at.is_(None))
        assert session.scalar(undelivered) == 0


@pytest.mark.postgres
async def test_on_postgresql_a_second_sender_skips_the_rows_the_first_has_locked(
    postgres_url: str, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    first, second = Database(postgres_url), Database(postgres_url)
    first.migrate()
    fire(first, webhook_url=url)
    meanwhile: list[DeliveryReport] = []

    async def send_from_second() -> DeliveryReport:
        async with httpx.AsyncClient(timeout=5) as client:
            return await deliver_pending(second, client, now=NOW)

    def interleave(*args: Any) -> None:
        statement: str = args[2]
        if "JOIN alert_rules" in statement and not meanwhile:  # the first sender has read its batch
            meanwhile.append(asyncio.run(send_from_second()))

    event.listen(first.engine, "after_cursor_execute", interleave)
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            report = await deliver_pending(first, client, now=NOW)
    finally:
        first.dispose()
        second.dispose()
    assert (meanwhile[0].delivered, report.delivered) == (0, 1)
    assert len(state.received) == 1


def test_every_alert_can_be_listed_page_by_page(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    # GET /v1/alerts answered the newest `limit` (at most 1000) alerts and nothing older: after months of
    # operation the earlier episodes could not be listed at all. Four alerts opened by one evaluation share
    # their start, so paging by time alone would skip some at a page's edge.
    fire_four(database)
    settings = FinanceSentimentSettings(database_url=database_url, scheduler=False, registry=tmp_path / "r")
    with TestClient(create_app(settings)) as client:
        first = client.get("/v1/alerts", params={"status": "firing", "limit": 3})
        assert first.status_code == 200, first.text
        assert len(first.json()) == 3
        following = first.links["next"]["url"]
        assert "status=firing" in following and "limit=3" in following
        second = client.get(following)
        assert len(second.json()) == 1 and "link" not in second.headers
        ids = [alert["id"] for alert in first.json() + second.json()]
        assert ids == sorted(ids, reverse=True) and len(set(ids)) == 4
        assert "link" not in client.get("/v1/alerts").headers  # all on one page
        bad = client.get("/v1/alerts", params={"cursor": "not-a-cursor"})
        assert bad.status_code == 422 and "cursor" in bad.text


def test_a_dashboard_on_another_origin_can_read_the_link_to_the_next_page(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    # The browser hides every response header a CORS response does not expose: a dashboard page paging
    # GET /v1/alerts saw no Link, so it could never get past the first page.
    fire_four(database)
    site = "https://dashboard.example.com"
    settings = FinanceSentimentSettings(
        database_url=database_url, scheduler=False, registry=tmp_path / "r", cors_origins=(site,)
    )
    with TestClient(create_app(settings)) as client:
        preflight = client.options(
            "/v1/alerts",
            headers={
                "Origin": site,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        first = client.get("/v1/alerts", params={"limit": 3}, headers={"Origin": site})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == site
    assert first.status_code == 200 and first.headers["access-control-allow-origin"] == site
    exposed = {name.strip().lower() for name in first.headers["access-control-expose-headers"].split(",")}
    assert "link" in exposed and "cursor=" in first.links["next"]["url"]


def test_deleting_a_rule_through_the_api_resolves_its_firing_alert_at_the_receiver(
    tmp_path: Path, database: Database, database_url: str, receiver: tuple[Receiver, str]
) -> None:
    # A receiver that opened an incident for the alert (PagerDuty, Grafana OnCall) closes it only on a
    # "resolved" notification; deleting the rule must not leave that incident open forever.
    state, url = receiver
    state.secret = "s3cret"
    now = utcnow()
    add_calm(database, "Acme", end=now)
    add_burst(database, "Acme", end=now)
    fetch = FetchSettings(allowed_networks=("127.0.0.0/8",))
    settings = FinanceSentimentSettings(
        database_url=database_url, scheduler=False, fetch=fetch, registry=tmp_path / "registry"
    )
    app = create_app(settings)
    with TestClient(app) as client:
        portal = client.portal
        assert portal is not None
        body = {"name": "entity-spike", "window_seconds": 3600, "baseline_windows": 6, "min_count": 5,
                "min_negative_share": 0.4, "webhook_url": url, "secret": "s3cret"}  # fmt: skip
        created = client.post("/v1/alert-rules", json=body)
        assert created.status_code == 201, created.text
        rule_id = created.json()["id"]
        portal.call(app.state.monitor.evaluate_alerts)  # fires, and sends "firing"
        (firing,) = client.get("/v1/alerts", params={"status": "firing"}).json()

        # The "resolved" is sent by this process right after the answer (the test client waits for it).
        assert client.delete(f"/v1/alert-rules/{rule_id}").status_code == 204
        assert client.get(f"/v1/alert-rules/{rule_id}").status_code == 404
        assert client.get("/v1/alert-rules").json() == []
        (alert,) = client.get("/v1/alerts").json()
        assert (alert["id"], alert["status"], alert["rule"]) == (firing["id"], "resolved", "entity-spike")
        assert alert["deliveries"] == {"pending": 0, "delivered": 2, "expired": 0, "last_error": None}
        again = client.post("/v1/alert-rules", json=body | {"webhook_url": "http://127.0.0.1:9/hook"})
        assert again.status_code == 201, again.text  # the name is free at once

        assert portal.call(app.state.monitor.deliver).delivered == 0  # nothing left for the outbox job
        (kept,) = client.get("/v1/alerts").json()  # everything sent: the alert stays as history
        assert (kept["id"], kept["rule"], kept["rule_deleted"]) == (firing["id"], "entity-spike", True)
    sent = [json.loads(raw) for _, raw in state.received]
    assert [payload["status"] for payload in sent] == ["firing", "resolved"]  # both signed (checked above)
    resolved = sent[1]["alerts"][0]
    assert resolved["fingerprint"] == firing["fingerprint"] and resolved["labels"] == firing["labels"]
    assert resolved["endsAt"] != ZERO_TIME


def test_a_deleted_rules_resolved_alerts_stay_listed_as_history(
    tmp_path: Path, database: Database, database_url: str, receiver: tuple[Receiver, str]
) -> None:
    # A rule whose alert had resolved and been notified was deleted with its alerts at once, while one
    # deleted with a notification still to send kept its alerts listed until the next delivery pass: the
    # record of what fired, and who was told, depended on the outbox's timing. A desk auditing its alerts
    # needs them all, marked as a deleted rule's, until the retention deletes them as any resolved alert.
    state, url = receiver
    now = utcnow()
    add_calm(database, "Acme", end=now)
    add_burst(database, "Acme", end=now)
    add_rule(database, webhook_url=url, secret="s3cret")
    state.secret = "s3cret"
    fetch = FetchSettings(allowed_networks=("127.0.0.0/8",))
    settings = FinanceSentimentSettings(
        database_url=database_url, scheduler=False, fetch=fetch, registry=tmp_path / "registry"
    )
    app = create_app(settings)
    with TestClient(app) as client:
        portal = client.portal
        assert portal is not None
        portal.call(app.state.monitor.evaluate_alerts)  # fires, and sends "firing"
        disabled = client.patch("/v1/alert-rules/1", json={"enabled": False})  # resolves, sends "resolved"
        assert disabled.status_code == 200, disabled.text
        (before,) = client.get("/v1/alerts").json()
        assert (before["status"], before["deliveries"]["delivered"]) == ("resolved", 2)

        assert client.delete("/v1/alert-rules/1").status_code == 204
        listings = [client.get("/v1/alerts").json()]
        assert portal.call(app.state.monitor.deliver).delivered == 0  # a later outbox pass
        listings.append(client.get("/v1/alerts").json())
        listings.append(client.get("/v1/alerts", params={"rule_id": 1, "status": "resolved"}).json())
        assert client.get("/v1/alert-rules/1").status_code == 404
    assert [[alert["id"] for alert in listed] for listed in listings] == [[before["id"]]] * 3
    assert before["rule_deleted"] is False
    for listed in listings:
        assert listed == [before | {"rule_deleted": True}]
    with database.session() as session:  # its secret is no longer needed: nothing of it waits
        assert session.scalars(select(AlertRule.secret)).all() == [None]
    assert [json.loads(raw)["status"] for _, raw in state.received] == ["firing", "resolved"]


def test_why_a_webhook_refuses_an_alert_is_shown_with_the_alert_and_logged(
    tmp_path: Path,
    database: Database,
    database_url: str,
    receiver: tuple[Receiver, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The receiver refuses every notification (its secret was rotated, the rule's was not): the operator
    # used to see only "pending": 1 in GET /v1/alerts, the reason nowhere but in the database.
    state, url = receiver
    state.secret = "rotated"
    now = utcnow()
    add_calm(database, "Acme", end=now)
    add_burst(database, "Acme", end=now)
    add_rule(database, webhook_url=url, secret="s3cret")
    fetch = FetchSettings(allowed_networks=("127.0.0.0/8",))
    settings = FinanceSentimentSettings(
        database_url=database_url, scheduler=False, fetch=fetch, registry=tmp_path / "registry"
    )
    app = create_app(settings)
    with TestClient(app) as client, caplog.at_level("WARNING", logger="finance_sentiment.delivery"):
        portal = client.portal
        assert portal is not None
        portal.call(app.state.monitor.evaluate_alerts)  # fires, and tries to send "firing"
        (alert,) = client.get("/v1/alerts").json()
        assert alert["deliveries"] == {
            "pending": 1,
            "delivered": 0,
            "expired": 0,
            "last_error": "HTTP 401: bad signature",
        }
        assert any(
            "failed (try 1)" in record.getMessage() and "HTTP 401: bad signature" in record.getMessage()
            for record in caplog.records
        )
        with database.session() as session:  # the operator puts the new secret on the rule
            session.execute(update(AlertRule).values(secret="rotated"))
            session.execute(update(OutboxMessage).values(next_attempt_at=now))  # the retry is due
        assert portal.call(app.state.monitor.deliver).delivered == 1
        (alert,) = client.get("/v1/alerts").json()
    assert alert["deliveries"] == {"pending": 0, "delivered": 1, "expired": 0, "last_error": None}


async def test_a_rule_deleted_before_its_firing_notification_went_out_sends_both_in_order(
    database: Database, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    state.secret, state.statuses = "s3cret", [503]
    fire(database, webhook_url=url, secret="s3cret")
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await deliver_pending(database, client, now=NOW)).failed == 1  # the receiver is down
        with database.session() as session:
            (resolved,) = delete_rule(session, session.scalars(select(AlertRule.id)).one(), now=NOW + MINUTE)
        assert resolved.status == "resolved"
        with database.session() as session:
            assert list_rules(session) == []
            create_rule(session, AlertRuleIn(name="entity-spike", webhook_url=url))  # the name is free
        reports = [await deliver_pending(database, client, now=NOW + k * MINUTE) for k in (2, 3, 4)]
    assert [report.delivered for report in reports] == [1, 1, 0]  # firing, then resolved, then nothing
    assert [json.loads(body)["status"] for _, body in state.received] == ["firing", "firing", "resolved"]
    with database.session() as session:  # the deleted rule stays hidden with its alert, the history
        names = session.scalars(select(AlertRule.name).order_by(AlertRule.id)).all()
        assert names == [" deleted rule 1", "entity-spike"]
        assert session.scalars(select(AlertRule.secret).order_by(AlertRule.id)).all() == [None, None]
        assert session.scalars(select(Alert.status)).all() == ["resolved"]
    assert all(message.delivered_at is not None for message in outbox(database))  # its delivery record


async def test_one_process_runs_one_delivery_pass_at_a_time(
    tmp_path: Path, database: Database, database_url: str
) -> None:
    # The outbox job and the pass that follows a judgement could overlap: each sent CONCURRENT_POSTS at
    # once, so twice that many POSTs were in flight (and the HTTP pool, sized for one pass, ran short).
    in_flight, most, received = 0, 0, 0
    first_batch, more, release = threading.Event(), threading.Event(), threading.Event()

    async def held_hook(request: Request) -> Response:
        nonlocal in_flight, most, received
        in_flight, received = in_flight + 1, received + 1
        most = max(most, in_flight)
        if received >= CONCURRENT_POSTS:
            (more if received > CONCURRENT_POSTS else first_batch).set()
        await asyncio.to_thread(release.wait)  # held until the test lets go
        in_flight -= 1
        return Response(status_code=200)

    now = utcnow()
    entities = [f"Firm {k}" for k in range(CONCURRENT_POSTS)]
    for entity in entities:
        add_calm(database, entity, end=now)
        add_burst(database, entity, end=now)
    fetch = FetchSettings(allowed_networks=("127.0.0.0/8",))
    settings = FinanceSentimentSettings(
        database_url=database_url, scheduler=False, fetch=fetch, registry=tmp_path / "registry"
    )
    with serve_app(Starlette(routes=[Route("/hook", held_hook, methods=["POST"])])) as base:
        add_rule(database, name="first", webhook_url=f"{base}/hook")
        assert len(evaluate_rules(database, now=now)) == CONCURRENT_POSTS
        async with open_monitor(settings) as monitor:
            scheduled = asyncio.create_task(monitor.deliver())  # the outbox job's pass
            assert await asyncio.to_thread(first_batch.wait, 30)
            add_rule(database, name="second", webhook_url=f"{base}/hook")
            judged = asyncio.create_task(monitor.evaluate_alerts())  # fires 8 more, then delivers
            # A second pass would post its 8 at once; give it the chance before letting the first go.
            await asyncio.to_thread(more.wait, 2)
            release.set()
            first, transitions = await asyncio.gather(scheduled, judged)
            assert (first.delivered, len(transitions)) == (CONCURRENT_POSTS, CONCURRENT_POSTS)
            assert (await monitor.deliver()).delivered == 0  # the judged pass sent the new ones
    assert most == CONCURRENT_POSTS
    assert received == 2 * CONCURRENT_POSTS
    with database.session() as session:
        undelivered = select(func.count()).where(OutboxMessage.delivered_at.is_(None))
        assert session.scalar(undelivered) == 0


async def test_a_recreated_rule_fires_only_after_the_deleted_rule_resolved(
    database: Database, receiver: tuple[Receiver, str]
) -> None:
    # A rule deleted and created again under its name gives its alerts the fingerprint and groupKey of the
    # old ones, which receivers key their incidents on: the old alert's "resolved", still being retried,
    # must never reach the receiver after the new alert's "firing" (it would close the new one). It is
    # superseded by that "firing" (only the latest state of a group waits), so it is not sent at all.
    state, url = receiver
    fire(database, webhook_url=url)
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await deliver_pending(database, client, now=NOW)).delivered == 1
        with database.session() as session:
            delete_rule(session, session.scalars(select(AlertRule.id)).one(), now=NOW + MINUTE)
        state.statuses = [503]  # the receiver is briefly down: "resolved" is retried a minute later
        failed = await deliver_pending(database, client, now=NOW + MINUTE, backoff_base_s=60)
        assert failed.failed == 1
        add_rule(database, webhook_url=url)  # the same rule again, under a new id
        (refired,) = evaluate_rules(database, now=NOW + MINUTE + SECOND)
        assert refired.status == "firing"
        moments = (MINUTE + SECOND, 2 * MINUTE, 2 * MINUTE + SECOND, 3 * MINUTE)
        reports = [await deliver_pending(database, client, now=NOW + moment) for moment in moments]
    assert [report.delivered for report in reports] == [1, 0, 0, 0]
    sent = [json.loads(body) for _, body in state.received]
    assert [payload["status"] for payload in sent] == ["firing", "resolved", "firing"]  # the 2nd refused
    with database.session() as session:  # nothing of the deleted rule waits; its alert stays as history
        assert session.scalars(select(Alert.id).order_by(Alert.id)).all() == [1, refired.alert_id]
    assert {payload["alerts"][0]["fingerprint"] for payload in sent} == {fingerprint(refired.labels)}
    assert {payload["groupKey"] for payload in sent} == {'{}:{alertname="entity-spike",entity="Acme"}'}


async def test_a_recreated_rule_with_another_webhook_does_not_wait_for_the_deleted_one(
    database: Database, receiver: tuple[Receiver, str]
) -> None:
    # The old "resolved" goes to the old webhook only: a new receiver never sees it, so it need not wait.
    state, url = receiver
    fire(database, webhook_url="http://127.0.0.1:9/hook")  # nothing listens there
    with database.session() as session:
        delete_rule(session, session.scalars(select(AlertRule.id)).one(), now=NOW + MINUTE)
    add_rule(database, webhook_url=url)
    (refired,) = evaluate_rules(database, now=NOW + MINUTE)
    async with httpx.AsyncClient(timeout=5) as client:
        report = await deliver_pending(database, client, now=NOW + MINUTE)
    assert (report.delivered, report.failed) == (1, 1)  # the new firing; the old firing (its resolved waits)
    ((_, body),) = state.received
    assert json.loads(body)["alerts"][0]["fingerprint"] == fingerprint(refired.labels)


def pending_messages(db: Database) -> list[OutboxMessage]:
    with db.session() as session:
        query = select(OutboxMessage).where(pending()).order_by(OutboxMessage.id)
        return list(session.scalars(query))


async def test_while_the_receiver_is_down_only_the_latest_state_of_each_alert_group_waits(
    database: Database, receiver: tuple[Receiver, str]
) -> None:
    # Every repeat of a firing alert added a message: a receiver down for a day (repeat interval 1 s) found
    # tens of thousands waiting for one alert, all sent in a burst on its return. Now only the latest waits.
    state, url = receiver
    state.statuses = [503, 503]  # down for the first pass
    add_rule(database, webhook_url=url, repeat_interval_seconds=1)
    add_rule(database, name="other-hook", webhook_url="http://127.0.0.1:9/hook", repeat_interval_seconds=1)
    for entity in ("Acme", "Globex"):
        add_calm(database, entity)
        add_burst(database, entity)
    assert len(evaluate_rules(database, now=NOW)) == 4  # two groups, two rules (webhooks)
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await deliver_pending(database, client, now=NOW)).failed == 4
        repeats = [evaluate_rules(database, now=NOW + k * SECOND) for k in range(1, 31)]
        assert all([t.status for t in transitions] == ["repeat"] * 4 for transitions in repeats)
        waiting = pending_messages(database)
        assert len(waiting) == 4  # one per group and webhook, the latest
        assert all([t.superseded for t in transitions] == [1] * 4 for transitions in repeats)
        assert {m.created_at for m in waiting} == {NOW + 30 * SECOND}
        report = await deliver_pending(database, client, now=NOW + MINUTE)
        assert (report.delivered, report.failed) == (2, 2)
        assert (await deliver_pending(database, client, now=NOW + 2 * MINUTE)).delivered == 0
    sent = [json.loads(body) for _, body in state.received]
    latest = sent[2:]  # after the two refused at NOW
    assert sorted(p["alerts"][0]["labels"]["entity"] for p in latest) == ["Acme", "Globex"]
    assert {p["alerts"][0]["annotations"]["window_end"] for p in latest} == {"2026-03-02T12:00:30.000Z"}
    assert {p["groupKey"] for p in latest} == {
        '{}:{alertname="entity-spike",entity="Acme"}',
        '{}:{alertname="entity-spike",entity="Globex"}',
    }
    superseded = [m for m in outbox(database) if m.expired]
    assert len(superseded) == 4 * 30
    assert {m.last_error for m in superseded} - {"HTTP 503: ", None} == {
        "superseded by a newer notification of its alert group"
    }


def test_a_notification_waiting_for_a_rules_former_webhook_is_not_superseded_by_one_for_its_new_one(
    database: Database,
) -> None:
    # The receiver a waiting message was addressed to (its own url) decides its group, not the url the rule
    # has now: a notification owed to the former receiver is no older state of one the new receiver gets.
    fire(database, webhook_url="http://127.0.0.1:9/former", repeat_interval_seconds=1)
    with database.session() as session:
        session.execute(update(AlertRule).values(webhook_url="http://127.0.0.1:9/current"))
    (repeat,) = evaluate_rules(database, now=NOW + SECOND)
    assert (repeat.status, repeat.superseded) == ("repeat", 0)
    assert [m.url for m in pending_messages(database)] == [
        "http://127.0.0.1:9/former",
        "http://127.0.0.1:9/current",
    ]


async def test_a_resolved_notification_still_follows_the_firing_one_it_supersedes_the_repeats_of(
    database: Database, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    state.statuses = [503]
    fire(database, webhook_url=url, repeat_interval_seconds=1)
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await deliver_pending(database, client, now=NOW)).failed == 1  # "firing" waits
        for k in range(1, 6):
            evaluate_rules(database, now=NOW + k * SECOND)
        (resolved,) = evaluate_rules(database, now=NOW + 2 * HOUR)
        waiting = pending_messages(database)
        assert [(m.payload["status"], m.created_at) for m in waiting] == [
            ("firing", NOW + 5 * SECOND),
            ("resolved", NOW + 2 * HOUR),
        ]
        assert (resolved.status, resolved.superseded) == ("resolved", 0)  # the latest firing stays
        reports = [await deliver_pending(database, client, now=NOW + 2 * HOUR + k * SECOND) for k in range(3)]
    assert [report.delivered for report in reports] == [1, 1, 0]
    assert [json.loads(body)["status"] for _, body in state.received] == ["firing", "firing", "resolved"]


async def test_the_superseded_notifications_are_counted_at_metrics(
    tmp_path: Path, database: Database, database_url: str
) -> None:
    now = utcnow()
    add_calm(database, "Acme", end=now)
    add_burst(database, "Acme", end=now)
    add_rule(database, repeat_interval_seconds=1)  # nothing listens at its webhook
    fetch = FetchSettings(allowed_networks=("127.0.0.0/8",))
    settings = FinanceSentimentSettings(
        database_url=database_url, scheduler=False, fetch=fetch, registry=tmp_path / "registry"
    )
    async with open_monitor(settings) as monitor:
        assert [t.status for t in await monitor.evaluate_alerts()] == ["firing"]
        await asyncio.sleep(1.1)
        assert [t.superseded for t in await monitor.evaluate_alerts()] == [1]
        (family,) = monitor.metrics.superseded.collect()
        total = next(s for s in family.samples if s.name == "finance_notifications_superseded_total")
        assert total.value == 1


def test_the_evidence_of_a_superseded_notification_is_no_longer_held_by_the_retention(
    database: Database,
) -> None:
    fire(database, repeat_interval_seconds=1)  # nothing listens at its webhook: the "firing" waits
    with database.session() as session:
        (first,) = session.scalars(select(OutboxMessage.payload)).all()
        session.add(_story(NOW, "negative", -0.99, {"entity": "Acme"}, "Acme collapses"))  # most negative
    before = {item["url"] for item in json.loads(first["alerts"][0]["annotations"]["evidence"])}
    (repeat,) = evaluate_rules(database, now=NOW + SECOND)
    assert repeat.superseded == 1
    (latest,) = pending_messages(database)
    after = {item["url"] for item in json.loads(latest.payload["alerts"][0]["annotations"]["evidence"])}
    assert len(before - after) == 1  # the least negative of the first five made way
    with database.session() as session:
        assert cited_urls(session) == after
    (resolved,) = evaluate_rules(database, now=NOW + 2 * HOUR)  # keeps the latest "firing" waiting
    assert resolved.superseded == 0
    with database.session() as session:
        assert cited_urls(session) == after


@pytest.mark.parametrize("change", ["delete", "disable"])
async def test_an_api_replica_sends_the_resolved_its_own_rule_change_queued(
    tmp_path: Path, database: Database, database_url: str, receiver: tuple[Receiver, str], change: str
) -> None:
    # serve --no-scheduler and no worker running: a DELETE queued the "resolved" in the outbox and nothing
    # ever sent it; a PATCH disabling the rule left its alert firing until an evaluation that never came.
    state, url = receiver
    now = utcnow()
    add_rule(database, webhook_url=url)
    add_calm(database, "Acme", end=now)
    add_burst(database, "Acme", end=now)
    assert [t.status for t in evaluate_rules(database, now=now)] == ["firing"]
    async with httpx.AsyncClient(timeout=5) as client:  # the worker that ran earlier sent the firing
        assert (await deliver_pending(database, client)).delivered == 1
    settings = FinanceSentimentSettings(
        database_url=database_url,
        scheduler=False,
        fetch=FetchSettings(allowed_networks=("127.0.0.0/8",)),
        registry=tmp_path / "registry",
    )
    with serve_app(create_app(settings)) as api:
        async with httpx.AsyncClient(base_url=api, timeout=30, trust_env=False) as http:
            if change == "delete":
                answer = await http.delete("/v1/alert-rules/1")
                assert answer.status_code == 204, answer.text
            else:
                answer = await http.patch("/v1/alert-rules/1", json={"enabled": False})
                assert answer.status_code == 200 and answer.json()["enabled"] is False, answer.text
            for _ in range(200):  # sent after the answer: up to 10 s
                if len(state.received) >= 2:
                    break
                await asyncio.sleep(0.05)
            if change == "disable":
                (alert,) = (await http.get("/v1/alerts")).json()
                assert (alert["status"], alert["deliveries"]["delivered"]) == ("resolved", 2)
    statuses = [json.loads(body)["status"] for _, body in state.received]
    assert statuses == ["firing", "resolved"]
    async with httpx.AsyncClient(timeout=5) as client:  # a worker's pass afterwards: nothing left to send
        assert (await deliver_pending(database, client)).delivered == 0
    assert len(state.received) == 2
