"""`POST /v1/classify`: finance sentiment of texts with the active model."""

from __future__ import annotations

from fastapi import APIRouter

from finance_sentiment.deps import LimiterDep, MonitorDep
from finance_sentiment.schemas import ClassifyIn, ClassifyOut
from finance_sentiment.sentiment import Sentiment

router = APIRouter(prefix="/v1", tags=["classify"])


@router.post("/classify")
async def classify(body: ClassifyIn, monitor: MonitorDep, limiter: LimiterDep) -> list[ClassifyOut]:
    """One `{label, scores, sentiment}` per text, in order; 429 when every worker is busy."""
    results: list[Sentiment] = await limiter.run(lambda: monitor.models.current().classify(body.texts))
    return [ClassifyOut(label=r.label, scores=r.scores, sentiment=r.sentiment) for r in results]
