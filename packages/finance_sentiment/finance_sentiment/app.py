"""Application factory of the finance_sentiment service.

Run with ``uvicorn --factory finance_sentiment.app:create_app``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI

from finance_sentiment.settings import FinanceSentimentSettings
from textcore.errors import ModelNotReady
from textcore.web import BodySizeLimit, CapacityLimiter, health_router, install_problem_handlers


def create_app(settings: FinanceSentimentSettings | None = None) -> FastAPI:
    """Build the finance_sentiment application.

    Args:
        settings: Service settings; read from the environment when omitted.

    Returns:
        The app. Its lifespan owns the stateful resources, stored on ``app.state``: ``settings`` and
        ``limiter`` (the `CapacityLimiter` that runs blocking model calls).
    """
    settings = settings or FinanceSentimentSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.limiter = CapacityLimiter(settings.max_workers, settings.max_queue)
        try:
            yield
        finally:
            del app.state.limiter

    app = FastAPI(
        title="Finance sentiment",
        version=version("finance-sentiment"),
        description="Finance opinion monitor: scheduled scraping, sentiment, trends and spike alerts.",
        lifespan=lifespan,
    )

    async def ready_check() -> dict[str, str]:
        limiter: CapacityLimiter | None = getattr(app.state, "limiter", None)
        if limiter is None:
            raise ModelNotReady("expected the lifespan to have built the worker pool, found none")
        return {"workers": f"{limiter.in_flight} of {limiter.max_workers} busy"}

    install_problem_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(health_router(ready_check))
    return app
