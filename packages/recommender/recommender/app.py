"""Application factory of the recommender service.

Run with ``uvicorn --factory recommender.app:create_app`` or ``recommender serve``. The lifespan opens the
database (migrated), loads the model (``REC_MODEL_PATH``, or the base encoder zero-shot), brings the item
index up to date with the catalog and counts the stored events into co-occurrence and popularity.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from recommender.routes import events, items, scoring
from recommender.serving import Recommender, open_recommender
from recommender.settings import RecommenderSettings
from textcore import ModelNotReady
from textcore.web import service_app


def create_app(settings: RecommenderSettings | None = None) -> FastAPI:
    """Build the recommender; settings are read from ``REC_*`` environment variables when omitted."""
    settings = settings or RecommenderSettings()

    @asynccontextmanager
    async def resources(app: FastAPI) -> AsyncIterator[None]:
        opened = open_recommender(settings)
        # Loading the model and embedding a stale catalog block: keep the event loop free meanwhile.
        app.state.recommender = await anyio.to_thread.run_sync(opened.__enter__)
        try:
            yield
        finally:
            del app.state.recommender
            await anyio.to_thread.run_sync(opened.__exit__, None, None, None)

    app = service_app(
        title="Recommender",
        distribution="recommender",
        description="Scores items by how well their text matches a user's learned interests.",
        settings=settings,
        resources=resources,
        ready=_ready,
    )
    for module in (items, events, scoring):
        app.include_router(module.router)
    return app


async def _ready(app: FastAPI) -> dict[str, str]:
    recommender: Recommender | None = getattr(app.state, "recommender", None)
    if recommender is None:
        raise ModelNotReady("expected the recommender to be built by the lifespan; it is not")
    trained = recommender.model.meta.get("trained_on")
    return {
        "database": recommender.db.engine.dialect.name,
        "model": "trained" if trained else "zero-shot base encoder",
        "items": str(len(recommender.catalog)),
    }
