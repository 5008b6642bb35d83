"""The monitor's stateful parts in one place, built and torn down together (by the app's lifespan, the
worker and `run-once`): database, HTTP client, fetcher, sentiment model, tagger, ingestor.

With ``FIN_RETENTION_DAYS`` set, `Monitor.prune` deletes old stories, notifications and resolved alerts
(`finance_sentiment.retention`).

Rule evaluation runs under one lock per process: an ingest job and the periodic evaluation never judge the
same window at once, so a spike opens exactly one alert. Webhook delivery runs under another: one outbox pass
at a time (the HTTP pool holds connections for one pass's posts); a pass asked for while one runs waits for
it, then runs, so what was stored meanwhile is still sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta

import httpx
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from finance_sentiment import netguard, rules, sources
from finance_sentiment.alerting import Transition, evaluate_rules
from finance_sentiment.config import MonitorConfig, admit_urls, apply_config, load_config
from finance_sentiment.connect_guard import GuardedNetworkBackend, guarded_transport
from finance_sentiment.credentials import protect_client_logs, redact
from finance_sentiment.database import Database
from finance_sentiment.delivery import CONCURRENT_POSTS, DeliveryReport, deliver_pending
from finance_sentiment.fetching import Fetcher, FetchError, FetchPolicy
from finance_sentiment.ingest import Ingestor, RunReport, run_error
from finance_sentiment.retention import PruneReport, prune
from finance_sentiment.sentiment import SentimentSource
from finance_sentiment.settings import FinanceSentimentSettings
from finance_sentiment.tables import Source
from finance_sentiment.tagging import Embed, Tagger
from finance_sentiment.telemetry import MonitorMetrics, outbox_gauges
from finance_sentiment.vocabulary import Vocabulary
from textcore import CoreError, Encoder, HttpClientConfig, InvalidInput, make_http_client

log = logging.getLogger(__name__)


@dataclass
class Monitor:
    """Everything a job or a route needs; see `open_monitor`."""

    settings: FinanceSentimentSettings
    db: Database
    http: httpx.AsyncClient
    fetcher: Fetcher
    models: SentimentSource
    tagger: Tagger
    ingestor: Ingestor
    metrics: MonitorMetrics

    def __post_init__(self) -> None:
        # What typed names (a rule's match, a filter) mean: the tagger's configured topics and entities.
        self.vocabulary = Vocabulary(self.tagger.topics, self.tagger.entities)
        self._alert_lock = asyncio.Lock()
        self._delivery_lock = asyncio.Lock()

    async def run_source(self, source_id: int, *, wait: bool = True, scheduled: bool = False) -> RunReport:
        """Run one source now; then, when it stored something, judge the rules: in every process, an API
        replica's included, where no worker may run (evaluation and delivery are safe across processes).
        ``scheduled``: a run of the schedule, held back while the source keeps failing (`Ingestor.run`)."""
        report = self._count(await self.ingestor.run(source_id, wait=wait, scheduled=scheduled))
        if report.stored:
            await self.evaluate_alerts()
        return report

    async def evaluate_alerts(self, rule_ids: Collection[int] | None = None) -> list[Transition]:
        """Judge every rule (or only ``rule_ids``) against the current window and send what that produced."""
        async with self._alert_lock:
            transitions = await asyncio.to_thread(
                evaluate_rules, self.db, external_url=self.settings.external_url, rule_ids=rule_ids
            )
        self._note(transitions)
        if transitions:
            await self.deliver()
        return transitions

    async def settle(self, *, rule_id: int | None = None) -> None:
        """What a change to a rule through the API leaves to do, done by the process that made it (an API
        replica run with --no-scheduler too, where no worker may run), after its answer: with ``rule_id``
        (changed), judge that rule now, so that disabling or regrouping it resolves its firing alerts at
        once, not at the next periodic evaluation; without (deleted), send the outbox's due notifications,
        its "resolved" ones among them. Evaluation and delivery are safe across processes (row locks, claimed
        outbox rows), so a worker's passes meanwhile send nothing twice. A failure is logged: what is left
        stays in the outbox for the next pass of any process."""
        try:
            if rule_id is not None:
                await self.evaluate_alerts([rule_id])
            else:
                await self.deliver()
        except Exception:
            log.exception("alert rule change: judging or delivering after it failed; left to the next pass")

    async def delete_rule(self, rule_id: int) -> list[Transition]:
        """Delete an alert rule, resolving its firing alerts (`rules.delete_rule`); `settle` (or any
        process's outbox pass) sends their "resolved" notifications.

        Raises:
            NotFound: No rule has this id.
        """
        async with self._alert_lock:
            transitions = await asyncio.to_thread(self._delete_rule, rule_id)
        self._note(transitions)
        return transitions

    def _delete_rule(self, rule_id: int) -> list[Transition]:
        with self.db.session() as session:
            return rules.delete_rule(session, rule_id, external_url=self.settings.external_url)

    def _note(self, transitions: list[Transition]) -> None:
        for transition in transitions:
            self.metrics.transitions.labels(transition.status).inc()
            self.metrics.superseded.inc(transition.superseded)
        if transitions:
            log.info("alerts: %s", ", ".join(f"{t.rule} {t.labels} {t.status}" for t in transitions))

    async def deliver(self) -> DeliveryReport:
        """Send due webhook notifications from the outbox, after the pass already running here, if any."""
        async with self._delivery_lock:
            resolved_ttl = timedelta(days=self.settings.resolved_expiry_days)
            report = await deliver_pending(self.db, self.http, resolved_ttl=resolved_ttl)
        for result in ("delivered", "failed", "expired"):
            self.metrics.deliveries.labels(result).inc(getattr(report, result))
        return report

    async def prune(self) -> PruneReport | None:
        """Delete the stories, the finished notifications and the resolved alerts older than the retention
        (`retention.prune`); None when no retention is set (``FIN_RETENTION_DAYS`` unset: all are kept)."""
        days = self.settings.retention_days
        if days is None:
            return None
        report = await asyncio.to_thread(prune, self.db, timedelta(days=days))
        self.metrics.pruned.inc(report.pruned)
        self.metrics.notifications_pruned.inc(report.notifications_pruned)
        self.metrics.alerts_pruned.inc(report.alerts_pruned)
        if report.pruned:
            log.info("retention: %d stories first seen before %s deleted", report.pruned, report.cutoff)
        if report.notifications_pruned or report.alerts_pruned:
            log.info(
                "retention: %d notifications delivered or expired, and %d alerts resolved, more than %d days "
                "ago deleted",
                report.notifications_pruned,
                report.alerts_pruned,
                days,
            )
        return report

    async def run_all(self) -> list[RunReport]:
        """Run every enabled source once (sources in parallel; the fetcher keeps each host polite).

        A source that cannot run (deleted meanwhile, the database gone) gives a failed report; the others
        still run, and the rules are judged on what they stored. These are scheduled runs: a source that keeps
        failing is held back (``backoff``) as the scheduler's runs are.
        """
        reports = await asyncio.gather(
            *(self._run_one(source_id) for source_id in await asyncio.to_thread(self.enabled_sources))
        )
        await self.evaluate_alerts()
        await self.deliver()
        return [self._count(report) for report in reports]

    async def _run_one(self, source_id: int) -> RunReport:
        try:
            return await self.ingestor.run(source_id, scheduled=True)
        except Exception as exc:
            if not isinstance(exc, CoreError):
                log.exception("source %s could not run", source_id)
            return RunReport(source_id, "failed", error=run_error(exc))

    def _count(self, report: RunReport) -> RunReport:
        self.metrics.runs.labels(report.status).inc()
        self.metrics.stored.inc(report.stored)
        self.metrics.duplicates.inc(report.duplicates)
        self.metrics.skipped.inc(report.skipped)
        return report

    async def admit_url(self, url: str, what: str) -> None:
        """Check a URL an operator gives (a source's, a webhook's) against the address guard.

        Raises:
            InvalidInput: If the URL is malformed, does not resolve, or is on a blocked address.
        """
        try:
            await self.fetcher.check_url(url)
        except (FetchError, InvalidInput) as exc:
            raise InvalidInput(f"{what}: {redact(exc.message)}") from exc

    def enabled_sources(self) -> list[int]:
        """Ids of the enabled sources."""
        with self.db.session() as session:
            return list(session.scalars(select(Source.id).where(Source.enabled).order_by(Source.id)))

    def model_status(self) -> str:
        """The loaded model version, or why there is none (for readiness)."""
        try:
            return self.models.current().version
        except CoreError as exc:
            return f"not ready: {exc.message}"


def _fetch_policy(settings: FinanceSentimentSettings) -> FetchPolicy:
    fetch = settings.fetch
    return FetchPolicy(
        user_agent=fetch.user_agent,
        timeout_s=fetch.timeout_s,
        deadline_s=fetch.deadline_s,
        max_redirects=fetch.max_redirects,
        max_retries=fetch.max_retries,
        backoff_base_s=fetch.backoff_base_s,
        max_retry_after_s=fetch.max_retry_after_s,
        min_host_interval_s=fetch.min_host_interval_s,
        respect_robots=fetch.respect_robots,
        robots_ttl_s=fetch.robots_ttl_s,
        allowed_networks=tuple(fetch.allowed_networks),
    )


def _tagger(settings: FinanceSentimentSettings, config: MonitorConfig | None) -> Tagger:
    if config is None:
        return Tagger()
    topics = [topic.spec() for topic in config.topics]
    embed: Embed | None = None
    if any(topic.description for topic in topics):
        encoder = Encoder.from_pretrained(
            settings.encoder.model,
            device=settings.encoder.device,
            precision=settings.encoder.precision,
            max_length=settings.encoder.max_length,
            batch_size=settings.encoder.batch_size,
        )
        embed = encoder.encode
    return Tagger(topics, [entity.spec() for entity in config.entities], embed)


def _warn_stored_rules(db: Database, interval_s: int) -> None:
    """Log the stored enabled rules whose window is shorter than the evaluation interval (stored before
    ``FIN_ALERT_INTERVAL_S`` was raised): stories between two evaluations escape them until they change;
    and the rules whose ``resolve_fraction`` is below its bound (stored before it was kept)."""
    with db.session() as session:
        for rule in rules.list_rules(session):
            if (fraction := rules.fraction_warning(rule)) is not None:
                log.warning("alert rule %r: %s", rule.name, fraction)
            if rule.enabled and rule.window_seconds < interval_s:
                log.warning(
                    "alert rule %r: its window of %d s is shorter than the evaluation interval "
                    "(FIN_ALERT_INTERVAL_S = %d s), so stories seen between two evaluations fall in no "
                    "judged window; lengthen the window or evaluate more often",
                    rule.name,
                    rule.window_seconds,
                    interval_s,
                )


def _warn_stored_sources(db: Database) -> None:
    """Log the stored enabled sources whose cron never fires (stored before such a cron was refused): the
    scheduler never fetches them."""
    with db.session() as session:
        for source in sources.list_sources(session):
            if source.enabled and (warning := sources.cron_warning(source)) is not None:
                log.warning("source %r: %s", source.name, warning)


@dataclass(frozen=True)
class Prepared:
    """What `prepare` checked before a start: the config file, loaded (None without one)."""

    config: MonitorConfig | None


async def prepare(settings: FinanceSentimentSettings) -> Prepared:
    """The checks before a start, each made once: the config file reads and validates (an enabled rule's
    window is no shorter than the evaluation interval), its URLs pass the address guard (a host that does
    not resolve now is only logged), and the database opens and is migrated.

    Raises:
        InvalidInput: The config file is unreadable or invalid, or names a URL the guard refuses.
        UpstreamError: The database cannot be opened.
    """
    config = None
    if settings.config_file:
        config = load_config(settings.config_file)
        for rule in config.alert_rules:
            try:
                rules.require_judged_window(rule, settings.alert_interval_s)
            except InvalidInput as exc:
                raise InvalidInput(f"config file {str(settings.config_file)!r}: {exc.message}") from None
        await admit_urls(config, settings.config_file, settings.fetch.allowed_networks)
    await asyncio.to_thread(Database(settings.database_url).check)
    return Prepared(config)


@asynccontextmanager
async def open_monitor(
    settings: FinanceSentimentSettings,
    registry: CollectorRegistry | None = None,
    prepared: Prepared | None = None,
    metrics: MonitorMetrics | None = None,
) -> AsyncIterator[Monitor]:
    """Build the monitor: `prepare` (unless the caller did: ``prepared``), apply the config file, open the
    HTTP client.

    Its counters are ``metrics`` (an app's, made once on its registry, so a second start of the app counts on)
    or new ones on ``registry`` (served at /metrics), or on a private one; the outbox gauges, read from the
    database at each collection, go on ``registry`` while the monitor is open.

    The sentiment model is loaded on first use, so the API serves sources and documents before a model is
    trained; runs fail with "model not ready" (and fetch again later) until one is active.
    """
    prepared = prepared or await prepare(settings)
    config = prepared.config
    db = Database(settings.database_url)
    if config is not None and settings.config_file is not None:
        with db.session() as session:
            apply_config(session, config, settings.config_file)
    await asyncio.to_thread(_warn_stored_rules, db, settings.alert_interval_s)
    await asyncio.to_thread(_warn_stored_sources, db)
    # A run makes one request at a time: with a connection for every run and every webhook post, nothing
    # waits for a pooled connection (a wait over the pool timeout fails the request).
    pool = settings.max_concurrent_runs + CONCURRENT_POSTS
    http_config = HttpClientConfig(
        max_connections=pool,
        max_keepalive=min(pool, 10),
        user_agent=settings.fetch.user_agent,
        max_response_bytes=settings.fetch.max_response_bytes,
        read_timeout=settings.fetch.timeout_s,
    )
    models = SentimentSource(
        settings.encoder,
        registry=settings.registry,
        model_name=settings.model_name,
        model_path=settings.model_path,
        backend=settings.backend,
    )
    tagger = await asyncio.to_thread(_tagger, settings, config)
    policy = _fetch_policy(settings)
    connections = GuardedNetworkBackend(netguard.parse_networks(policy.allowed_networks))
    transport = guarded_transport(connections, http_config.limits)
    protect_client_logs()  # httpx logs each request's URL: a webhook's or a feed's credentials are masked
    async with make_http_client(http_config, transport=transport) as http:
        fetcher = Fetcher(http, policy)
        ingestor = Ingestor(
            db,
            fetcher,
            models,
            tagger,
            max_pages_per_run=settings.max_pages_per_run,
            max_concurrent_runs=settings.max_concurrent_runs,
        )
        try:
            metrics = metrics or MonitorMetrics.create(registry)
            with outbox_gauges(registry, db) if registry is not None else nullcontext():
                yield Monitor(settings, db, http, fetcher, models, tagger, ingestor, metrics)
        finally:
            db.dispose()
