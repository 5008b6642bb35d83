"""APScheduler wiring: one job per enabled source, plus rule evaluation, webhook delivery, a resync and, with
``FIN_RETENTION_DAYS`` set, the hourly deletion of old stories, notifications and resolved alerts (due at
start too, so a service restarted more often than hourly still prunes).

The scheduler only wires triggers to plain ``async def`` jobs of `Monitor` (tests call those directly).
``max_instances=1`` keeps runs of one source from overlapping; ``coalesce`` folds missed runs into one.
Source edits made through any replica's API reach the jobs by the periodic resync (and at once in the
process that made them); a job whose source another replica deleted meanwhile is dropped at its next run,
with one info line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select

from finance_sentiment.crontab import crontab_trigger
from finance_sentiment.monitor import Monitor
from finance_sentiment.tables import Source
from textcore.errors import NotFound

log = logging.getLogger(__name__)
SOURCE_JOB = "source:"
RETENTION_INTERVAL_S = 3600


@dataclass(frozen=True, slots=True)
class _Plan:
    interval_seconds: int | None
    cron: str | None

    def trigger(self) -> BaseTrigger:
        if self.cron:
            return crontab_trigger(self.cron)
        return IntervalTrigger(seconds=self.interval_seconds or 900, timezone="UTC")


class MonitorScheduler:
    """Owns an `AsyncIOScheduler` running the monitor's jobs in the current event loop."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.scheduler = AsyncIOScheduler(
            timezone="UTC", job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 60}
        )
        self._plans: dict[int, _Plan] = {}

    async def start(self) -> None:
        """Add the jobs and start; each source's first run is due at once."""
        settings = self.monitor.settings
        self._every(settings.alert_interval_s, "alerts", self.monitor.evaluate_alerts)
        self._every(settings.delivery_interval_s, "outbox", self.monitor.deliver)
        self._every(settings.sync_interval_s, "sources", self.sync)
        if settings.retention_days is not None:
            self._every(RETENTION_INTERVAL_S, "retention", self.monitor.prune, first=datetime.now(UTC))
        self.scheduler.start()
        await self.sync()

    def shutdown(self) -> None:
        """Stop without waiting for running jobs (their work is transactional)."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def sync(self) -> None:
        """Make the source jobs match the enabled sources in the database."""
        wanted = await asyncio.to_thread(self._enabled_plans)
        for source_id in set(self._plans) - set(wanted):
            self._drop(source_id)
        for source_id, plan in wanted.items():
            if self._plans.get(source_id) == plan:
                continue
            job_id = f"{SOURCE_JOB}{source_id}"
            if source_id in self._plans:
                # A new trigger for a scheduled source: its next run follows the new plan. (Re-adding the job
                # with next_run_time=None would pause it for good.)
                self.scheduler.reschedule_job(job_id, trigger=plan.trigger())
            else:
                self.scheduler.add_job(
                    self._run_source,
                    plan.trigger(),
                    args=[source_id],
                    id=job_id,
                    name=f"source {source_id}",
                    replace_existing=True,
                    next_run_time=datetime.now(UTC),
                )
            self._plans[source_id] = plan

    @property
    def source_jobs(self) -> dict[int, str]:
        """Scheduled source ids and their trigger, for inspection."""
        return {
            int(job.id.removeprefix(SOURCE_JOB)): str(job.trigger)
            for job in self.scheduler.get_jobs()
            if job.id.startswith(SOURCE_JOB)
        }

    async def _run_source(self, source_id: int) -> None:
        try:
            report = await self.monitor.run_source(source_id, scheduled=True)
        except NotFound:
            # Deleted through another replica's API since the last sync: expected, and its job goes now
            # rather than failing every run until the sync would have removed it.
            log.info("source %s: deleted since the scheduler last read the sources; job dropped", source_id)
            self._drop(source_id)
            return
        log.info("source %s: %s, %s new, %s seen", source_id, report.status, report.stored, report.duplicates)

    def _drop(self, source_id: int) -> None:
        """Remove a source's job, if it is still scheduled."""
        self._plans.pop(source_id, None)
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(f"{SOURCE_JOB}{source_id}")

    def _every(
        self,
        seconds: int,
        job_id: str,
        job: Callable[[], Awaitable[object]],
        *,
        first: datetime | None = None,
    ) -> None:
        """Run ``job`` every ``seconds``: first at ``first``, else one interval from now."""
        trigger = IntervalTrigger(seconds=seconds, timezone="UTC")
        if first is None:  # (APScheduler reads an explicit next_run_time=None as "paused")
            self.scheduler.add_job(job, trigger, id=job_id, name=job_id)
        else:
            self.scheduler.add_job(job, trigger, id=job_id, name=job_id, next_run_time=first)

    def _enabled_plans(self) -> dict[int, _Plan]:
        with self.monitor.db.session() as session:
            rows = session.execute(
                select(Source.id, Source.interval_seconds, Source.cron).where(Source.enabled)
            ).all()
        return {row.id: _Plan(row.interval_seconds, row.cron) for row in rows}
