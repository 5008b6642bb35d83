"""Application factory of the recommender service.

Run with ``uvicorn --factory recommender.app:create_app``.
"""

from __future__ import annotations

from fastapi import FastAPI

from recommender.settings import RecommenderSettings
from textcore.web import service_app


def create_app(settings: RecommenderSettings | None = None) -> FastAPI:
    """Build the recommender application; settings are read from the environment when omitted."""
    return service_app(
        title="Recommender",
        distribution="recommender",
        description="Scores items by how well their text matches a user's learned interests.",
        settings=settings or RecommenderSettings(),
    )
