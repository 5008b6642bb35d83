"""Application factory of the recommender service.

Run with ``uvicorn --factory recommender.app:create_app``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI

from recommender.settings import RecommenderSettings
from textcore.errors import ModelNotReady
from textcore.web import BodySizeLimit, CapacityLimiter, health_router, install_problem_handlers


def create_app(settings: RecommenderSettings | None = None) -> FastAPI:
    """Build the recommender application.

    Args:
        settings: Service settings; read from the environment when omitted.

    Returns:
        The app. Its lifespan owns the stateful resources, stored on ``app.state``: ``settings`` and
        ``limiter`` (the `CapacityLimiter` that runs blocking model calls).
    """
    settings = settings or RecommenderSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.limiter = CapacityLimiter(settings.max_workers, settings.max_queue)
        try:
            yield
        finally:
            del app.state.limiter

    app = FastAPI(
        title="Recommender",
        version=version("recommender"),
        description="Recommender: scores items by how well their text matches a user's learned interests.",
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
