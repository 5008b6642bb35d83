"""`/v1/analytics`: volume, answer / fallback / hand-off rates, top unanswered questions, feedback."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from customer_service.analytics import analytics as compute
from customer_service.deps import LimiterDep, ServiceDep
from customer_service.schemas import AnalyticsOut

router = APIRouter(prefix="/v1", tags=["analytics"])


@router.get("/analytics")
async def analytics(
    service: ServiceDep,
    limiter: LimiterDep,
    days: Annotated[int, Query(ge=1, le=3650)] = 7,
    top: Annotated[int, Query(ge=1, le=100)] = 10,
) -> AnalyticsOut:
    """Figures of the last `days` days."""
    return AnalyticsOut.of(await limiter.run(compute, service.db, days=days, top=top))
