"""The skeleton every service app shares: lifespan-owned worker pool, problem+json errors, body limit, health.

A service passes its own `resources` context manager for whatever else its lifespan owns (models, index,
database engine, HTTP client, scheduler); it is entered after the common state is set up and left first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI

from textcore.errors import ModelNotReady
from textcore.settings import ServiceSettings
from textcore.web.body_limit import BodySizeLimit
from textcore.web.capacity import CapacityLimiter
from textcore.web.health import health_router
from textcore.web.problems import install_problem_handlers

Resources = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def service_app(
    *,
    title: str,
    distribution: str,
    description: str,
    settings: ServiceSettings,
    resources: Resources | None = None,
) -> FastAPI:
    """Build a service app whose lifespan owns its state.

    Args:
        title: shown in the OpenAPI document.
        distribution: the installed distribution whose version the app reports.
        description: one line for the OpenAPI document.
        settings: the service's settings; stored on `app.state.settings`.
        resources: the service's own lifespan resources, if any.

    Returns:
        The app. `app.state.limiter` is the `CapacityLimiter` that runs blocking model calls.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.limiter = CapacityLimiter(settings.max_workers, settings.max_queue)
        try:
            if resources is None:
                yield
            else:
                async with resources(app):
                    yield
        finally:
            del app.state.limiter

    app = FastAPI(title=title, version=version(distribution), description=description, lifespan=lifespan)

    async def ready_check() -> dict[str, str]:
        limiter: CapacityLimiter | None = getattr(app.state, "limiter", None)
        if limiter is None:
            raise ModelNotReady("expected the lifespan to have built the worker pool, found none")
        return {"workers": f"{limiter.in_flight} of {limiter.max_workers} busy"}

    install_problem_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(health_router(ready_check))
    return app
