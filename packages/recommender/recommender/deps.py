"""Typed dependencies of the routes: the lifespan-owned recommender and the worker pool."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from recommender.serving import Recommender
from textcore import ModelNotReady
from textcore.web import CapacityLimiter


def get_recommender(request: Request) -> Recommender:
    """The recommender the lifespan built."""
    recommender: Recommender | None = getattr(request.app.state, "recommender", None)
    if recommender is None:
        raise ModelNotReady("expected the service to have started (database, model, index); it has not")
    return recommender


def get_limiter(request: Request) -> CapacityLimiter:
    """The worker pool for blocking model calls."""
    limiter: CapacityLimiter = request.app.state.limiter
    return limiter


RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
LimiterDep = Annotated[CapacityLimiter, Depends(get_limiter)]
