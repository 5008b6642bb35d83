"""`/v1/sources`: the feeds, pages and JSON APIs to read; `POST /v1/sources/{id}/run` reads one now."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Response, status

from finance_sentiment import sources
from finance_sentiment.deps import MonitorDep, RowId, SchedulerDep
from finance_sentiment.monitor import Monitor
from finance_sentiment.schemas import SourceIn, SourceOut, SourcePatch

router = APIRouter(prefix="/v1/sources", tags=["sources"])


@router.get("")
def list_sources(monitor: MonitorDep) -> list[SourceOut]:
    """Every configured source with its fetch state."""
    with monitor.db.session() as session:
        return [sources.source_out(row) for row in sources.list_sources(session)]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_source(body: SourceIn, monitor: MonitorDep, scheduler: SchedulerDep) -> SourceOut:
    """Add a source; its URL must pass the address guard. Its first run is scheduled at once."""
    await monitor.admit_url(body.url, "url")
    created = await asyncio.to_thread(_create, monitor, body)
    if scheduler is not None:
        await scheduler.sync()
    return created


@router.get("/{source_id}")
def get_source(source_id: RowId, monitor: MonitorDep) -> SourceOut:
    """One source."""
    with monitor.db.session() as session:
        return sources.source_out(sources.get_source(session, source_id))


@router.patch("/{source_id}")
async def update_source(
    source_id: RowId, body: SourcePatch, monitor: MonitorDep, scheduler: SchedulerDep
) -> SourceOut:
    """Change some fields of a source; ``enabled: true`` re-enables one that was disabled."""
    if body.url is not None:
        await monitor.admit_url(body.url, "url")
    updated = await asyncio.to_thread(_update, monitor, source_id, body)
    if scheduler is not None:
        await scheduler.sync()
    return updated


@router.delete("/{source_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_source(source_id: RowId, monitor: MonitorDep, scheduler: SchedulerDep) -> Response:
    """Remove a source; its documents stay."""
    await asyncio.to_thread(_delete, monitor, source_id)
    if scheduler is not None:
        await scheduler.sync()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{source_id}/run")
async def run_source(source_id: RowId, monitor: MonitorDep) -> dict[str, Any]:
    """Fetch one source now (409 while a run of it is in progress) and report what it did; when it stored
    stories, judge the rules, on an API replica run with --no-scheduler too (no worker may be running)."""
    report = await monitor.run_source(source_id, wait=False)
    return asdict(report)


def _create(monitor: Monitor, body: SourceIn) -> SourceOut:
    with monitor.db.session() as session:
        return sources.source_out(sources.create_source(session, body))


def _update(monitor: Monitor, source_id: int, body: SourcePatch) -> SourceOut:
    with monitor.db.session() as session:
        return sources.source_out(sources.update_source(session, source_id, body))


def _delete(monitor: Monitor, source_id: int) -> None:
    with monitor.db.session() as session:
        sources.delete_source(session, source_id)
