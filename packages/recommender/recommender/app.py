"""Application factory of the recommender service.

Run with ``uvicorn --factory recommender.app:create_app`` or ``recommender serve``. The lifespan opens the
database (migrated), loads the model (``REC_MODEL_PATH``, or the base encoder zero-shot), brings the item
index up to date with the catalog and counts the stored events into co-occurrence and popularity; while the
service runs, its BLAS libraries use ``REC_BLAS_THREADS`` threads (1 by default, see `recommender.serving`)
and what start-up built is exempt from garbage collection (`gc.freeze`).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio.to_thread
from fastapi import FastAPI
from threadpoolctl import ThreadpoolController

from recommender.routes import events, items, scoring, users
from recommender.serving import Recommender
from recommender.settings import RecommenderSettings
from recommender.startup import open_recommender
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
        # The model, its libraries and the catalog are ~450,000 objects that the cyclic GC scanned in each
        # full collection (~250 ms, every ~40 score requests, a request's objects promoting it); they live
        # as long as the service, so they leave the GC's generations: a full collection now takes < 1 ms.
        gc.collect()
        gc.freeze()
        try:
            # After the start-up: every BLAS library is loaded by now (the limit only reaches loaded ones).
            with blas_threads(settings.blas_threads or None):
                yield
        finally:
            gc.unfreeze()
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
    for module in (items, events, users, scoring):
        app.include_router(module.router)
    return app


@contextmanager
def blas_threads(threads: int | None) -> Iterator[None]:
    """Limit the BLAS libraries loaded so far (numpy's, scipy's) to `threads` threads meanwhile, process-wide.

    None leaves them as they are. These BLAS pools are global to the process, so this belongs around the
    whole service (its lifespan), not around single calls running in several threads at once. (faiss's
    OpenMP-threaded BLAS follows each thread's OpenMP setting instead; it only runs for batch searches.)
    """
    if threads is None:
        yield
        return
    with ThreadpoolController().limit(limits=threads, user_api="blas"):
        yield


async def _ready(app: FastAPI) -> dict[str, str]:
    recommender: Recommender | None = getattr(app.state, "recommender", None)
    if recommender is None:
        raise ModelNotReady("expected the recommender to be built by the lifespan; it is not")
    trained = recommender.model.meta.get("trained_on")
    rescorer = recommender.rescorer
    checks = {
        "database": recommender.db.engine.dialect.name,
        "model": "trained" if trained else "zero-shot base encoder",
        "items": str(len(recommender.catalog)),
    }
    if rescorer is not None:
        checks["rescorer"] = f"top {rescorer.rescoring.top_n} at weight {rescorer.rescoring.weight:g}"
    return checks
