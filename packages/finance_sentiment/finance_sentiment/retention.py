"""Retention: delete the stories first seen longer ago than ``FIN_RETENTION_DAYS`` (unset: keep every story).

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

Deletions go in batches of `BATCH_SIZE` stories, one short transaction each (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so two replicas share the work), so a first pass over millions of rows never holds a long lock.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, delete, insert, or_, select
from sqlalchemy.orm import Session

from finance_sentiment.database import Database
from finance_sentiment.dedup import url_key
from finance_sentiment.delivery import pending
from finance_sentiment.tables import Alert, AlertRule, Document, OutboxMessage, PrunedStory
from textcore.sql import utcnow

log = logging.getLogger(__name__)

BATCH_SIZE = 1_000
KEY_MEMORY = timedelta(days=365)  # how long the dedup keys of a pruned story are kept


@dataclass(frozen=True)
class PruneReport:
    """What one `prune` pass did.

    Attributes:
        cutoff: Stories first seen before this time were due.
        pruned: Stories deleted (their tags with them).
        cited: Stories due but kept, cited by a firing alert or a waiting notification.
        keys_forgotten: Dedup keys of stories pruned long ago (`KEY_MEMORY`) deleted.
        held_by: The rule whose history moved the cutoff back, when one did.
    """

    cutoff: datetime
    pruned: int
    cited: int
    keys_forgotten: int
    held_by: str | None = None


def prune(
    db: Database, retention: timedelta, *, now: datetime | None = None, batch_size: int = BATCH_SIZE
) -> PruneReport:
    """Delete the stories first seen before ``now - retention`` (or before the oldest window a rule reads,
    when that is earlier), except those alerts still cite, in batches of ``batch_size``.

    Args:
        db: The monitor's database.
        retention: How long a story is kept after it was first seen.
        now: The time of the pass (timezone-aware); defaults to the clock.
        batch_size: Stories deleted per transaction.

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
    forgotten = _forget_keys(db, now - KEY_MEMORY, batch_size)
    if kept:
        log.info("retention: %d stories past the cutoff kept, cited by live alerts", kept)
    return PruneReport(cutoff, pruned, kept, forgotten, held_by)


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
    delivered nor expired (whose evidence may be an earlier firing's)."""
    firing = session.scalars(select(Alert.annotations).where(Alert.status == "firing"))
    waiting = session.scalars(select(OutboxMessage.payload).where(pending()))
    annotations = list(firing)
    for payload in waiting:
        entries = payload.get("alerts") if isinstance(payload, dict) else None
        annotations += [e.get("annotations") for e in entries or [] if isinstance(e, dict)]
    return set(_evidence_urls(annotations))


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


def _forget_keys(db: Database, before: datetime, batch_size: int) -> int:
    """Delete the dedup keys of stories pruned before ``before``, one batch per transaction."""
    forgotten = 0
    while True:
        with db.session() as session:
            ids = list(
                session.scalars(
                    select(PrunedStory.id).where(PrunedStory.pruned_at < before).limit(batch_size)
                )
            )
            if ids:
                session.execute(delete(PrunedStory).where(PrunedStory.id.in_(ids)))
        forgotten += len(ids)
        if len(ids) < batch_size:
            return forgotten
