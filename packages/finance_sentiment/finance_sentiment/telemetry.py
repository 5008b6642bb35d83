"""The monitor's own Prometheus metrics, registered on the app's registry (served at /metrics).

The counters count what this process did. The outbox gauges (`OutboxGauges`) are read from the database at
each scrape instead, so every replica shows the same outbox, an API replica run with ``--no-scheduler`` as the
worker that delivers, and the age of the oldest notification keeps growing while no delivery pass runs at all
(a stopped worker), which a value refreshed by the delivery pass would not show.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from finance_sentiment.credentials import redact
from finance_sentiment.database import Database
from finance_sentiment.delivery import pending
from finance_sentiment.tables import OutboxMessage
from textcore.sql import utcnow

logger = logging.getLogger(__name__)

PENDING = "finance_notifications_pending"
OLDEST_PENDING_AGE = "finance_notifications_oldest_pending_age_seconds"


class OutboxGauges(Collector):
    """The webhook notifications still to be sent (neither delivered nor expired) and the age of the oldest,
    from one query per scrape; 0 and 0 when none waits. A scrape while the database cannot be read
    leaves both out (and logs why), so an ``absent()`` rule sees it, and the other metrics are still served.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families without samples: registering the collector reads nothing."""
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges as the database holds them now."""
        query = select(func.count(), func.min(OutboxMessage.created_at)).where(pending())
        try:
            with self._db.session() as session:
                count, oldest = session.execute(query).one()
        except SQLAlchemyError as exc:
            why = redact(str(exc))
            logger.warning("outbox gauges left out of /metrics: the database could not be read: %s", why)
            return
        age = max((utcnow() - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
        waiting, oldest_age = self._families()
        waiting.add_metric([], count)
        oldest_age.add_metric([], age)
        yield waiting
        yield oldest_age

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(PENDING, "Webhook notifications to be sent: neither delivered nor expired."),
            GaugeMetricFamily(
                OLDEST_PENDING_AGE,
                "Seconds since the oldest webhook notification still to be sent was queued; 0 if none waits.",
            ),
        )


@contextmanager
def outbox_gauges(registry: CollectorRegistry, db: Database) -> Iterator[None]:
    """The outbox gauges of ``db`` on ``registry`` while the monitor is open: once it is closed (its
    database disposed), collecting the registry no longer reads the database."""
    gauges = OutboxGauges(db)
    registry.register(gauges)
    try:
        yield
    finally:
        registry.unregister(gauges)


@dataclass(frozen=True)
class MonitorMetrics:
    """Counters of source runs, stored, duplicate, skipped and pruned stories, alert transitions, webhook
    deliveries, the
    notifications superseded by newer ones of their alert group, and the notifications and alerts the
    retention deleted."""

    runs: Counter
    stored: Counter
    duplicates: Counter
    skipped: Counter
    transitions: Counter
    deliveries: Counter
    superseded: Counter
    pruned: Counter
    notifications_pruned: Counter
    alerts_pruned: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> MonitorMetrics:
        """The counters, on ``registry`` (a private one when omitted)."""
        registry = registry or CollectorRegistry()
        return cls(
            runs=Counter("finance_source_runs", "Source runs by outcome.", ["status"], registry=registry),
            stored=Counter("finance_documents_stored", "New stories stored.", registry=registry),
            duplicates=Counter(
                "finance_documents_duplicate", "Stories skipped as already stored.", registry=registry
            ),
            skipped=Counter(
                "finance_documents_skipped",
                "Entries of a source left out: no usable link, or neither a title nor a text.",
                registry=registry,
            ),
            transitions=Counter(
                "finance_alert_transitions", "Alert notifications queued.", ["status"], registry=registry
            ),
            deliveries=Counter(
                "finance_webhook_deliveries", "Webhook attempts by result.", ["result"], registry=registry
            ),
            superseded=Counter(
                "finance_notifications_superseded",
                "Webhook notifications dropped while still to be sent, superseded by a newer one of their "
                "alert group for the same webhook.",
                registry=registry,
            ),
            pruned=Counter(
                "finance_documents_pruned", "Stories deleted by the retention policy.", registry=registry
            ),
            notifications_pruned=Counter(
                "finance_notifications_pruned",
                "Delivered or expired webhook notifications deleted by the retention policy.",
                registry=registry,
            ),
            alerts_pruned=Counter(
                "finance_alerts_pruned",
                "Resolved alerts deleted by the retention policy, with their notifications.",
                registry=registry,
            ),
        )
