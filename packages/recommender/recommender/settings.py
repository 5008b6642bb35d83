"""Configuration of the recommender service, read from ``REC_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from recommender.events import MAX_VALUE
from textcore.settings import ServiceSettings


class RecommenderSettings(ServiceSettings):
    """Settings of the recommender service.

    Every field can be set from the environment as ``REC_<FIELD>`` (nested fields with ``__``), for
    example ``REC_MODEL_PATH=var/models/rec``, ``REC_MAX_WORKERS=4`` or ``REC_ENCODER__PRECISION=fp32``.
    Without ``model_path`` the service runs the base encoder (``encoder.model``, MiniLM by default) zero-shot
    with default blend weights.
    """

    model_config = SettingsConfigDict(env_prefix="REC_")

    database_url: str = Field(
        "sqlite:///var/recommender/recommender.db", description="SQLAlchemy URL; SQLite file or PostgreSQL."
    )
    model_path: Path | None = Field(
        None, description="A model folder written by `recommender train`; None: the base encoder zero-shot."
    )
    index_path: Path = Field(
        Path("var/recommender/items.index.npz"),
        description="Where the item vectors are kept between runs (rebuilt from the database when stale).",
    )
    index_save_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="An item write (PUT, DELETE, POST /v1/items) leaves saving the index file, which "
        "rewrites every vector, to a background save at most this many seconds later (and to shutdown); "
        "a crash meanwhile loses nothing: the next start re-embeds the items changed since. 0: every "
        "write saves.",
    )
    max_items_per_request: int = Field(1000, ge=1, le=100_000, description="Candidates per score request.")
    max_events_per_request: int = Field(10_000, ge=1, le=1_000_000, description="Events per ingest batch.")
    min_rating: float | None = Field(
        None,
        ge=-MAX_VALUE,
        le=MAX_VALUE,
        allow_inf_nan=False,
        description="Ratings at or above this count as positives, and a user's latest rating of an item "
        "below it makes the item no like whatever they clicked; unset: the threshold the model was trained "
        "with (`recommender train --min-rating`), or every rating for a model trained without one.",
    )
    rescore: bool = Field(
        True,
        description="Re-score the top candidates with the model's rescorer when it has one fitted to help "
        "(`recommender train-rescorer`); False: the blend alone.",
    )
    refresh_s: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="How often, at most, a score or recommend request looks for items and events that other "
        "processes wrote (`recommender ingest-*`, other replicas); 0: before every request.",
    )
    candidates: int = Field(
        200, ge=1, le=10_000, description="Items taken from the vector index (and co-occurrence) per request."
    )
    # Requests run in `max_workers` threads at once; on a few busy cores a multi-threaded BLAS or torch call
    # spins against the other requests' threads (one score request: 40 ms with 2 BLAS threads, 7.5 ms with 1),
    # so a request's calls get one thread each and the parallelism comes from the worker pool. Bulk embedding
    # gains from idle cores, so it keeps torch's threads unless told (see `recommender.serving`).
    blas_threads: int = Field(
        1,
        ge=0,
        le=1024,
        description="Threads of the BLAS libraries (numpy's, scipy's), process-wide; 0: as loaded.",
    )
    torch_threads: int = Field(
        1,
        ge=0,
        le=1024,
        description="torch threads of a request's encoder calls (interests); 0: torch's own.",
    )
    embed_threads: int = Field(
        0,
        ge=0,
        le=1024,
        description="torch threads of catalog embedding (upserts, start-up); 0: torch's own.",
    )
    event_future_tolerance_s: int = Field(
        86_400,
        ge=0,
        le=31_536_000,
        description="How far, in seconds, an event's timestamp may be after the server's clock (clients' "
        "clocks run a little ahead); a later one is refused (422; a wrong clock or a typo would count as the "
        "newest event for years). Also read by `recommender ingest-events`.",
    )
    # A full batch of 10,000 events or 1,000 items with their text is a few megabytes of JSON.
    max_body_bytes: int = Field(8_000_000, ge=1, description="Largest accepted request body, in bytes.")

    @field_validator("database_url")
    @classmethod
    def _parsable_url(cls, url: str) -> str:
        """Refuse a URL SQLAlchemy cannot read with the settings, not when the service starts on it."""
        try:
            make_url(url)
        except (ArgumentError, ValueError):
            raise ValueError(
                "expected a SQLAlchemy URL such as sqlite:///FILE or postgresql+psycopg://USER@HOST/DB"
            ) from None
        return url
