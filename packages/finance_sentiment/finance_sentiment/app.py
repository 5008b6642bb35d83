"""Application factory of the finance_sentiment service.

Run with ``uvicorn --factory finance_sentiment.app:create_app``.
"""

from __future__ import annotations

from fastapi import FastAPI

from finance_sentiment.settings import FinanceSentimentSettings
from textcore.web import service_app


def create_app(settings: FinanceSentimentSettings | None = None) -> FastAPI:
    """Build the finance_sentiment application; settings are read from the environment when omitted."""
    return service_app(
        title="Finance opinion monitor",
        distribution="finance-sentiment",
        description="Scheduled scraping, sentiment and topic classification, trends and spike alerts.",
        settings=settings or FinanceSentimentSettings(),
    )
