"""Rule evaluation: count each rule's series in windows, detect spikes, and move alerts through their states.

    no open alert + firing verdict                      -> new Alert (firing)       + outbox "firing"
    open alert    + firing verdict, repeat interval due -> annotations refreshed    + outbox "firing" (repeat)
      (or the rule's webhook changed since the alert's latest notification went out: the new receiver is told
      at once, not a repeat interval later)
    open alert    + quiet verdict                       -> Alert resolved (ends_at) + outbox "resolved"
    open alert    + rule disabled or deleted            -> Alert resolved (ends_at) + outbox "resolved"

A "resolved" goes to the rule's webhook, and to every former webhook of the rule that was delivered a
"firing" of the alert (or a repeat) before the rule was moved, signed with the secret the rule had when it
left that webhook: as in Alertmanager, a receiver told an alert fires is told when it resolves, so the
incident it opened is closed. Not when the webhook changes: the alert
still fires then, and the former receiver's incident stays open as long as the alert does.

Only the latest state of an alert group waits for its receiver (as in Alertmanager): a notification queued
for a fingerprint (its group: the labels the group key is made of come from the rule and the series alone)
supersedes the older ones of that fingerprint still to be sent to the same webhook URL, which are marked
expired (``last_error`` says why), so a receiver down for a day gets one notification per alert when it
returns, not every repeat of the day. A "resolved" keeps the newest notification of its own alert still
waiting (the firing state the receiver may not have had yet), so it still follows a "firing".

Windows are ``[now - (k + 1) * window, now - k * window)`` by `Document.seen_at`: k = 0 is the current
window, k = 1..baseline_windows the baseline. Everything one rule changes is written in one transaction, so an
alert never exists without its notification; the webhooks themselves are sent by `delivery.deliver_pending`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, case, func, literal, select, update
from sqlalchemy.orm import Session

from finance_sentiment.database import Database
from finance_sentiment.delivery import alertmanager_alert, alertmanager_payload, pending, rfc3339
from finance_sentiment.parsing import clip_words
from finance_sentiment.spikes import SpikeParams, SpikeVerdict, WindowStats, detect
from finance_sentiment.tables import Alert, AlertRule, Document, DocumentTag, OutboxMessage
from textcore.errors import InvalidInput
from textcore.sql import utcnow

logger = logging.getLogger(__name__)

# An undelivered notification is dropped after this long: a day-old alert is news for the log, not a pager.
OUTBOX_TTL = timedelta(hours=24)
SEVERITY = "warning"
TOP_NEGATIVE = 5  # headlines quoted as evidence per alert
# Characters of each quoted headline, its ellipsis included (cut between words by `clip_words`, as stored
# titles are): a headline stored whole before titles were bounded at ingest may be a whole article, and
# receivers cap a message (a Teams webhook refuses one over 28 KB): it must not make an alert undeliverable.
EVIDENCE_TITLE_CHARS = 300
SUPERSEDED = "superseded by a newer notification of its alert group"
GROUPS = ("entity", "topic", "all")


@dataclass(frozen=True)
class Transition:
    """One change of alert state made by an evaluation.

    Attributes:
        alert_id: The Alert row.
        rule: The rule's name.
        labels: The alert's labels.
        status: ``"firing"`` (new), ``"repeat"`` (still firing, notified again) or ``"resolved"``.
        superseded: Older notifications of the same group and webhook, still to be sent, that this one
            replaced (marked expired).
    """

    alert_id: int
    rule: str
    labels: dict[str, str]
    status: str
    superseded: int = 0


def evaluate_rules(
    db: Database,
    *,
    now: datetime | None = None,
    external_url: str = "http://127.0.0.1:8000",
    rule_ids: Collection[int] | None = None,
) -> list[Transition]:
    """Evaluate every enabled rule at ``now`` and record the resulting alert changes and notifications.

    A rule whose stored settings are unusable is logged and skipped, so it cannot silence the others.

    Args:
        db: The monitor's database.
        now: The evaluation time (timezone-aware); defaults to the clock.
        external_url: Where this monitor is reachable; used for ``externalURL`` and ``generatorURL``.
        rule_ids: Judge only these rules (one just changed through the API); every rule when None.

    Returns:
        The transitions made, rule by rule.
    """
    now = now or utcnow()
    with db.session() as session:
        # Disabled rules too, while they have open alerts: those are resolved rather than left firing.
        firing = select(Alert.rule_id).where(Alert.status == "firing")
        judged = AlertRule.enabled.is_(True) | AlertRule.id.in_(firing)
        query = select(AlertRule.id).where(judged, AlertRule.deleted_at.is_(None))
        if rule_ids is not None:
            query = query.where(AlertRule.id.in_(rule_ids))
        judged_ids = list(session.scalars(query))
    transitions: list[Transition] = []
    for rule_id in judged_ids:
        try:
            with db.session() as session:
                transitions += _evaluate_rule(session, rule_id, now, external_url)
        except InvalidInput as exc:
            logger.error("alert rule %d skipped: %s", rule_id, exc.message)
    return transitions


def fingerprint(labels: dict[str, str]) -> str:
    """First 16 hex digits of the SHA-256 of the labels as sorted, compact JSON."""
    text = json.dumps(labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def rule_params(rule: AlertRule) -> SpikeParams:
    """The spike thresholds of a rule (validated)."""
    return SpikeParams(
        min_count=rule.min_count,
        min_negative_share=rule.min_negative_share,
        z_threshold=rule.z_threshold,
        method=rule.method,
        min_sentiment_drop=rule.min_sentiment_drop,
        resolve_fraction=rule.resolve_fraction,
    )


def _evaluate_rule(session: Session, rule_id: int, now: datetime, external_url: str) -> list[Transition]:
    # Row lock on PostgreSQL: two evaluators of one rule run one after the other, never both opening an alert.
    rule = session.scalars(select(AlertRule).where(AlertRule.id == rule_id).with_for_update()).one_or_none()
    if rule is None or rule.deleted_at is not None:
        return []
    if not rule.enabled:
        return resolve_firing(session, rule, now, external_url)
    if rule.group_by not in GROUPS or rule.window_seconds < 1 or rule.baseline_windows < 0:
        raise InvalidInput(
            f"expected group_by in {GROUPS}, window_seconds >= 1 and baseline_windows >= 0, found "
            f"{rule.group_by!r}, {rule.window_seconds} and {rule.baseline_windows}"
        )
    params = rule_params(rule)
    window = timedelta(seconds=rule.window_seconds)
    counts = _window_counts(session, rule, now, window)
    open_alerts = {
        alert.fingerprint: alert
        for alert in session.scalars(select(Alert).where(Alert.rule_id == rule.id, Alert.status == "firing"))
    }
    open_names = {str(alert.labels.get(rule.group_by, "")) for alert in open_alerts.values()}
    empty = WindowStats(0, 0, 0.0)
    transitions = []
    for name in sorted({n for n, windows in counts.items() if 0 in windows} | open_names):
        windows = counts.get(name, {})
        current = windows.get(0, empty)
        baseline = [windows.get(k, empty) for k in range(rule.baseline_windows, 0, -1)]  # oldest first
        labels = _labels(rule, name)
        alert = open_alerts.pop(fingerprint(labels), None)
        verdict = detect(current, baseline, params, was_firing=alert is not None)
        series = _Series(rule, name, labels, now - window, now, current, verdict)
        transition = _apply(session, series, alert, external_url)
        if transition is not None:
            transitions.append(transition)
    # Left over: open alerts whose labels the rule no longer produces (it was renamed or regrouped).
    for alert in open_alerts.values():
        transitions.append(_resolve(session, rule, alert, now, external_url))
    return transitions


def _window_counts(
    session: Session, rule: AlertRule, now: datetime, window: timedelta
) -> dict[str, dict[int, WindowStats]]:
    """Series name -> window index -> stats, from one aggregate query over the whole time range."""
    starts = [now - window * (k + 1) for k in range(rule.baseline_windows + 1)]
    # Window index as a CASE over the window starts: portable, unlike epoch arithmetic on timestamps.
    bucket = case(*((Document.seen_at >= start, k) for k, start in enumerate(starts)), else_=len(starts))
    name: ColumnElement[str] = DocumentTag.name.expression if rule.group_by != "all" else literal("")
    rows = select(
        name.label("name"), bucket.label("bucket"), Document.label.label("label"), Document.sentiment
    ).where(Document.seen_at >= starts[-1], Document.seen_at < now)
    if rule.group_by != "all":
        rows = rows.join(DocumentTag, DocumentTag.document_id == Document.id).where(
            DocumentTag.kind == rule.group_by
        )
        if rule.match:
            rows = rows.where(DocumentTag.name.in_(rule.match))
    # Group in an outer query: PostgreSQL does not see two bound CASE expressions as the same GROUP BY key.
    inner = rows.subquery()
    negative = func.sum(case((inner.c.label == "negative", 1), else_=0))
    query = select(
        inner.c.name, inner.c.bucket, func.count(), negative, func.sum(inner.c.sentiment)
    ).group_by(inner.c.name, inner.c.bucket)
    counts: dict[str, dict[int, WindowStats]] = defaultdict(dict)
    for series, k, count, negatives, sentiment in session.execute(query):
        counts[str(series)][int(k)] = WindowStats(int(count), int(negatives or 0), float(sentiment or 0.0))
    return counts


def _labels(rule: AlertRule, name: str) -> dict[str, str]:
    labels = {"alertname": rule.name, "rule": rule.name}
    if rule.group_by != "all":
        labels[rule.group_by] = name
    labels["severity"] = SEVERITY
    return labels


@dataclass(frozen=True)
class _Series:
    rule: AlertRule
    name: str
    labels: dict[str, str]
    start: datetime
    end: datetime
    current: WindowStats
    verdict: SpikeVerdict


def _apply(session: Session, series: _Series, alert: Alert | None, external_url: str) -> Transition | None:
    """Move one series' alert to its next state; the notification goes in the same transaction."""
    now, rule = series.end, series.rule
    if series.verdict.firing and alert is None:
        alert = Alert(
            rule_id=rule.id,
            fingerprint=fingerprint(series.labels),
            labels=series.labels,
            annotations=_annotations(session, series),
            status="firing",
            starts_at=now,
            last_sent_at=now,
        )
        session.add(alert)
        session.flush()  # assigns alert.id for the outbox row
        status = "firing"
    elif series.verdict.firing and alert is not None:
        last_sent = alert.last_sent_at or alert.starts_at
        repeat_due = now - last_sent >= timedelta(seconds=rule.repeat_interval_seconds)
        if not repeat_due and not _webhook_changed(session, rule, alert):
            return None
        alert.annotations = _annotations(session, series)
        alert.last_sent_at = now
        status = "repeat"
    elif alert is not None:
        return _resolve(session, rule, alert, now, external_url)
    else:
        return None
    superseded = _queue(session, rule, alert, now, external_url)
    return Transition(
        alert_id=alert.id, rule=rule.name, labels=dict(series.labels), status=status, superseded=superseded
    )


def _webhook_changed(session: Session, rule: AlertRule, alert: Alert) -> bool:
    """Whether the rule's webhook URL changed since the alert's latest notification was sent or given up on
    (so its receiver has not heard of the alert); a notification still waiting goes to the URL as it is now.
    """
    latest = session.execute(
        select(OutboxMessage.url, pending())
        .where(OutboxMessage.alert_id == alert.id)
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    ).first()
    return latest is not None and not latest[1] and latest[0] != rule.webhook_url


def resolve_firing(session: Session, rule: AlertRule, now: datetime, external_url: str) -> list[Transition]:
    """Resolve every firing alert of ``rule`` at ``now``, each with a "resolved" notification in the outbox
    (a disabled rule's alerts, and a deleted rule's)."""
    firing = session.scalars(select(Alert).where(Alert.rule_id == rule.id, Alert.status == "firing"))
    return [_resolve(session, rule, alert, now, external_url) for alert in firing]


def _resolve(session: Session, rule: AlertRule, alert: Alert, now: datetime, external_url: str) -> Transition:
    # The annotations stay those of the last firing notification: the evidence of the episode.
    alert.status, alert.ends_at, alert.last_sent_at = "resolved", now, now
    former = _former_webhooks(session, rule, alert)
    superseded = _queue(session, rule, alert, now, external_url)
    # Queued after the rule's own, so that one stays the latest of the alert's messages for its webhook.
    session.add_all(
        _outbox_message(rule, alert, now, external_url, fixed_url=url, secret=secret)
        for url, secret in former.items()
    )
    return Transition(
        alert_id=alert.id, rule=rule.name, labels=dict(alert.labels), status="resolved", superseded=superseded
    )


def _former_webhooks(session: Session, rule: AlertRule, alert: Alert) -> dict[str, str | None]:
    """The webhook URLs other than the rule's own now that were delivered a notification of the alert (each
    a "firing" or a repeat: the alert fired until now), in order, each with the secret that went with it
    when the rule left it ("" when unsigned; None for messages delivered before that was kept: the rule's).

    A message records the URL it was delivered to; one still waiting goes to the rule's URL as it is now, so
    a "firing" that never reached a former webhook owes it nothing. A URL that differs from the rule's only
    in its credentials counts as another webhook: a token or routing key may name another receiver.
    """
    delivered = select(OutboxMessage.url, OutboxMessage.secret).where(
        OutboxMessage.alert_id == alert.id,
        OutboxMessage.delivered_at.is_not(None),
        OutboxMessage.url != rule.webhook_url,
    )
    secrets: dict[str, str | None] = {}
    for url, secret in session.execute(delivered.order_by(OutboxMessage.id)):
        if secret is not None or url not in secrets:
            secrets[url] = secret
    return {url: secrets[url] for url in sorted(secrets)}


def _queue(session: Session, rule: AlertRule, alert: Alert, now: datetime, external_url: str) -> int:
    """Put the alert's notification (its current state) in the outbox, superseding the older ones of its
    group still to be sent to the same webhook URL (a "resolved" keeps the newest of its own alert); returns
    how many it superseded."""
    same_group = (
        select(OutboxMessage.id)
        .join(Alert, Alert.id == OutboxMessage.alert_id)
        .where(pending(), Alert.fingerprint == alert.fingerprint, OutboxMessage.url == rule.webhook_url)
    )
    if alert.status == "resolved":
        # Every earlier message of a resolved alert is a "firing" one: the newest still waiting goes first.
        newest = select(func.max(OutboxMessage.id)).where(OutboxMessage.alert_id == alert.id, pending())
        kept = session.scalar(newest)
        if kept is not None:
            same_group = same_group.where(OutboxMessage.id != kept)
    older = (
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(same_group.correlate(None).scalar_subquery()))
        .values(expired=True, last_error=SUPERSEDED)
        .execution_options(synchronize_session=False)
    )
    superseded = cast(CursorResult[Any], session.execute(older)).rowcount
    session.add(_outbox_message(rule, alert, now, external_url))
    return superseded


def _outbox_message(
    rule: AlertRule,
    alert: Alert,
    now: datetime,
    external_url: str,
    *,
    fixed_url: str | None = None,
    secret: str | None = None,
) -> OutboxMessage:
    """The alert's notification for the rule's webhook, or for ``fixed_url`` (a former webhook of the rule,
    signed with ``secret``, the one that went with it, when known) when given; each with its own
    idempotency key."""
    entry = alertmanager_alert(
        status=alert.status,
        labels=alert.labels,
        annotations=alert.annotations,
        starts_at=alert.starts_at,
        ends_at=alert.ends_at,
        generator_url=f"{external_url.rstrip('/')}/v1/alerts?rule_id={rule.id}",
        fingerprint=alert.fingerprint,
    )
    group_labels = {k: str(v) for k, v in alert.labels.items() if k in ("alertname", rule.group_by)}
    payload = alertmanager_payload(
        receiver=rule.receiver,
        status=alert.status,
        alert=entry,
        group_labels=group_labels,
        external_url=external_url,
    )
    return OutboxMessage(
        alert_id=alert.id,
        rule_id=rule.id,
        idempotency_key=uuid.uuid4().hex,
        url=fixed_url if fixed_url is not None else rule.webhook_url,
        fixed_url=fixed_url is not None,
        secret=secret if fixed_url is not None else None,
        payload=payload,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        expires_at=now + OUTBOX_TTL,
        expired=False,
    )


def _annotations(session: Session, series: _Series) -> dict[str, str]:
    """Alertmanager-style string annotations: the numbers, and the most negative headlines as evidence."""
    current, verdict = series.current, series.verdict
    what = f"{series.rule.group_by} {series.name}" if series.rule.group_by != "all" else "all stories"
    evidence = _top_negative(session, series)
    return {
        "summary": f"Negative news spike for {what} ({series.rule.name})",
        "description": verdict.reason,
        "window_start": rfc3339(series.start),
        "window_end": rfc3339(series.end),
        "count": str(current.count),
        "negative_count": str(current.negative),
        "negative_share": f"{current.negative_share:.3f}",
        "baseline_negative_share": f"{verdict.baseline_share:.3f}",
        "z_score": f"{verdict.z:.2f}",
        "mean_sentiment": f"{current.mean_sentiment:.3f}",
        "baseline_mean_sentiment": f"{verdict.baseline_sentiment:.3f}",
        "top_negative": "\n".join(f"{item['title']} — {item['url']}" for item in evidence),
        "evidence": json.dumps(evidence, ensure_ascii=False),
    }


def _top_negative(session: Session, series: _Series) -> list[dict[str, Any]]:
    """Up to `TOP_NEGATIVE` negative stories of the current window, most negative first, titles clipped."""
    query = select(Document.title, Document.url, Document.sentiment, Document.seen_at).where(
        Document.seen_at >= series.start, Document.seen_at < series.end, Document.label == "negative"
    )
    if series.rule.group_by != "all":
        query = query.join(DocumentTag, DocumentTag.document_id == Document.id).where(
            DocumentTag.kind == series.rule.group_by, DocumentTag.name == series.name
        )
    query = query.order_by(Document.sentiment, Document.seen_at.desc(), Document.id).limit(TOP_NEGATIVE)
    return [
        {
            "title": clip_words(title, EVIDENCE_TITLE_CHARS),
            "url": url,
            "sentiment": round(sentiment, 4),
            "seen_at": rfc3339(seen_at),
        }
        for title, url, sentiment, seen_at in session.execute(query)
    ]
