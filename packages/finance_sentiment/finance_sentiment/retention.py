"""Retention: delete the stories first seen longer ago than ``FIN_RETENTION_DAYS`` (unset: keep every story),
and the webhook notifications and resolved alerts finished that long ago.

Which time: a story's age is counted from ``seen_at``, when the monitor first stored it, never from the
``published_at`` the source claims. Every story has one; the windows of the alert rules and the trend buckets
count by it, so a pass never takes a story out of a window a rule is judging; and a source that lists old
stories (a press-release feed of last year's items) cannot have them deleted the hour they are stored.

How far back: never less than the history an alert rule reads, ``window_seconds * (baseline_windows + 1)``
(the current window and its baseline), for every rule not deleted (a disabled one too: enabled again, it is
judged at once against its baseline). Rules are data, created through the API on any replica at any time,
while the setting is read once at start; so a rule needing more than the retention does not stop the start
or refuse the rule: the pass keeps that rule's history instead, and logs a warning naming the rule and the
days it holds, for the operator to shorten the rule or lengthen the retention. Trends read whatever is left:
buckets older than the retention are empty (the one the cutoff falls in, partly). The setting's own floor is
one day, so today's 1-day bucket is always whole.

What stays: a story cited as evidence (by URL, in an alert's annotations) by an alert still firing or by a
notification still waiting in the outbox, until neither does; the alert's own copy of the headlines is the
alert's, and stays with it.

What goes with a story: its tags (topics and entities; ``ON DELETE CASCADE`` on SQLite and PostgreSQL alike).
Its dedup keys stay (`PrunedStory`: hashes of its canonical URL and of its text, no words of it) for
`KEY_MEMORY` after the deletion, so a source still listing it does not have it stored again as new, which
would count it in the current window of every rule as if it were news. A story listed again after that is
stored again, once more as new.

Notifications and alerts go too, by the retention alone (a rule's history holds back only the stories), so
neither the outbox nor the alert history grows for good, nor keeps its copies of the evidence (headlines and
URLs, in annotations and webhook bodies) for ever:

    notification  delivered before the cutoff, or expired (``expires_at``) before it; never one still to be
                  sent (`delivery.pending`), however old: past its expiry time, it waits for a delivery pass
                  to mark it expired
    alert         resolved (``ends_at``) before the cutoff, with its notifications, once none of them is
                  still to be sent; never a firing alert, however long it has fired (its own annotations are
                  the latest evidence; its older notifications go as above)

The webhook order holds: a message waits only for the older messages of its fingerprint still to be sent
(`delivery`), and those are never deleted. Alerting finds an open alert by its status (firing), never a
resolved one, so re-firing and repeat intervals are untouched. What changes: ``GET /v1/alerts`` no longer
lists the deleted episodes, and an alert's ``deliveries`` counts only its notifications kept (a long-firing
alert's count of old repeats falls); the counters at ``/metrics`` count events and never go back. Outbox ids
are named nowhere outside the database (SQLite may give a deleted newest id again: still above every id kept).

Deletions go in batches of `BATCH_SIZE` rows, one short transaction each (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so two replicas share the work), so a first pass over millions of rows never holds a long lock.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Delete, and_, delete, exists, insert, or_, select
from sqlalchemy.orm import Session

from finance_sentiment.database import Database
from finance_sentiment.dedup import url_key
from finance_sentiment.delivery import pending
from finance_sentiment.tables import Alert, AlertRule, Document, OutboxMessage, PrunedStory
from textcore.sql import utcnow

log = logging.getLogger(__name__)

BATCH_SIZE = 1_000
KEY_MEMORY = timedelta(days=365)  # how long the dedup keys of a pruned story are kept
CITED_BATCH = 100  # alerts or notifications read per fetch when finding the stories they cite


@dataclass(frozen=True)
class PruneReport:
    """What one `prune` pass did.

    Attributes:
        cutoff: Stories first seen before this time were due.
        pruned: Stories deleted (their tags with them).
        cited: Stories due but kept, cited by a firing alert or a waiting notification.
        keys_forgotten: Dedup keys of stories pruned long ago (`KEY_MEMORY`) deleted.
        held_by: The rule whose history moved the cutoff back, when one did.
        notifications_pruned: Webhook notifications deleted, delivered or expired before ``now -
            retention`` (those of the alerts deleted included).
        alerts_pruned: Alerts deleted, resolved before ``now - retention`` with nothing left to send.
    """

    cutoff: datetime
    pruned: int
    cited: int
    keys_forgotten: int
    held_by: str | None = None
    notifications_pruned: int = 0
    alerts_pruned: int = 0


def prune(
    db: Database, retention: timedelta, *, now: datetime | None = None, batch_size: int = BATCH_SIZE
) -> PruneReport:
    """Delete the stories first seen before ``now - retention`` (or before the oldest window a rule reads,
    when that is earlier), except those alerts still cite; then the notifications delivered or expired, and
    the alerts resolved, before ``now - retention``; in batches of ``batch_size``.

    Args:
        db: The monitor's database.
        retention: How long a story is kept after it was first seen, and a notification or a resolved
            alert after it was finished.
        now: The time of the pass (timezone-aware); defaults to the clock.
        batch_size: Rows deleted per transaction.

    Returns:
        What was deleted and kept.
    """
    now = now or utcnow()
    with db.session() as session:
        held_by, history = longest_history(session)
        cited = cited_urls(session)
    horizon = retention
    if held_by is not None and history > retention:
        horizon = history
        log.warning(
            "retention: keeping %.1f days of stories, not %.1f: alert rule %r reads that far back "
            "(window x (baseline + 1)); shorten the rule or set FIN_RETENTION_DAYS to at least %d",
            history / timedelta(days=1),
            retention / timedelta(days=1),
            held_by,
            -(-history // timedelta(days=1)),
        )
    else:
        held_by = None
    cutoff = now - horizon
    pruned, kept = _prune_documents(db, cutoff, cited, now, batch_size)
    forgotten = _in_batches(db, PrunedStory, PrunedStory.pruned_at < now - KEY_MEMORY, batch_size)
    if kept:
        log.info("retention: %d stories past the cutoff kept, cited by live alerts", kept)
    finished = now - retention
    notifications = _in_batches(db, OutboxMessage, _finished_before(finished), batch_size)
    alerts, theirs = _prune_alerts(db, finished, batch_size)
    return PruneReport(cutoff, pruned, kept, forgotten, held_by, notifications + theirs, alerts)


def longest_history(session: Session) -> tuple[str | None, timedelta]:
    """The rule (not deleted) reading furthest back, and how far: ``window * (baseline + 1)``; (None, 0)
    without rules."""
    rows = session.execute(
        select(AlertRule.name, AlertRule.window_seconds, AlertRule.baseline_windows).where(
            AlertRule.deleted_at.is_(None)
        )
    ).all()
    longest: tuple[str | None, timedelta] = (None, timedelta(0))
    for name, window, baseline in rows:
        span = timedelta(seconds=max(window, 0) * (max(baseline, 0) + 1))
        if span > longest[1]:
            longest = (name, span)
    return longest


def cited_urls(session: Session) -> set[str]:
    """The URLs of the stories cited as evidence by the firing alerts and by the notifications neither
    delivered nor expired (whose evidence may be an earlier firing's).

    The rows are read `CITED_BATCH` at a time and only their URLs kept: each payload may be tens of KB, and
    the outbox may hold many waiting (one or two per alert group and webhook, as a newer notification
    supersedes the older ones of its group, but over many groups, and any written before that rule).
    """
    cited: set[str] = set()
    firing = select(Alert.annotations).where(Alert.status == "firing")
    for alert_annotations in session.scalars(firing.execution_options(yield_per=CITED_BATCH)):
        cited.update(_evidence_urls([alert_annotations]))
    waiting = select(OutboxMessage.payload).where(pending())
    for payload in session.scalars(waiting.execution_options(yield_per=CITED_BATCH)):
        entries = payload.get("alerts") if isinstance(payload, dict) else None
        cited.update(_evidence_urls(e.get("annotations") for e in entries or [] if isinstance(e, dict)))
    return cited


def _evidence_urls(annotations: Iterable[Any]) -> Iterable[str]:
    """The ``url`` of each item of the ``evidence`` annotation (JSON, written by `alerting`)."""
    for each in annotations:
        if not isinstance(each, dict) or not isinstance(each.get("evidence"), str):
            continue
        try:
            items = json.loads(each["evidence"])
        except ValueError:
            continue
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and isinstance(item.get("url"), str):
                yield item["url"]


def _prune_documents(
    db: Database, cutoff: datetime, cited: set[str], now: datetime, batch_size: int
) -> tuple[int, int]:
    """Delete the stories seen before ``cutoff`` and not cited, oldest first, one batch per transaction;
    returns how many were deleted and how many kept as cited."""
    pruned = kept = 0
    after: tuple[datetime, int] | None = None  # keyset: the last row of the previous batch
    while True:
        with db.session() as session:
            rows = _due(session, cutoff, after, batch_size)
            if not rows:
                break
            after = (rows[-1].seen_at, rows[-1].id)
            doomed = [row for row in rows if row.url not in cited]
            kept += len(rows) - len(doomed)
            pruned += _delete(session, doomed, now)
        if len(rows) < batch_size:
            break
    return pruned, kept


def _due(
    session: Session, cutoff: datetime, after: tuple[datetime, int] | None, batch_size: int
) -> Sequence[Any]:
    query = select(Document.id, Document.url, Document.content_hash, Document.seen_at).where(
        Document.seen_at < cutoff
    )
    if after is not None:
        seen_at, last_id = after
        query = query.where(
            or_(Document.seen_at > seen_at, and_(Document.seen_at == seen_at, Document.id > last_id))
        )
    query = query.order_by(Document.seen_at, Document.id).limit(batch_size)
    # PostgreSQL only (SQLite omits it): a replica pruning at the same time takes the next rows instead.
    return session.execute(query.with_for_update(skip_locked=True)).all()


def _delete(session: Session, rows: Sequence[Any], now: datetime) -> int:
    """Delete the stories (the database cascades to their tags), keeping their dedup keys."""
    if not rows:
        return 0
    session.execute(
        insert(PrunedStory),
        [{"url_key": url_key(row.url), "content_hash": row.content_hash, "pruned_at": now} for row in rows],
    )
    deleted = session.execute(delete(Document).where(Document.id.in_([row.id for row in rows])))
    return cast(CursorResult[Any], deleted).rowcount


def _finished_before(cutoff: datetime) -> ColumnElement[bool]:
    """Whether a notification was delivered, or expired, before ``cutoff`` (so is not `pending`)."""
    return or_(
        OutboxMessage.delivered_at < cutoff,
        and_(OutboxMessage.expired.is_(True), OutboxMessage.expires_at < cutoff),
    )


def _prune_alerts(db: Database, cutoff: datetime, batch_size: int) -> tuple[int, int]:
    """Delete the alerts resolved before ``cutoff`` with no notification still to be sent, and their
    notifications (all finished), one batch per transaction; returns how many alerts and notifications."""
    waiting = exists().where(OutboxMessage.alert_id == Alert.id, pending())
    done = and_(Alert.status == "resolved", Alert.ends_at < cutoff, ~waiting)
    alerts = notifications = 0
    while True:
        with db.session() as session:
            ids = _batch(session, Alert, done, batch_size)
            if ids:
                # Deleted here rather than by ON DELETE CASCADE, so that they are counted.
                theirs = delete(OutboxMessage).where(OutboxMessage.alert_id.in_(ids), ~pending())
                notifications += _rowcount(session, theirs)
                alerts += _rowcount(session, delete(Alert).where(Alert.id.in_(ids), done))
        if len(ids) < batch_size:
            return alerts, notifications


def _in_batches(
    db: Database, table: type[OutboxMessage | PrunedStory], where: ColumnElement[bool], batch_size: int
) -> int:
    """Delete the rows of ``table`` matching ``where``, one batch per transaction; returns how many."""
    deleted = 0
    while True:
        with db.session() as session:
            ids = _batch(session, table, where, batch_size)
            if ids:
                deleted += _rowcount(session, delete(table).where(table.id.in_(ids)))
        if len(ids) < batch_size:
            return deleted


def _batch(
    session: Session,
    table: type[Alert | OutboxMessage | PrunedStory],
    where: ColumnElement[bool],
    batch_size: int,
) -> list[int]:
    # PostgreSQL only (SQLite omits it): a replica pruning at the same time takes other rows instead.
    query = select(table.id).where(where).limit(batch_size).with_for_update(skip_locked=True)
    return list(session.scalars(query))


def _rowcount(session: Session, statement: Delete) -> int:
    """Rows a DELETE removed (no ORM session sync: these rows are not loaded as objects)."""
    result = session.execute(statement.execution_options(synchronize_session=False))
    return cast(CursorResult[Any], result).rowcount
