"""Application factory of the finance opinion monitor.

Run with ``uvicorn --factory finance_sentiment.app:create_app`` or ``finance-sentiment serve``. The lifespan
builds the monitor (database, HTTP client, model, tagger) and, unless ``FIN_SCHEDULER=false``, the scheduler
that runs every source and judges the alert rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from finance_sentiment.monitor import Monitor, Prepared, open_monitor
from finance_sentiment.routes import alerts, classify, documents, sources, trends
from finance_sentiment.scheduling import MonitorScheduler
from finance_sentiment.settings import FinanceSentimentSettings
from finance_sentiment.telemetry import MonitorMetrics
from textcore import ModelNotReady
from textcore.web import service_app


def create_app(settings: FinanceSentimentSettings | None = None, prepared: Prepared | None = None) -> FastAPI:
    """Build the finance monitor; settings are read from ``FIN_*`` environment variables when omitted.

    ``prepared``: the start-up checks (config file, database) already made (`monitor.prepare`, by the
    command line before it starts the server), so the lifespan does not make them again.
    """
    settings = settings or FinanceSentimentSettings()

    @asynccontextmanager
    async def resources(app: FastAPI) -> AsyncIterator[None]:
        async with open_monitor(settings, app.state.metrics, prepared, metrics) as monitor:
            app.state.monitor = monitor
            scheduler = MonitorScheduler(monitor) if settings.scheduler else None
            if scheduler is not None:
                await scheduler.start()
            app.state.scheduler = scheduler
            try:
                yield
            finally:
                if scheduler is not None:
                    scheduler.shutdown()
                del app.state.monitor, app.state.scheduler

    app = service_app(
        title="Finance opinion monitor",
        distribution="finance-sentiment",
        description="Scheduled scraping, sentiment and topic classification, trends and spike alerts.",
        settings=settings,
        resources=resources,
        ready=_ready,
    )
    # Once per app, not per lifespan: a second start of the same app (a test client entered twice, a server
    # restarted in process) would register them on its registry again, and the counters never go back.
    metrics = MonitorMetrics.create(app.state.metrics)
    for module in (sources, documents, classify, trends, alerts):
        app.include_router(module.router)
    return app


async def _ready(app: FastAPI) -> dict[str, str]:
    monitor: Monitor | None = getattr(app.state, "monitor", None)
    if monitor is None:
        raise ModelNotReady("expected the monitor to be built by the lifespan; it is not")
    model = await asyncio.to_thread(monitor.model_status)
    if model.startswith("not ready"):
        raise ModelNotReady(f"sentiment model {model}")
    return {"database": monitor.db.engine.dialect.name, "model": model}
