"""Typed dependencies of the routes: the lifespan-owned monitor, its scheduler and the worker pool."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request

from finance_sentiment.monitor import Monitor
from finance_sentiment.scheduling import MonitorScheduler
from finance_sentiment.tables import MAX_ID
from textcore import ModelNotReady
from textcore.web import CapacityLimiter


def get_monitor(request: Request) -> Monitor:
    """The monitor the lifespan built."""
    monitor: Monitor | None = getattr(request.app.state, "monitor", None)
    if monitor is None:
        raise ModelNotReady("expected the service to have started (database, model, HTTP client); it has not")
    return monitor


def get_scheduler(request: Request) -> MonitorScheduler | None:
    """The in-process scheduler, or None on an API-only replica (``--no-scheduler``)."""
    scheduler: MonitorScheduler | None = getattr(request.app.state, "scheduler", None)
    return scheduler


def get_limiter(request: Request) -> CapacityLimiter:
    """The worker pool for blocking model calls."""
    limiter: CapacityLimiter = request.app.state.limiter
    return limiter


MonitorDep = Annotated[Monitor, Depends(get_monitor)]
SchedulerDep = Annotated[MonitorScheduler | None, Depends(get_scheduler)]
LimiterDep = Annotated[CapacityLimiter, Depends(get_limiter)]
RowId = Annotated[int, Path(ge=1, le=MAX_ID, description="The row's id.")]
RowIdFilter = Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only rows of this id.")]
