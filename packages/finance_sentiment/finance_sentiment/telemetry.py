"""The monitor's own Prometheus metrics, registered on the app's registry (served at /metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter


@dataclass(frozen=True)
class MonitorMetrics:
    """Counters of source runs, stored and pruned stories, alert transitions, webhook deliveries, the
    notifications superseded by newer ones of their alert group, and the notifications and alerts the
    retention deleted."""

    runs: Counter
    stored: Counter
    duplicates: Counter
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
